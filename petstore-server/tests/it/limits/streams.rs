//! Long-lived resources per caller: SSE streams per token subject (or anonymous
//! address), and MCP sessions (bounded, and expiring when idle).

use std::time::Duration;

use petstore_core::Scope;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

use super::start_tuned;
use crate::support::within;

async fn sse(base: &str, token: Option<&str>) -> Response {
    let mut request = Client::new().get(format!("{base}/v1/stream/pets"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    within("the SSE response", request.send()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_holds_at_most_max_sse_streams() {
    let server = start_tuned(|a| a.sse_max_streams_per_caller = 2).await;
    let base = server.http_url();
    let alice = server
        .store
        .tokens()
        .issue("alice", [Scope::OrdersRead])
        .unwrap()
        .access_token;
    let first = sse(&base, Some(&alice)).await;
    let second = sse(&base, Some(&alice)).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );

    let third = sse(&base, Some(&alice)).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.headers()["content-type"], "application/problem+json");
    let problem: Value = third.json().await.unwrap();
    assert_eq!(problem["code"], "too_many_streams", "{problem}");

    // Another caller has its own budget: the developer, and anonymous clients.
    assert_eq!(sse(&base, Some(&server.dev_token)).await.status(), 200);
    let anonymous = sse(&base, None).await;
    assert_eq!(anonymous.status(), 200);

    // A stream that ends gives its place back.
    drop(first);
    let mut again = None;
    within("a stream once alice closed one", async {
        loop {
            let response = sse(&base, Some(&alice)).await;
            if response.status() == StatusCode::OK {
                again = Some(response);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop((second, again, anonymous));
}

/// `initialize` of protocol 2025-11-25 (which opens a session): the response.
async fn initialize(base: &str) -> Response {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "limits-test", "version": "1"}
        }
    });
    let request = Client::new()
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    within("the initialize response", request.send())
        .await
        .unwrap()
}

fn session_id(response: &Response) -> String {
    response
        .headers()
        .get("mcp-session-id")
        .unwrap_or_else(|| panic!("no session id: {response:?}"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Completes the handshake of session `id` (`notifications/initialized`).
async fn initialized(base: &str, id: &str) {
    let request = Client::new()
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", id)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let status = within("the initialized notification", request.send())
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
}

/// A `ping` in session `id`: its status.
async fn ping(base: &str, id: &str) -> StatusCode {
    let request = Client::new()
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", id)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}));
    within("the ping", request.send()).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_sessions_beyond_the_cap_are_refused_until_one_ends() {
    let server = start_tuned(|a| a.mcp_max_sessions = 2).await;
    let base = server.http_url();
    let first = initialize(&base).await;
    let second = initialize(&base).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let first = session_id(&first);
    initialized(&base, &first).await;

    let third = initialize(&base).await;
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(third.headers().contains_key("retry-after"));
    let error: Value = third.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("too many MCP sessions"), "{error}");
    // The open sessions are unharmed.
    assert_eq!(ping(&base, &first).await, StatusCode::OK);

    // Ending a session frees its place.
    let ended = Client::new()
        .delete(format!("{base}/mcp"))
        .header("mcp-session-id", &first)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(ended.status().is_success(), "{ended:?}");
    within("a new session once one ended", async {
        while initialize(&base).await.status() != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_mcp_session_expires_and_gives_its_place_back() {
    let server = start_tuned(|a| {
        a.mcp_max_sessions = 1;
        a.mcp_session_idle_timeout = Duration::from_millis(400);
    })
    .await;
    let base = server.http_url();
    let first = initialize(&base).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first = session_id(&first);
    assert_eq!(
        initialize(&base).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Nothing is sent in the first session; it expires, and a new one is admitted.
    let mut admitted = None;
    within("the idle session to expire", async {
        while admitted.is_none() {
            let response = initialize(&base).await;
            if response.status() == StatusCode::OK {
                admitted = Some(session_id(&response));
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
    .await;
    assert_eq!(ping(&base, &first).await, StatusCode::NOT_FOUND);
}

/// Initializes racing at the cap cannot pass it together: each holds a place while
/// rmcp answers it, so a burst of 12 opens exactly as many sessions as the cap allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_mcp_initializes_opens_no_more_sessions_than_the_cap() {
    let server = start_tuned(|a| a.mcp_max_sessions = 2).await;
    let base = server.http_url();
    let burst = (0..12).map(|_| {
        let base = base.clone();
        tokio::spawn(async move { initialize(&base).await.status() })
    });
    let statuses = within("the burst", futures_util::future::join_all(burst)).await;
    let admitted = statuses
        .iter()
        .filter(|s| *s.as_ref().unwrap() == StatusCode::OK)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| *s.as_ref().unwrap() == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    // Never more than the cap. (A place is held until rmcp has answered, so one that
    // races the end of another's initialize may be refused although a place is about
    // to be free: the cap errs on the safe side.)
    assert!((1..=2).contains(&admitted), "{statuses:?}");
    assert_eq!(admitted + refused, 12, "{statuses:?}");
}
