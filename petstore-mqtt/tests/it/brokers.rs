//! The brokers the tests run against: the embedded rumqttd (one per test, bound to the
//! test's store), the CI's open Mosquitto (`PETSTORE_TEST_MOSQUITTO_URL`), and
//! Mosquitto processes the tests start themselves (`PETSTORE_TEST_MOSQUITTO_BIN`,
//! default `/usr/sbin/mosquitto`), among them one locked with the shipped
//! configuration (`petstore-mqtt/mosquitto/`).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use petstore_core::PetStore;
use petstore_mqtt::MqttConfig;
use petstore_mqtt::broker::{BrokerConfig, EmbeddedBroker};

use crate::support::WAIT;

/// Which broker a scenario runs against.
pub(crate) enum Target {
    /// A fresh embedded broker for the scenario's store.
    Embedded,
    /// A shared broker that lets anyone do anything (the CI's Mosquitto).
    Open(String),
    /// A fresh Mosquitto with the shipped configuration.
    Locked(PathBuf),
}

impl Target {
    /// The CI's open Mosquitto, if `PETSTORE_TEST_MOSQUITTO_URL` names one.
    pub(crate) fn open() -> Option<Target> {
        petstore_core::testing::env_or_skip(
            "PETSTORE_TEST_MOSQUITTO_URL",
            "CI sets it to a Mosquitto broker, e.g. mqtt://127.0.0.1:18830",
        )
        .map(Target::Open)
    }

    /// A Mosquitto of our own with the shipped configuration, if the broker and
    /// `mosquitto_passwd` are here.
    pub(crate) fn locked() -> Option<Target> {
        let bin = Mosquitto::binary()?;
        Mosquitto::passwd_tool(&bin)?;
        Some(Target::Locked(bin))
    }

    /// A broker for `store`'s bridge. `prefix` is used where the broker allows it
    /// (shared brokers need a prefix per test); the locked Mosquitto's ACL is for
    /// `petstore/`.
    pub(crate) async fn broker(&self, store: &PetStore, prefix: &str) -> Broker {
        match self {
            Target::Embedded => {
                let embedded = EmbeddedBroker::start(
                    store.clone(),
                    BrokerConfig::default()
                        .addr("127.0.0.1:0".parse().unwrap())
                        .topic_prefix(prefix),
                )
                .await
                .expect("embedded broker starts");
                Broker {
                    url: embedded.url(),
                    prefix: prefix.to_owned(),
                    bridge: embedded.bridge_config(),
                    embedded: Some(embedded),
                    mosquitto: None,
                }
            }
            Target::Open(url) => Broker {
                url: url.clone(),
                prefix: prefix.to_owned(),
                bridge: MqttConfig::default().url(url).topic_prefix(prefix),
                embedded: None,
                mosquitto: None,
            },
            Target::Locked(bin) => {
                let (mosquitto, password) = Mosquitto::locked(bin.clone());
                Broker {
                    url: mosquitto.url(),
                    prefix: "petstore/".to_owned(),
                    bridge: MqttConfig::default()
                        .url(mosquitto.url())
                        .credentials("petstore-bridge", password),
                    embedded: None,
                    mosquitto: Some(mosquitto),
                }
            }
        }
    }
}

/// A broker a test uses.
pub(crate) struct Broker {
    /// Where clients connect.
    pub(crate) url: String,
    /// The topic prefix of this test.
    pub(crate) prefix: String,
    bridge: MqttConfig,
    pub(crate) embedded: Option<EmbeddedBroker>,
    pub(crate) mosquitto: Option<Mosquitto>,
}

impl Broker {
    /// The bridge's settings for this broker and prefix.
    pub(crate) fn bridge_config(&self) -> MqttConfig {
        self.bridge.clone().topic_prefix(&self.prefix)
    }

    /// `{prefix}{rest}`.
    pub(crate) fn topic(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// A client id no other test uses (brokers may be shared).
    pub(crate) fn client_id(&self, name: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "it-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// A Mosquitto process a test controls.
pub(crate) struct Mosquitto {
    bin: PathBuf,
    dir: PathBuf,
    pub(crate) port: u16,
    child: Option<Child>,
}

impl Mosquitto {
    /// The broker binary (`PETSTORE_TEST_MOSQUITTO_BIN`, default
    /// `/usr/sbin/mosquitto`), or `None` after a skip.
    pub(crate) fn binary() -> Option<PathBuf> {
        let bin = std::env::var_os("PETSTORE_TEST_MOSQUITTO_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"));
        petstore_core::testing::program_or_skip(
            &bin,
            "install Debian's `mosquitto` or set PETSTORE_TEST_MOSQUITTO_BIN",
        )
    }

    /// `mosquitto_passwd`, next to the broker or on the `PATH`, or `None` after a skip.
    pub(crate) fn passwd_tool(bin: &Path) -> Option<PathBuf> {
        bin.parent()
            .and_then(Path::parent)
            .map(|usr| usr.join("bin/mosquitto_passwd"))
            .filter(|p| p.is_file())
            .or_else(|| {
                petstore_core::testing::program_or_skip(
                    "mosquitto_passwd",
                    "it comes with Debian's `mosquitto`",
                )
            })
    }

    fn new_dir() -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "petstore-mqtt-it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn free_port() -> u16 {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Starts a persistent broker on a free loopback port; `extra` is appended to
    /// its configuration.
    pub(crate) fn start(bin: PathBuf, extra: &str) -> Mosquitto {
        let dir = Self::new_dir();
        let port = Self::free_port();
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

    /// Starts a broker with the shipped `petstore.conf` and `petstore.acl` (paths
    /// moved into a temporary directory, the listener on a free loopback port) and a
    /// password file for the bridge; returns it with the bridge's password.
    pub(crate) fn locked(bin: PathBuf) -> (Mosquitto, String) {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("mosquitto");
        let dir = Self::new_dir();
        let port = Self::free_port();
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let passwd = Self::passwd_tool(&bin).expect("Target::locked found mosquitto_passwd");
        let made = Command::new(passwd)
            .args(["-b", "-c"])
            .arg(dir.join("petstore.passwd"))
            .args(["petstore-bridge", &password])
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "mosquitto_passwd creates the bridge's account"
        );
        std::fs::copy(shipped.join("petstore.acl"), dir.join("petstore.acl")).unwrap();
        let shipped_conf = std::fs::read_to_string(shipped.join("petstore.conf")).unwrap();
        let conf = shipped_conf
            .replace("/etc/mosquitto/", &format!("{}/", dir.display()))
            .replace("listener 1883\n", &format!("listener {port} 127.0.0.1\n"));
        assert!(
            conf.contains(&format!("listener {port} 127.0.0.1")),
            "the shipped configuration has a `listener 1883` line: {shipped_conf}"
        );
        std::fs::write(
            dir.join("mosquitto.conf"),
            format!("{conf}\nuser root\nlog_dest stderr\nlog_type all\n"),
        )
        .unwrap();
        let mut m = Mosquitto {
            bin,
            dir,
            port,
            child: None,
        };
        m.spawn();
        (m, password)
    }

    pub(crate) fn url(&self) -> String {
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

    pub(crate) fn log(&self) -> String {
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
    pub(crate) fn restart(&mut self) {
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
