//! Two server processes on one PostgreSQL database are one store: a write on either is
//! the same event (id, offset, envelope) on both, over SSE and polling here and over
//! every other channel in [`events`]; each event reaches each webhook endpoint once;
//! the order/pet state machine and idempotency keys hold across them ([`orders`]); and
//! when the instance holding the webhook lease is killed, the other delivers within
//! 10 s, losing nothing; the same for the MQTT bridge to a shared broker. Needs
//! `PETSTORE_TEST_DATABASE_URL` (and `PETSTORE_TEST_MOSQUITTO_URL` for the bridge):
//! without them the tests say that they skip; with `PETSTORE_REQUIRE_ALL` set they fail.

mod events;
mod orders;

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::process::{
    Instance, Receiver, all_events_after, events_page, mosquitto, new_postgres_database, next,
    offset, postgres_cluster, sse_data,
};
use crate::support::{new_pet, within};

/// How long the surviving instance may take to deliver after the holder dies.
const TAKEOVER: Duration = Duration::from_secs(10);

async fn create_pet(client: &reqwest::Client, on: &Instance, name: &str) -> String {
    let response = client
        .post(format!("{}/v1/pets", on.url))
        .bearer_auth(&on.token)
        .json(&new_pet(name))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let pet: Value = response.json().await.unwrap();
    pet["id"].as_str().unwrap().to_owned()
}

/// The ids of the `pet.created` events after `since`, as polled from `on`.
async fn created_events(client: &reqwest::Client, on: &Instance, since: &str) -> Vec<String> {
    all_events_after(client, on, since)
        .await
        .into_iter()
        .filter(|e| e["type"] == "pet.created")
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether the endpoint's message log (as `on` lists it) has every message of `ids`
/// succeeded.
async fn settled(client: &reqwest::Client, on: &Instance, endpoint: &str, ids: &[String]) -> bool {
    let messages: Value = client
        .get(format!(
            "{}/v1/webhooks/{endpoint}/messages?limit=100",
            on.url
        ))
        .bearer_auth(&on.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let succeeded: Vec<&str> = messages["data"]
        .as_array()
        .expect("a page of messages")
        .iter()
        .filter(|m| m["status"] == "succeeded")
        .filter_map(|m| m["id"].as_str())
        .collect();
    ids.iter().all(|id| succeeded.contains(&id.as_str()))
}

fn successes(deliveries: &[crate::support::process::Delivery]) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for d in deliveries.iter().filter(|d| d.status.is_success()) {
        *n.entry(d.id.clone()).or_default() += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_are_one_store() {
    let Some(cluster) = postgres_cluster() else {
        return;
    };
    let url = new_postgres_database(&cluster).await;
    let client = reqwest::Client::new();
    let receiver = Receiver::default();
    let hook = receiver.start().await;

    // A alone: it takes the webhook lease.
    let a = Instance::start(&url).await;
    assert!(a.store_line.contains("PostgreSQL"), "{}", a.store_line);
    let response = client
        .post(format!("{}/v1/webhooks", a.url))
        .bearer_auth(&a.token)
        .json(&json!({ "url": hook, "events": ["pet.created"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let endpoint: Value = response.json().await.unwrap();
    let endpoint = endpoint["id"].as_str().expect("an endpoint id").to_owned();
    let (_, baseline) = events_page(&client, &a, None).await;
    create_pet(&client, &a, "First").await;
    receiver
        .wait_until("A's first delivery", Duration::from_secs(20), |d| {
            !d.is_empty()
        })
        .await;

    // B joins; it does not deliver while A holds the lease.
    let b = Instance::start(&url).await;
    let mut on_a = sse_data(
        client
            .get(format!("{}/v1/stream/pets", a.url))
            .send()
            .await
            .unwrap(),
    );
    let mut on_b = sse_data(
        client
            .get(format!("{}/v1/stream/pets", b.url))
            .send()
            .await
            .unwrap(),
    );
    // A write on A is the same event on B, live and polled.
    let pet = create_pet(&client, &a, "Shared").await;
    let seen_a = next("the event on A's SSE", &mut on_a).await;
    let seen_b = next("the event on B's SSE", &mut on_b).await;
    assert_eq!(seen_a["subject"], pet.as_str());
    assert_eq!(seen_a, seen_b, "the same envelope on both instances");
    let before = offset(&seen_a);
    let since = format!(
        "{}",
        petstore_core::ResumeToken::new(before.epoch, before.offset - 1)
    );
    let (polled_b, _) = events_page(&client, &b, Some(&since)).await;
    assert_eq!(
        polled_b.first(),
        Some(&seen_a),
        "polling B gives the same event"
    );
    // And a write on B reaches A.
    let pet = create_pet(&client, &b, "Back").await;
    let seen_a = next("B's event on A's SSE", &mut on_a).await;
    assert_eq!(seen_a["subject"], pet.as_str());
    assert_eq!(seen_a, next("B's event on B's SSE", &mut on_b).await);
    // A's log head gauge counts B's event, which A did not append.
    let head = offset(&seen_a).offset as f64;
    crate::support::exposition::scrape_until(&a.url, "B's event in A's log head gauge", |s| {
        s.get(petstore_core::telemetry::LOG_HEAD_OFFSET, &[]) == head
    })
    .await;

    // Writes spread over both: each event reaches the endpoint exactly once.
    for i in 0..10 {
        let on = if i % 2 == 0 { &a } else { &b };
        create_pet(&client, on, &format!("Spread {i}")).await;
    }
    let expected = created_events(&client, &b, &baseline).await;
    assert_eq!(expected.len(), 13);
    receiver
        .wait_until("every event delivered", Duration::from_secs(20), |d| {
            let ok = successes(d);
            expected.iter().all(|id| ok.contains_key(id))
        })
        .await;
    // ...and A recorded them as delivered: killing it now loses no settlement, so
    // nothing of `expected` may come twice.
    within("A settling every delivery", async {
        while !settled(&client, &a, &endpoint, &expected).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Kill the lease holder right after writes it acknowledged; B takes over.
    for i in 0..3 {
        create_pet(&client, &a, &format!("Last words {i}")).await;
    }
    a.kill().await;
    let killed = tokio::time::Instant::now();
    for i in 0..5 {
        create_pet(&client, &b, &format!("After {i}")).await;
    }
    let all = created_events(&client, &b, &baseline).await;
    assert_eq!(all.len(), 13 + 3 + 5);
    receiver
        .wait_until(
            "B delivering every event after the kill",
            TAKEOVER + Duration::from_secs(20),
            |d| {
                let ok = successes(d);
                all.iter().all(|id| ok.contains_key(id))
            },
        )
        .await;
    let deliveries = receiver.deliveries();
    let after_kill = &all[all.len() - 5..];
    let last = deliveries
        .iter()
        .filter(|d| d.status.is_success() && after_kill.contains(&d.id))
        .map(|d| d.at)
        .max()
        .unwrap();
    assert!(
        last - killed <= TAKEOVER,
        "B delivered {:?} after the kill",
        last - killed
    );
    // Exactly once where no instance died mid-delivery.
    let ok = successes(&deliveries);
    for id in &expected {
        assert_eq!(ok[id], 1, "event {id} delivered {} times", ok[id]);
    }
    b.kill().await;
}

/// `pet.created` publishes of the pets in `ids` on `petstore/events/pet.created`,
/// counted per pet, until each was seen (within `limit`); returns the counts and when
/// the last new one arrived.
async fn count_publishes(
    client: &mut crate::support::mqtt::Client,
    ids: &[String],
    counts: &mut HashMap<String, usize>,
    limit: Duration,
) -> tokio::time::Instant {
    let mut last = tokio::time::Instant::now();
    tokio::time::timeout(limit, async {
        while !ids.iter().all(|id| counts.contains_key(id)) {
            let publish = client.publishes.recv().await.expect("the client runs");
            let event: Value = serde_json::from_slice(&publish.payload).expect("an envelope");
            if let Some(subject) = event["subject"].as_str()
                && ids.iter().any(|id| id == subject)
            {
                *counts.entry(subject.to_owned()).or_default() += 1;
                last = tokio::time::Instant::now();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for MQTT publishes; seen {counts:?}"));
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_mqtt_bridge_per_cluster_with_failover() {
    let Some(cluster) = postgres_cluster() else {
        return;
    };
    let Some(broker) = mosquitto() else {
        return;
    };
    let url = new_postgres_database(&cluster).await;
    let client = reqwest::Client::new();
    let broker_addr: std::net::SocketAddr = broker
        .trim_start_matches("mqtt://")
        .parse()
        .expect("mqtt://host:port");
    let mut mqtt = crate::support::mqtt::Client::start(
        crate::support::mqtt::options(
            &format!("cluster-{}", uuid::Uuid::new_v4().simple()),
            broker_addr,
        ),
        None,
    );
    mqtt.subscribe("petstore/events/pet.created").await;

    // A first: it takes the bridge lease; B stands by.
    let a = Instance::start_with(&url, &["--mqtt-url", &broker]).await;
    let first = vec![create_pet(&client, &a, "Before B").await];
    let mut counts = HashMap::new();
    count_publishes(&mut mqtt, &first, &mut counts, Duration::from_secs(20)).await;
    let b = Instance::start_with(&url, &["--mqtt-url", &broker]).await;
    let ready = client
        .get(format!("{}/readyz", b.url))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(ready, StatusCode::OK, "standing by is ready");
    let mut before: Vec<String> = first;
    for i in 0..6 {
        let on = if i % 2 == 0 { &a } else { &b };
        before.push(create_pet(&client, on, &format!("Both {i}")).await);
    }
    count_publishes(&mut mqtt, &before, &mut counts, Duration::from_secs(20)).await;
    // Long enough for the holder to save the acknowledged position.
    tokio::time::sleep(Duration::from_secs(1)).await;

    a.kill().await;
    let killed = tokio::time::Instant::now();
    let mut after = Vec::new();
    for i in 0..3 {
        after.push(create_pet(&client, &b, &format!("After {i}")).await);
    }
    let last = count_publishes(
        &mut mqtt,
        &after,
        &mut counts,
        TAKEOVER + Duration::from_secs(20),
    )
    .await;
    assert!(
        last - killed <= TAKEOVER,
        "B published {:?} after the kill",
        last - killed
    );
    // Give a duplicate time to show, then: every event published exactly once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(publish) = mqtt.publishes.try_recv() {
        let event: Value = serde_json::from_slice(&publish.payload).unwrap();
        if let Some(n) = event["subject"].as_str().and_then(|s| counts.get_mut(s)) {
            *n += 1;
        }
    }
    for id in before.iter().chain(&after) {
        assert_eq!(counts[id], 1, "pet {id} published {} times", counts[id]);
    }
    b.kill().await;
}
