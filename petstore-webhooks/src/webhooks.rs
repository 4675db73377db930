//! [`Webhooks`]: the adapter object that owns the endpoint store, serves the routes and
//! runs the dispatcher.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use petstore_core::{PetStore, Principal};
use petstore_http::Edge;
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::WebhookConfig;
use crate::dispatch;
use crate::registry::Registry;
use crate::target::{GuardedResolver, TargetPolicy};

/// State shared by the routes and the dispatcher.
pub(crate) struct Shared {
    pub(crate) store: PetStore,
    pub(crate) config: WebhookConfig,
    pub(crate) registry: Registry,
    pub(crate) client: Result<reqwest::Client, String>,
    pub(crate) policy: TargetPolicy,
    pub(crate) global: Arc<Semaphore>,
    /// Wakes the dispatcher: an endpoint appeared or a message is ready.
    pub(crate) wake: Notify,
    running: AtomicBool,
    runs: AtomicU64,
    /// Who the followers read the log as.
    pub(crate) follower: Principal,
    /// Who inbound payment notices act as.
    pub(crate) payments: Principal,
    /// Cancelled when the server shuts down: the dispatcher stops.
    shutdown: CancellationToken,
}

/// Signed outbound webhooks and the inbound payments webhook over a [`PetStore`].
///
/// Cheap to clone. [`Webhooks::router`] serves the routes; deliveries happen only
/// while the dispatcher runs ([`Webhooks::spawn_dispatcher`] or [`Webhooks::run`]),
/// and stop when the shutdown token given to [`Webhooks::new`] is cancelled (pending
/// messages stay pending and resume with the next run).
#[derive(Clone)]
pub struct Webhooks {
    shared: Arc<Shared>,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("config", &self.shared.config)
            .field("registry", &self.shared.registry)
            .finish_non_exhaustive()
    }
}

fn normalise(mut config: WebhookConfig) -> WebhookConfig {
    if config.retry_schedule.is_empty() {
        config.retry_schedule.push(Duration::ZERO);
    }
    config.jitter = if config.jitter.is_finite() {
        config.jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    config.endpoint_concurrency = config.endpoint_concurrency.max(1);
    config.global_concurrency = config.global_concurrency.clamp(1, Semaphore::MAX_PERMITS);
    config.endpoint_backlog = config.endpoint_backlog.clamp(1, Semaphore::MAX_PERMITS);
    config.message_log_size = config.message_log_size.max(1);
    config.attempt_log_size = config.attempt_log_size.max(1);
    config
}

fn http_client(config: &WebhookConfig, policy: TargetPolicy) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("petstore-webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        // A proxy would resolve the target itself, out of the guard's reach; a
        // redirect would lead anywhere. Receivers must answer at the URL given.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.connect_timeout)
        .timeout(config.response_timeout)
        .build()
        .map_err(|e| format!("the HTTP client could not be built: {e}"))
}

impl Webhooks {
    /// The adapter over `store`; cancelling `shutdown` stops its dispatcher.
    pub fn new(store: PetStore, config: WebhookConfig, shutdown: CancellationToken) -> Self {
        let config = normalise(config);
        let policy = TargetPolicy {
            allow_private: config.allow_private_targets,
            allow_loopback: config.allow_loopback,
        };
        let client = http_client(&config, policy);
        if let Err(e) = &client {
            tracing::error!("webhook deliveries will fail: {e}");
        }
        Self {
            shared: Arc::new(Shared {
                store,
                registry: Registry::new(config.clone()),
                global: Arc::new(Semaphore::new(config.global_concurrency)),
                config,
                client,
                policy,
                wake: Notify::new(),
                running: AtomicBool::new(false),
                runs: AtomicU64::new(0),
                // Endpoints are admin-managed and receive every event, whoever's.
                follower: Principal::system("petstore-webhooks"),
                // The payment provider's notices are for any customer's order.
                payments: Principal::system("payments-webhook"),
                shutdown,
            }),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &WebhookConfig {
        &self.shared.config
    }

    /// The routes behind `edge`: endpoint management under `/v1/webhooks` (admin) and
    /// the inbound `POST /v1/payments/webhook`. Merge it into an app with
    /// `Router::merge`.
    pub fn router(&self, edge: &Edge) -> Router {
        crate::routes::router(self.shared.clone(), edge)
            .merge(crate::inbound::router(self.shared.clone(), edge))
    }

    /// Whether a dispatcher of this `Webhooks` runs (for readiness checks).
    pub fn is_dispatching(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }

    /// Runs the dispatcher ([`Webhooks::run`]) on the current Tokio runtime until the
    /// shutdown token is cancelled or [`DispatcherHandle::shutdown`] is called.
    /// Dropping the handle leaves it running, like a `JoinHandle`. When a dispatcher of
    /// this `Webhooks` already runs, the returned handle is already finished.
    pub fn spawn_dispatcher(&self) -> DispatcherHandle {
        let stop = self.shared.shutdown.child_token();
        // Claimed before spawning, so a `run` started after this call is the second one.
        let claim = RunClaim::take(&self.shared);
        let this = self.clone();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let Some(claim) = claim else { return };
            this.run_claimed(claim, stopped.cancelled_owned()).await;
        });
        DispatcherHandle { stop, task }
    }

    /// Runs the dispatcher until the shutdown token is cancelled: every enabled
    /// endpoint follows the event log from its cursor, and messages are delivered with
    /// retries. Pending messages of an earlier run are resumed. Only one run at a time:
    /// a second concurrent call returns at once.
    pub async fn run(&self) {
        if let Some(claim) = RunClaim::take(&self.shared) {
            let stop = self.shared.shutdown.clone().cancelled_owned();
            self.run_claimed(claim, stop).await;
        }
    }

    async fn run_claimed(&self, claim: RunClaim, shutdown: impl Future<Output = ()>) {
        let shared = &self.shared;
        let run = claim.run;
        shared.registry.requeue_pending();
        let mut tasks = JoinSet::new();
        // What each task works on, so that a panicked task's claim can be released.
        let mut jobs: HashMap<tokio::task::Id, (String, Option<String>)> = HashMap::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            for id in shared.registry.claim_followers(run) {
                let task = tasks.spawn(dispatch::follow(shared.clone(), id.clone()));
                jobs.insert(task.id(), (id, None));
            }
            for (endpoint, message) in shared.registry.drain_ready() {
                let task = tasks.spawn(dispatch::deliver(
                    shared.clone(),
                    endpoint.clone(),
                    message.clone(),
                    run,
                ));
                jobs.insert(task.id(), (endpoint, Some(message)));
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = shared.wake.notified() => {}
                Some(done) = tasks.join_next_with_id() => {
                    // Every task that has finished by now, in one turn of the loop.
                    let mut next = Some(done);
                    while let Some(done) = next.take().or_else(|| tasks.try_join_next_with_id()) {
                        let (id, failure) = match done {
                            Ok((id, ())) => (id, None),
                            Err(e) => (e.id(), Some(e)),
                        };
                        let job = jobs.remove(&id);
                        if let (Some(e), Some((endpoint, message))) = (failure, job) {
                            tracing::error!(%endpoint, ?message, "a webhook dispatcher task failed: {e}");
                            shared.registry.task_failed(&endpoint, message.as_deref(), &e.to_string());
                        }
                    }
                }
            }
        }
        tasks.shutdown().await;
        drop(claim);
    }
}

/// The right to be the one running dispatcher; released when dropped.
struct RunClaim {
    shared: Arc<Shared>,
    run: u64,
}

impl RunClaim {
    fn take(shared: &Arc<Shared>) -> Option<Self> {
        if shared.running.swap(true, Ordering::AcqRel) {
            tracing::warn!("the webhook dispatcher is already running");
            return None;
        }
        Some(Self {
            shared: shared.clone(),
            run: shared.runs.fetch_add(1, Ordering::AcqRel) + 1,
        })
    }
}

impl Drop for RunClaim {
    fn drop(&mut self) {
        self.shared.running.store(false, Ordering::Release);
    }
}

/// The dispatcher started by [`Webhooks::spawn_dispatcher`].
#[derive(Debug)]
pub struct DispatcherHandle {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl DispatcherHandle {
    /// Stops following the log and delivering (pending messages stay pending and resume
    /// with the next run), and waits until every task has stopped.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!("the webhook dispatcher panicked: {e}");
        }
    }

    /// Whether the dispatcher has stopped.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}
