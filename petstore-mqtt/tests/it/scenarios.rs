//! Scenarios every broker runs (the embedded rumqttd and a real Mosquitto).

use std::collections::{BTreeMap, BTreeSet};

use petstore_core::{
    NewChatMessage, NewOrder, OrderQuery, PetQuery, PetStatus, PetStore, ResumeToken, Scope,
};
use petstore_mqtt::{Bridge, BridgeHandle, MqttConfig, StartFrom};
use serde_json::Value;
use tokio::time::timeout;

use crate::brokers::Target;
use crate::support::*;

pub(crate) async fn start_bridge(store: &PetStore, config: MqttConfig) -> BridgeHandle {
    let bridge = Bridge::start(
        store.clone(),
        config,
        tokio_util::sync::CancellationToken::new(),
    )
    .expect("valid config");
    // Connected and following the log: events from now on are published.
    wait_status(&bridge, "connected and following the log", |s| {
        s.connected && s.resumed_from.is_some()
    })
    .await;
    bridge
}

pub(crate) async fn wait_all_acked(store: &PetStore, bridge: &BridgeHandle) {
    let head = store.head().await.unwrap();
    wait_status(bridge, "every event acknowledged", |s| {
        s.last_acked == Some(head)
    })
    .await;
}

/// What a message on an expected topic must carry.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Carries {
    /// An event envelope of this type.
    Event(&'static str),
    /// An empty payload (a cleared retained message).
    Nothing,
    /// Any non-empty payload (the inventory snapshot, the presence text).
    Something,
}

impl Carries {
    fn matches(self, m: &Msg) -> bool {
        match self {
            Carries::Event(ty) => !m.payload.is_empty() && m.json()["type"] == ty,
            Carries::Nothing => m.payload.is_empty(),
            Carries::Something => !m.payload.is_empty(),
        }
    }
}

/// Collects messages until every `(topic, payload)` of `expected` was seen.
async fn collect(client: &mut Client, expected: &[(String, Carries)]) -> Vec<Msg> {
    let mut seen = Vec::new();
    let missing = |seen: &[Msg]| -> Vec<(String, Carries)> {
        expected
            .iter()
            .filter(|(topic, carries)| {
                !seen.iter().any(|m| &m.topic == topic && carries.matches(m))
            })
            .cloned()
            .collect()
    };
    let done = timeout(WAIT, async {
        while !missing(&seen).is_empty() {
            seen.push(client.next().await);
        }
    })
    .await;
    if done.is_err() {
        let got: Vec<_> = seen.iter().map(|m| m.topic.clone()).collect();
        panic!("missing {:?}; got {got:?}", missing(&seen));
    }
    seen
}

pub(crate) async fn events_reach_every_topic(target: &Target) {
    let store = seeded_store().await;
    let b = target.broker(&store, &unique_prefix("topics")).await;
    let p = b.prefix.clone();
    // An admin reads every event topic (not commands, nor others' replies).
    let mut sub = Client::connect_as(&b.url, &b.client_id("sub"), &admin_token(&store)).await;
    for filter in ["pets/#", "orders/#", "events/+", "inventory", "status"] {
        sub.subscribe(&b.topic(filter)).await;
    }
    // No MQTT 3.1.1 subscriber here: the user properties can be on, even on rumqttd.
    let bridge = start_bridge(
        &store,
        b.bridge_config()
            .event_properties(true)
            .start_from(StartFrom::Head),
    )
    .await;

    let pet = create_pet(&store, "Topic").await;
    let order = store
        .place_order(&admin(), NewOrder::new(pet.id.clone()), None)
        .await
        .unwrap()
        .order;
    store.cancel_order(&admin(), &order.id).await.unwrap();
    store.delete_pet(&admin(), &pet.id, None).await.unwrap();
    store
        .post_chat(
            &admin(),
            NewChatMessage {
                room: "support".into(),
                text: "hello".into(),
            },
        )
        .await
        .unwrap();

    let (pid, oid) = (pet.id.to_string(), order.id.to_string());
    use Carries::{Event, Nothing, Something};
    let expected = [
        (format!("{p}pets/new"), Event("pet.created")),
        (format!("{p}pets/{pid}/status"), Event("pet.created")),
        (format!("{p}events/pet.created"), Event("pet.created")),
        (format!("{p}orders/new"), Event("order.created")),
        (format!("{p}events/order.created"), Event("order.created")),
        (format!("{p}pets/{pid}/status"), Event("pet.status_changed")),
        (
            format!("{p}events/pet.status_changed"),
            Event("pet.status_changed"),
        ),
        (
            format!("{p}orders/{oid}/status"),
            Event("order.status_changed"),
        ),
        (
            format!("{p}events/order.status_changed"),
            Event("order.status_changed"),
        ),
        (format!("{p}events/pet.deleted"), Event("pet.deleted")),
        // The deleted pet's retained status is cleared with an empty message.
        (format!("{p}pets/{pid}/status"), Nothing),
        (format!("{p}events/chat.message"), Event("chat.message")),
        (format!("{p}inventory"), Something),
        (format!("{p}status"), Something),
    ];
    let seen = collect(&mut sub, &expected).await;

    // Envelopes carry the contract fields; user properties name type and offset.
    for m in seen.iter().filter(|m| m.topic.contains("/events/")) {
        let env = m.json();
        for field in ["id", "type", "source", "time", "subject", "offset", "data"] {
            assert!(env.get(field).is_some(), "{field} missing in {env}");
        }
        assert_eq!(m.user_property("event-type"), env["type"].as_str());
        assert_eq!(m.user_property("offset"), env["offset"].as_str());
        assert_eq!(m.user_property("event-id"), env["id"].as_str());
        assert_eq!(m.props.content_type.as_deref(), Some("application/json"));
    }
    let status_change = seen
        .iter()
        .find(|m| m.topic == format!("{p}orders/{oid}/status"))
        .unwrap()
        .json();
    assert_eq!(status_change["data"]["status"], "cancelled");
    // The deleted pet's retained status is cleared with an empty message.
    let cleared = seen
        .iter()
        .rfind(|m| m.topic == format!("{p}pets/{pid}/status"))
        .unwrap();
    assert!(cleared.payload.is_empty(), "last pet status: {cleared:?}");
    let inventory = seen
        .iter()
        .rfind(|m| m.topic == format!("{p}inventory"))
        .unwrap()
        .json();
    assert!(inventory["available"].is_u64() && inventory["offset"].is_string());
    // Nothing but the contract's topics.
    for m in &seen {
        let rel = m.topic.strip_prefix(&p).unwrap();
        assert!(
            ["pets/", "orders/", "events/", "inventory", "status"]
                .iter()
                .any(|t| rel.starts_with(t)),
            "unexpected topic {}",
            m.topic
        );
    }
    bridge.shutdown().await;
}

pub(crate) async fn retained_messages_reach_a_late_subscriber(target: &Target) {
    let store = seeded_store().await;
    let b = target.broker(&store, &unique_prefix("retained")).await;
    let p = b.prefix.clone();
    // Default start: the oldest retained event, so the seed pets get their status.
    let bridge = start_bridge(&store, b.bridge_config()).await;
    let sold = create_pet(&store, "Sold").await;
    store
        .set_pet_status(&admin(), &sold.id, PetStatus::Sold)
        .await
        .unwrap();
    let gone = create_pet(&store, "Gone").await;
    store.delete_pet(&admin(), &gone.id, None).await.unwrap();
    wait_all_acked(&store, &bridge).await;

    // Anonymous: what anonymous HTTP callers may read.
    let mut late = Client::connect(&b.url, &b.client_id("late")).await;
    late.subscribe(&format!("{p}pets/+/status")).await;
    late.subscribe(&format!("{p}inventory")).await;
    // Retained messages of one subscription arrive before those of the next, so the
    // presence message marks the end of the pet statuses.
    late.subscribe(&format!("{p}status")).await;
    let mut statuses = BTreeMap::new();
    let mut inventory = None;
    loop {
        let m = late.next().await;
        assert!(m.retain, "{} should be retained", m.topic);
        if m.topic == format!("{p}status") {
            assert_eq!(&m.payload[..], b"online");
            break;
        } else if m.topic == format!("{p}inventory") {
            inventory = Some(m.json());
        } else {
            let env = m.json();
            statuses.insert(env["subject"].as_str().unwrap().to_owned(), env);
        }
    }
    let pets = store
        .pets(&admin(), &PetQuery::default().limit(100))
        .await
        .unwrap()
        .data;
    let expected: BTreeSet<String> = pets.iter().map(|p| p.id.to_string()).collect();
    assert_eq!(
        statuses.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "one retained status per existing pet, none for the deleted one"
    );
    for pet in &pets {
        let env = &statuses[pet.id.as_str()];
        assert_eq!(env["data"]["status"], pet.status.as_str(), "{}", pet.id);
    }
    assert_eq!(statuses[sold.id.as_str()]["data"]["status"], "sold");
    let inventory = inventory.expect("retained inventory");
    let counts = store.inventory(&admin()).await.unwrap().items;
    assert_eq!(inventory["available"], counts.available);
    assert_eq!(inventory["pending"], counts.pending);
    assert_eq!(inventory["sold"], counts.sold);
    bridge.shutdown().await;
}

pub(crate) async fn available_pets(store: &PetStore, n: usize) -> Vec<petstore_core::Pet> {
    let mut pets = Vec::new();
    for i in 0..n {
        pets.push(create_pet(store, &format!("Cmd{i}")).await);
    }
    pets
}

pub(crate) async fn commands_reply_on_the_response_topic(target: &Target) {
    let store = seeded_store().await;
    let b = target.broker(&store, &unique_prefix("commands")).await;
    let p = b.prefix.clone();
    let bridge = start_bridge(&store, b.bridge_config().start_from(StartFrom::Head)).await;
    let pets = available_pets(&store, 2).await;
    let alice = token(
        &store,
        "alice",
        &[Scope::PetsWrite, Scope::OrdersRead, Scope::OrdersWrite],
    );
    // The connection itself is anonymous: the command carries the token, the same
    // way on every broker.
    let mut me = Client::connect(&b.url, &b.client_id("req")).await;
    let replies = me.replies(&p);
    me.subscribe(&replies).await;

    let (reply, msg) = me
        .request(
            &format!("{p}commands/pets/{}/status", pets[0].id),
            r#"{"status":"sold"}"#,
            &replies,
            b"corr-1",
            Some(&alice),
        )
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["status"], "sold");
    assert_eq!(msg.props.correlation_data.as_deref(), Some(&b"corr-1"[..]));
    let pet = store.pet(&admin(), &pets[0].id).await.unwrap();
    assert_eq!(pet.status, PetStatus::Sold);

    let order_cmd = format!(
        r#"{{"pet_id":"{}","quantity":1,"idempotency_key":"k-1"}}"#,
        pets[1].id
    );
    let (first, msg) = me
        .request(
            &format!("{p}commands/orders"),
            &order_cmd,
            &replies,
            b"corr-2",
            Some(&alice),
        )
        .await;
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["result"]["status"], "placed");
    // The token's principal placed it, not the bridge.
    assert_eq!(first["result"]["customer"], "alice");
    assert_eq!(first["result"]["replayed"], false);
    assert_eq!(msg.props.correlation_data.as_deref(), Some(&b"corr-2"[..]));
    let id: petstore_core::OrderId = first["result"]["id"].as_str().unwrap().parse().unwrap();
    let order = store.order(&admin(), &id).await.unwrap();
    assert_eq!(order.pet_id, pets[1].id);
    assert_eq!(order.customer, "alice");

    // A retried command with the same idempotency key places nothing new.
    let (again, _) = me
        .request(
            &format!("{p}commands/orders"),
            &order_cmd,
            &replies,
            b"corr-3",
            Some(&alice),
        )
        .await;
    assert_eq!(again["result"]["id"], first["result"]["id"]);
    assert_eq!(again["result"]["replayed"], true);
    let orders = store
        .orders(&admin(), &OrderQuery::default())
        .await
        .unwrap();
    assert_eq!(orders.data.len(), 1);
    let status = wait_status(&bridge, "3 commands counted", |s| s.commands_ok == 3).await;
    assert_eq!(status.commands_failed, 0);
    bridge.shutdown().await;
}

pub(crate) async fn malformed_commands_get_an_error_reply_and_change_nothing(target: &Target) {
    let store = seeded_store().await;
    let b = target.broker(&store, &unique_prefix("malformed")).await;
    let p = b.prefix.clone();
    let bridge = start_bridge(&store, b.bridge_config().start_from(StartFrom::Head)).await;
    let staff = token(&store, "staff", &[Scope::PetsWrite, Scope::OrdersWrite]);
    let pet = create_pet(&store, "Untouched").await;
    let sold = create_pet(&store, "AlreadySold").await;
    store
        .set_pet_status(&admin(), &sold.id, PetStatus::Sold)
        .await
        .unwrap();
    let mut me = Client::connect(&b.url, &b.client_id("req")).await;
    let replies = me.replies(&p);
    me.subscribe(&replies).await;
    let head = store.head().await.unwrap();
    let pets_before = store
        .pets(&admin(), &PetQuery::default().limit(100))
        .await
        .unwrap()
        .data;

    let status_topic = format!("{p}commands/pets/{}/status", pet.id);
    let orders_topic = format!("{p}commands/orders");
    let cases: Vec<(String, String, &str, Option<&str>)> = vec![
        (
            status_topic.clone(),
            r#"{"status":"#.into(),
            "invalid_input",
            None,
        ),
        (
            status_topic.clone(),
            r#"{"status":"flying"}"#.into(),
            "invalid_input",
            None,
        ),
        (
            status_topic.clone(),
            r#"{"status":"sold","x":1}"#.into(),
            "invalid_input",
            Some("x"),
        ),
        (status_topic.clone(), "".into(), "invalid_input", None),
        (
            format!("{p}commands/pets/not-a-pet/status"),
            r#"{"status":"sold"}"#.into(),
            "not_found",
            None,
        ),
        (
            orders_topic.clone(),
            r#"{"quantity":1}"#.into(),
            "invalid_input",
            Some("pet_id"),
        ),
        (
            orders_topic.clone(),
            format!(r#"{{"pet_id":"{}","quantity":0}}"#, pet.id),
            "invalid_input",
            Some("quantity"),
        ),
        (
            orders_topic.clone(),
            r#"{"pet_id":"pet_doesnotexist"}"#.into(),
            "not_found",
            None,
        ),
        (
            orders_topic.clone(),
            format!(r#"{{"pet_id":"{}"}}"#, sold.id),
            "conflict",
            None,
        ),
        (
            format!("{p}commands/launch"),
            "{}".into(),
            "not_found",
            None,
        ),
    ];
    for (i, (topic, payload, code, field)) in cases.iter().enumerate() {
        let corr = format!("bad-{i}");
        let (reply, msg) = me
            .request(topic, payload, &replies, corr.as_bytes(), Some(&staff))
            .await;
        assert_eq!(reply["ok"], false, "{topic} {payload}: {reply}");
        assert_eq!(reply["error"]["code"], *code, "{topic} {payload}: {reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(reply["error"]["fields"].is_array());
        if let Some(field) = field {
            assert_eq!(reply["error"]["fields"][0]["field"], *field, "{reply}");
        }
        assert_eq!(msg.props.correlation_data.as_deref(), Some(corr.as_bytes()));
    }
    // Nothing changed: no event, same pets, no order.
    assert_eq!(store.head().await.unwrap(), head);
    let pets_after = store
        .pets(&admin(), &PetQuery::default().limit(100))
        .await
        .unwrap()
        .data;
    assert_eq!(pets_after, pets_before);
    assert!(
        store
            .orders(&admin(), &OrderQuery::default())
            .await
            .unwrap()
            .data
            .is_empty()
    );
    let status = wait_status(&bridge, "failures counted", |s| {
        s.commands_failed == cases.len() as u64
    })
    .await;
    assert_eq!(status.commands_ok, 0);
    bridge.shutdown().await;
}

/// A topic prefix no other test uses (brokers may be shared, retained messages stay).
pub(crate) fn unique_prefix(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "it-{}-{}-{name}/",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The log offset of an event envelope.
pub(crate) fn offset(envelope: &Value) -> u64 {
    envelope["offset"]
        .as_str()
        .and_then(|t| t.parse::<ResumeToken>().ok())
        .unwrap_or_else(|| panic!("an envelope with an offset: {envelope}"))
        .offset
}
