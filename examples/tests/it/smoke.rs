//! Every example client, run as a user would (a child process) against a server on
//! free ports. Listeners are given a resume token (or a retained topic) so that no test
//! depends on timing.

use std::process::Stdio;
use std::time::Duration;

use petstore_core::{Currency, Money, NewPet, Principal, Scope};
use petstore_examples::server::{self, RunningServer, ServerArgs};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(60);

pub(crate) async fn start() -> RunningServer {
    server::start(ServerArgs::ephemeral())
        .await
        .expect("server starts")
}

fn bin(name: &str) -> Command {
    let path = match name {
        "rest-client" => env!("CARGO_BIN_EXE_rest-client"),
        "sse-listener" => env!("CARGO_BIN_EXE_sse-listener"),
        "poller" => env!("CARGO_BIN_EXE_poller"),
        "ws-chat" => env!("CARGO_BIN_EXE_ws-chat"),
        "grpc-client" => env!("CARGO_BIN_EXE_grpc-client"),
        "mqtt-subscriber" => env!("CARGO_BIN_EXE_mqtt-subscriber"),
        "graphql-client" => env!("CARGO_BIN_EXE_graphql-client"),
        "mcp-client" => env!("CARGO_BIN_EXE_mcp-client"),
        "webhook-receiver" => env!("CARGO_BIN_EXE_webhook-receiver"),
        "tour" => env!("CARGO_BIN_EXE_tour"),
        other => panic!("unknown example {other}"),
    };
    let mut cmd = Command::new(path);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs a client to completion and returns its stdout; fails on a non-zero exit.
async fn run(mut cmd: Command) -> String {
    let out = tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("client finishes in time")
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn staff() -> Principal {
    Principal::new("smoke", [Scope::PetsWrite, Scope::OrdersWrite])
}

fn pet(name: &str) -> NewPet {
    NewPet {
        name: name.into(),
        species: "dog".into(),
        breed: None,
        age: None,
        status: None,
        tags: vec![],
        photo_urls: vec![],
        price: Money::parse("10.00", Currency::USD).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_client_runs_its_crud_tour() {
    let s = start().await;
    let out = run({
        let mut c = bin("rest-client");
        c.args(["--url", &s.http_url(), "--token", &s.dev_token]);
        c
    })
    .await;
    assert!(out.contains("GET with If-None-Match -> 304"), "{out}");
    assert!(out.contains("(expected 412)"), "{out}");
    assert!(out.contains("DELETE -> 204"), "{out}");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_client_logs_in_with_a_password() {
    let s = start().await;
    let out = run({
        let mut c = bin("rest-client");
        c.args(["--url", &s.http_url()]);
        c
    })
    .await;
    assert!(out.contains("created pet_"), "{out}");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_listener_and_poller_receive_a_new_pet() {
    let s = start().await;
    let head = s.store.head().await.unwrap().to_string();
    let created = s.store.create_pet(&staff(), pet("Smoky")).await.unwrap();
    let sse = run({
        let mut c = bin("sse-listener");
        c.args([
            "--url",
            &s.http_url(),
            "--token",
            &s.dev_token,
            "--channel",
            "pets",
            "--last-event-id",
            &head,
            "--count",
            "1",
        ]);
        c
    });
    let poll = run({
        let mut c = bin("poller");
        c.args([
            "--url",
            &s.http_url(),
            "--since",
            &head,
            "--count",
            "1",
            "--wait",
            "1",
        ]);
        c
    });
    let (sse, poll) = tokio::join!(sse, poll);
    for out in [&sse, &poll] {
        assert!(
            out.contains("pet.created") && out.contains(created.id.as_str()),
            "{out}"
        );
    }
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_chat_sends_and_receives_a_message() {
    let s = start().await;
    let out = run({
        let mut c = bin("ws-chat");
        c.args([
            "--url",
            &s.http_url(),
            "--token",
            &s.dev_token,
            "--say",
            "hello from smoke",
            "--count",
            "1",
        ]);
        c
    })
    .await;
    assert!(out.contains("hello from smoke"), "{out}");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_client_lists_gets_and_watches() {
    let s = start().await;
    let grpc = format!("http://{}", s.grpc_addr.expect("gRPC is on"));
    let out = run({
        let mut c = bin("grpc-client");
        c.args([
            "--url",
            &s.http_url(),
            "--token",
            &s.dev_token,
            "--grpc",
            &grpc,
        ]);
        c
    })
    .await;
    assert!(
        out.contains("ListPets (streaming):") && out.contains("Rex"),
        "{out}"
    );
    assert!(out.contains("pet.created"), "{out}");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_subscriber_gets_retained_pet_status() {
    let s = start().await;
    let mqtt = format!("mqtt://{}", s.mqtt_addr.expect("MQTT is on"));
    // Retained `pets/{id}/status` messages arrive on subscribe: no race with publishing.
    let out = run({
        let mut c = bin("mqtt-subscriber");
        c.args([
            "--mqtt",
            &mqtt,
            "--topic",
            "petstore/pets/+/status",
            "--count",
            "1",
        ]);
        c
    })
    .await;
    assert!(
        out.contains("petstore/pets/pet_") && out.contains("pet."),
        "{out}"
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_client_queries_and_subscribes() {
    let s = start().await;
    let out = run({
        let mut c = bin("graphql-client");
        c.args(["--url", &s.http_url(), "--token", &s.dev_token]);
        c
    })
    .await;
    assert!(
        out.contains(r#""name":"Rex","status":"AVAILABLE""#),
        "{out}"
    );
    assert!(
        out.contains(r#"subscription event: "pet.created""#),
        "{out}"
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_client_lists_and_calls_tools() {
    let s = start().await;
    let out = run({
        let mut c = bin("mcp-client");
        c.args(["--url", &s.http_url(), "--token", &s.dev_token]);
        c
    })
    .await;
    assert!(
        out.contains(" tools:") && out.contains("search_pets"),
        "{out}"
    );
    assert!(out.contains(r#"get_inventory -> {"available":7"#), "{out}");
    assert!(
        out.contains("prompt recommend_pet -> 1 message(s)"),
        "{out}"
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tour_shows_one_order_on_every_push_pattern() {
    let out = run(bin("tour")).await;
    for pattern in [
        "SSE",
        "WebSocket",
        "GraphQL subscription",
        "gRPC WatchOrders",
        "MQTT",
        "webhook",
        "polling",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(pattern))
            .unwrap_or_else(|| panic!("no {pattern} line:\n{out}"));
        assert!(line.contains("ms") && line.contains("evt_"), "{line}");
    }
    assert!(
        out.contains("every pattern delivered the same event"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receiver_registers_and_verifies_a_delivery() {
    let s = start().await;
    let mut child = {
        let mut c = bin("webhook-receiver");
        c.args([
            "--url",
            &s.http_url(),
            "--token",
            &s.dev_token,
            "--events",
            "pet.*",
            "--count",
            "1",
        ]);
        c.spawn().unwrap()
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Once registered, the endpoint follows the log from the head: create a pet then.
    let registered = tokio::time::timeout(LIMIT, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        registered.contains("registered as endpoint"),
        "{registered}"
    );
    let created = s.store.create_pet(&staff(), pet("Hooky")).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            rest.push(line);
        }
    })
    .await
    .expect("the receiver exits after one event");
    let exit = child.wait().await.unwrap();
    let text = rest.join("\n");
    assert!(exit.success(), "{exit:?}\n{text}");
    assert!(
        text.contains("verified pet.created") && text.contains(created.id.as_str()),
        "{text}"
    );
    assert!(text.contains("removed endpoint"), "{text}");
    s.shutdown().await.unwrap();
}

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
