//! The binary on SQLite and on PostgreSQL (one scenario, run on each), killed with
//! SIGKILL in the middle of a burst of writes and started again on the same database:
//! nothing acknowledged is lost, the log goes on in the same epoch without a gap, a
//! resume token from before the crash still resumes (SSE replays every later event,
//! no reset), the webhook endpoint and the delivery that was due at the crash survive,
//! and the sample catalogue is not seeded again. The PostgreSQL run needs
//! `PETSTORE_TEST_DATABASE_URL` and says that it skips without it (a failure with
//! `PETSTORE_REQUIRE_ALL` set).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::new_pet;
use crate::support::process::{
    Instance, Receiver, all_events_after, events_page, new_postgres_database, next, offset,
    postgres_cluster, sse_data,
};

/// Writers posting pets at once.
const WRITERS: usize = 8;
/// How long the burst runs before the kill.
const BURST: Duration = Duration::from_millis(1500);

fn sqlite_url() -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("petstore-server-crash");
    format!(
        "sqlite://{}/{}.db",
        dir.display(),
        uuid::Uuid::new_v4().simple()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_burst_on_sqlite_loses_nothing_acknowledged() {
    sigkill_mid_burst_loses_nothing_acknowledged(&sqlite_url(), "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_burst_on_postgres_loses_nothing_acknowledged() {
    let Some(cluster) = postgres_cluster() else {
        return;
    };
    let url = new_postgres_database(&cluster).await;
    sigkill_mid_burst_loses_nothing_acknowledged(&url, "PostgreSQL").await;
}

/// The scenario on the database at `url`, whose banner names the store `store`.
async fn sigkill_mid_burst_loses_nothing_acknowledged(url: &str, store: &str) {
    let t0 = tokio::time::Instant::now();
    let client = reqwest::Client::new();
    let receiver = Receiver::default();
    let hook = receiver.start().await;

    let a = Instance::start(url).await;
    assert!(a.store_line.contains(store), "{}", a.store_line);
    // The endpoint takes pet deletions only: the burst's creations do not queue up
    // behind the delivery this test follows.
    let endpoint: Value = client
        .post(format!("{}/v1/webhooks", a.url))
        .bearer_auth(&a.token)
        .json(&json!({ "url": hook, "events": ["pet.deleted"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let endpoint_id = endpoint["id"].as_str().expect("an endpoint id").to_owned();

    // A deletion whose first delivery attempt fails: its retry is due 5 s later, after
    // the crash.
    receiver.fail_first(true);
    let doomed: Value = client
        .post(format!("{}/v1/pets", a.url))
        .bearer_auth(&a.token)
        .json(&new_pet("Doomed"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status = client
        .delete(format!(
            "{}/v1/pets/{}",
            a.url,
            doomed["id"].as_str().unwrap()
        ))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    receiver
        .wait_until("the first, failing attempt", Duration::from_secs(20), |d| {
            d.iter()
                .any(|d| d.status == StatusCode::SERVICE_UNAVAILABLE)
        })
        .await;
    let due = receiver.deliveries()[0].id.clone();

    // The resume token handed out before the burst.
    let (_, before) = events_page(&client, &a, None).await;
    let before_token: petstore_core::ResumeToken = before.parse().unwrap();

    // The burst: every 201 is an acknowledged write.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, url, token, acked) = (
                client.clone(),
                a.url.clone(),
                a.token.clone(),
                acked.clone(),
            );
            tokio::spawn(async move {
                for i in 0.. {
                    let response = client
                        .post(format!("{url}/v1/pets"))
                        .bearer_auth(&token)
                        .json(&new_pet(&format!("W{w}-{i}")))
                        .send()
                        .await;
                    let Ok(response) = response else { return };
                    if response.status() != StatusCode::CREATED {
                        return;
                    }
                    let Ok(pet) = response.json::<Value>().await else {
                        return;
                    };
                    acked
                        .lock()
                        .unwrap()
                        .push(pet["id"].as_str().unwrap().to_owned());
                }
            })
        })
        .collect();
    tokio::time::sleep(BURST).await;
    a.kill().await;
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "the burst wrote only {} pets",
        acked.len()
    );
    eprintln!(
        "{:?}: killed after {} acknowledged pets",
        t0.elapsed(),
        acked.len()
    );

    receiver.fail_first(false);
    let b = Instance::start(url).await;

    // Every acknowledged pet is there.
    for id in &acked {
        let status = client
            .get(format!("{}/v1/pets/{id}", b.url))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK, "acknowledged pet {id} is gone");
    }
    // The log goes on from the token of before the crash: same epoch, no gap, and a
    // `pet.created` event for every acknowledged pet.
    let after = all_events_after(&client, &b, &before).await;
    for (i, event) in after.iter().enumerate() {
        let o = offset(event);
        assert_eq!(o.epoch, before_token.epoch, "same epoch");
        assert_eq!(o.offset, before_token.offset + 1 + i as u64, "no gap");
    }
    let created: HashSet<&str> = after
        .iter()
        .filter(|e| e["type"] == "pet.created")
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    for id in &acked {
        assert!(created.contains(id.as_str()), "no event for pet {id}");
    }
    // The restart did not seed the catalogue again: every event since is the creation
    // of one of the burst's pets.
    for e in &after {
        let name = e["data"]["name"].as_str().unwrap_or_default();
        assert!(
            e["type"] == "pet.created" && name.starts_with('W'),
            "an event not from the burst: {e}"
        );
    }
    // Users (with their password hash) survived: the seeded user logs in.
    let status = client
        .post(format!("{}/v1/auth/token", b.url))
        .json(&json!({ "username": "alice", "password": "alice-password" }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK, "alice logs in after the restart");
    // SSE resumes from the old token with every later event, in order, no reset.
    let response = client
        .get(format!("{}/v1/stream/pets", b.url))
        .header("last-event-id", &before)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = sse_data(response);
    for (i, polled) in after.iter().enumerate() {
        let replayed = next("the resumed SSE events", &mut stream).await;
        assert_ne!(replayed["type"], "reset", "{replayed}");
        assert_eq!(
            (&replayed["id"], &replayed["offset"]),
            (&polled["id"], &polled["offset"]),
            "SSE event {i} after the old token"
        );
    }

    // The endpoint survived, and the delivery due at the crash arrives with its
    // webhook-id (the new instance takes the lease once the killed one's lapses).
    let status = client
        .get(format!("{}/v1/webhooks/{endpoint_id}", b.url))
        .bearer_auth(&b.token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    receiver
        .wait_until(
            "the retry of the delivery due at the crash",
            Duration::from_secs(30),
            |d| {
                d.iter()
                    .any(|d| d.id == due && d.status == StatusCode::NO_CONTENT)
            },
        )
        .await;
    eprintln!("{:?}: deliveries {:?}", t0.elapsed(), receiver.deliveries());
    b.kill().await;
}
