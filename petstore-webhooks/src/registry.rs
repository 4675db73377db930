//! The adapter's own state, in memory: endpoints with their cursor and secrets, the
//! messages each endpoint owes, and the log of delivery attempts. Bounded: at most
//! `max_endpoints`, and per endpoint `message_log_size` messages (pending ones are
//! never dropped; at most `endpoint_backlog` are pending) and `attempt_log_size`
//! attempts.
//!
//! The lock is a plain mutex, never held across an `.await`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use petstore_core::{Error, ErrorKind, Event, EventType, Result, ResumeToken, TypePattern};
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
    event_type: String,
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
    event_type: String,
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
    body: Bytes,
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
    messages: VecDeque<MessageRecord>,
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

    fn message(&mut self, id: &str) -> Option<&mut MessageRecord> {
        self.messages.iter_mut().rev().find(|m| m.view.id == id)
    }

    /// Adds a message, dropping the oldest finished ones beyond `cap`.
    fn push_message(&mut self, record: MessageRecord, cap: usize) {
        self.messages.push_back(record);
        while self.messages.len() > cap {
            match self
                .messages
                .iter()
                .position(|m| m.view.status != MessageStatus::Pending)
            {
                Some(i) => {
                    self.messages.remove(i);
                }
                None => break,
            }
        }
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
}

/// The endpoint store.
pub(crate) struct Registry {
    state: Mutex<State>,
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
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// The JSON body of a domain event: the envelope plus the Standard Webhooks
/// `timestamp`.
pub(crate) fn event_body(event: &Event) -> Bytes {
    let mut json = serde_json::to_value(event).unwrap_or_default();
    if let Some(obj) = json.as_object_mut() {
        obj.insert(
            "timestamp".to_owned(),
            serde_json::to_value(event.time).unwrap_or_default(),
        );
    }
    Bytes::from(serde_json::to_vec(&json).unwrap_or_default())
}

impl Registry {
    pub(crate) fn new(config: WebhookConfig) -> Self {
        Self {
            state: Mutex::default(),
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough data behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
            messages: VecDeque::new(),
            attempts: VecDeque::new(),
            control: watch::Sender::new(0),
            follower: None,
            inflight: Arc::new(Semaphore::new(self.config.endpoint_concurrency)),
            backlog: Arc::new(Semaphore::new(self.config.endpoint_backlog)),
        };
        let view = entry.view(true);
        state.endpoints.insert(id, entry);
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
                .iter()
                .rev()
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
        let m = e.message(message).ok_or_else(|| {
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
            view: new_message_view(message_id.clone(), TEST_EVENT_TYPE.to_owned(), None, now),
            body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            claimed_by: None,
            permit: Some(permit),
        };
        let view = record.view.clone();
        e.push_message(record, cap);
        state.ready.push_back((id.to_owned(), message_id));
        Ok(view)
    }

    // ----- following the log -----------------------------------------------------------

    /// Ids of endpoints nobody follows in `run`; they are now followed by `run`.
    pub(crate) fn claim_followers(&self, run: u64) -> Vec<String> {
        let mut state = self.lock();
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
                    .iter()
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
        let Some(e) = state.endpoints.get_mut(id) else {
            return;
        };
        match message {
            None => {
                e.follower = None;
                e.disable(format!(
                    "internal error while following the event log: {why}"
                ));
            }
            Some(message) => {
                if let Some(m) = e.message(message)
                    && m.view.status == MessageStatus::Pending
                {
                    finish(m, MessageStatus::Failed);
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

    pub(crate) fn inflight(&self, id: &str) -> Option<Arc<Semaphore>> {
        self.lock().endpoints.get(id).map(|e| e.inflight.clone())
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
        let mut state = self.lock();
        let cap = self.config.message_log_size;
        let Some(e) = state.endpoints.get_mut(id) else {
            return Take::Gone;
        };
        if *e.control.borrow() != generation {
            return Take::Stale;
        }
        e.cursor = event.offset;
        let message_id = event.id.to_string();
        match e.message(&message_id) {
            Some(m) if m.view.status == MessageStatus::Pending => return Take::Skip,
            // Replayed: deliver again under the same webhook-id.
            Some(m) => {
                m.view.status = MessageStatus::Pending;
                m.view.next_attempt_at = None;
                m.claimed_by = None;
                m.permit = Some(permit);
            }
            None => e.push_message(
                MessageRecord {
                    view: new_message_view(
                        message_id.clone(),
                        event.event_type.to_string(),
                        Some(event.offset),
                        Utc::now(),
                    ),
                    body: event_body(event),
                    claimed_by: None,
                    permit: Some(permit),
                },
                cap,
            ),
        }
        state.ready.push_back((id.to_owned(), message_id));
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

    /// Claims a message for a delivery task of `run`; `None` when there is nothing to do
    /// (gone, finished, or another task of this run has it).
    pub(crate) fn claim_message(
        &self,
        id: &str,
        message: &str,
        run: u64,
    ) -> Option<watch::Receiver<u64>> {
        let mut state = self.lock();
        let e = state.endpoints.get_mut(id)?;
        let control = e.control.subscribe();
        let m = e.message(message)?;
        if m.view.status != MessageStatus::Pending || m.claimed_by == Some(run) {
            return None;
        }
        m.claimed_by = Some(run);
        Some(control)
    }

    pub(crate) fn set_next_attempt(&self, id: &str, message: &str, at: Option<DateTime<Utc>>) {
        if let Some(m) = self
            .lock()
            .endpoints
            .get_mut(id)
            .and_then(|e| e.message(message))
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
        if let Some(m) = e.message(message)
            && m.view.status == MessageStatus::Pending
        {
            finish(m, MessageStatus::Cancelled);
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
        let m = e.message(message)?;
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
            .message(message)
            .map(|m| m.view.event_type.clone())
            .unwrap_or_default();
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
        let Some(m) = e.message(message) else {
            return Next::Done;
        };
        m.view.last_attempt_at = Some(report.started);
        m.view.last_status_code = report.status;
        m.view.last_error = error;
        if next == MessageStatus::Pending {
            Next::Retry(report.retry_after)
        } else {
            finish(m, next);
            Next::Done
        }
    }
}

fn finish(m: &mut MessageRecord, status: MessageStatus) {
    m.view.status = status;
    m.view.next_attempt_at = None;
    m.claimed_by = None;
    m.permit = None;
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
    event_type: String,
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
