//! An embedded MQTT broker (rumqttd) for the example server and tests, behind the
//! `broker` cargo feature, locked the way the Pet Store's contract asks.
//!
//! rumqttd serves MQTT 3.1.1 and MQTT 5 on separate listeners and has an
//! authentication hook but no topic access control. [`EmbeddedBroker`] runs both
//! listeners on free loopback ports that accept only its own front and its bridge
//! (each with a random secret), and puts one address in front of them. The front reads
//! each client's packets with rumqttc's MQTT codec:
//!
//! - CONNECT: any user name with a JWT as the password (verified by the
//!   [`PetStore`]), or no password (anonymous); a bad token, a client id the bridge
//!   uses, or a Last Will on a topic the client may not publish to is refused. A
//!   session is resumed only by the identity that created it.
//! - SUBSCRIBE: every filter must be readable by the client (pets, inventory and
//!   presence as anonymous HTTP callers may read them; chat with a token; an order's
//!   status for its customer; order feeds for `admin`; replies under
//!   `{prefix}replies/{its client id}/`); otherwise the whole SUBSCRIBE is refused
//!   (SUBACK failure for every filter).
//! - PUBLISH: only `{prefix}commands/...`, not retained, with a response topic (if
//!   any) under `{prefix}replies/{its client id}`. MQTT 5 clients get PUBACK / PUBREC
//!   "not authorized" (QoS 0 is dropped); MQTT 3.1.1 has no refusal, so the
//!   connection is closed (QoS 0 is dropped).
//!
//! The bridge authenticates with [`EmbeddedBroker::bridge_config`]'s credentials and
//! is not filtered; a client id it has used is never accepted from anyone else.
//!
//! Limitations (rumqttd 0.20): the broker cannot be stopped (rumqttd lives until the
//! process exits; the front until the tokio runtime it was started on ends), it cannot
//! report the ports it bound (the internal ports are picked by binding port 0 and
//! releasing it just before rumqttd binds them), and there is no persistence.

mod access;
mod front;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use petstore_core::PetStore;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use subtle::ConstantTimeEq;

use crate::config::{MqttConfig, Password};

/// How long [`EmbeddedBroker::start`] waits for rumqttd to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest MQTT packet the broker accepts.
const MAX_PACKET: usize = 1024 * 1024;
/// User name of the bridge's credentials.
const BRIDGE_USER: &str = "petstore-bridge";
/// User name the front presents to rumqttd for every other client.
const FRONT_USER: &str = "petstore-front";

/// Settings of the [`EmbeddedBroker`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// The address every client connects to (`127.0.0.1:1883` by default; port 0
    /// picks a free port).
    pub addr: SocketAddr,
    /// The topic prefix the policy protects (`petstore/` by default): the bridge's
    /// [`MqttConfig::topic_prefix`].
    pub topic_prefix: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 1883)),
            topic_prefix: MqttConfig::default().topic_prefix,
        }
    }
}

impl BrokerConfig {
    /// Sets [`BrokerConfig::addr`].
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Sets [`BrokerConfig::topic_prefix`].
    pub fn topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.topic_prefix = prefix.into();
        self
    }
}

/// What the front, rumqttd's authentication hook and the handle share.
struct Shared {
    service: PetStore,
    /// The prefix with one trailing `/` (or empty).
    prefix: String,
    bridge_secret: String,
    front_secret: String,
    /// Client ids the bridge has connected with: nobody else may use them.
    bridge_ids: Mutex<HashSet<String>>,
    /// The subject (None: anonymous) that last connected with each client id, so that
    /// nobody else resumes its session.
    sessions: Mutex<HashMap<String, Option<String>>>,
}

/// Client ids whose session owner the front remembers; beyond it, new ids get a
/// clean session (safe, not persistent).
const MAX_SESSIONS: usize = 100_000;

impl Shared {
    fn is_bridge(&self, username: &str, password: &str) -> bool {
        username == BRIDGE_USER
            && bool::from(password.as_bytes().ct_eq(self.bridge_secret.as_bytes()))
    }

    fn is_front(&self, username: &str, password: &str) -> bool {
        username == FRONT_USER
            && bool::from(password.as_bytes().ct_eq(self.front_secret.as_bytes()))
    }

    fn is_bridge_id(&self, client_id: &str) -> bool {
        lock(&self.bridge_ids).contains(client_id)
    }

    /// rumqttd's authentication hook: only the front and the bridge get in, and the
    /// front never with one of the bridge's client ids.
    fn admit(&self, client_id: &str, username: &str, password: &str) -> bool {
        if self.is_bridge(username, password) {
            if !client_id.is_empty() {
                lock(&self.bridge_ids).insert(client_id.to_owned());
            }
            true
        } else {
            self.is_front(username, password) && !self.is_bridge_id(client_id)
        }
    }

    /// Whether `owner` may resume the session of `client_id`; records `owner` as the
    /// session's owner either way.
    fn may_resume(&self, client_id: &str, owner: Option<&str>) -> bool {
        let mut sessions = lock(&self.sessions);
        let full = sessions.len() >= MAX_SESSIONS;
        match sessions.get_mut(client_id) {
            Some(previous) => {
                let same = previous.as_deref() == owner;
                *previous = owner.map(str::to_owned);
                same
            }
            // rumqttd has no session for an id the front never saw.
            None if !full => {
                sessions.insert(client_id.to_owned(), owner.map(str::to_owned));
                true
            }
            None => false,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded sets stay consistent whatever panicked while holding them.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A running embedded broker.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use petstore_mqtt::broker::{BrokerConfig, EmbeddedBroker};
///
/// let store = petstore_core::PetStore::in_memory();
/// let broker = EmbeddedBroker::start(store.clone(), BrokerConfig::default()).await?;
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// let bridge = petstore_mqtt::Bridge::start(store, broker.bridge_config(), shutdown)
///     .map_err(std::io::Error::other)?;
/// println!("MQTT broker on {}", broker.url());
/// # drop(bridge); Ok(()) }
/// ```
#[derive(Clone)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    v4_addr: SocketAddr,
    v5_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.addr)
            .field("v4_addr", &self.v4_addr)
            .field("v5_addr", &self.v5_addr)
            .field("topic_prefix", &self.shared.prefix)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Starts the broker for `store` (whose tokens clients present and whose orders
    /// decide who may follow them) and returns once it accepts connections. The front
    /// runs on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn start(store: PetStore, config: BrokerConfig) -> io::Result<Self> {
        let front = tokio::net::TcpListener::bind(config.addr).await?;
        let addr = front.local_addr()?;
        let prefix = MqttConfig::default()
            .topic_prefix(&config.topic_prefix)
            .prefix();
        let shared = Arc::new(Shared {
            service: store,
            prefix,
            bridge_secret: secret(),
            front_secret: secret(),
            bridge_ids: Mutex::default(),
            sessions: Mutex::default(),
        });
        let v4_addr = free_loopback_port()?;
        let v5_addr = free_loopback_port()?;
        let rumqttd = broker_config(v4_addr, v5_addr, &shared);
        std::thread::Builder::new()
            .name("petstore-mqtt-broker".to_owned())
            .spawn(move || {
                // Blocks for the life of the process.
                if let Err(e) = Broker::new(rumqttd).start() {
                    tracing::error!(error = %e, "embedded MQTT broker stopped");
                }
            })?;
        wait_until_listening(v4_addr).await?;
        wait_until_listening(v5_addr).await?;
        tokio::spawn(front::serve(front, v4_addr, v5_addr, Arc::clone(&shared)));
        tracing::info!(%addr, %v4_addr, %v5_addr, "embedded MQTT broker listening");
        Ok(Self {
            addr,
            v4_addr,
            v5_addr,
            shared,
        })
    }

    /// The address for every client (MQTT 3.1.1 and 5).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://` URL of [`EmbeddedBroker::addr`], for
    /// [`MqttConfig::url`](crate::MqttConfig::url).
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// rumqttd's own MQTT 3.1.1 listener (loopback; the bridge's credentials only).
    pub fn v4_addr(&self) -> SocketAddr {
        self.v4_addr
    }

    /// rumqttd's own MQTT 5 listener (loopback; the bridge's credentials only): the
    /// bridge may connect here to skip the front's hop.
    pub fn v5_addr(&self) -> SocketAddr {
        self.v5_addr
    }

    /// The user name and password of the bridge: publish anywhere, read commands.
    /// Random for every broker; never give them to anything but the bridge.
    pub fn bridge_credentials(&self) -> (String, Password) {
        (
            BRIDGE_USER.to_owned(),
            Password::new(self.shared.bridge_secret.clone()),
        )
    }

    /// The bridge's settings for this broker: its URL, credentials and topic prefix,
    /// and no event user properties (rumqttd 0.20 panics forwarding MQTT 5 properties
    /// to MQTT 3.1.1 subscribers).
    pub fn bridge_config(&self) -> MqttConfig {
        let (user, password) = self.bridge_credentials();
        MqttConfig::default()
            .url(self.url())
            .credentials(user, password.expose())
            .topic_prefix(self.shared.prefix.clone())
            .event_properties(false)
    }
}

fn free_loopback_port() -> io::Result<SocketAddr> {
    // rumqttd cannot report what it bound: take a free port now and hand it over.
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

fn broker_config(v4: SocketAddr, v5: SocketAddr, shared: &Arc<Shared>) -> Config {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_PACKET,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let hook = Arc::clone(shared);
    connections.set_auth_handler(move |client_id: String, user: String, password: String| {
        let admitted = hook.admit(&client_id, &user, &password);
        async move { admitted }
    });
    let server = |name: &str, listen| {
        HashMap::from([(
            name.to_owned(),
            ServerSettings {
                name: name.to_owned(),
                listen,
                tls: None,
                next_connection_delay_ms: 1,
                connections: connections.clone(),
            },
        )])
    };
    Config {
        id: 0,
        // rumqttd's defaults are all zeros, which accept nothing.
        router: RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 200,
            // rumqttd keeps each subscribed filter's messages in memory up to
            // size x count; 10 MiB x 10 let one `#` subscriber hold ~235 MiB under load.
            max_segment_size: 1024 * 1024,
            max_segment_count: 4,
            ..RouterConfig::default()
        },
        v4: Some(server("v4", v4)),
        v5: Some(server("v5", v5)),
        ..Config::default()
    }
}

async fn wait_until_listening(addr: SocketAddr) -> io::Result<()> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the embedded MQTT broker does not listen on {addr}: {e}"),
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}
