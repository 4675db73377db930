//! Observability seen from outside: one `traceparent` followed from a REST write to the
//! webhook delivery and the MQTT 5 message it caused, and the real binary's console
//! (clean start, clean Ctrl-C, no token in the log, settings from a file and the
//! environment).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use petstore_core::PetStore;
use petstore_mqtt::broker::{BrokerConfig, EmbeddedBroker};
use petstore_server::ServerArgs;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::binary::Binary;
use crate::support::exposition::parse;
use crate::support::mqtt as mqtt_client;
use crate::support::{WAIT, new_pet, serve, start_with, within};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A REST `POST /v1/pets` with a `traceparent`: the webhook request it causes carries
/// it as a header, the MQTT 5 message as a user property, and both envelopes as the
/// CloudEvents distributed-tracing extension. A write without one causes pushes
/// without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_traceparent_follows_a_rest_write_to_the_webhook_and_mqtt() {
    // The embedded broker of the server drops event properties (rumqttd cannot hand
    // them to MQTT 3.1.1 subscribers), so the bridge publishes to a broker of the
    // test's own, as to any external MQTT 5 broker.
    let broker = EmbeddedBroker::start(
        PetStore::in_memory(),
        BrokerConfig::default().addr("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .expect("a broker");
    let (user, password) = broker.bridge_credentials();
    let s = start_with(ServerArgs {
        mqtt_url: Some(format!("mqtt://{}", broker.v5_addr())),
        mqtt_username: Some(user.to_owned()),
        mqtt_password: Some(password.expose().to_owned()),
        ..ServerArgs::ephemeral()
    })
    .await;

    // A webhook receiver (axum) that reports every request's headers and body.
    type Inbox = mpsc::UnboundedSender<(HeaderMap, Value)>;
    async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: String) -> StatusCode {
        let _ = inbox.send((headers, serde_json::from_str(&body).unwrap_or_default()));
        StatusCode::NO_CONTENT
    }
    let (inbox, mut deliveries) = mpsc::unbounded_channel();
    let receiver = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(inbox);
    let (addr, _receiver) = serve(receiver).await;
    let http = reqwest::Client::new();
    let registered = http
        .post(format!("{}/v1/webhooks", s.http_url()))
        .bearer_auth(&s.dev_token)
        .json(&json!({ "url": format!("http://{addr}/hook"), "events": ["pet.created"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);

    // An MQTT 5 subscriber (rumqttc) of new pets on the broker the bridge publishes to.
    let mut mqtt = mqtt_client::Client::start(
        mqtt_client::options(&format!("trace-{}", std::process::id()), broker.addr()),
        None,
    );
    mqtt.subscribe("petstore/pets/new").await;

    for traceparent in [Some(TRACEPARENT), None] {
        let mut post = http
            .post(format!("{}/v1/pets", s.http_url()))
            .bearer_auth(&s.dev_token)
            .json(&new_pet("Traced"));
        if let Some(t) = traceparent {
            post = post.header("traceparent", t);
        }
        let created = post.send().await.unwrap();
        assert_eq!(created.status(), 201);
        let pet: Value = created.json().await.unwrap();

        let (headers, body) = within("the webhook delivery", deliveries.recv())
            .await
            .unwrap();
        assert_eq!(body["data"]["id"], pet["id"], "{body}");
        assert_eq!(
            headers.get("traceparent").and_then(|v| v.to_str().ok()),
            traceparent,
            "the webhook request's traceparent header"
        );
        assert_eq!(body.get("traceparent").and_then(Value::as_str), traceparent);

        let publish = within("the MQTT message", mqtt.publishes.recv())
            .await
            .unwrap();
        let envelope: Value = serde_json::from_slice(&publish.payload).unwrap();
        assert_eq!(envelope["data"]["id"], pet["id"]);
        let properties = publish.properties.unwrap_or_default().user_properties;
        let property = properties
            .iter()
            .find(|(k, _)| k == "traceparent")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            property, traceparent,
            "the MQTT user property: {properties:?}"
        );
        assert_eq!(
            envelope.get("traceparent").and_then(Value::as_str),
            traceparent
        );
    }
    s.shutdown().await.unwrap();
}

/// Reads `reader` line by line into a channel, on a thread of its own.
fn lines(reader: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The real binary, started as a user starts it (settings from a file overridden by
/// the environment, JSON logs): until the banner and after Ctrl-C (SIGINT) it logs
/// nothing at WARN or above, never the development token (not even a request that
/// carries it as `?token=` and in `Authorization`), one INFO line per request with
/// the route template, no ANSI colour into a pipe, and it exits 0.
#[cfg(unix)]
#[test]
fn the_binary_starts_and_stops_quietly_and_never_logs_a_token() {
    let dir = std::env::temp_dir().join(format!("petstore-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("petstore.toml");
    // The file's HTTP address cannot be bound (port 1); the environment's wins.
    std::fs::write(
        &config,
        "http-addr = \"127.0.0.1:1\"\ngrpc-addr = \"127.0.0.1:0\"\nmqtt-addr = \"127.0.0.1:0\"\nlog-format = \"json\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_petstore-server"))
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .env("PETSTORE_HTTP_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server binary starts");
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());

    let mut banner = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while !banner.iter().any(|l: &String| l.contains("Press Ctrl-C")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match stdout.recv_timeout(left) {
            Ok(line) => banner.push(line),
            Err(_) => {
                let _ = child.kill();
                let log: Vec<String> = stderr.try_iter().collect();
                panic!("no banner within {WAIT:?}: {banner:#?}\nlog: {log:#?}");
            }
        }
    }
    let url = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("REST"))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the REST line")
        .to_owned();
    assert!(
        !url.ends_with(":1/v1/pets"),
        "the environment beats the file: {url}"
    );
    let token_line = banner.iter().position(|l| l.contains("Development token"));
    let token = banner[token_line.expect("the token line") + 1]
        .trim()
        .to_owned();

    // One request that carries the token twice.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{url}?token={token}&limit=1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);

    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let deadline = std::time::Instant::now() + WAIT;
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not stop within {WAIT:?} of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let rest: Vec<String> = stdout.iter().collect();
    let log: Vec<String> = stderr.iter().collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(exit.success(), "exit status {exit}; log: {log:#?}");
    assert!(rest.iter().any(|l| l.contains("Stopped.")), "{rest:?}");

    let mut finished = 0;
    for line in &log {
        assert!(!line.contains('\u{1b}'), "ANSI colour into a pipe: {line}");
        assert!(!line.contains(&token), "the token is logged: {line}");
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        let level = entry["level"].as_str().unwrap_or_default();
        assert!(
            level != "WARN" && level != "ERROR",
            "a {level} line at a clean start or stop: {line}"
        );
        if entry["fields"]["message"] == "request finished" {
            finished += 1;
            assert_eq!(entry["span"]["route"], "/v1/pets", "{line}");
            assert_eq!(entry["span"]["method"], "GET", "{line}");
            assert_eq!(entry["fields"]["status"], 200, "{line}");
            assert_eq!(entry["span"]["sub"], "developer", "{line}");
            assert!(entry["span"]["request_id"].is_string(), "{line}");
        }
    }
    assert_eq!(finished, 1, "one INFO line for the one request: {log:#?}");
}

/// A server that has served nothing yet (the binary, without MQTT) exposes, with its
/// help text, every series whose zero is already true: the open-stream gauges and
/// opened-stream counters of every kind, the rate-limit, cut-off and webhook counters
/// of every label value, the webhook queue. The log head and the events counter agree
/// with the seeded catalogue's events, and the head with `/v1/events`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_server_exposes_its_fixed_series_at_zero_with_their_help() {
    use petstore_core::telemetry::{LOG_EVENTS_TOTAL, LOG_HEAD_OFFSET, METRICS};
    let server = Binary::start(&[]).await;
    let text = reqwest::get(format!("{}/metrics", server.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = parse(&text);
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let found: Vec<f64> = samples
            .get(name)
            .into_iter()
            .flatten()
            .filter(|s| match label {
                Some((k, v)) => s.labels.get(k).map(String::as_str) == Some(v),
                None => s.labels.is_empty(),
            })
            .map(|s| s.value)
            .collect();
        assert_eq!(found.len(), 1, "one series {name} {label:?} in:\n{text}");
        found[0]
    };
    let mut checked = 0;
    for metric in METRICS.iter().filter(|m| m.zero_at_start) {
        assert!(
            text.contains(&format!("# HELP {} {}\n", metric.name, metric.help)),
            "no help for {} in:\n{text}",
            metric.name
        );
        let expected = |name: &str| {
            if name == LOG_EVENTS_TOTAL {
                None
            } else {
                Some(0.0)
            }
        };
        let series: Vec<Option<(&str, &str)>> = match metric.fixed_labels {
            Some((label, values)) => values.iter().map(|v| Some((label, *v))).collect(),
            None => vec![None],
        };
        for label in series {
            if let Some(want) = expected(metric.name) {
                assert_eq!(value(metric.name, label), want, "{} {label:?}", metric.name);
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} series checked");
    let head = value(LOG_HEAD_OFFSET, None);
    assert!(head > 0.0, "the seeded catalogue's events: {head}");
    assert_eq!(value(LOG_EVENTS_TOTAL, None), head);
    let retention = petstore_core::LogConfig::default().retention as f64;
    assert_eq!(
        value(petstore_core::telemetry::LOG_RETENTION_EVENTS, None),
        retention
    );
    let listed = logged_events(&server.http, &server.dev_token).await.len();
    assert_eq!(head, listed as f64);
}

/// The first 1,000 events of the log (polling, with a token that reads them all).
async fn logged_events(base: &str, token: &str) -> Vec<Value> {
    let page: Value = reqwest::Client::new()
        .get(format!("{base}/v1/events?limit=1000"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["events"].as_array().expect("events").clone()
}

/// A password in `--mqtt-url` is refused (credentials have flags of their own) and
/// never printed: the error shows the URL with `***` in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_mqtt_url_is_refused_without_being_printed() {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_petstore-server"))
        .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
        .args(["--mqtt-url", "mqtt://bridge:S3cretPw@127.0.0.1:1883"])
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let output = within("the server refusing the URL", run).await.unwrap();
    assert!(!output.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!printed.contains("S3cretPw"), "{printed}");
    assert!(printed.contains("mqtt://***@127.0.0.1:1883"), "{printed}");
}

/// An MCP tool call over HTTP runs in its HTTP request's context: the `traceparent`
/// the client sent travels in the event its write causes, as it does for REST and
/// GraphQL (rmcp runs the handler in a task of its own, outside the edge's scope).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_write_carries_its_callers_traceparent_into_the_event() {
    use axum::http::{HeaderName, HeaderValue};
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use rmcp::{ServiceExt as _, model::ClientConfig};

    let s = start_with(ServerArgs {
        no_mqtt: true,
        ..ServerArgs::ephemeral()
    })
    .await;
    let base = s.http_url();
    let headers = std::collections::HashMap::from([(
        HeaderName::from_static("traceparent"),
        HeaderValue::from_static(TRACEPARENT),
    )]);
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"))
        .auth_header(s.dev_token.clone())
        .custom_headers(headers);
    let client = within(
        "an MCP session",
        ClientConfig::default().serve(StreamableHttpClientTransport::from_config(config)),
    )
    .await
    .expect("the MCP session starts");
    let serde_json::Value::Object(arguments) = new_pet("Traced") else {
        unreachable!()
    };
    let params = CallToolRequestParams::new("create_pet".to_owned()).with_arguments(arguments);
    let result = within("create_pet", client.call_tool(params))
        .await
        .expect("tools/call");
    assert_ne!(result.is_error, Some(true), "{result:?}");
    let pet = result.structured_content.expect("the pet");
    let id = pet["id"].as_str().expect("an id");
    let events = logged_events(&base, &s.dev_token).await;
    let created = events
        .iter()
        .find(|e| e["subject"] == id)
        .unwrap_or_else(|| panic!("no event of {id} in {events:?}"));
    assert_eq!(created["type"], "pet.created");
    assert_eq!(created["traceparent"], TRACEPARENT, "{created}");
}

/// A WebSocket's caller is in its log lines however it authenticated: a `?token=` at
/// the handshake names it on the request's span, an `auth` frame on the stream's.
/// The token itself is in none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_callers_sub_is_logged_however_it_authenticated() {
    use crate::support::ws;

    let server = Binary::start(&[]).await;
    let token = server.dev_token.clone();
    let mut with_query = ws::open(&ws::url(&server.http, &format!("/v1/ws?token={token}"))).await;
    with_query.close(None).await.unwrap();
    let mut with_frame = ws::open(&ws::url(&server.http, "/v1/ws")).await;
    ws::send(&mut with_frame, &json!({ "type": "auth", "token": token })).await;
    ws::next_json(&mut with_frame, |f| f["type"] == "authenticated").await;
    with_frame.close(None).await.unwrap();
    within("both streams closed", async {
        while server.logged("stream closed").len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let closed = server.logged("stream closed");
    assert_eq!(closed.len(), 2, "{closed:#?}");
    for line in &closed {
        assert!(line.contains("sub=developer"), "{line}");
    }
    assert!(server.logged(&token).is_empty(), "the token is logged");
}
