//! The MQTT bridge's lag gauge (`petstore_mqtt_bridge_lag_events`) by exact value: a
//! bridge whose broker never answers owes every event of the log.
//!
//! A test binary of its own: the gauge has no labels and the recorder is global to the
//! process, so no other server's bridge may set it meanwhile.

#[allow(dead_code, unreachable_pub)]
#[path = "it/support/mod.rs"]
mod support;

use std::time::Duration;

use petstore_core::{NewPet, PetStore};
use petstore_server::ServerArgs;

/// The gauge's value in `/metrics`, if it is there.
async fn lag(base: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("petstore_mqtt_bridge_lag_events "))
        .map(|v| v.trim().parse().expect("a number"))
}

/// Three events appended while the bridge cannot reach its broker: at its next lag
/// check (every 10 s) the gauge reads 3, the log's head, as nothing was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_gauge_counts_the_events_a_disconnected_bridge_owes() {
    // An address nobody listens on (bound, then released).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let s = petstore_server::start_with_store(
        PetStore::in_memory(),
        ServerArgs {
            mqtt_url: Some(format!("mqtt://{dead}")),
            ..ServerArgs::ephemeral()
        },
    )
    .await
    .expect("server starts");
    let admin = support::system();
    for name in ["Owed 1", "Owed 2", "Owed 3"] {
        let pet: NewPet = serde_json::from_value(support::new_pet(name)).unwrap();
        s.store.create_pet(&admin, pet).await.unwrap();
    }
    assert_eq!(s.store.head().await.unwrap().offset, 3);
    let base = s.http_url();
    // The bridge checks its lag every 10 s: wait up to three checks.
    let seen = tokio::time::timeout(Duration::from_secs(35), async {
        loop {
            if let Some(v) = lag(&base).await
                && v != 0.0
            {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the lag gauge within three checks");
    assert_eq!(seen, 3.0);
    s.shutdown().await.unwrap();
}
