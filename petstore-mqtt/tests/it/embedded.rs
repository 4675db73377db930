//! Against the embedded rumqttd broker (always run).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::time::Duration;

use petstore_core::{
    ErrorKind, EventFilter, EventType, MemoryStore, PetStatus, PetStore, ResumeToken, ServiceConfig,
};
use petstore_mqtt::{Bridge, BridgeHandle, MqttConfig, MqttVersion, StartFrom};

use crate::brokers::{Broker, Target};
use crate::scenarios::{self, offset, start_bridge, unique_prefix};
use crate::support::*;

#[tokio::test]
async fn events_reach_every_topic() {
    scenarios::events_reach_every_topic(&Target::Embedded).await;
}

#[tokio::test]
async fn retained_messages_reach_a_late_subscriber() {
    scenarios::retained_messages_reach_a_late_subscriber(&Target::Embedded).await;
}

#[tokio::test]
async fn commands_reply_on_the_response_topic() {
    scenarios::commands_reply_on_the_response_topic(&Target::Embedded).await;
}

#[tokio::test]
async fn malformed_commands_get_an_error_reply_and_change_nothing() {
    scenarios::malformed_commands_get_an_error_reply_and_change_nothing(&Target::Embedded).await;
}

/// An embedded broker for `store` with a fresh prefix.
async fn broker(store: &PetStore, name: &str) -> Broker {
    Target::Embedded.broker(store, &unique_prefix(name)).await
}

/// The embedded broker's front address.
fn front(b: &Broker) -> std::net::SocketAddr {
    b.embedded.as_ref().unwrap().addr()
}

#[tokio::test]
async fn presence_is_online_then_offline_after_shutdown() {
    let store = seeded_store().await;
    let b = broker(&store, "presence").await;
    let p = b.prefix.clone();
    let mut watcher = Client::connect(&b.url, &b.client_id("watch")).await;
    watcher.subscribe(&format!("{p}status")).await;
    let bridge = start_bridge(&store, b.bridge_config()).await;
    assert_eq!(
        &watcher.next_on(&format!("{p}status")).await.payload[..],
        b"online"
    );
    bridge.shutdown().await;
    assert_eq!(
        &watcher.next_on(&format!("{p}status")).await.payload[..],
        b"offline"
    );
    // Retained: a newcomer learns the bridge is offline.
    let mut late = Client::connect(&b.url, &b.client_id("late")).await;
    late.subscribe(&format!("{p}status")).await;
    let m = late.next_on(&format!("{p}status")).await;
    assert!(m.retain);
    assert_eq!(&m.payload[..], b"offline");
}

#[tokio::test]
async fn cancelling_the_shutdown_token_stops_the_bridge_cleanly() {
    let store = seeded_store().await;
    let b = broker(&store, "token").await;
    let p = b.prefix.clone();
    let mut watcher = Client::connect(&b.url, &b.client_id("watch")).await;
    watcher.subscribe(&format!("{p}status")).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bridge = Bridge::start(store.clone(), b.bridge_config(), shutdown.clone()).unwrap();
    let mut updates = bridge.status_updates();
    assert_eq!(
        &watcher.next_on(&format!("{p}status")).await.payload[..],
        b"online"
    );
    shutdown.cancel();
    // The same clean stop as `BridgeHandle::shutdown`: `offline`, then not running.
    assert_eq!(
        &watcher.next_on(&format!("{p}status")).await.payload[..],
        b"offline"
    );
    let stopped = tokio::time::timeout(WAIT, updates.wait_for(|s| !s.running))
        .await
        .expect("the bridge stops")
        .map(|s| s.clone())
        .unwrap_or_else(|_| updates.borrow().clone());
    assert!(!stopped.running && !stopped.connected, "{stopped:?}");
    drop(bridge);
}

#[tokio::test]
async fn last_will_says_offline_when_the_bridge_vanishes() {
    let store = seeded_store().await;
    let b = broker(&store, "will").await;
    let p = b.prefix.clone();
    let mut watcher = Client::connect(&b.url, &b.client_id("watch")).await;
    watcher.subscribe(&format!("{p}status")).await;
    let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), front(&b)).await;
    let bridge = start_bridge(&store, b.bridge_config().url(proxy.url())).await;
    assert_eq!(
        &watcher.next_on(&format!("{p}status")).await.payload[..],
        b"online"
    );
    // The connection dies without DISCONNECT: the broker publishes the Last Will.
    proxy.cut().await;
    assert_eq!(
        &watcher.next_on(&format!("{p}status")).await.payload[..],
        b"offline"
    );
    wait_status(&bridge, "disconnected", |s| !s.connected).await;
    drop(bridge);
}

async fn create_pets(store: &PetStore, from: usize, n: usize) {
    for i in from..from + n {
        create_pet(store, &format!("Burst{i}")).await;
    }
}

/// Waits until `sub` has seen an envelope for every offset in `expected`, then for a
/// sentinel event written after them, so that copies published behind the last
/// expected event are counted too. Delivery is at least once: an offset may arrive
/// more than once only inside `may_repeat` (what was in flight when a link broke);
/// any other copy, and any missing offset, fails. `sub` must receive `pet.created`.
pub(crate) async fn see_every_offset(
    sub: &mut Client,
    store: &PetStore,
    expected: &BTreeSet<u64>,
    may_repeat: RangeInclusive<u64>,
) {
    let mut seen = BTreeMap::<u64, usize>::new();
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    let mut sentinel = None;
    let mut sentinel_seen = false;
    while !sentinel_seen {
        if sentinel.is_none() && expected.iter().all(|o| seen.contains_key(o)) {
            sentinel = Some(create_pet(store, "Sentinel").await.id);
        }
        let Some(m) = sub.next_before(deadline).await else {
            break;
        };
        if m.payload.is_empty() {
            continue;
        }
        let envelope = m.json();
        if sentinel
            .as_ref()
            .is_some_and(|id| envelope["subject"] == id.as_str())
        {
            sentinel_seen = true;
        } else {
            *seen.entry(offset(&envelope)).or_default() += 1;
        }
    }
    let missing: Vec<_> = expected.iter().filter(|o| !seen.contains_key(o)).collect();
    assert!(missing.is_empty(), "offsets never delivered: {missing:?}");
    assert!(
        sentinel_seen,
        "the sentinel written after them never arrived"
    );
    let repeated: Vec<_> = seen
        .iter()
        .filter(|(o, n)| **n > 1 && !may_repeat.contains(o))
        .collect();
    assert!(
        repeated.is_empty(),
        "offsets delivered more than once (offset, copies) outside {may_repeat:?}: {repeated:?}"
    );
}

/// No offset may arrive twice.
#[expect(
    clippy::reversed_empty_ranges,
    reason = "empty on purpose: no offset is in it"
)]
pub(crate) const NO_REPEAT: RangeInclusive<u64> = 1..=0;

/// The offsets that may arrive twice after the bridge resumed from `resumed` with up
/// to `window` events in flight: those it published after `resumed` before the link
/// broke, without their acknowledgement.
pub(crate) fn in_flight_after(resumed: ResumeToken, window: u64) -> RangeInclusive<u64> {
    resumed.offset + 1..=resumed.offset + window
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_loss_mid_burst_loses_no_event() {
    let store = seeded_store().await;
    let b = broker(&store, "outage").await;
    let p = b.prefix.clone();
    let mut sub = Client::connect(&b.url, &b.client_id("sub")).await;
    sub.subscribe(&format!("{p}events/pet.created")).await;
    let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), front(&b)).await;
    let addr = proxy.addr;
    let bridge = start_bridge(
        &store,
        b.bridge_config()
            .url(proxy.url())
            .start_from(StartFrom::Head)
            .queue_len(8)
            .reconnect_delay(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .await;
    let start = store.head().await.unwrap();
    create_pets(&store, 0, 100).await;
    let before = wait_status(&bridge, "20 events acknowledged", |s| {
        s.last_acked.is_some_and(|a| a.offset >= start.offset + 20)
    })
    .await;
    proxy.cut().await;
    wait_status(&bridge, "disconnected", |s| !s.connected).await;
    // Writers never wait for the bridge, outage or not.
    create_pets(&store, 100, 100).await;
    let _proxy = Proxy::start(addr, front(&b)).await;
    let head = store.head().await.unwrap();
    let status = wait_status(&bridge, "caught up", |s| s.last_acked == Some(head)).await;
    assert!(status.connects >= 2, "{status:?}");
    let resumed = status.resumed_from.unwrap();
    assert!(
        resumed.offset >= before.last_acked.unwrap().offset,
        "{status:?}"
    );
    assert!(resumed.offset < head.offset, "{status:?}");
    let expected: BTreeSet<u64> = (start.offset + 1..=head.offset).collect();
    see_every_offset(&mut sub, &store, &expected, in_flight_after(resumed, 8)).await;
    bridge.shutdown().await;
}

#[tokio::test]
async fn mqtt_311_bridge_publishes_and_takes_no_commands() {
    let store = seeded_store().await;
    let b = broker(&store, "v311").await;
    let p = b.prefix.clone();
    let mut sub = Client::connect(&b.url, &b.client_id("sub")).await;
    sub.subscribe(&format!("{p}events/pet.created")).await;
    sub.subscribe(&format!("{p}events/pet.status_changed"))
        .await;
    let bridge = start_bridge(
        &store,
        b.bridge_config()
            .version(MqttVersion::V311)
            .start_from(StartFrom::Head),
    )
    .await;
    let pet = create_pet(&store, "Classic").await;
    let m = sub.next_on(&format!("{p}events/pet.created")).await;
    assert_eq!(m.json()["subject"], pet.id.as_str());
    assert!(
        m.props.user_properties.is_empty(),
        "3.1.1 has no user properties"
    );

    // A command's token travels in an MQTT 5 user property, which a 3.1.1 bridge
    // never sees: it does not take commands, even well-authorized ones.
    let staff = token(&store, "staff", &[petstore_core::Scope::PetsWrite]);
    let replies = sub.replies(&p);
    sub.subscribe(&replies).await;
    sub.send_command(
        &format!("{p}commands/pets/{}/status", pet.id),
        r#"{"status":"sold"}"#,
        &replies,
        b"v311",
        Some(&staff),
    )
    .await;
    // The next event is the marker: the command, had it run, came before it.
    let marker = create_pet(&store, "Marker").await;
    let seen = sub
        .until("the marker", |m| {
            m.topic.ends_with("pet.created") && m.json()["subject"] == marker.id.as_str()
        })
        .await;
    assert!(
        seen.iter()
            .all(|m| !m.topic.ends_with("status_changed") && m.topic != replies),
        "{seen:?}"
    );
    assert_eq!(
        store.pet(&admin(), &pet.id).await.unwrap().status,
        PetStatus::Available
    );
    let status = bridge.status();
    assert_eq!((status.commands_ok, status.commands_failed), (0, 0));
    bridge.shutdown().await;
}

#[tokio::test]
async fn bad_configuration_fails_at_start() {
    let store = PetStore::in_memory();
    for config in [
        MqttConfig::default().url("http://127.0.0.1:1883"),
        MqttConfig::default().url("mqtt://127.0.0.1:notaport"),
        MqttConfig::default().topic_prefix("a/+/"),
        MqttConfig::default()
            .url("mqtts://127.0.0.1:8883")
            .ca_file("/nonexistent/ca.pem"),
    ] {
        let err = Bridge::start(
            store.clone(),
            config.clone(),
            tokio_util::sync::CancellationToken::new(),
        )
        .expect_err(&format!("{config:?}"));
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }
}

#[tokio::test]
async fn a_position_from_another_log_goes_on_from_the_oldest_retained_event_and_says_so() {
    let store = seeded_store().await;
    let b = broker(&store, "expired").await;
    let p = b.prefix.clone();
    let mut sub = Client::connect(&b.url, &b.client_id("sub")).await;
    sub.subscribe(&format!("{p}events/pet.created")).await;
    // A token from another log epoch can never resume: the follower's policy is to go
    // on from the oldest event this log retains, publishing everything it holds.
    let head = store.head().await.unwrap();
    let foreign = ResumeToken::new(head.epoch ^ 1, 1);
    let bridge = Bridge::start(
        store.clone(),
        b.bridge_config().start_from(StartFrom::After(foreign)),
        tokio_util::sync::CancellationToken::new(),
    )
    .unwrap();
    let status = wait_status(&bridge, "caught up after a reset", |s| {
        s.resets == 1 && s.connected && s.last_acked == Some(head)
    })
    .await;
    assert!(status.last_error.unwrap().contains("cannot resume"));
    // Every retained pet.created went out, oldest first, once each.
    let created = store
        .events(&admin(), None, 1000, EventFilter::all(), Duration::ZERO)
        .await
        .unwrap()
        .events
        .into_iter()
        .filter(|e| e.event_type() == EventType::PetCreated)
        .map(|e| e.id().to_string())
        .collect::<Vec<_>>();
    assert!(!created.is_empty());
    for id in &created {
        assert_eq!(sub.next().await.json()["id"].as_str(), Some(id.as_str()));
    }
    // And it goes on publishing from there.
    let pet = create_pet(&store, "AfterReset").await;
    assert_eq!(sub.next().await.json()["subject"], pet.id.as_str());
    scenarios::wait_all_acked(&store, &bridge).await;
    assert_eq!(bridge.lag().await.unwrap(), 0);
    bridge.shutdown().await;
}

#[tokio::test]
async fn a_bridge_behind_the_live_log_rereads_it_without_gaps() {
    // Live subscribers may fall 4 events behind; the log keeps 10 000.
    let store = PetStore::new(
        MemoryStore::new(petstore_core::LogConfig::default().subscriber_buffer(4)),
        petstore_core::TokenAuthority::random(Duration::from_secs(60)),
        ServiceConfig::default(),
    );
    let b = broker(&store, "lagged").await;
    let mut sub = Client::connect(&b.url, &b.client_id("sub")).await;
    sub.subscribe(&b.topic("events/pet.created")).await;
    let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), front(&b)).await;
    let bridge = start_bridge(
        &store,
        b.bridge_config()
            .url(proxy.url())
            .start_from(StartFrom::Head)
            .queue_len(1),
    )
    .await;
    let start = store.head().await.unwrap();
    // The broker's acknowledgements are held back while 60 events are written, so the
    // bridge (one event in flight) cannot keep up and its live feed overflows: it is
    // behind by construction, not by winning a race with the writer.
    proxy.hold();
    create_pets(&store, 0, 60).await;
    proxy.release();
    let head = store.head().await.unwrap();
    let status = wait_status(&bridge, "caught up", |s| s.last_acked == Some(head)).await;
    assert!(status.lagged >= 1, "{status:?}");
    assert_eq!(status.connects, 1, "the link never broke: {status:?}");
    // No link broke: re-reading the log after a lag publishes nothing twice.
    let expected: BTreeSet<u64> = (start.offset + 1..=head.offset).collect();
    see_every_offset(&mut sub, &store, &expected, NO_REPEAT).await;
    bridge.shutdown().await;
}

/// A store whose live subscribers may fall `buffer` events behind and whose log keeps
/// only `retention` events.
fn small_log_store(buffer: usize, retention: usize) -> PetStore {
    PetStore::new(
        MemoryStore::new(
            petstore_core::LogConfig::default()
                .subscriber_buffer(buffer)
                .retention(retention),
        ),
        petstore_core::TokenAuthority::random(Duration::from_secs(60)),
        ServiceConfig::default(),
    )
}

/// Waits for the `pet.created` envelope of `pet` on `sub`.
async fn see_pet_created(sub: &mut Client, pet: &petstore_core::Pet, bridge: &BridgeHandle) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let Some(m) = sub.next_before(deadline).await else {
            panic!(
                "the bridge never published the last event written: {:?}",
                bridge.status()
            );
        };
        if !m.payload.is_empty() && m.json()["subject"] == pet.id.as_str() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_longer_than_the_log_still_publishes_the_newest_events() {
    // Live subscribers may fall 2 events behind and the log keeps only 8: a burst
    // leaves the bridge (one event in flight) further behind than the log retains.
    let store = small_log_store(2, 8);
    let b = broker(&store, "overrun").await;
    let topic = b.topic("events/pet.created");
    let mut sub = Client::connect(&b.url, &b.client_id("sub")).await;
    sub.subscribe(&topic).await;
    let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), front(&b)).await;
    let bridge = start_bridge(
        &store,
        b.bridge_config()
            .url(proxy.url())
            .start_from(StartFrom::Head)
            .queue_len(1),
    )
    .await;
    // The broker's acknowledgements are held back during the burst: the bridge is
    // further behind than the log retains by construction, not by losing a race.
    proxy.hold();
    create_pets(&store, 0, 2000).await;
    // The last event of the burst is still in the log: it must reach subscribers (a
    // bridge that jumped to the head after losing its place skipped it, and published
    // nothing until the next write).
    let last = create_pet(&store, "LastOfTheBurst").await;
    proxy.release();
    see_pet_created(&mut sub, &last, &bridge).await;
    let head = store.head().await.unwrap();
    let status = wait_status(&bridge, "caught up", |s| s.last_acked == Some(head)).await;
    assert!(
        status.resets >= 1,
        "the burst never outran the log: {status:?}"
    );
    assert_eq!(bridge.lag().await.unwrap(), 0);
    bridge.shutdown().await;
}

#[tokio::test]
async fn an_outage_longer_than_the_log_publishes_what_the_log_still_holds() {
    let store = small_log_store(1024, 8);
    let b = broker(&store, "long-outage").await;
    let mut sub = Client::connect(&b.url, &b.client_id("sub")).await;
    sub.subscribe(&b.topic("events/pet.created")).await;
    let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), front(&b)).await;
    let addr = proxy.addr;
    let bridge = start_bridge(
        &store,
        b.bridge_config()
            .url(proxy.url())
            .start_from(StartFrom::Head)
            .reconnect_delay(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .await;
    let first = create_pet(&store, "BeforeTheOutage").await;
    see_pet_created(&mut sub, &first, &bridge).await;
    let before = store.head().await.unwrap();
    wait_status(&bridge, "first event acknowledged", |s| {
        s.last_acked == Some(before)
    })
    .await;
    proxy.cut().await;
    wait_status(&bridge, "disconnected", |s| !s.connected).await;
    // 50 events while the broker is away: the log keeps the newest 8.
    create_pets(&store, 0, 50).await;
    let head = store.head().await.unwrap();
    let _proxy = Proxy::start(addr, front(&b)).await;
    let status = wait_status(&bridge, "caught up", |s| {
        s.connected && s.last_acked == Some(head)
    })
    .await;
    assert_eq!(status.resets, 1, "{status:?}");
    assert_eq!(status.resumed_from, Some(before), "{status:?}");
    // Everything the log still held went out, the newest event included.
    let retained: BTreeSet<u64> = (head.offset - 7..=head.offset).collect();
    // Only the one event acknowledged before the cut was in flight; nothing after the
    // resume point was published before it, so nothing arrives twice.
    see_every_offset(&mut sub, &store, &retained, NO_REPEAT).await;
    bridge.shutdown().await;
}

/// A command with a `traceparent` user property runs in that trace: the event its
/// write causes carries it (as a REST write's does). One without, or with a malformed
/// one, causes an event without.
#[tokio::test]
async fn a_commands_traceparent_travels_into_its_event() {
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let store = seeded_store().await;
    let b = broker(&store, "traced").await;
    let p = b.prefix.clone();
    let bridge = start_bridge(&store, b.bridge_config().start_from(StartFrom::Head)).await;
    let pets = scenarios::available_pets(&store, 2).await;
    let alice = token(&store, "alice", &[petstore_core::Scope::PetsWrite]);
    let mut me = Client::connect(&b.url, &b.client_id("req")).await;
    let replies = me.replies(&p);
    me.subscribe(&replies).await;
    for (pet, traceparent) in [(&pets[0], Some(TRACEPARENT)), (&pets[1], Some("00-bogus"))] {
        let mut user = vec![("authorization".to_owned(), format!("Bearer {alice}"))];
        if let Some(t) = traceparent {
            user.push(("traceparent".to_owned(), t.to_owned()));
        }
        let topic = format!("{p}commands/pets/{}/status", pet.id);
        me.send_command_with(&topic, r#"{"status":"pending"}"#, &replies, b"c", user)
            .await;
        let reply = me.next_on(&replies).await.json();
        assert_eq!(reply["ok"], true, "{reply}");
    }
    let batch = store
        .events(&admin(), None, 1000, EventFilter::default(), Duration::ZERO)
        .await
        .unwrap();
    let traced = |id: &petstore_core::PetId| {
        let event = batch
            .events
            .iter()
            .rev()
            .find(|e| e.subject() == id.as_str())
            .unwrap_or_else(|| panic!("no event of {id}"));
        event.traceparent().map(ToString::to_string)
    };
    assert_eq!(traced(&pets[0].id).as_deref(), Some(TRACEPARENT));
    assert_eq!(traced(&pets[1].id), None);
    bridge.shutdown().await;
}
