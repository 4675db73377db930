//! Run with: cargo run -p petstore-examples --bin mqtt-subscriber [-- --token JWT --topic 'petstore/orders/new']
//! against a running server (`cargo run -p petstore-server` in another terminal).
//!
//! MQTT: subscribes to `petstore/orders/new` (or any filter) on the server's broker and
//! prints each event envelope. The token is the MQTT password: order topics need one
//! (`orders/new` an admin's, the server's development token will do); pet topics such
//! as `petstore/pets/+/status` are open.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use petstore_examples::client::describe_event;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

#[derive(Debug, Parser)]
#[command(about = "Subscribe to Pet Store MQTT topics")]
struct Cli {
    /// Broker URL.
    #[arg(long, env = "PETSTORE_MQTT", default_value = "mqtt://127.0.0.1:1883")]
    mqtt: String,
    /// Topic filter.
    #[arg(long, default_value = "petstore/orders/new")]
    topic: String,
    /// Bearer token (JWT), sent as the MQTT password.
    #[arg(long, env = "PETSTORE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Exit after this many messages (default: run until Ctrl-C).
    #[arg(long)]
    count: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let hostport = cli
        .mqtt
        .strip_prefix("mqtt://")
        .context("--mqtt must be mqtt://host:port")?;
    let (host, port) = hostport
        .rsplit_once(':')
        .context("--mqtt must include a port")?;
    let client_id = format!("petstore-example-{}", std::process::id());
    let mut options = MqttOptions::new(client_id, host, port.parse::<u16>()?);
    options.set_keep_alive(Duration::from_secs(30));
    if let Some(token) = &cli.token {
        options.set_credentials("mqtt-subscriber", token);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    client.subscribe(&cli.topic, QoS::AtLeastOnce).await?;
    let mut seen = 0usize;
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match event {
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .contains(&rumqttc::SubscribeReasonCode::Failure)
                {
                    bail!(
                        "the broker refused {} (order and chat topics need --token)",
                        cli.topic
                    );
                }
                eprintln!("subscribed to {}", cli.topic);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let envelope: serde_json::Value =
                    serde_json::from_slice(&p.payload).unwrap_or_default();
                println!("{:<40} {}", p.topic, describe_event(&envelope));
                seen += 1;
                if cli.count.is_some_and(|n| seen >= n) {
                    client.disconnect().await.ok();
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(e) => bail!("MQTT connection to {}: {e}", cli.mqtt),
        }
    }
}
