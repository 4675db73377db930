//! The memory one request may cost: the 150-alias `issueToken` mutation of issue 20
//! (which took the server from 285 MB to 3.1 GB) against the server binary, its peak
//! resident memory read from `/proc`.

use serde_json::{Value, json};

use crate::support::binary::Binary;
use crate::support::within;

const MIB: u64 = 1024 * 1024;

async fn graphql(server: &Binary, query: &str) -> Value {
    let request = reqwest::Client::new()
        .post(format!("{}/graphql", server.http))
        .json(&json!({ "query": query }));
    let response = within("the GraphQL answer", request.send()).await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_fifty_issue_token_aliases_cost_bounded_memory() {
    let server = Binary::start(&[]).await;
    // One login first, so that what every login allocates once is in the baseline.
    let warm = graphql(
        &server,
        r#"mutation { issueToken(username: "alice", password: "alice-password") { accessToken } }"#,
    )
    .await;
    assert!(
        warm["data"]["issueToken"]["accessToken"].is_string(),
        "{warm}"
    );

    let aliases: Vec<String> = (0..150)
        .map(|i| {
            format!(
                r#"a{i}: issueToken(username: "alice", password: "alice-password") {{ accessToken }}"#
            )
        })
        .collect();
    let query = format!("mutation {{ {} }}", aliases.join(" "));
    server.reset_peak_rss();
    let before = server.rss();
    let answer = graphql(&server, &query).await;
    let peak = server.peak_rss();
    let growth = peak.saturating_sub(before);
    eprintln!(
        "150 issueToken aliases: RSS {} MiB before, peak {} MiB (+{} MiB)",
        before / MIB,
        peak / MIB,
        growth / MIB
    );
    assert!(
        growth < 50 * MIB,
        "one request grew the server by {} MiB",
        growth / MIB
    );
    // The second alias was refused without a check (and, `issueToken` being
    // non-null, GraphQL answers no data for the mutation).
    let errors = answer["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("one password check per request"))),
        "{answer}"
    );
}
