//! `/livez` and `/readyz` over HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use petstore_http::Health;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

async fn get(base: &str, path: &str) -> (StatusCode, Value) {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn readiness_follows_checks_and_turns_503_at_drain_while_liveness_stays() {
    let shutdown = CancellationToken::new();
    let health = Health::new(shutdown.clone());
    let bridge_up = Arc::new(AtomicBool::new(true));
    health.check("store", || async { Ok(()) });
    let up = bridge_up.clone();
    health.check("mqtt_bridge", move || {
        let up = up.load(Ordering::SeqCst);
        async move {
            if up {
                Ok(())
            } else {
                Err("not connected to the broker".to_owned())
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = health.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    assert_eq!(
        get(&base, "/readyz").await,
        (
            StatusCode::OK,
            json!({"status": "ready", "checks": [
                {"name": "store", "status": "ok"},
                {"name": "mqtt_bridge", "status": "ok"},
            ]})
        )
    );

    bridge_up.store(false, Ordering::SeqCst);
    assert_eq!(
        get(&base, "/readyz").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "checks": [
                {"name": "store", "status": "ok"},
                {"name": "mqtt_bridge", "status": "failing", "detail": "not connected to the broker"},
            ]})
        )
    );
    bridge_up.store(true, Ordering::SeqCst);
    assert_eq!(get(&base, "/readyz").await.0, StatusCode::OK);

    shutdown.cancel();
    let (status, body) = get(&base, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "draining");
    assert_eq!(
        get(&base, "/livez").await,
        (StatusCode::OK, json!({"status": "alive"}))
    );
}

#[tokio::test(start_paused = true)]
async fn a_check_that_hangs_fails_after_its_timeout() {
    let health = Health::new(CancellationToken::new());
    health.check("store", std::future::pending);
    let readiness = health.readiness().await;
    assert!(!readiness.is_ready());
    assert_eq!(readiness.checks[0].status, "failing");
    assert!(
        readiness.checks[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("no answer")
    );
}
