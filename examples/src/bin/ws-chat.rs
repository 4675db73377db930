//! Run with: cargo run -p petstore-examples --bin ws-chat [-- --say "hello"]
//! against a running server (`cargo run -p petstore-server` in another terminal).
//!
//! WebSocket: connects to `/v1/ws/chat?token=`, subscribes to `orders`, optionally
//! sends a chat message, and prints every frame the server sends.

use anyhow::Context as _;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use petstore_examples::client::ClientArgs;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
#[command(about = "WebSocket chat and live order events")]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    /// Chat room.
    #[arg(long, default_value = "support")]
    room: String,
    /// Send this message once connected.
    #[arg(long)]
    say: Option<String>,
    /// Exit after this many event / chat frames (default: run until Ctrl-C).
    #[arg(long)]
    count: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let http = reqwest::Client::new();
    let token = cli.client.token(&http).await?;
    let url = format!("{}/v1/ws/chat?token={token}", cli.client.ws_base());
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .context("WebSocket handshake")?;
    ws.send(Message::text(
        json!({"type": "subscribe", "channel": "orders"}).to_string(),
    ))
    .await?;
    if let Some(text) = &cli.say {
        ws.send(Message::text(
            json!({"type": "chat.send", "room": cli.room, "text": text}).to_string(),
        ))
        .await?;
    }
    let mut seen = 0usize;
    loop {
        let frame = tokio::select! {
            f = ws.next() => f,
            _ = tokio::signal::ctrl_c() => {
                ws.close(None).await.ok();
                return Ok(());
            }
        };
        let Some(frame) = frame else { return Ok(()) };
        match frame? {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).unwrap_or_default();
                match v["type"].as_str() {
                    Some("event") => {
                        let e = &v["event"];
                        println!(
                            "[{}] {} {} offset={}",
                            v["channel"].as_str().unwrap_or("?"),
                            e["type"].as_str().unwrap_or("?"),
                            e["subject"].as_str().unwrap_or("?"),
                            e["offset"].as_str().unwrap_or("?")
                        );
                        seen += 1;
                    }
                    Some("chat.message") => {
                        println!("chat: {text}");
                        seen += 1;
                    }
                    _ => println!("{text}"),
                }
                if cli.count.is_some_and(|n| seen >= n) {
                    ws.close(None).await.ok();
                    return Ok(());
                }
            }
            Message::Close(reason) => {
                println!("closed by server: {reason:?}");
                return Ok(());
            }
            _ => {}
        }
    }
}
