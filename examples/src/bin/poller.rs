//! Run with: cargo run -p petstore-examples --bin poller
//! against a running server (`cargo run -p petstore-server` in another terminal).
//!
//! Polling: `GET /v1/pets/changes?since=` in a loop (long-polling with `wait=`), the
//! simplest way to stay in sync without a push connection. `--since` takes the `next`
//! token of a previous run, or a time (`--since 1767225600000`, `--since
//! 2026-01-01T00:00:00Z`) for the changes after it.

use anyhow::bail;
use clap::Parser;
use petstore_examples::client::{ClientArgs, check, describe_event};

#[derive(Debug, Parser)]
#[command(about = "Poll the pet change feed")]
struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    /// Start after this resume token, or after a time: epoch milliseconds (JavaScript's
    /// `Date.now()`) or RFC 3339 (default: from the oldest retained change).
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
        let mut url = reqwest::Url::parse(&format!("{}/v1/pets/changes", cli.client.base()))?;
        url.query_pairs_mut()
            .append_pair("limit", "100")
            .append_pair("wait", &cli.wait.to_string());
        if let Some(s) = &since {
            // Percent-encoded: an RFC 3339 offset's `+` would read as a space.
            url.query_pairs_mut().append_pair("since", s);
        }
        let resp = tokio::select! {
            r = http.get(url).send() => r?,
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
