//! The delivery state machine of a message: when its attempts are due (the retry
//! schedule with jitter, stretched by `Retry-After`), what an answer means (2xx
//! succeeds; 410 disables the endpoint; anything else is retried until the schedule
//! runs out or the endpoint has failed for `disable_after`, which disables it), and
//! the ways a message enters (test events, redelivery) or leaves it early
//! (cancellation, a delivery task that died).
//!
//! Every step is written to the store, so a restarted dispatcher goes on where the
//! last one stopped: same `webhook-id`, same place in the schedule, same due time.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use petstore_core::telemetry;
use petstore_core::{Error, ErrorKind, Result};
use reqwest::Url;

use crate::backend::{
    Attempt, AttemptOutcome, Endpoint, Message, MessageStatus, Queue, WebhookStore, WebhookStoreExt,
};
use crate::config::WebhookConfig;
use crate::endpoints::{disable, require_enabled};
use crate::ids::{AttemptId, EndpointId};
use crate::local::Local;
use crate::messages::{MessageView, test_message};
use crate::signing::Signer;

/// Everything one attempt needs.
#[derive(Debug)]
pub(crate) struct AttemptPlan {
    pub(crate) url: Url,
    pub(crate) signer: Signer,
    pub(crate) body: Bytes,
    /// The attempt's number (1 for the first of the message).
    pub(crate) attempt: u32,
    /// The endpoint's `failing_since` when the attempt started.
    failing_since: Option<DateTime<Utc>>,
    message: Message,
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
    /// Wait until the message's next attempt is due and try again.
    Retry,
    /// Finished, successfully or not.
    Done,
}

/// `delay` spread by up to ±`jitter` of itself.
pub(crate) fn jittered(delay: Duration, jitter: f64) -> Duration {
    if delay.is_zero() || jitter <= 0.0 {
        return delay;
    }
    delay.mul_f64((1.0 + rand::random_range(-jitter..=jitter)).max(0.0))
}

/// When something `delay` from `now` is due: `None` for now.
fn due_in(delay: Duration, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if delay.is_zero() {
        return None;
    }
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .or(Some(DateTime::<Utc>::MAX_UTC))
}

/// When the first attempt of a newly queued (or reopened) message is due.
pub(crate) fn first_due(config: &WebhookConfig, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let first = config.retry_schedule.first().copied().unwrap_or_default();
    due_in(jittered(first, config.jitter), now)
}

/// What an attempt's answer means for the endpoint's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Health {
    /// Nothing to record.
    Unchanged,
    /// It answered 2xx after failures: `failing_since` is cleared.
    Recovered,
    /// It failed: `failing_since` is set unless set already.
    Failing(DateTime<Utc>),
    /// It is disabled for `reason` (and failing since `since`, when given).
    Disable {
        since: Option<DateTime<Utc>>,
        reason: String,
    },
}

/// The verdict on one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// The message's status now (pending: retried after `delay`).
    pub(crate) status: MessageStatus,
    /// The wait before the next attempt, when retried.
    pub(crate) delay: Option<Duration>,
    /// The message's `last_error`.
    pub(crate) error: Option<String>,
    pub(crate) health: Health,
}

/// Judges an attempt: `done` is how many attempts of the current round have been made
/// (this one included), `failing_since` the endpoint's when it started.
pub(crate) fn judge(
    config: &WebhookConfig,
    done: u32,
    failing_since: Option<DateTime<Utc>>,
    report: &AttemptReport,
    now: DateTime<Utc>,
) -> Verdict {
    let succeeded = report.status.is_some_and(|s| (200..300).contains(&s));
    let error = report.error.clone().or_else(|| {
        report
            .status
            .filter(|_| !succeeded)
            .map(|s| format!("the receiver answered {s}"))
    });
    let verdict = |status, delay, health| Verdict {
        status,
        delay,
        error: error.clone(),
        health,
    };
    if succeeded {
        let health = match failing_since {
            Some(_) => Health::Recovered,
            None => Health::Unchanged,
        };
        return verdict(MessageStatus::Succeeded, None, health);
    }
    if report.status == Some(410) {
        let health = Health::Disable {
            since: None,
            reason: "the receiver answered 410 Gone".to_owned(),
        };
        return verdict(MessageStatus::Failed, None, health);
    }
    let since = failing_since.unwrap_or(report.started);
    let failing = match failing_since {
        Some(_) => Health::Unchanged,
        None => Health::Failing(since),
    };
    let failing_for = (now - since).to_std().unwrap_or_default();
    if failing_for >= config.disable_after {
        let health = Health::Disable {
            since: Some(since),
            reason: format!(
                "every delivery attempt has failed since {}",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        };
        return verdict(MessageStatus::Failed, None, health);
    }
    match config.retry_schedule.get(done as usize) {
        Some(base) => {
            let retry_after = report
                .retry_after
                .map(|a| a.min(config.max_retry_after))
                .unwrap_or_default();
            let delay = jittered(*base, config.jitter).max(retry_after);
            verdict(MessageStatus::Pending, Some(delay), failing)
        }
        None => verdict(MessageStatus::Failed, None, failing),
    }
}

fn backlog_full(id: &EndpointId) -> Error {
    Error::new(
        ErrorKind::RateLimited,
        format!("webhook endpoint `{id}` has too many pending messages"),
    )
    .with_retry_after(Duration::from_secs(60))
}

fn still_pending(message: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("message `{message}` is still being delivered"),
    )
}

/// The transitions of the state machine, written to the store.
pub(crate) struct Deliveries<'a> {
    pub(crate) store: &'a dyn WebhookStore,
    pub(crate) local: &'a Local,
    pub(crate) config: &'a WebhookConfig,
}

impl Deliveries<'_> {
    /// Queues a message and tells the dispatcher; `Pending` is an error here.
    async fn queue(&self, message: &Message) -> Result<MessageView> {
        match self.store.queue(message, &self.config.limits()).await? {
            Queue::Queued(m) => {
                self.local.ready(m.endpoint.clone(), m.id.clone());
                Ok(MessageView::from(&*m))
            }
            Queue::Pending => Err(still_pending(&message.id)),
            Queue::Full => Err(backlog_full(&message.endpoint)),
        }
    }

    /// Queues a test event for the endpoint.
    pub(crate) async fn test(&self, id: &EndpointId, source: &str) -> Result<MessageView> {
        require_enabled(&self.store.existing_endpoint(id).await?)?;
        let now = Utc::now();
        self.queue(&test_message(id, source, now, first_due(self.config, now)))
            .await
    }

    /// Queues another delivery of a finished message, from the start of the schedule.
    pub(crate) async fn redeliver(&self, id: &EndpointId, message: &str) -> Result<MessageView> {
        let endpoint = self.store.existing_endpoint(id).await?;
        let mut again = self.store.message(id, message).await?.ok_or_else(|| {
            Error::not_found(&format!("message of webhook endpoint `{id}`"), message)
        })?;
        if again.status == MessageStatus::Pending {
            return Err(still_pending(message));
        }
        require_enabled(&endpoint)?;
        again.next_attempt_at = first_due(self.config, Utc::now());
        self.queue(&again).await
    }

    /// Starts an attempt: `None` when the endpoint is gone or disabled (the message is
    /// then cancelled).
    pub(crate) async fn begin(&self, message: Message) -> Result<Option<AttemptPlan>> {
        let Some(endpoint) = self.store.endpoint(&message.endpoint).await? else {
            return Ok(None);
        };
        if !endpoint.enabled {
            self.cancel(&endpoint.id, &message.id).await?;
            return Ok(None);
        }
        let mut signer = Signer::new(endpoint.secret);
        if let Some(previous) = endpoint.previous_secret
            && previous.expires_at > Utc::now()
        {
            signer = signer.with(previous.secret);
        }
        Ok(Some(AttemptPlan {
            url: endpoint.url,
            signer,
            body: message.body.clone(),
            attempt: message.attempts + 1,
            failing_since: endpoint.failing_since,
            message,
        }))
    }

    /// Logs an attempt and moves the message on (see [`judge`]); records the
    /// endpoint's health.
    pub(crate) async fn settle(&self, plan: AttemptPlan, report: AttemptReport) -> Result<Next> {
        let now = Utc::now();
        let mut m = plan.message;
        m.attempts = plan.attempt;
        m.step += 1;
        let verdict = judge(self.config, m.step, plan.failing_since, &report, now);
        let succeeded = report.status.is_some_and(|s| (200..300).contains(&s));
        let attempt = Attempt {
            id: AttemptId::generate(),
            endpoint: m.endpoint.clone(),
            message_id: m.id.clone(),
            event_type: m.event_type.clone(),
            attempt: plan.attempt,
            url: report.url,
            timestamp: report.started,
            status_code: report.status,
            latency_ms: u64::try_from(report.latency.as_millis()).unwrap_or(u64::MAX),
            outcome: if succeeded {
                AttemptOutcome::Succeeded
            } else {
                AttemptOutcome::Failed
            },
            error: report.error,
            response_body: report.response_body,
        };
        m.status = verdict.status;
        m.last_attempt_at = Some(report.started);
        m.last_status_code = report.status;
        m.last_error = verdict.error;
        m.next_attempt_at = verdict.delay.and_then(|d| due_in(d, now));
        if !self
            .store
            .settle(&m, Some(&attempt), &self.config.limits())
            .await?
        {
            // Cancelled or deleted meanwhile.
            return Ok(Next::Done);
        }
        self.record_health(&m.endpoint, verdict.health).await?;
        match m.status {
            MessageStatus::Succeeded => {
                metrics::counter!(telemetry::WEBHOOK_MESSAGES_TOTAL, "status" => "succeeded")
                    .increment(1);
            }
            MessageStatus::Failed => {
                metrics::counter!(telemetry::WEBHOOK_MESSAGES_TOTAL, "status" => "failed")
                    .increment(1);
            }
            _ => {}
        }
        if m.status == MessageStatus::Pending {
            Ok(Next::Retry)
        } else {
            self.local.freed(&m.endpoint);
            Ok(Next::Done)
        }
    }

    async fn record_health(&self, id: &EndpointId, health: Health) -> Result<()> {
        let disables = matches!(health, Health::Disable { .. });
        let change = |e: &mut Endpoint| -> Result<bool> {
            Ok(match &health {
                Health::Unchanged => false,
                Health::Recovered => e.failing_since.take().is_some(),
                Health::Failing(since) => {
                    let unset = e.failing_since.is_none();
                    e.failing_since.get_or_insert(*since);
                    unset
                }
                Health::Disable { since, reason } => {
                    let unset = since.is_some() && e.failing_since.is_none();
                    e.failing_since = e.failing_since.or(*since);
                    disable(e, reason.clone()) || unset
                }
            })
        };
        if health == Health::Unchanged {
            return Ok(());
        }
        match self.store.modify_endpoint(id, change).await {
            Ok(_) => {}
            // Deleted meanwhile: nothing to record.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        if disables {
            metrics::counter!(telemetry::WEBHOOK_ENDPOINTS_DISABLED_TOTAL).increment(1);
            // Its other tasks stop and cancel their messages.
            self.local.poke(id);
        }
        Ok(())
    }

    /// Ends a pending message with `status` and `error`.
    async fn end(
        &self,
        id: &EndpointId,
        message: &str,
        status: MessageStatus,
        error: String,
    ) -> Result<()> {
        let Some(mut m) = self.store.message(id, message).await? else {
            return Ok(());
        };
        m.status = status;
        m.next_attempt_at = None;
        m.last_error = Some(error);
        if self.store.settle(&m, None, &self.config.limits()).await? {
            self.local.freed(id);
        }
        Ok(())
    }

    /// Ends a message that can no longer be delivered (endpoint disabled or gone).
    pub(crate) async fn cancel(&self, id: &EndpointId, message: &str) -> Result<()> {
        let Some(endpoint) = self.store.endpoint(id).await? else {
            return Ok(());
        };
        let reason = endpoint
            .disabled_reason
            .unwrap_or_else(|| "the endpoint is disabled".to_owned());
        self.end(
            id,
            message,
            MessageStatus::Cancelled,
            format!("not delivered: {reason}"),
        )
        .await
    }

    /// After a delivery task died of a bug: the message fails, saying why (it is not
    /// retried in a loop).
    pub(crate) async fn task_failed(
        &self,
        id: &EndpointId,
        message: &str,
        why: &str,
    ) -> Result<()> {
        self.end(
            id,
            message,
            MessageStatus::Failed,
            format!("internal error while delivering: {why}"),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn report(status: Option<u16>, started: DateTime<Utc>) -> AttemptReport {
        AttemptReport {
            url: "https://example.com/hook".to_owned(),
            started,
            latency: Duration::from_millis(5),
            status,
            error: status.is_none().then(|| "could not connect".to_owned()),
            response_body: None,
            retry_after: None,
        }
    }

    fn config() -> WebhookConfig {
        WebhookConfig::default()
            .retry_schedule([0, 5, 300].map(Duration::from_secs))
            .jitter(0.0)
            .disable_after(Duration::from_secs(3600))
    }

    #[test]
    fn success_finishes_and_clears_the_failing_state() {
        let now = at("2026-01-01T00:00:00Z");
        let v = judge(&config(), 1, None, &report(Some(204), now), now);
        assert_eq!(v.status, MessageStatus::Succeeded);
        assert_eq!(
            (v.delay, v.error, v.health),
            (None, None, Health::Unchanged)
        );
        let v = judge(&config(), 2, Some(now), &report(Some(200), now), now);
        assert_eq!(v.health, Health::Recovered);
    }

    #[test]
    fn failures_follow_the_schedule_then_fail() {
        let now = at("2026-01-01T00:00:00Z");
        let c = config();
        let v = judge(&c, 1, None, &report(Some(500), now), now);
        assert_eq!(v.status, MessageStatus::Pending);
        assert_eq!(v.delay, Some(Duration::from_secs(5)), "the second entry");
        assert_eq!(v.error.as_deref(), Some("the receiver answered 500"));
        assert_eq!(v.health, Health::Failing(now));
        let v = judge(&c, 2, Some(now), &report(None, now), now);
        assert_eq!(v.delay, Some(Duration::from_secs(300)));
        assert_eq!(v.error.as_deref(), Some("could not connect"));
        assert_eq!(v.health, Health::Unchanged, "failing already");
        let v = judge(&c, 3, Some(now), &report(Some(503), now), now);
        assert_eq!((v.status, v.delay), (MessageStatus::Failed, None));
    }

    #[test]
    fn retry_after_stretches_the_wait_up_to_the_maximum() {
        let now = at("2026-01-01T00:00:00Z");
        let c = config().max_retry_after(Duration::from_secs(60));
        let mut r = report(Some(429), now);
        r.retry_after = Some(Duration::from_secs(30));
        assert_eq!(
            judge(&c, 1, None, &r, now).delay,
            Some(Duration::from_secs(30))
        );
        r.retry_after = Some(Duration::from_secs(3600));
        assert_eq!(
            judge(&c, 1, None, &r, now).delay,
            Some(Duration::from_secs(60))
        );
        // Shorter than the schedule: the schedule wins.
        r.retry_after = Some(Duration::from_secs(1));
        assert_eq!(
            judge(&c, 1, None, &r, now).delay,
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn gone_disables_at_once_without_retry() {
        let now = at("2026-01-01T00:00:00Z");
        let v = judge(&config(), 1, None, &report(Some(410), now), now);
        assert_eq!((v.status, v.delay), (MessageStatus::Failed, None));
        let Health::Disable {
            since: None,
            reason,
        } = v.health
        else {
            panic!("{:?}", v.health)
        };
        assert!(reason.contains("410"), "{reason}");
    }

    #[test]
    fn failing_for_the_configured_period_disables() {
        let since = at("2026-01-01T00:00:00Z");
        let later = at("2026-01-01T01:00:00Z");
        let v = judge(&config(), 1, Some(since), &report(Some(500), later), later);
        assert_eq!(v.status, MessageStatus::Failed);
        assert_eq!(
            v.health,
            Health::Disable {
                since: Some(since),
                reason: "every delivery attempt has failed since 2026-01-01T00:00:00Z".to_owned(),
            }
        );
        let almost = at("2026-01-01T00:59:59Z");
        let v = judge(
            &config(),
            1,
            Some(since),
            &report(Some(500), almost),
            almost,
        );
        assert_eq!(v.status, MessageStatus::Pending);
    }

    #[test]
    fn the_first_attempt_is_due_after_the_first_delay() {
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(first_due(&config(), now), None, "immediately");
        let c = config().retry_schedule([Duration::from_secs(5)]);
        assert_eq!(first_due(&c, now), Some(at("2026-01-01T00:00:05Z")));
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
