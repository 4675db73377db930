//! [`MemoryWebhookStore`]: the default [`WebhookStore`], in process memory.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use petstore_core::{Error, Result, ResumeToken};

use crate::backend::{
    Advance, Attempt, Endpoint, Limits, Message, MessageStatus, Queue, WebhookStore,
};
use crate::ids::EndpointId;
use crate::message_log::MessageLog;

/// A [`WebhookStore`] in process memory: lost at exit. Clones share the same state, so
/// two dispatchers (one after the other) can work on it as on a database.
///
/// The lock is a plain mutex, never held across an `.await`.
#[derive(Clone, Default)]
pub struct MemoryWebhookStore {
    state: Arc<Mutex<BTreeMap<EndpointId, Slot>>>,
}

struct Slot {
    endpoint: Endpoint,
    messages: MessageLog,
    /// Oldest first.
    attempts: VecDeque<Attempt>,
}

impl fmt::Debug for MemoryWebhookStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryWebhookStore")
            .field("endpoints", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl MemoryWebhookStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<EndpointId, Slot>> {
        // A panic while holding the lock leaves consistent-enough data behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Queues `message` in `slot` (the rules of [`WebhookStore::queue`]).
fn queue_into(slot: &mut Slot, message: &Message, limits: &Limits) -> Queue {
    let log = &mut slot.messages;
    if log.is_pending(&message.id) {
        return Queue::Pending;
    }
    if log.pending() >= limits.pending {
        return Queue::Full;
    }
    if let Some(m) = log.reopen(&message.id, message.next_attempt_at) {
        return Queue::Queued(Box::new(m.clone()));
    }
    let mut message = message.clone();
    message.status = MessageStatus::Pending;
    log.push(message.clone(), limits.messages);
    Queue::Queued(Box::new(message))
}

#[async_trait]
impl WebhookStore for MemoryWebhookStore {
    async fn create_endpoint(&self, endpoint: &Endpoint, limit: usize) -> Result<bool> {
        let mut state = self.lock();
        if state.len() >= limit || state.contains_key(&endpoint.id) {
            return Ok(false);
        }
        state.insert(
            endpoint.id.clone(),
            Slot {
                endpoint: endpoint.clone(),
                messages: MessageLog::default(),
                attempts: VecDeque::new(),
            },
        );
        Ok(true)
    }

    async fn endpoint(&self, id: &EndpointId) -> Result<Option<Endpoint>> {
        Ok(self.lock().get(id).map(|s| s.endpoint.clone()))
    }

    async fn endpoints(&self) -> Result<Vec<Endpoint>> {
        Ok(self.lock().values().map(|s| s.endpoint.clone()).collect())
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool> {
        let mut state = self.lock();
        let Some(slot) = state.get_mut(&endpoint.id) else {
            return Ok(false);
        };
        let stored = &mut slot.endpoint;
        if stored.version != endpoint.version {
            return Ok(false);
        }
        let mut next = endpoint.clone();
        if next.revision == stored.revision {
            next.cursor = stored.cursor;
            next.last_gap = stored.last_gap.take();
        }
        next.version += 1;
        *stored = next;
        Ok(true)
    }

    async fn delete_endpoint(&self, id: &EndpointId) -> Result<bool> {
        Ok(self.lock().remove(id).is_some())
    }

    async fn advance(
        &self,
        endpoint: &EndpointId,
        revision: u64,
        cursor: ResumeToken,
        message: Option<&Message>,
        limits: &Limits,
    ) -> Result<Advance> {
        let mut state = self.lock();
        let Some(slot) = state.get_mut(endpoint) else {
            return Ok(Advance::Gone);
        };
        if slot.endpoint.revision != revision {
            return Ok(Advance::Stale);
        }
        let advance = match message.map(|m| queue_into(slot, m, limits)) {
            None | Some(Queue::Pending) => Advance::Moved,
            Some(Queue::Queued(_)) => Advance::Queued,
            Some(Queue::Full) => return Ok(Advance::Full),
        };
        slot.endpoint.cursor = cursor;
        Ok(advance)
    }

    async fn queue(&self, message: &Message, limits: &Limits) -> Result<Queue> {
        let mut state = self.lock();
        let slot = state
            .get_mut(&message.endpoint)
            .ok_or_else(|| Error::not_found("webhook endpoint", &message.endpoint))?;
        Ok(queue_into(slot, message, limits))
    }

    async fn message(&self, endpoint: &EndpointId, id: &str) -> Result<Option<Message>> {
        Ok(self
            .lock()
            .get(endpoint)
            .and_then(|s| s.messages.get(id).cloned()))
    }

    async fn messages(&self, endpoint: &EndpointId, limit: usize) -> Result<Vec<Message>> {
        Ok(self.lock().get(endpoint).map_or_else(Vec::new, |s| {
            s.messages.newest().take(limit).cloned().collect()
        }))
    }

    async fn pending(&self) -> Result<Vec<(EndpointId, String)>> {
        let state = self.lock();
        Ok(state
            .iter()
            .filter(|(_, s)| s.messages.pending() > 0)
            .flat_map(|(id, s)| {
                s.messages
                    .oldest()
                    .filter(|m| m.status == MessageStatus::Pending)
                    .map(move |m| (id.clone(), m.id.clone()))
            })
            .collect())
    }

    async fn settle(
        &self,
        message: &Message,
        attempt: Option<&Attempt>,
        limits: &Limits,
    ) -> Result<bool> {
        let mut state = self.lock();
        let Some(slot) = state.get_mut(&message.endpoint) else {
            return Ok(false);
        };
        let Some(stored) = slot.messages.pending_mut(&message.id) else {
            return Ok(false);
        };
        stored.attempts = message.attempts;
        stored.step = message.step;
        stored.last_attempt_at = message.last_attempt_at;
        stored.next_attempt_at = message.next_attempt_at;
        stored.last_status_code = message.last_status_code;
        stored.last_error.clone_from(&message.last_error);
        if message.status != MessageStatus::Pending {
            slot.messages.finish_pending(&message.id, message.status);
        }
        if let Some(attempt) = attempt {
            slot.attempts.push_back(attempt.clone());
            while slot.attempts.len() > limits.attempts {
                slot.attempts.pop_front();
            }
        }
        Ok(true)
    }

    async fn attempts(
        &self,
        endpoint: &EndpointId,
        message: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Attempt>> {
        Ok(self.lock().get(endpoint).map_or_else(Vec::new, |s| {
            s.attempts
                .iter()
                .rev()
                .filter(|a| message.is_none_or(|m| a.message_id == m))
                .take(limit)
                .cloned()
                .collect()
        }))
    }
}
