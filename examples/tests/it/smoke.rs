//! Every example client, run as a user would (a child process) against a server on
//! free ports (`petstore-server`, started in-process). Listeners are given a resume
//! token (or a retained topic) so that no test depends on timing.

use std::process::Stdio;
use std::time::Duration;

use petstore_core::{Currency, Money, NewPet, Principal, Scope};
use petstore_server::{RunningServer, ServerArgs};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(60);

async fn start() -> RunningServer {
    petstore_server::start(ServerArgs::ephemeral())
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
