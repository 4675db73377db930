//! Rate limiting without a transport: a [`RateLimiter`] that every request-response
//! adapter consults per request, keyed by who is calling (the token's subject) or,
//! for anonymous callers, where from (the client's IP address).
//!
//! The algorithm is GCRA (the generic cell rate algorithm, a token bucket stored as one
//! timestamp per key): a key may spend its whole bucket (`burst`) at once, which then
//! refills steadily at `requests` per `period`. Refused requests cost nothing.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::error::{Error, ErrorKind, Result};

/// The key of callers that are neither authenticated nor identified by an address
/// (an adapter mounted where the client address is unknown): they share one bucket.
pub const GLOBAL_RATE_KEY: &str = "global";

/// Settings of a [`RateLimiter`].
///
/// `Default` is **enabled** with generous quotas (300 requests a minute per client IP,
/// 1200 a minute per authenticated subject, bursts of a whole quota, at most 100,000
/// tracked keys); adapters keep rate limiting off unless given one of these, see
/// [`RateLimitConfig::disabled`].
///
/// ```
/// use std::time::Duration;
/// use petstore_core::RateLimitConfig;
///
/// let config = RateLimitConfig::default()
///     .requests(100)
///     .authenticated_requests(1_000)
///     .period(Duration::from_secs(60))
///     .burst(20);
/// assert!(config.enabled);
/// assert!(!RateLimitConfig::disabled().enabled);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Whether requests are limited at all.
    pub enabled: bool,
    /// Requests one anonymous client (keyed by IP address; IPv6 by its /64 prefix) may
    /// make per [`RateLimitConfig::period`] (default 300; at least 1).
    pub requests: u32,
    /// Requests one authenticated subject (the token's `sub`) may make per period,
    /// from any address (default 1200; at least 1).
    pub authenticated_requests: u32,
    /// The window the quotas are counted over (default 60 s).
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Most requests accepted at once from a full bucket, for either kind of caller;
    /// `None` (the default): the caller's whole quota. Either way the bucket refills
    /// at the quota's steady rate (`requests / period`).
    pub burst: Option<u32>,
    /// Most keys tracked at once (default 100,000). Keys whose bucket is full again are
    /// forgotten (they carry no information); when every tracked key is busy, the ones
    /// closest to full are forgotten first, which only ever makes the limiter more
    /// lenient for them.
    pub max_keys: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            requests: 300,
            authenticated_requests: 1_200,
            period: Duration::from_secs(60),
            burst: None,
            max_keys: 100_000,
        }
    }
}

impl RateLimitConfig {
    /// The default quotas, switched off: what adapters use unless told otherwise.
    pub fn disabled() -> Self {
        Self::default().enabled(false)
    }

    /// Sets [`RateLimitConfig::enabled`].
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// Sets [`RateLimitConfig::requests`] (anonymous callers, per IP).
    pub fn requests(mut self, per_period: u32) -> Self {
        self.requests = per_period;
        self
    }

    /// Sets [`RateLimitConfig::authenticated_requests`] (per subject).
    pub fn authenticated_requests(mut self, per_period: u32) -> Self {
        self.authenticated_requests = per_period;
        self
    }

    /// Sets [`RateLimitConfig::period`].
    pub fn period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// Sets [`RateLimitConfig::burst`].
    pub fn burst(mut self, requests: u32) -> Self {
        self.burst = Some(requests);
        self
    }

    /// Sets [`RateLimitConfig::max_keys`].
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    fn quota(&self, authenticated: bool) -> Quota {
        let requests = if authenticated {
            self.authenticated_requests
        } else {
            self.requests
        }
        .max(1);
        let period = self.period.max(Duration::from_millis(1));
        let emission = (period / requests).max(Duration::from_nanos(1));
        let burst = self.burst.unwrap_or(requests).max(1);
        Quota {
            policy: if authenticated {
                "authenticated"
            } else {
                "anonymous"
            },
            requests,
            period,
            emission,
            tolerance: emission.saturating_mul(burst),
        }
    }
}

/// One class of callers' quota, in GCRA terms.
#[derive(Debug, Clone, Copy)]
struct Quota {
    policy: &'static str,
    requests: u32,
    period: Duration,
    /// The steady interval between two requests: `period / requests`.
    emission: Duration,
    /// How far ahead of now a key's theoretical arrival time may run: `emission * burst`.
    tolerance: Duration,
}

/// The limiter's verdict on one request, with what the standard rate-limit headers
/// report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateDecision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The name of the quota policy that applied: `"anonymous"` (per IP) or
    /// `"authenticated"` (per subject).
    pub policy: &'static str,
    /// The quota: requests per [`RateDecision::window`].
    pub limit: u32,
    /// The window the quota is counted over.
    pub window: Duration,
    /// Requests the caller may still make right now (after this one, if allowed).
    pub remaining: u32,
    /// Time until the caller's bucket is full again.
    pub reset: Duration,
    /// For a refused request, when the next one will be accepted.
    pub retry_after: Option<Duration>,
}

/// Whole seconds, rounded up: a client told "0" would retry too early.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl RateDecision {
    /// The core error for a refused request: [`ErrorKind::RateLimited`] with the
    /// retry hint; `None` when the request is allowed.
    pub fn error(&self) -> Option<Error> {
        if self.allowed {
            return None;
        }
        let after = self.retry_after.unwrap_or(self.reset);
        Some(
            Error::new(
                ErrorKind::RateLimited,
                format!(
                    "rate limit of {} requests per {} s exceeded; retry in {} s",
                    self.limit,
                    ceil_secs(self.window),
                    ceil_secs(after)
                ),
            )
            .with_retry_after(after),
        )
    }

    /// `Ok(())` when allowed, else [`RateDecision::error`].
    pub fn result(&self) -> Result<()> {
        self.error().map_or(Ok(()), Err)
    }

    /// [`RateDecision::retry_after`] in whole seconds, rounded up (`Retry-After`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(ceil_secs)
    }

    /// Both headers of draft-ietf-httpapi-ratelimit-headers, as (lower-case name,
    /// value): `ratelimit-policy` ([`RateDecision::policy_header`]) and `ratelimit`
    /// ([`RateDecision::limit_header`]). HTTP headers and gRPC metadata alike.
    pub fn headers(&self) -> [(&'static str, String); 2] {
        [
            ("ratelimit-policy", self.policy_header()),
            ("ratelimit", self.limit_header()),
        ]
    }

    /// The value of the `RateLimit-Policy` header of draft-ietf-httpapi-ratelimit-headers
    /// (an RFC 9651 structured field): `"anonymous";q=300;w=60`.
    pub fn policy_header(&self) -> String {
        format!(
            "\"{}\";q={};w={}",
            self.policy,
            self.limit,
            ceil_secs(self.window)
        )
    }

    /// The value of the `RateLimit` header of draft-ietf-httpapi-ratelimit-headers:
    /// `"anonymous";r=42;t=17` (remaining requests, seconds until the bucket is full).
    pub fn limit_header(&self) -> String {
        format!(
            "\"{}\";r={};t={}",
            self.policy,
            self.remaining,
            ceil_secs(self.reset)
        )
    }
}

/// The bucket key of a caller: `sub:<subject>` when authenticated, else
/// `ip:<address>` (an IPv6 address by its /64 prefix, which one client usually owns
/// whole; an IPv4-mapped one as IPv4), else [`GLOBAL_RATE_KEY`].
pub fn rate_key(principal: &Principal, ip: Option<IpAddr>) -> String {
    if let Some(subject) = principal.subject() {
        return format!("sub:{subject}");
    }
    match ip.map(canonical_ip) {
        Some(IpAddr::V4(v4)) => format!("ip:{v4}"),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            let prefix = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("ip:{prefix}/64")
        }
        None => GLOBAL_RATE_KEY.to_owned(),
    }
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A per-key request limiter with bounded memory; share one (`Arc`) between the
/// requests it limits. See the module docs for the algorithm and
/// [`RateLimitConfig`] for the quotas.
///
/// ```
/// use std::time::{Duration, Instant};
/// use petstore_core::{ErrorKind, Principal, RateLimitConfig, RateLimiter};
///
/// let limiter = RateLimiter::new(RateLimitConfig::default().requests(2));
/// let ip = Some("192.0.2.7".parse().unwrap());
/// let now = Instant::now();
/// let anon = Principal::anonymous();
/// assert!(limiter.check_at(&anon, ip, now).allowed);
/// assert!(limiter.check_at(&anon, ip, now).allowed);
/// let refused = limiter.check_at(&anon, ip, now);
/// assert_eq!(refused.error().unwrap().kind(), ErrorKind::RateLimited);
/// assert_eq!(refused.retry_after, Some(Duration::from_secs(30)));
/// // Half a minute later one request's worth has refilled.
/// assert!(limiter.check_at(&anon, ip, now + Duration::from_secs(30)).allowed);
/// ```
pub struct RateLimiter {
    config: RateLimitConfig,
    anonymous: Quota,
    authenticated: Quota,
    state: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    /// Theoretical arrival time per key: the bucket is full again at that instant.
    tat: HashMap<String, Instant>,
    last_sweep: Option<Instant>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.config)
            .field("tracked_keys", &self.tracked_keys())
            .finish()
    }
}

impl RateLimiter {
    /// A limiter applying `config`.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            anonymous: config.quota(false),
            authenticated: config.quota(true),
            config,
            state: Mutex::new(Buckets::default()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Whether [`RateLimitConfig::enabled`] is set; a disabled limiter allows
    /// everything and tracks nothing.
    pub fn is_enabled(&self) -> bool {
        self.config.enabled
    }

    /// How many keys are tracked right now (never more than `max_keys`).
    pub fn tracked_keys(&self) -> usize {
        self.lock().tat.len()
    }

    /// Counts one request of `principal` from `ip` (see [`rate_key`]) now.
    pub fn check(&self, principal: &Principal, ip: Option<IpAddr>) -> RateDecision {
        self.check_at(principal, ip, Instant::now())
    }

    /// Like [`RateLimiter::check`] at the instant `now` (a monotonic clock reading;
    /// tests pass their own).
    pub fn check_at(
        &self,
        principal: &Principal,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> RateDecision {
        self.check_key_at(&rate_key(principal, ip), principal.is_authenticated(), now)
    }

    /// Counts one request under `key` against the authenticated or the anonymous
    /// quota, at `now`. An allowed request spends one unit; a refused one nothing.
    pub fn check_key_at(&self, key: &str, authenticated: bool, now: Instant) -> RateDecision {
        let quota = if authenticated {
            self.authenticated
        } else {
            self.anonymous
        };
        if !self.config.enabled {
            return RateDecision {
                allowed: true,
                policy: quota.policy,
                limit: quota.requests,
                window: quota.period,
                remaining: quota.requests,
                reset: Duration::ZERO,
                retry_after: None,
            };
        }
        let mut state = self.lock();
        self.sweep(&mut state, now);
        let tat = state.tat.get(key).copied().unwrap_or(now).max(now);
        let next = tat + quota.emission;
        let ahead = next - now;
        let mut decision = RateDecision {
            allowed: ahead <= quota.tolerance,
            policy: quota.policy,
            limit: quota.requests,
            window: quota.period,
            remaining: 0,
            reset: tat - now,
            retry_after: None,
        };
        if decision.allowed {
            let spare = (quota.tolerance - ahead).as_nanos() / quota.emission.as_nanos();
            decision.remaining = u32::try_from(spare).unwrap_or(u32::MAX);
            decision.reset = ahead;
            if !state.tat.contains_key(key) {
                self.make_room(&mut state, now);
            }
            state.tat.insert(key.to_owned(), next);
        } else {
            decision.retry_after = Some(ahead - quota.tolerance);
            let caller = if authenticated {
                "authenticated"
            } else {
                "anonymous"
            };
            metrics::counter!(crate::telemetry::RATE_LIMIT_REJECTIONS_TOTAL, "caller" => caller)
                .increment(1);
        }
        decision
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Once per period, forgets every key whose bucket is full again.
    fn sweep(&self, state: &mut Buckets, now: Instant) {
        let due = state
            .last_sweep
            .is_none_or(|last| now.saturating_duration_since(last) >= self.config.period);
        if due {
            state.tat.retain(|_, tat| *tat > now);
            state.last_sweep = Some(now);
        }
    }

    /// Before a new key is added: keeps the map under `max_keys`, forgetting full
    /// buckets first, then (if every key is busy) the eighth of the keys closest to
    /// full, so that the next inserts are cheap again.
    fn make_room(&self, state: &mut Buckets, now: Instant) {
        let max = self.config.max_keys.max(1);
        if state.tat.len() < max {
            return;
        }
        state.tat.retain(|_, tat| *tat > now);
        state.last_sweep = Some(now);
        if state.tat.len() < max {
            return;
        }
        let mut by_tat: Vec<(Instant, String)> =
            state.tat.iter().map(|(k, t)| (*t, k.clone())).collect();
        let evict = (by_tat.len() / 8).max(by_tat.len() + 1 - max);
        by_tat.select_nth_unstable_by_key(evict - 1, |(t, _)| *t);
        for (_, key) in &by_tat[..evict] {
            state.tat.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn three_per_minute() -> RateLimiter {
        RateLimiter::new(
            RateLimitConfig::default()
                .requests(3)
                .authenticated_requests(6)
                .period(MINUTE),
        )
    }

    #[test]
    fn a_quota_is_spent_then_refused_with_a_retry_hint() {
        let limiter = three_per_minute();
        let anon = Principal::anonymous();
        let now = Instant::now();
        let remaining: Vec<u32> = (0..3)
            .map(|_| {
                let d = limiter.check_at(&anon, ip("192.0.2.1"), now);
                assert!(d.allowed);
                assert_eq!((d.limit, d.window, d.policy), (3, MINUTE, "anonymous"));
                d.remaining
            })
            .collect();
        assert_eq!(remaining, [2, 1, 0]);

        let refused = limiter.check_at(&anon, ip("192.0.2.1"), now);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // One request refills every 20 s; the bucket is full a minute from now.
        assert_eq!(refused.retry_after, Some(Duration::from_secs(20)));
        assert_eq!(refused.reset, MINUTE);
        let err = refused.error().unwrap();
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(20)));
        assert!(refused.result().is_err());
    }

    #[test]
    fn refused_requests_cost_nothing_and_the_bucket_refills_steadily() {
        let limiter = three_per_minute();
        let anon = Principal::anonymous();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(&anon, ip("192.0.2.1"), t0).allowed);
        }
        // Hammering while refused does not push the retry time back.
        for _ in 0..10 {
            let d = limiter.check_at(&anon, ip("192.0.2.1"), t0 + Duration::from_secs(5));
            assert_eq!(d.retry_after, Some(Duration::from_secs(15)));
        }
        let t20 = t0 + Duration::from_secs(20);
        let d = limiter.check_at(&anon, ip("192.0.2.1"), t20);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(!limiter.check_at(&anon, ip("192.0.2.1"), t20).allowed);
        // After a quiet minute the whole quota is back.
        let later = t20 + MINUTE;
        let d = limiter.check_at(&anon, ip("192.0.2.1"), later);
        assert!(d.allowed);
        assert_eq!(d.remaining, 2);
    }

    #[test]
    fn keys_are_independent_and_subjects_get_their_own_quota() {
        let limiter = three_per_minute();
        let anon = Principal::anonymous();
        let alice = Principal::new("alice", []);
        let now = Instant::now();
        for _ in 0..3 {
            limiter.check_at(&anon, ip("192.0.2.1"), now);
        }
        assert!(!limiter.check_at(&anon, ip("192.0.2.1"), now).allowed);
        // Another address, and a subject calling from the exhausted address, are fine.
        assert!(limiter.check_at(&anon, ip("192.0.2.2"), now).allowed);
        let d = limiter.check_at(&alice, ip("192.0.2.1"), now);
        assert!(d.allowed);
        assert_eq!((d.policy, d.limit, d.remaining), ("authenticated", 6, 5));
        // A subject is one bucket whatever its address.
        for n in 0..5 {
            let from = format!("198.51.100.{n}");
            assert!(limiter.check_at(&alice, ip(&from), now).allowed);
        }
        assert!(!limiter.check_at(&alice, ip("198.51.100.99"), now).allowed);
    }

    #[test]
    fn burst_caps_what_a_full_bucket_allows_at_once() {
        let limiter = RateLimiter::new(RateLimitConfig::default().requests(60).burst(2));
        let anon = Principal::anonymous();
        let now = Instant::now();
        assert_eq!(limiter.check_at(&anon, None, now).remaining, 1);
        assert_eq!(limiter.check_at(&anon, None, now).remaining, 0);
        let refused = limiter.check_at(&anon, None, now);
        assert_eq!(refused.retry_after, Some(Duration::from_secs(1)));
        assert_eq!(
            refused.limit, 60,
            "the policy still states the sustained quota"
        );
        assert!(
            limiter
                .check_at(&anon, None, now + Duration::from_secs(1))
                .allowed
        );
    }

    #[test]
    fn keys_name_the_subject_or_the_address() {
        let anon = Principal::anonymous();
        assert_eq!(
            rate_key(&Principal::new("bob", []), ip("192.0.2.1")),
            "sub:bob"
        );
        assert_eq!(rate_key(&anon, ip("192.0.2.1")), "ip:192.0.2.1");
        assert_eq!(rate_key(&anon, ip("::ffff:192.0.2.1")), "ip:192.0.2.1");
        // One IPv6 client owns a /64: its addresses share a bucket.
        assert_eq!(
            rate_key(&anon, ip("2001:db8:1:2:aaaa::1")),
            rate_key(&anon, ip("2001:db8:1:2:bbbb::2"))
        );
        assert_eq!(
            rate_key(&anon, ip("2001:db8:1:2::9")),
            "ip:2001:db8:1:2::/64"
        );
        assert_eq!(rate_key(&anon, None), GLOBAL_RATE_KEY);
    }

    #[test]
    fn memory_is_bounded_and_idle_keys_are_forgotten() {
        let limiter = RateLimiter::new(RateLimitConfig::default().requests(3).max_keys(16));
        let anon = Principal::anonymous();
        let t0 = Instant::now();
        for n in 0..100u8 {
            let d = limiter.check_at(&anon, ip(&format!("10.0.0.{n}")), t0);
            assert!(d.allowed, "a new key always starts with a full bucket");
            assert!(limiter.tracked_keys() <= 16);
        }
        // A key whose bucket is full again is dropped at the next sweep.
        limiter.check_at(&anon, ip("10.0.1.1"), t0 + MINUTE + MINUTE);
        assert_eq!(limiter.tracked_keys(), 1);
    }

    #[test]
    fn a_disabled_limiter_allows_everything_and_tracks_nothing() {
        let limiter = RateLimiter::new(RateLimitConfig::disabled().requests(1));
        let anon = Principal::anonymous();
        let now = Instant::now();
        for _ in 0..10 {
            assert!(limiter.check_at(&anon, None, now).allowed);
        }
        assert_eq!(limiter.tracked_keys(), 0);
        assert!(!limiter.is_enabled());
    }

    #[test]
    fn headers_follow_the_ietf_draft() {
        let limiter = three_per_minute();
        let now = Instant::now();
        let d = limiter.check_at(&Principal::anonymous(), ip("192.0.2.1"), now);
        assert_eq!(d.policy_header(), "\"anonymous\";q=3;w=60");
        assert_eq!(d.limit_header(), "\"anonymous\";r=2;t=20");
        assert_eq!(d.retry_after_secs(), None);
        let slow = RateDecision {
            retry_after: Some(Duration::from_millis(1_001)),
            ..d
        };
        assert_eq!(slow.retry_after_secs(), Some(2));
    }
}
