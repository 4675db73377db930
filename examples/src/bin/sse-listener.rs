//! Run with: cargo run -p petstore-examples --bin sse-listener [-- --channel pets]
//! against a running server (`cargo run -p petstore-server` in another terminal).
//!
//! The Rust counterpart of `new EventSource('/v1/stream/pets')`: prints each event,
//! and when the connection drops reconnects with `Last-Event-ID` so that no event is
//! missed.

use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use petstore_examples::client::{ClientArgs, describe_event};

#[derive(Debug, Parser)]
#[command(about = "Follow a Server-Sent Events channel, resuming after disconnects")]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    /// Channel: pets, orders, inventory, chat, pets/{id}, orders/{id}.
    #[arg(long, default_value = "pets")]
    channel: String,
    /// Resume after this token instead of starting live.
    #[arg(long)]
    last_event_id: Option<String>,
    /// Exit after this many events (default: run until Ctrl-C).
    #[arg(long)]
    count: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let http = reqwest::Client::new();
    let token = cli.client.token(&http).await.ok();
    let url = format!("{}/v1/stream/{}", cli.client.base(), cli.channel);
    let mut last_id = cli.last_event_id.clone();
    let mut seen = 0usize;
    let mut failures = 0u32;
    loop {
        let mut request = http.get(&url).header("accept", "text/event-stream");
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id);
        }
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let response = tokio::select! {
            r = request.send() => r,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let response = match response {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => bail!(
                "{url}: HTTP {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(e) => {
                failures += 1;
                if failures > 5 {
                    bail!("{url}: {e}");
                }
                eprintln!("connection failed ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        failures = 0;
        eprintln!(
            "connected to {url}{}",
            last_id
                .as_ref()
                .map(|id| format!(" (resuming after {id})"))
                .unwrap_or_default()
        );
        let mut events = response.bytes_stream().eventsource();
        loop {
            let next = tokio::select! {
                n = events.next() => n,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            match next {
                // The messages carry no `event:` line (the `onmessage` form): the
                // data's `type` says what each one is.
                Some(Ok(ev)) => {
                    if !ev.id.is_empty() {
                        last_id = Some(ev.id.clone());
                    }
                    let data: serde_json::Value =
                        serde_json::from_str(&ev.data).unwrap_or_default();
                    let kind = data["type"].as_str().unwrap_or_default();
                    if kind == "reset" {
                        println!("reset: {} (the client should reload its state)", ev.data);
                        continue;
                    }
                    if kind == "error" {
                        eprintln!("server error: {}; reconnecting", ev.data);
                        break;
                    }
                    println!("{:<20} {}", kind, describe_event(&data));
                    seen += 1;
                    if cli.count.is_some_and(|n| seen >= n) {
                        return Ok(());
                    }
                }
                Some(Err(e)) => {
                    eprintln!("stream error: {e}; reconnecting");
                    break;
                }
                None => {
                    eprintln!("stream ended; reconnecting");
                    break;
                }
            }
        }
    }
}
