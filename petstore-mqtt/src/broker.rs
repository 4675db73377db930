//! An embedded MQTT broker (rumqttd) for the example server and tests, behind the
//! `broker` cargo feature.
//!
//! rumqttd serves MQTT 3.1.1 and MQTT 5 on separate listeners. [`EmbeddedBroker`]
//! runs both on free loopback ports and puts one address in front of them that reads
//! the protocol level of each client's CONNECT packet and forwards the connection to
//! the matching listener, so that every client, whatever its version, uses
//! [`EmbeddedBroker::addr`].
//!
//! Limitations (rumqttd 0.20): the broker cannot be stopped (it lives until the
//! process exits), it cannot report the ports it bound (the internal ports are picked
//! by binding port 0 and releasing it just before rumqttd binds them), there is no
//! persistence, and it accepts anonymous clients: bind it to loopback.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long [`EmbeddedBroker::start`] waits for rumqttd to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send its CONNECT packet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest message payload the broker accepts.
const MAX_PAYLOAD: usize = 1024 * 1024;

/// A running embedded broker.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// let broker = petstore_mqtt::broker::EmbeddedBroker::start("127.0.0.1:1883".parse().unwrap())?;
/// println!("MQTT broker on {}", broker.url());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    v4_addr: SocketAddr,
    v5_addr: SocketAddr,
}

impl EmbeddedBroker {
    /// Starts the broker on `addr` (port 0 picks a free port) and returns once it
    /// accepts connections. Blocks the calling thread for that short while.
    pub fn start(addr: SocketAddr) -> io::Result<Self> {
        let front = TcpListener::bind(addr)?;
        let addr = front.local_addr()?;
        let v4_addr = free_loopback_port()?;
        let v5_addr = free_loopback_port()?;
        let config = broker_config(v4_addr, v5_addr);
        thread::Builder::new()
            .name("petstore-mqtt-broker".to_owned())
            .spawn(move || {
                // Blocks for the life of the process.
                if let Err(e) = Broker::new(config).start() {
                    tracing::error!(error = %e, "embedded MQTT broker stopped");
                }
            })?;
        wait_until_listening(v4_addr)?;
        wait_until_listening(v5_addr)?;
        front.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        thread::Builder::new()
            .name("petstore-mqtt-front".to_owned())
            .spawn(move || runtime.block_on(serve_front(front, v4_addr, v5_addr)))?;
        tracing::info!(%addr, %v4_addr, %v5_addr, "embedded MQTT broker listening");
        Ok(Self {
            addr,
            v4_addr,
            v5_addr,
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

    /// rumqttd's own MQTT 3.1.1 listener (loopback).
    pub fn v4_addr(&self) -> SocketAddr {
        self.v4_addr
    }

    /// rumqttd's own MQTT 5 listener (loopback).
    pub fn v5_addr(&self) -> SocketAddr {
        self.v5_addr
    }
}

fn free_loopback_port() -> io::Result<SocketAddr> {
    // rumqttd cannot report what it bound: take a free port now and hand it over.
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

fn broker_config(v4: SocketAddr, v5: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
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

fn wait_until_listening(addr: SocketAddr) -> io::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the embedded MQTT broker does not listen on {addr}: {e}"),
                ));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

async fn serve_front(front: TcpListener, v4: SocketAddr, v5: SocketAddr) {
    let front = match tokio::net::TcpListener::from_std(front) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "embedded MQTT broker front cannot listen");
            return;
        }
    };
    loop {
        let (client, peer) = match front.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = forward(client, v4, v5).await {
                tracing::debug!(%peer, error = %e, "MQTT client connection ended");
            }
        });
    }
}

/// Reads the CONNECT packet far enough to know the protocol level, then splices the
/// connection to the listener of that version.
async fn forward(
    mut client: tokio::net::TcpStream,
    v4: SocketAddr,
    v5: SocketAddr,
) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let mut head = Vec::with_capacity(64);
    let level = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut buf = [0u8; 64];
        loop {
            match protocol_level(&head) {
                Sniff::Level(level) => return Ok(level),
                Sniff::NotMqtt => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "not an MQTT CONNECT",
                    ));
                }
                Sniff::NeedMore => {}
            }
            let n = client.read(&mut buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no CONNECT packet"))??;
    let target = if level == 5 { v5 } else { v4 };
    let mut server = tokio::net::TcpStream::connect(target).await?;
    let _ = server.set_nodelay(true);
    server.write_all(&head).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Sniff {
    Level(u8),
    NeedMore,
    NotMqtt,
}

/// The protocol level of a CONNECT packet's start (4: 3.1.1, 5: MQTT 5, 3: 3.1).
fn protocol_level(bytes: &[u8]) -> Sniff {
    let Some(&first) = bytes.first() else {
        return Sniff::NeedMore;
    };
    if first != 0x10 {
        return Sniff::NotMqtt;
    }
    // Remaining length: 1 to 4 bytes, 7 bits each, high bit = more.
    let mut i = 1;
    loop {
        match bytes.get(i) {
            None => return Sniff::NeedMore,
            Some(b) if b & 0x80 == 0 => break,
            Some(_) if i == 4 => return Sniff::NotMqtt,
            Some(_) => i += 1,
        }
    }
    let name_at = i + 1;
    let (Some(&hi), Some(&lo)) = (bytes.get(name_at), bytes.get(name_at + 1)) else {
        return Sniff::NeedMore;
    };
    let name_len = usize::from(u16::from_be_bytes([hi, lo]));
    if !matches!(name_len, 4 | 6) {
        return Sniff::NotMqtt;
    }
    match bytes.get(name_at + 2 + name_len) {
        Some(&level) => Sniff::Level(level),
        None => Sniff::NeedMore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_the_protocol_level() {
        // CONNECT, remaining length 16, "MQTT", level 5
        let v5 = [0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60];
        assert_eq!(protocol_level(&v5), Sniff::Level(5));
        let v4 = [0x10, 0x80, 0x01, 0, 4, b'M', b'Q', b'T', b'T', 4];
        assert_eq!(protocol_level(&v4), Sniff::Level(4));
        for n in 0..9 {
            assert_eq!(protocol_level(&v5[..n]), Sniff::NeedMore, "{n}");
        }
        assert_eq!(protocol_level(b"GET / HTTP/1.1"), Sniff::NotMqtt);
        assert_eq!(
            protocol_level(&[0x10, 0xff, 0xff, 0xff, 0xff, 1]),
            Sniff::NotMqtt
        );
    }
}
