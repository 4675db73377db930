//! The MQTT 5 client: rumqttc's event loop in a task of its own, which reports what
//! arrives on channels and, after an error, tries again 50 ms later as a device would.

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinHandle;

use super::within;

/// Options for client `id` of the broker at `addr`.
pub(crate) fn options(id: &str, addr: SocketAddr) -> MqttOptions {
    MqttOptions::new(id, addr.ip().to_string(), addr.port())
}

/// A running MQTT 5 client.
pub(crate) struct Client {
    pub(crate) client: AsyncClient,
    /// One item per CONNACK.
    pub(crate) connacks: UnboundedReceiver<()>,
    /// One item per SUBACK.
    pub(crate) subacks: UnboundedReceiver<()>,
    /// Every PUBLISH received.
    pub(crate) publishes: UnboundedReceiver<Publish>,
    /// One item per lost connection (a DISCONNECT or an error), saying why.
    pub(crate) drops: UnboundedReceiver<String>,
    task: JoinHandle<()>,
}

impl Client {
    /// Starts the event loop. With `resubscribe`, the client subscribes to that filter
    /// (QoS 1) on every CONNACK: what a clean session needs after a reconnection.
    pub(crate) fn start(options: MqttOptions, resubscribe: Option<&str>) -> Self {
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (connack_tx, connacks) = unbounded_channel();
        let (suback_tx, subacks) = unbounded_channel();
        let (publish_tx, publishes) = unbounded_channel();
        let (drop_tx, drops) = unbounded_channel();
        let subscriber = client.clone();
        let resubscribe = resubscribe.map(str::to_owned);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(filter) = &resubscribe {
                            let _ = subscriber.try_subscribe(filter, QoS::AtLeastOnce);
                        }
                        let _ = connack_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = suback_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = publish_tx.send(p);
                    }
                    Ok(Event::Incoming(Packet::Disconnect(d))) => {
                        let _ = drop_tx.send(format!("DISCONNECT {:?}", d.reason_code));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = drop_tx.send(e.to_string());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Self {
            client,
            connacks,
            subacks,
            publishes,
            drops,
            task,
        }
    }

    /// Subscribes to `filter` (QoS 1) and waits for the SUBACK.
    pub(crate) async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        within("SUBACK", self.subacks.recv())
            .await
            .expect("event loop runs");
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}
