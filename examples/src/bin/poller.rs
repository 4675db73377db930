//! Run with: cargo run -p petstore-examples --bin poller
//! against a running server (`cargo run -p petstore-server` in another terminal).
//!
//! Polling: `GET /v1/pets/changes?since=` in a loop (long-polling with `wait=`), the
//! simplest way to stay in sync without a push connection.

use anyhow::bail;
use clap::Parser;
use petstore_examples::client::{ClientArgs, check, describe_event};

#[derive(Debug, Parser)]
#[command(about = "Poll the pet change feed")]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    /// Start after this token (default: from the oldest retained change).
    #[arg(long)]
    since: Option<String>,
    /// Seconds each request may wait for a change (long polling).
    #[arg(long, default_value_t = 20)]
    wait: u64,
    /// Exit after this many changes (default: run until Ctrl-C).
    #[arg(long)]
    count: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let http = reqwest::Client::new();
    let mut since = cli.since.clone();
    let mut seen = 0usize;
    loop {
        let mut url = format!(
            "{}/v1/pets/changes?limit=100&wait={}",
            cli.client.base(),
            cli.wait
        );
        if let Some(s) = &since {
            url.push_str(&format!("&since={s}"));
        }
        let resp = tokio::select! {
            r = http.get(&url).send() => r?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        if resp.status() == reqwest::StatusCode::GONE {
            bail!(
                "the token {since:?} expired (HTTP 410): reload the catalogue, then poll from the new position"
            );
        }
        let page = check(resp).await?;
        for event in page["events"].as_array().into_iter().flatten() {
            println!("{}", describe_event(event));
            seen += 1;
        }
        since = page["next"].as_str().map(str::to_owned);
        if cli.count.is_some_and(|n| seen >= n) {
            return Ok(());
        }
    }
}
