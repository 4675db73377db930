//! [`Webhooks`]: the adapter object that owns the webhook store, serves the routes and
//! runs the dispatcher.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use petstore_core::{PetStore, Principal};
use petstore_http::Edge;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backend::WebhookStore;
use crate::config::WebhookConfig;
use crate::delivery::Deliveries;
use crate::endpoints::Endpoints;
use crate::lease::Lease;
use crate::local::Local;
use crate::memory::MemoryWebhookStore;
use crate::messages::{Bodies, Log};
use crate::target::{GuardedResolver, TargetPolicy};

/// State shared by the routes and the dispatcher.
pub(crate) struct AppState {
    pub(crate) service: PetStore,
    pub(crate) config: WebhookConfig,
    /// Endpoints, messages and attempts.
    pub(crate) webhook_store: Arc<dyn WebhookStore>,
    /// This process's side of the endpoints, and the dispatcher's inbox.
    pub(crate) local: Local,
    pub(crate) bodies: Bodies,
    pub(crate) lease: Lease,
    pub(crate) client: Result<reqwest::Client, String>,
    pub(crate) policy: TargetPolicy,
    pub(crate) global: Arc<Semaphore>,
    running: AtomicBool,
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
    shared: Arc<AppState>,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("config", &self.shared.config)
            .field("webhook_store", &self.shared.webhook_store)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Endpoint management.
    pub(crate) fn endpoints(&self) -> Endpoints<'_> {
        Endpoints {
            store: &*self.webhook_store,
            local: &self.local,
            config: &self.config,
        }
    }

    /// The message and attempt log.
    pub(crate) fn log(&self) -> Log<'_> {
        Log {
            store: &*self.webhook_store,
        }
    }

    /// The delivery state machine.
    pub(crate) fn deliveries(&self) -> Deliveries<'_> {
        Deliveries {
            store: &*self.webhook_store,
            local: &self.local,
            config: &self.config,
        }
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
    config.sync_interval = config
        .sync_interval
        .max(std::time::Duration::from_millis(1));
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
    /// The adapter over `store`, keeping its endpoints, messages and attempts in memory
    /// ([`MemoryWebhookStore`]): they are lost at exit. Cancelling `shutdown` stops its
    /// dispatcher.
    pub fn new(store: PetStore, config: WebhookConfig, shutdown: CancellationToken) -> Self {
        Self::with_store(store, config, MemoryWebhookStore::new(), shutdown)
    }

    /// The adapter over `store`, keeping its endpoints, messages and attempts in
    /// `webhook_store`. A dispatcher started on a store that another one used before
    /// goes on where that one stopped: each endpoint from its cursor, each pending
    /// message with the same `webhook-id`. Cancelling `shutdown` stops its dispatcher.
    pub fn with_store(
        store: PetStore,
        config: WebhookConfig,
        webhook_store: impl WebhookStore,
        shutdown: CancellationToken,
    ) -> Self {
        let lease = Lease::of(store.clone(), config.lease_ttl);
        Self::build(store, config, Arc::new(webhook_store), lease, shutdown)
    }

    pub(crate) fn build(
        store: PetStore,
        config: WebhookConfig,
        webhook_store: Arc<dyn WebhookStore>,
        lease: Lease,
        shutdown: CancellationToken,
    ) -> Self {
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
            shared: Arc::new(AppState {
                service: store,
                webhook_store,
                local: Local::new(config.endpoint_concurrency),
                bodies: Bodies::default(),
                lease,
                global: Arc::new(Semaphore::new(config.global_concurrency)),
                config,
                client,
                policy,
                running: AtomicBool::new(false),
                // Endpoints are admin-managed and receive every event, whoever's.
                follower: Principal::system("petstore-webhooks"),
                // The payment provider's notices are for any customer's order.
                payments: Principal::system("payments-webhook"),
                shutdown,
            }),
        }
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &AppState {
        &self.shared
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
    /// retries. Pending messages of an earlier run (of this or another `Webhooks` on the
    /// same store) are resumed. Only one run at a time: a second concurrent call returns
    /// at once.
    pub async fn run(&self) {
        if let Some(claim) = RunClaim::take(&self.shared) {
            let stop = self.shared.shutdown.clone().cancelled_owned();
            self.run_claimed(claim, stop).await;
        }
    }

    async fn run_claimed(&self, claim: RunClaim, shutdown: impl Future<Output = ()>) {
        crate::dispatcher::run(self.shared.clone(), shutdown).await;
        drop(claim);
    }
}

/// The right to be the one running dispatcher; released when dropped.
struct RunClaim {
    shared: Arc<AppState>,
}

impl RunClaim {
    fn take(shared: &Arc<AppState>) -> Option<Self> {
        if shared.running.swap(true, Ordering::AcqRel) {
            tracing::warn!("the webhook dispatcher is already running");
            return None;
        }
        Some(Self {
            shared: shared.clone(),
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
