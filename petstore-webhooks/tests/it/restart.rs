//! A restart: a second `Webhooks` (new dispatcher, new server) on the webhook store the
//! first one used, as a process restarted on the same database. The in-memory store
//! stands in for the database here; the SQL store and the real binary get the same
//! scenario in the server's crash tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::support::{Harness, Receiver, TOLERANCE, fast_config};

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn delivery_resumes_from_each_cursor_after_a_restart() {
    let mut h = Harness::start(fast_config()).await;
    let mut pets = Receiver::ok().await;
    let mut all = Receiver::ok().await;
    let (pets_id, pets_secret) = h.create_endpoint(&pets.url, json!(["pet.*"])).await;
    let (all_id, _) = h.create_endpoint(&all.url, json!([])).await;
    let before = h.create_pet("Before").await;
    let mut received = [Vec::new(), Vec::new()];
    for (rx, ids) in [&mut pets, &mut all].into_iter().zip(&mut received) {
        let got = rx.next().await;
        assert_eq!(got.json()["data"]["id"], before.id.as_str());
        ids.push(got.header("webhook-id").to_owned());
    }
    for id in [&pets_id, &all_id] {
        h.wait_messages(id, "the first delivery", |m| {
            m.len() == 1 && m[0]["status"] == "succeeded"
        })
        .await;
    }

    h.stop().await;
    let down = [h.create_pet("Down 1").await, h.create_pet("Down 2").await];
    h.restart().await;

    // Each endpoint goes on after its cursor: the two new events, in order, and not
    // the one delivered before the restart.
    for (rx, ids) in [&mut pets, &mut all].into_iter().zip(&mut received) {
        for pet in &down {
            let got = rx.next().await;
            assert_eq!(got.json()["data"]["id"], pet.id.as_str());
            ids.push(got.header("webhook-id").to_owned());
        }
    }
    let head = h.store.head().await.unwrap().to_string();
    for (id, ids) in [&pets_id, &all_id].into_iter().zip(&received) {
        let messages = h
            .wait_messages(id, "three delivered messages", |m| {
                m.len() == 3 && m.iter().all(|m| m["status"] == "succeeded")
            })
            .await;
        // One message log across both processes, newest first.
        let listed: Vec<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
        let sent: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
        assert_eq!(listed, sent);
        h.wait_endpoint(id, "the cursor at the head", |e| {
            e["cursor"] == head.as_str()
        })
        .await;
    }
    assert_eq!((pets.count(), all.count()), (3, 3));
    // The endpoint kept its secret.
    h.create_pet("After").await;
    let got = pets.next().await;
    pets_secret
        .verify(&got.headers, &got.body, TOLERANCE)
        .unwrap();
}

#[tokio::test]
async fn pending_retries_go_on_with_the_same_webhook_id_after_a_restart() {
    let config = fast_config()
        .retry_schedule(std::iter::once(Duration::ZERO).chain([Duration::from_millis(20); 50]));
    let mut h = Harness::start(config).await;
    let up = Arc::new(AtomicBool::new(false));
    let answer = up.clone();
    let mut rx = Receiver::start(move |_| {
        let up = answer.load(Ordering::SeqCst);
        async move {
            if up {
                StatusCode::OK.into_response()
            } else {
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            }
        }
    })
    .await;
    let (id, secret) = h.create_endpoint(&rx.url, json!(["pet.*"])).await;
    let pet = h.create_pet("Retried").await;
    h.wait_attempts(&id, "two failed attempts", |a| a.len() >= 2)
        .await;

    // Stopped while the message waits for its next attempt.
    h.dispatcher.take().unwrap().shutdown().await;
    let messages = h.messages(&id).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["status"], "pending");
    let webhook_id = messages[0]["id"].as_str().unwrap().to_owned();
    let made = messages[0]["attempts"].as_u64().unwrap();
    assert!(made >= 2, "{messages:#?}");

    up.store(true, Ordering::SeqCst);
    h.restart().await;
    let messages = h
        .wait_messages(&id, "the message delivered", |m| {
            m[0]["status"] == "succeeded"
        })
        .await;
    assert_eq!(messages.len(), 1, "the same message, not a new one");
    assert_eq!(messages[0]["id"], webhook_id.as_str());
    assert_eq!(messages[0]["attempts"], made + 1, "the count goes on");
    // Every request, before and after the restart: the same id, the same event,
    // signed with the same secret.
    for _ in 0..rx.count() {
        let got = rx.next().await;
        assert_eq!(got.header("webhook-id"), webhook_id);
        assert_eq!(got.json()["data"]["id"], pet.id.as_str());
        secret.verify(&got.headers, &got.body, TOLERANCE).unwrap();
    }

    let attempts = h.attempts(&id).await;
    let numbers: Vec<u64> = attempts
        .iter()
        .map(|a| a["attempt"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (1..=made + 1).rev().collect();
    assert_eq!(numbers, want, "one log across both processes");
    assert!(
        attempts
            .iter()
            .all(|a| a["message_id"] == webhook_id.as_str())
    );
    assert_eq!(attempts[0]["outcome"], "succeeded");
}

#[tokio::test]
async fn a_restart_keeps_the_back_off_of_a_pending_retry() {
    let config = fast_config().retry_schedule([Duration::ZERO, Duration::from_secs(1)]);
    let mut h = Harness::start(config).await;
    let mut rx = Receiver::start(|n| async move {
        if n == 1 {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        } else {
            StatusCode::OK.into_response()
        }
    })
    .await;
    let (id, _) = h.create_endpoint(&rx.url, json!([])).await;
    h.create_pet("Patient").await;
    let first = rx.next().await;
    let messages = h
        .wait_messages(&id, "the retry scheduled", |m| {
            m.first().is_some_and(|m| m["next_attempt_at"].is_string())
        })
        .await;
    let due = time(&messages[0]["next_attempt_at"]);

    h.restart().await;
    let second = rx.next().await;
    assert_eq!(first.header("webhook-id"), second.header("webhook-id"));
    let attempts = h
        .wait_attempts(&id, "the second attempt logged", |a| a.len() == 2)
        .await;
    assert_eq!(attempts[0]["attempt"], 2);
    let started = time(&attempts[0]["timestamp"]);
    assert!(
        started >= due,
        "the retry waited for its due time: started {started}, due {due}"
    );
}
