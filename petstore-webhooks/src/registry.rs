//! The adapter's own state, in memory: endpoints with their cursor and secrets, the
//! messages each endpoint owes, and the log of delivery attempts. Bounded: at most
//! `max_endpoints`, and per endpoint `message_log_size` messages (pending ones are
//! never dropped; at most `endpoint_backlog` are pending) and `attempt_log_size`
//! attempts.
//!
//! The lock is a plain mutex, never held across an `.await`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use petstore_core::{
    Error, ErrorKind, Event, EventId, EventType, Result, ResumeToken, TypePattern,
};
use reqwest::Url;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::WebhookConfig;
use crate::signing::{Signer, WebhookSecret};

/// The type of the test event sent by `POST /v1/webhooks/{id}/test`.
pub(crate) const TEST_EVENT_TYPE: &str = "webhook.test";

/// What the client sees of an endpoint.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EndpointView {
    id: String,
    url: String,
    description: String,
    /// Type patterns; empty means every event type.
    events: Vec<TypePattern>,
    enabled: bool,
    disabled_reason: Option<String>,
    /// Since when every attempt has failed (`null` while healthy).
    failing_since: Option<DateTime<Utc>>,
    /// The position of the last event this endpoint examined: pass it to `replay`.
    cursor: ResumeToken,
    /// Set when events could not be delivered because the cursor fell out of the
    /// retained log.
    last_gap: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Only in the answers of create and rotate.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl EndpointView {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

/// The secret of an endpoint (and the previous one during a rotation's grace period).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SecretView {
    secret: String,
    previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MessageStatus {
    /// Being delivered or waiting for its next attempt.
    Pending,
    /// A 2xx answer was received.
    Succeeded,
    /// Every attempt failed, or the receiver answered 410.
    Failed,
    /// Stopped because the endpoint was disabled.
    Cancelled,
}

/// What the client sees of a message owed to an endpoint.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MessageView {
    /// The `webhook-id`: the event id (`evt_...`), or `test_...` for test events.
    id: String,
    #[serde(rename = "type")]
    event_type: &'static str,
    status: MessageStatus,
    /// Attempts made so far (across redeliveries).
    attempts: u32,
    /// The event's position in the log (`null` for test events).
    offset: Option<ResumeToken>,
    created_at: DateTime<Utc>,
    last_attempt_at: Option<DateTime<Utc>>,
    next_attempt_at: Option<DateTime<Utc>>,
    last_status_code: Option<u16>,
    last_error: Option<String>,
}

/// One delivery attempt, as logged.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AttemptView {
    id: String,
    message_id: String,
    #[serde(rename = "type")]
    event_type: &'static str,
    /// 1 for the first attempt of the message, then 2, 3, ...
    attempt: u32,
    url: String,
    timestamp: DateTime<Utc>,
    status_code: Option<u16>,
    latency_ms: u64,
    outcome: AttemptOutcome,
    error: Option<String>,
    /// The start of the receiver's answer (at most 1 KiB).
    response_body: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AttemptOutcome {
    Succeeded,
    Failed,
}

struct MessageRecord {
    view: MessageView,
    /// Shared with the other endpoints' records of the same event.
    body: Bytes,
    /// Position in the endpoint's [`MessageLog`] (insertion order).
    seq: u64,
    /// The dispatcher run whose task is delivering it.
    claimed_by: Option<u64>,
    /// Held while pending: bounds the endpoint's backlog.
    permit: Option<OwnedSemaphorePermit>,
}

struct Entry {
    id: String,
    url: Url,
    description: String,
    events: Vec<TypePattern>,
    enabled: bool,
    disabled_reason: Option<String>,
    failing_since: Option<DateTime<Utc>>,
    cursor: ResumeToken,
    last_gap: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    secret: WebhookSecret,
    previous: Option<(WebhookSecret, DateTime<Utc>)>,
    messages: MessageLog,
    attempts: VecDeque<AttemptView>,
    /// Bumped whenever followers must re-read the entry (cursor moved, enabled
    /// changed); dropped with the entry, which tells every task it is gone.
    control: watch::Sender<u64>,
    /// The dispatcher run following this endpoint.
    follower: Option<u64>,
    inflight: Arc<Semaphore>,
    backlog: Arc<Semaphore>,
}

impl Entry {
    fn view(&self, with_secret: bool) -> EndpointView {
        EndpointView {
            id: self.id.clone(),
            url: self.url.to_string(),
            description: self.description.clone(),
            events: self.events.clone(),
            enabled: self.enabled,
            disabled_reason: self.disabled_reason.clone(),
            failing_since: self.failing_since,
            cursor: self.cursor,
            last_gap: self.last_gap.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            secret: with_secret.then(|| self.secret.expose()),
        }
    }

    fn secret_view(&self) -> SecretView {
        SecretView {
            secret: self.secret.expose(),
            previous_secret_expires_at: self
                .previous
                .as_ref()
                .map(|(_, at)| *at)
                .filter(|at| *at > Utc::now()),
        }
    }

    fn wants(&self, t: EventType) -> bool {
        self.events.is_empty() || self.events.iter().any(|p| p.matches(t))
    }

    fn bump(&self) {
        self.control.send_modify(|g| *g = g.wrapping_add(1));
    }

    fn disable(&mut self, reason: String) {
        if self.enabled {
            tracing::warn!(endpoint = %self.id, %reason, "webhook endpoint disabled");
            self.enabled = false;
            self.disabled_reason = Some(reason);
            self.updated_at = Utc::now();
            self.bump();
        }
    }
}

/// The messages an endpoint owes or remembers, in insertion order, indexed by id.
///
/// Eviction keeps the ring's rule: beyond `cap` records, the oldest finished ones go
/// (by insertion order; a redelivered message keeps its place); pending ones stay, so
/// the log may hold more than `cap` while many are pending.
#[derive(Default)]
struct MessageLog {
    /// Message id -> record. Ids are unique within an endpoint: a replayed event
    /// reuses its record.
    records: HashMap<String, MessageRecord>,
    /// Insertion order: `seq` -> message id.
    order: BTreeMap<u64, String>,
    /// The `seq` of every finished record, and possibly of records made pending again
    /// since (dropped lazily when eviction meets them).
    finished: BTreeSet<u64>,
    next_seq: u64,
}

impl MessageLog {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.records.len()
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut MessageRecord> {
        self.records.get_mut(id)
    }

    fn is_pending(&self, id: &str) -> bool {
        self.records
            .get(id)
            .is_some_and(|m| m.view.status == MessageStatus::Pending)
    }

    /// Newest first.
    fn newest(&self) -> impl Iterator<Item = &MessageRecord> {
        self.order
            .values()
            .rev()
            .filter_map(|id| self.records.get(id))
    }

    /// Oldest first.
    fn oldest(&self) -> impl Iterator<Item = &MessageRecord> {
        self.order.values().filter_map(|id| self.records.get(id))
    }

    /// Adds a new message (its id must not be in the log), dropping the oldest finished
    /// ones beyond `cap`.
    fn push(&mut self, mut record: MessageRecord, cap: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        record.seq = seq;
        let id = record.view.id.clone();
        if record.view.status != MessageStatus::Pending {
            self.finished.insert(seq);
        }
        self.order.insert(seq, id.clone());
        if let Some(old) = self.records.insert(id, record) {
            // Not expected (callers look the id up first); keep the index consistent.
            self.order.remove(&old.seq);
            self.finished.remove(&old.seq);
        }
        while self.records.len() > cap {
            let Some(seq) = self.finished.pop_first() else {
                break;
            };
            let Some(id) = self.order.remove(&seq) else {
                continue;
            };
            match self.records.remove(&id) {
                // Pending again since it finished: it stays (`finish` adds it back).
                Some(m) if m.view.status == MessageStatus::Pending => {
                    self.records.insert(id.clone(), m);
                    self.order.insert(seq, id);
                }
                _ => {}
            }
        }
    }

    /// Ends a message with `status`; `None` when it is not in the log.
    fn finish(&mut self, id: &str, status: MessageStatus) -> Option<&mut MessageRecord> {
        let m = self.records.get_mut(id)?;
        m.view.status = status;
        m.view.next_attempt_at = None;
        m.claimed_by = None;
        m.permit = None;
        self.finished.insert(m.seq);
        Some(m)
    }
}

/// Changes requested by `PATCH /v1/webhooks/{id}`.
#[derive(Debug, Default)]
pub(crate) struct EndpointPatch {
    pub(crate) url: Option<Url>,
    pub(crate) description: Option<String>,
    pub(crate) events: Option<Vec<TypePattern>>,
    pub(crate) enabled: Option<bool>,
}

/// What the follower should do with an event.
#[derive(Debug)]
pub(crate) enum Take {
    /// The endpoint changed (cursor or enabled) since the follower subscribed.
    Stale,
    /// The endpoint is gone.
    Gone,
    /// Nothing to deliver (already pending); the cursor moved on.
    Skip,
    /// A message was queued for delivery.
    Queued,
}

/// Everything one attempt needs.
#[derive(Debug)]
pub(crate) struct AttemptPlan {
    pub(crate) url: Url,
    pub(crate) signer: Signer,
    pub(crate) body: Bytes,
    pub(crate) attempt: u32,
}

/// The result of one attempt, to be logged.
#[derive(Debug)]
pub(crate) struct AttemptReport {
    pub(crate) url: String,
    pub(crate) started: DateTime<Utc>,
    pub(crate) latency: Duration,
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) response_body: Option<String>,
    pub(crate) retry_after: Option<Duration>,
}

/// What the delivery task does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try again (no earlier than the given `Retry-After`).
    Retry(Option<Duration>),
    /// Finished, successfully or not.
    Done,
}

#[derive(Default)]
struct State {
    endpoints: BTreeMap<String, Entry>,
    /// Messages waiting for the dispatcher to start a delivery task.
    ready: VecDeque<(String, String)>,
    /// The dispatcher run that has a follower for every endpoint, until an endpoint
    /// needs one (created, or its follower died).
    followed_by: Option<u64>,
}

/// How many recent event bodies [`BodyCache`] keeps.
const BODY_CACHE_SIZE: usize = 16;

/// The bodies of the latest events taken, so that every endpoint taking an event
/// shares one copy of its body (the followers of all endpoints read the same events
/// at about the same time).
#[derive(Default)]
struct BodyCache(VecDeque<(EventId, Bytes)>);

impl BodyCache {
    fn get(&self, event: &Event) -> Option<Bytes> {
        self.0
            .iter()
            .rev()
            .find(|(id, _)| id == event.id())
            .map(|(_, body)| body.clone())
    }

    /// Remembers `body` (or returns the one another follower stored meanwhile).
    fn insert(&mut self, event: &Event, body: Bytes) -> Bytes {
        if let Some(stored) = self.get(event) {
            return stored;
        }
        if self.0.len() >= BODY_CACHE_SIZE {
            self.0.pop_front();
        }
        self.0.push_back((event.id().clone(), body.clone()));
        body
    }
}

/// The endpoint store.
pub(crate) struct Registry {
    state: Mutex<State>,
    /// Apart from `state`, so that bodies are built without holding the state lock.
    bodies: Mutex<BodyCache>,
    config: WebhookConfig,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("endpoints", &self.lock().endpoints.len())
            .finish_non_exhaustive()
    }
}

fn not_found(id: &str) -> Error {
    Error::not_found("webhook endpoint", id)
}

fn new_id(prefix: &str) -> String {
    let mut hex = uuid::Uuid::encode_buffer();
    let hex = uuid::Uuid::now_v7().simple().encode_lower(&mut hex);
    let mut id = String::with_capacity(prefix.len() + hex.len());
    id.push_str(prefix);
    id.push_str(hex);
    id
}

/// The JSON body of a domain event: the envelope plus the Standard Webhooks
/// `timestamp` (the event time, in the same format as `time`).
///
/// Built from the event's cached envelope text ([`Event::json`]): the envelope's
/// closing brace is replaced by `,"timestamp":"..."}`. The envelope has no
/// `timestamp` member, so the result is the same JSON object as the envelope plus
/// that member.
pub(crate) fn event_body(event: &Event) -> Bytes {
    let envelope = event.json();
    let Some(open) = envelope.trim_end().strip_suffix('}') else {
        // Not an object: cannot happen for a struct, but never send a broken body.
        return Bytes::from(envelope.as_bytes().to_vec());
    };
    let mut body = Vec::with_capacity(envelope.len() + 48);
    body.extend_from_slice(open.as_bytes());
    body.extend_from_slice(b",\"timestamp\":");
    // Writing a timestamp into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut body, &event.time());
    body.push(b'}');
    Bytes::from(body)
}

impl Registry {
    pub(crate) fn new(config: WebhookConfig) -> Self {
        Self {
            state: Mutex::default(),
            bodies: Mutex::default(),
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough data behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The body of `event`, shared with the other endpoints that take it. Built (and
    /// the envelope serialised, the first time) outside every lock.
    fn body(&self, event: &Event) -> Bytes {
        let cache = || self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(body) = cache().get(event) {
            return body;
        }
        let body = event_body(event);
        cache().insert(event, body)
    }

    fn with<T>(&self, id: &str, f: impl FnOnce(&mut Entry) -> Result<T>) -> Result<T> {
        let mut state = self.lock();
        let entry = state.endpoints.get_mut(id).ok_or_else(|| not_found(id))?;
        f(entry)
    }

    // ----- management ----------------------------------------------------------------

    pub(crate) fn create(
        &self,
        url: Url,
        description: String,
        events: Vec<TypePattern>,
        head: ResumeToken,
    ) -> Result<EndpointView> {
        let mut state = self.lock();
        if state.endpoints.len() >= self.config.max_endpoints {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "there are already {} webhook endpoints (the maximum)",
                    state.endpoints.len()
                ),
            ));
        }
        let now = Utc::now();
        let id = new_id("ep_");
        let entry = Entry {
            id: id.clone(),
            url,
            description,
            events,
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            cursor: head,
            last_gap: None,
            created_at: now,
            updated_at: now,
            secret: WebhookSecret::generate(),
            previous: None,
            messages: MessageLog::default(),
            attempts: VecDeque::new(),
            control: watch::Sender::new(0),
            follower: None,
            inflight: Arc::new(Semaphore::new(self.config.endpoint_concurrency)),
            backlog: Arc::new(Semaphore::new(self.config.endpoint_backlog)),
        };
        let view = entry.view(true);
        state.endpoints.insert(id, entry);
        state.followed_by = None;
        Ok(view)
    }

    pub(crate) fn list(&self) -> Vec<EndpointView> {
        self.lock()
            .endpoints
            .values()
            .map(|e| e.view(false))
            .collect()
    }

    pub(crate) fn get(&self, id: &str) -> Result<EndpointView> {
        self.with(id, |e| Ok(e.view(false)))
    }

    /// Applies a patch; `head` is where a re-enabled endpoint starts.
    pub(crate) fn update(
        &self,
        id: &str,
        patch: EndpointPatch,
        head: ResumeToken,
    ) -> Result<EndpointView> {
        self.with(id, |e| {
            if let Some(url) = patch.url {
                e.url = url;
            }
            if let Some(description) = patch.description {
                e.description = description;
            }
            if let Some(events) = patch.events {
                e.events = events;
            }
            match patch.enabled {
                Some(false) if e.enabled => e.disable("disabled by an administrator".to_owned()),
                Some(true) if !e.enabled => {
                    // Like Svix and Stripe, a re-enabled endpoint starts with new events;
                    // `replay` recovers the ones it missed.
                    e.enabled = true;
                    e.disabled_reason = None;
                    e.failing_since = None;
                    e.cursor = head;
                    e.bump();
                }
                _ => {}
            }
            e.updated_at = Utc::now();
            Ok(e.view(false))
        })
    }

    pub(crate) fn delete(&self, id: &str) -> Result<()> {
        // Dropping the entry drops its control channel: its tasks stop.
        self.lock()
            .endpoints
            .remove(id)
            .map(drop)
            .ok_or_else(|| not_found(id))
    }

    pub(crate) fn secret(&self, id: &str) -> Result<SecretView> {
        self.with(id, |e| Ok(e.secret_view()))
    }

    /// Replaces the secret; the previous one keeps signing for the grace period.
    pub(crate) fn rotate(&self, id: &str) -> Result<SecretView> {
        let grace =
            chrono::Duration::from_std(self.config.rotation_grace).unwrap_or(chrono::Duration::MAX);
        self.with(id, |e| {
            let old = std::mem::replace(&mut e.secret, WebhookSecret::generate());
            let expires = Utc::now()
                .checked_add_signed(grace)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            e.previous = Some((old, expires));
            e.updated_at = Utc::now();
            Ok(e.secret_view())
        })
    }

    pub(crate) fn messages(&self, id: &str, limit: usize) -> Result<Vec<MessageView>> {
        self.with(id, |e| {
            Ok(e.messages
                .newest()
                .take(limit)
                .map(|m| m.view.clone())
                .collect())
        })
    }

    pub(crate) fn attempts(
        &self,
        id: &str,
        message: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AttemptView>> {
        self.with(id, |e| {
            Ok(e.attempts
                .iter()
                .rev()
                .filter(|a| message.is_none_or(|m| a.message_id == m))
                .take(limit)
                .cloned()
                .collect())
        })
    }

    /// Points the cursor at `since`: the follower re-reads the log from there.
    pub(crate) fn replay(&self, id: &str, since: ResumeToken) -> Result<EndpointView> {
        self.with(id, |e| {
            if !e.enabled {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("webhook endpoint `{id}` is disabled: enable it first"),
                ));
            }
            e.cursor = since;
            e.last_gap = None;
            e.updated_at = Utc::now();
            e.bump();
            Ok(e.view(false))
        })
    }

    /// Queues another delivery of a finished message.
    pub(crate) fn redeliver(&self, id: &str, message: &str) -> Result<MessageView> {
        let mut state = self.lock();
        let e = state.endpoints.get_mut(id).ok_or_else(|| not_found(id))?;
        let enabled = e.enabled;
        let backlog = e.backlog.clone();
        let m = e.messages.get_mut(message).ok_or_else(|| {
            Error::not_found(&format!("message of webhook endpoint `{id}`"), message)
        })?;
        if m.view.status == MessageStatus::Pending {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("message `{message}` is still being delivered"),
            ));
        }
        if !enabled {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("webhook endpoint `{id}` is disabled: enable it first"),
            ));
        }
        m.permit = Some(backlog_permit(backlog, id)?);
        m.view.status = MessageStatus::Pending;
        m.view.next_attempt_at = None;
        m.claimed_by = None;
        let view = m.view.clone();
        state.ready.push_back((id.to_owned(), message.to_owned()));
        Ok(view)
    }

    /// Queues a test event for the endpoint.
    pub(crate) fn test_message(&self, id: &str, source: &str) -> Result<MessageView> {
        let mut state = self.lock();
        let cap = self.config.message_log_size;
        let e = state.endpoints.get_mut(id).ok_or_else(|| not_found(id))?;
        if !e.enabled {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("webhook endpoint `{id}` is disabled: enable it first"),
            ));
        }
        let permit = backlog_permit(e.backlog.clone(), id)?;
        let now = Utc::now();
        let message_id = new_id("test_");
        let body = serde_json::json!({
            "type": TEST_EVENT_TYPE,
            "timestamp": now,
            "id": message_id,
            "source": source,
            "time": now,
            "subject": id,
            "data": {
                "endpoint_id": id,
                "message": "This is a test event from the Pet Store.",
            },
        });
        let record = MessageRecord {
            view: new_message_view(message_id.clone(), TEST_EVENT_TYPE, None, now),
            body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            seq: 0,
            claimed_by: None,
            permit: Some(permit),
        };
        let view = record.view.clone();
        e.messages.push(record, cap);
        state.ready.push_back((id.to_owned(), message_id));
        Ok(view)
    }

    // ----- following the log -----------------------------------------------------------

    /// Ids of endpoints nobody follows in `run`; they are now followed by `run`.
    pub(crate) fn claim_followers(&self, run: u64) -> Vec<String> {
        let mut state = self.lock();
        if state.followed_by == Some(run) {
            return Vec::new();
        }
        state.followed_by = Some(run);
        state
            .endpoints
            .values_mut()
            .filter(|e| e.follower != Some(run))
            .map(|e| {
                e.follower = Some(run);
                e.id.clone()
            })
            .collect()
    }

    /// Queues every pending message for a new dispatcher run (after a restart).
    pub(crate) fn requeue_pending(&self) {
        let mut state = self.lock();
        let pending: Vec<(String, String)> = state
            .endpoints
            .values()
            .flat_map(|e| {
                e.messages
                    .oldest()
                    .filter(|m| m.view.status == MessageStatus::Pending)
                    .map(|m| (e.id.clone(), m.view.id.clone()))
            })
            .collect();
        state.ready.extend(pending);
    }

    /// After a task died of a bug: a dead follower disables the endpoint, a dead
    /// delivery fails its message. Both say why, and neither is retried in a loop.
    pub(crate) fn task_failed(&self, id: &str, message: Option<&str>, why: &str) {
        let mut state = self.lock();
        let State {
            endpoints,
            followed_by,
            ..
        } = &mut *state;
        let Some(e) = endpoints.get_mut(id) else {
            return;
        };
        match message {
            None => {
                // The next round of `claim_followers` starts another one.
                e.follower = None;
                *followed_by = None;
                e.disable(format!(
                    "internal error while following the event log: {why}"
                ));
            }
            Some(message) => {
                if e.messages.is_pending(message)
                    && let Some(m) = e.messages.finish(message, MessageStatus::Failed)
                {
                    m.view.last_error = Some(format!("internal error while delivering: {why}"));
                }
            }
        }
    }

    pub(crate) fn drain_ready(&self) -> Vec<(String, String)> {
        self.lock().ready.drain(..).collect()
    }

    /// A receiver of the endpoint's control channel.
    pub(crate) fn control(&self, id: &str) -> Option<watch::Receiver<u64>> {
        self.lock().endpoints.get(id).map(|e| e.control.subscribe())
    }

    /// `(enabled, cursor)`, `None` when gone.
    pub(crate) fn follow_state(&self, id: &str) -> Option<(bool, ResumeToken)> {
        self.lock().endpoints.get(id).map(|e| (e.enabled, e.cursor))
    }

    pub(crate) fn is_enabled(&self, id: &str) -> bool {
        self.lock().endpoints.get(id).is_some_and(|e| e.enabled)
    }

    /// Whether the endpoint wants this event (`None` when gone).
    pub(crate) fn wants(&self, id: &str, t: EventType) -> Option<bool> {
        self.lock().endpoints.get(id).map(|e| e.wants(t))
    }

    pub(crate) fn backlog(&self, id: &str) -> Option<Arc<Semaphore>> {
        self.lock().endpoints.get(id).map(|e| e.backlog.clone())
    }

    /// Moves the cursor past an event that is not delivered.
    pub(crate) fn advance(&self, id: &str, generation: u64, offset: ResumeToken) -> Take {
        let mut state = self.lock();
        match state.endpoints.get_mut(id) {
            None => Take::Gone,
            Some(e) if *e.control.borrow() != generation => Take::Stale,
            Some(e) => {
                e.cursor = offset;
                Take::Skip
            }
        }
    }

    /// Moves the cursor past `event` and queues its message, unless one is already
    /// pending.
    pub(crate) fn take(
        &self,
        id: &str,
        generation: u64,
        event: &Event,
        permit: OwnedSemaphorePermit,
    ) -> Take {
        // Built before locking: replays of a pending message (`Skip`) are rare.
        let body = self.body(event);
        let mut state = self.lock();
        let State {
            endpoints, ready, ..
        } = &mut *state;
        let cap = self.config.message_log_size;
        let Some(e) = endpoints.get_mut(id) else {
            return Take::Gone;
        };
        if *e.control.borrow() != generation {
            return Take::Stale;
        }
        e.cursor = event.offset();
        let message_id = event.id().as_str();
        match e.messages.get_mut(message_id) {
            Some(m) if m.view.status == MessageStatus::Pending => return Take::Skip,
            // Replayed: deliver again under the same webhook-id.
            Some(m) => {
                m.view.status = MessageStatus::Pending;
                m.view.next_attempt_at = None;
                m.claimed_by = None;
                m.permit = Some(permit);
            }
            None => e.messages.push(
                MessageRecord {
                    view: new_message_view(
                        message_id.to_owned(),
                        event.event_type().as_str(),
                        Some(event.offset()),
                        Utc::now(),
                    ),
                    body,
                    seq: 0,
                    claimed_by: None,
                    permit: Some(permit),
                },
                cap,
            ),
        }
        ready.push_back((id.to_owned(), message_id.to_owned()));
        Take::Queued
    }

    /// After the cursor fell out of the retained log: start again at `head`.
    pub(crate) fn skip_to(&self, id: &str, generation: u64, head: ResumeToken, why: String) {
        if let Some(e) = self.lock().endpoints.get_mut(id)
            && *e.control.borrow() == generation
        {
            tracing::warn!(endpoint = %id, %why, "webhook endpoint skipped events");
            e.last_gap = Some(format!(
                "events after `{}` up to `{head}` were not delivered: {why}",
                e.cursor
            ));
            e.cursor = head;
        }
    }

    // ----- delivering --------------------------------------------------------------------

    /// Claims a message for a delivery task of `run`: the endpoint's control channel
    /// and its in-flight semaphore. `None` when there is nothing to do (gone, finished,
    /// or another task of this run has it).
    pub(crate) fn claim_message(
        &self,
        id: &str,
        message: &str,
        run: u64,
    ) -> Option<(watch::Receiver<u64>, Arc<Semaphore>)> {
        let mut state = self.lock();
        let e = state.endpoints.get_mut(id)?;
        let m = e.messages.get_mut(message)?;
        if m.view.status != MessageStatus::Pending || m.claimed_by == Some(run) {
            return None;
        }
        m.claimed_by = Some(run);
        Some((e.control.subscribe(), e.inflight.clone()))
    }

    pub(crate) fn set_next_attempt(&self, id: &str, message: &str, at: Option<DateTime<Utc>>) {
        if let Some(m) = self
            .lock()
            .endpoints
            .get_mut(id)
            .and_then(|e| e.messages.get_mut(message))
        {
            m.view.next_attempt_at = at;
        }
    }

    /// Ends a message that can no longer be delivered (endpoint disabled or gone).
    pub(crate) fn cancel(&self, id: &str, message: &str) {
        let mut state = self.lock();
        let Some(e) = state.endpoints.get_mut(id) else {
            return;
        };
        let reason = e
            .disabled_reason
            .clone()
            .unwrap_or_else(|| "the endpoint is disabled".to_owned());
        if e.messages.is_pending(message)
            && let Some(m) = e.messages.finish(message, MessageStatus::Cancelled)
        {
            m.view.last_error = Some(format!("not delivered: {reason}"));
        }
    }

    /// Starts an attempt: `None` when the endpoint is gone or disabled (the message is
    /// then cancelled).
    pub(crate) fn begin_attempt(&self, id: &str, message: &str) -> Option<AttemptPlan> {
        let mut state = self.lock();
        let e = state.endpoints.get_mut(id)?;
        if !e.enabled {
            drop(state);
            self.cancel(id, message);
            return None;
        }
        let mut signer = Signer::new(e.secret.clone());
        if let Some((old, until)) = &e.previous {
            if *until > Utc::now() {
                signer = signer.with(old.clone());
            } else {
                e.previous = None;
            }
        }
        let url = e.url.clone();
        let m = e.messages.get_mut(message)?;
        m.view.attempts += 1;
        m.view.next_attempt_at = None;
        Some(AttemptPlan {
            url,
            signer,
            body: m.body.clone(),
            attempt: m.view.attempts,
        })
    }

    /// Logs an attempt and decides what follows: 2xx succeeds, 410 disables the
    /// endpoint, anything else is retried while `retries_left` unless the endpoint has
    /// failed for `disable_after`.
    pub(crate) fn record_attempt(
        &self,
        id: &str,
        message: &str,
        attempt: u32,
        report: AttemptReport,
        retries_left: bool,
    ) -> Next {
        let mut state = self.lock();
        let Some(e) = state.endpoints.get_mut(id) else {
            return Next::Done;
        };
        let succeeded = report.status.is_some_and(|s| (200..300).contains(&s));
        let now = Utc::now();
        let event_type = e
            .messages
            .get_mut(message)
            .map_or("", |m| m.view.event_type);
        e.attempts.push_back(AttemptView {
            id: new_id("atm_"),
            message_id: message.to_owned(),
            event_type,
            attempt,
            url: report.url,
            timestamp: report.started,
            status_code: report.status,
            latency_ms: u64::try_from(report.latency.as_millis()).unwrap_or(u64::MAX),
            outcome: if succeeded {
                AttemptOutcome::Succeeded
            } else {
                AttemptOutcome::Failed
            },
            error: report.error.clone(),
            response_body: report.response_body,
        });
        while e.attempts.len() > self.config.attempt_log_size {
            e.attempts.pop_front();
        }

        let error = report.error.or_else(|| {
            report
                .status
                .filter(|_| !succeeded)
                .map(|s| format!("the receiver answered {s}"))
        });
        let next = if succeeded {
            e.failing_since = None;
            MessageStatus::Succeeded
        } else if report.status == Some(410) {
            e.disable("the receiver answered 410 Gone".to_owned());
            MessageStatus::Failed
        } else {
            let since = *e.failing_since.get_or_insert(report.started);
            let failing_for = (now - since).to_std().unwrap_or_default();
            if failing_for >= self.config.disable_after {
                e.disable(format!(
                    "every delivery attempt has failed since {}",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ));
                MessageStatus::Failed
            } else if retries_left {
                MessageStatus::Pending
            } else {
                MessageStatus::Failed
            }
        };
        let Some(m) = e.messages.get_mut(message) else {
            return Next::Done;
        };
        m.view.last_attempt_at = Some(report.started);
        m.view.last_status_code = report.status;
        m.view.last_error = error;
        if next == MessageStatus::Pending {
            Next::Retry(report.retry_after)
        } else {
            e.messages.finish(message, next);
            Next::Done
        }
    }
}

fn backlog_permit(backlog: Arc<Semaphore>, id: &str) -> Result<OwnedSemaphorePermit> {
    backlog.try_acquire_owned().map_err(|_| {
        Error::new(
            ErrorKind::RateLimited,
            format!("webhook endpoint `{id}` has too many pending messages"),
        )
        .with_retry_after(Duration::from_secs(60))
    })
}

fn new_message_view(
    id: String,
    event_type: &'static str,
    offset: Option<ResumeToken>,
    now: DateTime<Utc>,
) -> MessageView {
    MessageView {
        id,
        event_type,
        status: MessageStatus::Pending,
        attempts: 0,
        offset,
        created_at: now,
        last_attempt_at: None,
        next_attempt_at: None,
        last_status_code: None,
        last_error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petstore_core::backend::NewEvent;
    use petstore_core::{Currency, EventData, Money, NewPet, ResumeToken};
    use serde_json::Value;

    fn event(time: &str) -> Event {
        let time = DateTime::parse_from_rfc3339(time)
            .unwrap()
            .with_timezone(&Utc);
        let pet = NewPet {
            name: "Fi\"do \u{e9}".into(),
            species: "dog".into(),
            breed: None,
            age: Some(1),
            status: None,
            tags: vec!["a".into(), "b".into()],
            photo_urls: vec![],
            price: Money::parse("1.50", Currency::USD).unwrap(),
        }
        .into_pet(time);
        NewEvent::new(EventData::PetCreated(pet)).sequenced(
            "/petstore",
            time,
            ResumeToken::new(1, 1),
        )
    }

    /// The body as it was built before it came from the cached envelope.
    fn body_through_value(event: &Event) -> Value {
        let mut json = serde_json::to_value(event).unwrap();
        json.as_object_mut().unwrap().insert(
            "timestamp".to_owned(),
            serde_json::to_value(event.time()).unwrap(),
        );
        json
    }

    #[test]
    fn body_is_the_envelope_plus_timestamp() {
        for time in [
            "2026-11-27T10:00:00Z",
            "2026-11-27T10:00:00.5Z",
            "2026-11-27T10:00:00.123456789Z",
        ] {
            let e = event(time);
            let body = event_body(&e);
            let parsed: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(parsed, body_through_value(&e), "{time}");
            assert_eq!(parsed["timestamp"], parsed["time"]);
            let envelope: Value = serde_json::from_str(e.json()).unwrap();
            let mut without = parsed.clone();
            without.as_object_mut().unwrap().remove("timestamp");
            assert_eq!(without, envelope);
            // `timestamp` appears once, at the top level.
            let text = std::str::from_utf8(&body).unwrap();
            assert_eq!(text.matches("\"timestamp\"").count(), 1, "{text}");
        }
    }

    #[test]
    fn endpoints_share_an_event_body() {
        let registry = Registry::new(WebhookConfig::default());
        let a = event("2026-11-27T10:00:00Z");
        let b = event("2026-11-27T10:00:01Z");
        let first = registry.body(&a);
        let other = registry.body(&b);
        let again = registry.body(&a);
        assert_eq!(first.as_ptr(), again.as_ptr());
        assert_ne!(first.as_ptr(), other.as_ptr());
        assert_eq!(first, event_body(&a));
        // Bounded: old events fall out and are built again.
        for _ in 0..BODY_CACHE_SIZE {
            registry.body(&event("2026-11-27T10:00:02Z"));
        }
        assert_eq!(registry.bodies.lock().unwrap().0.len(), BODY_CACHE_SIZE);
        let rebuilt = registry.body(&a);
        assert_ne!(rebuilt.as_ptr(), first.as_ptr());
        assert_eq!(rebuilt, first);
        // A body stored meanwhile by another follower wins.
        let mut cache = BodyCache::default();
        let stored = cache.insert(&a, first.clone());
        let late = cache.insert(&a, rebuilt);
        assert_eq!(stored.as_ptr(), first.as_ptr());
        assert_eq!(late.as_ptr(), first.as_ptr());
    }

    fn record(id: &str) -> MessageRecord {
        MessageRecord {
            view: new_message_view(id.to_owned(), "pet.created", None, Utc::now()),
            body: Bytes::new(),
            seq: 0,
            claimed_by: None,
            permit: None,
        }
    }

    /// The log as it was: a ring scanned linearly.
    #[derive(Default)]
    struct Ring(VecDeque<(String, MessageStatus)>);

    impl Ring {
        fn push(&mut self, id: &str, cap: usize) {
            self.0.push_back((id.to_owned(), MessageStatus::Pending));
            while self.0.len() > cap {
                match self
                    .0
                    .iter()
                    .position(|(_, s)| *s != MessageStatus::Pending)
                {
                    Some(i) => {
                        self.0.remove(i);
                    }
                    None => break,
                }
            }
        }

        fn set(&mut self, id: &str, status: MessageStatus) -> bool {
            match self.0.iter_mut().rev().find(|(m, _)| m == id) {
                Some((_, s)) => {
                    *s = status;
                    true
                }
                None => false,
            }
        }
    }

    fn same(log: &MessageLog, ring: &Ring) {
        assert_eq!(log.len(), ring.0.len());
        let theirs = ring.0.iter().map(|(id, s)| (id.as_str(), *s));
        let ours = log.oldest().map(|m| (m.view.id.as_str(), m.view.status));
        assert!(ours.eq(theirs));
        let theirs = ring.0.iter().rev().map(|(id, _)| id.as_str());
        assert!(log.newest().map(|m| m.view.id.as_str()).eq(theirs));
    }

    #[test]
    fn eviction_drops_the_oldest_finished_and_keeps_pending() {
        let mut log = MessageLog::default();
        for id in ["a", "b", "c"] {
            log.push(record(id), 3);
        }
        log.finish("b", MessageStatus::Succeeded);
        log.push(record("d"), 3);
        let ids: Vec<&str> = log.oldest().map(|m| m.view.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "d"]);
        // Nothing finished: the log grows beyond the cap.
        log.push(record("e"), 3);
        assert_eq!(log.len(), 4);
        // A message finished, made pending again and finished again keeps its place.
        log.finish("c", MessageStatus::Failed);
        log.get_mut("c").unwrap().view.status = MessageStatus::Pending;
        log.finish("a", MessageStatus::Cancelled);
        log.push(record("f"), 3);
        let ids: Vec<&str> = log.oldest().map(|m| m.view.id.as_str()).collect();
        assert_eq!(ids, ["c", "d", "e", "f"]);
        assert!(log.get_mut("a").is_none());
        log.finish("c", MessageStatus::Succeeded);
        log.finish("e", MessageStatus::Succeeded);
        log.push(record("g"), 3);
        let ids: Vec<&str> = log.oldest().map(|m| m.view.id.as_str()).collect();
        assert_eq!(ids, ["d", "f", "g"]);
        assert!(log.is_pending("d") && !log.is_pending("c"));
    }

    #[test]
    fn eviction_matches_the_linear_ring() {
        // A small deterministic generator: the test needs no seed to reproduce.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for cap in [1, 2, 5, 16] {
            let mut log = MessageLog::default();
            let mut ring = Ring::default();
            let mut created = 0u64;
            for _ in 0..3_000 {
                match next(8) {
                    0..=2 => {
                        created += 1;
                        let id = format!("m{created}");
                        log.push(record(&id), cap);
                        ring.push(&id, cap);
                    }
                    op => {
                        // Mostly a message in the log, sometimes any (maybe evicted).
                        let id = match ring.0.len() as u64 {
                            len if len > 0 && next(8) > 0 => ring.0[next(len) as usize].0.clone(),
                            _ => format!("m{}", 1 + next(created.max(1))),
                        };
                        let status = if op < 7 {
                            [
                                MessageStatus::Succeeded,
                                MessageStatus::Failed,
                                MessageStatus::Cancelled,
                            ][next(3) as usize]
                        } else {
                            MessageStatus::Pending
                        };
                        let known = ring.set(&id, status);
                        if status == MessageStatus::Pending {
                            if let Some(m) = log.get_mut(&id) {
                                m.view.status = MessageStatus::Pending;
                            }
                        } else {
                            log.finish(&id, status);
                        }
                        assert_eq!(known, log.get_mut(&id).is_some());
                    }
                }
                same(&log, &ring);
            }
            // Bounded bookkeeping.
            assert!(log.order.len() == log.records.len());
            assert!(log.finished.len() <= log.records.len());
        }
    }
}
