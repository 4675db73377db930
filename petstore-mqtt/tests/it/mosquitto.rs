//! Against a real Mosquitto: the CI broker (`PETSTORE_TEST_MOSQUITTO_URL`) and
//! brokers these tests spawn themselves (`PETSTORE_TEST_MOSQUITTO_BIN`, default
//! `/usr/sbin/mosquitto`). Each test skips with a message when its broker is absent.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use petstore_mqtt::{Bridge, MqttConfig, StartFrom};

use crate::embedded::see_every_offset;
use crate::scenarios::{self, start_bridge};
use crate::support::*;

#[tokio::test]
async fn events_reach_every_topic() {
    let Some(url) = mosquitto_url() else { return };
    scenarios::events_reach_every_topic(&url).await;
}

#[tokio::test]
async fn retained_messages_reach_a_late_subscriber() {
    let Some(url) = mosquitto_url() else { return };
    scenarios::retained_messages_reach_a_late_subscriber(&url).await;
}

#[tokio::test]
async fn commands_reply_on_the_response_topic() {
    let Some(url) = mosquitto_url() else { return };
    scenarios::commands_reply_on_the_response_topic(&url).await;
}

#[tokio::test]
async fn malformed_commands_get_an_error_reply_and_change_nothing() {
    let Some(url) = mosquitto_url() else { return };
    scenarios::malformed_commands_get_an_error_reply_and_change_nothing(&url).await;
}

/// A Mosquitto process this test controls.
struct Mosquitto {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Mosquitto {
    fn binary() -> Option<PathBuf> {
        let bin = std::env::var_os("PETSTORE_TEST_MOSQUITTO_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"));
        if bin.exists() {
            Some(bin)
        } else {
            eprintln!(
                "skipping: no mosquitto binary at {} (install Debian's `mosquitto` or set PETSTORE_TEST_MOSQUITTO_BIN)",
                bin.display()
            );
            None
        }
    }

    /// Starts a persistent broker on a free loopback port; `extra` is appended to
    /// its configuration.
    fn start(bin: PathBuf, extra: &str) -> Mosquitto {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "petstore-mqtt-it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = format!(
            "listener {port} 127.0.0.1\n\
             persistence true\n\
             persistence_location {dir}/\n\
             persistence_file mosquitto.db\n\
             max_queued_messages 100000\n\
             user root\n\
             log_dest stderr\n\
             {extra}\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
        let mut m = Mosquitto {
            bin,
            dir,
            port,
            child: None,
        };
        m.spawn();
        m
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("mosquitto.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.path("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            if Instant::now() > deadline {
                panic!("mosquitto does not listen: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("mosquitto.log")).unwrap_or_default()
    }

    /// Stops the broker with SIGTERM (it saves its persistent sessions) and waits.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Stops and starts again on the same port with the same persistence file.
    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_burst_loses_no_event() {
    let Some(bin) = Mosquitto::binary() else {
        return;
    };
    let mut broker = Mosquitto::start(bin, "allow_anonymous true");
    let url = broker.url();
    let store = seeded_store().await;
    let p = unique_prefix("restart");
    // A device with a persistent session: the broker keeps its subscription and
    // queues messages for it across its own restart.
    let mut sub = Client::persistent(&url, &format!("{}sub", p.trim_end_matches('/'))).await;
    sub.subscribe(&format!("{p}events/#")).await;
    let bridge = start_bridge(
        &store,
        MqttConfig::default()
            .url(&url)
            .client_id(format!("{}b", p.trim_end_matches('/')))
            .topic_prefix(&p)
            .start_from(StartFrom::Head)
            .queue_len(8)
            .reconnect_delay(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .await;
    let start = store.head().await.unwrap();
    for i in 0..150 {
        create_pet(&store, &format!("Burst{i}")).await;
    }
    let before = wait_status(&bridge, "20 events acknowledged", |s| {
        s.last_acked.is_some_and(|a| a.offset >= start.offset + 20)
    })
    .await;
    let store2 = store.clone();
    let writer = tokio::spawn(async move {
        for i in 150..300 {
            create_pet(&store2, &format!("Burst{i}")).await;
        }
    });
    // Restart the broker while the writer is still appending events.
    let _broker = tokio::task::spawn_blocking(move || {
        broker.restart();
        broker
    })
    .await
    .unwrap();
    writer.await.unwrap();
    let head = store.head().await.unwrap();
    let status = wait_status(&bridge, "caught up after the restart", |s| {
        s.last_acked == Some(head)
    })
    .await;
    assert!(status.connects >= 2, "{status:?}");
    let resumed = status.resumed_from.unwrap();
    assert!(
        resumed.offset >= before.last_acked.unwrap().offset && resumed.offset < head.offset,
        "resumed from {resumed} (acked before: {before:?}, head {head})"
    );
    let expected: BTreeSet<u64> = (start.offset + 1..=head.offset).collect();
    see_every_offset(&mut sub, &expected).await;
    bridge.shutdown().await;
}

#[tokio::test]
async fn broker_credentials_are_used() {
    let Some(bin) = Mosquitto::binary() else {
        return;
    };
    let passwd = bin
        .parent()
        .and_then(Path::parent)
        .map(|usr| usr.join("bin/mosquitto_passwd"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("mosquitto_passwd"));
    let dir = std::env::temp_dir().join(format!("petstore-mqtt-it-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("passwd");
    let made = Command::new(&passwd)
        .args(["-b", "-c"])
        .arg(&file)
        .args(["bridge", "s3cret"])
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipping: mosquitto_passwd is not available");
        return;
    }
    let broker = Mosquitto::start(
        bin,
        &format!("allow_anonymous false\npassword_file {}", file.display()),
    );
    let store = seeded_store().await;
    let wrong = Bridge::start(
        store.clone(),
        MqttConfig::default()
            .url(broker.url())
            .client_id("pw-wrong")
            .credentials("bridge", "nope")
            .reconnect_delay(Duration::from_millis(50), Duration::from_millis(100)),
        tokio_util::sync::CancellationToken::new(),
    )
    .unwrap();
    let status = wait_status(&wrong, "a refusal", |s| s.last_error.is_some()).await;
    assert!(!status.connected && status.connects == 0, "{status:?}");
    drop(wrong);
    let right = start_bridge(
        &store,
        MqttConfig::default()
            .url(broker.url())
            .client_id("pw-right")
            .credentials("bridge", "s3cret"),
    )
    .await;
    assert!(right.status().connected);
    right.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Makes a CA and a server certificate for 127.0.0.1 with the openssl CLI.
fn make_certs(dir: &Path) -> bool {
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let steps: [&[&str]; 4] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
            "-days",
            "2",
            "-subj",
            "/CN=some-other-ca",
        ],
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=petstore-test-ca",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    ];
    steps.iter().all(|args| {
        Command::new("openssl")
            .args(*args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[tokio::test]
async fn mqtts_with_a_private_ca() {
    let Some(bin) = Mosquitto::binary() else {
        return;
    };
    let certs = std::env::temp_dir().join(format!("petstore-mqtt-it-tls-{}", std::process::id()));
    std::fs::create_dir_all(&certs).unwrap();
    if !make_certs(&certs) {
        eprintln!("skipping: the openssl CLI cannot make test certificates");
        return;
    }
    let broker = Mosquitto::start(
        bin,
        &format!(
            "allow_anonymous true\ncafile {0}/ca.pem\ncertfile {0}/server.pem\nkeyfile {0}/server.key",
            certs.display()
        ),
    );
    let tls_url = format!("mqtts://127.0.0.1:{}", broker.port);
    let store = seeded_store().await;
    // A CA that did not sign the server's certificate: no connection.
    let untrusted = Bridge::start(
        store.clone(),
        MqttConfig::default()
            .url(&tls_url)
            .client_id("tls-untrusted")
            .ca_file(certs.join("other.pem")),
        tokio_util::sync::CancellationToken::new(),
    )
    .unwrap();
    let status = wait_status(&untrusted, "a TLS failure", |s| s.last_error.is_some()).await;
    assert!(!status.connected && status.connects == 0, "{status:?}");
    let error = status.last_error.unwrap();
    assert!(
        error.contains("TLS") || error.contains("ertificate"),
        "{error}"
    );
    drop(untrusted);
    let bridge = start_bridge(
        &store,
        MqttConfig::default()
            .url(&tls_url)
            .client_id("tls-bridge")
            .ca_file(certs.join("ca.pem")),
    )
    .await;
    assert!(bridge.status().connected);
    bridge.shutdown().await;
    let _ = std::fs::remove_dir_all(&certs);
}
