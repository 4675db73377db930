//! Webhook deliveries to a local 204 sink: throughput vs a bare reqwest client loop at
//! the same concurrency; 1,000 deliveries/s sustained with p99 enqueue-to-delivery;
//! the other receivers' p99 while 10 % of them take 500 ms to answer.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

use super::{Config, Seq, StorePublisher, Template, Tracker, paced, saturate, seq_in};
use crate::load::{Worker, closed_loop};
use crate::measure::{Rounds, alternate};
use crate::report::{Row, Target, fig};
use crate::stack::{Stack, StackOptions};

const SCENARIO: &str = "webhooks";
/// Endpoints of the throughput rows.
const ENDPOINTS: usize = 4;
/// Events in flight in the throughput rows.
const WINDOW: u64 = 64;
/// How long a slowed receiver takes to answer.
const SLOW: Duration = Duration::from_millis(500);

/// The receiver: `/fast/{k}` answers 204 at once and tells the current tracker,
/// `/slow/{k}` answers 204 after 500 ms, `/bare` answers 204 after the same body scan
/// as `/fast/{k}`.
#[derive(Clone)]
struct Sink {
    current: Arc<RwLock<(Arc<Tracker>, String)>>,
}

impl Sink {
    fn set(&self, tracker: Arc<Tracker>, marker: String) {
        *self.current.write().expect("not poisoned") = (tracker, marker);
    }
}

async fn fast(State(sink): State<Sink>, body: Bytes) -> StatusCode {
    let (tracker, marker) = sink.current.read().expect("not poisoned").clone();
    if let Some(seq) = seq_in(&body, &marker) {
        tracker.deliver(seq);
    }
    StatusCode::NO_CONTENT
}

async fn slow() -> StatusCode {
    tokio::time::sleep(SLOW).await;
    StatusCode::NO_CONTENT
}

/// The bare loop's receiver does the sink's own work too (take the body, look for the
/// run's marker), so that only the deliveries differ between the two sides.
async fn bare(State(sink): State<Sink>, body: Bytes) -> StatusCode {
    let (_, marker) = sink.current.read().expect("not poisoned").clone();
    std::hint::black_box(seq_in(&body, &marker));
    StatusCode::NO_CONTENT
}

/// Endpoint registration through the webhook REST API.
struct Registry {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Registry {
    async fn add(&self, url: &str) -> anyhow::Result<String> {
        let resp = self
            .client
            .post(format!("{}/v1/webhooks", self.base))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "url": url, "events": ["pet.created"] }))
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        ensure!(status.is_success(), "POST /v1/webhooks: {status} {body}");
        Ok(body["id"]
            .as_str()
            .context("endpoint without id")?
            .to_owned())
    }

    async fn remove(&self, ids: Vec<String>) -> anyhow::Result<()> {
        for id in ids {
            let resp = self
                .client
                .delete(format!("{}/v1/webhooks/{id}", self.base))
                .bearer_auth(&self.token)
                .send()
                .await?;
            ensure!(
                resp.status().is_success(),
                "DELETE /v1/webhooks/{id}: {}",
                resp.status()
            );
        }
        Ok(())
    }

    /// `fast` fast endpoints and `slow` slowed ones.
    async fn endpoints(
        &self,
        sink: SocketAddr,
        fast: usize,
        slow: usize,
    ) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        for k in 0..fast {
            ids.push(self.add(&format!("http://{sink}/fast/{k}")).await?);
        }
        for k in 0..slow {
            ids.push(self.add(&format!("http://{sink}/slow/{k}")).await?);
        }
        Ok(ids)
    }
}

/// The bare baseline: one reqwest client posting the same body in a loop.
struct Poster {
    client: reqwest::Client,
    url: String,
    body: bytes::Bytes,
}

impl Worker for Poster {
    async fn call(&mut self) -> anyhow::Result<()> {
        let resp = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", "evt_0000000000000000")
            .header("webhook-timestamp", "1700000000")
            .header(
                "webhook-signature",
                "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
            )
            .body(self.body.clone())
            .send()
            .await
            .with_context(|| format!("POST {}", self.url))?;
        ensure!(
            resp.status() == StatusCode::NO_CONTENT,
            "POST {}: {}",
            self.url,
            resp.status()
        );
        Ok(())
    }
}

pub(crate) async fn run(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let result = measure(cfg, &stack, rows).await;
    stack.stop().await;
    result
}

async fn measure(cfg: &Config, stack: &Stack, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let sink = Sink {
        current: Arc::new(RwLock::new((Arc::new(Tracker::new(1)), "-".to_owned()))),
    };
    let sink_addr = crate::bare::serve_axum(
        Router::new()
            .route("/fast/{k}", post(fast))
            .route("/slow/{k}", post(slow))
            .route("/bare", post(bare))
            .with_state(sink.clone()),
        true,
    )
    .await?;
    let registry = Registry {
        client: reqwest::Client::builder().no_proxy().build()?,
        base: format!("http://{}", stack.http),
        token: stack.token.clone(),
    };
    let per_endpoint = petstore_webhooks::WebhookConfig::default().endpoint_concurrency;
    let concurrency = ENDPOINTS * per_endpoint;

    // --- throughput ---
    eprintln!(
        "  webhooks: deliveries/s to {ENDPOINTS} endpoints vs a bare client loop x {concurrency}"
    );
    // The bare body: the size of a delivery (envelope plus `type` and `timestamp`).
    let envelope = Template::new("wh-").await?.envelope(0);
    let body = bytes::Bytes::from(format!(
        r#"{{"type":"pet.created","timestamp":"2026-01-01T00:00:00Z",{}"#,
        &envelope[1..]
    ));
    let client = reqwest::Client::builder().no_proxy().build()?;
    let posters = || {
        (0..concurrency)
            .map(|_| Poster {
                client: client.clone(),
                url: format!("http://{sink_addr}/bare"),
                body: body.clone(),
            })
            .collect::<Vec<_>>()
    };
    let b_round = async |round: usize, dur: Duration| -> anyhow::Result<f64> {
        let marker = format!("wh{round}-");
        let tracker = Arc::new(Tracker::new(ENDPOINTS));
        sink.set(tracker.clone(), marker.clone());
        let ids = registry.endpoints(sink_addr, ENDPOINTS, 0).await?;
        let mut publisher = StorePublisher {
            store: stack.store.clone(),
            who: stack.admin(),
            marker,
        };
        let mut seq = Seq::default();
        paced(
            &mut publisher,
            &tracker,
            &mut seq,
            1.0,
            Duration::from_millis(1),
        )
        .await?;
        let rate = saturate(&mut publisher, &tracker, &mut seq, dur, WINDOW).await;
        registry.remove(ids).await?;
        rate
    };
    closed_loop(posters(), cfg.warmup).await?;
    b_round(1000, cfg.warmup).await?;
    let tp = alternate(
        cfg.rounds,
        |_| closed_loop(posters(), cfg.round),
        |i| b_round(i, cfg.round),
    )
    .await?;
    rows.push(
        Row::new(
            SCENARIO,
            &format!(
                "deliveries/s, {ENDPOINTS} endpoints x {per_endpoint} vs bare loop x {concurrency}"
            ),
            fig(tp.median_a(), "req/s"),
            fig(tp.median_b(), "del/s"),
            tp.ratio(),
            "x",
            Target::AtLeast(0.7),
        )
        .rounds(&tp.ratios()),
    );

    // --- sustained 1,000 deliveries/s ---
    eprintln!("  webhooks: 1,000 deliveries/s for {:?}", cfg.soak);
    {
        let marker = "whsoak-".to_owned();
        let tracker = Arc::new(Tracker::new(1));
        sink.set(tracker.clone(), marker.clone());
        let ids = registry.endpoints(sink_addr, 1, 0).await?;
        let mut publisher = StorePublisher {
            store: stack.store.clone(),
            who: stack.admin(),
            marker,
        };
        let mut seq = Seq::default();
        let run = paced(&mut publisher, &tracker, &mut seq, 1000.0, cfg.soak).await;
        registry.remove(ids).await?;
        let run = run?;
        let rate = run.events as f64 / run.sent_for.as_secs_f64();
        rows.push(
            Row::new(
                SCENARIO,
                &format!(
                    "p99 enqueue-to-delivery at 1,000/s for {} s",
                    cfg.soak.as_secs()
                ),
                "-".to_owned(),
                format!("p50 {:.2} ms, p99 {:.2} ms", run.p50_ms, run.p99_ms),
                run.p99_ms,
                "ms",
                Target::AtMost(100.0),
            )
            .note(format!(
                "{} of {} delivered, {rate:.0}/s",
                run.events, run.events
            )),
        );
    }

    // --- slow receivers ---
    let rate = 100.0;
    let dur = if cfg.quick {
        cfg.round
    } else {
        cfg.round.max(Duration::from_secs(5))
    };
    eprintln!("  webhooks: 10 endpoints at {rate} events/s, 1 of them answering in {SLOW:?}");
    let slow_round = async |round: usize, slowed: usize| -> anyhow::Result<f64> {
        let fast = 10 - slowed;
        let marker = format!("whs{round}x{slowed}-");
        let tracker = Arc::new(Tracker::new(fast));
        sink.set(tracker.clone(), marker.clone());
        let ids = registry.endpoints(sink_addr, fast, slowed).await?;
        let mut publisher = StorePublisher {
            store: stack.store.clone(),
            who: stack.admin(),
            marker,
        };
        let mut seq = Seq::default();
        let run = paced(&mut publisher, &tracker, &mut seq, rate, dur).await;
        registry.remove(ids).await?;
        Ok(run?.p99_ms)
    };
    let slow: Rounds = alternate(cfg.rounds, |i| slow_round(i, 0), |i| slow_round(i, 1)).await?;
    rows.push(
        Row::new(
            SCENARIO,
            "fast receivers' p99 with 10% slowed to 500 ms (B) vs none (A)",
            fig(slow.median_a(), "ms"),
            fig(slow.median_b(), "ms"),
            slow.ratio(),
            "x",
            Target::AtMost(1.5),
        )
        .rounds(&slow.ratios()),
    );
    Ok(())
}
