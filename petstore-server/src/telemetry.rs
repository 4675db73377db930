//! The server's side of observability: the log subscriber (text or JSON, colour only
//! on a terminal, dependency chatter kept out by default) and the Prometheus exporter
//! that serves what the libraries record through the `metrics` facade at `/metrics`.

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use petstore_core::telemetry as names;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::log_format::{PlainFields, PlainLine, Timestamp};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The filter when `RUST_LOG` is not set: INFO for the server and its libraries; the
/// embedded broker (rumqttd) logs routine client disconnects, and the readiness probe
/// of its listeners, at ERROR, so it is left out unless asked for
/// (`RUST_LOG=info,rumqttd=info`).
pub const DEFAULT_LOG_FILTER: &str = "info,rumqttd=off";

/// The process's filter: `RUST_LOG` when it is set (any `EnvFilter` directive, span
/// and field filters included), else [`DEFAULT_LOG_FILTER`] as a [`Targets`] filter,
/// which decides once per callsite where `EnvFilter` also looks up every span entered
/// and left.
pub fn log_filter<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    match EnvFilter::try_from_default_env() {
        Ok(filter) => filter.boxed(),
        Err(_) => default_log_filter().boxed(),
    }
}

/// [`DEFAULT_LOG_FILTER`] as a [`Targets`] filter.
pub fn default_log_filter() -> Targets {
    DEFAULT_LOG_FILTER
        .parse()
        .expect("the default log filter parses")
}

/// Keeps the log writer's thread (and, with OTLP export, the exporter) running;
/// dropping it sends the spans still batched, writes out the queued log lines (hold it
/// until the process ends) and reports on stderr how many lines were dropped, if any.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    // Dropped in this order: the exporter may still log.
    #[cfg(feature = "otlp")]
    otlp: Option<crate::otlp::Exporter>,
    writer: crate::log_writer::Stop,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard")
            .field("dropped_lines", &self.dropped_lines())
            .finish_non_exhaustive()
    }
}

impl LogGuard {
    /// Lines dropped so far because the writer's queue was full.
    pub fn dropped_lines(&self) -> usize {
        self.writer.dropped_lines()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        drop(self.otlp.take());
        let dropped = self.dropped_lines();
        if dropped > 0 {
            eprintln!(
                "petstore-server: {dropped} log lines were dropped (the log output could not keep up)"
            );
        }
    }
}

/// The log line layer of the process's subscriber: `format`, ANSI colour when `ansi`,
/// written to `out` by a writer thread of its own.
///
/// A request's task only formats its line and appends it to its thread's buffer in
/// memory (at most 256 KiB a thread); the writer thread collects the buffers in batches,
/// woken by the first line of each and waiting 10 ms for the rest, merges them by
/// timestamp and writes them out, so that a busy server makes a few `write` calls per
/// second rather than one per line, no lock moves between cores on every line, and a
/// slow or stalled `out` (a full pipe, a paused terminal) never stalls a request. The
/// price: lines reach `out` up to 10 ms late; two threads' lines logged within
/// microseconds of a batch's end may be written in the wrong order (each thread's
/// lines never are); and when a buffer is full, new lines are dropped (counted, see
/// [`LogGuard`]) rather than waited for.
///
/// Without colour, the text format is the default one's line written by a leaner
/// formatter (the same bytes; see the `log_format` module).
pub fn log_layer<S>(
    format: LogFormat,
    ansi: bool,
    out: impl std::io::Write + Send + 'static,
) -> std::io::Result<(Box<dyn Layer<S> + Send + Sync>, LogGuard)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let (writer, stop) = crate::log_writer::start(out)?;
    let guard = LogGuard {
        #[cfg(feature = "otlp")]
        otlp: None,
        writer: stop,
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_timer(Timestamp);
    let layer = match format {
        // The same line as the default format's, written at less cost.
        LogFormat::Pretty if !ansi => layer
            .fmt_fields(PlainFields)
            .event_format(PlainLine::<Timestamp>::default())
            .boxed(),
        LogFormat::Pretty => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    };
    Ok((layer, guard))
}

/// Installs the process's log subscriber, writing to stderr (stdout is the MCP channel
/// in `mcp-stdio` mode) through [`log_layer`]: `RUST_LOG` or [`DEFAULT_LOG_FILTER`],
/// ANSI colour only when stderr is a terminal. With `otlp_endpoint` (the `otlp` cargo
/// feature), the spans the filter lets through are also exported over OTLP/HTTP
/// (protobuf) to that collector's `/v1/traces`. Keep the guard until the process ends.
pub fn init_logging(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<LogGuard> {
    let filter = log_filter();
    let (layer, guard) = log_layer(format, std::io::stderr().is_terminal(), std::io::stderr())?;
    let registry = tracing_subscriber::registry().with(filter).with(layer);
    match otlp_endpoint {
        None => registry.init(),
        #[cfg(feature = "otlp")]
        Some(endpoint) => {
            let (otlp, exporter) = crate::otlp::layer(endpoint)?;
            registry.with(otlp).init();
            let mut guard = guard;
            guard.otlp = Some(exporter);
            return Ok(guard);
        }
        #[cfg(not(feature = "otlp"))]
        Some(_) => anyhow::bail!(
            "--otlp-endpoint: this petstore-server was built without the `otlp` feature \
             (cargo install petstore-server --features otlp)"
        ),
    }
    Ok(guard)
}

/// Latency buckets (seconds) of every duration histogram.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of the subscriber lag (events) at cut-off.
const LAG_BUCKETS: [f64; 6] = [1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0];

/// Buckets of the changes per SQLite transaction (group commit takes up to 64).
const GROUP_BUCKETS: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// The Prometheus exporter's settings: the buckets of every histogram.
pub fn prometheus_builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(names::SUBSCRIBER_LAG_EVENTS.to_owned()),
            &LAG_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::DB_COMMIT_GROUP_SIZE.to_owned()),
            &GROUP_BUCKETS,
        )
}

/// The process's Prometheus recorder, installed as the global `metrics` recorder on
/// the first call (a process has one; servers started in the same process share it).
/// On that call it also gives it every metric's help text and its zero series
/// ([`petstore_core::telemetry::describe_metrics`]). `None` when another recorder was
/// installed first.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = match prometheus_builder() {
                Ok(builder) => builder,
                Err(e) => {
                    tracing::error!(error = %e, "invalid metric buckets; no metrics");
                    return None;
                }
            };
            match builder.install_recorder() {
                Ok(handle) => {
                    petstore_core::telemetry::describe_metrics();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder is installed already; /metrics is not served");
                    None
                }
            }
        })
        .clone()
}

/// `GET /metrics`: the Prometheus text exposition of `handle`.
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    )
}
