//! Polling: paging the log with `since`/`next`, 410 for tokens that cannot resume,
//! the pet feed, long polling.

use std::time::{Duration, Instant};

use petstore_core::{
    EventFilter, LogConfig, MemoryStore, PetStore, Principal, ResumeToken, Scope, ServiceConfig,
    TokenAuthority,
};
use petstore_rest::RestConfig;
use serde_json::{Value, json};

use crate::support::{Server, WAIT};

/// Follows `next` from `since` with pages of `limit`; returns the events.
async fn drain(s: &Server, path: &str, since: &str, limit: usize) -> (Vec<Value>, String) {
    let mut events = Vec::new();
    let mut since = since.to_owned();
    for _ in 0..100 {
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = s
            .send(
                s.get(&format!("{path}{sep}since={since}&limit={limit}"))
                    .bearer_auth(s.admin()),
            )
            .await;
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let batch = r.expect(200);
        let page = batch["events"].as_array().unwrap().clone();
        assert!(page.len() <= limit);
        let next = batch["next"].as_str().unwrap().to_owned();
        let next_offset = next.parse::<ResumeToken>().unwrap().offset;
        let since_offset = since.parse::<ResumeToken>().unwrap().offset;
        // `next` never goes back, and skips filtered-out events.
        assert!(next_offset >= since_offset);
        if page.is_empty() {
            return (events, next);
        }
        let last: ResumeToken = page.last().unwrap()["offset"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(last.offset <= next_offset);
        events.extend(page);
        since = next;
    }
    panic!("the feed does not end");
}

/// Makes events of every family: pets created, updated, an order placed and paid.
async fn make_events(s: &Server) -> usize {
    let admin = s.admin();
    let mut pets = Vec::new();
    for i in 0..4 {
        pets.push(s.create_pet(&format!("P{i}"), "dog", &[]).await);
    }
    s.send(
        s.patch(&format!("/v1/pets/{}", pets[0]["id"].as_str().unwrap()))
            .bearer_auth(&admin)
            .json(&json!({"name": "Renamed"})),
    )
    .await
    .expect(200);
    let order = s
        .send(
            s.post("/v1/orders")
                .bearer_auth(&admin)
                .json(&json!({"pet_id": pets[1]["id"]})),
        )
        .await
        .expect(201);
    s.send(
        s.post(&format!(
            "/v1/orders/{}/payment",
            order["id"].as_str().unwrap()
        ))
        .bearer_auth(&admin),
    )
    .await
    .expect(201);
    // 4 created + 1 updated + (order.created, pet.status_changed)
    // + (payment.succeeded, order.status_changed)
    9
}

#[tokio::test]
async fn events_page_with_no_gap_or_duplicate() {
    let s = Server::start().await;
    let start = s.store.head().await.unwrap().to_string();
    let made = make_events(&s).await;

    for limit in [1, 2, 4, 100] {
        let (events, next) = drain(&s, "/v1/events", &start, limit).await;
        assert_eq!(events.len(), made, "limit {limit}");
        assert_eq!(next, s.store.head().await.unwrap().to_string());
        // Consecutive offsets: no gap, no duplicate.
        let offsets: Vec<u64> = events
            .iter()
            .map(|e| {
                let t: ResumeToken = e["offset"].as_str().unwrap().parse().unwrap();
                t.offset
            })
            .collect();
        let first = offsets[0];
        assert_eq!(offsets, (first..first + made as u64).collect::<Vec<_>>());
        // The envelope of the contract.
        for e in &events {
            for key in ["id", "type", "source", "time", "subject", "offset", "data"] {
                assert!(!e[key].is_null(), "{key} missing in {e}");
            }
            assert_eq!(e["specversion"], "1.0");
        }
    }

    // Without `since`, the feed starts at the oldest retained event.
    let r = s
        .send(s.get("/v1/events?limit=1000").bearer_auth(s.admin()))
        .await
        .expect(200);
    assert_eq!(r["events"].as_array().unwrap().len(), made);

    // Type filters: `next` still advances past filtered-out events.
    let (created, next) = drain(&s, "/v1/events?types=pet.created", &start, 2).await;
    assert_eq!(created.len(), 4);
    assert!(created.iter().all(|e| e["type"] == "pet.created"));
    assert_eq!(next, s.store.head().await.unwrap().to_string());
    let (money, _) = drain(&s, "/v1/events?types=payment.*,order.created", &start, 3).await;
    let types: Vec<&str> = money.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["order.created", "payment.succeeded"]);
    let (orders, _) = drain(&s, "/v1/events?channels=orders", &start, 100).await;
    assert_eq!(orders.len(), 3);
}

#[tokio::test]
async fn snapshot_then_poll_from_its_position() {
    let s = Server::start().await;
    s.create_pet("Before", "dog", &[]).await;
    let r = s.send(s.get("/v1/pets")).await;
    assert_eq!(r.expect(200)["data"].as_array().unwrap().len(), 1);
    let position = r.header("x-event-position").unwrap().to_owned();
    let after = s.create_pet("After", "cat", &[]).await;

    let batch = s
        .send(s.get(&format!("/v1/pets/changes?since={position}")))
        .await
        .expect(200);
    let events = batch["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "pet.created");
    assert_eq!(events[0]["subject"], after["id"]);
}

#[tokio::test]
async fn bad_and_expired_tokens() {
    let s = Server::start().await;
    s.create_pet("Rex", "dog", &[]).await;

    // Malformed: 400 naming `since`.
    for bad in ["garbage", "12", "00000000deadbeef-x"] {
        let r = s.send(s.get(&format!("/v1/events?since={bad}"))).await;
        assert_eq!(r.problem(400), "bad_request");
        assert_eq!(r.json()["errors"][0]["field"], "since");
    }
    // Another epoch (another store): 410 with a problem body.
    let other = PetStore::in_memory().head().await.unwrap();
    for path in ["/v1/events", "/v1/pets/changes"] {
        let r = s.send(s.get(&format!("{path}?since={other}"))).await;
        assert_eq!(r.problem(410), "resume_expired");
        assert!(r.json()["detail"].as_str().unwrap().contains("epoch"));
    }
    // Ahead of the log: 422.
    let head = s.store.head().await.unwrap();
    let ahead = ResumeToken::new(head.epoch, head.offset + 5);
    s.send(s.get(&format!("/v1/events?since={ahead}")))
        .await
        .problem(422);
    // Other bad parameters.
    s.send(s.get("/v1/events?types=pet.exploded"))
        .await
        .problem(400);
    s.send(s.get("/v1/events?channels=kennel"))
        .await
        .problem(400);
    s.send(s.get("/v1/events?limit=5000")).await.problem(422);
    s.send(s.get("/v1/events?wait=soon")).await.problem(400);
}

#[tokio::test]
async fn a_token_older_than_the_retained_log_is_gone() {
    let store = PetStore::new(
        MemoryStore::new(LogConfig::default().retention(3)),
        TokenAuthority::random(Duration::from_secs(60)),
        ServiceConfig::default(),
    );
    let s = Server::with(store, RestConfig::default()).await;
    let start = s.store.head().await.unwrap();
    for i in 0..5 {
        s.create_pet(&format!("P{i}"), "dog", &[]).await;
    }
    let r = s.send(s.get(&format!("/v1/events?since={start}"))).await;
    assert_eq!(r.problem(410), "resume_expired");
    // Starting over from the oldest retained event works.
    let r = s.send(s.get("/v1/events")).await.expect(200);
    assert_eq!(r["events"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn long_polls_do_not_wait_once_shutdown_has_started() {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let s = Server::with_shutdown(PetStore::in_memory(), shutdown.clone()).await;
    let head = s.store.head().await.unwrap();
    shutdown.cancel();
    // A plain poll is still answered...
    s.send(s.get(&format!("/v1/events?since={head}")))
        .await
        .expect(200);
    // ...but one that would wait for news ends at once: 503, poll again (elsewhere).
    let r = s
        .send(s.get(&format!("/v1/events?since={head}&wait=30")))
        .await;
    assert_eq!(r.problem(503), "unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn pet_changes_and_long_polling() {
    let s = Server::with(
        PetStore::in_memory(),
        RestConfig::default().max_poll_wait(Duration::from_secs(5)),
    )
    .await;
    let start = s.store.head().await.unwrap().to_string();
    make_events(&s).await;
    let (events, head) = drain(&s, "/v1/pets/changes", &start, 3).await;
    assert!(
        events
            .iter()
            .all(|e| e["type"].as_str().unwrap().starts_with("pet."))
    );
    assert_eq!(events.len(), 6);

    // Nothing new: `wait` holds the request for about that long, capped by the config.
    let began = Instant::now();
    let r = s
        .send(s.get(&format!("/v1/pets/changes?since={head}&wait=1")))
        .await
        .expect(200);
    assert!(r["events"].as_array().unwrap().is_empty());
    assert!(began.elapsed() >= Duration::from_millis(900));
    let began = Instant::now();
    s.send(s.get(&format!("/v1/events?since={head}&wait=600")))
        .await
        .expect(200);
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "the cap did not apply"
    );

    // A change while a long poll waits completes it with that change.
    let s = std::sync::Arc::new(s);
    let poller = {
        let s = s.clone();
        let head = head.clone();
        tokio::spawn(async move {
            s.send(s.get(&format!("/v1/pets/changes?since={head}&wait=5")))
                .await
                .expect(200)
        })
    };
    let pet = s.create_pet("Late", "dog", &[]).await;
    let batch = tokio::time::timeout(WAIT, poller).await.unwrap().unwrap();
    let events = batch["events"].as_array().unwrap();
    // The poll either waited for the change or started after it: either way it sees it.
    assert_eq!(events.len(), 1, "{batch}");
    assert_eq!(events[0]["subject"], pet["id"]);
}

#[tokio::test]
async fn the_feed_holds_what_the_caller_may_read() {
    let config = ServiceConfig::default().require_auth_for_reads(true);
    let store = PetStore::new(
        MemoryStore::default(),
        TokenAuthority::random(config.token_ttl),
        config,
    );
    let s = Server::with(store, RestConfig::default()).await;
    let start = s.store.head().await.unwrap().to_string();
    make_events(&s).await;
    s.store
        .post_chat(
            &Principal::system("bot"),
            petstore_core::NewChatMessage {
                room: "support".into(),
                text: "hello".into(),
            },
        )
        .await
        .unwrap();

    s.send(s.get("/v1/events")).await.problem(401);
    let pets_reader = s.token("p", &[Scope::PetsRead]);
    let r = s
        .send(
            s.get(&format!("/v1/events?since={start}&limit=100"))
                .bearer_auth(&pets_reader),
        )
        .await
        .expect(200);
    let types: Vec<&str> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        types
            .iter()
            .all(|t| t.starts_with("pet.") || *t == "chat.message"),
        "{types:?}"
    );
    assert!(!types.is_empty());
    s.send(
        s.get("/v1/events?channels=orders")
            .bearer_auth(&pets_reader),
    )
    .await
    .problem(403);
    // The core agrees with what the feed served.
    let direct = s
        .store
        .events(
            &Principal::new("p", [Scope::PetsRead]),
            Some(start.parse().unwrap()),
            100,
            EventFilter::all(),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(direct.events.len(), types.len());
}
