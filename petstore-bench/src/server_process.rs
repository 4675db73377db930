//! The real `petstore-server` binary in a child process, started as a user starts it
//! (every default component on, the logs at their default level), for the rows that
//! need processes of their own: restart to ready, and two instances on one
//! PostgreSQL database.
//!
//! The binary is the one next to this executable: build both with
//! `cargo build --release -p petstore-server -p petstore-bench`, or name another one
//! with `PETSTORE_BENCH_SERVER`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Names the server binary to run (default: `petstore-server` next to this executable).
pub(crate) const SERVER_ENV: &str = "PETSTORE_BENCH_SERVER";

/// How long a server may take to print its banner or to become ready.
const START_WITHIN: Duration = Duration::from_secs(120);

/// The `petstore-server` binary.
pub(crate) fn binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(SERVER_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        ensure!(
            path.is_file(),
            "{SERVER_ENV}={} is not a file",
            path.display()
        );
        return Ok(path);
    }
    let path = std::env::current_exe()?.with_file_name("petstore-server");
    ensure!(
        path.is_file(),
        "no petstore-server binary at {} (build it with the bench: cargo build --release -p petstore-server -p petstore-bench; or set {SERVER_ENV})",
        path.display()
    );
    Ok(path)
}

/// A loopback address with a port that was free a moment ago (the server binds it
/// itself, so that readiness can be polled from the moment it is started).
pub(crate) fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// A running `petstore-server` child process.
pub(crate) struct ServerProcess {
    child: Child,
    /// Where its HTTP protocols answer.
    pub(crate) http: SocketAddr,
    /// Its development token (every scope), from the banner.
    pub(crate) token: String,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts the server on `database_url` with HTTP on `http` (gRPC and MQTT on free
    /// ports), its log written to `log`. Returns at once: see [`ServerProcess::ready`].
    pub(crate) fn spawn(database_url: &str, http: SocketAddr, log: &Path) -> anyhow::Result<Self> {
        let stderr = std::fs::File::create(log)
            .with_context(|| format!("creating the server log {}", log.display()))?;
        let child = Command::new(binary()?)
            .arg("--http-addr")
            .arg(http.to_string())
            .args(["--grpc-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0"])
            .arg("--database-url")
            .arg(database_url)
            // The URL is the flag's; a `DATABASE_URL` naming the bench's cluster is not.
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .context("starting petstore-server")?;
        Ok(Self {
            child,
            http,
            token: String::new(),
            log: log.to_owned(),
        })
    }

    /// Starts the server as [`ServerProcess::spawn`] does and waits until it has printed
    /// its banner and `/readyz` answers 200.
    pub(crate) async fn start(database_url: &str, log: &Path) -> anyhow::Result<Self> {
        let mut server = Self::spawn(database_url, free_addr()?, log)?;
        server.read_banner().await?;
        server.ready().await?;
        Ok(server)
    }

    /// Reads the banner (up to "Press Ctrl-C") for the development token, then keeps
    /// draining stdout so that the child never blocks on a full pipe.
    async fn read_banner(&mut self) -> anyhow::Result<()> {
        let stdout = self.child.stdout.take().context("the child's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut token_next = false;
        let read = async {
            while let Some(line) = lines.next_line().await? {
                if token_next {
                    self.token = line.trim().to_owned();
                    token_next = false;
                }
                token_next |= line.starts_with("Development token");
                if line.contains("Press Ctrl-C") {
                    return anyhow::Ok(true);
                }
            }
            Ok(false)
        };
        let complete = tokio::time::timeout(START_WITHIN, read)
            .await
            .context("petstore-server printed no banner")??;
        if !complete || self.token.is_empty() {
            bail!(
                "petstore-server ended before its banner was complete: {}",
                self.log_tail()
            );
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(())
    }

    /// Polls `GET /readyz` (every 2 ms, a new connection each time while none is
    /// accepted) until it answers 200; returns how long that took from this call.
    pub(crate) async fn ready(&mut self) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let deadline = start + START_WITHIN;
        let mut sender = None;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("petstore-server exited ({status}): {}", self.log_tail());
            }
            if sender.is_none() {
                sender = crate::load::http1_connect::<Empty<Bytes>>(self.http)
                    .await
                    .ok();
            }
            if let Some(s) = sender.as_mut() {
                match readyz(s, self.http).await {
                    Ok(true) => return Ok(start.elapsed()),
                    Ok(false) => {}
                    Err(_) => sender = None,
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "petstore-server was not ready within {START_WITHIN:?}: {}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stops the server with SIGTERM (a graceful shutdown, as Ctrl-C) and waits for it
    /// to exit; one still running after 30 s is killed.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_) => {
                self.child.kill().await.ok();
                bail!("petstore-server did not stop within 30 s of SIGTERM")
            }
        }
    }

    /// The last lines of the server's log, for an error message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n");
        format!("(log {}) {tail}", self.log.display())
    }
}

/// Whether `GET /readyz` answers 200 on this connection.
async fn readyz(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
) -> anyhow::Result<bool> {
    sender.ready().await?;
    let req = http::Request::get("/readyz")
        .header(http::header::HOST, addr.to_string())
        .body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    let ok = resp.status() == http::StatusCode::OK;
    resp.into_body().collect().await?;
    Ok(ok)
}
