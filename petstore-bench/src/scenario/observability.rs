//! The cost of observability: REST `GET /v1/pets/{id}` on one running server with
//! metrics and tracing both off (A) and both on at the default level (B), switched
//! between rounds, so that both sides share the server, its connections and the
//! machine's moment.
//!
//! "On" is what a deployed server does, built by the server's own functions: the
//! Prometheus recorder with the server's buckets (and its upkeep every 5 s), and the
//! server's log layer (`telemetry::log_layer`: the per-request INFO line formatted on
//! the request's task, queued for the writer thread, which writes batches, here to
//! `/dev/null`) at `info,rumqttd=off`. "Off" is a recorder whose handles do nothing
//! but read the switch, and every log callsite disabled. Both are installed for the
//! whole process before any scenario runs (a process has one recorder and one
//! subscriber); outside this scenario metrics stay on and logs off, as the other rows
//! always measured.
//!
//! The switches cost the "on" side nothing that a server does not pay: the log switch
//! is a layer that answers callsite registration (re-run at each switch with
//! `rebuild_interest_cache`), not a lock taken on every span and event; the metric
//! handles are registered once and each checks an atomic flag.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_exporter_prometheus::PrometheusRecorder;
use petstore_server::telemetry;
use tracing::subscriber::Interest;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

use super::{Config, new_pet};
use crate::load::{Call, closed_loop, expect};
use crate::measure::alternate;
use crate::report::{Row, Target, fig};
use crate::stack::{Stack, StackOptions};

const CONNS: usize = 32;
/// Rounds of this row are this many times as many as the other rows', and as much
/// shorter.
const ROUND_SPLIT: u32 = 3;

/// Whether metrics are recorded (on outside this scenario).
static METRICS_ON: AtomicBool = AtomicBool::new(true);
/// Whether logs are written (off outside this scenario).
static LOGS_ON: AtomicBool = AtomicBool::new(false);
/// Keeps the log writer's thread.
static LOG_GUARD: OnceLock<telemetry::LogGuard> = OnceLock::new();

/// A handle of the Prometheus recorder that records only while metrics are on.
struct Switched<T>(T);

impl CounterFn for Switched<Counter> {
    fn increment(&self, value: u64) {
        if METRICS_ON.load(Ordering::Relaxed) {
            self.0.increment(value);
        }
    }

    fn absolute(&self, value: u64) {
        if METRICS_ON.load(Ordering::Relaxed) {
            self.0.absolute(value);
        }
    }
}

impl GaugeFn for Switched<Gauge> {
    fn increment(&self, value: f64) {
        if METRICS_ON.load(Ordering::Relaxed) {
            self.0.increment(value);
        }
    }

    fn decrement(&self, value: f64) {
        if METRICS_ON.load(Ordering::Relaxed) {
            self.0.decrement(value);
        }
    }

    fn set(&self, value: f64) {
        if METRICS_ON.load(Ordering::Relaxed) {
            self.0.set(value);
        }
    }
}

impl HistogramFn for Switched<Histogram> {
    fn record(&self, value: f64) {
        if METRICS_ON.load(Ordering::Relaxed) {
            self.0.record(value);
        }
    }
}

/// The process's recorder: the server's Prometheus recorder behind [`Switched`] handles.
struct Switch(PrometheusRecorder);

impl Recorder for Switch {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Switched(self.0.register_counter(key, metadata))))
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Switched(self.0.register_gauge(key, metadata))))
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Switched(self.0.register_histogram(key, metadata))))
    }
}

/// The log switch: every callsite disabled while logs are off.
struct LogSwitch;

impl<S: tracing::Subscriber> Layer<S> for LogSwitch {
    fn register_callsite(&self, _: &'static tracing::Metadata<'static>) -> Interest {
        if LOGS_ON.load(Ordering::Relaxed) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, _: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        LOGS_ON.load(Ordering::Relaxed)
    }
}

/// Installs the recorder (on) and the log subscriber (off) for the whole process.
pub(crate) fn install() -> anyhow::Result<()> {
    let recorder = telemetry::prometheus_builder()
        .context("the server's metric buckets")?
        .build_recorder();
    // What `install_recorder` does in the server: drain the histograms every 5 s.
    let handle = recorder.handle();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                handle.run_upkeep();
            }
        })
        .context("starting the metrics upkeep thread")?;
    metrics::set_global_recorder(Switch(recorder))
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    let (logs, guard) = telemetry::log_layer(telemetry::LogFormat::Pretty, false, null)
        .context("starting the log writer")?;
    let _ = LOG_GUARD.set(guard);
    tracing_subscriber::registry()
        .with(telemetry::default_log_filter())
        .with(LogSwitch)
        .with(logs)
        .try_init()
        .context("installing the log subscriber (unset RUST_LOG for this scenario)")?;
    Ok(())
}

fn set(on: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        LOG_GUARD.get().is_some(),
        "the observability switches are not installed"
    );
    // Diagnosis: `PETSTORE_BENCH_OBS_ONLY=logs` (or `metrics`) switches only that half,
    // the other staying off on both sides, to see which half costs what.
    let only = std::env::var("PETSTORE_BENCH_OBS_ONLY").unwrap_or_default();
    // Profiling: `PETSTORE_BENCH_OBS_SIDE=a` (or `b`) runs both sides as that one, so
    // that a profile of the run is one side's alone.
    let on = match std::env::var("PETSTORE_BENCH_OBS_SIDE").as_deref() {
        Ok("a") => false,
        Ok("b") => true,
        _ => on,
    };
    METRICS_ON.store(on && only != "logs", Ordering::Relaxed);
    let on = on && only != "metrics";
    if LOGS_ON.swap(on, Ordering::Relaxed) != on {
        tracing::callsite::rebuild_interest_cache();
    }
    Ok(())
}

pub(crate) async fn run(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let result = measure(cfg, &stack, rows).await;
    set(false).ok();
    // The other scenarios measure with metrics on, logs off.
    METRICS_ON.store(true, Ordering::Relaxed);
    stack.stop().await;
    result
}

async fn measure(cfg: &Config, stack: &Stack, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    const SCENARIO: &str = "observability";
    let pet = stack
        .store
        .create_pet(&stack.admin(), new_pet("Rex".into()))
        .await?;
    let check = expect(
        200,
        &[&format!("\"id\":\"{}\"", pet.id), "\"name\":\"Rex\""],
    );
    let call = Call::get(stack.http, format!("/v1/pets/{}", pet.id), check);
    call.once().await?;
    eprintln!("  REST GET /v1/pets/{{id}}: metrics and logs off (A) vs on at INFO (B)");
    for on in [false, true] {
        set(on)?;
        closed_loop(call.workers(CONNS).await?, cfg.warmup).await?;
    }
    let call = &call;
    // The difference sought is a few per cent, under the shared machine's swings over
    // seconds: three times the rounds, each a third as long (the same time in all),
    // so that A and B sit closer together in time and the median has more to go on.
    let round = cfg.round / ROUND_SPLIT;
    let tp = alternate(
        cfg.rounds * ROUND_SPLIT as usize,
        move |_| async move {
            set(false)?;
            closed_loop(call.workers(CONNS).await?, round).await
        },
        move |_| async move {
            set(true)?;
            closed_loop(call.workers(CONNS).await?, round).await
        },
    )
    .await?;
    // A dropped line is work B did not do: the figure would flatter it.
    let dropped = LOG_GUARD
        .get()
        .map_or(0, telemetry::LogGuard::dropped_lines);
    anyhow::ensure!(
        dropped == 0,
        "{dropped} log lines were dropped (a full buffer): B did not write them all"
    );
    rows.push(
        Row::new(
            SCENARIO,
            "REST GET throughput, metrics + INFO logs on vs off (32 conns)",
            fig(tp.median_a(), "req/s"),
            fig(tp.median_b(), "req/s"),
            tp.ratio(),
            "x",
            Target::AtLeast(0.95),
        )
        .rounds(&tp.ratios()),
    );
    Ok(())
}
