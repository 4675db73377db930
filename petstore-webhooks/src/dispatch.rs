//! The dispatcher's tasks: one follower per endpoint, reading the event log from the
//! endpoint's cursor, and one delivery task per pending message, which signs, sends
//! and retries it.
//!
//! Isolation: a delivery holds a permit of its endpoint (`endpoint_concurrency`) and
//! then a global one (`global_concurrency`) only while its request is in flight, so a
//! slow receiver occupies at most `endpoint_concurrency` of the global permits and
//! never delays other endpoints. Waiting for a retry holds neither.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use petstore_core::{ErrorKind, EventFilter, Subscription};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::registry::{AttemptPlan, AttemptReport, Next, Take};
use crate::webhooks::Shared;

/// Pause after an unexpected failure to follow the log.
const FOLLOW_BACKOFF: Duration = Duration::from_secs(1);
/// How much of a receiver's answer is logged.
const RESPONSE_SNIPPET: usize = 1024;

/// Resolves once the endpoint is deleted or disabled.
async fn stopped(control: &mut watch::Receiver<u64>, shared: &Shared, id: &str) {
    loop {
        if control.changed().await.is_err() || !shared.registry.is_enabled(id) {
            return;
        }
    }
}

/// Follows the log for endpoint `id` until it is deleted.
pub(crate) async fn follow(shared: Arc<Shared>, id: String) {
    let Some(mut control) = shared.registry.control(&id) else {
        return;
    };
    loop {
        let generation = *control.borrow_and_update();
        let Some((enabled, cursor)) = shared.registry.follow_state(&id) else {
            return;
        };
        if !enabled {
            if control.changed().await.is_err() {
                return;
            }
            continue;
        }
        // Every readable event: the cursor moves past the ones the endpoint's filter
        // rejects too, so it never falls behind the log for nothing.
        let subscribed = shared
            .store
            .subscribe(&shared.follower, Some(cursor), EventFilter::all())
            .await;
        let keep_going = match subscribed {
            Ok(sub) => pump(&shared, &id, generation, sub, &mut control).await,
            Err(e) if e.kind() == ErrorKind::ResumeExpired => match shared.store.head().await {
                Ok(head) => {
                    shared
                        .registry
                        .skip_to(&id, generation, head, e.message().to_owned());
                    true
                }
                Err(e) => pause(&mut control, &id, &e).await,
            },
            Err(e) => pause(&mut control, &id, &e).await,
        };
        if !keep_going {
            return;
        }
    }
}

/// Waits a moment after an error; `false` when the endpoint is gone.
async fn pause(control: &mut watch::Receiver<u64>, id: &str, error: &petstore_core::Error) -> bool {
    tracing::warn!(endpoint = %id, %error, "cannot follow the event log; retrying");
    tokio::select! {
        () = tokio::time::sleep(FOLLOW_BACKOFF) => true,
        changed = control.changed() => changed.is_ok(),
    }
}

/// Feeds one subscription into the endpoint's messages. Returns `false` when the
/// endpoint is gone, `true` to subscribe again (lagged, replayed, re-enabled, ...).
async fn pump(
    shared: &Shared,
    id: &str,
    generation: u64,
    mut sub: Subscription,
    control: &mut watch::Receiver<u64>,
) -> bool {
    // An entry's backlog semaphore never changes; the entry's deletion closes `control`.
    let Some(backlog) = shared.registry.backlog(id) else {
        return false;
    };
    loop {
        let item = tokio::select! {
            changed = control.changed() => return changed.is_ok(),
            item = sub.next() => item,
        };
        let event = match item {
            Some(Ok(event)) => event,
            // Lagged: the subscription ended; resume from the cursor, which is the last
            // event taken, so nothing is lost.
            Some(Err(e)) => {
                tracing::debug!(endpoint = %id, error = %e, "resubscribing");
                return true;
            }
            None => {
                tracing::warn!(endpoint = %id, "the event log closed the subscription");
                return tokio::select! {
                    () = tokio::time::sleep(FOLLOW_BACKOFF) => true,
                    changed = control.changed() => changed.is_ok(),
                };
            }
        };
        let take = match shared.registry.wants(id, event.event_type()) {
            None => Take::Gone,
            Some(false) => shared.registry.advance(id, generation, event.offset()),
            Some(true) => {
                // A full backlog stops the cursor here: events wait in the log.
                let permit = tokio::select! {
                    changed = control.changed() => return changed.is_ok(),
                    permit = backlog.clone().acquire_owned() => permit,
                };
                let Ok(permit) = permit else { return false };
                shared.registry.take(id, generation, &event, permit)
            }
        };
        match take {
            Take::Gone => return false,
            Take::Stale => return true,
            Take::Skip => {}
            Take::Queued => shared.wake.notify_one(),
        }
    }
}

/// `delay` spread by up to ±`jitter` of itself.
pub(crate) fn jittered(delay: Duration, jitter: f64) -> Duration {
    if delay.is_zero() || jitter <= 0.0 {
        return delay;
    }
    delay.mul_f64((1.0 + rand::random_range(-jitter..=jitter)).max(0.0))
}

/// Delivers one message with retries.
pub(crate) async fn deliver(shared: Arc<Shared>, id: String, message: String, run: u64) {
    let Some((mut control, inflight)) = shared.registry.claim_message(&id, &message, run) else {
        return;
    };
    let schedule = &shared.config.retry_schedule;
    let mut retry_after = None;
    for (i, base) in schedule.iter().enumerate() {
        let delay = jittered(*base, shared.config.jitter).max(retry_after.unwrap_or_default());
        if !delay.is_zero() {
            let at = chrono::Duration::from_std(delay)
                .ok()
                .and_then(|d| Utc::now().checked_add_signed(d));
            shared.registry.set_next_attempt(&id, &message, at);
            let waited = tokio::select! {
                () = tokio::time::sleep(delay) => true,
                () = stopped(&mut control, &shared, &id) => false,
            };
            if !waited {
                shared.registry.cancel(&id, &message);
                return;
            }
        }
        let permits = tokio::select! {
            permits = async {
                let mine = inflight.clone().acquire_owned().await.ok()?;
                let global = shared.global.clone().acquire_owned().await.ok()?;
                Some((mine, global))
            } => permits,
            () = stopped(&mut control, &shared, &id) => None,
        };
        let Some(_permits) = permits else {
            shared.registry.cancel(&id, &message);
            return;
        };
        let Some(plan) = shared.registry.begin_attempt(&id, &message) else {
            return;
        };
        let attempt = plan.attempt;
        let report = send(&shared, &message, plan).await;
        let retries_left = i + 1 < schedule.len();
        match shared
            .registry
            .record_attempt(&id, &message, attempt, report, retries_left)
        {
            Next::Retry(after) => {
                retry_after = after.map(|a| a.min(shared.config.max_retry_after));
            }
            Next::Done => return,
        }
    }
}

/// Makes one signed request and reports how it went.
async fn send(shared: &Shared, message: &str, plan: AttemptPlan) -> AttemptReport {
    let started = Utc::now();
    let clock = Instant::now();
    let mut report = AttemptReport {
        url: plan.url.as_str().to_owned(),
        started,
        latency: Duration::ZERO,
        status: None,
        error: None,
        response_body: None,
        retry_after: None,
    };
    // Literal IP hosts never reach the resolver, so they are checked here.
    if let Err(reason) = shared.policy.check_literal(&plan.url) {
        report.error = Some(reason);
        return report;
    }
    let client = match &shared.client {
        Ok(client) => client,
        Err(e) => {
            report.error = Some(e.clone());
            return report;
        }
    };
    let timestamp = started.timestamp();
    let mut headers = plan.signer.headers(message, timestamp, &plan.body);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let result = client
        .post(plan.url)
        .headers(headers)
        .body(plan.body)
        .send()
        .await;
    match result {
        Ok(mut response) => {
            report.status = Some(response.status().as_u16());
            report.retry_after = retry_after(response.headers(), Utc::now());
            let mut snippet = Vec::new();
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        let room = RESPONSE_SNIPPET - snippet.len();
                        snippet.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        if snippet.len() >= RESPONSE_SNIPPET {
                            break;
                        }
                    }
                    Ok(None) => break,
                    // The status counts; a body cut short by the deadline is not a failure.
                    Err(_) => break,
                }
            }
            if !snippet.is_empty() {
                report.response_body = Some(String::from_utf8_lossy(&snippet).into_owned());
            }
        }
        Err(e) => report.error = Some(describe(&e, shared)),
    }
    report.latency = clock.elapsed();
    report
}

/// A one-line description of a request error including its causes (reqwest's own
/// message hides them).
fn describe(e: &reqwest::Error, shared: &Shared) -> String {
    let mut text = if e.is_timeout() {
        format!(
            "timed out (connect timeout {:?}, response timeout {:?})",
            shared.config.connect_timeout, shared.config.response_timeout
        )
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Parses `Retry-After`: delay seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        h.insert(
            RETRY_AFTER,
            "Thu, 01 Jan 2026 00:01:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(60)));
        h.insert(
            RETRY_AFTER,
            "Wed, 31 Dec 2025 00:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let base = Duration::from_secs(100);
        assert_eq!(jittered(base, 0.0), base);
        assert_eq!(jittered(Duration::ZERO, 0.5), Duration::ZERO);
        for _ in 0..1000 {
            let d = jittered(base, 0.2);
            assert!(
                d >= Duration::from_secs(80) && d <= Duration::from_secs(120),
                "{d:?}"
            );
        }
    }
}
