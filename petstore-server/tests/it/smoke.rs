//! The server binary as a user runs it (a child process on free ports, and `mcp-stdio`
//! under an MCP client), and the AsyncAPI document it serves.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::start;

const LIMIT: Duration = Duration::from_secs(60);

/// The server binary prints its addresses and a token, and stops cleanly on SIGINT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_binary_starts_prints_and_stops_on_ctrl_c() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_petstore-server"))
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--mqtt-addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.contains("Press Ctrl-C");
            printed.push(line);
            if done {
                break;
            }
        }
    })
    .await
    .expect("the server prints its banner");
    let text = printed.join("\n");
    for protocol in [
        "REST",
        "GraphQL",
        "SSE",
        "WebSocket",
        "MCP",
        "webhooks",
        "gRPC",
        "MQTT",
        "Development token",
    ] {
        assert!(text.contains(protocol), "banner lacks {protocol}:\n{text}");
    }
    // The printed HTTP address answers.
    let http = text
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/v1/pets"))
        .unwrap();
    assert!(reqwest::get(http).await.unwrap().status().is_success());

    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("stops in time")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let rest: Vec<String> = {
        let mut v = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            v.push(l);
        }
        v
    };
    assert!(rest.iter().any(|l| l.contains("Stopped.")), "{rest:?}");
}

fn resolve<'a>(doc: &'a serde_json::Value, pointer: &str) -> Option<&'a serde_json::Value> {
    doc.pointer(pointer.strip_prefix('#')?)
}

fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("$ref", serde_json::Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// `/asyncapi.json` is an AsyncAPI 3.0 document whose references all resolve and
/// which names every push channel of the contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncapi_document_is_served_and_consistent() {
    let s = start().await;
    let doc: serde_json::Value = reqwest::get(format!("{}/asyncapi.json", s.http_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(
        all.len() > 40,
        "expected many references, got {}",
        all.len()
    );
    for r in all {
        assert!(resolve(&doc, r).is_some(), "unresolved $ref {r}");
    }
    let addresses: Vec<&str> = doc["channels"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|c| c["address"].as_str())
        .collect();
    for address in [
        "/v1/stream/{channel}",
        "/v1/ws",
        "petstore/orders/new",
        "petstore/orders/{id}/status",
        "petstore/pets/new",
        "petstore/pets/{id}/status",
        "petstore/inventory",
        "petstore/events/{type}",
        "petstore/commands/orders",
        "/v1/payments/webhook",
    ] {
        assert!(
            addresses.contains(&address),
            "no channel {address}: {addresses:?}"
        );
    }
    for (name, op) in doc["operations"].as_object().unwrap() {
        assert!(
            matches!(op["action"].as_str(), Some("send" | "receive")),
            "{name}"
        );
    }
    // The event schema lists every event type of the core.
    let types = serde_json::to_string(&doc["components"]["schemas"]).unwrap();
    for t in petstore_core::EventType::ALL {
        assert!(types.contains(t.as_str()), "schema lacks {t}");
    }
    s.shutdown().await.unwrap();
}

/// `petstore-server mcp-stdio` as an MCP client launches it: a child process speaking
/// JSON-RPC on stdin/stdout (logs on stderr), with read and write tools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_stdio_serves_a_child_process_client() {
    use rmcp::ServiceExt;
    use rmcp::model::{CallToolRequestParams, ClientConfig};

    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_petstore-server"));
    cmd.arg("mcp-stdio").env("RUST_LOG", "warn");
    let transport = rmcp::transport::TokioChildProcess::new(cmd).expect("spawns");
    let client = tokio::time::timeout(LIMIT, ClientConfig::default().serve(transport))
        .await
        .expect("initialises in time")
        .expect("initialises");
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "search_pets"), "{tools:?}");
    let found = client
        .call_tool(
            CallToolRequestParams::new("search_pets").with_arguments(
                serde_json::json!({"species": "cat"})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_ne!(found.is_error, Some(true), "{found:?}");
    let cats = found.structured_content.expect("structured result");
    assert_eq!(cats["data"].as_array().unwrap().len(), 2, "{cats}");
    // The stdio principal may write.
    let created = client
        .call_tool(CallToolRequestParams::new("create_pet").with_arguments(
            serde_json::json!({"name": "Stdio", "species": "cat", "price": {"amount": "5.00", "currency": "USD"}})
                .as_object()
                .cloned()
                .unwrap(),
        ))
        .await
        .unwrap();
    assert_ne!(created.is_error, Some(true), "{created:?}");
    assert_eq!(created.structured_content.unwrap()["name"], "Stdio");
    client.cancel().await.unwrap();
}
