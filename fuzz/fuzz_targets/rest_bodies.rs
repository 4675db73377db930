//! The JSON bodies of the REST API through the REST adapter itself: its router, its
//! body extractor (content type, syntax, objects only, the path of a field that does
//! not fit) and the core's validation behind it.
//!
//! The first byte picks the request: `POST /v1/pets`, `PATCH /v1/pets/{id}`,
//! `POST /v1/orders` (with an admin token) or `POST /v1/auth/token`; the rest is the
//! body. Invariants: nothing panics; never 5xx; a body that is not one JSON value is
//! 400 `malformed_json`; one that is JSON but not an object is 422 `invalid_input`;
//! every refusal is a problem with a code and changes nothing (same log head, same
//! pet); an accepted write appends events.
#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use http::Request;
use http_body_util::BodyExt as _;
use libfuzzer_sys::fuzz_target;
use petstore_core::{NewPet, Pet, PetStore, Principal, Scope};
use petstore_http::Edge;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    store: PetStore,
    router: Router,
    admin: String,
    pet: Pet,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let store = PetStore::in_memory();
        let pet = runtime.block_on(async {
            let new: NewPet = serde_json::from_value(serde_json::json!({
                "name": "Rex", "species": "dog",
                "price": {"amount": "10.00", "currency": "USD"}
            }))
            .expect("a new pet");
            store
                .create_pet(&Principal::system("fuzz"), new)
                .await
                .expect("created")
        });
        let admin = store
            .tokens()
            .issue("fuzz", [Scope::Admin])
            .expect("a token")
            .access_token;
        let router = petstore_rest::router(
            store.clone(),
            petstore_rest::RestConfig::default(),
            &Edge::new(),
            CancellationToken::new(),
        );
        Fixture {
            runtime,
            store,
            router,
            admin,
            pet,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let (method, path) = match which % 4 {
        0 => ("POST", "/v1/pets".to_owned()),
        1 => ("PATCH", format!("/v1/pets/{}", f.pet.id)),
        2 => ("POST", "/v1/orders".to_owned()),
        _ => ("POST", "/v1/auth/token".to_owned()),
    };
    // An empty PATCH is an empty patch; every other body is read.
    if method == "PATCH" && body.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    f.runtime.block_on(async {
        let head = f.store.head().await.expect("head");
        let pet = f
            .store
            .pet(&Principal::system("fuzz"), &f.pet.id)
            .await
            .expect("the pet");
        let request = Request::builder()
            .method(method)
            .uri(&path)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", f.admin))
            .body(Body::from(body.to_vec()))
            .expect("a request");
        let response = f.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(status < 500, "{method} {path}: {status} {text}");

        let json = serde_json::from_slice::<Value>(body);
        let code = || {
            serde_json::from_slice::<Value>(&bytes).expect("a problem body")["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        match &json {
            // Not JSON as a whole: the adapter's typed parser reads it in one pass and
            // stops at the first thing wrong, which may be a field it refuses (422)
            // before the syntax error further on (400).
            Err(_) => match status {
                400 => assert_eq!(code(), "malformed_json", "{text}"),
                422 => assert_eq!(code(), "invalid_input", "{text}"),
                _ => panic!("not JSON, answered {status}: {text}"),
            },
            Ok(v) if !v.is_object() => {
                assert_eq!(status, 422, "JSON, not an object: {text}");
                assert_eq!(code(), "invalid_input", "{text}");
            }
            Ok(_) => {}
        }
        let after = f.store.head().await.expect("head");
        if status >= 300 {
            assert!(!code().is_empty(), "a refusal without a code: {text}");
            assert_eq!(
                after, head,
                "a refused {method} {path} appended events: {text}"
            );
            let now = f
                .store
                .pet(&Principal::system("fuzz"), &f.pet.id)
                .await
                .expect("the pet");
            assert_eq!(now, pet, "a refused {method} {path} changed the pet");
        } else if method != "POST" || path != "/v1/auth/token" {
            // A write that changes something says so in the log (an unchanged PATCH
            // appends nothing).
            assert!(after.offset >= head.offset, "{text}");
            if status == 201 {
                assert!(after.offset > head.offset, "a 201 without an event: {text}");
            }
        }
    });
});
