//! Fan-out of events to many SSE or WebSocket subscribers through the full stack
//! (events written through the core service) vs a bare `tokio::sync::broadcast`
//! relayed by a bare axum SSE handler or a bare tokio-tungstenite server; and the RSS
//! each idle subscriber costs the server, measured in a child process that runs only
//! the server.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Empty};
use petstore_core::{PetStore, Principal, Scope};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::{
    Config, Publisher, Seq, StorePublisher, Template, Tracker, new_pet, paced, saturate, seq_in,
};
use crate::bare::Frame;
use crate::measure::{Rounds, median};
use crate::report::{Row, Target, fig};
use crate::stack::{Stack, StackOptions};

/// Name prefix of the pets written for fan-out.
const MARKER: &str = "fan-";
/// Events in flight (not yet received by every subscriber) in the throughput phase:
/// below the full stack's per-subscriber queue (64), so nobody lags.
const WINDOW: u64 = 32;
/// Connection attempts at once while subscribing.
const CONNECTING: usize = 256;

/// Which push protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Proto {
    Sse,
    Ws,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Sse => "sse-fanout",
            Proto::Ws => "ws-fanout",
        }
    }

    fn idle_name(self) -> &'static str {
        match self {
            Proto::Sse => "sse-idle",
            Proto::Ws => "ws-idle",
        }
    }
}

/// Full stack or bare baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Side {
    Bare,
    Full,
}

/// Where subscribers connect.
#[derive(Debug, Clone)]
struct Endpoint {
    proto: Proto,
    addr: SocketAddr,
    path: String,
}

impl Endpoint {
    fn full(proto: Proto, stack: &Stack) -> Self {
        Self {
            proto,
            addr: stack.http,
            path: match proto {
                // Named events, so that a reset or an error is told by its `event:` line.
                Proto::Sse => "/v1/stream/pets?named_events=true".to_owned(),
                Proto::Ws => format!("/v1/ws?token={}", stack.token),
            },
        }
    }

    fn bare(proto: Proto, http: SocketAddr, ws: SocketAddr) -> Self {
        match proto {
            Proto::Sse => Self {
                proto,
                addr: http,
                path: "/v1/stream/pets".to_owned(),
            },
            Proto::Ws => Self {
                proto,
                addr: ws,
                path: "/".to_owned(),
            },
        }
    }
}

/// Subscribers that finished subscribing.
#[derive(Debug, Default)]
struct Ready {
    count: AtomicUsize,
    changed: Notify,
}

impl Ready {
    fn add(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }
}

/// `n` subscribers, each one task; dropping it disconnects them all.
struct Session {
    tasks: JoinSet<anyhow::Result<()>>,
    tracker: Arc<Tracker>,
}

impl Session {
    async fn open(ep: &Endpoint, n: usize) -> anyhow::Result<Self> {
        let tracker = Arc::new(Tracker::new(n));
        let ready = Arc::new(Ready::default());
        let gate = Arc::new(Semaphore::new(CONNECTING));
        let mut tasks = JoinSet::new();
        for _ in 0..n {
            let (ep, tracker, ready, gate) =
                (ep.clone(), tracker.clone(), ready.clone(), gate.clone());
            tasks.spawn(async move {
                let permit = gate.acquire_owned().await?;
                match ep.proto {
                    Proto::Sse => sse_subscriber(&ep, &tracker, &ready, permit).await,
                    Proto::Ws => ws_subscriber(&ep, &tracker, &ready, permit).await,
                }
            });
        }
        let mut session = Self { tasks, tracker };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let changed = ready.changed.notified();
            if ready.count.load(Ordering::Acquire) >= n {
                return Ok(session);
            }
            session.check()?;
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = tokio::time::sleep_until(deadline) => bail!(
                    "only {} of {n} subscribers of {}{} ready after 120 s",
                    ready.count.load(Ordering::Acquire), ep.addr, ep.path
                ),
            }
        }
    }

    /// Fails if a subscriber has ended (disconnected, bad answer).
    fn check(&mut self) -> anyhow::Result<()> {
        if let Some(ended) = self.tasks.try_join_next() {
            ended.context("subscriber panicked")??;
            bail!("a subscriber's stream ended");
        }
        Ok(())
    }
}

async fn sse_subscriber(
    ep: &Endpoint,
    tracker: &Tracker,
    ready: &Ready,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> anyhow::Result<()> {
    let mut sender = crate::load::http1_connect::<Empty<Bytes>>(ep.addr).await?;
    let req = http::Request::get(ep.path.as_str())
        .header(http::header::HOST, ep.addr.to_string())
        .header(http::header::ACCEPT, "text/event-stream")
        .body(Empty::new())?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("GET {}{}", ep.addr, ep.path))?;
    let status = resp.status();
    let kind = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        status.is_success() && kind.starts_with("text/event-stream"),
        "GET {}{}: {status} {kind}",
        ep.addr,
        ep.path
    );
    ready.add();
    drop(permit);
    let mut events = resp.into_body().into_data_stream().eventsource();
    while let Some(event) = events.next().await {
        let event = event.with_context(|| format!("SSE stream of {}", ep.addr))?;
        match event.event.as_str() {
            "reset" | "error" => bail!("SSE `{}` event: {}", event.event, event.data),
            _ => {
                if let Some(seq) = seq_in(event.data.as_bytes(), MARKER) {
                    tracker.deliver(seq);
                }
            }
        }
    }
    bail!("SSE stream of {} ended", ep.addr)
}

async fn ws_subscriber(
    ep: &Endpoint,
    tracker: &Tracker,
    ready: &Ready,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> anyhow::Result<()> {
    let stream = tokio::net::TcpStream::connect(ep.addr).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{}{}", ep.addr, ep.path);
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
        .await
        .with_context(|| format!("WebSocket handshake with {}", ep.addr))?;
    ws.send(Message::text(r#"{"type":"subscribe","channel":"pets"}"#))
        .await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"subscribed\"") => break,
            Some(Ok(Message::Text(t))) if t.contains("\"error\"") => {
                bail!("WebSocket error frame: {t}")
            }
            Some(Ok(Message::Close(c))) => bail!("WebSocket closed while subscribing: {c:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("WebSocket ended while subscribing"),
        }
    }
    ready.add();
    drop(permit);
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(t) => {
                if let Some(seq) = seq_in(t.as_bytes(), MARKER) {
                    tracker.deliver(seq);
                } else if t.contains("\"type\":\"error\"") {
                    bail!("WebSocket error frame: {t}");
                }
            }
            Message::Close(c) => bail!("WebSocket closed by the server: {c:?}"),
            _ => {}
        }
    }
    bail!("WebSocket of {} ended", ep.addr)
}

/// Sends one pre-serialised frame per event on the bare broadcast channel.
struct BroadcastPublisher {
    tx: broadcast::Sender<Arc<Frame>>,
    template: Template,
    proto: Proto,
}

impl Publisher for BroadcastPublisher {
    async fn publish(&mut self, seq: u64) -> anyhow::Result<()> {
        let data = self.template.envelope(seq);
        let frame = match self.proto {
            Proto::Sse => Frame {
                id: self.template.offset.clone(),
                data,
                ws: Default::default(),
            },
            Proto::Ws => Frame {
                id: String::new(),
                ws: format!(r#"{{"type":"event","channel":"pets","event":{data}}}"#).into(),
                data: String::new(),
            },
        };
        self.tx
            .send(Arc::new(frame))
            .map_err(|_| anyhow::anyhow!("no bare subscriber"))?;
        Ok(())
    }
}

/// One side's figures in one round.
struct SideRound {
    deliveries_per_s: f64,
    p99_ms: f64,
}

/// Subscribe `n`, check that an event reaches all of them, saturate, then pace at
/// `rate` events/s (if given), disconnect.
async fn side_round<P: Publisher>(
    ep: &Endpoint,
    n: usize,
    publisher: &mut P,
    dur: Duration,
    rate: Option<f64>,
) -> anyhow::Result<SideRound> {
    let mut s = Session::open(ep, n).await?;
    let mut seq = Seq::default();
    // Every subscription is live once one event has reached all of them.
    paced(
        publisher,
        &s.tracker,
        &mut seq,
        1.0,
        Duration::from_millis(1),
    )
    .await?;
    let deliveries_per_s = saturate(publisher, &s.tracker, &mut seq, dur, WINDOW).await?;
    s.check()?;
    let p99_ms = match rate {
        Some(rate) => {
            paced(publisher, &s.tracker, &mut seq, rate, dur)
                .await?
                .p99_ms
        }
        None => f64::NAN,
    };
    s.check()?;
    drop(s);
    // Let the servers notice the disconnections before the next measurement.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(SideRound {
        deliveries_per_s,
        p99_ms,
    })
}

pub(crate) async fn run(cfg: &Config, proto: Proto, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let result = measure(cfg, proto, &stack, rows).await;
    stack.stop().await;
    result
}

async fn measure(
    cfg: &Config,
    proto: Proto,
    stack: &Stack,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let scenario = proto.name();
    let template = Template::new(MARKER).await?;
    let (tx, _) = broadcast::channel::<Arc<Frame>>(1024);
    let bare_http = crate::bare::http(new_pet_for_bare(stack).await?, tx.clone()).await?;
    let bare_ws = crate::bare::ws(tx.clone()).await?;
    let a_ep = Endpoint::bare(proto, bare_http, bare_ws);
    let b_ep = Endpoint::full(proto, stack);
    let mut a_pub = BroadcastPublisher {
        tx,
        template,
        proto,
    };
    let mut b_pub = StorePublisher {
        store: stack.store.clone(),
        who: stack.admin(),
        marker: MARKER.to_owned(),
    };

    // Shorter phases than the other rows: each side-round subscribes n clients anew.
    let phase = cfg.round.min(Duration::from_secs(2));
    for &n in &cfg.fanout {
        eprintln!("  {scenario}: {n} subscribers (warm-up)");
        let warm = side_round(&a_ep, n, &mut a_pub, cfg.warmup, None)
            .await
            .context("bare (A) warm-up")?;
        side_round(&b_ep, n, &mut b_pub, cfg.warmup, None)
            .await
            .context("full stack (B) warm-up")?;
        // Latency is measured at half the bare maximum event rate.
        let rate = (warm.deliveries_per_s / n as f64 / 2.0).max(1.0);
        let (mut tp, mut lat) = (Rounds::default(), Rounds::default());
        for round in 0..cfg.rounds {
            let mut sides = [Side::Bare, Side::Full];
            if round % 2 == 1 {
                sides.reverse();
            }
            for side in sides {
                let r = match side {
                    Side::Bare => side_round(&a_ep, n, &mut a_pub, phase, Some(rate))
                        .await
                        .context("bare (A)")?,
                    Side::Full => side_round(&b_ep, n, &mut b_pub, phase, Some(rate))
                        .await
                        .context("full stack (B)")?,
                };
                let (t, l) = match side {
                    Side::Bare => (&mut tp.a, &mut lat.a),
                    Side::Full => (&mut tp.b, &mut lat.b),
                };
                t.push(r.deliveries_per_s);
                l.push(r.p99_ms);
            }
            eprintln!(
                "    round {}: deliveries/s A {:.0} B {:.0} ({:.2}); p99 A {:.2} ms B {:.2} ms ({:.2})",
                round + 1,
                tp.a[round],
                tp.b[round],
                tp.b[round] / tp.a[round],
                lat.a[round],
                lat.b[round],
                lat.b[round] / lat.a[round]
            );
        }
        rows.push(
            Row::new(
                scenario,
                &format!("{n} subscribers: delivered events/s"),
                fig(tp.median_a(), "ev/s"),
                fig(tp.median_b(), "ev/s"),
                tp.ratio(),
                "x",
                Target::AtLeast(0.8),
            )
            .rounds(&tp.ratios()),
        );
        rows.push(
            Row::new(
                scenario,
                &format!("{n} subscribers: p99 publish-to-receive at {rate:.0} events/s"),
                fig(lat.median_a(), "ms"),
                fig(lat.median_b(), "ms"),
                lat.ratio(),
                "x",
                Target::AtMost(2.0),
            )
            .rounds(&lat.ratios()),
        );
    }
    Ok(())
}

/// The pet the bare HTTP app serves (unused by fan-out, needed by its constructor).
async fn new_pet_for_bare(stack: &Stack) -> anyhow::Result<petstore_core::Pet> {
    Ok(stack
        .store
        .create_pet(&stack.admin(), new_pet("Rex".into()))
        .await?)
}

/// RSS per idle subscriber, full stack and bare, each server alone in a fresh child
/// process (so the client's memory and earlier scenarios' heap are not counted).
/// `PETSTORE_BENCH_CHILD_PREFIX` (e.g. `valgrind --tool=dhat`) runs that child under
/// a profiler.
pub(crate) async fn idle_memory(
    cfg: &Config,
    proto: Proto,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let n = cfg.idle;
    eprintln!(
        "  {}: idle RSS per subscriber, {n} subscribers",
        proto.idle_name()
    );
    let mut per = Vec::new();
    for side in [Side::Bare, Side::Full] {
        let mut samples = Vec::new();
        for _ in 0..1 {
            samples.push(
                idle_rss(cfg, proto, side, n)
                    .await
                    .with_context(|| format!("{side:?} idle memory"))?,
            );
        }
        eprintln!("    {side:?}: {samples:.2?} KiB per subscriber");
        per.push(median(&samples));
    }
    let (limit, what) = match proto {
        Proto::Sse => (16.0, "idle subscriber"),
        Proto::Ws => (32.0, "idle connection"),
    };
    rows.push(
        Row::new(
            proto.idle_name(),
            &format!("RSS per {what} ({n} held)"),
            fig(per[0], "KiB"),
            fig(per[1], "KiB"),
            per[1],
            "KiB",
            Target::AtMost(limit),
        )
        .note("server alone in a child process"),
    );
    Ok(())
}

async fn idle_rss(cfg: &Config, proto: Proto, side: Side, n: usize) -> anyhow::Result<f64> {
    let prefix = std::env::var("PETSTORE_BENCH_CHILD_PREFIX").unwrap_or_default();
    let mut words = prefix.split_whitespace();
    let mut child = match words.next() {
        Some(program) => {
            let mut c = tokio::process::Command::new(program);
            c.args(words).arg(&cfg.exe);
            c
        }
        None => tokio::process::Command::new(&cfg.exe),
    };
    let mut child = child
        .arg("hold-server")
        .arg("--proto")
        .arg(match proto {
            Proto::Sse => "sse",
            Proto::Ws => "ws",
        })
        .arg("--side")
        .arg(match side {
            Side::Bare => "bare",
            Side::Full => "full",
        })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the server child process")?;
    let mut stdin = child.stdin.take().context("child stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
    let ready = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .context("the server child did not start")??
        .context("the server child exited")?;
    let mut parts = ready.split_whitespace();
    ensure!(parts.next() == Some("READY"), "server child said {ready:?}");
    let addr: SocketAddr = parts.next().context("no address")?.parse()?;
    let path = parts.next().context("no path")?.to_owned();
    let ep = Endpoint { proto, addr, path };

    let mut rss = async || -> anyhow::Result<f64> {
        stdin.write_all(b"rss\n").await?;
        let line = lines
            .next_line()
            .await?
            .context("the server child exited")?;
        Ok(line.trim().parse::<f64>()?)
    };
    // Warm up lazily initialised state, then measure from a settled heap.
    drop(Session::open(&ep, 64.min(n)).await?);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss().await?;
    let mut held = Session::open(&ep, n).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    held.check()?;
    let after = rss().await?;
    held.check()?;
    drop(held);
    // Closing stdin ends the child, which lets a profiler in the prefix write its
    // report; one that does not end in time is killed.
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    drop(child);
    Ok((after - before) / n as f64)
}

/// The child process of the idle-memory rows: serves SSE or WebSocket subscriptions
/// (full stack or bare), prints `READY <addr> <path>`, then answers each `rss` line on
/// stdin with its RSS in KiB, until stdin closes.
pub(crate) fn hold_server(proto: Proto, side: Side) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (tx, _) = broadcast::channel::<Arc<Frame>>(1024);
        let mut stack = None;
        let ep = match side {
            Side::Full => {
                let s = Stack::start(StackOptions::default()).await?;
                let ep = Endpoint::full(proto, &s);
                stack = Some(s);
                ep
            }
            Side::Bare => {
                let pet = PetStore::in_memory()
                    .create_pet(&Principal::new("bench", Scope::ALL), new_pet("Rex".into()))
                    .await?;
                let http = crate::bare::http(pet, tx.clone()).await?;
                let ws = crate::bare::ws(tx.clone()).await?;
                Endpoint::bare(proto, http, ws)
            }
        };
        println!("READY {} {}", ep.addr, ep.path);
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            if line.trim() == "rss" {
                println!("{}", crate::measure::rss_kib()?);
            }
        }
        drop(stack);
        anyhow::Ok(())
    })
}
