//! What one request's log costs, on one thread and on two at once: the request's span
//! (four fields, one recorded empty), three polls of its future inside the span, the
//! INFO `request finished` line and the span's close. Beside each other in the same
//! run:
//! - `off`: no subscriber (the baseline);
//! - `fmt_default`: `EnvFilter` and `tracing-subscriber`'s default text layer without
//!   colour, writing each line to `io::sink`;
//! - `server`: the server's own filter and log layer (`telemetry::log_filter` and
//!   `telemetry::log_layer`), its lines queued for its writer thread (to `/dev/null`).
//!
//! Run with: cargo bench -p petstore-server --bench log_line

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use petstore_server::telemetry;
use tracing::Dispatch;
use tracing::Instrument as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;

/// Pending twice, then ready: three polls, each entering and leaving the span.
struct ThreePolls(u8);

impl Future for ThreePolls {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 >= 2 {
            return Poll::Ready(());
        }
        self.0 += 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// One request as the HTTP edge logs it.
async fn request(id: &Arc<str>) {
    let method = "GET";
    let route = "/v1/pets/{id}";
    let span = tracing::info_span!(
        "http_request",
        %method,
        route = %route,
        request_id = %id,
        sub = tracing::field::Empty,
    );
    async {
        ThreePolls(0).await;
        tracing::info!(status = 200u16, latency_ms = 0.125f64, "request finished");
    }
    .instrument(span)
    .await;
}

fn dispatch(setup: &str) -> Option<(Dispatch, Option<telemetry::LogGuard>)> {
    match setup {
        "off" => None,
        "fmt_default" => {
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::sink);
            let subscriber = tracing_subscriber::registry()
                .with(EnvFilter::new(telemetry::DEFAULT_LOG_FILTER))
                .with(layer);
            Some((Dispatch::new(subscriber), None))
        }
        _ => {
            let null = std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .expect("/dev/null");
            let (layer, guard) = telemetry::log_layer(telemetry::LogFormat::Pretty, false, null)
                .expect("the log writer starts");
            let subscriber = tracing_subscriber::registry()
                .with(telemetry::default_log_filter())
                .with(layer);
            Some((Dispatch::new(subscriber), Some(guard)))
        }
    }
}

/// `iters` requests on each of `threads` threads at once; the mean time per request
/// on one thread.
fn run(setup: &str, threads: usize, iters: u64) -> Duration {
    let installed = dispatch(setup);
    let id: Arc<str> = "0193a6b2-7c1d-7e3f-8a9b-0c1d2e3f4a5b".into();
    let barrier = std::sync::Barrier::new(threads);
    let elapsed = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (id, barrier, installed) = (&id, &barrier, &installed);
                scope.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .expect("a runtime");
                    let work = || {
                        barrier.wait();
                        let started = Instant::now();
                        rt.block_on(async {
                            for _ in 0..iters {
                                request(id).await;
                            }
                        });
                        started.elapsed()
                    };
                    match installed {
                        Some((dispatch, _)) => tracing::dispatcher::with_default(dispatch, work),
                        None => work(),
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a worker"))
            .max()
            .unwrap_or_default()
    });
    drop(installed);
    elapsed
}

fn request_log(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_log");
    for threads in [1, 2] {
        for setup in ["off", "fmt_default", "server"] {
            group.bench_with_input(
                BenchmarkId::new(setup, format!("{threads}_threads")),
                &threads,
                |b, &threads| b.iter_custom(|iters| run(setup, threads, iters)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, request_log);
criterion_main!(benches);
