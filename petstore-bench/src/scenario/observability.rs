//! The cost of observability: REST `GET /v1/pets/{id}` on one running server with
//! metrics and tracing both off (A) and both on at the default level (B), switched
//! between rounds, so that both sides share the server, its connections and the
//! machine's moment.
//!
//! "On" is what a deployed server does: the Prometheus recorder records every metric,
//! and the log subscriber at `info,rumqttd=off` formats the per-request INFO line and
//! its spans and writes them to `/dev/null`. "Off" is no recorder and a subscriber
//! that enables nothing. Both switches are installed for the whole process before any
//! scenario runs (a process has one recorder and one subscriber); outside this
//! scenario metrics stay on and logs off, as the other rows always measured.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

use super::{Config, new_pet};
use crate::load::{Call, closed_loop, expect};
use crate::measure::alternate;
use crate::report::{Row, Target, fig};
use crate::stack::{Stack, StackOptions};

const CONNS: usize = 32;

/// The process's recorder: Prometheus while on, no-op handles while off.
struct Switch {
    on: Arc<AtomicBool>,
    inner: PrometheusRecorder,
}

impl Recorder for Switch {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if self.on.load(Ordering::Relaxed) {
            self.inner.register_counter(key, metadata)
        } else {
            Counter::noop()
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if self.on.load(Ordering::Relaxed) {
            self.inner.register_gauge(key, metadata)
        } else {
            Gauge::noop()
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if self.on.load(Ordering::Relaxed) {
            self.inner.register_histogram(key, metadata)
        } else {
            Histogram::noop()
        }
    }
}

struct Switches {
    metrics: Arc<AtomicBool>,
    logs: reload::Handle<EnvFilter, Registry>,
}

static SWITCHES: OnceLock<Switches> = OnceLock::new();

/// Installs the recorder (on) and the log subscriber (off) for the whole process.
pub(crate) fn install() -> anyhow::Result<()> {
    let on = Arc::new(AtomicBool::new(true));
    let recorder = PrometheusBuilder::new().build_recorder();
    metrics::set_global_recorder(Switch {
        on: on.clone(),
        inner: recorder,
    })
    .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    let (filter, logs) = reload::Layer::new(EnvFilter::new("off"));
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(Arc::new(null)),
        )
        .try_init()
        .context("installing the log subscriber (unset RUST_LOG for this scenario)")?;
    let _ = SWITCHES.set(Switches { metrics: on, logs });
    Ok(())
}

fn set(on: bool) -> anyhow::Result<()> {
    let s = SWITCHES
        .get()
        .context("the observability switches are not installed")?;
    s.metrics.store(on, Ordering::Relaxed);
    let filter = if on {
        petstore_server::telemetry::DEFAULT_LOG_FILTER
    } else {
        "off"
    };
    s.logs.reload(EnvFilter::new(filter))?;
    Ok(())
}

pub(crate) async fn run(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let result = measure(cfg, &stack, rows).await;
    set(false).ok();
    // The other scenarios measure with metrics on, logs off.
    if let Some(s) = SWITCHES.get() {
        s.metrics.store(true, Ordering::Relaxed);
    }
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
    let tp = alternate(
        cfg.rounds,
        move |_| async move {
            set(false)?;
            closed_loop(call.workers(CONNS).await?, cfg.round).await
        },
        move |_| async move {
            set(true)?;
            closed_loop(call.workers(CONNS).await?, cfg.round).await
        },
    )
    .await?;
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
