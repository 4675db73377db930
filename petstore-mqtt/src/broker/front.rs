//! The embedded broker's front: one task per client connection that authenticates its
//! CONNECT and holds each SUBSCRIBE and PUBLISH to the topic policy before rumqttd sees
//! it. Packets are framed and decoded with rumqttc's MQTT codec; what passes is
//! forwarded byte for byte, the CONNECT aside (its credentials are replaced by the
//! front's own).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{self as mqtt4, v4};
use rumqttc::v5::mqttbytes::{self as mqtt5, v5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::access::{self, Reader};
use super::{BRIDGE_USER, FRONT_USER, MAX_PACKET, Shared};

/// How long a client may take to send its CONNECT packet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Highest topic alias a client may set (rumqttd's own limit).
const MAX_TOPIC_ALIAS: u16 = 4096;
/// Packets on their way to one client (the broker's and the front's refusals).
const TO_CLIENT: usize = 64;
/// Most filters in one SUBSCRIBE (each may cost an order lookup).
const MAX_FILTERS: usize = 64;

/// MQTT packet types (the fixed header's high nibble).
const CONNECT: u8 = 1;
const PUBLISH: u8 = 3;
const SUBSCRIBE: u8 = 8;
const AUTH: u8 = 15;

pub(super) async fn serve(
    listener: TcpListener,
    v4_addr: SocketAddr,
    v5_addr: SocketAddr,
    shared: Arc<Shared>,
) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(e) = connection(client, v4_addr, v5_addr, shared).await {
                tracing::debug!(%peer, error = %e, "MQTT client connection ended");
            }
        });
    }
}

fn invalid(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// Reads one whole packet (fixed header included); `None` at a clean end of stream.
async fn read_frame(
    from: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    max: usize,
) -> io::Result<Option<Bytes>> {
    loop {
        match mqtt4::check(buf.iter(), max) {
            Ok(header) => return Ok(Some(buf.split_to(header.frame_length()).freeze())),
            Err(mqtt4::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(invalid(e)),
        }
        if from.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V4,
    V5,
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    BadCredentials,
    BadClientId,
    NotAuthorized,
}

/// A client's CONNECT, MQTT 3.1.1 or 5.
// One per connection, for its first moments: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Connect {
    V4(v4::Connect),
    V5(v5::Connect, Option<v5::LastWill>, Option<v5::Login>),
}

impl Connect {
    fn decode(frame: &Bytes) -> io::Result<Self> {
        if frame.first().map(|b| b >> 4) != Some(CONNECT) {
            return Err(invalid("the first packet is not a CONNECT"));
        }
        match protocol_level(frame) {
            Some(4) => {
                let header = mqtt4::check(frame.iter(), MAX_PACKET).map_err(invalid)?;
                Ok(Self::V4(
                    v4::Connect::read(header, frame.clone()).map_err(invalid)?,
                ))
            }
            Some(5) => {
                let header = v5::check(frame.iter(), Some(MAX_PACKET as u32)).map_err(invalid)?;
                let (connect, will, login) =
                    v5::Connect::read(header, frame.clone()).map_err(invalid)?;
                Ok(Self::V5(connect, will, login))
            }
            level => Err(invalid(format!(
                "unsupported MQTT protocol level {level:?}"
            ))),
        }
    }

    fn version(&self) -> Version {
        match self {
            Self::V4(_) => Version::V4,
            Self::V5(..) => Version::V5,
        }
    }

    fn client_id(&self) -> &str {
        match self {
            Self::V4(c) => &c.client_id,
            Self::V5(c, ..) => &c.client_id,
        }
    }

    /// Whether the client asks to resume an existing session.
    fn resumes(&self) -> bool {
        match self {
            Self::V4(c) => !c.clean_session,
            Self::V5(c, ..) => !c.clean_start,
        }
    }

    fn start_clean(&mut self) {
        match self {
            Self::V4(c) => c.clean_session = true,
            Self::V5(c, ..) => c.clean_start = true,
        }
    }

    /// User name and password.
    fn login(&self) -> Option<(&str, &str)> {
        match self {
            Self::V4(c) => c.login.as_ref().map(|l| (&*l.username, &*l.password)),
            Self::V5(_, _, login) => login.as_ref().map(|l| (&*l.username, &*l.password)),
        }
    }

    fn set_login(&mut self, username: &str, password: &str) {
        match self {
            Self::V4(c) => c.login = Some(v4::Login::new(username, password)),
            Self::V5(_, _, login) => {
                *login = Some(v5::Login {
                    username: username.to_owned(),
                    password: password.to_owned(),
                });
            }
        }
    }

    /// The Last Will's topic and retain flag.
    fn will(&self) -> io::Result<Option<(String, bool)>> {
        Ok(match self {
            Self::V4(c) => c.last_will.as_ref().map(|w| (w.topic.clone(), w.retain)),
            Self::V5(_, will, _) => match will {
                Some(w) => Some((
                    String::from_utf8(w.topic.to_vec()).map_err(invalid)?,
                    w.retain,
                )),
                None => None,
            },
        })
    }

    fn encode(self) -> io::Result<Bytes> {
        let mut out = BytesMut::new();
        match self {
            Self::V4(c) => {
                v4::Packet::Connect(c)
                    .write(&mut out, MAX_PACKET)
                    .map_err(invalid)?;
            }
            Self::V5(c, will, login) => {
                v5::Packet::Connect(c, will, login)
                    .write(&mut out, Some(MAX_PACKET as u32))
                    .map_err(invalid)?;
            }
        }
        Ok(out.freeze())
    }
}

/// The protocol level of a CONNECT frame (4: 3.1.1, 5: MQTT 5, 3: 3.1).
fn protocol_level(frame: &[u8]) -> Option<u8> {
    // Fixed header: type byte, 1 to 4 bytes of remaining length (high bit: more).
    let length_bytes = frame.get(1..)?.iter().take(4).position(|b| b & 0x80 == 0)? + 1;
    let name_at = 1 + length_bytes;
    let name_len = usize::from(u16::from_be_bytes([
        *frame.get(name_at)?,
        *frame.get(name_at + 1)?,
    ]));
    frame.get(name_at + 2 + name_len).copied()
}

fn qos4(qos: mqtt4::QoS) -> u8 {
    match qos {
        mqtt4::QoS::AtMostOnce => 0,
        mqtt4::QoS::AtLeastOnce => 1,
        mqtt4::QoS::ExactlyOnce => 2,
    }
}

fn encode4(packet: v4::Packet) -> Bytes {
    let mut out = BytesMut::new();
    // Acknowledgements the front builds are a few bytes: they always fit.
    let _ = packet.write(&mut out, MAX_PACKET);
    out.freeze()
}

fn encode5(packet: v5::Packet) -> Bytes {
    let mut out = BytesMut::new();
    let _ = packet.write(&mut out, None);
    out.freeze()
}

fn connack_refused(version: Version, why: Refusal) -> Bytes {
    match version {
        Version::V4 => {
            let code = match why {
                Refusal::BadCredentials => v4::ConnectReturnCode::BadUserNamePassword,
                Refusal::BadClientId => v4::ConnectReturnCode::BadClientId,
                Refusal::NotAuthorized => v4::ConnectReturnCode::NotAuthorized,
            };
            encode4(v4::Packet::ConnAck(v4::ConnAck::new(code, false)))
        }
        Version::V5 => {
            let code = match why {
                Refusal::BadCredentials => v5::ConnectReturnCode::BadUserNamePassword,
                Refusal::BadClientId => v5::ConnectReturnCode::ClientIdentifierNotValid,
                Refusal::NotAuthorized => v5::ConnectReturnCode::NotAuthorized,
            };
            encode5(v5::Packet::ConnAck(v5::ConnAck {
                session_present: false,
                code,
                properties: None,
            }))
        }
    }
}

fn suback_refused(version: Version, pkid: u16, filters: usize) -> Bytes {
    match version {
        Version::V4 => encode4(v4::Packet::SubAck(v4::SubAck::new(
            pkid,
            vec![v4::SubscribeReasonCode::Failure; filters],
        ))),
        Version::V5 => encode5(v5::Packet::SubAck(v5::SubAck {
            pkid,
            return_codes: vec![v5::SubscribeReasonCode::NotAuthorized; filters],
            properties: None,
        })),
    }
}

/// What becomes of a PUBLISH.
enum Verdict {
    Forward,
    /// Refused: nothing, or this reply to the client.
    Refuse(Option<Bytes>),
    /// Refused, and MQTT 3.1.1 cannot say so: close the connection.
    Close,
}

/// What the front knows about one client connection.
struct Client {
    version: Version,
    shared: Arc<Shared>,
    client_id: String,
    /// The JWT of the CONNECT, verified again at each SUBSCRIBE (it may expire).
    token: Option<String>,
    /// Topic aliases the client set, as rumqttd resolves them (refused publishes
    /// never reach rumqttd, so they set none).
    aliases: HashMap<u16, String>,
}

async fn connection(
    mut client: TcpStream,
    v4_addr: SocketAddr,
    v5_addr: SocketAddr,
    shared: Arc<Shared>,
) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(4096);
    let frame = tokio::time::timeout(
        CONNECT_TIMEOUT,
        read_frame(&mut client, &mut buf, MAX_PACKET),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no CONNECT packet"))??
    .ok_or(io::ErrorKind::UnexpectedEof)?;
    let mut connect = Connect::decode(&frame)?;
    let version = connect.version();
    let target = match version {
        Version::V4 => v4_addr,
        Version::V5 => v5_addr,
    };
    let refuse = |why| connack_refused(version, why);

    if let Some((user, password)) = connect.login()
        && user == BRIDGE_USER
    {
        if !shared.is_bridge(user, password) {
            return client.write_all(&refuse(Refusal::BadCredentials)).await;
        }
        // The bridge is trusted: its connection goes through untouched.
        let mut broker = TcpStream::connect(target).await?;
        let _ = broker.set_nodelay(true);
        broker.write_all(&frame).await?;
        broker.write_all(&buf).await?;
        tokio::io::copy_bidirectional(&mut client, &mut broker).await?;
        return Ok(());
    }

    let token = connect
        .login()
        .map(|(_, password)| password)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let Ok(who) = shared.service.authenticate(token.as_deref()) else {
        tracing::debug!("MQTT CONNECT refused: bad token");
        return client.write_all(&refuse(Refusal::BadCredentials)).await;
    };
    let client_id = connect.client_id().to_owned();
    // rumqttd drops such ids without a word.
    if client_id.contains(['+', '#', '/', '$']) {
        return client.write_all(&refuse(Refusal::BadClientId)).await;
    }
    if shared.is_bridge_id(&client_id) {
        tracing::warn!(%client_id, "MQTT CONNECT refused: the bridge's client id");
        return client.write_all(&refuse(Refusal::NotAuthorized)).await;
    }
    if let Some((topic, retain)) = connect.will()?
        && (retain || !access::may_publish(&shared.prefix, &topic))
    {
        tracing::debug!(%topic, "MQTT CONNECT refused: a Last Will on a topic the client may not publish to");
        return client.write_all(&refuse(Refusal::NotAuthorized)).await;
    }
    if !client_id.is_empty() && !shared.may_resume(&client_id, who.subject()) && connect.resumes() {
        // Someone else's session (its subscriptions were checked for them): start anew.
        connect.start_clean();
    }
    connect.set_login(FRONT_USER, &shared.front_secret);
    let mut broker = TcpStream::connect(target).await?;
    let _ = broker.set_nodelay(true);
    broker.write_all(&connect.encode()?).await?;
    let client_state = Client {
        version,
        shared,
        client_id,
        token,
        aliases: HashMap::new(),
    };
    relay(client, broker, buf, client_state).await
}

/// Carries packets both ways until either side closes: the client's through
/// [`Client::upstream`], the broker's as they are.
async fn relay(
    client: TcpStream,
    broker: TcpStream,
    pending: BytesMut,
    mut state: Client,
) -> io::Result<()> {
    let (mut client_r, client_w) = client.into_split();
    let (broker_r, mut broker_w) = broker.into_split();
    let (tx, rx) = mpsc::channel(TO_CLIENT);
    let writer = tokio::spawn(write_frames(rx, client_w));
    let result = tokio::select! {
        r = state.upstream(&mut client_r, &mut broker_w, pending, tx.clone()) => r,
        r = downstream(broker_r, tx) => r,
    };
    // Both senders are gone: the writer sends what is queued (a DISCONNECT, say) and
    // ends.
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    result
}

async fn write_frames(mut rx: mpsc::Receiver<Bytes>, mut to: OwnedWriteHalf) -> io::Result<()> {
    while let Some(frame) = rx.recv().await {
        to.write_all(&frame).await?;
    }
    Ok(())
}

async fn downstream(mut from: OwnedReadHalf, tx: mpsc::Sender<Bytes>) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    // The broker's packets may be a little larger than what it accepts (properties).
    while let Some(frame) = read_frame(&mut from, &mut buf, 2 * MAX_PACKET).await? {
        if tx.send(frame).await.is_err() {
            break;
        }
    }
    Ok(())
}

impl Client {
    async fn upstream(
        &mut self,
        from: &mut OwnedReadHalf,
        to: &mut OwnedWriteHalf,
        mut buf: BytesMut,
        tx: mpsc::Sender<Bytes>,
    ) -> io::Result<()> {
        while let Some(frame) = read_frame(from, &mut buf, MAX_PACKET).await? {
            let reply = match frame[0] >> 4 {
                CONNECT => return Err(invalid("a second CONNECT")),
                AUTH => return Err(invalid("AUTH is not supported")),
                PUBLISH => match self.publish(&frame)? {
                    Verdict::Forward => None,
                    Verdict::Refuse(reply) => Some(reply),
                    Verdict::Close => return Ok(()),
                },
                SUBSCRIBE => self.subscribe(&frame).await?.map(Some),
                _ => None,
            };
            match reply {
                None => to.write_all(&frame).await?,
                Some(Some(reply)) => {
                    if tx.send(reply).await.is_err() {
                        return Ok(());
                    }
                }
                Some(None) => {}
            }
        }
        Ok(())
    }

    /// Outsiders publish commands only.
    fn publish(&mut self, frame: &Bytes) -> io::Result<Verdict> {
        let (topic, alias, qos, pkid, retain, response_topic) = match self.version {
            Version::V4 => {
                let header = mqtt4::check(frame.iter(), MAX_PACKET).map_err(invalid)?;
                let p = v4::Publish::read(header, frame.clone()).map_err(invalid)?;
                (p.topic, None, qos4(p.qos), p.pkid, p.retain, None)
            }
            Version::V5 => {
                let header = v5::check(frame.iter(), Some(MAX_PACKET as u32)).map_err(invalid)?;
                let p = v5::Publish::read(header, frame.clone()).map_err(invalid)?;
                let topic = String::from_utf8(p.topic.to_vec()).map_err(invalid)?;
                let (alias, response_topic) = p.properties.map_or((None, None), |props| {
                    (props.topic_alias, props.response_topic)
                });
                let qos = match p.qos {
                    mqtt5::QoS::AtMostOnce => 0,
                    mqtt5::QoS::AtLeastOnce => 1,
                    mqtt5::QoS::ExactlyOnce => 2,
                };
                (topic, alias, qos, p.pkid, p.retain, response_topic)
            }
        };
        let topic = match (topic.is_empty(), alias) {
            (true, Some(alias)) => self
                .aliases
                .get(&alias)
                .cloned()
                .ok_or_else(|| invalid("an unknown topic alias"))?,
            (true, None) => return Err(invalid("a PUBLISH without a topic")),
            (false, _) => topic,
        };
        // A command, live (a retained one would only fill the broker's memory), that
        // asks for its reply in this client's own reply topic (not someone else's).
        let own_replies = format!("{}replies/{}", self.shared.prefix, self.client_id);
        let replies_ok = response_topic.as_deref().is_none_or(|rt| {
            !self.client_id.is_empty()
                && rt
                    .strip_prefix(&own_replies)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        });
        if access::may_publish(&self.shared.prefix, &topic) && !retain && replies_ok {
            if let Some(alias) = alias {
                if alias == 0 || alias > MAX_TOPIC_ALIAS {
                    return Err(invalid("a topic alias out of range"));
                }
                self.aliases.insert(alias, topic);
            }
            return Ok(Verdict::Forward);
        }
        tracing::debug!(client_id = %self.client_id, %topic, "MQTT PUBLISH refused");
        Ok(match (self.version, qos) {
            (_, 0) => Verdict::Refuse(None),
            (Version::V4, _) => Verdict::Close,
            (Version::V5, 1) => Verdict::Refuse(Some(encode5(v5::Packet::PubAck(v5::PubAck {
                pkid,
                reason: v5::PubAckReason::NotAuthorized,
                properties: None,
            })))),
            (Version::V5, _) => Verdict::Refuse(Some(encode5(v5::Packet::PubRec(v5::PubRec {
                pkid,
                reason: v5::PubRecReason::NotAuthorized,
                properties: None,
            })))),
        })
    }

    /// `None` when every filter may be read, else the SUBACK that refuses them all.
    async fn subscribe(&self, frame: &Bytes) -> io::Result<Option<Bytes>> {
        let (pkid, filters): (u16, Vec<String>) = match self.version {
            Version::V4 => {
                let header = mqtt4::check(frame.iter(), MAX_PACKET).map_err(invalid)?;
                let s = v4::Subscribe::read(header, frame.clone()).map_err(invalid)?;
                (s.pkid, s.filters.into_iter().map(|f| f.path).collect())
            }
            Version::V5 => {
                let header = v5::check(frame.iter(), Some(MAX_PACKET as u32)).map_err(invalid)?;
                let s = v5::Subscribe::read(header, frame.clone()).map_err(invalid)?;
                (s.pkid, s.filters.into_iter().map(|f| f.path).collect())
            }
        };
        let refused = Some(suback_refused(self.version, pkid, filters.len()));
        if filters.len() > MAX_FILTERS {
            return Ok(refused);
        }
        let store = &self.shared.service;
        // The token may have expired since CONNECT.
        let Ok(who) = store.authenticate(self.token.as_deref()) else {
            return Ok(refused);
        };
        let reader = Reader {
            store,
            who: &who,
            client_id: &self.client_id,
        };
        for filter in &filters {
            if !reader.may_subscribe(&self.shared.prefix, filter).await {
                tracing::debug!(client_id = %self.client_id, %filter, "MQTT SUBSCRIBE refused");
                return Ok(refused);
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_protocol_level() {
        // CONNECT, remaining length 16, "MQTT", level 5
        let v5 = [0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60];
        assert_eq!(protocol_level(&v5), Some(5));
        let v4 = [0x10, 0x80, 0x01, 0, 4, b'M', b'Q', b'T', b'T', 4];
        assert_eq!(protocol_level(&v4), Some(4));
        assert_eq!(protocol_level(&v5[..8]), None);
        assert_eq!(protocol_level(&[0x10, 0xff, 0xff, 0xff, 0xff, 1]), None);
    }

    #[test]
    fn refusals_decode_as_what_they_say() {
        let mut suback = BytesMut::from(&suback_refused(Version::V5, 7, 2)[..]);
        match v5::Packet::read(&mut suback, None).unwrap() {
            v5::Packet::SubAck(ack) => {
                assert_eq!(ack.pkid, 7);
                assert_eq!(
                    ack.return_codes,
                    [v5::SubscribeReasonCode::NotAuthorized; 2]
                );
            }
            other => panic!("{other:?}"),
        }
        let mut connack =
            BytesMut::from(&connack_refused(Version::V4, Refusal::BadCredentials)[..]);
        match v4::Packet::read(&mut connack, MAX_PACKET).unwrap() {
            v4::Packet::ConnAck(ack) => {
                assert_eq!(ack.code, v4::ConnectReturnCode::BadUserNamePassword);
            }
            other => panic!("{other:?}"),
        }
    }
}
