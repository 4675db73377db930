//! The server binary as a child process on free ports: its HTTP address from the
//! banner, its log lines (stderr), and its resident memory.

use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{banner_address, read_banner, until};

/// A running `petstore-server` process (killed when dropped).
pub(crate) struct Binary {
    child: Child,
    /// The HTTP base URL (`http://127.0.0.1:port`).
    pub(crate) http: String,
    /// The gRPC base URL (`http://127.0.0.1:port`).
    pub(crate) grpc: String,
    /// The development token from the banner.
    pub(crate) dev_token: String,
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
                lines
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
        let banner = read_banner(child.stdout.take().expect("stdout")).await;
        let http = banner_address(&banner, "REST")
            .unwrap_or_else(|| panic!("no REST line in the banner: {banner:?}"))
            .trim_end_matches("/v1/pets")
            .to_owned();
        let grpc = banner_address(&banner, "gRPC")
            .unwrap_or_else(|| panic!("no gRPC line in the banner: {banner:?}"));
        let dev_token = banner
            .iter()
            .skip_while(|l| !l.starts_with("Development token"))
            .nth(1)
            .map(|l| l.trim().to_owned())
            .unwrap_or_else(|| panic!("no development token in the banner: {banner:?}"));
        Binary {
            child,
            http,
            grpc,
            dev_token,
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

    /// Sends SIGINT (Ctrl-C) and waits for the process to exit.
    pub(crate) async fn interrupt(mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -INT failed");
        super::within("the server's exit after SIGINT", self.child.wait())
            .await
            .expect("waiting for the server")
    }

    /// The process's resident memory (`VmRSS`), in bytes.
    pub(crate) fn rss(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// The highest resident memory since the start or the last
    /// [`Binary::reset_peak_rss`] (`VmHWM`), in bytes.
    pub(crate) fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// Starts measuring the peak resident memory afresh (`5` to `clear_refs`).
    pub(crate) fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5")
            .expect("resetting the peak RSS (Linux 4.0+, same user)");
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("the server runs")
    }

    /// A `kB` line of `/proc/<pid>/status`, in bytes.
    fn status_bytes(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"));
        kib * 1024
    }
}
