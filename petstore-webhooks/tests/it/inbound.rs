//! `POST /v1/payments/webhook`: verified, deduplicated payment notices.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use petstore_core::{EventFilter, NewOrder, Order, OrderStatus, PetQuery, Principal, Scope};
use petstore_webhooks::{Signer, WebhookSecret};
use serde_json::{Value, json};

use crate::support::{Harness, fast_config};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn harness() -> Harness {
    Harness::serve(fast_config().payments_secret(SECRET.parse::<WebhookSecret>().unwrap())).await
}

async fn place_order(h: &Harness) -> Order {
    let pets = h
        .store
        .pets(&Principal::anonymous(), &PetQuery::default())
        .await
        .unwrap();
    let pet = pets
        .data
        .iter()
        .find(|p| p.status == petstore_core::PetStatus::Available)
        .unwrap();
    let alice = Principal::new("alice", [Scope::OrdersWrite]);
    h.store
        .place_order(&alice, NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap()
        .order
}

async fn order(h: &Harness, order: &Order) -> Order {
    h.store
        .order(&Principal::system("t"), &order.id)
        .await
        .unwrap()
}

async fn payment_events(h: &Harness) -> Vec<Value> {
    h.store
        .events(
            &Principal::system("t"),
            None,
            1000,
            EventFilter::types(["payment.*".parse().unwrap()]),
            Duration::ZERO,
        )
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| serde_json::to_value(&**e).unwrap())
        .collect()
}

fn signed(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
    Signer::new(secret.parse().unwrap()).headers(id, timestamp, body)
}

async fn deliver(h: &Harness, headers: HeaderMap, body: Vec<u8>) -> (StatusCode, Value) {
    let resp = h
        .http
        .post(h.url("/v1/payments/webhook"))
        .headers(headers)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn notice(kind: &str, order: &Order) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": kind,
        "timestamp": "2026-11-27T10:00:00Z",
        "data": { "order_id": order.id, "reference": "pi_123", "amount": 100 },
    }))
    .unwrap()
}

#[tokio::test]
async fn payment_succeeded_approves_the_order_once_per_webhook_id() {
    let h = harness().await;
    let placed = place_order(&h).await;
    let body = notice("payment.succeeded", &placed);
    let headers = signed(SECRET, "msg_pay_1", now(), &body);

    let (status, reply) = deliver(&h, headers.clone(), body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["duplicate"], false);
    assert_eq!(reply["order_status"], "approved");
    let approved = order(&h, &placed).await;
    assert_eq!(approved.status, OrderStatus::Approved);
    let events = payment_events(&h).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "payment.succeeded");
    assert_eq!(events[0]["data"]["reference"], "pi_123");

    // The provider retries the same message: acknowledged, nothing changes.
    let (status, reply) = deliver(&h, headers, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["duplicate"], true);
    assert_eq!(order(&h, &placed).await, approved);
    assert_eq!(payment_events(&h).await.len(), 1);

    // A new message id for a paid order: refused, nothing changes.
    let (status, problem) = deliver(&h, signed(SECRET, "msg_pay_2", now(), &body), body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(order(&h, &placed).await, approved);
    assert_eq!(payment_events(&h).await.len(), 1);
}

#[tokio::test]
async fn payment_failed_keeps_the_order_placed() {
    let h = harness().await;
    let placed = place_order(&h).await;
    let body = serde_json::to_vec(&json!({
        "type": "payment.failed",
        "data": { "order_id": placed.id, "failure_reason": "insufficient funds" },
    }))
    .unwrap();
    let (status, reply) = deliver(&h, signed(SECRET, "msg_fail_1", now(), &body), body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["order_status"], "placed");
    assert_eq!(order(&h, &placed).await.status, OrderStatus::Placed);
    let events = payment_events(&h).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "payment.failed");
    assert_eq!(events[0]["data"]["failure_reason"], "insufficient funds");
    assert_eq!(
        events[0]["data"]["reference"], "msg_fail_1",
        "the message id stands in"
    );
}

#[tokio::test]
async fn bad_signatures_are_401_and_change_nothing() {
    let h = harness().await;
    let placed = place_order(&h).await;
    let body = notice("payment.succeeded", &placed);
    let other = WebhookSecret::generate().expose();

    let mut cases = vec![
        (
            "another secret",
            signed(&other, "msg_x", now(), &body),
            body.clone(),
        ),
        (
            "a tampered body",
            signed(SECRET, "msg_x", now(), &body),
            notice("payment.failed", &placed),
        ),
        ("no headers", HeaderMap::new(), body.clone()),
    ];
    let mut no_signature = signed(SECRET, "msg_x", now(), &body);
    no_signature.remove("webhook-signature");
    cases.push(("no signature", no_signature, body.clone()));
    for (what, headers, body) in cases {
        let (status, problem) = deliver(&h, headers, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("verification failed")
        );
    }
    assert_eq!(order(&h, &placed).await, placed);
    assert!(payment_events(&h).await.is_empty());

    // The refused id was not remembered: the genuine message still applies.
    let (status, reply) = deliver(&h, signed(SECRET, "msg_x", now(), &body), body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["duplicate"], false);
}

#[tokio::test]
async fn stale_or_future_timestamps_are_401_and_change_nothing() {
    let h = harness().await;
    let placed = place_order(&h).await;
    let body = notice("payment.succeeded", &placed);
    for (what, ts) in [("stale", now() - 600), ("future", now() + 600)] {
        let (status, problem) = deliver(&h, signed(SECRET, "msg_t", ts, &body), body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("timestamp"),
            "{problem}"
        );
    }
    assert_eq!(order(&h, &placed).await, placed);
    assert!(payment_events(&h).await.is_empty());
}

#[tokio::test]
async fn bad_bodies_are_rejected_and_change_nothing() {
    let h = harness().await;
    let placed = place_order(&h).await;
    let cases: Vec<(&str, Vec<u8>, StatusCode, Option<&str>)> = vec![
        ("not JSON", b"{oops".to_vec(), StatusCode::BAD_REQUEST, None),
        (
            "no type",
            br#"{"data":{}}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("type"),
        ),
        (
            "no order id",
            br#"{"type":"payment.succeeded","data":{"reference":"x"}}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("data.order_id"),
        ),
        (
            "not an order id",
            br#"{"type":"payment.succeeded","data":{"order_id":"pet_123"}}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("data.order_id"),
        ),
        (
            "unknown order",
            br#"{"type":"payment.succeeded","data":{"order_id":"ord_0000"}}"#.to_vec(),
            StatusCode::NOT_FOUND,
            None,
        ),
    ];
    for (i, (what, body, want, field)) in cases.into_iter().enumerate() {
        let headers = signed(SECRET, &format!("msg_bad_{i}"), now(), &body);
        let (status, problem) = deliver(&h, headers, body).await;
        assert_eq!(status, want, "{what}: {problem}");
        if let Some(field) = field {
            assert_eq!(problem["errors"][0]["field"], field, "{what}: {problem}");
        }
    }
    assert_eq!(order(&h, &placed).await, placed);
    assert!(payment_events(&h).await.is_empty());

    // Event types this endpoint does not handle are acknowledged and ignored.
    let body = br#"{"type":"payment.refunded","data":{"order_id":"ord_1"}}"#.to_vec();
    let (status, reply) = deliver(&h, signed(SECRET, "msg_other", now(), &body), body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["ignored"], true);
    assert_eq!(order(&h, &placed).await, placed);
}

#[tokio::test]
async fn without_a_secret_the_payments_webhook_is_unavailable() {
    let h = Harness::serve(fast_config()).await;
    let placed = place_order(&h).await;
    let body = notice("payment.succeeded", &placed);
    let (status, problem) = deliver(&h, signed(SECRET, "msg_1", now(), &body), body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(order(&h, &placed).await, placed);
}
