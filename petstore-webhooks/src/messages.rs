//! The message and attempt log: what each endpoint is owed and what was tried, as
//! clients see it, and the bodies messages carry.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use petstore_core::{Event, EventId, Result, ResumeToken};
use serde::Serialize;

use crate::backend::{
    Attempt, AttemptOutcome, Message, MessageStatus, WebhookStore, WebhookStoreExt,
};
use crate::ids::{AttemptId, EndpointId};

/// The type of the test event sent by `POST /v1/webhooks/{id}/test`.
pub(crate) const TEST_EVENT_TYPE: &str = "webhook.test";

/// What the client sees of a message owed to an endpoint.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "WebhookMessage")]
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

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id.clone(),
            event_type: m.event_type.clone(),
            status: m.status,
            attempts: m.attempts,
            offset: m.offset,
            created_at: m.created_at,
            last_attempt_at: m.last_attempt_at,
            next_attempt_at: m.next_attempt_at,
            last_status_code: m.last_status_code,
            last_error: m.last_error.clone(),
        }
    }
}

/// One delivery attempt, as the client sees it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[schemars(rename = "WebhookAttempt")]
pub(crate) struct AttemptView {
    id: AttemptId,
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

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            id: a.id,
            message_id: a.message_id,
            event_type: a.event_type,
            attempt: a.attempt,
            url: a.url,
            timestamp: a.timestamp,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            outcome: a.outcome,
            error: a.error,
            response_body: a.response_body,
        }
    }
}

/// A new pending message, due at `due` (`None`: now).
pub(crate) fn new_message(
    endpoint: EndpointId,
    id: String,
    event_type: String,
    offset: Option<ResumeToken>,
    body: Bytes,
    now: DateTime<Utc>,
    due: Option<DateTime<Utc>>,
) -> Message {
    Message {
        endpoint,
        id,
        event_type,
        offset,
        body,
        status: MessageStatus::Pending,
        attempts: 0,
        step: 0,
        created_at: now,
        last_attempt_at: None,
        next_attempt_at: due,
        last_status_code: None,
        last_error: None,
    }
}

/// The message of a `webhook.test` event for `endpoint` (`webhook-id` `test_...`).
pub(crate) fn test_message(
    endpoint: &EndpointId,
    source: &str,
    now: DateTime<Utc>,
    due: Option<DateTime<Utc>>,
) -> Message {
    let mut hex = uuid::Uuid::encode_buffer();
    let id = format!(
        "test_{}",
        uuid::Uuid::now_v7().simple().encode_lower(&mut hex)
    );
    let body = serde_json::json!({
        "type": TEST_EVENT_TYPE,
        "timestamp": now,
        "id": id,
        "source": source,
        "time": now,
        "subject": endpoint,
        "data": {
            "endpoint_id": endpoint,
            "message": "This is a test event from the Pet Store.",
        },
    });
    new_message(
        endpoint.clone(),
        id,
        TEST_EVENT_TYPE.to_owned(),
        None,
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        now,
        due,
    )
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

/// How many recent event bodies [`Bodies`] keeps.
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

/// Event bodies shared by the endpoints' followers.
#[derive(Default)]
pub(crate) struct Bodies(Mutex<BodyCache>);

impl std::fmt::Debug for Bodies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bodies").finish_non_exhaustive()
    }
}

impl Bodies {
    /// The body of `event`, shared with the other endpoints that take it. Built (and
    /// the envelope serialised, the first time) outside the lock.
    pub(crate) fn body(&self, event: &Event) -> Bytes {
        let cache = || self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(body) = cache().get(event) {
            return body;
        }
        let body = event_body(event);
        cache().insert(event, body)
    }
}

/// Reads of the message and attempt log.
pub(crate) struct Log<'a> {
    pub(crate) store: &'a dyn WebhookStore,
}

impl Log<'_> {
    /// The endpoint's messages, newest first.
    pub(crate) async fn messages(&self, id: &EndpointId, limit: usize) -> Result<Vec<MessageView>> {
        self.store.existing_endpoint(id).await?;
        let messages = self.store.messages(id, limit).await?;
        Ok(messages.iter().map(MessageView::from).collect())
    }

    /// The endpoint's attempts (of one message, when given), newest first.
    pub(crate) async fn attempts(
        &self,
        id: &EndpointId,
        message: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AttemptView>> {
        self.store.existing_endpoint(id).await?;
        let attempts = self.store.attempts(id, message, limit).await?;
        Ok(attempts.into_iter().map(AttemptView::from).collect())
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
        let bodies = Bodies::default();
        let a = event("2026-11-27T10:00:00Z");
        let b = event("2026-11-27T10:00:01Z");
        let first = bodies.body(&a);
        let other = bodies.body(&b);
        let again = bodies.body(&a);
        assert_eq!(first.as_ptr(), again.as_ptr());
        assert_ne!(first.as_ptr(), other.as_ptr());
        assert_eq!(first, event_body(&a));
        // Bounded: old events fall out and are built again.
        for _ in 0..BODY_CACHE_SIZE {
            bodies.body(&event("2026-11-27T10:00:02Z"));
        }
        assert_eq!(bodies.0.lock().unwrap().0.len(), BODY_CACHE_SIZE);
        let rebuilt = bodies.body(&a);
        assert_ne!(rebuilt.as_ptr(), first.as_ptr());
        assert_eq!(rebuilt, first);
        // A body stored meanwhile by another follower wins.
        let mut cache = BodyCache::default();
        let stored = cache.insert(&a, first.clone());
        let late = cache.insert(&a, rebuilt);
        assert_eq!(stored.as_ptr(), first.as_ptr());
        assert_eq!(late.as_ptr(), first.as_ptr());
    }
}
