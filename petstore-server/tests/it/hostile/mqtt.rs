//! The MQTT table: commands on unknown topics, malformed, oversize and invalid
//! payloads, domain errors, a wildcard response topic, and a message over the broker's
//! limit. Each is answered (or dropped) without a change, and the bridge keeps serving.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::{Matrix, Setup, expect_eq, nested, setup};
use crate::support::{WAIT, mqtt, within};

const MQTT_ROWS: usize = 21;

/// An MQTT 5 client that sends commands (with a token allowed to run them, so that
/// each row tests its own fault) and collects replies. It subscribes to its reply
/// topic again whenever it (re)connects.
struct Mqtt {
    link: mqtt::Client,
    token: String,
}

/// Under `petstore/replies/{client id}/`, where the bridge answers and only this
/// client reads.
const REPLIES: &str = "petstore/replies/hostile-matrix/r";

impl Mqtt {
    async fn connect(addr: std::net::SocketAddr, token: &str) -> Self {
        let mut options = mqtt::options("hostile-matrix", addr);
        options.set_max_packet_size(Some(4 * 1024 * 1024));
        // A clean session: (re)subscribe on every connection.
        let mut link = mqtt::Client::start(options, Some(REPLIES));
        within("SUBACK", link.subacks.recv())
            .await
            .expect("event loop runs");
        Self {
            link,
            token: token.to_owned(),
        }
    }

    async fn publish_with(
        &self,
        topic: &str,
        payload: Vec<u8>,
        response_topic: &str,
        correlation: &str,
    ) {
        let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
            response_topic: Some(response_topic.to_owned()),
            correlation_data: Some(Bytes::copy_from_slice(correlation.as_bytes())),
            user_properties: vec![("authorization".to_owned(), format!("Bearer {}", self.token))],
            ..Default::default()
        };
        self.link
            .client
            .publish_with_properties(
                topic,
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                false,
                payload,
                props,
            )
            .await
            .expect("publish");
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>, correlation: &str) {
        self.publish_with(topic, payload, REPLIES, correlation)
            .await;
    }

    /// The reply with `correlation`, and any other replies that came before it (a
    /// row must not cause a reply it was not asked for).
    async fn reply(
        &mut self,
        correlation: &str,
        patience: Duration,
    ) -> (Option<Value>, Vec<String>) {
        let mut others = Vec::new();
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let reply = tokio::time::timeout_at(deadline, self.link.publishes.recv()).await;
            let reply = reply
                .map(|p| p.map(|p| (p.properties.and_then(|p| p.correlation_data), p.payload)));
            match reply {
                Ok(Some((c, payload))) if c.as_deref() == Some(correlation.as_bytes()) => {
                    return (serde_json::from_slice(&payload).ok(), others);
                }
                Ok(Some((c, payload))) => others.push(format!(
                    "{}: {}",
                    String::from_utf8_lossy(&c.unwrap_or_default()),
                    String::from_utf8_lossy(&payload)
                )),
                _ => return (None, others),
            }
        }
    }

    /// A command on an unknown topic: the bridge answers `not_found` and changes
    /// nothing, so the answer proves that the bridge is serving.
    async fn probe(&mut self, id: &str) -> Result<(), String> {
        self.publish("petstore/commands/probe", b"{}".to_vec(), id)
            .await;
        match self.reply(id, WAIT).await {
            (Some(v), others) if v["error"]["code"] == "not_found" && others.is_empty() => Ok(()),
            other => Err(format!("probe {id}: {other:?}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_refuses_hostile_commands_and_changes_nothing() {
    let Setup { s, rex, shelly, .. } = setup().await;
    let addr = s.mqtt_addr.expect("MQTT is on");
    let mut mqtt = Mqtt::connect(addr, &s.dev_token).await;
    // Readiness: the bridge subscribes to the command topics soon after start; ask
    // until it answers.
    within("the bridge answers commands", async {
        for i in 0.. {
            let id = format!("ready-{i}");
            mqtt.publish("petstore/commands/probe", b"{}".to_vec(), &id)
                .await;
            if mqtt
                .reply(&id, Duration::from_millis(500))
                .await
                .0
                .is_some()
            {
                break;
            }
        }
    })
    .await;
    // Late answers to earlier probes.
    while mqtt.link.publishes.try_recv().is_ok() {}

    let status = format!("petstore/commands/pets/{}/status", rex.id);
    let orders = "petstore/commands/orders".to_owned();
    let mut invalid_utf8 = br#"{"status":""#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe\"}");
    let padded = |size: usize| {
        format!(r#"{{"pet_id":"{}","pad":"{}"}}"#, rex.id, "x".repeat(size)).into_bytes()
    };
    let b = |s: &str| s.as_bytes().to_vec();

    let rows: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "unknown command topic",
            "petstore/commands/launch".into(),
            b("{}"),
            "not_found",
        ),
        (
            "unknown nested command topic",
            format!("petstore/commands/pets/{}/feed", rex.id),
            b(r#"{"status":"sold"}"#),
            "not_found",
        ),
        (
            "SQL injection as a pet id in the topic",
            "petstore/commands/pets/pet_1' OR '1'='1/status".into(),
            b(r#"{"status":"sold"}"#),
            "not_found",
        ),
        (
            "malformed JSON",
            status.clone(),
            b(r#"{"status":"#),
            "invalid_input",
        ),
        ("empty payload", status.clone(), Vec::new(), "invalid_input"),
        (
            "invalid UTF-8",
            status.clone(),
            invalid_utf8,
            "invalid_input",
        ),
        (
            "status is a number",
            status.clone(),
            b(r#"{"status":1}"#),
            "invalid_input",
        ),
        (
            "unknown enum value",
            status.clone(),
            b(r#"{"status":"flying"}"#),
            "invalid_input",
        ),
        (
            "unknown field",
            status.clone(),
            b(r#"{"status":"sold","owner":"mallory"}"#),
            "invalid_input",
        ),
        (
            "100000 nested arrays",
            status.clone(),
            format!(r#"{{"status":{}}}"#, nested(100_000)).into_bytes(),
            "invalid_input",
        ),
        (
            "JSON array payload",
            orders.clone(),
            b("[]"),
            "invalid_input",
        ),
        (
            "quantity beyond u32",
            orders.clone(),
            format!(r#"{{"pet_id":"{}","quantity":4294967296}}"#, rex.id).into_bytes(),
            "invalid_input",
        ),
        (
            "quantity 1e999",
            orders.clone(),
            format!(r#"{{"pet_id":"{}","quantity":1e999}}"#, rex.id).into_bytes(),
            "invalid_input",
        ),
        (
            "quantity 0",
            orders.clone(),
            format!(r#"{{"pet_id":"{}","quantity":0}}"#, rex.id).into_bytes(),
            "invalid_input",
        ),
        (
            "idempotency key is an object",
            orders.clone(),
            format!(
                r#"{{"pet_id":"{}","idempotency_key":{{"$ne":null}}}}"#,
                rex.id
            )
            .into_bytes(),
            "invalid_input",
        ),
        (
            "pet id with SQL injection",
            orders.clone(),
            b(r#"{"pet_id":"pet_1' OR '1'='1"}"#),
            "not_found",
        ),
        (
            "order for an unknown pet",
            orders.clone(),
            b(r#"{"pet_id":"pet_doesnotexist"}"#),
            "not_found",
        ),
        (
            "order for a sold pet",
            orders.clone(),
            format!(r#"{{"pet_id":"{}"}}"#, shelly.id).into_bytes(),
            "conflict",
        ),
        (
            "900 KiB payload",
            orders.clone(),
            padded(900 * 1024),
            "invalid_input",
        ),
    ];

    let mut matrix = Matrix::new("MQTT", &s.store).await;
    for (i, (name, topic, payload, code)) in rows.into_iter().enumerate() {
        let id = format!("row-{i}");
        mqtt.publish(&topic, payload, &id).await;
        let answer = match mqtt.reply(&id, WAIT).await {
            (Some(v), others) if others.is_empty() => {
                if v["ok"] != false {
                    Err(format!("expected ok:false, got {v}"))
                } else if v["error"]["message"].as_str().is_none_or(str::is_empty) {
                    Err(format!("no message: {v}"))
                } else {
                    expect_eq(
                        "reply code",
                        v["error"]["code"].as_str().unwrap_or(""),
                        code,
                    )
                    .map_err(|e| format!("{e}: {v}"))
                }
            }
            (reply, others) => Err(format!("reply {reply:?}, unexpected others {others:?}")),
        };
        let follow = mqtt.probe(&format!("after-{i}")).await;
        matrix.row(&s.store, name, answer, follow).await;
    }

    // A response topic with wildcards cannot be published to: no reply, and the
    // bridge keeps its broker connection and keeps serving.
    mqtt.publish_with(
        "petstore/commands/launch",
        b"{}".to_vec(),
        "petstore/replies/hostile-matrix/#",
        "wildcard",
    )
    .await;
    let follow = mqtt.probe("after-wildcard").await;
    let answer = match mqtt.reply("wildcard", Duration::ZERO).await {
        (None, others) if others.is_empty() => Ok(()),
        other => Err(format!("unexpected replies: {other:?}")),
    };
    matrix
        .row(&s.store, "wildcard response topic", answer, follow)
        .await;

    // Over the broker's 1 MiB limit: the broker drops the sender's connection (MQTT
    // has no error reply for it); the bridge never sees it and keeps serving.
    mqtt.publish(&orders, padded(1024 * 1024 + 1), "oversize")
        .await;
    let answer = match within("the broker drops the connection", mqtt.link.drops.recv()).await {
        Some(_why) => Ok(()),
        None => Err("the client task ended".into()),
    };
    let follow = match within("re-SUBACK", mqtt.link.subacks.recv()).await {
        Some(()) => mqtt.probe("after-oversize").await,
        None => Err("the client task ended".into()),
    };
    matrix
        .row(
            &s.store,
            "payload over the broker's 1 MiB limit",
            answer,
            follow,
        )
        .await;

    matrix.finish(MQTT_ROWS);
    drop(mqtt);
    s.shutdown().await.unwrap();
}
