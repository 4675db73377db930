//! The server binary as a child process on free ports: its addresses and development
//! token from the banner, its log lines (stderr), and its resident memory.

use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{until, within};

/// A running `petstore-server` process (killed when dropped).
pub(crate) struct Binary {
    child: Child,
    /// The HTTP base URL (`http://127.0.0.1:port`).
    pub(crate) http: String,
    /// The gRPC address (`127.0.0.1:port`).
    pub(crate) grpc: String,
    /// The development token (every scope).
    pub(crate) token: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Binary {
    /// Starts the binary with `args` on free loopback ports, without MQTT, logging at
    /// `info`; returns once it printed its banner.
    pub(crate) async fn start(args: &[&str]) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_petstore-server"))
            .args([
                "--http-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
                "--no-mqtt",
            ])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the server binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let lines = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                lines.lock().unwrap_or_else(PoisonError::into_inner).push(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut banner = Vec::new();
        within("the server's banner", async {
            while let Some(line) = stdout.next_line().await.expect("stdout") {
                let done = line.contains("Press Ctrl-C");
                banner.push(line);
                if done {
                    break;
                }
            }
        })
        .await;
        // Keep reading stdout so that the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let word_after = |label: &str| -> String {
            banner
                .iter()
                .find_map(|l| {
                    let rest = l.trim_start().strip_prefix(label)?;
                    rest.split_whitespace().next().map(str::to_owned)
                })
                .unwrap_or_else(|| panic!("no `{label}` line in the banner: {banner:?}"))
        };
        let rest = word_after("REST");
        let http = rest.trim_end_matches("/v1/pets").to_owned();
        let grpc = word_after("gRPC").trim_start_matches("http://").to_owned();
        let token = banner
            .iter()
            .skip_while(|l| !l.starts_with("Development token"))
            .nth(1)
            .map(|l| l.trim().to_owned())
            .expect("the development token");
        Binary {
            child,
            http,
            grpc,
            token,
            log,
        }
    }

    /// The log lines (stderr) that contain `needle`.
    pub(crate) fn logged(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits until a log line contains `needle`.
    pub(crate) async fn until_logged(&self, needle: &str) {
        until(&format!("a log line with `{needle}`"), || {
            !self.logged(needle).is_empty()
        })
        .await;
    }

    /// The process's resident memory (`VmRSS`), in bytes.
    pub(crate) fn rss(&self) -> u64 {
        let pid = self.child.id().expect("the server runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }
}
