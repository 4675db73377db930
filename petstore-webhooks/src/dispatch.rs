//! The delivery task of one message: waits until its next attempt is due, takes a
//! permit of its endpoint (`endpoint_concurrency`) and then a global one
//! (`global_concurrency`) only while its request is in flight, makes the signed
//! request, and lets the state machine ([`crate::delivery`]) decide what follows.
//!
//! Isolation: a slow receiver occupies at most `endpoint_concurrency` of the global
//! permits and never delays other endpoints. Waiting for a retry holds neither.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use petstore_core::TraceParent;
use petstore_core::telemetry;
use reqwest::header::HeaderName;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::backend::MessageStatus;
use crate::delivery::{AttemptPlan, AttemptReport, Next};
use crate::ids::EndpointId;
use crate::local::Handles;
use crate::webhooks::AppState;

/// How much of a receiver's answer is logged.
const RESPONSE_SNIPPET: usize = 1024;

/// The W3C Trace Context header.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Resolves once the endpoint is deleted or disabled.
async fn stopped(control: &mut watch::Receiver<u64>, shared: &AppState, id: &EndpointId) {
    loop {
        if control.changed().await.is_err() {
            return;
        }
        match shared.webhook_store.endpoint(id).await {
            Ok(Some(e)) if e.enabled => {}
            Ok(_) => return,
            // Not known to be stopped: the next change asks again.
            Err(_) => {}
        }
    }
}

/// Delivers one pending message with retries, until it is finished (or the endpoint
/// is gone, or a storage error leaves it to the dispatcher's next sync).
pub(crate) async fn deliver(shared: Arc<AppState>, id: EndpointId, message_id: String) {
    let _queued = Queued::new();
    let Some(Handles {
        mut control,
        inflight,
        ..
    }) = shared.local.handles(&id)
    else {
        return;
    };
    let deliveries = shared.deliveries();
    let cancel = || async {
        if let Err(e) = deliveries.cancel(&id, &message_id).await {
            tracing::warn!(endpoint = %id, message = %message_id, error = %e, "cannot cancel a webhook message");
        }
    };
    loop {
        let message = match shared.webhook_store.message(&id, &message_id).await {
            Ok(Some(m)) if m.status == MessageStatus::Pending => m,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(endpoint = %id, message = %message_id, error = %e, "cannot read a webhook message");
                return;
            }
        };
        let wait = message
            .next_attempt_at
            .and_then(|at| (at - Utc::now()).to_std().ok())
            .unwrap_or_default();
        if !wait.is_zero() {
            let waited = tokio::select! {
                () = tokio::time::sleep(wait) => true,
                () = stopped(&mut control, &shared, &id) => false,
            };
            if !waited {
                cancel().await;
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
            cancel().await;
            return;
        };
        let plan = match deliveries.begin(message).await {
            Ok(Some(plan)) => plan,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(endpoint = %id, message_id = %message_id, error = %e, "cannot start a webhook attempt");
                return;
            }
        };
        let span = tracing::info_span!(
            "webhook_attempt",
            endpoint = %id,
            message_id = %message_id,
            attempt = plan.attempt,
        );
        let report = send(&shared, &message_id, &plan).instrument(span).await;
        match deliveries.settle(plan, report).await {
            Ok(Next::Retry) => {}
            Ok(Next::Done) => return,
            Err(e) => {
                tracing::warn!(endpoint = %id, message = %message_id, error = %e, "cannot record a webhook attempt");
                return;
            }
        }
    }
}

/// Makes one signed request and reports how it went.
async fn send(shared: &AppState, message: &str, plan: &AttemptPlan) -> AttemptReport {
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
    if let Some(traceparent) = traceparent(&plan.body) {
        headers.insert(TRACEPARENT, traceparent);
    }
    let result = client
        .post(plan.url.clone())
        .headers(headers)
        .body(plan.body.clone())
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
    let outcome = match report.status {
        Some(s) if (200..300).contains(&s) => "succeeded",
        Some(_) => "failed",
        None => "error",
    };
    tracing::info!(
        status = report.status,
        outcome,
        latency_ms = report.latency.as_secs_f64() * 1000.0,
        "webhook attempt finished"
    );
    metrics::counter!(telemetry::WEBHOOK_ATTEMPTS_TOTAL, "outcome" => outcome).increment(1);
    metrics::histogram!(telemetry::WEBHOOK_ATTEMPT_DURATION_SECONDS)
        .record(report.latency.as_secs_f64());
    report
}

/// The W3C trace context of the write that caused the event (the envelope's
/// CloudEvents distributed-tracing extension), as the attempt's `traceparent` header,
/// so that the receiver's trace continues the writer's.
fn traceparent(body: &[u8]) -> Option<HeaderValue> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        traceparent: Option<TraceParent>,
    }
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    HeaderValue::from_str(envelope.traceparent?.as_str()).ok()
}

/// Counts a message in the queue-depth gauge while its delivery task runs.
struct Queued;

impl Queued {
    fn new() -> Self {
        metrics::gauge!(telemetry::WEBHOOK_QUEUE_DEPTH).increment(1.0);
        Self
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        metrics::gauge!(telemetry::WEBHOOK_QUEUE_DEPTH).decrement(1.0);
    }
}

/// A one-line description of a request error including its causes (reqwest's own
/// message hides them).
fn describe(e: &reqwest::Error, shared: &AppState) -> String {
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
}
