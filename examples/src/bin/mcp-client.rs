//! Run with: cargo run -p petstore-examples --bin mcp-client
//! against a running server (`cargo run -p petstore-server` in another terminal).
//!
//! MCP over streamable HTTP with the rmcp client: lists the tools with their schemas,
//! calls `search_pets` and `get_inventory`, reads a resource and gets a prompt, as an
//! AI assistant would.

use anyhow::Context as _;
use clap::Parser;
use petstore_examples::client::ClientArgs;
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, ClientConfig, GetPromptRequestParams, ReadResourceRequestParams,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "List and call the Pet Store's MCP tools")]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    /// Call tools anonymously (read-only tools still work while reads are open).
    #[arg(long)]
    anonymous: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config =
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", cli.client.base()));
    if !cli.anonymous {
        config = config.auth_header(cli.client.token(&reqwest::Client::new()).await?);
    }
    let client = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .context("connecting to the MCP server")?;
    let server = client.peer_info().context("no server info")?;
    let name = server
        .server_info
        .as_ref()
        .map(|i| format!("{} {}", i.name, i.version))
        .unwrap_or_default();
    println!("connected to {name} (protocol {})", server.protocol_version);

    let tools = client.list_all_tools().await?;
    println!("{} tools:", tools.len());
    for tool in &tools {
        let read_only = tool
            .annotations
            .as_ref()
            .and_then(|a| a.read_only_hint)
            .unwrap_or(false);
        println!(
            "  {:<16} {}{}",
            tool.name,
            if read_only { "[read-only] " } else { "" },
            tool.description
                .as_deref()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
        );
    }

    let search = client
        .call_tool(
            CallToolRequestParams::new("search_pets").with_arguments(
                json!({"species": "cat", "status": "available"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await?;
    println!(
        "search_pets(species=cat) -> {}",
        search.structured_content.unwrap_or_default()
    );

    let inventory = client
        .call_tool(CallToolRequestParams::new("get_inventory"))
        .await?;
    println!(
        "get_inventory -> {}",
        inventory.structured_content.unwrap_or_default()
    );

    let resource = client
        .read_resource(ReadResourceRequestParams::new("petstore://inventory"))
        .await?;
    println!(
        "resource petstore://inventory -> {} content item(s)",
        resource.contents.len()
    );

    let prompt = client
        .get_prompt(
            GetPromptRequestParams::new("recommend_pet").with_arguments(
                json!({"household": "a small flat, two adults, out at work all day"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await?;
    println!(
        "prompt recommend_pet -> {} message(s)",
        prompt.messages.len()
    );
    client.cancel().await?;
    Ok(())
}
