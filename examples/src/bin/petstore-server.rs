//! Run with: cargo run -p petstore-examples --bin petstore-server
//!
//! Starts every protocol on embedded defaults (see `--help`), prints where each one
//! listens and a development token, and stops cleanly on Ctrl-C / SIGTERM.

use clap::Parser;
use petstore_examples::server::{self, Cli, Command};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Logs go to stderr: stdout is the MCP channel in `mcp-stdio` mode.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();

    if let Some(Command::McpStdio) = cli.command {
        anyhow::bail!("mcp-stdio is not available yet");
    }

    let running = server::start(cli.args).await?;
    println!("Pet Store is running:");
    for line in running.banner() {
        println!("  {line}");
    }
    println!("Development token (every scope):\n  {}", running.dev_token);
    println!("Press Ctrl-C to stop.");
    server::shutdown_signal().await;
    tracing::info!("shutting down");
    tokio::time::timeout(server::SHUTDOWN_GRACE, running.shutdown())
        .await
        .map_err(|_| anyhow::anyhow!("shutdown took longer than {:?}", server::SHUTDOWN_GRACE))??;
    println!("Stopped.");
    Ok(())
}
