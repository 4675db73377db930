//! The dispatcher loop: while this process holds the delivery lease, one follower task
//! per endpoint and one delivery task per pending message, started from what the
//! store holds (cursors, pending messages) and from what this process queues.
//!
//! Losing the lease stops every task; the store keeps where each endpoint and message
//! stands, so whoever holds the lease next goes on from there.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::MissedTickBehavior;

use crate::backend::WebhookStoreExt;
use crate::endpoints::disable;
use crate::ids::EndpointId;
use crate::webhooks::AppState;
use crate::{dispatch, follow};

/// Runs until `shutdown` completes, delivering only while the lease is held.
pub(crate) async fn run(shared: Arc<AppState>, shutdown: impl Future<Output = ()>) {
    let mut lease = shared.lease.clone();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = lease.acquired() => {}
        }
        tracing::debug!("holding the webhook delivery lease");
        let mut jobs = Jobs::new(shared.clone());
        let lost = tokio::select! {
            () = jobs.run() => false,
            () = lease.lost() => true,
            () = &mut shutdown => false,
        };
        jobs.stop().await;
        if !lost {
            lease.release().await;
            return;
        }
        tracing::info!("lost the webhook delivery lease: delivery stopped");
    }
}

/// What a task works on.
#[derive(Debug)]
enum Job {
    Follow(EndpointId),
    Deliver(EndpointId, String),
}

/// The tasks of one term of the lease.
struct Jobs {
    shared: Arc<AppState>,
    tasks: JoinSet<()>,
    running: HashMap<Id, Job>,
    followed: HashSet<EndpointId>,
    delivering: HashSet<(EndpointId, String)>,
    /// Messages queued again while their previous task was still finishing.
    again: HashSet<(EndpointId, String)>,
    /// `(version, revision)` of every endpoint at the last sync.
    seen: HashMap<EndpointId, (u64, u64)>,
}

impl Jobs {
    fn new(shared: Arc<AppState>) -> Self {
        Self {
            shared,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            followed: HashSet::new(),
            delivering: HashSet::new(),
            again: HashSet::new(),
            seen: HashMap::new(),
        }
    }

    /// Never returns: ends when the caller drops it.
    async fn run(&mut self) {
        // What the inbox holds so far, the store has too.
        self.shared.local.take_inbox();
        self.sync().await;
        let mut tick = tokio::time::interval(self.shared.config.sync_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let inbox = self.shared.local.take_inbox();
            if inbox.sync {
                self.sync().await;
            }
            for (endpoint, message) in inbox.ready {
                if !self.spawn_delivery(endpoint.clone(), message.clone()) {
                    self.again.insert((endpoint, message));
                }
            }
            tokio::select! {
                () = self.shared.local.wake.notified() => {}
                _ = tick.tick() => self.sync().await,
                Some(done) = self.tasks.join_next_with_id() => {
                    // Every task that has finished by now, in one turn of the loop.
                    let mut next = Some(done);
                    while let Some(done) = next.take().or_else(|| self.tasks.try_join_next_with_id()) {
                        self.finished(done).await;
                    }
                }
            }
        }
    }

    async fn stop(mut self) {
        self.tasks.shutdown().await;
    }

    /// Reads the store: followers for every endpoint, deliveries for every pending
    /// message (after a restart, the retries that were due go on).
    async fn sync(&mut self) {
        self.sync_endpoints().await;
        match self.shared.webhook_store.pending().await {
            Ok(pending) => {
                for (endpoint, message) in pending {
                    self.spawn_delivery(endpoint, message);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the pending webhook messages"),
        }
    }

    /// Starts a follower for every endpoint without one; pokes the tasks of endpoints
    /// changed elsewhere; drops the local handles of endpoints deleted elsewhere.
    async fn sync_endpoints(&mut self) {
        let endpoints = match self.shared.webhook_store.endpoints().await {
            Ok(endpoints) => endpoints,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the webhook endpoints");
                return;
            }
        };
        let now: HashMap<EndpointId, (u64, u64)> = endpoints
            .iter()
            .map(|e| (e.id.clone(), (e.version, e.revision)))
            .collect();
        let local = &self.shared.local;
        for id in now.keys() {
            local.ensure(id);
        }
        // Only endpoints seen before: one created since the read above stays.
        let seen = std::mem::take(&mut self.seen);
        local.retain(
            |id| now.contains_key(id) || !seen.contains_key(id),
            |id| seen.get(id).is_some_and(|was| now.get(id) != Some(was)),
        );
        for id in now.keys() {
            if !self.followed.contains(id) {
                let task = self
                    .tasks
                    .spawn(follow::follow(self.shared.clone(), id.clone()));
                self.running.insert(task.id(), Job::Follow(id.clone()));
                self.followed.insert(id.clone());
            }
        }
        self.seen = now;
    }

    /// Starts a delivery task unless one runs for the message already (`false`).
    fn spawn_delivery(&mut self, endpoint: EndpointId, message: String) -> bool {
        let key = (endpoint, message);
        if self.delivering.contains(&key) {
            return false;
        }
        let task = self.tasks.spawn(dispatch::deliver(
            self.shared.clone(),
            key.0.clone(),
            key.1.clone(),
        ));
        self.running
            .insert(task.id(), Job::Deliver(key.0.clone(), key.1.clone()));
        self.delivering.insert(key);
        true
    }

    async fn finished(&mut self, done: Result<(Id, ()), JoinError>) {
        let (id, failure) = match done {
            Ok((id, ())) => (id, None),
            Err(e) => (e.id(), Some(e)),
        };
        match self.running.remove(&id) {
            Some(Job::Follow(endpoint)) => {
                self.followed.remove(&endpoint);
                if let Some(e) = failure {
                    tracing::error!(%endpoint, "a webhook follower failed: {e}");
                    self.follower_failed(&endpoint, &e.to_string()).await;
                }
            }
            Some(Job::Deliver(endpoint, message)) => {
                let key = (endpoint, message);
                self.delivering.remove(&key);
                if let Some(e) = failure {
                    tracing::error!(endpoint = %key.0, message = %key.1, "a webhook delivery task failed: {e}");
                    let failed = self
                        .shared
                        .deliveries()
                        .task_failed(&key.0, &key.1, &e.to_string())
                        .await;
                    if let Err(e) = failed {
                        tracing::warn!(error = %e, "cannot record a failed webhook delivery");
                    }
                }
                if self.again.remove(&key) {
                    self.spawn_delivery(key.0, key.1);
                }
            }
            None => {}
        }
    }

    /// A dead follower disables its endpoint, saying why; the follower started next
    /// waits for it to be enabled again (it is not restarted in a loop).
    async fn follower_failed(&self, endpoint: &EndpointId, why: &str) {
        let reason = format!("internal error while following the event log: {why}");
        let disabled = self
            .shared
            .webhook_store
            .modify_endpoint(endpoint, |e| Ok(disable(e, reason.clone())))
            .await;
        if let Err(e) = disabled {
            tracing::warn!(%endpoint, error = %e, "cannot disable a webhook endpoint");
        }
        self.shared.local.poke(endpoint);
        self.shared.local.sync();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::http::{HeaderMap, StatusCode};
    use petstore_core::{NewPet, PetStore, Principal};
    use tokio::sync::watch;

    use crate::backend::{MessageStatus, WebhookStore};
    use crate::ids::EndpointId;
    use crate::lease::Lease;
    use crate::{MemoryWebhookStore, WebhookConfig, Webhooks};

    const WAIT: Duration = Duration::from_secs(10);

    /// A receiver answering `status`, recording each request's `webhook-id`.
    async fn receiver(status: Arc<AtomicU16>) -> (String, Arc<Mutex<Vec<String>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let seen = seen.clone();
            let status = status.clone();
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                seen.lock().unwrap().push(id);
                StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/hook"), got)
    }

    async fn until<F: Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn create_pet(service: &PetStore, name: &str) -> String {
        let new: NewPet = serde_json::from_value(serde_json::json!({
            "name": name,
            "species": "dog",
            "price": { "amount": "10.00", "currency": "USD" },
        }))
        .unwrap();
        let pet = service
            .create_pet(&Principal::system("test"), new)
            .await
            .unwrap();
        pet.id.to_string()
    }

    /// The `webhook-id` (event id) of the message for the pet `subject`.
    async fn message_of(
        store: &MemoryWebhookStore,
        id: &EndpointId,
        body_has: &str,
    ) -> Option<(String, MessageStatus, u32)> {
        let messages = store.messages(id, 100).await.unwrap();
        messages
            .into_iter()
            .find(|m| std::str::from_utf8(&m.body).unwrap().contains(body_has))
            .map(|m| (m.id, m.status, m.attempts))
    }

    async fn succeeded(store: &MemoryWebhookStore, id: &EndpointId, pet: &str) -> bool {
        message_of(store, id, pet)
            .await
            .is_some_and(|(_, status, _)| status == MessageStatus::Succeeded)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_lease_holder_delivers_and_the_next_one_goes_on_from_the_store() {
        // Two instances on one service and one webhook store, as two processes on one
        // database.
        let service = PetStore::in_memory();
        let store = MemoryWebhookStore::new();
        let config = WebhookConfig::default()
            .allow_loopback(true)
            .retry_schedule(std::iter::once(Duration::ZERO).chain([Duration::from_millis(20); 200]))
            .jitter(0.0)
            .sync_interval(Duration::from_millis(10));
        let (grant_a, lease_a) = watch::channel(true);
        let (grant_b, lease_b) = watch::channel(false);
        let instance = |lease| {
            Webhooks::build(
                service.clone(),
                config.clone(),
                Arc::new(store.clone()),
                Lease::following(lease),
                tokio_util::sync::CancellationToken::new(),
            )
        };
        let (a, b) = (instance(lease_a), instance(lease_b));
        let (dispatcher_a, dispatcher_b) = (a.spawn_dispatcher(), b.spawn_dispatcher());
        let status = Arc::new(AtomicU16::new(200));
        let (url, got) = receiver(status.clone()).await;

        let head = service.head().await.unwrap();
        let endpoint = a
            .shared()
            .endpoints()
            .create(url.parse().unwrap(), String::new(), vec![], head)
            .await
            .unwrap();
        let id = endpoint.id().clone();
        let one = create_pet(&service, "One").await;
        until("the first event delivered by A", || {
            succeeded(&store, &id, &one)
        })
        .await;

        // A makes failed attempts at the second event, then loses the lease.
        status.store(503, Ordering::SeqCst);
        let two = create_pet(&service, "Two").await;
        until("five failed attempts by A", || async {
            message_of(&store, &id, &two)
                .await
                .is_some_and(|(_, _, n)| n >= 5)
        })
        .await;
        // Meanwhile (four retry delays, many sync intervals) B, without the lease,
        // never read the store: it has not even seen the endpoint.
        assert!(b.shared().local.handles(&id).is_none());
        assert!(a.shared().local.tasks(&id) >= 1, "A's follower");
        grant_a.send(false).unwrap();
        until("A stopped its tasks", || async {
            a.shared().local.tasks(&id) == 0
        })
        .await;
        status.store(200, Ordering::SeqCst);
        grant_b.send(true).unwrap();
        until("the second event delivered by B", || {
            succeeded(&store, &id, &two)
        })
        .await;
        let three = create_pet(&service, "Three").await;
        until("the third event delivered by B", || {
            succeeded(&store, &id, &three)
        })
        .await;

        let ids = got.lock().unwrap().clone();
        let (one_id, _, one_attempts) = message_of(&store, &id, &one).await.unwrap();
        let (two_id, _, two_attempts) = message_of(&store, &id, &two).await.unwrap();
        let (three_id, _, three_attempts) = message_of(&store, &id, &three).await.unwrap();
        let count = |wanted: &str| ids.iter().filter(|i| *i == wanted).count();
        assert_eq!((count(&one_id), one_attempts), (1, 1), "{ids:?}");
        assert_eq!((count(&three_id), three_attempts), (1, 1), "{ids:?}");
        // Every attempt at the second event carried its id; the one that succeeded
        // came after A's failures, in the same message.
        assert!(two_attempts >= 2, "{two_attempts}");
        assert!(count(&two_id) >= two_attempts as usize, "{ids:?}");
        assert_eq!(
            ids.len(),
            count(&one_id) + count(&two_id) + count(&three_id)
        );
        let endpoint = store.endpoint(&id).await.unwrap().unwrap();
        assert_eq!(endpoint.cursor, service.head().await.unwrap());

        dispatcher_a.shutdown().await;
        dispatcher_b.shutdown().await;
    }
}
