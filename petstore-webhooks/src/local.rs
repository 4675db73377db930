//! What one process keeps beside the [`crate::WebhookStore`], lost at exit by design:
//! per endpoint, the control channel that wakes its tasks, its in-flight semaphore and
//! a signal that one of its messages finished; and the dispatcher's inbox.
//!
//! The locks are plain mutexes, never held across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, Semaphore, watch};

use crate::ids::EndpointId;

struct Entry {
    /// Bumped whenever the endpoint's tasks must re-read it from the store; dropped
    /// with the entry, which tells every task the endpoint is gone.
    control: watch::Sender<u64>,
    /// Bounds the requests in flight to the endpoint.
    inflight: Arc<Semaphore>,
    /// Signalled when one of its pending messages finished: room in the backlog.
    freed: Arc<Notify>,
}

/// An endpoint's local handles, for its tasks.
#[derive(Debug)]
pub(crate) struct Handles {
    pub(crate) control: watch::Receiver<u64>,
    pub(crate) inflight: Arc<Semaphore>,
    pub(crate) freed: Arc<Notify>,
}

/// Hints queued for the dispatcher beyond which it reads the store instead: bounds
/// the inbox while no dispatcher of this process holds the lease.
const MAX_READY: usize = 10_000;

/// Work for the dispatcher loop.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    /// Messages queued by this process: `(endpoint, message id)`.
    pub(crate) ready: Vec<(EndpointId, String)>,
    /// Read the endpoints and pending messages from the store (an endpoint was
    /// created here, or hints were dropped).
    pub(crate) sync: bool,
}

/// The process-local side of the endpoints.
pub(crate) struct Local {
    endpoints: Mutex<HashMap<EndpointId, Entry>>,
    inbox: Mutex<Inbox>,
    /// Wakes the dispatcher loop when the inbox fills.
    pub(crate) wake: Notify,
    endpoint_concurrency: usize,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("endpoints", &lock(&self.endpoints).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent-enough data behind.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Local {
    pub(crate) fn new(endpoint_concurrency: usize) -> Self {
        Self {
            endpoints: Mutex::default(),
            inbox: Mutex::default(),
            wake: Notify::new(),
            endpoint_concurrency,
        }
    }

    /// Makes sure the endpoint has local handles (it exists in the store).
    pub(crate) fn ensure(&self, id: &EndpointId) {
        lock(&self.endpoints)
            .entry(id.clone())
            .or_insert_with(|| Entry {
                control: watch::Sender::new(0),
                inflight: Arc::new(Semaphore::new(self.endpoint_concurrency)),
                freed: Arc::new(Notify::new()),
            });
    }

    /// The endpoint's handles; `None` when it has none (deleted).
    pub(crate) fn handles(&self, id: &EndpointId) -> Option<Handles> {
        lock(&self.endpoints).get(id).map(|e| Handles {
            control: e.control.subscribe(),
            inflight: e.inflight.clone(),
            freed: e.freed.clone(),
        })
    }

    /// How many tasks of this process work on the endpoint.
    #[cfg(test)]
    pub(crate) fn tasks(&self, id: &EndpointId) -> usize {
        lock(&self.endpoints)
            .get(id)
            .map_or(0, |e| e.control.receiver_count())
    }

    /// Tells the endpoint's tasks to re-read it.
    pub(crate) fn poke(&self, id: &EndpointId) {
        if let Some(e) = lock(&self.endpoints).get(id) {
            e.control.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// Drops the endpoint's handles: its tasks stop.
    pub(crate) fn forget(&self, id: &EndpointId) {
        lock(&self.endpoints).remove(id);
    }

    /// Keeps the handles of the endpoints `exists` accepts, and pokes every endpoint
    /// `changed` accepts.
    pub(crate) fn retain(
        &self,
        exists: impl Fn(&EndpointId) -> bool,
        changed: impl Fn(&EndpointId) -> bool,
    ) {
        let mut endpoints = lock(&self.endpoints);
        endpoints.retain(|id, _| exists(id));
        for (id, e) in endpoints.iter() {
            if changed(id) {
                e.control.send_modify(|g| *g = g.wrapping_add(1));
            }
        }
    }

    /// One of the endpoint's pending messages finished.
    pub(crate) fn freed(&self, id: &EndpointId) {
        if let Some(e) = lock(&self.endpoints).get(id) {
            // A permit is stored when nobody waits: a follower about to wait sees it.
            e.freed.notify_one();
        }
    }

    /// A message is ready for a delivery task.
    pub(crate) fn ready(&self, id: EndpointId, message: String) {
        let mut inbox = lock(&self.inbox);
        if inbox.ready.len() < MAX_READY {
            inbox.ready.push((id, message));
        } else {
            inbox.sync = true;
        }
        drop(inbox);
        self.wake.notify_one();
    }

    /// Asks the dispatcher to read the store (e.g. an endpoint was created: it starts
    /// following it).
    pub(crate) fn sync(&self) {
        lock(&self.inbox).sync = true;
        self.wake.notify_one();
    }

    /// Empties the inbox.
    pub(crate) fn take_inbox(&self) -> Inbox {
        std::mem::take(&mut *lock(&self.inbox))
    }
}
