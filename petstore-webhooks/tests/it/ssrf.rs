//! The SSRF guard: private targets are refused, at creation for literal IPs and at
//! connect time for names that resolve to them.

use std::time::Duration;

use axum::http::StatusCode;
use petstore_webhooks::WebhookConfig;
use serde_json::json;

use crate::support::{Harness, Receiver, fast_config};

fn strict() -> WebhookConfig {
    WebhookConfig::default()
        .retry_schedule([Duration::ZERO])
        .jitter(0.0)
}

#[tokio::test]
async fn literal_private_targets_are_refused_at_creation() {
    let h = Harness::serve(strict()).await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://127.1/hook",
        "http://2130706433/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.10/hook",
        "http://172.20.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/hook",
        "http://[fd12:3456::1]/hook",
    ] {
        let (status, problem) = h.post("/v1/webhooks", json!({ "url": url })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "url");
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("refused"),
            "{problem}"
        );
    }
    let (_, list) = h.get("/v1/webhooks").await;
    assert!(list["data"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn names_resolving_to_loopback_are_refused_at_connect_time() {
    let h = Harness::start(strict()).await;
    let rx = Receiver::ok().await;
    // A name passes creation (DNS can change); the resolved address is what counts.
    let (id, _) = h
        .create_endpoint(&format!("http://localhost:{}/hook", rx.port), json!([]))
        .await;
    h.create_pet("Probe").await;
    let attempts = h
        .wait_attempts(&id, "a refused attempt", |a| !a.is_empty())
        .await;
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(error.contains("refused to connect to"), "{error}");
    assert!(attempts[0]["status_code"].is_null());
    h.wait_messages(&id, "the message failed", |m| {
        m.first().is_some_and(|m| m["status"] == "failed")
    })
    .await;
    assert_eq!(rx.count(), 0, "the receiver was never reached");
}

#[tokio::test]
async fn loopback_is_delivered_when_allowed() {
    let h = Harness::start(fast_config()).await;
    let mut rx = Receiver::ok().await;
    h.create_endpoint(&format!("http://localhost:{}/hook", rx.port), json!([]))
        .await;
    h.create_endpoint(&rx.url, json!([])).await;
    let pet = h.create_pet("Local").await;
    for _ in 0..2 {
        assert_eq!(rx.next().await.json()["data"]["id"], pet.id.as_str());
    }
    // Loopback only: private ranges stay closed.
    let (status, _) = h
        .post("/v1/webhooks", json!({ "url": "http://10.1.2.3/hook" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn allow_private_targets_opens_every_range() {
    let h = Harness::serve(strict().allow_private_targets(true)).await;
    for url in [
        "http://10.0.0.5/hook",
        "http://127.0.0.1:9/hook",
        "http://[fd00::1]/hook",
    ] {
        let (status, body) = h.post("/v1/webhooks", json!({ "url": url })).await;
        assert_eq!(status, StatusCode::CREATED, "{url}: {body}");
    }
}
