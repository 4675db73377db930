//! The connection to the broker over rumqttc, MQTT 5 or 3.1.1 behind one face.
//!
//! The rumqttc event loop runs in its own task (the poller) because `poll()` is not
//! cancel-safe; it forwards what the bridge needs as [`LinkEvent`]s. Packet ids come
//! back as `Outgoing::Publish(pkid)` events in the order the requests were queued,
//! which is how the bridge maps acknowledgements back to log offsets.

use std::time::Duration;

use bytes::Bytes;
use petstore_core::{Error, ErrorKind, Result};
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5::{
    LastWill as LastWill5, Packet as Packet5, PubAckReason, PubCompReason, PublishProperties,
};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Broker, MqttConfig, MqttVersion, QoS};

/// Largest packet the bridge accepts or sends (rumqttc's default is 10 KiB).
const MAX_PACKET: u32 = 1024 * 1024;

/// What the poller reports.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// CONNACK received.
    Connected,
    /// A PUBLISH left with this packet id (0 for QoS 0), in request order.
    Sent(u16),
    /// The next PUBLISH collided with an unacknowledged packet id and waits for it.
    AwaitAck(u16),
    /// The broker completed the PUBLISH with this packet id (PUBACK for QoS 1,
    /// PUBCOMP for QoS 2); `Err` carries a refusal reason.
    Acked(u16, std::result::Result<(), String>),
    /// A message on a subscribed topic.
    Message(Inbound),
    /// The connection failed. The poller waits for `resume` before it reconnects,
    /// and drops every request queued before that.
    Down {
        error: String,
        resume: oneshot::Sender<()>,
    },
}

/// An inbound PUBLISH.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    /// A retained message delivered on subscription.
    pub(crate) retain: bool,
    pub(crate) response_topic: Option<String>,
    pub(crate) correlation_data: Option<Bytes>,
    /// The values of the MQTT 5 user properties named `authorization` (the caller's
    /// `Bearer` token); 3.1.1 messages have none.
    pub(crate) authorization: Vec<String>,
    /// The first MQTT 5 user property named `traceparent` (the caller's W3C trace
    /// context), unparsed.
    pub(crate) traceparent: Option<String>,
}

/// MQTT 5 properties of an outgoing PUBLISH (ignored over 3.1.1).
#[derive(Debug, Default)]
pub(crate) struct Properties {
    pub(crate) user: Vec<(String, String)>,
    pub(crate) correlation_data: Option<Bytes>,
    pub(crate) json: bool,
}

/// The request side of the connection.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

// One per bridge, moved once into its task: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Poller {
    V4(rumqttc::EventLoop),
    V5(v5::EventLoop),
}

fn refused(e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("MQTT request not queued: {e}"),
    )
}

impl Link {
    /// Builds the client and spawns its poller; events arrive on the returned receiver.
    pub(crate) fn start(
        config: &MqttConfig,
        client_id: &str,
        broker: &Broker,
        will_topic: &str,
        capacity: usize,
    ) -> Result<(Link, mpsc::Receiver<LinkEvent>)> {
        let keep_alive = config.keep_alive.max(Duration::from_secs(5));
        let transport = if broker.tls {
            Some(rumqttc::Transport::tls_with_config(tls_config(config)?))
        } else {
            None
        };
        let password = config
            .password
            .as_ref()
            .map_or_else(String::new, |p| p.expose().to_owned());
        let (link, poller) = match config.version {
            MqttVersion::V5 => {
                let mut o = v5::MqttOptions::new(client_id, &broker.host, broker.port);
                o.set_keep_alive(keep_alive)
                    .set_clean_start(true)
                    .set_max_packet_size(Some(MAX_PACKET))
                    .set_connection_timeout(10)
                    .set_last_will(LastWill5::new(
                        will_topic,
                        "offline",
                        config.qos.v5(),
                        true,
                        None,
                    ));
                if let Some(user) = &config.username {
                    o.set_credentials(user, password);
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                let (client, eventloop) = v5::AsyncClient::new(o, capacity);
                (Link::V5(client), Poller::V5(eventloop))
            }
            MqttVersion::V311 => {
                let mut o = rumqttc::MqttOptions::new(client_id, &broker.host, broker.port);
                o.set_keep_alive(keep_alive)
                    .set_clean_session(true)
                    .set_max_packet_size(MAX_PACKET as usize, MAX_PACKET as usize)
                    .set_inflight(100)
                    .set_last_will(rumqttc::LastWill::new(
                        will_topic,
                        "offline",
                        config.qos.v4(),
                        true,
                    ));
                if let Some(user) = &config.username {
                    o.set_credentials(user, password);
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                let (client, eventloop) = rumqttc::AsyncClient::new(o, capacity);
                (Link::V4(client), Poller::V4(eventloop))
            }
        };
        let (tx, rx) = mpsc::channel(1024);
        let delays = (config.reconnect_delay, config.max_reconnect_delay);
        tokio::spawn(poller.run(tx, delays));
        Ok((link, rx))
    }

    /// Queues a PUBLISH without waiting (the poller may be the one waiting on us).
    pub(crate) fn try_publish(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
        props: Properties,
    ) -> Result<()> {
        let payload = payload.into();
        match self {
            Link::V4(c) => c
                .try_publish(topic, qos.v4(), retain, payload)
                .map_err(refused),
            Link::V5(c) => {
                let properties = PublishProperties {
                    payload_format_indicator: props.json.then_some(1),
                    content_type: props.json.then(|| "application/json".to_owned()),
                    correlation_data: props.correlation_data,
                    user_properties: props.user,
                    ..PublishProperties::default()
                };
                c.try_publish_with_properties(topic, qos.v5(), retain, payload, properties)
                    .map_err(refused)
            }
        }
    }

    pub(crate) fn try_subscribe(&self, filter: &str, qos: QoS) -> Result<()> {
        match self {
            Link::V4(c) => c.try_subscribe(filter, qos.v4()).map_err(refused),
            Link::V5(c) => c.try_subscribe(filter, qos.v5()).map_err(refused),
        }
    }

    pub(crate) fn try_disconnect(&self) -> Result<()> {
        match self {
            Link::V4(c) => c.try_disconnect().map_err(refused),
            Link::V5(c) => c.try_disconnect().map_err(refused),
        }
    }
}

/// rustls settings for `mqtts://`.
fn tls_config(config: &MqttConfig) -> Result<rumqttc::TlsConfiguration> {
    let read = |field: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            Error::invalid_field(field, format!("cannot read `{}`: {e}", path.display()))
        })
    };
    match &config.ca_file {
        Some(ca) => {
            let client_auth = match (&config.client_cert_file, &config.client_key_file) {
                (Some(cert), Some(key)) => Some((
                    read("client_cert_file", cert)?,
                    read("client_key_file", key)?,
                )),
                _ => None,
            };
            install_crypto_provider();
            Ok(rumqttc::TlsConfiguration::Simple {
                ca: read("ca_file", ca)?,
                alpn: None,
                client_auth,
            })
        }
        None if config.client_cert_file.is_some() => Err(Error::invalid_field(
            "ca_file",
            "TLS client authentication needs a CA file",
        )),
        None => {
            install_crypto_provider();
            // rumqttc panics when the platform's certificates cannot be loaded.
            std::panic::catch_unwind(rumqttc::TlsConfiguration::default).map_err(|_| {
                Error::invalid_field(
                    "ca_file",
                    "the platform's root certificates cannot be loaded: set a CA file",
                )
            })
        }
    }
}

/// rustls needs a process-wide crypto provider when more than one is compiled in;
/// install the one rumqttc brings unless the application chose one already.
fn install_crypto_provider() {
    use rumqttc::tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
    if CryptoProvider::get_default().is_none() {
        let _ = aws_lc_rs::default_provider().install_default();
    }
}

impl Poller {
    async fn run(mut self, tx: mpsc::Sender<LinkEvent>, (first, max): (Duration, Duration)) {
        let mut delay = first;
        loop {
            let polled = tokio::select! {
                // The bridge is gone: drop the connection (a bridge that did not say
                // goodbye gets its Last Will published).
                _ = tx.closed() => return,
                polled = self.poll() => polled,
            };
            match polled {
                Ok(None) => {}
                Ok(Some(event)) => {
                    if matches!(event, LinkEvent::Connected) {
                        delay = first;
                    }
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                Err((_, true)) => return,
                Err((error, false)) => {
                    self.forget_requests();
                    let (resume, resumed) = oneshot::channel();
                    if tx.send(LinkEvent::Down { error, resume }).await.is_err() {
                        return;
                    }
                    // The bridge now stops publishing; whatever it queued before it
                    // knew is dropped, since it resumes from its last acked offset.
                    if resumed.await.is_err() {
                        return;
                    }
                    self.forget_requests();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(max);
                }
            }
        }
    }

    /// One step of the rumqttc event loop; `Err((message, requests_done))`.
    async fn poll(&mut self) -> std::result::Result<Option<LinkEvent>, (String, bool)> {
        match self {
            Poller::V4(ev) => ev.poll().await.map(v4_event).map_err(|e| {
                let done = matches!(e, rumqttc::ConnectionError::RequestsDone);
                (e.to_string(), done)
            }),
            Poller::V5(ev) => ev.poll().await.map(v5_event).map_err(|e| {
                let done = matches!(e, v5::ConnectionError::RequestsDone);
                (e.to_string(), done)
            }),
        }
    }

    /// Drops the connection, the unacknowledged publications and queued requests:
    /// the bridge republishes from its own position instead (rumqttc would replay
    /// them only into a resumed session, and lose them in a new one).
    fn forget_requests(&mut self) {
        match self {
            Poller::V4(ev) => {
                ev.clean();
                ev.pending.clear();
                ev.state = rumqttc::MqttState::new(ev.mqtt_options.inflight(), false);
            }
            Poller::V5(ev) => {
                ev.clean();
                ev.pending.clear();
                let limit = ev.options.get_outgoing_inflight_upper_limit();
                ev.state = v5::MqttState::new(limit.unwrap_or(u16::MAX), false);
            }
        }
    }
}

fn v4_event(event: rumqttc::Event) -> Option<LinkEvent> {
    use rumqttc::{Event, Outgoing, Packet};
    Some(match event {
        Event::Incoming(Packet::ConnAck(_)) => LinkEvent::Connected,
        Event::Incoming(Packet::PubAck(a)) => LinkEvent::Acked(a.pkid, Ok(())),
        Event::Incoming(Packet::PubComp(c)) => LinkEvent::Acked(c.pkid, Ok(())),
        Event::Incoming(Packet::Publish(p)) => LinkEvent::Message(Inbound {
            topic: p.topic,
            payload: p.payload,
            retain: p.retain,
            response_topic: None,
            correlation_data: None,
            authorization: Vec::new(),
            traceparent: None,
        }),
        Event::Outgoing(Outgoing::Publish(pkid)) => LinkEvent::Sent(pkid),
        Event::Outgoing(Outgoing::AwaitAck(pkid)) => LinkEvent::AwaitAck(pkid),
        _ => return None,
    })
}

fn v5_event(event: v5::Event) -> Option<LinkEvent> {
    use rumqttc::Outgoing;
    use v5::Event;
    Some(match event {
        Event::Incoming(Packet5::ConnAck(_)) => LinkEvent::Connected,
        Event::Incoming(Packet5::PubAck(a)) => {
            let ok = matches!(
                a.reason,
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers
            );
            LinkEvent::Acked(
                a.pkid,
                reason(ok, &a.reason, a.properties.map(|p| p.reason_string)),
            )
        }
        Event::Incoming(Packet5::PubComp(c)) => {
            let ok = c.reason == PubCompReason::Success;
            LinkEvent::Acked(
                c.pkid,
                reason(ok, &c.reason, c.properties.map(|p| p.reason_string)),
            )
        }
        Event::Incoming(Packet5::Publish(p)) => {
            let props = p.properties.unwrap_or_default();
            let mut authorization = Vec::new();
            let mut traceparent = None;
            for (name, value) in props.user_properties {
                if name.eq_ignore_ascii_case("authorization") {
                    authorization.push(value);
                } else if name.eq_ignore_ascii_case("traceparent") && traceparent.is_none() {
                    traceparent = Some(value);
                }
            }
            LinkEvent::Message(Inbound {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload,
                retain: p.retain,
                response_topic: props.response_topic,
                correlation_data: props.correlation_data,
                authorization,
                traceparent,
            })
        }
        Event::Outgoing(Outgoing::Publish(pkid)) => LinkEvent::Sent(pkid),
        Event::Outgoing(Outgoing::AwaitAck(pkid)) => LinkEvent::AwaitAck(pkid),
        _ => return None,
    })
}

fn reason(
    ok: bool,
    code: &impl std::fmt::Debug,
    text: Option<Option<String>>,
) -> std::result::Result<(), String> {
    if ok {
        return Ok(());
    }
    match text.flatten() {
        Some(text) => Err(format!("{code:?}: {text}")),
        None => Err(format!("{code:?}")),
    }
}
