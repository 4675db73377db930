//! Outbound deliveries to real local receivers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use petstore_core::{EventFilter, NewOrder, PetQuery, PetStore, Principal, Scope};
use petstore_webhooks::Webhooks;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::support::{Harness, Receiver, TOLERANCE, WAIT, fast_config};

fn succeeded(messages: &[Value], n: usize) -> bool {
    messages.len() >= n && messages.iter().take(n).all(|m| m["status"] == "succeeded")
}

#[tokio::test]
async fn delivery_is_signed_per_standard_webhooks() {
    let h = Harness::start(fast_config()).await;
    let mut rx = Receiver::ok().await;
    let (id, secret) = h.create_endpoint(&rx.url, json!(["pet.*"])).await;

    let pet = h.create_pet("Fido").await;
    let got = rx.next().await;

    let verified = secret.verify(&got.headers, &got.body, TOLERANCE).unwrap();
    assert!(verified.id.starts_with("evt_"), "{}", verified.id);
    assert_eq!(got.header("content-type"), "application/json");
    assert!(got.header("user-agent").starts_with("petstore-webhooks/"));
    let signature = got.header("webhook-signature");
    assert!(
        signature.starts_with("v1,") && !signature.contains(' '),
        "{signature}"
    );

    let body = got.json();
    assert_eq!(body["type"], "pet.created");
    assert_eq!(body["id"], verified.id.as_str());
    assert_eq!(body["data"]["id"], pet.id.as_str());
    assert_eq!(body["data"]["name"], "Fido");
    assert_eq!(body["subject"], pet.id.as_str());
    assert_eq!(body["source"], "/petstore");
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["timestamp"], body["time"]);
    let offset = body["offset"].as_str().unwrap().to_owned();

    let attempts = h.wait_attempts(&id, "one attempt", |a| a.len() == 1).await;
    let a = &attempts[0];
    assert_eq!(a["attempt"], 1);
    assert_eq!(a["status_code"], 200);
    assert_eq!(a["outcome"], "succeeded");
    assert_eq!(a["message_id"], verified.id.as_str());
    assert_eq!(a["type"], "pet.created");
    assert!(a["latency_ms"].is_u64());
    assert!(a["error"].is_null());

    let messages = h
        .wait_messages(&id, "a succeeded message", |m| succeeded(m, 1))
        .await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["offset"], offset.as_str());
    let endpoint = h.endpoint(&id).await;
    assert_eq!(endpoint["cursor"], offset.as_str());
    assert!(endpoint["failing_since"].is_null());
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_the_same_webhook_id() {
    let h = Harness::start(fast_config()).await;
    let mut rx = Receiver::start(|n| async move {
        if n <= 2 {
            (StatusCode::INTERNAL_SERVER_ERROR, "try again").into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        }
    })
    .await;
    let (id, secret) = h.create_endpoint(&rx.url, json!([])).await;
    h.create_pet("Rover").await;

    let mut ids = Vec::new();
    for _ in 0..3 {
        let got = rx.next().await;
        secret.verify(&got.headers, &got.body, TOLERANCE).unwrap();
        assert_eq!(got.json()["type"], "pet.created");
        ids.push(got.header("webhook-id").to_owned());
    }
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");

    let attempts = h
        .wait_attempts(&id, "three attempts", |a| a.len() == 3)
        .await;
    let numbers: Vec<_> = attempts
        .iter()
        .map(|a| a["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1], "newest first");
    let codes: Vec<_> = attempts
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [204, 500, 500]);
    assert_eq!(attempts[1]["outcome"], "failed");
    assert_eq!(attempts[1]["response_body"], "try again");
    assert!(attempts.iter().all(|a| a["message_id"] == ids[0].as_str()));

    let messages = h.wait_messages(&id, "success", |m| succeeded(m, 1)).await;
    assert_eq!(messages[0]["attempts"], 3);
    assert_eq!(messages[0]["id"], ids[0].as_str());
    assert!(h.endpoint(&id).await["failing_since"].is_null());
    assert_eq!(rx.count(), 3);
}

#[tokio::test]
async fn exhausted_retries_fail_the_message_but_keep_the_endpoint() {
    let h = Harness::start(fast_config()).await;
    let rx = Receiver::start(|_| async { StatusCode::BAD_GATEWAY.into_response() }).await;
    let (id, _) = h.create_endpoint(&rx.url, json!([])).await;
    h.create_pet("Ghost").await;
    let messages = h
        .wait_messages(&id, "a failed message", |m| {
            m.first().is_some_and(|m| m["status"] == "failed")
        })
        .await;
    // The schedule has four entries: four attempts.
    assert_eq!(messages[0]["attempts"], 4);
    assert_eq!(messages[0]["last_status_code"], 502);
    assert_eq!(rx.count(), 4);
    let endpoint = h.endpoint(&id).await;
    assert_eq!(endpoint["enabled"], true);
    assert!(endpoint["failing_since"].is_string());
}

#[tokio::test]
async fn gone_disables_the_endpoint() {
    let h = Harness::start(fast_config()).await;
    let gone = Receiver::start(|_| async { StatusCode::GONE.into_response() }).await;
    let mut healthy = Receiver::ok().await;
    let (gone_id, _) = h.create_endpoint(&gone.url, json!([])).await;
    h.create_endpoint(&healthy.url, json!([])).await;

    h.create_pet("First").await;
    healthy.next().await;
    let endpoint = h
        .wait_endpoint(&gone_id, "the endpoint disabled", |e| e["enabled"] == false)
        .await;
    assert!(
        endpoint["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410"),
        "{endpoint}"
    );
    let messages = h.messages(&gone_id).await;
    assert_eq!(messages[0]["status"], "failed");
    assert_eq!(messages[0]["attempts"], 1, "410 is not retried");

    // Later events are not sent to it; the healthy endpoint shows they were dispatched.
    let second = h.create_pet("Second").await;
    let got = healthy.next().await;
    assert_eq!(got.json()["data"]["id"], second.id.as_str());
    assert_eq!(gone.count(), 1);
    let (status, problem) = h
        .post(&format!("/v1/webhooks/{gone_id}/test"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(gone.count(), 1);
}

#[tokio::test]
async fn an_endpoint_failing_for_the_configured_period_is_disabled() {
    let config = fast_config()
        .retry_schedule([0, 40, 40, 40, 40, 40, 40, 40, 40, 40].map(Duration::from_millis))
        .disable_after(Duration::from_millis(100));
    let h = Harness::start(config).await;
    let rx = Receiver::start(|_| async { StatusCode::SERVICE_UNAVAILABLE.into_response() }).await;
    let (id, _) = h.create_endpoint(&rx.url, json!([])).await;
    h.create_pet("Doomed").await;

    let endpoint = h
        .wait_endpoint(&id, "the endpoint disabled", |e| e["enabled"] == false)
        .await;
    let reason = endpoint["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("failed since"), "{reason}");
    let messages = h.messages(&id).await;
    assert_eq!(messages[0]["status"], "failed");
    let attempts = messages[0]["attempts"].as_u64().unwrap();
    assert!(
        (2..10).contains(&attempts),
        "disabled before the schedule ran out: {attempts}"
    );
    assert_eq!(rx.count() as u64, attempts);
}

#[tokio::test]
async fn a_slow_receiver_does_not_delay_a_fast_one() {
    let config = fast_config()
        .endpoint_concurrency(1)
        .global_concurrency(2)
        .response_timeout(Duration::from_secs(60));
    let h = Harness::start(config).await;
    // The slow receiver holds every request until the gate opens.
    let gate = Arc::new(Semaphore::new(0));
    let slow_gate = gate.clone();
    let slow = Receiver::start(move |_| {
        let gate = slow_gate.clone();
        async move {
            let _ = gate.acquire().await.unwrap();
            StatusCode::OK.into_response()
        }
    })
    .await;
    let mut fast = Receiver::ok().await;
    let (slow_id, _) = h.create_endpoint(&slow.url, json!([])).await;
    h.create_endpoint(&fast.url, json!([])).await;

    let mut created = BTreeSet::new();
    for name in ["One", "Two", "Three"] {
        created.insert(h.create_pet(name).await.id.to_string());
    }
    let mut delivered = BTreeSet::new();
    for _ in 0..3 {
        delivered.insert(
            fast.next().await.json()["data"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(delivered, created);
    // Per-endpoint concurrency 1: the slow receiver has one request in flight at most.
    assert!(slow.count() <= 1, "{}", slow.count());

    gate.add_permits(100);
    h.wait_messages(&slow_id, "the slow endpoint to catch up", |m| {
        succeeded(m, 3)
    })
    .await;
    assert_eq!(slow.count(), 3);
}

#[tokio::test]
async fn a_timed_out_attempt_is_logged_and_retried() {
    let config = fast_config().response_timeout(Duration::from_millis(500));
    let h = Harness::start(config).await;
    let rx = Receiver::start(|n| async move {
        if n == 1 {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        StatusCode::OK.into_response()
    })
    .await;
    let (id, _) = h.create_endpoint(&rx.url, json!([])).await;
    h.create_pet("Sleepy").await;
    let attempts = h.wait_attempts(&id, "two attempts", |a| a.len() == 2).await;
    assert!(attempts[1]["status_code"].is_null());
    let error = attempts[1]["error"].as_str().unwrap();
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(attempts[0]["status_code"], 200);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let h = Harness::start(fast_config()).await;
    let mut rx = Receiver::start(|n| async move {
        if n == 1 {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response()
        } else {
            StatusCode::OK.into_response()
        }
    })
    .await;
    h.create_endpoint(&rx.url, json!([])).await;
    h.create_pet("Patient").await;
    let first = rx.next().await;
    let second = rx.next().await;
    let gap = second.at - first.at;
    // The schedule says 10 ms; the receiver asked for a second.
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
    assert_eq!(first.header("webhook-id"), second.header("webhook-id"));
}

#[tokio::test]
async fn event_type_filters_select_what_is_delivered() {
    let h = Harness::start(fast_config()).await;
    let mut rx = Receiver::ok().await;
    let (id, _) = h.create_endpoint(&rx.url, json!(["order.created"])).await;
    let alice = Principal::new("alice", [Scope::OrdersWrite]);
    let pet = h.create_pet("Buddy").await;
    let order = h
        .store
        .place_order(&alice, NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap()
        .order;

    let got = rx.next().await;
    assert_eq!(got.json()["type"], "order.created");
    assert_eq!(got.json()["data"]["id"], order.id.as_str());
    // Once the cursor has passed every event, nothing else was queued.
    let head = h.store.head().await.unwrap().to_string();
    h.wait_endpoint(&id, "the cursor at the head", |e| {
        e["cursor"] == head.as_str()
    })
    .await;
    let messages = h.wait_messages(&id, "success", |m| succeeded(m, 1)).await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(rx.count(), 1);

    // Changing the filter takes effect for the next events.
    let (status, body) = h
        .patch(
            &format!("/v1/webhooks/{id}"),
            json!({ "events": ["pet.*"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"], json!(["pet.*"]));
    h.create_pet("Later").await;
    assert_eq!(rx.next().await.json()["type"], "pet.created");
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_during_the_grace_period() {
    let h = Harness::start(fast_config()).await;
    let mut rx = Receiver::ok().await;
    let (id, old) = h.create_endpoint(&rx.url, json!([])).await;
    let (status, rotated) = h
        .post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new: petstore_webhooks::WebhookSecret =
        rotated["secret"].as_str().unwrap().parse().unwrap();
    assert_ne!(new, old);
    assert!(rotated["previous_secret_expires_at"].is_string());
    let (_, shown) = h.get(&format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!(shown["secret"], new.expose().as_str());

    h.create_pet("Rotated").await;
    let got = rx.next().await;
    assert_eq!(got.header("webhook-signature").split(' ').count(), 2);
    assert!(old.verify(&got.headers, &got.body, TOLERANCE).is_ok());
    assert!(new.verify(&got.headers, &got.body, TOLERANCE).is_ok());
}

#[tokio::test]
async fn after_the_grace_period_only_the_new_secret_signs() {
    let h = Harness::start(fast_config().rotation_grace(Duration::ZERO)).await;
    let mut rx = Receiver::ok().await;
    let (id, old) = h.create_endpoint(&rx.url, json!([])).await;
    let (_, rotated) = h
        .post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({}))
        .await;
    let new: petstore_webhooks::WebhookSecret =
        rotated["secret"].as_str().unwrap().parse().unwrap();
    h.create_pet("Rotated").await;
    let got = rx.next().await;
    assert!(!got.header("webhook-signature").contains(' '));
    assert!(new.verify(&got.headers, &got.body, TOLERANCE).is_ok());
    assert!(old.verify(&got.headers, &got.body, TOLERANCE).is_err());
}

#[tokio::test]
async fn redeliver_sends_a_message_again_under_the_same_id() {
    let h = Harness::start(fast_config()).await;
    let mut rx = Receiver::ok().await;
    let (id, secret) = h.create_endpoint(&rx.url, json!([])).await;
    h.create_pet("Echo").await;
    let first = rx.next().await;
    let message_id = first.header("webhook-id").to_owned();
    h.wait_messages(&id, "success", |m| succeeded(m, 1)).await;

    let (status, message) = h
        .post(
            &format!("/v1/webhooks/{id}/messages/{message_id}/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{message}");
    let again = rx.next().await;
    assert_eq!(again.header("webhook-id"), message_id);
    assert_eq!(again.body, first.body);
    secret
        .verify(&again.headers, &again.body, TOLERANCE)
        .unwrap();
    let attempts = h.wait_attempts(&id, "two attempts", |a| a.len() == 2).await;
    assert_eq!(attempts[0]["attempt"], 2);

    let (status, _) = h
        .post(
            &format!("/v1/webhooks/{id}/messages/evt_nope/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .post(
            &format!("/v1/webhooks/ep_nope/messages/{message_id}/redeliver"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn replay_delivers_again_from_a_resume_token() {
    let h = Harness::start(fast_config()).await;
    let mut rx = Receiver::ok().await;
    let (id, _) = h.create_endpoint(&rx.url, json!(["pet.created"])).await;
    let before = h.store.head().await.unwrap();
    h.create_pet("A").await;
    h.create_pet("B").await;
    let mut first = BTreeSet::new();
    for _ in 0..2 {
        first.insert(rx.next().await.header("webhook-id").to_owned());
    }
    h.wait_messages(&id, "both delivered", |m| succeeded(m, 2))
        .await;

    let (status, body) = h
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            json!({ "since": before.to_string() }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let mut again = BTreeSet::new();
    for _ in 0..2 {
        again.insert(rx.next().await.header("webhook-id").to_owned());
    }
    assert_eq!(again, first);

    // Bad tokens: not a token, another epoch, ahead of the log.
    let (status, problem) = h
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            json!({ "since": "garbage" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let other_epoch = format!("{:016x}-1", before.epoch.wrapping_add(1));
    let (status, problem) = h
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            json!({ "since": other_epoch }),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{problem}");
    let ahead = petstore_core::ResumeToken::new(before.epoch, before.offset + 1_000);
    let (status, _) = h
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            json!({ "since": ahead.to_string() }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(rx.count(), 4);
}

#[tokio::test]
async fn the_test_event_is_delivered_signed() {
    let h = Harness::start(fast_config()).await;
    let mut rx = Receiver::ok().await;
    let (id, secret) = h.create_endpoint(&rx.url, json!(["order.created"])).await;
    let (status, message) = h.post(&format!("/v1/webhooks/{id}/test"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{message}");
    let got = rx.next().await;
    let verified = secret.verify(&got.headers, &got.body, TOLERANCE).unwrap();
    assert_eq!(verified.id, message["id"].as_str().unwrap());
    assert!(verified.id.starts_with("test_"));
    let body = got.json();
    assert_eq!(body["type"], "webhook.test");
    assert_eq!(body["data"]["endpoint_id"], id.as_str());
    assert!(body["timestamp"].is_string());
}

#[tokio::test]
async fn events_wait_in_the_log_while_the_dispatcher_is_stopped() {
    let mut h = Harness::start(fast_config()).await;
    let mut rx = Receiver::ok().await;
    let (id, _) = h.create_endpoint(&rx.url, json!(["pet.*"])).await;
    h.create_pet("Before").await;
    rx.next().await;
    h.wait_messages(&id, "success", |m| succeeded(m, 1)).await;
    h.dispatcher.take().unwrap().shutdown().await;

    let while_stopped = h.create_pet("While stopped").await;
    let (status, _) = h.post(&format!("/v1/webhooks/{id}/test"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(rx.count(), 1);

    h.dispatcher = Some(h.webhooks.spawn_dispatcher());
    let mut types = BTreeSet::new();
    for _ in 0..2 {
        let got = rx.next().await.json();
        if got["type"] == "pet.created" {
            assert_eq!(got["data"]["id"], while_stopped.id.as_str());
        }
        types.insert(got["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        types,
        BTreeSet::from(["pet.created".to_owned(), "webhook.test".to_owned()])
    );
}

#[tokio::test]
async fn a_second_concurrent_dispatcher_run_returns_at_once() {
    let h = Harness::start(fast_config()).await;
    tokio::time::timeout(WAIT, h.webhooks.run())
        .await
        .expect("the second run returns immediately");
}

#[tokio::test]
async fn cancelling_the_shutdown_token_stops_the_dispatcher() {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let webhooks = Webhooks::new(PetStore::in_memory(), fast_config(), shutdown.clone());
    let run = tokio::spawn({
        let webhooks = webhooks.clone();
        async move { webhooks.run().await }
    });
    tokio::time::timeout(WAIT, async {
        while !webhooks.is_dispatching() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a dispatcher runs");
    shutdown.cancel();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("run() returns at shutdown")
        .unwrap();
    assert!(!webhooks.is_dispatching());
    // After shutdown a new dispatcher stops at once.
    let late = webhooks.spawn_dispatcher();
    tokio::time::timeout(WAIT, late.shutdown())
        .await
        .expect("a dispatcher spawned after shutdown ends");
}

#[tokio::test]
async fn https_targets_go_through_tls() {
    let h = Harness::start(fast_config().retry_schedule([Duration::ZERO])).await;
    let rx = Receiver::ok().await;
    // The receiver speaks plain HTTP: the TLS handshake fails, and that is logged.
    let url = format!("https://127.0.0.1:{}/hook", rx.port);
    let (id, _) = h.create_endpoint(&url, json!([])).await;
    h.create_pet("Secure").await;
    let attempts = h.wait_attempts(&id, "one attempt", |a| a.len() == 1).await;
    assert!(attempts[0]["status_code"].is_null(), "{:#?}", attempts[0]);
    assert!(attempts[0]["error"].is_string());
    assert_eq!(rx.count(), 0);
}

#[tokio::test]
async fn delivered_orders_carry_the_contract_payload() {
    let h = Harness::start(fast_config()).await;
    let mut rx = Receiver::ok().await;
    h.create_endpoint(&rx.url, json!(["order.created"])).await;
    let pets = h
        .store
        .pets(&Principal::anonymous(), &PetQuery::default())
        .await
        .unwrap();
    let alice = Principal::new("alice", [Scope::OrdersWrite]);
    let order = h
        .store
        .place_order(&alice, NewOrder::new(pets.data[0].id.clone()), None)
        .await
        .unwrap()
        .order;
    let body = rx.next().await.json();
    assert_eq!(body["type"], "order.created");
    assert_eq!(body["data"]["id"], order.id.as_str());
    assert_eq!(
        body["data"]["total"]["amount"],
        order.total.amount.to_string()
    );
    // The same event, as the log has it.
    let logged = h
        .store
        .events(
            &Principal::system("t"),
            None,
            100,
            EventFilter::types(["order.created".parse().unwrap()]),
            Duration::ZERO,
        )
        .await
        .unwrap();
    let event: Value = serde_json::to_value(&*logged.events[0]).unwrap();
    for field in [
        "id",
        "type",
        "source",
        "time",
        "subject",
        "offset",
        "data",
        "specversion",
    ] {
        assert_eq!(body[field], event[field], "{field}");
    }
}
