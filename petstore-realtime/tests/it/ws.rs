//! WebSocket.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use petstore_core::{
    Channel, EventFilter, EventType, LogConfig, PetStatus, PetStore, ResumeToken, Scope,
};
use petstore_realtime::RealtimeConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

#[tokio::test]
async fn a_bad_token_is_refused_at_the_handshake() {
    let server = default_server().await;
    let expired = {
        // Signed by another authority: as bad as a forged one.
        let other = petstore_core::TokenAuthority::random(Duration::from_secs(60));
        other.issue("mallory", Scope::ALL).unwrap().access_token
    };
    for path in ["/v1/ws", "/v1/ws/chat"] {
        for token in ["garbage", expired.as_str()] {
            let url = server.ws_url(&format!("{path}?token={token}"));
            match tokio_tungstenite::connect_async(url).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status(), 401);
                    let body: Value =
                        serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                    assert_eq!(body["code"], "unauthenticated");
                }
                other => panic!("expected a refused handshake, got {other:?}"),
            }
        }
    }
    // A good one is accepted.
    let good = token(&server.store, "alice", [Scope::ChatWrite]);
    ws(&server.ws_url(&format!("/v1/ws?token={good}"))).await;
}

#[tokio::test]
async fn subscriptions_deliver_event_frames() {
    let server = default_server().await;
    let store = &server.store;
    let rex = add_pet(store, "Rex").await;
    let mut socket = ws(&server.ws_url("/v1/ws")).await;

    send(
        &mut socket,
        json!({"type": "subscribe", "channel": "pets", "id": "s1"}),
    )
    .await;
    let subscribed = expect(&mut socket, "subscribed").await;
    assert_eq!(subscribed["id"], "s1");
    assert_eq!(subscribed["recovered"], false);
    let position: ResumeToken = subscribed["position"].as_str().unwrap().parse().unwrap();
    assert_eq!(position, store.head().await.unwrap());
    subscribe(&mut socket, &format!("pets/{}", rex.id)).await;

    store
        .set_pet_status(&staff(), &rex.id, PetStatus::Sold)
        .await
        .unwrap();
    let bella = add_pet(store, "Bella").await;

    // Rex's change on both channels (per channel, in order), then Bella on `pets`.
    let mut frames = Vec::new();
    for _ in 0..3 {
        frames.push(expect(&mut socket, "event").await);
    }
    let on = |channel: &str| -> Vec<(EventType, String)> {
        frames
            .iter()
            .filter(|f| f["channel"] == channel)
            .map(|f| {
                let e = event_of(f);
                (e.event_type(), e.subject().to_owned())
            })
            .collect()
    };
    assert_eq!(
        on("pets"),
        vec![
            (EventType::PetStatusChanged, rex.id.to_string()),
            (EventType::PetCreated, bella.id.to_string())
        ]
    );
    assert_eq!(
        on(&format!("pets/{}", rex.id)),
        vec![(EventType::PetStatusChanged, rex.id.to_string())]
    );
    let first = event_of(&frames[0]);
    assert_eq!(first.offset().offset, position.offset + 1);
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let server = default_server().await;
    // Order events need a token; staff's orders are an admin's to see.
    let admin = token(&server.store, "staff", [Scope::Admin]);
    let mut socket = ws(&server.ws_url(&format!("/v1/ws?token={admin}"))).await;
    subscribe(&mut socket, "pets").await;
    subscribe(&mut socket, "orders").await;
    send(
        &mut socket,
        json!({"type": "unsubscribe", "channel": "pets", "id": 2}),
    )
    .await;
    let frame = expect(&mut socket, "unsubscribed").await;
    assert_eq!(
        (frame["channel"].as_str(), frame["id"].as_i64()),
        (Some("pets"), Some(2))
    );

    let pet = add_pet(&server.store, "Quiet").await;
    let placed = server
        .store
        .place_order(&staff(), petstore_core::NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap();
    // The first frame after unsubscribing is the order, not the pet events before it.
    let frame = expect(&mut socket, "event").await;
    assert_eq!(frame["channel"], "orders");
    assert_eq!(event_of(&frame).subject(), placed.order.id.as_str());
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_socket_survives() {
    let server = default_server().await;
    let store = &server.store;
    let reader = token(store, "reader", [Scope::PetsRead]);
    let mut socket = ws(&server.ws_url(&format!("/v1/ws?token={reader}"))).await;
    subscribe(&mut socket, "pets").await;
    let head = store.head().await.unwrap();

    let cases: Vec<(Message, &str)> = vec![
        (Message::text("this is not json"), "bad_request"),
        (Message::text("[1,2,3]"), "bad_request"),
        (Message::text(r#"{"channel":"pets"}"#), "bad_request"),
        (Message::text(r#"{"type":"dance"}"#), "bad_request"),
        (Message::text(r#"{"type":"subscribe"}"#), "bad_request"),
        (
            Message::text(r#"{"type":"subscribe","channel":"petz"}"#),
            "invalid_input",
        ),
        (
            Message::text(r#"{"type":"subscribe","channel":"pets"}"#),
            "already_subscribed",
        ),
        (
            Message::text(r#"{"type":"subscribe","channel":"orders","since":"yesterday"}"#),
            "bad_request",
        ),
        (
            Message::text(r#"{"type":"unsubscribe","channel":"orders"}"#),
            "not_subscribed",
        ),
        // No `chat:write` in this token: that comes before what is wrong with the
        // frame's fields (authorise, then validate).
        (
            Message::text(r#"{"type":"chat.send","room":"support","text":"hi"}"#),
            "forbidden",
        ),
        (
            Message::text(r#"{"type":"chat.send","room":7}"#),
            "forbidden",
        ),
        (Message::binary(vec![1u8, 2, 3]), "bad_request"),
    ];
    for (message, code) in cases {
        let shown = format!("{message:?}");
        socket.send(message).await.unwrap();
        let frame = expect(&mut socket, "error").await;
        assert_eq!(frame["code"], code, "{shown}: {frame}");
        assert!(frame["message"].as_str().unwrap().len() > 5, "{frame}");
    }
    // Ids are echoed on errors too.
    send(
        &mut socket,
        json!({"type": "subscribe", "channel": "nope", "id": 41}),
    )
    .await;
    let frame = expect(&mut socket, "error").await;
    assert_eq!(frame["id"], 41);

    // Nothing changed, and the connection still works.
    assert_eq!(store.head().await.unwrap(), head);
    send(&mut socket, json!({"type": "ping", "id": "p"})).await;
    assert_eq!(expect(&mut socket, "pong").await["id"], "p");
    let pet = add_pet(store, "Still here").await;
    let frame = expect(&mut socket, "event").await;
    assert_eq!(event_of(&frame).subject(), pet.id.as_str());
}

#[tokio::test]
async fn subscribe_since_recovers_exactly_the_missed_events() {
    let server = default_server().await;
    let store = &server.store;
    let mut socket = ws(&server.ws_url("/v1/ws")).await;
    subscribe(&mut socket, "pets").await;
    add_pet(store, "Seen").await;
    let seen = event_of(&expect(&mut socket, "event").await);
    socket.close(None).await.unwrap();

    let a = add_pet(store, "Missed A").await;
    store
        .place_order(&staff(), petstore_core::NewOrder::new(a.id.clone()), None)
        .await
        .unwrap();
    add_pet(store, "Missed B").await;
    let expected = log_after(store, seen.offset(), EventFilter::channels([Channel::Pets])).await;
    assert_eq!(expected.len(), 3);

    let mut socket = ws(&server.ws_url("/v1/ws")).await;
    send(
        &mut socket,
        json!({"type": "subscribe", "channel": "pets", "since": seen.offset()}),
    )
    .await;
    let subscribed = expect(&mut socket, "subscribed").await;
    assert_eq!(subscribed["recovered"], true);
    assert_eq!(subscribed["position"], seen.offset().to_string());
    for want in &expected {
        assert_eq!(&event_of(&expect(&mut socket, "event").await), want);
    }
    let live = add_pet(store, "Live").await;
    assert_eq!(
        event_of(&expect(&mut socket, "event").await).subject(),
        live.id.as_str()
    );
}

#[tokio::test]
async fn an_expired_since_is_reported_and_the_subscription_goes_live() {
    let server = serve(
        store_with(LogConfig::default().retention(2)),
        RealtimeConfig::default(),
    )
    .await;
    let store = &server.store;
    let old = store.head().await.unwrap();
    for i in 0..4 {
        add_pet(store, &format!("Pet {i}")).await;
    }
    let head = store.head().await.unwrap();
    let mut socket = ws(&server.ws_url("/v1/ws")).await;
    send(
        &mut socket,
        json!({"type": "subscribe", "channel": "pets", "since": old, "id": 1}),
    )
    .await;
    let error = expect(&mut socket, "error").await;
    assert_eq!(error["code"], "resume_expired");
    assert_eq!(error["reason"], "expired");
    assert_eq!(error["channel"], "pets");
    assert_eq!(error["resume_from"], head.to_string());
    let subscribed = expect(&mut socket, "subscribed").await;
    assert_eq!(subscribed["recovered"], false);
    assert_eq!(subscribed["position"], head.to_string());

    let live = add_pet(store, "Live").await;
    let event = event_of(&expect(&mut socket, "event").await);
    assert_eq!(event.subject(), live.id.as_str());
    assert_eq!(event.offset().offset, head.offset + 1);
}

#[tokio::test]
async fn chat_reaches_every_member_and_is_stored_as_events() {
    let server = default_server().await;
    let store = &server.store;
    let alice = token(store, "alice", [Scope::ChatWrite]);
    let bob = token(store, "bob", [Scope::PetsRead]);
    let mut a = ws(&server.ws_url(&format!("/v1/ws/chat?token={alice}"))).await;
    let mut b = ws(&server.ws_url(&format!("/v1/ws/chat?token={bob}"))).await;
    // /v1/ws/chat subscribes to `chat` on connect.
    assert_eq!(expect(&mut a, "subscribed").await["channel"], "chat");
    assert_eq!(expect(&mut b, "subscribed").await["channel"], "chat");
    // A third member follows one room only, on the plain endpoint.
    let mut c = ws(&server.ws_url(&format!("/v1/ws?token={bob}"))).await;
    subscribe(&mut c, "chat/billing").await;
    let head = store.head().await.unwrap();

    send(
        &mut a,
        json!({"type": "chat.send", "room": "support", "text": "  my dog ate my order  ", "id": 9}),
    )
    .await;
    let sent = expect(&mut a, "chat.sent").await;
    assert_eq!(sent["id"], 9);
    assert_eq!(sent["message"]["author"], "alice");

    for member in [&mut a, &mut b] {
        let frame = expect(member, "chat.message").await;
        assert_eq!(frame["channel"], "chat");
        assert_eq!(frame["message"]["room"], "support");
        assert_eq!(frame["message"]["author"], "alice");
        assert_eq!(frame["message"]["text"], "my dog ate my order");
        assert_eq!(frame["message"]["id"], sent["message"]["id"]);
        assert_eq!(event_of(&frame).event_type(), EventType::ChatMessage);
    }
    send(
        &mut a,
        json!({"type": "chat.send", "room": "billing", "text": "invoice?"}),
    )
    .await;
    expect(&mut a, "chat.sent").await;
    // `chat` is every room.
    assert_eq!(
        expect(&mut a, "chat.message").await["message"]["room"],
        "billing"
    );
    assert_eq!(
        expect(&mut b, "chat.message").await["message"]["room"],
        "billing"
    );
    let frame = expect(&mut c, "chat.message").await;
    assert_eq!(
        (frame["channel"].as_str(), frame["message"]["text"].as_str()),
        (Some("chat/billing"), Some("invoice?"))
    );

    // Persisted in the log.
    let log = log_after(store, head, EventFilter::channels([Channel::Chat])).await;
    let texts: Vec<_> = log.iter().map(|e| e.data_json()["text"].clone()).collect();
    assert_eq!(texts, vec![json!("my dog ate my order"), json!("invoice?")]);

    // Bob may read but not write; bad input changes nothing.
    send(
        &mut b,
        json!({"type": "chat.send", "room": "support", "text": "hi"}),
    )
    .await;
    assert_eq!(expect(&mut b, "error").await["code"], "forbidden");
    send(
        &mut a,
        json!({"type": "chat.send", "room": "Support!", "text": ""}),
    )
    .await;
    let error = expect(&mut a, "error").await;
    assert_eq!(error["code"], "invalid_input");
    let fields: Vec<_> = error["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, vec!["room", "text"]);
    assert_eq!(store.head().await.unwrap().offset, head.offset + 2);
}

#[tokio::test]
async fn first_frame_auth_authenticates_an_anonymous_connection() {
    let server = default_server().await;
    let store = &server.store;
    let mut socket = ws(&server.ws_url("/v1/ws/chat")).await;

    // Anonymous: open channels work, chat does not.
    subscribe(&mut socket, "inventory").await;
    send(&mut socket, json!({"type": "subscribe", "channel": "chat"})).await;
    assert_eq!(
        expect(&mut socket, "error").await["code"],
        "unauthenticated"
    );
    send(
        &mut socket,
        json!({"type": "chat.send", "room": "support", "text": "hi"}),
    )
    .await;
    assert_eq!(
        expect(&mut socket, "error").await["code"],
        "unauthenticated"
    );

    // A bad token is an error frame; the connection stays open and anonymous.
    send(&mut socket, json!({"type": "auth", "token": "garbage"})).await;
    assert_eq!(
        expect(&mut socket, "error").await["code"],
        "unauthenticated"
    );

    let alice = token(store, "alice", [Scope::ChatWrite, Scope::PetsRead]);
    send(
        &mut socket,
        json!({"type": "auth", "token": alice, "id": "a"}),
    )
    .await;
    let authenticated = expect(&mut socket, "authenticated").await;
    assert_eq!(authenticated["subject"], "alice");
    assert_eq!(authenticated["id"], "a");
    assert_eq!(authenticated["scopes"], json!(["pets:read", "chat:write"]));
    // /v1/ws/chat: the chat subscription follows authentication.
    assert_eq!(expect(&mut socket, "subscribed").await["channel"], "chat");

    send(&mut socket, json!({"type": "auth", "token": alice})).await;
    assert_eq!(expect(&mut socket, "error").await["code"], "bad_request");

    send(
        &mut socket,
        json!({"type": "chat.send", "room": "support", "text": "now"}),
    )
    .await;
    expect(&mut socket, "chat.sent").await;
    assert_eq!(
        expect(&mut socket, "chat.message").await["message"]["text"],
        "now"
    );
}

#[tokio::test]
async fn heartbeats_at_protocol_and_json_level() {
    let server = serve(
        PetStore::in_memory(),
        RealtimeConfig::default().heartbeat_interval(Duration::from_millis(50)),
    )
    .await;
    let mut socket = ws(&server.ws_url("/v1/ws")).await;

    // The server pings.
    tokio::time::timeout(WAIT, async {
        loop {
            if let Message::Ping(_) = socket.next().await.unwrap().unwrap() {
                break;
            }
        }
    })
    .await
    .expect("a protocol ping from the server");

    // The server answers protocol pings.
    socket
        .send(Message::Ping(b"hello".to_vec().into()))
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Message::Pong(payload) = socket.next().await.unwrap().unwrap() {
                assert_eq!(&payload[..], b"hello");
                break;
            }
        }
    })
    .await
    .expect("a protocol pong from the server");

    // And JSON pings.
    send(&mut socket, json!({"type": "ping"})).await;
    let pong = expect(&mut socket, "pong").await;
    assert_eq!(pong, json!({"type": "pong"}));
}

#[tokio::test]
async fn an_idle_connection_is_closed_with_a_reason() {
    let server = serve(
        PetStore::in_memory(),
        RealtimeConfig::default()
            .heartbeat_interval(Duration::from_secs(3600))
            .idle_timeout(Duration::from_millis(200)),
    )
    .await;
    let mut socket = ws(&server.ws_url("/v1/ws")).await;
    let close = tokio::time::timeout(WAIT, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("closed in time")
    .expect("a close frame with a reason");
    assert_eq!(close.code, CloseCode::Normal);
    assert_eq!(close.reason.as_str(), "idle timeout");
}

#[tokio::test]
async fn limits_on_subscriptions_and_message_size() {
    let server = serve(
        PetStore::in_memory(),
        RealtimeConfig::default()
            .max_subscriptions(2)
            .max_message_size(1024),
    )
    .await;
    let admin = token(&server.store, "staff", [Scope::Admin]);
    let mut socket = ws(&server.ws_url(&format!("/v1/ws?token={admin}"))).await;
    subscribe(&mut socket, "pets").await;
    subscribe(&mut socket, "orders").await;
    send(
        &mut socket,
        json!({"type": "subscribe", "channel": "inventory"}),
    )
    .await;
    let error = expect(&mut socket, "error").await;
    assert_eq!(error["code"], "too_many_subscriptions");
    // Unsubscribing makes room again.
    send(
        &mut socket,
        json!({"type": "unsubscribe", "channel": "orders"}),
    )
    .await;
    expect(&mut socket, "unsubscribed").await;
    subscribe(&mut socket, "inventory").await;

    // Just under the limit is fine...
    let text = "x".repeat(900);
    send(&mut socket, json!({"type": "ping", "id": text})).await;
    expect(&mut socket, "pong").await;
    // ...over it, the server says why and closes with 1009.
    let text = "x".repeat(2000);
    send(&mut socket, json!({"type": "ping", "id": text})).await;
    expect_too_big(&mut socket).await;

    // The same with the default limit (64 KiB) and a 70 KiB message.
    let server = default_server().await;
    let mut socket = ws(&server.ws_url("/v1/ws")).await;
    let text = "x".repeat(70 * 1024);
    send(&mut socket, json!({"type": "ping", "id": text})).await;
    expect_too_big(&mut socket).await;
}

/// A `message_too_large` error frame, then a close frame with 1009, then the end.
async fn expect_too_big(socket: &mut Ws) {
    let error = expect(socket, "error").await;
    assert_eq!(error["code"], "message_too_large");
    let close = tokio::time::timeout(WAIT, socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match close {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected close 1009, got {other:?}"),
    }
    // The closing handshake completes cleanly (no reset).
    let end = tokio::time::timeout(WAIT, socket.next()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn channel_access_follows_the_core_rules() {
    let server = serve(closed_store(), RealtimeConfig::default()).await;
    let pets_reader = token(&server.store, "p", [Scope::PetsRead]);

    let mut anonymous = ws(&server.ws_url("/v1/ws")).await;
    send(
        &mut anonymous,
        json!({"type": "subscribe", "channel": "pets"}),
    )
    .await;
    let error = expect(&mut anonymous, "error").await;
    assert_eq!(
        (error["code"].as_str(), error["channel"].as_str()),
        (Some("unauthenticated"), Some("pets"))
    );

    let mut reader = ws(&server.ws_url(&format!("/v1/ws?token={pets_reader}"))).await;
    subscribe(&mut reader, "pets").await;
    send(
        &mut reader,
        json!({"type": "subscribe", "channel": "orders"}),
    )
    .await;
    assert_eq!(expect(&mut reader, "error").await["code"], "forbidden");
    // The refused subscription delivers nothing: the next frame is the pet event.
    let pet = add_pet(&server.store, "Rex").await;
    let placed = server
        .store
        .place_order(&staff(), petstore_core::NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap();
    let frame = expect(&mut reader, "event").await;
    assert_eq!(frame["channel"], "pets");
    assert_eq!(event_of(&frame).subject(), pet.id.as_str());
    let frame = expect(&mut reader, "event").await;
    assert_eq!(event_of(&frame).event_type(), EventType::PetStatusChanged);
    assert_ne!(event_of(&frame).subject(), placed.order.id.as_str());
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007_and_the_server_carries_on() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let server = default_server().await;
    let mut socket = ws(&server.ws_url("/v1/ws")).await;
    let bad = Frame::message(
        bytes::Bytes::from_static(b"{\"type\":\"ping\",\"x\":\"\xff\xfe\"}"),
        OpCode::Data(Data::Text),
        true,
    );
    socket.send(Message::Frame(bad)).await.unwrap();
    let close = tokio::time::timeout(WAIT, socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match close {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Invalid),
        other => panic!("expected close 1007, got {other:?}"),
    }
    let mut fresh = ws(&server.ws_url("/v1/ws")).await;
    send(&mut fresh, json!({"type": "ping"})).await;
    expect(&mut fresh, "pong").await;
}

#[tokio::test]
async fn an_unmasked_client_frame_closes_with_1002() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = default_server().await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(
        b"GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    // A text frame without the mask that RFC 6455 requires of clients.
    let payload = br#"{"type":"ping"}"#;
    let mut frame = vec![0x81, payload.len() as u8];
    frame.extend_from_slice(payload);
    tcp.write_all(&frame).await.unwrap();

    let mut reply = [0u8; 4];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([reply[2], reply[3]]), 1002);
}

/// Authenticate, authorise, then validate: an anonymous `chat.send` with broken fields
/// is unauthenticated, whatever is wrong with it.
#[tokio::test]
async fn an_anonymous_chat_send_is_unauthenticated_before_anything_else() {
    let server = default_server().await;
    let mut socket = ws(&server.ws_url("/v1/ws")).await;
    for frame in [
        json!({"type": "chat.send", "room": "support", "text": ""}),
        json!({"type": "chat.send", "room": "No Such Room!"}),
        json!({"type": "chat.send", "text": 5, "id": 3}),
    ] {
        send(&mut socket, frame.clone()).await;
        let error = expect(&mut socket, "error").await;
        assert_eq!(error["code"], "unauthenticated", "{frame}: {error}");
    }
    // The socket survives, and a malformed frame of another type is still `bad_request`.
    send(&mut socket, json!({"type": "subscribe"})).await;
    assert_eq!(expect(&mut socket, "error").await["code"], "bad_request");
}
