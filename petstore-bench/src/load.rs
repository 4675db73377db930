//! The load generator: a closed loop of concurrent workers for throughput, an open
//! loop at a fixed rate for latency. Every answer is checked; the first bad one ends
//! the measurement with an error.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

use crate::measure::Histogram;

/// One unit of work a load worker repeats (an HTTP request, a gRPC call, ...).
pub(crate) trait Worker: Send + 'static {
    fn call(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Runs `workers` back to back for `dur`; returns completed calls per second.
pub(crate) async fn closed_loop<W: Worker>(workers: Vec<W>, dur: Duration) -> anyhow::Result<f64> {
    let start = Instant::now();
    let deadline = start + dur;
    let mut set = JoinSet::new();
    for mut w in workers {
        set.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                w.call().await?;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r.context("load worker panicked")??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Issues calls at `rate` per second for `dur` (open loop: a slow answer does not delay
/// the next call's schedule) over `workers`; latency counts from the scheduled time,
/// so time spent waiting for a free worker is included (no coordinated omission).
pub(crate) async fn open_loop<W: Worker>(
    workers: Vec<W>,
    rate: f64,
    dur: Duration,
) -> anyhow::Result<Arc<Histogram>> {
    let hist = Arc::new(Histogram::default());
    let (tx, rx) = mpsc::unbounded_channel::<Instant>();
    let rx = Arc::new(Mutex::new(rx));
    let mut set = JoinSet::new();
    for mut w in workers {
        let rx = rx.clone();
        let hist = hist.clone();
        set.spawn(async move {
            loop {
                let Some(due) = rx.lock().await.recv().await else {
                    return anyhow::Ok(());
                };
                w.call().await?;
                hist.record(due.elapsed());
            }
        });
    }
    let total = (rate * dur.as_secs_f64()).round() as u64;
    let start = Instant::now() + Duration::from_millis(5);
    let mut tick = tokio::time::interval_at(start.into(), Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    while sent < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        while sent < due {
            let at = start + Duration::from_secs_f64(sent as f64 / rate);
            if tx.send(at).is_err() {
                break;
            }
            sent += 1;
        }
        if set.try_join_next().is_some() {
            // A worker ended early: it failed.
            break;
        }
    }
    drop(tx);
    while let Some(r) = set.join_next().await {
        r.context("load worker panicked")??;
    }
    Ok(hist)
}

/// What an answer must look like.
pub(crate) type Check = Arc<dyn Fn(StatusCode, &[u8]) -> anyhow::Result<()> + Send + Sync>;

/// A 2xx answer whose body contains every one of `needles`.
pub(crate) fn expect(status: u16, needles: &[&str]) -> Check {
    let needles: Vec<Vec<u8>> = needles.iter().map(|n| n.as_bytes().to_vec()).collect();
    Arc::new(move |got: StatusCode, body: &[u8]| {
        if got.as_u16() != status {
            bail!(
                "answer {got} (expected {status}): {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        for n in &needles {
            if !contains(body, n) {
                bail!(
                    "answer body lacks `{}`: {}",
                    String::from_utf8_lossy(n),
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                );
            }
        }
        Ok(())
    })
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// An HTTP request to repeat, and the check of its answer.
#[derive(Clone)]
pub(crate) struct Call {
    pub(crate) addr: SocketAddr,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
    pub(crate) check: Check,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} http://{}{}", self.method, self.addr, self.path)
    }
}

impl Call {
    pub(crate) fn get(addr: SocketAddr, path: impl Into<String>, check: Check) -> Self {
        Self {
            addr,
            method: Method::GET,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
            check,
        }
    }

    pub(crate) fn post_json(
        addr: SocketAddr,
        path: impl Into<String>,
        body: impl Into<Bytes>,
        check: Check,
    ) -> Self {
        Self {
            addr,
            method: Method::POST,
            path: path.into(),
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: body.into(),
            check,
        }
    }

    pub(crate) fn bearer(mut self, token: &str) -> Self {
        self.headers.push((
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("token is ASCII"),
        ));
        self
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .header(http::header::HOST, self.addr.to_string());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req.body(Full::new(self.body.clone()))
            .expect("valid request")
    }

    /// Sends the request once on a fresh connection and checks the answer.
    pub(crate) async fn once(&self) -> anyhow::Result<Bytes> {
        let mut w = HttpWorker::connect(Arc::new(self.clone())).await?;
        w.send().await
    }

    /// `n` workers, each with its own keep-alive connection.
    pub(crate) async fn workers(&self, n: usize) -> anyhow::Result<Vec<HttpWorker>> {
        let call = Arc::new(self.clone());
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(HttpWorker::connect(call.clone()).await?);
        }
        Ok(out)
    }
}

/// One HTTP/1.1 keep-alive connection repeating a [`Call`].
pub(crate) struct HttpWorker {
    sender: SendRequest<Full<Bytes>>,
    call: Arc<Call>,
}

impl HttpWorker {
    async fn connect(call: Arc<Call>) -> anyhow::Result<Self> {
        let sender = http1_connect(call.addr).await?;
        Ok(Self { sender, call })
    }

    async fn send(&mut self) -> anyhow::Result<Bytes> {
        let call = &self.call;
        self.sender
            .ready()
            .await
            .with_context(|| format!("{call:?}: connection closed"))?;
        let resp = self
            .sender
            .send_request(call.request())
            .await
            .with_context(|| format!("{call:?}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("{call:?}: reading the body"))?
            .to_bytes();
        (call.check)(status, &body).with_context(|| format!("{call:?}"))?;
        Ok(body)
    }
}

impl Worker for HttpWorker {
    async fn call(&mut self) -> anyhow::Result<()> {
        self.send().await.map(drop)
    }
}

/// An HTTP/1.1 client connection to `addr` (driven by a spawned task).
pub(crate) async fn http1_connect<B>(addr: SocketAddr) -> anyhow::Result<SendRequest<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP handshake with {addr}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
