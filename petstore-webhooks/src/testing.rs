//! The behaviour suite every [`WebhookStore`] runs: one test per rule of the trait's
//! `# Behavior` sections.
//!
//! ```text
//! petstore_webhooks::webhook_store_behaviour_tests!(|| async { my_backend::Store::new().await });
//! ```
//!
//! The factory returns a future of a fresh, empty store. The calling crate needs
//! `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency. Each rule is
//! also a public function, for backends that set up their tests otherwise (e.g. skip
//! when no database is configured).
//!
//! Times are compared to the microsecond (what PostgreSQL keeps).

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use petstore_core::{ErrorKind, ResumeToken, TypePattern};
use reqwest::Url;

use crate::backend::{
    Advance, Attempt, AttemptOutcome, Endpoint, Limits, Message, MessageStatus, PreviousSecret,
    Queue, WebhookStore,
};
use crate::ids::{AttemptId, EndpointId};
use crate::signing::WebhookSecret;

const LIMITS: Limits = Limits {
    messages: 100,
    pending: 100,
    attempts: 100,
};

const MAX_ENDPOINTS: usize = 100;

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn token(offset: u64) -> ResumeToken {
    ResumeToken::new(0x5eed, offset)
}

/// A sample endpoint, as created.
pub fn sample_endpoint() -> Endpoint {
    let now = now();
    Endpoint {
        id: EndpointId::generate(),
        url: Url::parse("https://hooks.example.com/petstore").expect("a URL"),
        description: "sample".to_owned(),
        events: vec![
            "pet.*".parse::<TypePattern>().expect("a pattern"),
            "order.created".parse().expect("a pattern"),
        ],
        enabled: true,
        disabled_reason: None,
        failing_since: None,
        secret: WebhookSecret::generate(),
        previous_secret: None,
        cursor: token(3),
        last_gap: None,
        revision: 0,
        version: 0,
        created_at: now,
        updated_at: now,
    }
}

/// A sample pending message of `endpoint`.
pub fn sample_message(endpoint: &EndpointId, id: &str) -> Message {
    Message {
        endpoint: endpoint.clone(),
        id: id.to_owned(),
        event_type: "pet.created".to_owned(),
        offset: Some(token(4)),
        body: Bytes::from(format!("{{\"id\":\"{id}\"}}")),
        status: MessageStatus::Pending,
        attempts: 0,
        step: 0,
        created_at: now(),
        last_attempt_at: None,
        next_attempt_at: None,
        last_status_code: None,
        last_error: None,
    }
}

/// A sample failed attempt at `message`.
pub fn sample_attempt(message: &Message, attempt: u32) -> Attempt {
    Attempt {
        id: AttemptId::generate(),
        endpoint: message.endpoint.clone(),
        message_id: message.id.clone(),
        event_type: message.event_type.clone(),
        attempt,
        url: "https://hooks.example.com/petstore".to_owned(),
        timestamp: now(),
        status_code: Some(500),
        latency_ms: 12,
        outcome: AttemptOutcome::Failed,
        error: Some("the receiver answered 500".to_owned()),
        response_body: Some("try again".to_owned()),
    }
}

async fn created<S: WebhookStore>(store: &S) -> Endpoint {
    let endpoint = sample_endpoint();
    assert!(
        store
            .create_endpoint(&endpoint, MAX_ENDPOINTS)
            .await
            .expect("create")
    );
    endpoint
}

async fn queued<S: WebhookStore>(store: &S, endpoint: &EndpointId, id: &str) -> Message {
    let message = sample_message(endpoint, id);
    match store.queue(&message, &LIMITS).await.expect("queue") {
        Queue::Queued(stored) => assert_eq!(*stored, message),
        other => panic!("not queued: {other:?}"),
    }
    message
}

/// `message` settled as finished with `status`.
async fn finish<S: WebhookStore>(store: &S, message: &Message, status: MessageStatus) {
    let mut m = message.clone();
    m.status = status;
    assert!(store.settle(&m, None, &LIMITS).await.expect("settle"));
}

async fn message_ids<S: WebhookStore>(store: &S, endpoint: &EndpointId) -> Vec<String> {
    let messages = store.messages(endpoint, 1_000).await.expect("messages");
    messages.into_iter().map(|m| m.id).collect()
}

async fn stored<S: WebhookStore>(store: &S, id: &EndpointId) -> Endpoint {
    store
        .endpoint(id)
        .await
        .expect("read")
        .expect("the endpoint exists")
}

/// Created endpoints read back equal, listed in id order; unknown ids are `None`.
pub async fn endpoints_round_trip<S: WebhookStore>(store: S) {
    assert!(store.endpoints().await.unwrap().is_empty());
    let a = created(&store).await;
    let b = created(&store).await;
    let c = created(&store).await;
    assert_eq!(stored(&store, &a.id).await, a);
    let listed = store.endpoints().await.unwrap();
    assert_eq!(listed, [a, b, c]);
    let unknown = EndpointId::generate();
    assert_eq!(store.endpoint(&unknown).await.unwrap(), None);
}

/// Creating beyond the limit stores nothing.
pub async fn create_stops_at_the_limit<S: WebhookStore>(store: S) {
    assert!(store.create_endpoint(&sample_endpoint(), 2).await.unwrap());
    assert!(store.create_endpoint(&sample_endpoint(), 2).await.unwrap());
    let third = sample_endpoint();
    assert!(!store.create_endpoint(&third, 2).await.unwrap());
    assert_eq!(store.endpoint(&third.id).await.unwrap(), None);
    assert_eq!(store.endpoints().await.unwrap().len(), 2);
}

/// An update needs the stored version and bumps it; a stale one changes nothing.
pub async fn update_checks_the_version<S: WebhookStore>(store: S) {
    let original = created(&store).await;
    let mut changed = original.clone();
    changed.description = "changed".to_owned();
    changed.url = Url::parse("https://other.example.com/hook").unwrap();
    changed.events = vec![];
    changed.enabled = false;
    changed.disabled_reason = Some("paused".to_owned());
    changed.failing_since = Some(now());
    changed.updated_at = now();
    assert!(store.update_endpoint(&changed).await.unwrap());
    let mut want = changed.clone();
    want.version = original.version + 1;
    assert_eq!(stored(&store, &original.id).await, want);

    // `original` still has the old version: refused.
    let mut stale = original.clone();
    stale.description = "stale".to_owned();
    assert!(!store.update_endpoint(&stale).await.unwrap());
    assert_eq!(stored(&store, &original.id).await, want);

    let unknown = sample_endpoint();
    assert!(!store.update_endpoint(&unknown).await.unwrap());
    assert_eq!(store.endpoint(&unknown.id).await.unwrap(), None);
}

/// Within a revision an update keeps the follower's cursor; a new revision sets it.
pub async fn update_keeps_the_cursor_within_a_revision<S: WebhookStore>(store: S) {
    let endpoint = created(&store).await;
    let moved = store
        .advance(&endpoint.id, endpoint.revision, token(9), None, &LIMITS)
        .await
        .unwrap();
    assert_eq!(moved, Advance::Moved);
    // A settings change made from a copy read before the cursor moved.
    let mut settings = endpoint.clone();
    settings.description = "renamed".to_owned();
    assert!(store.update_endpoint(&settings).await.unwrap());
    let now_stored = stored(&store, &endpoint.id).await;
    assert_eq!(now_stored.cursor, token(9), "the cursor did not move back");
    assert_eq!(now_stored.description, "renamed");

    // A new revision (replay, re-enable) sets the cursor and the gap.
    let mut replay = now_stored.clone();
    replay.revision += 1;
    replay.cursor = token(1);
    replay.last_gap = Some("events 2 to 5 were skipped".to_owned());
    assert!(store.update_endpoint(&replay).await.unwrap());
    let after = stored(&store, &endpoint.id).await;
    assert_eq!(after.cursor, token(1));
    assert_eq!(after.revision, endpoint.revision + 1);
    assert_eq!(after.last_gap, replay.last_gap);
}

/// Secrets round-trip exactly, the previous one with its expiry.
pub async fn secrets_round_trip<S: WebhookStore>(store: S) {
    let endpoint = created(&store).await;
    let mut rotated = endpoint.clone();
    rotated.previous_secret = Some(PreviousSecret {
        secret: endpoint.secret.clone(),
        expires_at: now(),
    });
    rotated.secret = WebhookSecret::generate();
    assert!(store.update_endpoint(&rotated).await.unwrap());
    let got = stored(&store, &endpoint.id).await;
    assert_eq!(got.secret, rotated.secret);
    assert_eq!(got.previous_secret, rotated.previous_secret);
    // A second rotation replaces the previous secret.
    let mut again = got.clone();
    again.previous_secret = Some(PreviousSecret {
        secret: got.secret.clone(),
        expires_at: now(),
    });
    again.secret = WebhookSecret::generate();
    assert!(store.update_endpoint(&again).await.unwrap());
    let got = stored(&store, &endpoint.id).await;
    assert_eq!(got.secret, again.secret);
    assert_eq!(got.previous_secret, again.previous_secret);
}

/// Deleting an endpoint deletes its messages and attempts.
pub async fn delete_removes_messages_and_attempts<S: WebhookStore>(store: S) {
    let endpoint = created(&store).await;
    let other = created(&store).await;
    let message = queued(&store, &endpoint.id, "evt_1").await;
    let kept = queued(&store, &other.id, "evt_1").await;
    let mut retried = message.clone();
    retried.attempts = 1;
    assert!(
        store
            .settle(&retried, Some(&sample_attempt(&message, 1)), &LIMITS)
            .await
            .unwrap()
    );
    assert!(store.delete_endpoint(&endpoint.id).await.unwrap());
    assert_eq!(store.endpoint(&endpoint.id).await.unwrap(), None);
    assert!(store.messages(&endpoint.id, 10).await.unwrap().is_empty());
    assert_eq!(store.message(&endpoint.id, "evt_1").await.unwrap(), None);
    assert!(
        store
            .attempts(&endpoint.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.pending().await.unwrap(),
        [(other.id.clone(), kept.id.clone())]
    );
    assert!(!store.delete_endpoint(&endpoint.id).await.unwrap());
    assert_eq!(stored(&store, &other.id).await, other);
}

/// `advance` moves the cursor, and queues the message given in the same write.
pub async fn advance_moves_the_cursor_and_queues<S: WebhookStore>(store: S) {
    let endpoint = created(&store).await;
    let id = &endpoint.id;
    let moved = store
        .advance(id, endpoint.revision, token(4), None, &LIMITS)
        .await
        .unwrap();
    assert_eq!(moved, Advance::Moved);
    let after = stored(&store, id).await;
    assert_eq!(after.cursor, token(4));
    assert_eq!(after.version, endpoint.version, "the version stays");

    let message = sample_message(id, "evt_5");
    let queued = store
        .advance(id, endpoint.revision, token(5), Some(&message), &LIMITS)
        .await
        .unwrap();
    assert_eq!(queued, Advance::Queued);
    assert_eq!(stored(&store, id).await.cursor, token(5));
    assert_eq!(store.message(id, "evt_5").await.unwrap(), Some(message));
    assert_eq!(
        store.pending().await.unwrap(),
        [(id.clone(), "evt_5".to_owned())]
    );
}

/// `advance` with another revision, or for an unknown endpoint, changes nothing.
pub async fn advance_checks_the_revision<S: WebhookStore>(store: S) {
    let endpoint = created(&store).await;
    let id = &endpoint.id;
    let message = sample_message(id, "evt_5");
    let stale = store
        .advance(id, endpoint.revision + 1, token(5), Some(&message), &LIMITS)
        .await
        .unwrap();
    assert_eq!(stale, Advance::Stale);
    assert_eq!(stored(&store, id).await, endpoint);
    assert_eq!(store.message(id, "evt_5").await.unwrap(), None);
    let unknown = EndpointId::generate();
    let gone = store
        .advance(&unknown, 0, token(5), Some(&message), &LIMITS)
        .await
        .unwrap();
    assert_eq!(gone, Advance::Gone);
    assert!(store.pending().await.unwrap().is_empty());
}

/// A pending message met again stays as it is; a finished one is reopened.
pub async fn advance_leaves_a_pending_message_and_reopens_a_finished_one<S: WebhookStore>(
    store: S,
) {
    let endpoint = created(&store).await;
    let id = &endpoint.id;
    let rev = endpoint.revision;
    let first = sample_message(id, "evt_5");
    assert_eq!(
        store
            .advance(id, rev, token(5), Some(&first), &LIMITS)
            .await
            .unwrap(),
        Advance::Queued
    );
    queued(&store, id, "evt_6").await;
    // Met again while pending (a replay): the cursor moves, the message stays.
    let mut again = sample_message(id, "evt_5");
    again.body = Bytes::from_static(b"{\"other\":true}");
    assert_eq!(
        store
            .advance(id, rev, token(6), Some(&again), &LIMITS)
            .await
            .unwrap(),
        Advance::Moved
    );
    assert_eq!(stored(&store, id).await.cursor, token(6));
    assert_eq!(
        store.message(id, "evt_5").await.unwrap(),
        Some(first.clone())
    );

    // Finished, then met again: reopened in place, keeping body and history.
    let mut done = first.clone();
    done.attempts = 2;
    done.step = 2;
    done.last_status_code = Some(200);
    done.last_attempt_at = Some(now());
    done.status = MessageStatus::Succeeded;
    assert!(store.settle(&done, None, &LIMITS).await.unwrap());
    let due = now();
    again.next_attempt_at = Some(due);
    assert_eq!(
        store
            .advance(id, rev, token(7), Some(&again), &LIMITS)
            .await
            .unwrap(),
        Advance::Queued
    );
    let reopened = store.message(id, "evt_5").await.unwrap().unwrap();
    let mut want = done.clone();
    want.status = MessageStatus::Pending;
    want.step = 0;
    want.next_attempt_at = Some(due);
    assert_eq!(reopened, want);
    assert_eq!(
        message_ids(&store, id).await,
        ["evt_6", "evt_5"],
        "same place"
    );
}

/// At `limits.pending` pending messages, nothing more is queued and the cursor waits.
pub async fn the_backlog_is_bounded<S: WebhookStore>(store: S) {
    let limits = Limits {
        pending: 2,
        ..LIMITS
    };
    let endpoint = created(&store).await;
    let id = &endpoint.id;
    let rev = endpoint.revision;
    for (offset, m) in [(4, "evt_4"), (5, "evt_5")] {
        let message = sample_message(id, m);
        let advanced = store
            .advance(id, rev, token(offset), Some(&message), &limits)
            .await
            .unwrap();
        assert_eq!(advanced, Advance::Queued);
    }
    let third = sample_message(id, "evt_6");
    let full = store
        .advance(id, rev, token(6), Some(&third), &limits)
        .await
        .unwrap();
    assert_eq!(full, Advance::Full);
    assert_eq!(
        stored(&store, id).await.cursor,
        token(5),
        "the cursor waits"
    );
    assert_eq!(store.message(id, "evt_6").await.unwrap(), None);
    let test = sample_message(id, "test_1");
    assert_eq!(store.queue(&test, &limits).await.unwrap(), Queue::Full);
    // Events the endpoint does not want still move the cursor.
    assert_eq!(
        store
            .advance(id, rev, token(6), None, &limits)
            .await
            .unwrap(),
        Advance::Moved
    );
    // A finished message makes room.
    let first = store.message(id, "evt_4").await.unwrap().unwrap();
    finish(&store, &first, MessageStatus::Succeeded).await;
    assert!(matches!(
        store.queue(&test, &limits).await.unwrap(),
        Queue::Queued(_)
    ));
    // Another endpoint has its own backlog.
    let other = created(&store).await;
    assert!(matches!(
        store
            .queue(&sample_message(&other.id, "evt_4"), &limits)
            .await
            .unwrap(),
        Queue::Queued(_)
    ));
}

/// Beyond `limits.messages`, the oldest finished messages go; pending ones never.
pub async fn the_message_log_drops_the_oldest_finished<S: WebhookStore>(store: S) {
    let limits = Limits {
        messages: 3,
        ..LIMITS
    };
    let endpoint = created(&store).await;
    let id = &endpoint.id;
    let mut messages = Vec::new();
    for m in ["a", "b", "c"] {
        let message = sample_message(id, m);
        assert!(matches!(
            store.queue(&message, &limits).await.unwrap(),
            Queue::Queued(_)
        ));
        messages.push(message);
    }
    finish(&store, &messages[1], MessageStatus::Succeeded).await;
    store
        .queue(&sample_message(id, "d"), &limits)
        .await
        .unwrap();
    assert_eq!(message_ids(&store, id).await, ["d", "c", "a"]);
    assert_eq!(store.message(id, "b").await.unwrap(), None);
    // Nothing finished: the log grows beyond the bound.
    store
        .queue(&sample_message(id, "e"), &limits)
        .await
        .unwrap();
    assert_eq!(message_ids(&store, id).await, ["e", "d", "c", "a"]);
    // The oldest finished goes first, not the oldest.
    finish(&store, &messages[2], MessageStatus::Failed).await;
    finish(&store, &messages[0], MessageStatus::Cancelled).await;
    store
        .queue(&sample_message(id, "f"), &limits)
        .await
        .unwrap();
    assert_eq!(message_ids(&store, id).await, ["f", "e", "d"]);
}

/// `queue` inserts a new message, reopens a finished one, and leaves a pending one.
pub async fn queue_inserts_or_reopens<S: WebhookStore>(store: S) {
    let unknown = sample_message(&EndpointId::generate(), "test_1");
    let err = store.queue(&unknown, &LIMITS).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    let endpoint = created(&store).await;
    let id = &endpoint.id;
    let message = queued(&store, id, "test_1").await;
    assert_eq!(
        store.queue(&message, &LIMITS).await.unwrap(),
        Queue::Pending
    );
    queued(&store, id, "test_2").await;

    let mut failed = message.clone();
    failed.status = MessageStatus::Failed;
    failed.attempts = 4;
    failed.step = 4;
    failed.last_error = Some("the receiver answered 502".to_owned());
    assert!(store.settle(&failed, None, &LIMITS).await.unwrap());
    let mut again = sample_message(id, "test_1");
    again.body = Bytes::from_static(b"ignored");
    again.next_attempt_at = Some(now());
    let Queue::Queued(reopened) = store.queue(&again, &LIMITS).await.unwrap() else {
        panic!("not reopened");
    };
    let mut want = failed.clone();
    want.status = MessageStatus::Pending;
    want.step = 0;
    want.next_attempt_at = again.next_attempt_at;
    assert_eq!(*reopened, want);
    assert_eq!(store.message(id, "test_1").await.unwrap(), Some(want));
    assert_eq!(message_ids(&store, id).await, ["test_2", "test_1"]);
}

/// `settle` changes a pending message only, and appends the attempt.
pub async fn settle_changes_only_pending_messages<S: WebhookStore>(store: S) {
    let endpoint = created(&store).await;
    let id = &endpoint.id;
    let message = queued(&store, id, "evt_1").await;
    let mut retried = message.clone();
    retried.attempts = 1;
    retried.step = 1;
    retried.last_attempt_at = Some(now());
    retried.next_attempt_at = Some(now());
    retried.last_status_code = Some(500);
    retried.last_error = Some("the receiver answered 500".to_owned());
    retried.body = Bytes::from_static(b"not stored");
    let attempt = sample_attempt(&message, 1);
    assert!(
        store
            .settle(&retried, Some(&attempt), &LIMITS)
            .await
            .unwrap()
    );
    let mut want = retried.clone();
    want.body = message.body.clone();
    assert_eq!(
        store.message(id, "evt_1").await.unwrap(),
        Some(want.clone())
    );
    assert_eq!(
        store.attempts(id, None, 10).await.unwrap(),
        std::slice::from_ref(&attempt)
    );
    assert_eq!(store.pending().await.unwrap().len(), 1);

    let mut done = want.clone();
    done.status = MessageStatus::Succeeded;
    done.attempts = 2;
    done.next_attempt_at = None;
    assert!(store.settle(&done, None, &LIMITS).await.unwrap());
    assert!(store.pending().await.unwrap().is_empty());
    // Finished: further settles change nothing.
    let mut late = done.clone();
    late.status = MessageStatus::Failed;
    late.attempts = 9;
    let late_attempt = sample_attempt(&message, 9);
    assert!(
        !store
            .settle(&late, Some(&late_attempt), &LIMITS)
            .await
            .unwrap()
    );
    assert_eq!(store.message(id, "evt_1").await.unwrap(), Some(done));
    assert_eq!(store.attempts(id, None, 10).await.unwrap(), [attempt]);
    let unknown = sample_message(id, "evt_nope");
    assert!(!store.settle(&unknown, None, &LIMITS).await.unwrap());
}

/// Attempts: newest first, filtered by message, bounded by `limits.attempts`.
pub async fn attempts_are_newest_first_filtered_and_bounded<S: WebhookStore>(store: S) {
    let limits = Limits {
        attempts: 3,
        ..LIMITS
    };
    let endpoint = created(&store).await;
    let id = &endpoint.id;
    let a = queued(&store, id, "evt_a").await;
    let b = queued(&store, id, "evt_b").await;
    let mut logged = Vec::new();
    for (n, m) in [(1, &a), (1, &b), (2, &a), (3, &a)] {
        let attempt = sample_attempt(m, n);
        let mut state = m.clone();
        state.attempts = n;
        assert!(store.settle(&state, Some(&attempt), &limits).await.unwrap());
        logged.push(attempt);
    }
    let newest_first: Vec<Attempt> = logged.iter().rev().take(3).cloned().collect();
    assert_eq!(store.attempts(id, None, 10).await.unwrap(), newest_first);
    assert_eq!(
        store.attempts(id, None, 2).await.unwrap(),
        newest_first[..2]
    );
    let of_a: Vec<u32> = store
        .attempts(id, Some("evt_a"), 10)
        .await
        .unwrap()
        .iter()
        .map(|a| a.attempt)
        .collect();
    assert_eq!(of_a, [3, 2]);
    assert!(
        store
            .attempts(&EndpointId::generate(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// `pending` lists exactly the pending messages, oldest first per endpoint.
pub async fn pending_lists_exactly_the_pending_messages<S: WebhookStore>(store: S) {
    let one = created(&store).await;
    let two = created(&store).await;
    let a = queued(&store, &one.id, "evt_a").await;
    queued(&store, &two.id, "evt_x").await;
    queued(&store, &one.id, "evt_b").await;
    queued(&store, &one.id, "evt_c").await;
    finish(&store, &a, MessageStatus::Succeeded).await;
    let mut pending = store.pending().await.unwrap();
    let of_one: Vec<&str> = pending
        .iter()
        .filter(|(e, _)| *e == one.id)
        .map(|(_, m)| m.as_str())
        .collect();
    assert_eq!(of_one, ["evt_b", "evt_c"]);
    pending.sort();
    let mut want = vec![
        (one.id.clone(), "evt_b".to_owned()),
        (one.id.clone(), "evt_c".to_owned()),
        (two.id.clone(), "evt_x".to_owned()),
    ];
    want.sort();
    assert_eq!(pending, want);
}

/// Message reads: `None` or empty for unknown ids; `limit` is respected.
pub async fn message_reads_are_bounded<S: WebhookStore>(store: S) {
    let endpoint = created(&store).await;
    let id = &endpoint.id;
    for m in ["evt_1", "evt_2", "evt_3"] {
        queued(&store, id, m).await;
    }
    let two: Vec<String> = store
        .messages(id, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(two, ["evt_3", "evt_2"]);
    assert_eq!(store.message(id, "evt_9").await.unwrap(), None);
    let unknown = EndpointId::generate();
    assert_eq!(store.message(&unknown, "evt_1").await.unwrap(), None);
    assert!(store.messages(&unknown, 10).await.unwrap().is_empty());
}

/// Generates one `#[tokio::test]` per behaviour rule for the store built by
/// `$factory: Fn() -> impl Future<Output = impl WebhookStore>`; with `optional` before
/// it, by a factory whose future gives `Option<store>`, the test passing without
/// running the rule on `None` (a backend whose database is not configured says so and
/// returns `None`). The list of rules is here once, so a new rule reaches every
/// backend.
#[macro_export]
macro_rules! webhook_store_behaviour_tests {
    (optional $factory:expr) => {
        $crate::webhook_store_behaviour_tests!(@rules tests_optional $factory);
    };
    (@rules $arm:ident $factory:expr) => {
        $crate::webhook_store_behaviour_tests!(@$arm $factory;
            endpoints_round_trip,
            create_stops_at_the_limit,
            update_checks_the_version,
            update_keeps_the_cursor_within_a_revision,
            secrets_round_trip,
            delete_removes_messages_and_attempts,
            advance_moves_the_cursor_and_queues,
            advance_checks_the_revision,
            advance_leaves_a_pending_message_and_reopens_a_finished_one,
            the_backlog_is_bounded,
            the_message_log_drops_the_oldest_finished,
            queue_inserts_or_reopens,
            settle_changes_only_pending_messages,
            attempts_are_newest_first_filtered_and_bounded,
            pending_lists_exactly_the_pending_messages,
            message_reads_are_bounded,
        );
    };
    (@tests_optional $factory:expr; $($name:ident),* $(,)?) => {
        mod webhook_store_behaviour {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let factory = $factory;
                    let Some(store) = factory().await else {
                        return;
                    };
                    $crate::testing::$name(store).await;
                }
            )*
        }
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        mod webhook_store_behaviour {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let factory = $factory;
                    $crate::testing::$name(factory().await).await;
                }
            )*
        }
    };
    ($factory:expr) => {
        $crate::webhook_store_behaviour_tests!(@rules tests $factory);
    };
}
