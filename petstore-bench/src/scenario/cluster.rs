//! Cross-instance publish-to-receive: two `petstore-server` processes (the real
//! binary, every default component on) on one new PostgreSQL database. REST
//! `POST /v1/pets` goes to instance 1 at a fixed 500 writes/s (open loop, 32
//! connections, latency counted from each write's scheduled time); an SSE subscriber
//! on instance 2 (B) and one on instance 1 (A, the baseline: the same event through
//! the same database to the instance that wrote it) receive every event. Both
//! subscribers take the same writes at the same time, so each round gives both
//! figures. Without a PostgreSQL cluster the row says that it was not run.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinSet;

use super::{Config, Tracker, new_pet_json, seq_in};
use crate::load::http1_connect;
use crate::measure::{Clock, median};
use crate::report::{Row, Target, fig};
use crate::server_process::ServerProcess;

const SCENARIO: &str = "cross-instance";
/// Writes per second on instance 1.
const RATE: f64 = 500.0;
/// Connections the writes go out on.
const WRITERS: usize = 32;
/// The pets written are named `{MARKER}{seq}`.
const MARKER: &str = "xi-";
/// Target: p99 publish-to-receive on the other instance.
const TARGET_MS: f64 = 50.0;

fn metric() -> String {
    format!(
        "p99 write-to-receive at {RATE:.0} writes/s: REST POST on instance 1 -> SSE on instance 2 (B) vs on instance 1 (A), one PostgreSQL"
    )
}

pub(crate) async fn run(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let Some(cluster) = crate::pg::cluster() else {
        eprintln!("  {}", crate::pg::NOT_SET);
        rows.push(Row::not_run(
            SCENARIO,
            &metric(),
            "ms",
            Target::AtMost(TARGET_MS),
            crate::pg::NOT_SET,
        ));
        return Ok(());
    };
    let url = crate::pg::new_database(&cluster).await?;
    let dir = std::env::temp_dir().join(format!("petstore-bench-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = two_instances(cfg, &url, &dir, rows).await;
    crate::pg::drop_database(&cluster, &url).await;
    std::fs::remove_dir_all(&dir).ok();
    result
}

async fn two_instances(
    cfg: &Config,
    url: &str,
    dir: &Path,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    // One after the other: the first runs the migrations and seeds the catalogue.
    let one = ServerProcess::start(url, &dir.join("instance-1.log")).await?;
    let two = match ServerProcess::start(url, &dir.join("instance-2.log")).await {
        Ok(two) => two,
        Err(e) => {
            one.stop().await.ok();
            return Err(e);
        }
    };
    let result = measure(cfg, &one, &two, rows).await;
    let stopped = (one.stop().await, two.stop().await);
    result?;
    stopped.0?;
    stopped.1
}

async fn measure(
    cfg: &Config,
    one: &ServerProcess,
    two: &ServerProcess,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let clock = Clock::new();
    let same = Arc::new(Tracker::with_clock(1, clock));
    let cross = Arc::new(Tracker::with_clock(1, clock));
    let mut subscribers = JoinSet::new();
    for (addr, tracker) in [(one.http, &same), (two.http, &cross)] {
        let (subscribed, ready) = oneshot::channel();
        subscribers.spawn(subscribe(addr, tracker.clone(), subscribed));
        tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .context("the SSE subscriber did not connect")?
            .context("the SSE subscriber failed")?;
    }
    let trackers = [same.as_ref(), cross.as_ref()];
    let auth = HeaderValue::from_str(&format!("Bearer {}", one.token))?;
    let mut seq = 0;

    // A probe event must reach both subscribers before anything is measured.
    let mut probe = Writer::connect(one.http, auth.clone()).await?;
    for t in trackers {
        t.stamp(seq, clock.now_ns());
    }
    probe.post(seq).await?;
    seq += 1;
    drain(trackers, seq).await?;

    eprintln!("  {SCENARIO}: warm-up at {RATE:.0} writes/s");
    paced(one.http, &auth, trackers, &mut seq, cfg.warmup).await?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..cfg.rounds {
        if let Some(ended) = subscribers.try_join_next() {
            ended.context("subscriber panicked")??;
            bail!("an SSE subscriber's stream ended");
        }
        for t in trackers {
            t.latency.reset();
            t.record_from.store(seq, Ordering::Relaxed);
        }
        paced(one.http, &auth, trackers, &mut seq, cfg.round).await?;
        a.push(same.latency.p99_ms());
        b.push(cross.latency.p99_ms());
        eprintln!(
            "    round {}: p99 same instance {:.1} ms, other instance {:.1} ms (p50 {:.1} / {:.1} ms, {} events)",
            round + 1,
            a[round],
            b[round],
            same.latency.p50_ms(),
            cross.latency.p50_ms(),
            cross.latency.count()
        );
    }
    for t in trackers {
        t.record_from.store(u64::MAX, Ordering::Relaxed);
    }
    subscribers.abort_all();

    let ratios: Vec<f64> = a.iter().zip(&b).map(|(a, b)| b / a).collect();
    let ms: Vec<String> = b.iter().map(|v| format!("{v:.1}")).collect();
    rows.push(
        Row::new(
            SCENARIO,
            &metric(),
            fig(median(&a), "ms"),
            fig(median(&b), "ms"),
            median(&b),
            "ms",
            Target::AtMost(TARGET_MS),
        )
        .note(format!("rounds (ms): {}", ms.join(" ")))
        .note(format!("B/A {:.2} x", median(&ratios)))
        .rounds(&ratios),
    );
    Ok(())
}

/// Waits until every tracker has the first `events` events.
async fn drain(trackers: [&Tracker; 2], events: u64) -> anyhow::Result<()> {
    for (t, who) in trackers.iter().zip(["instance 1", "instance 2"]) {
        t.drain(events, Duration::from_secs(30))
            .await
            .with_context(|| format!("the SSE subscriber on {who}"))?;
    }
    Ok(())
}

/// Writes at [`RATE`] for `dur` over [`WRITERS`] connections, each write stamped
/// with its scheduled time, then waits until both subscribers have every event.
async fn paced(
    addr: SocketAddr,
    auth: &HeaderValue,
    trackers: [&Tracker; 2],
    seq: &mut u64,
    dur: Duration,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::unbounded_channel::<u64>();
    let rx = Arc::new(Mutex::new(rx));
    let mut writers = JoinSet::new();
    for _ in 0..WRITERS {
        let mut writer = Writer::connect(addr, auth.clone()).await?;
        let rx = rx.clone();
        writers.spawn(async move {
            loop {
                let Some(seq) = rx.lock().await.recv().await else {
                    return anyhow::Ok(());
                };
                writer.post(seq).await?;
            }
        });
    }
    let clock = trackers[0].clock;
    let total = (RATE * dur.as_secs_f64()).round().max(1.0) as u64;
    let start_ns = clock.now_ns() + 2_000_000;
    let mut tick = tokio::time::interval_at(clock.at(start_ns).into(), Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        let elapsed = clock.now_ns().saturating_sub(start_ns) as f64 / 1e9;
        let due = ((elapsed * RATE) as u64 + 1).min(total);
        while sent < due {
            let at = start_ns + (sent as f64 / RATE * 1e9) as u64;
            for t in trackers {
                t.stamp(*seq, at);
            }
            if tx.send(*seq).is_err() {
                break;
            }
            *seq += 1;
            sent += 1;
        }
        if writers.try_join_next().is_some() {
            // A writer ended early: it failed (its error comes below).
            break;
        }
    }
    drop(tx);
    while let Some(done) = writers.join_next().await {
        done.context("writer panicked")??;
    }
    drain(trackers, *seq).await
}

/// One keep-alive connection posting pets named by their sequence number.
struct Writer {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    auth: HeaderValue,
}

impl Writer {
    async fn connect(addr: SocketAddr, auth: HeaderValue) -> anyhow::Result<Self> {
        Ok(Self {
            sender: http1_connect(addr).await?,
            addr,
            auth,
        })
    }

    async fn post(&mut self, seq: u64) -> anyhow::Result<()> {
        self.sender
            .ready()
            .await
            .context("POST connection closed")?;
        let req = Request::post("/v1/pets")
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json")
            .header(AUTHORIZATION, self.auth.clone())
            .body(Full::new(Bytes::from(new_pet_json(&format!(
                "{MARKER}{seq}"
            )))))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        ensure!(
            status == StatusCode::CREATED,
            "POST /v1/pets on {}: {status} {}",
            self.addr,
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        Ok(())
    }
}

/// An SSE subscriber of `/v1/stream/pets` on `addr`; says when it is subscribed, then
/// reports every `xi-` pet event to `tracker` until its stream ends (an error).
async fn subscribe(
    addr: SocketAddr,
    tracker: Arc<Tracker>,
    subscribed: oneshot::Sender<()>,
) -> anyhow::Result<()> {
    let mut sender = http1_connect::<Empty<Bytes>>(addr).await?;
    let req = Request::get("/v1/stream/pets?named_events=true")
        .header(HOST, addr.to_string())
        .header(http::header::ACCEPT, "text/event-stream")
        .body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "GET /v1/stream/pets on {addr}: {}",
        resp.status()
    );
    let _ = subscribed.send(());
    let mut events = resp.into_body().into_data_stream().eventsource();
    while let Some(event) = events.next().await {
        let event = event.with_context(|| format!("SSE stream of {addr}"))?;
        match event.event.as_str() {
            "reset" | "error" => bail!("SSE `{}` event on {addr}: {}", event.event, event.data),
            _ => {
                if let Some(seq) = seq_in(event.data.as_bytes(), MARKER) {
                    tracker.deliver(seq);
                }
            }
        }
    }
    bail!("the SSE stream of {addr} ended")
}
