//! Where clients say where to resume from: SSE's `Last-Event-ID` header and the
//! polling `since` parameter, through the adapters' own routers (petstore-realtime's
//! `GET /v1/stream/pets`, petstore-rest's `GET /v1/events`) over a log of three events.
//!
//! The input is the raw value. Invariants: nothing panics; polling answers 200 for a
//! token of this log at or before its head and for a time in epoch milliseconds, 410 `resume_expired` for a token of another
//! epoch, 400 for anything else, never 5xx; SSE answers 200 and opens with `id:` the
//! position it resumes from: the token itself when it can resume, else the head with a
//! reset message first (`invalid_token` for what is not a token of this log,
//! `epoch_mismatch` for another epoch); an empty or blank value is live, without a
//! reset.
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use futures_util::FutureExt as _;
use http::{HeaderValue, Request};
use http_body_util::BodyExt as _;
use libfuzzer_sys::fuzz_target;
use petstore_core::{NewPet, PetStore, Principal, ResumeToken};
use petstore_http::Edge;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    sse: Router,
    polling: Router,
    head: ResumeToken,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let store = PetStore::in_memory();
        let head = runtime.block_on(async {
            for name in ["Rex", "Tom", "Kit"] {
                let pet: NewPet = serde_json::from_value(serde_json::json!({
                    "name": name, "species": "dog",
                    "price": {"amount": "10.00", "currency": "USD"}
                }))
                .expect("a new pet");
                store
                    .create_pet(&Principal::system("fuzz"), pet)
                    .await
                    .expect("created");
            }
            store.head().await.expect("head")
        });
        let edge = Edge::new();
        let sse = petstore_realtime::router(
            store.clone(),
            petstore_realtime::RealtimeConfig::default(),
            &edge,
            CancellationToken::new(),
        );
        let polling = petstore_rest::router(
            store,
            petstore_rest::RestConfig::default(),
            &edge,
            CancellationToken::new(),
        );
        Fixture {
            runtime,
            sse,
            polling,
            head,
        }
    })
}

/// What the log makes of `raw`: `Ok(token)` when it can resume from it, `Err(reason)`
/// when not (a reset reason of SSE).
fn resumable(raw: &str, head: ResumeToken) -> Result<ResumeToken, &'static str> {
    match raw.parse::<ResumeToken>() {
        Err(_) => Err("invalid_token"),
        Ok(t) if t.epoch != head.epoch => Err("epoch_mismatch"),
        Ok(t) if t.offset > head.offset => Err("invalid_token"),
        Ok(t) => Ok(t),
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    f.runtime.block_on(async {
        // Polling: `since` as the query carries it (percent-decoded, invalid UTF-8
        // replaced, as the query parser does).
        let encoded: String = form_urlencoded::byte_serialize(data).collect();
        let decoded = String::from_utf8_lossy(data);
        let request = Request::get(format!("/v1/events?since={encoded}"))
            .body(Body::empty())
            .expect("a request");
        let response = f
            .polling
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        // A time in epoch milliseconds (1 to 15 digits): every event of this log is
        // retained, so any such time reads after its position there.
        let epoch_millis = (1..=15).contains(&decoded.len()) && decoded.bytes().all(|b| b.is_ascii_digit());
        // An RFC 3339 time: the parameter's pattern is stricter than chrono (it refuses
        // leap seconds and a space for `T`), so either answer is right for the fuzzer.
        let rfc3339 = chrono::DateTime::parse_from_rfc3339(&decoded).is_ok();
        match resumable(&decoded, f.head) {
            Ok(_) => assert_eq!(status, 200, "since={decoded:?}: {text}"),
            Err("epoch_mismatch") => assert_eq!(status, 410, "since={decoded:?}: {text}"),
            Err(_) if decoded.is_empty() => assert!(status == 200 || status == 400, "{text}"),
            Err(_) if epoch_millis => assert_eq!(status, 200, "since={decoded:?}: {text}"),
            Err(_) if rfc3339 => assert!(status == 200 || status == 400, "since={decoded:?}: {text}"),
            Err(_) => assert_eq!(status, 400, "since={decoded:?}: {text}"),
        }

        // SSE: the header as sent (a value that is not visible ASCII is no token).
        let Ok(value) = HeaderValue::from_bytes(data) else {
            return;
        };
        let raw = value.to_str().map(str::trim).unwrap_or("\u{fffd}");
        let request = Request::get("/v1/stream/pets")
            .header("last-event-id", value.clone())
            .body(Body::empty())
            .expect("a request");
        let response = f.sse.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), 200, "Last-Event-ID {value:?}");
        // What the stream has ready at once: the opening message, then any reset.
        let mut body = response.into_body();
        let mut opened = String::new();
        while let Some(Some(Ok(frame))) = body.frame().now_or_never() {
            if let Some(bytes) = frame.data_ref() {
                opened.push_str(&String::from_utf8_lossy(bytes));
            }
        }
        let id = opened
            .lines()
            .find_map(|l| l.strip_prefix("id:"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no id in the opening: {opened:?}"));
        let reset = opened.contains("\"type\":\"reset\"");
        if raw.is_empty() {
            assert_eq!(id, f.head.to_string(), "{opened:?}");
            assert!(!reset, "a reset for a live stream: {opened:?}");
            return;
        }
        match resumable(raw, f.head) {
            Ok(token) => {
                assert_eq!(id, token.to_string(), "{opened:?}");
                assert!(!reset, "a reset for {raw:?}: {opened:?}");
            }
            Err(reason) => {
                assert_eq!(id, f.head.to_string(), "{opened:?}");
                assert!(
                    opened.contains(&format!("\"reason\":\"{reason}\"")),
                    "expected a reset ({reason}) for {raw:?}: {opened:?}"
                );
            }
        }
    });
});
