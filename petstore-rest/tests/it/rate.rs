//! Rate limiting: 429 problems with `Retry-After`, the IETF `RateLimit` headers on
//! every response, quotas per token subject and per client IP.

use std::time::Duration;

use std::sync::Arc;

use petstore_core::{PetQuery, PetStore, Principal, RateLimitConfig, RateLimiter, Scope};
use petstore_http::Edge;
use petstore_rest::RestConfig;

use crate::support::{Resp, Server, new_pet};

/// Three requests a minute for anyone.
fn tiny() -> Edge {
    Edge::new().rate_limiter(Arc::new(RateLimiter::new(
        RateLimitConfig::default()
            .requests(3)
            .authenticated_requests(3)
            .period(Duration::from_secs(60)),
    )))
}

async fn pet_count(store: &PetStore) -> usize {
    store
        .pets(&Principal::system("test"), &PetQuery::default().limit(100))
        .await
        .unwrap()
        .data
        .len()
}

fn header<'a>(r: &'a Resp, name: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} header on a {} response", r.status))
}

/// `actual` is `expected` seconds, or a few less when the test ran slowly (the
/// limiter counts from the first request).
#[track_caller]
fn assert_secs(actual: u64, expected: u64) {
    assert!(
        (expected.saturating_sub(5)..=expected).contains(&actual),
        "{actual} s, expected about {expected} s"
    );
}

/// Checks `RateLimit-Policy: "<policy>";q=3;w=60` and
/// `RateLimit: "<policy>";r=<remaining>;t=<reset>`.
#[track_caller]
fn assert_limit(r: &Resp, policy: &str, remaining: u64, reset: u64) {
    assert_eq!(
        header(r, "ratelimit-policy"),
        format!("\"{policy}\";q=3;w=60")
    );
    let value = header(r, "ratelimit");
    let field = |key: &str| -> u64 {
        value
            .split(';')
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {value}"))
            .parse()
            .unwrap()
    };
    assert!(value.starts_with(&format!("\"{policy}\";")), "{value}");
    assert_eq!(field("r"), remaining, "{value}");
    assert_secs(field("t"), reset);
}

fn retry_after(r: &Resp) -> u64 {
    header(r, "retry-after").parse().unwrap()
}

#[tokio::test]
async fn the_fourth_write_in_a_minute_is_429_and_creates_nothing() {
    let s = Server::with_connect_info(PetStore::in_memory(), &tiny()).await;
    let alice = s.token("alice", &[Scope::PetsWrite]);
    let create = || {
        s.post("/v1/pets")
            .bearer_auth(&alice)
            .json(&new_pet("Rex", "dog", &[]))
    };

    for remaining in [2, 1, 0] {
        let r = s.send(create()).await;
        r.expect(201);
        // One request's worth refills every 20 s.
        assert_limit(&r, "authenticated", remaining, (3 - remaining) * 20);
    }
    assert_eq!(pet_count(&s.store).await, 3);

    let refused = s.send(create()).await;
    assert_eq!(refused.problem(429), "rate_limited");
    assert_secs(retry_after(&refused), 20);
    assert_limit(&refused, "authenticated", 0, 60);
    let problem = refused.json();
    assert_eq!(problem["type"], "urn:petstore:problem:rate_limited");
    assert!(problem["detail"].as_str().unwrap().contains("retry in"));
    assert_eq!(
        pet_count(&s.store).await,
        3,
        "the refused POST created nothing"
    );
    // Reads count too.
    s.send(s.get("/v1/pets").bearer_auth(&alice))
        .await
        .problem(429);

    // Another principal has its own quota, even from the same address.
    let bob = s.token("bob", &[Scope::PetsWrite]);
    let r = s
        .send(
            s.post("/v1/pets")
                .bearer_auth(&bob)
                .json(&new_pet("Tom", "cat", &[])),
        )
        .await;
    r.expect(201);
    assert_limit(&r, "authenticated", 2, 20);
    assert_eq!(pet_count(&s.store).await, 4);
}

#[tokio::test]
async fn anonymous_callers_are_counted_per_client_ip() {
    let s = Server::with_connect_info(PetStore::in_memory(), &tiny()).await;
    // The harness read /openapi.json from 127.0.0.1: one of its three requests.
    let other = s.via_other_ip();
    for remaining in [2, 1, 0] {
        let r = other.send(other.get("/v1/pets")).await;
        r.expect(200);
        assert_limit(&r, "anonymous", remaining, (3 - remaining) * 20);
    }
    let refused = other.send(other.get("/v1/pets")).await;
    assert_eq!(refused.problem(429), "rate_limited");
    assert_secs(retry_after(&refused), 20);

    // 127.0.0.1 is unaffected; its errors carry the headers too.
    let r = s.send(s.get("/v1/pets/pet_0")).await;
    assert_eq!(r.problem(404), "not_found");
    assert_limit(&r, "anonymous", 1, 40);
    s.send(s.get("/v1/pets")).await.expect(200);
    assert_eq!(s.send(s.get("/v1/pets")).await.problem(429), "rate_limited");

    // A rejected token does not escape the count of its address.
    let forged = other
        .send(
            other
                .post("/v1/pets")
                .bearer_auth("not.a.jwt")
                .json(&new_pet("X", "dog", &[])),
        )
        .await;
    assert_eq!(forged.problem(429), "rate_limited");
    assert_eq!(pet_count(&s.store).await, 0);
}

#[tokio::test]
async fn without_connect_info_anonymous_callers_share_one_bucket() {
    let s = Server::with_edge(PetStore::in_memory(), RestConfig::default(), &tiny()).await;
    let other = s.via_other_ip();
    // The document read, then two more from either address.
    s.send(s.get("/v1/inventory")).await.expect(200);
    other.send(other.get("/v1/inventory")).await.expect(200);
    assert_eq!(
        other.send(other.get("/v1/inventory")).await.problem(429),
        "rate_limited"
    );
    // Tokens still get their own quota.
    let token = s.token("carol", &[]);
    s.send(s.get("/v1/inventory").bearer_auth(&token))
        .await
        .expect(200);
}

#[tokio::test]
async fn rate_limiting_is_off_by_default() {
    let s = Server::with_connect_info(PetStore::in_memory(), &Edge::new()).await;
    for _ in 0..10 {
        let r = s.send(s.get("/v1/inventory")).await;
        r.expect(200);
        assert!(r.header("ratelimit").is_none());
        assert!(r.header("ratelimit-policy").is_none());
    }
    let ops = s.doc["paths"]["/v1/pets"]["post"]["responses"]
        .as_object()
        .unwrap();
    assert!(
        !ops.contains_key("429"),
        "429 is documented only when it can happen"
    );
    let limited = Server::with_edge(PetStore::in_memory(), RestConfig::default(), &tiny()).await;
    let ops = limited.doc["paths"]["/v1/pets"]["post"]["responses"]
        .as_object()
        .unwrap();
    assert!(ops.contains_key("429"));
}
