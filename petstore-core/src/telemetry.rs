//! The metric names every crate of the Pet Store records through the [`metrics`]
//! facade, in one place so that the dashboards, the README and the code agree, and the
//! few helpers the adapters share to record them.
//!
//! Recording costs next to nothing until an application installs a recorder (the
//! server installs a Prometheus exporter); without one every call is a no-op.
//!
//! ```
//! use std::time::Duration;
//! use petstore_core::telemetry::{OpenStream, record_request};
//!
//! record_request("http", "GET /v1/pets", "200", Duration::from_millis(3));
//! let stream = OpenStream::new("sse"); // petstore_open_streams{kind="sse"} + 1
//! drop(stream); // and - 1 again
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Requests, calls and operations served: counter with `protocol` (`http`, `grpc`,
/// `graphql`, `mcp`, `mqtt`), `operation` (`POST /v1/pets`, the gRPC method path, the
/// GraphQL operation type, the MCP method, the MQTT command) and `outcome` (the HTTP
/// status, the gRPC code, `ok` / `error`, MCP's `tool_error`). Every label value is
/// one of a bounded set: a made-up HTTP method is `_OTHER`, a path no route matches
/// `unmatched`, a gRPC method the server does not have `unknown`.
pub const REQUESTS_TOTAL: &str = "petstore_requests_total";
/// Latency of [`REQUESTS_TOTAL`]'s requests in seconds (histogram, same labels).
pub const REQUEST_DURATION_SECONDS: &str = "petstore_request_duration_seconds";
/// Streams open right now, by `kind` (`sse`, `websocket`, `chat_websocket`,
/// `graphql_ws`, `grpc`): gauge.
pub const OPEN_STREAMS: &str = "petstore_open_streams";
/// Streams opened since start, by `kind`: counter.
pub const STREAMS_OPENED_TOTAL: &str = "petstore_streams_opened_total";
/// Live subscribers cut off because they fell too far behind the log, or because
/// their connection's own queue of outgoing messages filled: counter.
pub const SUBSCRIBER_CUTOFFS_TOTAL: &str = "petstore_subscriber_cutoffs_total";
/// How many events a subscriber was behind when it was cut off: histogram.
pub const SUBSCRIBER_LAG_EVENTS: &str = "petstore_subscriber_lag_events";
/// Offset of the newest event of the log that this instance has seen (handed to its
/// subscribers), whoever appended it: gauge.
pub const LOG_HEAD_OFFSET: &str = "petstore_log_head_offset";
/// Events the log keeps (its retention): a resume token older than the head minus
/// this is expired. Gauge, set by the application that configures the log.
pub const LOG_RETENTION_EVENTS: &str = "petstore_log_retention_events";
/// Events this instance appended to the log: counter.
pub const LOG_EVENTS_TOTAL: &str = "petstore_log_events_total";
/// Requests refused by the rate limiter, by `caller` (`authenticated` or
/// `anonymous`): counter.
pub const RATE_LIMIT_REJECTIONS_TOTAL: &str = "petstore_rate_limit_rejections_total";

/// Webhook delivery attempts, by `outcome` (`succeeded`: a 2xx answer; `failed`: any
/// other answer; `error`: no answer): counter.
pub const WEBHOOK_ATTEMPTS_TOTAL: &str = "petstore_webhook_attempts_total";
/// Latency of webhook delivery attempts in seconds: histogram.
pub const WEBHOOK_ATTEMPT_DURATION_SECONDS: &str = "petstore_webhook_attempt_duration_seconds";
/// Webhook messages finished, by `status` (`succeeded`, `failed`): counter.
pub const WEBHOOK_MESSAGES_TOTAL: &str = "petstore_webhook_messages_total";
/// Webhook messages this process is delivering or waiting to retry: gauge.
pub const WEBHOOK_QUEUE_DEPTH: &str = "petstore_webhook_queue_depth";
/// Webhook endpoints disabled by their failures (or a 410): counter.
pub const WEBHOOK_ENDPOINTS_DISABLED_TOTAL: &str = "petstore_webhook_endpoints_disabled_total";
/// Whether the MQTT bridge is connected to its broker (1 or 0): gauge.
pub const MQTT_BRIDGE_CONNECTED: &str = "petstore_mqtt_bridge_connected";
/// Events between the log head and the bridge's last acknowledged event: gauge.
pub const MQTT_BRIDGE_LAG_EVENTS: &str = "petstore_mqtt_bridge_lag_events";
/// Messages the bridge has sent and the broker not yet acknowledged: gauge.
pub const MQTT_BRIDGE_IN_FLIGHT: &str = "petstore_mqtt_bridge_in_flight";
/// Events the bridge published and the broker acknowledged: counter.
pub const MQTT_BRIDGE_PUBLISHED_TOTAL: &str = "petstore_mqtt_bridge_published_total";

/// Changes committed to a SQL store (or refused), by `backend` (`sqlite`, `postgres`)
/// and `outcome` (`ok`; `stale`: a conditional write lost, the service retries;
/// `error`): counter.
pub const DB_COMMITS_TOTAL: &str = "petstore_db_commits_total";
/// Duration of each writing transaction in seconds, from `BEGIN` to the end of
/// `COMMIT` (the WAL flush included), by `backend`: histogram.
pub const DB_COMMIT_DURATION_SECONDS: &str = "petstore_db_commit_duration_seconds";
/// Changes per SQLite transaction (group commit): histogram.
pub const DB_COMMIT_GROUP_SIZE: &str = "petstore_db_commit_group_size";
/// Connections of the SQL store's pool, by `backend` and `state` (`open`, `idle`),
/// read after each transaction: gauge.
pub const DB_POOL_CONNECTIONS: &str = "petstore_db_pool_connections";

/// The kind of series a [`Metric`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution of observed values.
    Histogram,
}

/// One metric the Pet Store records: what [`METRICS`] lists for each name.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The metric's name, e.g. [`REQUESTS_TOTAL`].
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Its unit, when it has one.
    pub unit: Option<metrics::Unit>,
    /// One line of help text (Prometheus's `# HELP`).
    pub help: &'static str,
    /// A label whose values are a fixed set, with that set.
    pub fixed_labels: Option<(&'static str, &'static [&'static str])>,
    /// Whether [`describe_metrics`] registers the metric's series at zero (once per
    /// value of [`Metric::fixed_labels`]): the counters and gauges whose zero is true
    /// before anything happened. Not the MQTT bridge's, which the bridge sets when it
    /// runs, nor the database's, nor the log head.
    pub zero_at_start: bool,
}

/// The `kind` label values of [`OPEN_STREAMS`] and [`STREAMS_OPENED_TOTAL`]: every
/// kind of stream the adapters open ([`OpenStream::new`] takes one of these).
pub const STREAM_KINDS: &[&str] = &["sse", "websocket", "chat_websocket", "graphql_ws", "grpc"];

/// Every metric the libraries record, with its kind, unit and help text, in the order
/// of the server README's table.
pub const METRICS: &[Metric] = &{
    use MetricKind::{Counter, Gauge, Histogram};
    use metrics::Unit::{Count, Seconds};
    const fn m(name: &'static str, kind: MetricKind, help: &'static str) -> Metric {
        Metric {
            name,
            kind,
            unit: None,
            help,
            fixed_labels: None,
            zero_at_start: false,
        }
    }
    const fn unit(mut metric: Metric, unit: metrics::Unit) -> Metric {
        metric.unit = Some(unit);
        metric
    }
    /// Registered at zero, once per value of `label` (or once, without a label).
    const fn zero(
        mut metric: Metric,
        labels: Option<(&'static str, &'static [&'static str])>,
    ) -> Metric {
        metric.fixed_labels = labels;
        metric.zero_at_start = true;
        metric
    }
    [
        m(
            REQUESTS_TOTAL,
            Counter,
            "Requests, calls, operations and commands served, by protocol, operation and outcome.",
        ),
        unit(
            m(
                REQUEST_DURATION_SECONDS,
                Histogram,
                "Latency of the requests counted in petstore_requests_total.",
            ),
            Seconds,
        ),
        zero(
            m(OPEN_STREAMS, Gauge, "Streams open now, by kind."),
            Some(("kind", STREAM_KINDS)),
        ),
        zero(
            m(STREAMS_OPENED_TOTAL, Counter, "Streams opened, by kind."),
            Some(("kind", STREAM_KINDS)),
        ),
        zero(
            m(
                SUBSCRIBER_CUTOFFS_TOTAL,
                Counter,
                "Live subscribers cut off for falling behind the log or filling their outgoing queue.",
            ),
            None,
        ),
        unit(
            m(
                SUBSCRIBER_LAG_EVENTS,
                Histogram,
                "Events a subscriber was behind when it was cut off.",
            ),
            Count,
        ),
        m(
            LOG_HEAD_OFFSET,
            Gauge,
            "Offset of the newest event of the log this instance has seen.",
        ),
        unit(
            m(
                LOG_RETENTION_EVENTS,
                Gauge,
                "Events the log keeps: resume tokens older than the head minus this are expired.",
            ),
            Count,
        ),
        zero(
            m(
                LOG_EVENTS_TOTAL,
                Counter,
                "Events this instance appended to the log.",
            ),
            None,
        ),
        zero(
            m(
                RATE_LIMIT_REJECTIONS_TOTAL,
                Counter,
                "Requests refused by the rate limiter, by caller.",
            ),
            Some(("caller", &["authenticated", "anonymous"])),
        ),
        zero(
            m(
                WEBHOOK_ATTEMPTS_TOTAL,
                Counter,
                "Webhook delivery attempts, by outcome (succeeded: 2xx; failed: another answer; error: no answer).",
            ),
            Some(("outcome", &["succeeded", "failed", "error"])),
        ),
        unit(
            m(
                WEBHOOK_ATTEMPT_DURATION_SECONDS,
                Histogram,
                "Latency of webhook delivery attempts.",
            ),
            Seconds,
        ),
        zero(
            m(
                WEBHOOK_MESSAGES_TOTAL,
                Counter,
                "Webhook messages finished, by status.",
            ),
            Some(("status", &["succeeded", "failed"])),
        ),
        zero(
            m(
                WEBHOOK_QUEUE_DEPTH,
                Gauge,
                "Webhook messages being delivered or waiting for a retry.",
            ),
            None,
        ),
        zero(
            m(
                WEBHOOK_ENDPOINTS_DISABLED_TOTAL,
                Counter,
                "Webhook endpoints disabled by failures or a 410.",
            ),
            None,
        ),
        m(
            MQTT_BRIDGE_CONNECTED,
            Gauge,
            "1 while the MQTT bridge is connected to its broker, else 0.",
        ),
        unit(
            m(
                MQTT_BRIDGE_LAG_EVENTS,
                Gauge,
                "Events between the log head and the MQTT bridge's last acknowledged event.",
            ),
            Count,
        ),
        m(
            MQTT_BRIDGE_IN_FLIGHT,
            Gauge,
            "MQTT messages sent by the bridge and not yet acknowledged.",
        ),
        m(
            MQTT_BRIDGE_PUBLISHED_TOTAL,
            Counter,
            "Events the MQTT bridge published and the broker acknowledged.",
        ),
        m(
            DB_COMMITS_TOTAL,
            Counter,
            "Changes committed to the SQL store, by backend and outcome (ok, stale, error).",
        ),
        unit(
            m(
                DB_COMMIT_DURATION_SECONDS,
                Histogram,
                "Duration of each writing transaction, BEGIN to the end of COMMIT, by backend.",
            ),
            Seconds,
        ),
        unit(
            m(
                DB_COMMIT_GROUP_SIZE,
                Histogram,
                "Changes per SQLite transaction (group commit).",
            ),
            Count,
        ),
        m(
            DB_POOL_CONNECTIONS,
            Gauge,
            "Connections of the SQL store's pool, by backend and state (open, idle).",
        ),
    ]
};

/// Gives the installed recorder the help text and unit of every metric in [`METRICS`]
/// (the `# HELP` lines of a Prometheus exposition), and registers at zero the series
/// whose labels are a fixed set (stream kinds, webhook outcomes, rate-limit callers,
/// the log's counters), so that dashboards and alerts see them before the first
/// event. A series that exists already keeps its value. Call it once after installing
/// a recorder; without one it does nothing.
pub fn describe_metrics() {
    for metric in METRICS {
        let help = metrics::SharedString::const_str(metric.help);
        match (metric.kind, metric.unit) {
            (MetricKind::Counter, Some(unit)) => {
                metrics::describe_counter!(metric.name, unit, help)
            }
            (MetricKind::Counter, None) => metrics::describe_counter!(metric.name, help),
            (MetricKind::Gauge, Some(unit)) => metrics::describe_gauge!(metric.name, unit, help),
            (MetricKind::Gauge, None) => metrics::describe_gauge!(metric.name, help),
            (MetricKind::Histogram, Some(unit)) => {
                metrics::describe_histogram!(metric.name, unit, help)
            }
            (MetricKind::Histogram, None) => metrics::describe_histogram!(metric.name, help),
        }
        if !metric.zero_at_start {
            continue;
        }
        let register = |labels: &[(&'static str, &'static str)]| match metric.kind {
            MetricKind::Counter => metrics::counter!(metric.name, labels).increment(0),
            MetricKind::Gauge => metrics::gauge!(metric.name, labels).increment(0.0),
            MetricKind::Histogram => {}
        };
        match metric.fixed_labels {
            Some((label, values)) => {
                for value in values {
                    register(&[(label, value)]);
                }
            }
            None => register(&[]),
        }
    }
}

/// Counts one finished request in [`REQUESTS_TOTAL`] and records its latency in
/// [`REQUEST_DURATION_SECONDS`].
pub fn record_request(
    protocol: &'static str,
    operation: impl Into<String>,
    outcome: impl Into<String>,
    elapsed: Duration,
) {
    let labels = [
        ("protocol", protocol.to_owned()),
        ("operation", operation.into()),
        ("outcome", outcome.into()),
    ];
    metrics::counter!(REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(REQUEST_DURATION_SECONDS, &labels).record(elapsed.as_secs_f64());
}

/// Most (operation, outcome) pairs a [`RequestMetrics`] keeps handles for; beyond it
/// (a protocol whose operations are not a fixed set) requests are recorded through the
/// recorder's own lookup, as [`record_request`] does.
const MAX_CACHED: usize = 1024;

/// [`REQUESTS_TOTAL`] and [`REQUEST_DURATION_SECONDS`] for one protocol, with the
/// recorder's handles registered once per (operation, outcome) and kept: recording a
/// request that this thread saw before costs a hash of its labels, a lookup in the
/// thread's own cache and the recorder's two atomic updates, with no allocation, no
/// lock and no lookup in the recorder's registry (which builds an owned key per call). Share one per protocol (e.g. in an `Arc`).
///
/// The operation is given in parts that are joined with a space (`["GET",
/// "/v1/pets/{id}"]` is `GET /v1/pets/{id}`), so that callers need not build the
/// string.
///
/// ```
/// use std::time::Duration;
/// use petstore_core::telemetry::RequestMetrics;
///
/// let http = RequestMetrics::new("http");
/// http.record(&["GET", "/v1/pets/{id}"], "200", Duration::from_millis(2));
/// ```
pub struct RequestMetrics {
    protocol: &'static str,
    /// Tells the instances apart in the threads' caches.
    id: u64,
    hasher: std::hash::RandomState,
    handles: std::sync::RwLock<HashMap<u64, Vec<Arc<Handles>>>>,
}

/// Numbers the [`RequestMetrics`] of the process.
static NEXT_METRICS_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Most handles a thread keeps in its cache (of every [`RequestMetrics`] together)
/// before it starts it afresh.
const MAX_THREAD_CACHED: usize = 4 * MAX_CACHED;

/// Handles by (instance, label hash).
type ThreadHandles = HashMap<(u64, u64), Vec<Arc<Handles>>>;

thread_local! {
    /// This thread's copy of the handles it used: found without touching memory that
    /// other cores write, as the shared map's read lock does.
    static THREAD_HANDLES: std::cell::RefCell<ThreadHandles> =
        std::cell::RefCell::new(HashMap::new());
}

/// The handles of one (operation, outcome).
struct Handles {
    operation: Box<str>,
    outcome: Box<str>,
    requests: metrics::Counter,
    latency: metrics::Histogram,
}

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMetrics")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl RequestMetrics {
    /// Handles for `protocol` (the `protocol` label), registered as requests come.
    pub fn new(protocol: &'static str) -> Self {
        Self {
            protocol,
            id: NEXT_METRICS_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            hasher: std::hash::RandomState::new(),
            handles: Default::default(),
        }
    }

    /// Counts one finished request of `operation` (its parts joined by spaces) with
    /// `outcome`, and records its latency.
    pub fn record(&self, operation: &[&str], outcome: &str, elapsed: Duration) {
        use std::hash::{BuildHasher as _, Hasher as _};
        let mut hasher = self.hasher.build_hasher();
        for part in operation {
            hasher.write(part.as_bytes());
            hasher.write_u8(0xff);
        }
        hasher.write(outcome.as_bytes());
        let hash = hasher.finish();
        let seconds = elapsed.as_secs_f64();
        let matches = |h: &Handles| &*h.outcome == outcome && joined(&h.operation, operation);
        let key = (self.id, hash);
        let cached = THREAD_HANDLES.try_with(|cache| {
            let cache = cache.try_borrow().ok()?;
            let h = cache.get(&key)?.iter().find(|h| matches(h))?;
            h.requests.increment(1);
            h.latency.record(seconds);
            Some(())
        });
        if let Ok(Some(())) = cached {
            return;
        }
        let keep = |h: &Arc<Handles>| {
            // A thread that is ending has no cache left: nothing to keep.
            let _ = THREAD_HANDLES.try_with(|cache| {
                if let Ok(mut cache) = cache.try_borrow_mut() {
                    if cache.len() >= MAX_THREAD_CACHED {
                        cache.clear();
                    }
                    cache.entry(key).or_default().push(h.clone());
                }
            });
        };
        {
            let handles = self.handles.read().unwrap_or_else(|p| p.into_inner());
            if let Some(h) = handles
                .get(&hash)
                .and_then(|v| v.iter().find(|h| matches(h)))
            {
                h.requests.increment(1);
                h.latency.record(seconds);
                keep(h);
                return;
            }
        }
        let operation = operation.join(" ");
        let mut handles = self.handles.write().unwrap_or_else(|p| p.into_inner());
        if handles.len() >= MAX_CACHED {
            drop(handles);
            record_request(self.protocol, operation, outcome, elapsed);
            return;
        }
        let labels = [
            ("protocol", self.protocol.to_owned()),
            ("operation", operation.clone()),
            ("outcome", outcome.to_owned()),
        ];
        let h = Handles {
            requests: metrics::counter!(REQUESTS_TOTAL, &labels),
            latency: metrics::histogram!(REQUEST_DURATION_SECONDS, &labels),
            operation: operation.into(),
            outcome: outcome.into(),
        };
        h.requests.increment(1);
        h.latency.record(seconds);
        let same = handles.entry(hash).or_default();
        // Another task may have registered the same pair meanwhile: keep one.
        if !same.iter().any(|h| matches(h)) {
            same.push(Arc::new(h));
        }
    }
}

/// Whether `joined` is `parts` joined with single spaces.
fn joined(mut joined: &str, parts: &[&str]) -> bool {
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            match joined.strip_prefix(' ') {
                Some(rest) => joined = rest,
                None => return false,
            }
        }
        match joined.strip_prefix(part) {
            Some(rest) => joined = rest,
            None => return false,
        }
    }
    joined.is_empty()
}

/// One open stream of `kind`, counted in [`OPEN_STREAMS`] for as long as this guard
/// lives (and once in [`STREAMS_OPENED_TOTAL`]), with its own `stream` span (kind and
/// request id) and one INFO line when it ends. Keep it in the stream's state, so that
/// however the stream ends, the gauge goes down.
#[derive(Debug)]
pub struct OpenStream {
    kind: &'static str,
    span: tracing::Span,
    opened: std::time::Instant,
}

impl OpenStream {
    /// Counts a stream of `kind` as open (call it inside the request's
    /// [`crate::RequestContext`] so that the span carries the request id).
    pub fn new(kind: &'static str) -> Self {
        debug_assert!(
            STREAM_KINDS.contains(&kind),
            "a stream kind of STREAM_KINDS: {kind}"
        );
        metrics::gauge!(OPEN_STREAMS, "kind" => kind).increment(1.0);
        metrics::counter!(STREAMS_OPENED_TOTAL, "kind" => kind).increment(1);
        let context = crate::RequestContext::current();
        // `sub`: for a caller who authenticates after the handshake (a WebSocket `auth`
        // frame); one known at the handshake is on the request's span.
        let span = tracing::info_span!(
            "stream",
            kind,
            request_id = context.request_id(),
            sub = tracing::field::Empty,
        );
        tracing::debug!(parent: &span, "stream opened");
        Self {
            kind,
            span,
            opened: std::time::Instant::now(),
        }
    }

    /// The stream's span, to run its work in.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!(OPEN_STREAMS, "kind" => self.kind).decrement(1.0);
        tracing::info!(
            parent: &self.span,
            kind = self.kind,
            duration_ms = self.opened.elapsed().as_secs_f64() * 1000.0,
            "stream closed"
        );
    }
}

/// Records a live subscriber cut off because its connection's own queue of outgoing
/// messages was full (a WebSocket client that does not read): one more in
/// [`SUBSCRIBER_CUTOFFS_TOTAL`]. The core counts the cut-offs by the log itself.
pub fn outbound_queue_cut_off() {
    metrics::counter!(SUBSCRIBER_CUTOFFS_TOTAL).increment(1);
}

/// Records that a live subscriber `missed` events behind was cut off.
pub(crate) fn subscriber_cut_off(missed: u64) {
    metrics::counter!(SUBSCRIBER_CUTOFFS_TOTAL).increment(1);
    metrics::histogram!(SUBSCRIBER_LAG_EVENTS).record(missed as f64);
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    use super::*;

    /// Counters by their name and labels (`name{k=v,...}`); no gauges or histograms.
    #[derive(Default)]
    struct Counters(Mutex<HashMap<String, Arc<AtomicU64>>>);

    impl Counters {
        fn get(&self, series: &str) -> u64 {
            let counters = self.0.lock().unwrap();
            counters
                .get(series)
                .map_or(0, |c| c.load(Ordering::Relaxed))
        }
    }

    impl Recorder for Counters {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let series = format!("{}{{{}}}", key.name(), labels.join(","));
            let counter = self.0.lock().unwrap().entry(series).or_default().clone();
            Counter::from_arc(counter)
        }

        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }

        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    /// Describing the metrics registers every fixed counter series at zero and leaves
    /// one that has counted already as it was; the table names each metric once.
    #[test]
    fn describing_registers_the_fixed_series_and_keeps_their_values() {
        let counters = Counters::default();
        metrics::with_local_recorder(&counters, || {
            metrics::counter!(RATE_LIMIT_REJECTIONS_TOTAL, "caller" => "anonymous").increment(3);
            describe_metrics();
        });
        let registered: Vec<String> = counters.0.lock().unwrap().keys().cloned().collect();
        for series in [
            "petstore_rate_limit_rejections_total{caller=authenticated}",
            "petstore_webhook_attempts_total{outcome=error}",
            "petstore_streams_opened_total{kind=graphql_ws}",
            "petstore_log_events_total{}",
        ] {
            assert!(
                registered.iter().any(|r| r == series),
                "{series} in {registered:?}"
            );
        }
        assert_eq!(
            counters.get("petstore_rate_limit_rejections_total{caller=anonymous}"),
            3
        );
        assert!(
            !registered
                .iter()
                .any(|r| r.starts_with(MQTT_BRIDGE_PUBLISHED_TOTAL)),
            "the bridge registers its own: {registered:?}"
        );
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
    }

    /// Every request lands in its own series, whichever thread records it and whatever
    /// the threads cached before, and two instances never share a thread's cache.
    #[test]
    fn requests_are_counted_in_their_own_series_from_every_thread() {
        let recorder = Counters::default();
        let http = RequestMetrics::new("http");
        let grpc = RequestMetrics::new("grpc");
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    metrics::with_local_recorder(&recorder, || {
                        for i in 0..300 {
                            let outcome = if i % 3 == 0 { "404" } else { "200" };
                            http.record(&["GET", "/v1/pets/{id}"], outcome, Duration::ZERO);
                            grpc.record(&["/petstore.v1.PetStore/GetPet"], "OK", Duration::ZERO);
                            if i % 10 == 0 {
                                http.record(&["POST", "/v1/pets"], "201", Duration::ZERO);
                            }
                        }
                    });
                });
            }
        });
        let series = |protocol: &str, operation: &str, outcome: &str| {
            recorder.get(&format!(
                "{REQUESTS_TOTAL}{{protocol={protocol},operation={operation},outcome={outcome}}}"
            ))
        };
        assert_eq!(series("http", "GET /v1/pets/{id}", "200"), 800);
        assert_eq!(series("http", "GET /v1/pets/{id}", "404"), 400);
        assert_eq!(series("http", "POST /v1/pets", "201"), 120);
        assert_eq!(series("grpc", "/petstore.v1.PetStore/GetPet", "OK"), 1200);
        assert_eq!(series("http", "/petstore.v1.PetStore/GetPet", "OK"), 0);
    }

    #[test]
    fn joined_parts_match_only_the_joined_string() {
        assert!(joined("GET /v1/pets", &["GET", "/v1/pets"]));
        assert!(joined("/a.B/C", &["/a.B/C"]));
        assert!(!joined("GET /v1/pets", &["GET", "/v1/pet"]));
        assert!(!joined("GET /v1/pets", &["GET /v1", "pets"]));
        assert!(!joined("GET  /v1/pets", &["GET", "/v1/pets"]));
        assert!(!joined("GET", &["GET", ""]));
        assert!(joined("GET ", &["GET", ""]));
    }
}
