//! Test clients, brokers and helpers.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use petstore_core::{NewPet, Pet, PetStore, Principal, seed};
use petstore_mqtt::broker::EmbeddedBroker;
use petstore_mqtt::{BridgeHandle, BridgeStatus};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Generous bound for anything that should happen "soon".
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// The embedded broker shared by the tests of this binary (rumqttd cannot stop).
pub(crate) fn embedded() -> &'static EmbeddedBroker {
    static BROKER: OnceLock<EmbeddedBroker> = OnceLock::new();
    BROKER.get_or_init(|| {
        EmbeddedBroker::start("127.0.0.1:0".parse().unwrap()).expect("embedded broker starts")
    })
}

/// The external Mosquitto of CI, if any.
pub(crate) fn mosquitto_url() -> Option<String> {
    match std::env::var("PETSTORE_TEST_MOSQUITTO_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipping: PETSTORE_TEST_MOSQUITTO_URL is not set (CI sets it to a Mosquitto broker, e.g. mqtt://127.0.0.1:18830)"
            );
            None
        }
    }
}

/// A topic prefix no other test uses (brokers are shared, retained messages stay).
pub(crate) fn unique_prefix(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "it-{}-{}-{name}/",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (host, port) = rest.rsplit_once(':').expect("url with a port");
    (host.to_owned(), port.trim_end_matches('/').parse().unwrap())
}

/// A seeded in-memory store.
pub(crate) async fn seeded_store() -> PetStore {
    let store = PetStore::in_memory();
    seed::seed(&store).await.unwrap();
    store
}

pub(crate) fn admin() -> Principal {
    Principal::system("it-admin")
}

pub(crate) async fn create_pet(store: &PetStore, name: &str) -> Pet {
    let mut new: NewPet = seed::sample_pets().remove(0);
    new.name = name.to_owned();
    new.status = None;
    store.create_pet(&admin(), new).await.unwrap()
}

/// One received MQTT message.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) retain: bool,
    pub(crate) props: PublishProperties,
}

impl Msg {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {:?}", self.topic, self.payload))
    }

    pub(crate) fn user_property(&self, name: &str) -> Option<&str> {
        self.props
            .user_properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An MQTT 5 test client whose event loop runs in a task.
pub(crate) struct Client {
    pub(crate) client: AsyncClient,
    messages: mpsc::UnboundedReceiver<Msg>,
    subacks: mpsc::UnboundedReceiver<()>,
    task: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Connects with a clean session.
    pub(crate) async fn connect(url: &str, id: &str) -> Client {
        Self::connect_with(url, id, |_| {}).await
    }

    /// A persistent session (clean start off, one-hour expiry) that reconnects by
    /// itself after broker restarts.
    pub(crate) async fn persistent(url: &str, id: &str) -> Client {
        Self::connect_with(url, id, |o| {
            o.set_clean_start(false);
            o.set_session_expiry_interval(Some(3600));
        })
        .await
    }

    pub(crate) async fn connect_with(
        url: &str,
        id: &str,
        tune: impl FnOnce(&mut MqttOptions),
    ) -> Client {
        let (host, port) = host_port(url);
        let mut options = MqttOptions::new(id, host, port);
        options.set_max_packet_size(Some(1024 * 1024));
        tune(&mut options);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (msg_tx, messages) = mpsc::unbounded_channel();
        let (sub_tx, subacks) = mpsc::unbounded_channel();
        let (conn_tx, mut connected) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = conn_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = sub_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = msg_tx.send(Msg {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload,
                            retain: p.retain,
                            props: p.properties.unwrap_or_default(),
                        });
                    }
                    Ok(_) => {}
                    // Broker restarts: keep trying, like a device would.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        timeout(WAIT, connected.recv())
            .await
            .expect("test client connects")
            .unwrap();
        Client {
            client,
            messages,
            subacks,
            task,
        }
    }

    /// Subscribes and waits for the SUBACK.
    pub(crate) async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        timeout(WAIT, self.subacks.recv())
            .await
            .expect("SUBACK")
            .unwrap();
    }

    /// The next message, within `WAIT`.
    pub(crate) async fn next(&mut self) -> Msg {
        timeout(WAIT, self.messages.recv())
            .await
            .expect("a message within the timeout")
            .expect("client running")
    }

    /// The next message if one comes before `deadline`.
    pub(crate) async fn next_before(&mut self, deadline: tokio::time::Instant) -> Option<Msg> {
        tokio::time::timeout_at(deadline, self.messages.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next message on `topic`, skipping others.
    pub(crate) async fn next_on(&mut self, topic: &str) -> Msg {
        timeout(WAIT, async {
            loop {
                let m = self.messages.recv().await.expect("client running");
                if m.topic == topic {
                    return m;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no message on {topic}"))
    }

    /// Publishes a command with a response topic and correlation data, and returns the
    /// reply's JSON. The client must be subscribed to `response_topic`.
    pub(crate) async fn request(
        &mut self,
        topic: &str,
        payload: &str,
        response_topic: &str,
        correlation: &[u8],
    ) -> (Value, Msg) {
        let props = PublishProperties {
            response_topic: Some(response_topic.to_owned()),
            correlation_data: Some(Bytes::copy_from_slice(correlation)),
            ..PublishProperties::default()
        };
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload.to_owned(), props)
            .await
            .unwrap();
        let reply = self.next_on(response_topic).await;
        (reply.json(), reply)
    }
}

/// Waits until the bridge status satisfies `pred`.
pub(crate) async fn wait_status(
    bridge: &BridgeHandle,
    what: &str,
    pred: impl FnMut(&BridgeStatus) -> bool,
) -> BridgeStatus {
    match timeout(WAIT, bridge.wait_for(pred)).await {
        Ok(status) => status,
        Err(_) => panic!("bridge never got {what}: {:?}", bridge.status()),
    }
}

/// A TCP proxy the tests can cut, to make a client's connection vanish.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start(listen: SocketAddr, target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy { addr, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// Drops the listener and every connection (sockets close: the broker sees the
    /// client vanish without DISCONNECT).
    pub(crate) async fn cut(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
