//! Test clients and helpers.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use petstore_core::{NewPet, Pet, PetStore, Principal, Scope, seed};
use petstore_mqtt::{BridgeHandle, BridgeStatus};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, PublishProperties, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Generous bound for anything that should happen "soon".
pub(crate) const WAIT: Duration = Duration::from_secs(15);

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

/// A token of `store` for `subject` with `scopes`.
pub(crate) fn token(store: &PetStore, subject: &str, scopes: &[Scope]) -> String {
    store
        .tokens()
        .issue(subject, scopes.iter().copied())
        .unwrap()
        .access_token
}

/// An `admin` token of `store`.
pub(crate) fn admin_token(store: &PetStore) -> String {
    token(store, "it-admin", &[Scope::Admin])
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
    /// The client id it connected with.
    pub(crate) id: String,
    messages: mpsc::UnboundedReceiver<Msg>,
    subacks: mpsc::UnboundedReceiver<Vec<SubscribeReasonCode>>,
    pubacks: mpsc::UnboundedReceiver<PubAckReason>,
    task: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Connects anonymously with a clean session.
    pub(crate) async fn connect(url: &str, id: &str) -> Client {
        Self::connect_with(url, id, |_| {}).await
    }

    /// Connects with `token` as the password.
    pub(crate) async fn connect_as(url: &str, id: &str, token: &str) -> Client {
        Self::connect_with(url, id, |o| {
            o.set_credentials("it-user", token);
        })
        .await
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

    /// Connects (reconnecting by itself after broker restarts, like a device) and
    /// panics unless the broker accepts.
    pub(crate) async fn connect_with(
        url: &str,
        id: &str,
        tune: impl FnOnce(&mut MqttOptions),
    ) -> Client {
        match Self::start(url, id, tune, true).await {
            Ok(client) => client,
            Err(e) => panic!("{id} cannot connect: {e}"),
        }
    }

    /// One connection attempt: the client, or why the broker refused it (a CONNACK
    /// code, or the connection closed).
    pub(crate) async fn try_connect(
        url: &str,
        id: &str,
        tune: impl FnOnce(&mut MqttOptions),
    ) -> Result<Client, String> {
        Self::start(url, id, tune, false).await
    }

    async fn start(
        url: &str,
        id: &str,
        tune: impl FnOnce(&mut MqttOptions),
        reconnect: bool,
    ) -> Result<Client, String> {
        let (host, port) = host_port(url);
        let mut options = MqttOptions::new(id, host, port);
        options.set_max_packet_size(Some(1024 * 1024));
        tune(&mut options);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (msg_tx, messages) = mpsc::unbounded_channel();
        let (sub_tx, subacks) = mpsc::unbounded_channel();
        let (pub_tx, pubacks) = mpsc::unbounded_channel();
        let (conn_tx, mut connected) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = conn_tx.send(Ok(()));
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        let _ = sub_tx.send(ack.return_codes);
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        let _ = pub_tx.send(ack.reason);
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
                    Err(e) => {
                        let _ = conn_tx.send(Err(match e {
                            ConnectionError::ConnectionRefused(code) => {
                                format!("refused: {code:?}")
                            }
                            other => other.to_string(),
                        }));
                        if !reconnect {
                            return;
                        }
                        // Broker restarts: keep trying, like a device would.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        let first = timeout(WAIT, connected.recv())
            .await
            .expect("a CONNACK or an error within the timeout")
            .expect("client task runs");
        let client = Client {
            client,
            id: id.to_owned(),
            messages,
            subacks,
            pubacks,
            task,
        };
        first.map(|()| client)
    }

    /// Subscribes, waits for the SUBACK and asserts it grants the filter.
    pub(crate) async fn subscribe(&mut self, filter: &str) {
        assert!(
            self.try_subscribe(filter).await,
            "{} may subscribe to {filter}",
            self.id
        );
    }

    /// Subscribes and waits for the SUBACK: whether the broker granted the filter.
    pub(crate) async fn try_subscribe(&mut self, filter: &str) -> bool {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        let codes = timeout(WAIT, self.subacks.recv())
            .await
            .expect("SUBACK")
            .unwrap();
        matches!(codes[..], [SubscribeReasonCode::Success(_)])
    }

    /// Publishes at QoS 1 and returns the broker's PUBACK reason (on a client with no
    /// other QoS 1 publication unacknowledged).
    pub(crate) async fn publish_acked(
        &mut self,
        topic: &str,
        retain: bool,
        payload: &str,
    ) -> PubAckReason {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.to_owned())
            .await
            .unwrap();
        timeout(WAIT, self.pubacks.recv())
            .await
            .expect("PUBACK")
            .unwrap()
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

    /// Every message up to and including the first for which `marker` holds.
    pub(crate) async fn until(
        &mut self,
        what: &str,
        mut marker: impl FnMut(&Msg) -> bool,
    ) -> Vec<Msg> {
        let mut seen = Vec::new();
        let found = timeout(WAIT, async {
            loop {
                let m = self.messages.recv().await.expect("client running");
                let done = marker(&m);
                seen.push(m);
                if done {
                    return;
                }
            }
        })
        .await;
        if found.is_err() {
            let topics: Vec<_> = seen.iter().map(|m| &m.topic).collect();
            panic!("{}: no {what}; got {topics:?}", self.id);
        }
        seen
    }

    /// The reply topic of this client: `{prefix}replies/{client id}/r`.
    pub(crate) fn replies(&self, prefix: &str) -> String {
        format!("{prefix}replies/{}/r", self.id)
    }

    /// Publishes a command with a response topic, correlation data and, if given, the
    /// caller's token; returns the reply's JSON. The client must be subscribed to
    /// `response_topic`.
    pub(crate) async fn request(
        &mut self,
        topic: &str,
        payload: &str,
        response_topic: &str,
        correlation: &[u8],
        token: Option<&str>,
    ) -> (Value, Msg) {
        self.send_command(topic, payload, response_topic, correlation, token)
            .await;
        let reply = self.next_on(response_topic).await;
        (reply.json(), reply)
    }

    /// Publishes a command and returns the broker's PUBACK reason (on a client with no
    /// other QoS 1 publication unacknowledged).
    pub(crate) async fn command_acked(
        &mut self,
        topic: &str,
        payload: &str,
        response_topic: &str,
        token: Option<&str>,
    ) -> PubAckReason {
        self.send_command(topic, payload, response_topic, b"acked", token)
            .await;
        timeout(WAIT, self.pubacks.recv())
            .await
            .expect("PUBACK")
            .unwrap()
    }

    /// Publishes a command without waiting for a reply.
    pub(crate) async fn send_command(
        &mut self,
        topic: &str,
        payload: &str,
        response_topic: &str,
        correlation: &[u8],
        token: Option<&str>,
    ) {
        let user = token
            .map(|t| vec![("authorization".to_owned(), format!("Bearer {t}"))])
            .unwrap_or_default();
        self.send_command_with(topic, payload, response_topic, correlation, user)
            .await;
    }

    /// Publishes a command with these MQTT 5 user properties, without waiting for a
    /// reply.
    pub(crate) async fn send_command_with(
        &mut self,
        topic: &str,
        payload: &str,
        response_topic: &str,
        correlation: &[u8],
        user_properties: Vec<(String, String)>,
    ) {
        let props = PublishProperties {
            response_topic: Some(response_topic.to_owned()),
            correlation_data: Some(Bytes::copy_from_slice(correlation)),
            user_properties,
            ..PublishProperties::default()
        };
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload.to_owned(), props)
            .await
            .unwrap();
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

/// A TCP proxy the tests can cut, to make a client's connection vanish, or hold, to
/// stall it without closing it (nothing is forwarded until it is released).
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    flowing: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub(crate) async fn start(listen: SocketAddr, target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (flowing, state) = tokio::sync::watch::channel(true);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                conns.spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(target).await {
                        let (from_client, to_client) = inbound.into_split();
                        let (from_server, to_server) = outbound.into_split();
                        tokio::join!(
                            pump(from_client, to_server, state.clone()),
                            pump(from_server, to_client, state)
                        );
                    }
                });
            }
        });
        Proxy {
            addr,
            flowing,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// Stops forwarding in both directions; the connections stay open.
    pub(crate) fn hold(&self) {
        self.flowing.send_replace(false);
    }

    /// Forwards again, starting with what arrived while held.
    pub(crate) fn release(&self) {
        self.flowing.send_replace(true);
    }

    /// Drops the listener and every connection (sockets close: the broker sees the
    /// client vanish without DISCONNECT).
    pub(crate) async fn cut(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Copies `from` to `to`, each chunk only while the proxy is not held.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut flowing: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // A proxy dropped without `cut` forwards on (its sender is gone: `Err`).
        let _ = flowing.wait_for(|on| *on).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
