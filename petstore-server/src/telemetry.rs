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

/// Installs the process's log subscriber, writing to stderr (stdout is the MCP channel
/// in `mcp-stdio` mode): `RUST_LOG` or [`DEFAULT_LOG_FILTER`], ANSI colour only when
/// stderr is a terminal.
pub fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Latency buckets (seconds) of every duration histogram.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of the subscriber lag (events) at cut-off.
const LAG_BUCKETS: [f64; 6] = [1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0];

/// The process's Prometheus recorder, installed as the global `metrics` recorder on
/// the first call (a process has one; servers started in the same process share it).
/// `None` when another recorder was installed first.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::SUBSCRIBER_LAG_EVENTS.to_owned()),
                        &LAG_BUCKETS,
                    )
                });
            let builder = match builder {
                Ok(builder) => builder,
                Err(e) => {
                    tracing::error!(error = %e, "invalid metric buckets; no metrics");
                    return None;
                }
            };
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
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
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
                    .into_response()
            }
        }),
    )
}
