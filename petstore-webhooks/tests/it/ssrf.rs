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
        // Other spellings of loopback, private and special IPv4 addresses.
        "http://0177.0.0.1/hook",
        "http://0x7f000001/hook",
        "http://127.000.000.001/hook",
        "http://0/hook",
        "http://10.1/hook",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://255.255.255.255/hook",
        "http://[0:0:0:0:0:ffff:7f00:1]/hook",
        "http://[::ffff:7f00:1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[::127.0.0.1]/hook",
        "http://[::]/hook",
        "http://[fc00::1]/hook",
        "http://[fec0::1]/hook",
        "http://[ff02::1]/hook",
        // IPv4-translated (SIIT) forms of private addresses.
        "http://[::ffff:0:a00:1]/hook",
        "http://[::ffff:0:10.0.0.1]/hook",
        "http://[::ffff:0:7f00:1]/hook",
        "http://[::ffff:0:169.254.169.254]/latest/meta-data",
        // NAT64: the local-use prefix (RFC 8215) whatever it embeds, and the well-known
        // prefix embedding a private address.
        "http://[64:ff9b:1::a00:1]/hook",
        "http://[64:ff9b:1::10.0.0.1]/hook",
        "http://[64:ff9b:1::5db8:d70e]/hook",
        "http://[64:ff9b::10.0.0.1]/hook",
        "http://[64:ff9b::169.254.169.254]/latest/meta-data",
        "http://[64:ff9b::7f00:1]/hook",
        // 6to4 embedding a private, loopback or link-local address; Teredo.
        "http://[2002:a00:1::]/hook",
        "http://[2002:c0a8:101::1]/hook",
        "http://[2002:7f00:1::]/hook",
        "http://[2002:a9fe:a9fe::1]/latest/meta-data",
        "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/hook",
        // Documentation, discard-only and benchmarking ranges.
        "http://[2001:db8::1]/hook",
        "http://[2001:0db8:0000::0001]/hook",
        "http://[3fff::1]/hook",
        "http://[100::]/hook",
        "http://[100::1:2:3:4]/hook",
        "http://[2001:2::1]/hook",
        "http://198.18.0.1/hook",
        "http://198.19.255.254/hook",
        "http://3323068417/hook",
        "http://0xc6.0x12.0.1/hook",
        "http://[::ffff:198.18.0.1]/hook",
        "http://192.0.2.1/hook",
        "http://203.0.113.9/hook",
        "http://192.0.0.170/hook",
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

#[tokio::test]
async fn public_addresses_in_translated_forms_are_accepted() {
    // The guard refuses by range, not by form: a public address stays reachable through
    // NAT64 and 6to4, and the edges of the refused IPv4 ranges are public.
    let h = Harness::serve(strict()).await;
    for url in [
        "http://[64:ff9b::5db8:d70e]/hook",
        "http://[2002:5db8:d70e::1]/hook",
        "http://[2001:4860:4860::8888]/hook",
        "http://[2001:db9::1]/hook",
        "http://198.17.255.255/hook",
        "http://198.20.0.1/hook",
        "http://100.128.0.1/hook",
    ] {
        let (status, body) = h.post("/v1/webhooks", json!({ "url": url })).await;
        assert_eq!(status, StatusCode::CREATED, "{url}: {body}");
    }
}
