//! Run with: cargo run -p petstore-examples --bin graphql-client
//! against a running server (`cargo run -p petstore-server` in another terminal).
//!
//! GraphQL: a query (`pets`, then `pet(id) { name status }`) over HTTP, then an
//! `events` subscription over WebSocket (`graphql-transport-ws`) while a mutation
//! creates a pet.

use anyhow::{Context as _, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use petstore_examples::client::{ClientArgs, check};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Debug, Parser)]
#[command(about = "GraphQL query and subscription")]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    /// Exit after this many subscription events.
    #[arg(long, default_value_t = 1)]
    count: usize,
}

async fn graphql(
    http: &reqwest::Client,
    cli: &Cli,
    token: &str,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let body = check(
        http.post(format!("{}/graphql", cli.client.base()))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await?,
    )
    .await?;
    if let Some(errors) = body.get("errors") {
        bail!("GraphQL errors: {errors}");
    }
    Ok(body["data"].clone())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let http = reqwest::Client::new();
    let token = cli.client.token(&http).await?;

    let data = graphql(
        &http,
        &cli,
        &token,
        "{ pets(first: 3) { nodes { id name } position } inventory { available pending sold } }",
        json!({}),
    )
    .await?;
    println!("pets: {}", data["pets"]);
    println!("inventory: {}", data["inventory"]);
    let position = data["pets"]["position"].as_str().map(str::to_owned);
    let id = data["pets"]["nodes"][0]["id"]
        .as_str()
        .context("no pet")?
        .to_owned();
    let data = graphql(
        &http,
        &cli,
        &token,
        "query($id: ID!) { pet(id: $id) { name status } }",
        json!({"id": id}),
    )
    .await?;
    println!("pet({id}) -> {}", data["pet"]);

    // Subscribe over graphql-transport-ws, authenticating in connection_init.
    let mut request = format!("{}/graphql", cli.client.ws_base()).into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("WebSocket handshake")?;
    let send = |v: Value| Message::text(v.to_string());
    ws.send(send(
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}}),
    ))
    .await?;
    loop {
        let frame = ws.next().await.context("closed before connection_ack")??;
        if let Message::Text(t) = frame {
            let v: Value = serde_json::from_str(&t)?;
            match v["type"].as_str() {
                Some("connection_ack") => break,
                Some("ping") => ws.send(send(json!({"type": "pong"}))).await?,
                _ => bail!("unexpected frame before ack: {t}"),
            }
        }
    }
    // Start from the listing's position: nothing after the snapshot can be missed.
    let since = position;
    ws.send(send(json!({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription($since: String) { events(types: [\"pet.*\"], since: $since) { id type subject offset } }",
        "variables": {"since": since}
    }})))
    .await?;
    let created = graphql(
        &http,
        &cli,
        &token,
        "mutation($input: NewPetInput!) { createPet(input: $input) { id name } }",
        json!({"input": {"name": "Graphy", "species": "parrot", "price": {"amount": "99.00", "currency": "USD"}}}),
    )
    .await?;
    println!("createPet -> {}", created["createPet"]);
    let mut seen = 0;
    while seen < cli.count {
        let frame = ws.next().await.context("subscription closed")??;
        let Message::Text(t) = frame else { continue };
        let v: Value = serde_json::from_str(&t)?;
        match v["type"].as_str() {
            Some("next") => {
                let e = &v["payload"]["data"]["events"];
                println!(
                    "subscription event: {} subject={} offset={}",
                    e["type"], e["subject"], e["offset"]
                );
                seen += 1;
            }
            Some("ping") => ws.send(send(json!({"type": "pong"}))).await?,
            Some("pong") | Some("ka") => {}
            _ => bail!("unexpected frame: {t}"),
        }
    }
    ws.send(send(json!({"id": "1", "type": "complete"})))
        .await?;
    ws.close(None).await.ok();
    Ok(())
}
