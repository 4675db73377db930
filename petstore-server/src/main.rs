//! `petstore-server`: run with `cargo run -p petstore-server` (or `cargo install
//! petstore-server`).
//!
//! Starts every protocol on embedded defaults (see `--help`), prints where each one
//! listens and a development token, and stops cleanly on Ctrl-C / SIGTERM.

use petstore_core::Principal;
use petstore_server::Command;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = petstore_server::config::parse_cli()?;
    // Logs go to stderr: stdout is the MCP channel in `mcp-stdio` mode.
    // Held until `main` returns: dropping it writes out the queued log lines.
    let _log =
        petstore_server::telemetry::init_logging(cli.log_format, cli.otlp_endpoint.as_deref())?;

    if let Some(Command::McpStdio) = cli.command {
        // stdio is the local user's own process: it acts with every scope, unless a
        // token narrows it.
        let store = petstore_server::build_store(&cli.args).await?;
        let principal = match std::env::var("PETSTORE_TOKEN") {
            Ok(token) => store.authenticate(Some(&token))?,
            Err(_) => Principal::system("mcp-stdio"),
        };
        petstore_mcp::serve_stdio(store, principal).await?;
        return Ok(());
    }

    let running = petstore_server::start(cli.args).await?;
    println!("Pet Store is running:");
    for line in running.banner() {
        println!("  {line}");
    }
    println!("Development token (every scope):\n  {}", running.dev_token);
    println!("Press Ctrl-C to stop.");
    petstore_server::shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await?;
    println!("Stopped.");
    Ok(())
}
