//! Run with: cargo run -p petstore-examples --bin webhook-receiver
//! against a running server (`cargo run -p petstore-server` in another terminal).
//!
//! Webhooks: starts a small HTTP receiver, registers it with the server
//! (`POST /v1/webhooks`, admin token), verifies every delivery's Standard Webhooks
//! signature with the returned `whsec_` secret, deduplicates on `webhook-id`, prints
//! the events, and removes its endpoint on exit.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use clap::Parser;
use petstore_examples::client::{ClientArgs, check, describe_event};
use petstore_webhooks::WebhookSecret;
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[derive(Debug, Parser)]
#[command(about = "Receive and verify signed webhooks")]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    /// Where the receiver listens (the server must be able to reach it).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Event types or families to receive.
    #[arg(long, value_delimiter = ',', default_value = "order.*,pet.*,payment.*")]
    events: Vec<String>,
    /// Ask the server for a test event once registered.
    #[arg(long)]
    ping: bool,
    /// Exit after this many events (default: run until Ctrl-C).
    #[arg(long)]
    count: Option<usize>,
}

struct Receiver {
    secret: WebhookSecret,
    seen: Mutex<HashSet<String>>,
    events: mpsc::UnboundedSender<Value>,
}

async fn receive(State(rx): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let verified = match rx.secret.verify(&headers, &body, Duration::from_secs(300)) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("rejected a delivery: {e:?}");
            return StatusCode::UNAUTHORIZED;
        }
    };
    // Retries carry the same webhook-id: acknowledge, but process once.
    if !rx
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(verified.id.clone())
    {
        return StatusCode::NO_CONTENT;
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(event) => {
            let _ = rx.events.send(event);
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let http = reqwest::Client::new();
    let token = cli.client.token(&http).await?;
    let base = cli.client.base().to_owned();

    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    let addr = listener.local_addr()?;
    let endpoint = check(
        http.post(format!("{base}/v1/webhooks"))
            .bearer_auth(&token)
            .json(&json!({"url": format!("http://{addr}/webhook"), "events": cli.events, "description": "webhook-receiver example"}))
            .send()
            .await?,
    )
    .await?;
    let id = endpoint["id"]
        .as_str()
        .context("no endpoint id")?
        .to_owned();
    let secret: WebhookSecret = endpoint["secret"]
        .as_str()
        .context("no secret in the create response")?
        .parse()
        .map_err(|e| anyhow::anyhow!("bad secret: {e:?}"))?;
    println!("listening on http://{addr}/webhook, registered as endpoint {id}");

    let (tx, mut events) = mpsc::unbounded_channel();
    let state = Arc::new(Receiver {
        secret,
        seen: Mutex::default(),
        events: tx,
    });
    let app = axum::Router::new()
        .route("/webhook", post(receive))
        .with_state(state);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    if cli.ping {
        check(
            http.post(format!("{base}/v1/webhooks/{id}/test"))
                .bearer_auth(&token)
                .send()
                .await?,
        )
        .await?;
    }
    let mut seen = 0usize;
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(event) = event else { break };
        println!("verified {}", describe_event(&event));
        seen += 1;
        if cli.count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    let resp = http
        .delete(format!("{base}/v1/webhooks/{id}"))
        .bearer_auth(&token)
        .send()
        .await?;
    println!("removed endpoint {id}: {}", resp.status());
    server.abort();
    Ok(())
}
