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

/// Work for the dispatcher loop.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    /// Messages queued by this process: `(endpoint, message id)`.
    pub(crate) ready: Vec<(EndpointId, String)>,
    /// An endpoint was created here: start following it.
    pub(crate) endpoints_changed: bool,
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
    pub(crate) fn sync(
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
        lock(&self.inbox).ready.push((id, message));
        self.wake.notify_one();
    }

    /// An endpoint was created: the dispatcher starts following it.
    pub(crate) fn endpoints_changed(&self) {
        lock(&self.inbox).endpoints_changed = true;
        self.wake.notify_one();
    }

    /// Empties the inbox.
    pub(crate) fn take_inbox(&self) -> Inbox {
        std::mem::take(&mut *lock(&self.inbox))
    }
}
