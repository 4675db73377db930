//! An attacker on the broker, against the embedded broker and a Mosquitto locked with
//! the shipped configuration (`petstore-mqtt/mosquitto/`): forged events, commands
//! without the right token, reading other people's orders, chat and replies, and
//! taking the bridge's place.
//!
//! "Never reaches" is shown with a later legitimate marker: the forgery, had it got
//! through, would have arrived before the marker.

use std::time::Duration;

use petstore_core::{NewChatMessage, NewOrder, OrderQuery, PetQuery, PetStatus, PetStore, Scope};
use petstore_mqtt::StartFrom;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, PubAckReason};

use crate::brokers::{Broker, Target};
use crate::scenarios::{start_bridge, unique_prefix, wait_all_acked};
use crate::support::*;

const FAKE: &str = r#"{"type":"pet.status_changed","data":{"status":"FAKE"}}"#;

fn is_fake(m: &Msg) -> bool {
    m.payload.windows(4).any(|w| w == b"FAKE")
}

/// Creates a pet and returns a predicate for its `pets/new` message: the marker.
async fn marker(store: &PetStore, b: &Broker) -> impl FnMut(&Msg) -> bool + use<> {
    let pet = create_pet(store, "Marker").await;
    let topic = b.topic("pets/new");
    move |m: &Msg| m.topic == topic && m.json()["subject"] == pet.id.as_str()
}

/// What one MQTT 3.1.1 publish of an outsider came to.
async fn publish_v4(url: &str, id: &str, topic: &str, retain: bool) -> String {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let (host, port) = host_port(url);
    let (client, mut eventloop) = AsyncClient::new(MqttOptions::new(id, host, port), 10);
    client
        .publish(topic, QoS::AtLeastOnce, retain, FAKE)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            match eventloop.poll().await {
                // Mosquitto acknowledges and drops (MQTT 3.1.1 has no refusal).
                Ok(Event::Incoming(Packet::PubAck(_))) => return "acknowledged".to_owned(),
                Ok(_) => {}
                // The embedded broker closes the connection.
                Err(e) => return format!("closed: {e}"),
            }
        }
    })
    .await
    .expect("an answer to the 3.1.1 PUBLISH")
}

/// Outsiders publish forgeries under the prefix (retained and not, MQTT 5 and 3.1.1,
/// and as a Last Will); subscribers old and new never receive them.
pub(crate) async fn outsiders_publishes_never_reach_subscribers(target: &Target) {
    let store = seeded_store().await;
    let b = target.broker(&store, &unique_prefix("forgery")).await;
    let bridge = start_bridge(&store, b.bridge_config()).await;
    wait_all_acked(&store, &bridge).await;
    let pet = create_pet(&store, "Victim").await;
    wait_all_acked(&store, &bridge).await;
    let targets = [
        b.topic("inventory"),
        b.topic(&format!("pets/{}/status", pet.id)),
        b.topic("pets/new"),
        b.topic("events/pet.created"),
        b.topic("events/order.created"),
        b.topic("status"),
    ];
    let mut watcher = Client::connect(&b.url, &b.client_id("watcher")).await;
    for filter in [
        "pets/+/status",
        "pets/new",
        "inventory",
        "events/pet.created",
    ] {
        watcher.subscribe(&b.topic(filter)).await;
    }

    let mut outsider = Client::connect(&b.url, &b.client_id("outsider")).await;
    for topic in &targets {
        for retain in [true, false] {
            let reason = outsider.publish_acked(topic, retain, FAKE).await;
            assert_eq!(reason, PubAckReason::NotAuthorized, "{topic}");
        }
        outsider
            .client
            .publish(topic.as_str(), QoS::AtMostOnce, true, FAKE)
            .await
            .unwrap();
    }
    if b.embedded.is_some() {
        // Even a token with every scope publishes nothing under the prefix: only the
        // server does.
        let admin = admin_token(&store);
        let mut insider = Client::connect_as(&b.url, &b.client_id("insider"), &admin).await;
        for topic in &targets {
            let reason = insider.publish_acked(topic, true, FAKE).await;
            assert_eq!(reason, PubAckReason::NotAuthorized, "{topic}");
        }
        // Nor a retained command: the broker would keep it forever, for nothing.
        let command = b.topic("commands/orders");
        let reason = insider.publish_acked(&command, true, "{}").await;
        assert_eq!(reason, PubAckReason::NotAuthorized, "retained {command}");
    }
    for (i, topic) in targets.iter().enumerate() {
        let outcome = publish_v4(&b.url, &b.client_id(&format!("v4-{i}")), topic, true).await;
        println!("MQTT 3.1.1 forgery on {topic}: {outcome}");
    }
    // A Last Will on an event topic, left by vanishing without DISCONNECT.
    let will_id = b.client_id("will");
    let with_will = |o: &mut rumqttc::v5::MqttOptions| {
        o.set_last_will(LastWill::new(
            b.topic("inventory"),
            FAKE,
            QoS::AtLeastOnce,
            true,
            None,
        ));
    };
    match Client::try_connect(&b.url, &will_id, with_will).await {
        Ok(client) => {
            // Mosquitto accepts the CONNECT (and drops the will when it is due).
            assert!(
                b.mosquitto.is_some(),
                "the embedded broker refuses the will"
            );
            drop(client);
            // The broker is done with that connection once the id connects again.
            drop(Client::connect(&b.url, &will_id).await);
        }
        Err(refused) => {
            assert!(b.embedded.is_some(), "{refused}");
            assert!(refused.contains("NotAuthorized"), "{refused}");
        }
    }

    let marker1 = marker(&store, &b).await;
    let seen = watcher.until("the marker", marker1).await;
    assert!(
        !seen.iter().any(is_fake),
        "forgeries delivered live: {seen:?}"
    );

    wait_all_acked(&store, &bridge).await;
    // A newcomer gets the bridge's retained messages and nothing else; the presence
    // topic's retained `online` marks the end of them.
    let mut late = Client::connect(&b.url, &b.client_id("late")).await;
    late.subscribe(&b.topic("pets/+/status")).await;
    late.subscribe(&b.topic("inventory")).await;
    late.subscribe(&b.topic("pets/new")).await;
    late.subscribe(&b.topic("status")).await;
    let presence = b.topic("status");
    let retained = late
        .until("the retained presence", |m| m.topic == presence)
        .await;
    assert!(
        !retained.iter().any(is_fake),
        "retained forgeries: {retained:?}"
    );
    assert_eq!(&retained.last().unwrap().payload[..], b"online");
    let inventory = retained
        .iter()
        .find(|m| m.topic == b.topic("inventory"))
        .expect("the retained inventory")
        .json();
    let counts = store.inventory(&admin()).await.unwrap().items;
    assert_eq!(inventory["available"], counts.available);
    let victim = retained
        .iter()
        .find(|m| m.topic == b.topic(&format!("pets/{}/status", pet.id)))
        .expect("the victim's retained status")
        .json();
    assert_eq!(victim["data"]["status"], "available");
    let marker2 = marker(&store, &b).await;
    let seen = late.until("the marker", marker2).await;
    assert!(!seen.iter().any(is_fake), "{seen:?}");
    bridge.shutdown().await;
}

/// Commands need a token with the command's scope, carried by the command, and run as
/// that token's principal.
pub(crate) async fn commands_need_the_callers_token_and_scope(target: &Target) {
    let store = seeded_store().await;
    let b = target.broker(&store, &unique_prefix("authz")).await;
    let p = b.prefix.clone();
    let bridge = start_bridge(&store, b.bridge_config().start_from(StartFrom::Head)).await;
    let pet = create_pet(&store, "Untouched").await;
    let status_topic = b.topic(&format!("commands/pets/{}/status", pet.id));
    let orders_topic = b.topic("commands/orders");
    let order_cmd = format!(r#"{{"pet_id":"{}"}}"#, pet.id);
    let reader = token(&store, "reader", &[Scope::PetsRead, Scope::OrdersRead]);
    let foreign = petstore_core::TokenAuthority::random(Duration::from_secs(60))
        .issue("mallory", Scope::ALL)
        .unwrap()
        .access_token;

    let mut me = Client::connect(&b.url, &b.client_id("caller")).await;
    let replies = me.replies(&p);
    me.subscribe(&replies).await;
    let head = store.head().await.unwrap();
    let pets_before = store
        .pets(&admin(), &PetQuery::default().limit(100))
        .await
        .unwrap()
        .data;

    let cases: Vec<(&String, &str, Option<&str>, &str)> = vec![
        (
            &status_topic,
            r#"{"status":"sold"}"#,
            None,
            "unauthenticated",
        ),
        (&orders_topic, &order_cmd, None, "unauthenticated"),
        (
            &status_topic,
            r#"{"status":"sold"}"#,
            Some("not-a-jwt"),
            "unauthenticated",
        ),
        (&orders_topic, &order_cmd, Some(&foreign), "unauthenticated"),
        (
            &status_topic,
            r#"{"status":"sold"}"#,
            Some(&reader),
            "forbidden",
        ),
        (&orders_topic, &order_cmd, Some(&reader), "forbidden"),
    ];
    for (i, (topic, payload, token, code)) in cases.iter().enumerate() {
        let corr = format!("refused-{i}");
        let (reply, msg) = me
            .request(topic, payload, &replies, corr.as_bytes(), *token)
            .await;
        assert_eq!(reply["ok"], false, "{topic} {token:?}: {reply}");
        assert_eq!(reply["error"]["code"], *code, "{topic} {token:?}: {reply}");
        assert_eq!(msg.props.correlation_data.as_deref(), Some(corr.as_bytes()));
    }
    if b.embedded.is_some() {
        // A connection with an admin token: the command still needs its own.
        let admin = admin_token(&store);
        let mut insider = Client::connect_as(&b.url, &b.client_id("insider"), &admin).await;
        let replies = insider.replies(&p);
        insider.subscribe(&replies).await;
        let (reply, _) = insider
            .request(&orders_topic, &order_cmd, &replies, b"insider", None)
            .await;
        assert_eq!(reply["error"]["code"], "unauthenticated", "{reply}");
    }
    // Nothing changed: no event, same pets, no order.
    assert_eq!(store.head().await.unwrap(), head);
    let pets_after = store
        .pets(&admin(), &PetQuery::default().limit(100))
        .await
        .unwrap()
        .data;
    assert_eq!(pets_after, pets_before);
    let orders = store
        .orders(&admin(), &OrderQuery::default())
        .await
        .unwrap();
    assert!(orders.data.is_empty(), "{:?}", orders.data);

    // With the scope, the command runs as the token's principal.
    let alice = token(&store, "alice", &[Scope::OrdersRead, Scope::OrdersWrite]);
    let (reply, _) = me
        .request(&orders_topic, &order_cmd, &replies, b"alice", Some(&alice))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["customer"], "alice");
    let orders = store
        .orders(&admin(), &OrderQuery::default())
        .await
        .unwrap();
    assert_eq!(orders.data.len(), 1);
    assert_eq!(orders.data[0].customer, "alice");
    // The refused cases, the insider's, and alice's.
    let sent = cases.len() as u64 + u64::from(b.embedded.is_some()) + 1;
    let status = wait_status(&bridge, "every command counted", |s| {
        s.commands_ok + s.commands_failed == sent
    })
    .await;
    assert_eq!(status.commands_ok, 1, "{status:?}");
    bridge.shutdown().await;
}

/// An anonymous client receives no order, payment or chat event, no command (they
/// carry tokens) and no one's replies, whatever it subscribes to.
pub(crate) async fn anonymous_subscribers_get_no_orders_chat_or_commands(target: &Target) {
    let store = seeded_store().await;
    let b = target.broker(&store, &unique_prefix("snoop")).await;
    let p = b.prefix.clone();
    let bridge = start_bridge(&store, b.bridge_config().start_from(StartFrom::Head)).await;
    let pet = create_pet(&store, "Ordered").await;
    let order = store
        .place_order(&admin(), NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap()
        .order;
    let mut victim = Client::connect(&b.url, &b.client_id("victim")).await;
    let victim_replies = victim.replies(&p);
    victim.subscribe(&victim_replies).await;

    let mut snoop = Client::connect(&b.url, &b.client_id("snoop")).await;
    snoop.subscribe(&b.topic("pets/new")).await;
    let forbidden = [
        b.topic("orders/new"),
        b.topic(&format!("orders/{}/status", order.id)),
        b.topic("orders/+/status"),
        b.topic("events/order.created"),
        b.topic("events/order.status_changed"),
        b.topic("events/payment.succeeded"),
        b.topic("events/chat.message"),
        b.topic("events/+"),
        b.topic("commands/#"),
        b.topic("replies/+/r"),
        b.topic(&format!("replies/{}/r", victim.id)),
        format!("{p}#"),
        "#".to_owned(),
    ];
    for filter in &forbidden {
        let granted = snoop.try_subscribe(filter).await;
        if b.embedded.is_some() {
            // The embedded broker refuses the SUBSCRIBE (SUBACK "not authorized").
            assert!(!granted, "{filter} granted");
        } else {
            // Mosquitto grants it and filters every message by the ACL.
            println!("Mosquitto SUBACK for {filter}: granted={granted}");
        }
    }

    store.cancel_order(&admin(), &order.id).await.unwrap();
    store
        .post_chat(
            &admin(),
            NewChatMessage {
                room: "support".into(),
                text: "secret".into(),
            },
        )
        .await
        .unwrap();
    let alice = token(&store, "alice", &[Scope::OrdersRead, Scope::OrdersWrite]);
    let (reply, _) = victim
        .request(
            &b.topic("commands/orders"),
            &format!(r#"{{"pet_id":"{}"}}"#, pet.id),
            &victim_replies,
            b"victim",
            Some(&alice),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let marker = marker(&store, &b).await;
    let seen = snoop.until("the marker", marker).await;
    let leaked: Vec<_> = seen
        .iter()
        .filter(|m| {
            let rel = m.topic.strip_prefix(&p).unwrap_or(&m.topic);
            !(rel.starts_with("pets/")
                || rel == "inventory"
                || rel == "status"
                || rel.starts_with("events/pet."))
        })
        .map(|m| m.topic.clone())
        .collect();
    assert!(leaked.is_empty(), "an anonymous client received {leaked:?}");
    bridge.shutdown().await;
}

#[tokio::test]
async fn outsiders_publishes_never_reach_subscribers_embedded() {
    outsiders_publishes_never_reach_subscribers(&Target::Embedded).await;
}

#[tokio::test]
async fn outsiders_publishes_never_reach_subscribers_locked_mosquitto() {
    let Some(target) = Target::locked() else {
        return;
    };
    outsiders_publishes_never_reach_subscribers(&target).await;
}

#[tokio::test]
async fn commands_need_the_callers_token_and_scope_embedded() {
    commands_need_the_callers_token_and_scope(&Target::Embedded).await;
}

#[tokio::test]
async fn commands_need_the_callers_token_and_scope_locked_mosquitto() {
    let Some(target) = Target::locked() else {
        return;
    };
    commands_need_the_callers_token_and_scope(&target).await;
}

#[tokio::test]
async fn commands_need_the_callers_token_and_scope_open_mosquitto() {
    let Some(target) = Target::open() else { return };
    commands_need_the_callers_token_and_scope(&target).await;
}

#[tokio::test]
async fn anonymous_subscribers_get_no_orders_chat_or_commands_embedded() {
    anonymous_subscribers_get_no_orders_chat_or_commands(&Target::Embedded).await;
}

#[tokio::test]
async fn anonymous_subscribers_get_no_orders_chat_or_commands_locked_mosquitto() {
    let Some(target) = Target::locked() else {
        return;
    };
    anonymous_subscribers_get_no_orders_chat_or_commands(&target).await;
}

/// MQTT 3.1.1 subscribers are refused the same way (SUBACK failure, 0x80).
#[tokio::test]
async fn mqtt_311_anonymous_subscribe_to_orders_is_refused() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
    let store = seeded_store().await;
    let b = Target::Embedded.broker(&store, "petstore/").await;
    let (host, port) = host_port(&b.url);
    let options = MqttOptions::new(b.client_id("v4"), host, port);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let mut codes = Vec::new();
    for filter in [
        "petstore/orders/new",
        "petstore/events/chat.message",
        "petstore/pets/new",
    ] {
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let ack = tokio::time::timeout(WAIT, async {
            loop {
                if let Event::Incoming(Packet::SubAck(ack)) = eventloop.poll().await.unwrap() {
                    return ack;
                }
            }
        })
        .await
        .expect("SUBACK");
        codes.push(ack.return_codes[0]);
    }
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::AtLeastOnce)
        ]
    );
}

/// A customer follows the status of their own order and no one else's; with MQTT
/// topics that cannot be filtered per reader, the feeds of every order are admin's.
#[tokio::test]
async fn a_customer_receives_only_their_own_order_status() {
    let store = seeded_store().await;
    let b = Target::Embedded.broker(&store, &unique_prefix("own")).await;
    let bridge = start_bridge(&store, b.bridge_config().start_from(StartFrom::Head)).await;
    let alice_who = petstore_core::Principal::new(
        "alice",
        [Scope::PetsRead, Scope::OrdersRead, Scope::OrdersWrite],
    );
    let alice = token(
        &store,
        "alice",
        &[Scope::PetsRead, Scope::OrdersRead, Scope::OrdersWrite],
    );
    let hers = store
        .place_order(
            &alice_who,
            NewOrder::new(create_pet(&store, "Hers").await.id),
            None,
        )
        .await
        .unwrap()
        .order;
    let theirs = store
        .place_order(
            &admin(),
            NewOrder::new(create_pet(&store, "Theirs").await.id),
            None,
        )
        .await
        .unwrap()
        .order;
    let mut client = Client::connect_as(&b.url, &b.client_id("alice"), &alice).await;
    let own = b.topic(&format!("orders/{}/status", hers.id));
    client.subscribe(&own).await;
    for filter in [
        b.topic(&format!("orders/{}/status", theirs.id)),
        b.topic("orders/+/status"),
        b.topic("orders/new"),
        b.topic("events/order.status_changed"),
        b.topic("orders/ord_doesnotexist/status"),
    ] {
        assert!(!client.try_subscribe(&filter).await, "{filter} granted");
    }
    // Someone else's order changes first; hers after, the marker.
    store.cancel_order(&admin(), &theirs.id).await.unwrap();
    store.cancel_order(&alice_who, &hers.id).await.unwrap();
    let seen = client.until("her order's status", |m| m.topic == own).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].json()["data"]["status"], "cancelled");
    assert_eq!(seen[0].json()["subject"], hers.id.as_str());
    // An admin may follow any order.
    let mut staff = Client::connect_as(&b.url, &b.client_id("staff"), &admin_token(&store)).await;
    staff
        .subscribe(&b.topic(&format!("orders/{}/status", hers.id)))
        .await;
    staff.subscribe(&b.topic("orders/+/status")).await;
    bridge.shutdown().await;
}

/// Nobody takes the bridge's client id: the broker refuses the CONNECT and the bridge
/// keeps its connection, its command subscription and its publishing.
#[tokio::test]
async fn taking_the_bridges_client_id_fails_and_the_bridge_keeps_serving() {
    let store = seeded_store().await;
    let b = Target::Embedded
        .broker(&store, &unique_prefix("takeover"))
        .await;
    let bridge = start_bridge(&store, b.bridge_config().start_from(StartFrom::Head)).await;
    let id = bridge.client_id().to_owned();
    let embedded = b.embedded.clone().unwrap();
    let admin = admin_token(&store);
    let refused = Client::try_connect(&b.url, &id, |_| {}).await.err();
    assert!(
        refused
            .as_deref()
            .is_some_and(|e| e.contains("NotAuthorized")),
        "{refused:?}"
    );
    let refused = Client::try_connect(&b.url, &id, |o| {
        o.set_credentials("x", &admin);
    })
    .await
    .err();
    assert!(
        refused
            .as_deref()
            .is_some_and(|e| e.contains("NotAuthorized")),
        "{refused:?}"
    );
    // rumqttd's own listeners admit only the front and the bridge.
    let (bridge_user, _) = embedded.bridge_credentials();
    for internal in [embedded.v5_addr(), embedded.v4_addr()] {
        let url = format!("mqtt://{internal}");
        for client_id in [id.clone(), b.client_id("direct")] {
            let anonymous = Client::try_connect(&url, &client_id, |_| {}).await;
            assert!(anonymous.is_err(), "{internal} admitted {client_id}");
            let with_token = Client::try_connect(&url, &client_id, |o| {
                o.set_credentials("x", &admin);
            })
            .await;
            assert!(
                with_token.is_err(),
                "{internal} admitted {client_id} with a token"
            );
            let guessed = Client::try_connect(&url, &client_id, |o| {
                o.set_credentials(&bridge_user, "guess");
            })
            .await;
            assert!(guessed.is_err(), "{internal} admitted a guessed password");
        }
    }
    assert_bridge_keeps_serving(&store, &b, &bridge).await;
    bridge.shutdown().await;
}

/// The bridge stayed on its first connection and still publishes and answers.
async fn assert_bridge_keeps_serving(
    store: &PetStore,
    b: &Broker,
    bridge: &petstore_mqtt::BridgeHandle,
) {
    let mut sub = Client::connect(&b.url, &b.client_id("after")).await;
    sub.subscribe(&b.topic("pets/new")).await;
    let replies = sub.replies(&b.prefix);
    sub.subscribe(&replies).await;
    let marker = marker(store, b).await;
    sub.until("an event after the attempt", marker).await;
    let staff = token(store, "staff", &[Scope::PetsWrite]);
    let (reply, _) = sub
        .request(
            &b.topic("commands/launch"),
            "{}",
            &replies,
            b"probe",
            Some(&staff),
        )
        .await;
    assert_eq!(reply["error"]["code"], "not_found", "{reply}");
    let status = bridge.status();
    assert!(status.connected, "{status:?}");
    assert_eq!(status.connects, 1, "the bridge was knocked off: {status:?}");
}

/// On Mosquitto, which lets any client take over a connected client id, the bridge's
/// id is unguessable: a client with the configured id does not knock it off.
#[tokio::test]
async fn the_configured_client_id_does_not_reach_the_bridge_on_mosquitto() {
    let Some(target) = Target::locked() else {
        return;
    };
    let store = seeded_store().await;
    let b = target.broker(&store, "petstore/").await;
    let config = b.bridge_config().start_from(StartFrom::Head);
    let configured = config.client_id.clone();
    let bridge = start_bridge(&store, config).await;
    assert!(
        bridge.client_id().starts_with(&format!("{configured}-"))
            && bridge.client_id().len() > configured.len() + 30,
        "{}",
        bridge.client_id()
    );
    let squatter = Client::connect(&b.url, &configured).await;
    assert_bridge_keeps_serving(&store, &b, &bridge).await;
    drop(squatter);
    bridge.shutdown().await;
}

/// A persistent session is resumed by the identity that made it, not by whoever
/// connects with its client id.
#[tokio::test]
async fn a_session_is_resumed_only_by_its_owner() {
    let store = seeded_store().await;
    let b = Target::Embedded
        .broker(&store, &unique_prefix("session"))
        .await;
    let bridge = start_bridge(&store, b.bridge_config().start_from(StartFrom::Head)).await;
    let alice_who = petstore_core::Principal::new("alice", [Scope::OrdersRead, Scope::OrdersWrite]);
    let alice = token(&store, "alice", &[Scope::OrdersRead, Scope::OrdersWrite]);
    let order = store
        .place_order(
            &alice_who,
            NewOrder::new(create_pet(&store, "Hers").await.id),
            None,
        )
        .await
        .unwrap()
        .order;
    let own = b.topic(&format!("orders/{}/status", order.id));
    let id = b.client_id("alice-device");
    let persistent = |token: Option<String>| {
        move |o: &mut rumqttc::v5::MqttOptions| {
            o.set_clean_start(false);
            o.set_session_expiry_interval(Some(3600));
            if let Some(token) = token {
                o.set_credentials("alice", token);
            }
        }
    };
    let mut device = Client::connect_with(&b.url, &id, persistent(Some(alice.clone()))).await;
    device.subscribe(&own).await;
    drop(device);
    // Alice herself resumes: her subscription is still there.
    let mut device = Client::connect_with(&b.url, &id, persistent(Some(alice.clone()))).await;
    store
        .pay_order(
            &alice_who,
            &order.id,
            petstore_core::PaymentRequest::default(),
        )
        .await
        .unwrap();
    let m = device.next_on(&own).await;
    assert_eq!(m.json()["data"]["status"], "approved");
    drop(device);
    // Someone else with her client id starts a session of their own.
    let mut thief = Client::connect_with(&b.url, &id, persistent(None)).await;
    thief.subscribe(&b.topic("pets/new")).await;
    store.cancel_order(&alice_who, &order.id).await.unwrap();
    let marker = marker(&store, &b).await;
    let seen = thief.until("the marker", marker).await;
    assert!(seen.iter().all(|m| m.topic != own), "{seen:?}");
    bridge.shutdown().await;
}

/// Replies go only to `{prefix}replies/{client id}/...`, which only that client reads;
/// the embedded broker refuses a command that asks for its reply anywhere else.
#[tokio::test]
async fn replies_reach_only_their_client_embedded() {
    let store = seeded_store().await;
    let b = Target::Embedded
        .broker(&store, &unique_prefix("replies"))
        .await;
    let bridge = start_bridge(&store, b.bridge_config().start_from(StartFrom::Head)).await;
    let pet = create_pet(&store, "Kept").await;
    let staff = token(&store, "staff", &[Scope::PetsWrite]);
    let alice = Client::connect(&b.url, &b.client_id("alice")).await;
    let mut bob = Client::connect_as(&b.url, &b.client_id("bob"), &staff).await;
    assert!(!bob.try_subscribe(&alice.replies(&b.prefix)).await);
    assert!(
        !bob.try_subscribe(&b.topic(&format!("replies/{}/#", alice.id)))
            .await
    );
    let command = b.topic(&format!("commands/pets/{}/status", pet.id));
    for response_topic in [
        alice.replies(&b.prefix),
        b.topic("inventory"),
        b.topic(&format!("pets/{}/status", pet.id)),
    ] {
        let mut mallory = Client::connect(&b.url, &b.client_id("mallory")).await;
        let reason = mallory
            .command_acked(
                &command,
                r#"{"status":"sold"}"#,
                &response_topic,
                Some(&staff),
            )
            .await;
        assert_eq!(reason, PubAckReason::NotAuthorized, "{response_topic}");
    }
    assert_eq!(
        store.pet(&admin(), &pet.id).await.unwrap().status,
        PetStatus::Available
    );
    bridge.shutdown().await;
}

/// On a broker that does not look at response topics (Mosquitto), the bridge itself
/// answers only under `{prefix}replies/`: a command asking for its reply on an event
/// topic does not run and nothing is published there; and the ACL keeps each client's
/// replies its own.
pub(crate) async fn hijacked_response_topics_get_nothing(target: &Target) {
    let store = seeded_store().await;
    let b = target.broker(&store, &unique_prefix("hijack")).await;
    let bridge = start_bridge(&store, b.bridge_config().start_from(StartFrom::Head)).await;
    let pet = create_pet(&store, "Kept").await;
    wait_all_acked(&store, &bridge).await;
    let staff = token(&store, "staff", &[Scope::PetsWrite]);
    let mut alice = Client::connect(&b.url, &b.client_id("alice")).await;
    let mut bob = Client::connect(&b.url, &b.client_id("bob")).await;
    // Mosquitto grants it and delivers nothing (the ACL's `%c` pattern).
    bob.try_subscribe(&alice.replies(&b.prefix)).await;
    bob.subscribe(&b.topic("pets/new")).await;
    let status = b.topic(&format!("pets/{}/status", pet.id));
    alice.subscribe(&b.topic("inventory")).await;
    alice.subscribe(&status).await;
    // Their retained messages first.
    alice.next().await;
    alice.next().await;
    let before = bridge.status();
    for response_topic in [b.topic("inventory"), status.clone()] {
        alice
            .send_command(
                &b.topic(&format!("commands/pets/{}/status", pet.id)),
                r#"{"status":"sold"}"#,
                &response_topic,
                b"hijack",
                Some(&staff),
            )
            .await;
    }
    let after = wait_status(&bridge, "both counted", |s| {
        s.commands_ok + s.commands_failed == before.commands_ok + before.commands_failed + 2
    })
    .await;
    assert_eq!(
        after.commands_failed,
        before.commands_failed + 2,
        "{after:?}"
    );
    // A legitimate command: alice gets her reply, bob does not.
    let replies = alice.replies(&b.prefix);
    alice.subscribe(&replies).await;
    let (reply, _) = alice
        .request(
            &b.topic("commands/launch"),
            "{}",
            &replies,
            b"mine",
            Some(&staff),
        )
        .await;
    assert_eq!(reply["error"]["code"], "not_found", "{reply}");
    alice.subscribe(&b.topic("pets/new")).await;
    let marker_alice = marker(&store, &b).await;
    let seen = alice.until("the marker", marker_alice).await;
    assert!(
        seen.iter().all(|m| m.topic.ends_with("pets/new")),
        "{seen:?}"
    );
    let marker_bob = marker(&store, &b).await;
    let seen = bob.until("the marker", marker_bob).await;
    assert!(
        seen.iter().all(|m| m.topic.ends_with("pets/new")),
        "{seen:?}"
    );
    assert_eq!(
        store.pet(&admin(), &pet.id).await.unwrap().status,
        PetStatus::Available
    );
    bridge.shutdown().await;
}

#[tokio::test]
async fn hijacked_response_topics_get_nothing_locked_mosquitto() {
    let Some(target) = Target::locked() else {
        return;
    };
    hijacked_response_topics_get_nothing(&target).await;
}
