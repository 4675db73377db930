//! Server-Sent Events.

use std::time::Duration;

use futures_util::StreamExt;
use petstore_core::{
    Channel, EventFilter, EventType, LogConfig, NewOrder, PaymentRequest, PetStatus, ResumeToken,
    Scope,
};
use petstore_realtime::RealtimeConfig;
use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn events_arrive_with_offset_ids_types_and_envelopes() {
    let server = default_server().await;
    let mut stream = sse(&server.http("/v1/stream/pets"), &[]).await;

    let pet = add_pet(&server.store, "Rex").await;
    server
        .store
        .set_pet_status(&staff(), &pet.id, PetStatus::Sold)
        .await
        .unwrap();

    let created = next_sse(&mut stream).await;
    let raw: Value = serde_json::from_str(&created.data).unwrap();
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
        assert!(raw.get(field).is_some(), "envelope lacks `{field}`: {raw}");
    }
    let created = envelope(&created);
    assert_eq!(created.event_type(), EventType::PetCreated);
    assert_eq!(created.subject(), pet.id.as_str());
    assert_eq!(created.data_json()["name"], "Rex");

    let changed = envelope(&next_sse(&mut stream).await);
    assert_eq!(changed.event_type(), EventType::PetStatusChanged);
    assert_eq!(changed.data_json()["status"], "sold");
    assert_eq!(changed.offset().offset, created.offset().offset + 1);

    // The ids are exactly the log's offsets.
    let log = log_after(
        &server.store,
        ResumeToken::new(created.offset().epoch, 0),
        EventFilter::channels([Channel::Pets]),
    )
    .await;
    assert_eq!(log, vec![created, changed]);
}

#[tokio::test]
async fn the_opening_message_carries_the_retry_hint_and_start_position() {
    let config = RealtimeConfig::default().retry_hint(Duration::from_millis(1500));
    let server = serve(petstore_core::PetStore::in_memory(), config).await;
    add_pet(&server.store, "Before").await;
    let head = server.store.head().await.unwrap();

    let response = reqwest::get(server.http("/v1/stream?channels=pets"))
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let first = text.split("\n\n").next().unwrap();
    assert!(first.contains("retry: 1500"), "{first:?}");
    assert!(first.contains(&format!("id: {head}")), "{first:?}");
    assert!(!first.contains("data:"), "{first:?}");
}

#[tokio::test]
async fn a_resume_replays_exactly_the_missed_events() {
    let server = default_server().await;
    let store = &server.store;
    let url = server.http("/v1/stream/pets");

    let mut stream = sse(&url, &[]).await;
    add_pet(store, "Seen").await;
    let seen = envelope(&next_sse(&mut stream).await);
    drop(stream);

    // Missed while disconnected: two pet events, and an order event on another channel.
    let missed_a = add_pet(store, "Missed A").await;
    let missed_b = add_pet(store, "Missed B").await;
    store
        .place_order(&staff(), NewOrder::new(missed_a.id.clone()), None)
        .await
        .unwrap();

    let last_id = seen.offset().to_string();
    // The order made Missed A pending: a pet.status_changed event on `pets` too.
    let missed = log_after(store, seen.offset(), EventFilter::channels([Channel::Pets])).await;
    let subjects: Vec<_> = missed.iter().map(|e| e.subject()).collect();
    assert_eq!(
        subjects,
        [
            missed_a.id.as_str(),
            missed_b.id.as_str(),
            missed_a.id.as_str()
        ]
    );

    for (url, headers) in [
        (url.clone(), vec![("last-event-id", last_id.as_str())]),
        (format!("{url}?last_event_id={last_id}"), vec![]),
    ] {
        // (The second round also replays the first round's live event.)
        let expected =
            log_after(store, seen.offset(), EventFilter::channels([Channel::Pets])).await;
        let mut resumed = sse(&url, &headers).await;
        for want in &expected {
            assert_eq!(&envelope(&next_sse(&mut resumed).await), want);
        }
        // Nothing else was pending: the next message is the next live event.
        let live = add_pet(store, "Live").await;
        let next = envelope(&next_sse(&mut resumed).await);
        assert_eq!(next.event_type(), EventType::PetCreated);
        assert_eq!(next.subject(), live.id.as_str());
    }
}

#[tokio::test]
async fn one_stream_of_several_channels_resumes_them_all() {
    let server = default_server().await;
    let store = &server.store;
    let url = server.http("/v1/stream?channels=orders,pets");
    let both = EventFilter::channels([Channel::Pets, Channel::Orders]);
    // Order events need a token; staff's orders are an admin's to see.
    let bearer = format!("Bearer {}", token(store, "staff", [Scope::Admin]));
    let auth = [("authorization", bearer.as_str())];

    let mut stream = sse(&url, &auth).await;
    let pet = add_pet(store, "Bella").await;
    let first = envelope(&next_sse(&mut stream).await);
    assert_eq!(first.event_type(), EventType::PetCreated);
    drop(stream);

    // Events on both channels while away: order.created, pet.status_changed,
    // payment.succeeded, order.status_changed (+ pet.status_changed is not: the pet
    // stays pending), and chat, which is on neither channel.
    let placed = store
        .place_order(&staff(), NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap();
    store
        .pay_order(&staff(), &placed.order.id, PaymentRequest::default())
        .await
        .unwrap();
    store
        .post_chat(
            &staff(),
            petstore_core::NewChatMessage {
                room: "support".into(),
                text: "hello".into(),
            },
        )
        .await
        .unwrap();
    let expected = log_after(store, first.offset(), both.clone()).await;
    let types: Vec<_> = expected.iter().map(|e| e.event_type()).collect();
    assert!(
        types.contains(&EventType::OrderCreated) && types.contains(&EventType::PetStatusChanged)
    );
    assert!(types.contains(&EventType::PaymentSucceeded));
    assert!(!types.contains(&EventType::ChatMessage));

    let last = first.offset().to_string();
    let mut resumed = sse(&url, &[auth[0], ("last-event-id", &last)]).await;
    for want in &expected {
        assert_eq!(&envelope(&next_sse(&mut resumed).await), want);
    }
    let live = add_pet(store, "After").await;
    assert_eq!(
        envelope(&next_sse(&mut resumed).await).subject(),
        live.id.as_str()
    );
}

#[tokio::test]
async fn a_token_that_cannot_resume_gets_reset_then_live_events() {
    let store = store_with(LogConfig::default().retention(3));
    let server = serve(store, RealtimeConfig::default()).await;
    let url = server.http("/v1/stream/pets");

    let mut stream = sse(&url, &[]).await;
    add_pet(&server.store, "Old").await;
    let old = envelope(&next_sse(&mut stream).await).offset();
    drop(stream);
    for i in 0..5 {
        add_pet(&server.store, &format!("Pet {i}")).await;
    }
    let head = server.store.head().await.unwrap();

    let other_epoch = ResumeToken::new(head.epoch ^ 1, 1).to_string();
    let ahead = ResumeToken::new(head.epoch, head.offset + 100).to_string();
    for (since, reason) in [
        (old.to_string(), "expired"),
        (other_epoch, "epoch_mismatch"),
        ("not-a-token".to_owned(), "invalid_token"),
        (ahead, "invalid_token"),
    ] {
        let head = server.store.head().await.unwrap();
        let mut stream = sse(&url, &[("last-event-id", &since)]).await;
        let reset = next_sse(&mut stream).await;
        assert_eq!(reset.event, "reset", "{since}");
        // The browser's Last-Event-ID moves to the new position.
        assert_eq!(reset.id, head.to_string());
        let data: Value = serde_json::from_str(&reset.data).unwrap();
        assert_eq!(data["reason"], reason, "{since}");
        assert_eq!(data["resume_from"], head.to_string());
        assert!(data["message"].as_str().unwrap().len() > 10);

        // Then live, from the head it named: the next event is the next offset.
        let live = add_pet(&server.store, "Live").await;
        let event = envelope(&next_sse(&mut stream).await);
        assert_eq!(event.subject(), live.id.as_str());
        assert_eq!(event.offset().offset, head.offset + 1);
    }
}

#[tokio::test]
async fn bad_credentials_and_bad_channels_are_refused_with_problems() {
    let server = default_server().await;
    let good = token(&server.store, "bob", [Scope::PetsRead]);
    let client = reqwest::Client::new();

    let cases: Vec<(String, Option<String>, u16, &str)> = vec![
        (
            server.http("/v1/stream/pets"),
            Some("Bearer not.a.jwt".into()),
            401,
            "unauthenticated",
        ),
        (
            server.http("/v1/stream/pets?token=garbage"),
            None,
            401,
            "unauthenticated",
        ),
        (server.http("/v1/stream/chat"), None, 401, "unauthenticated"),
        (server.http("/v1/stream/petz"), None, 422, "invalid_input"),
        (
            server.http("/v1/stream?channels=pets,nope"),
            None,
            422,
            "invalid_input",
        ),
        (
            server.http("/v1/stream?channels=pets&types=pet.exploded"),
            None,
            422,
            "invalid_input",
        ),
        (
            server.http("/v1/stream/pets?channels=orders"),
            None,
            400,
            "bad_request",
        ),
    ];
    for (url, auth, status, code) in cases {
        let mut request = client.get(&url);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{url}"
        );
        if status == 401 {
            let challenge = response.headers()["www-authenticate"].to_str().unwrap();
            // A rejected token (header or `?token=`) says so; a missing one does not.
            assert_eq!(
                challenge.contains(r#"error="invalid_token""#),
                !url.ends_with("/chat"),
                "{url}: {challenge}"
            );
        }
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], code, "{url}: {problem}");
        assert_eq!(problem["status"], status);
    }

    // Too many channels for the configured limit.
    let limited = serve(
        petstore_core::PetStore::in_memory(),
        RealtimeConfig::default().max_subscriptions(2),
    )
    .await;
    let response = client
        .get(limited.http("/v1/stream?channels=pets,orders,inventory"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_input");
    assert_eq!(problem["errors"][0]["field"], "channels");

    // A valid token opens chat, by header or by query (EventSource cannot set headers).
    let _chat = sse(
        &server.http("/v1/stream/chat"),
        &[("authorization", &format!("Bearer {good}"))],
    )
    .await;
    let mut chat = sse(
        &server.http(&format!("/v1/stream/chat/support?token={good}")),
        &[],
    )
    .await;
    server
        .store
        .post_chat(
            &staff(),
            petstore_core::NewChatMessage {
                room: "support".into(),
                text: "hi".into(),
            },
        )
        .await
        .unwrap();
    let message = envelope(&next_sse(&mut chat).await);
    assert_eq!(message.event_type(), EventType::ChatMessage);
    assert_eq!(message.data_json()["text"], "hi");
}

#[tokio::test]
async fn one_pet_channel_and_type_filters_select_events() {
    let server = default_server().await;
    let store = &server.store;
    let rex = add_pet(store, "Rex").await;
    let mut one = sse(&server.http(&format!("/v1/stream/pets/{}", rex.id)), &[]).await;
    let mut created_only = sse(
        &server.http("/v1/stream?channels=pets&types=pet.created"),
        &[],
    )
    .await;

    add_pet(store, "Other").await;
    store
        .set_pet_status(&staff(), &rex.id, PetStatus::Sold)
        .await
        .unwrap();
    let last = add_pet(store, "Last").await;

    let event = envelope(&next_sse(&mut one).await);
    assert_eq!(
        (event.event_type(), event.subject()),
        (EventType::PetStatusChanged, rex.id.as_str())
    );
    assert_eq!(
        envelope(&next_sse(&mut created_only).await).data_json()["name"],
        "Other"
    );
    assert_eq!(
        envelope(&next_sse(&mut created_only).await).subject(),
        last.id.as_str()
    );
}

#[tokio::test]
async fn channel_access_follows_the_core_rules() {
    let server = serve(closed_store(), RealtimeConfig::default()).await;
    let pets_reader = token(&server.store, "p", [Scope::PetsRead]);
    let bearer = format!("Bearer {pets_reader}");
    let client = reqwest::Client::new();

    let status = |url: String, auth: Option<String>| {
        let mut request = client.get(url);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(server.http("/v1/stream/pets"), None).await, 401);
    assert_eq!(status(server.http("/v1/stream"), None).await, 401);
    assert_eq!(
        status(server.http("/v1/stream/orders"), Some(bearer.clone())).await,
        403
    );

    // Without `channels`, the stream carries everything the caller may read: here
    // pets, not orders.
    let mut all = sse(&server.http("/v1/stream"), &[("authorization", &bearer)]).await;
    let pet = add_pet(&server.store, "Rex").await;
    server
        .store
        .place_order(&staff(), NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap();
    let first = envelope(&next_sse(&mut all).await);
    assert_eq!(first.event_type(), EventType::PetCreated);
    let second = envelope(&next_sse(&mut all).await);
    assert_eq!(second.event_type(), EventType::PetStatusChanged);
    assert_eq!(
        second.offset().offset,
        first.offset().offset + 2,
        "order.created skipped"
    );
}
