//! Pets: CRUD, conditional requests, merge patch, filters and pagination, body and
//! auth errors.

use std::collections::BTreeSet;

use petstore_core::{MemoryStore, PetStore, Scope, ServiceConfig, TokenAuthority};
use petstore_rest::RestConfig;
use reqwest::header;
use serde_json::{Value, json};

use crate::support::{Server, etag, new_pet};

#[tokio::test]
async fn pet_crud_with_etags_and_preconditions() {
    let s = Server::start().await;
    let admin = s.admin();

    let created = s
        .send(s.post("/v1/pets").bearer_auth(&admin).json(&json!({
            "name": "Rex", "species": "Dog", "breed": "Labrador", "age": 3,
            "tags": ["Friendly"], "price": {"amount": "450.00", "currency": "USD"},
        })))
        .await;
    let pet = created.expect(201);
    let id = pet["id"].as_str().unwrap().to_owned();
    let location = format!("/v1/pets/{id}");
    assert_eq!(created.header("location"), Some(location.as_str()));
    assert_eq!(created.header("etag"), Some(etag(1).as_str()));
    assert_eq!(pet["species"], "dog");
    assert_eq!(pet["status"], "available");

    // GET with ETag, then conditional GETs.
    let got = s.send(s.get(&location)).await;
    assert_eq!(got.expect(200), pet);
    assert_eq!(got.header("etag"), Some(etag(1).as_str()));
    for matching in [
        etag(1),
        format!("W/{}", etag(1)),
        "*".into(),
        format!("\"7\", {}", etag(1)),
    ] {
        let r = s
            .send(s.get(&location).header(header::IF_NONE_MATCH, matching))
            .await;
        r.expect(304);
        assert_eq!(r.header("etag"), Some(etag(1).as_str()));
    }
    s.send(s.get(&location).header(header::IF_NONE_MATCH, etag(2)))
        .await
        .expect(200);
    s.send(s.get(&location).header(header::IF_NONE_MATCH, "nope"))
        .await
        .problem(400);

    // JSON merge patch: `null` clears, absent keeps.
    let patched = s
        .send(
            s.patch(&location)
                .bearer_auth(&admin)
                .header(header::IF_MATCH, etag(1))
                .header(header::CONTENT_TYPE, "application/merge-patch+json")
                .body(r#"{"name":"Max","breed":null}"#),
        )
        .await;
    let pet2 = patched.expect(200);
    assert_eq!(patched.header("etag"), Some(etag(2).as_str()));
    assert_eq!(pet2["name"], "Max");
    assert_eq!(pet2["breed"], Value::Null);
    assert_eq!(pet2["age"], 3);
    assert_eq!(pet2["version"], 2);

    // A stale If-Match is 412 and changes nothing; a weak one never matches.
    for stale in [etag(1), format!("W/{}", etag(2))] {
        let code = s
            .send(
                s.patch(&location)
                    .bearer_auth(&admin)
                    .header(header::IF_MATCH, stale)
                    .json(&json!({"name": "Stale"})),
            )
            .await
            .problem(412);
        assert_eq!(code, "precondition_failed");
    }
    let code = s
        .send(
            s.patch(&location)
                .bearer_auth(&admin)
                .header(header::IF_MATCH, "2")
                .json(&json!({"name": "Bad"})),
        )
        .await
        .problem(400);
    assert_eq!(code, "bad_request");
    assert_eq!(s.send(s.get(&location)).await.expect(200), pet2);

    // PUT replaces: optional fields left out are cleared. A list with the current tag matches.
    let replaced = s
        .send(
            s.put(&location)
                .bearer_auth(&admin)
                .header(header::IF_MATCH, format!("\"9\", {}", etag(2)))
                .json(&new_pet("Rex II", "dog", &[])),
        )
        .await;
    let pet3 = replaced.expect(200);
    assert_eq!(replaced.header("etag"), Some(etag(3).as_str()));
    assert_eq!(pet3["age"], Value::Null);
    assert_eq!(pet3["tags"], json!([]));

    // DELETE honours If-Match, then 204, then 404.
    s.send(
        s.delete(&location)
            .bearer_auth(&admin)
            .header(header::IF_MATCH, etag(2)),
    )
    .await
    .problem(412);
    let deleted = s
        .send(
            s.delete(&location)
                .bearer_auth(&admin)
                .header(header::IF_MATCH, "*"),
        )
        .await;
    deleted.expect(204);
    assert!(deleted.body.is_empty());
    assert_eq!(s.send(s.get(&location)).await.problem(404), "not_found");
    s.send(s.delete(&location).bearer_auth(&admin))
        .await
        .problem(404);
    s.send(
        s.put(&location)
            .bearer_auth(&admin)
            .json(&new_pet("X", "dog", &[])),
    )
    .await
    .problem(404);
    // A malformed id is simply not found.
    s.send(s.get("/v1/pets/ord_123")).await.problem(404);
    s.send(s.get("/v1/pets/pet_..")).await.problem(404);
}

#[tokio::test]
async fn list_filters_and_cursor_pages() {
    let s = Server::start().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(s.create_pet(&format!("Cat {i}"), "cat", &["paging"]).await);
    }
    for i in 0..2 {
        created.push(s.create_pet(&format!("Dog {i}"), "dog", &["paging"]).await);
    }
    s.create_pet("Loner", "dog", &["other"]).await;

    // Walk the pages: every pet once, in creation order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = "/v1/pets?tag=paging&limit=2".to_owned();
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let r = s.send(s.get(&url)).await;
        let page = r.expect(200);
        assert!(r.header("x-event-position").is_some());
        pages += 1;
        for pet in page["data"].as_array().unwrap() {
            seen.push(pet["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    let expected: Vec<String> = created
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 4);

    let count = |v: Value| v["data"].as_array().unwrap().len();
    assert_eq!(
        count(s.send(s.get("/v1/pets?species=cat")).await.expect(200)),
        5
    );
    assert_eq!(
        count(
            s.send(s.get("/v1/pets?species=dog&tag=paging"))
                .await
                .expect(200)
        ),
        2
    );
    assert_eq!(count(s.send(s.get("/v1/pets?q=lone")).await.expect(200)), 1);
    assert_eq!(
        count(s.send(s.get("/v1/pets?status=sold")).await.expect(200)),
        0
    );
    assert_eq!(
        count(
            s.send(s.get("/v1/pets?status=available&limit=100"))
                .await
                .expect(200)
        ),
        8
    );

    // A query value that does not parse is 400 naming the parameter; a value the core
    // rejects is 422.
    let bad = s.send(s.get("/v1/pets?status=lost")).await;
    assert_eq!(bad.problem(400), "bad_request");
    assert_eq!(bad.json()["errors"][0]["field"], "status");
    let bad = s.send(s.get("/v1/pets?limit=many")).await;
    assert_eq!(bad.json()["errors"][0]["field"], "limit");
    bad.problem(400);
    let bad = s.send(s.get("/v1/pets?limit=0")).await;
    assert_eq!(bad.problem(422), "invalid_input");
    assert_eq!(bad.json()["errors"][0]["field"], "limit");
    let bad = s.send(s.get("/v1/pets?cursor=%21%21")).await;
    assert_eq!(bad.json()["errors"][0]["field"], "cursor");
    bad.problem(422);
}

#[tokio::test]
async fn bad_bodies_are_refused_and_change_nothing() {
    let s = Server::start().await;
    let admin = s.admin();
    let head = s.store.head().await.unwrap();

    // Validation: every invalid field at once.
    let r = s
        .send(s.post("/v1/pets").bearer_auth(&admin).json(&json!({
            "name": "", "species": "d0g", "price": {"amount": "10000000.01", "currency": "USD"},
        })))
        .await;
    assert_eq!(r.problem(422), "invalid_input");
    let fields: Vec<String> = r.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["name", "species", "price.amount"]);

    // A missing field is named once, as the field.
    let r = s
        .send(
            s.post("/v1/pets")
                .bearer_auth(&admin)
                .json(&json!({"name": "Rex", "species": "dog"})),
        )
        .await;
    assert_eq!(r.problem(422), "invalid_input");
    assert_eq!(r.json()["detail"], "invalid `price`: is required");
    assert_eq!(
        r.json()["errors"],
        json!([{"field": "price", "message": "is required"}])
    );

    // Shape errors are 422 naming the field.
    for (body, field) in [
        (json!({"name": "Rex", "species": "dog"}), "price"),
        (
            json!({"name": "Rex", "species": "dog", "colour": "red",
                   "price": {"amount": "1", "currency": "USD"}}),
            "colour",
        ),
        (
            json!({"name": 5, "species": "dog", "price": {"amount": "1", "currency": "USD"}}),
            "name",
        ),
        (
            json!({"name": "Rex", "species": "dog", "price": {"amount": "1", "currency": "usd"}}),
            "price.currency",
        ),
    ] {
        let r = s
            .send(s.post("/v1/pets").bearer_auth(&admin).json(&body))
            .await;
        r.problem(422);
        assert_eq!(r.json()["errors"][0]["field"], field, "{body}");
    }

    // Malformed JSON is 400.
    for text in [r#"{"name": "#, "", "[1,2", r#"{"name":"a"} trailing"#] {
        let r = s
            .send(
                s.post("/v1/pets")
                    .bearer_auth(&admin)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(text),
            )
            .await;
        assert_eq!(r.problem(400), "malformed_json", "{text:?}");
    }

    // Wrong or missing content type is 415.
    let body = serde_json::to_string(&new_pet("Rex", "dog", &[])).unwrap();
    for ct in [Some("text/plain"), Some("application/xml"), None] {
        let mut req = s.post("/v1/pets").bearer_auth(&admin).body(body.clone());
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        assert_eq!(s.send(req).await.problem(415), "unsupported_media_type");
    }
    // `+json` types and parameters are accepted.
    s.send(
        s.post("/v1/pets")
            .bearer_auth(&admin)
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(body.clone()),
    )
    .await
    .expect(201);

    // Over the limit: 413, with a Content-Length and streamed (chunked).
    let mut big = new_pet("Rex", "dog", &[]);
    big["breed"] = "x".repeat(70 * 1024).into();
    let big = serde_json::to_vec(&big).unwrap();
    let r = s
        .send(
            s.post("/v1/pets")
                .bearer_auth(&admin)
                .header(header::CONTENT_TYPE, "application/json")
                .body(big.clone()),
        )
        .await;
    assert_eq!(r.problem(413), "payload_too_large");
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = big
        .chunks(8 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let stream = futures_util::stream::iter(chunks);
    let r = s
        .send(
            s.post("/v1/pets")
                .bearer_auth(&admin)
                .header(header::CONTENT_TYPE, "application/json")
                .body(reqwest::Body::wrap_stream(stream)),
        )
        .await;
    assert_eq!(r.problem(413), "payload_too_large");

    // Only the one valid create above happened.
    let events = s
        .store
        .events(
            &petstore_core::Principal::system("t"),
            Some(head),
            100,
            petstore_core::EventFilter::all(),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(events.events.len(), 1);
    let list = s.send(s.get("/v1/pets")).await.expect(200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn auth_errors_come_before_body_errors() {
    let s = Server::start().await;
    let reader = s.token("reader", &[Scope::PetsRead]);

    // Anonymous write: 401 with a challenge, even with a malformed body.
    for body in ["{", r#"{"name":"Rex"}"#] {
        let r = s
            .send(
                s.post("/v1/pets")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body),
            )
            .await;
        assert_eq!(r.problem(401), "unauthenticated");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
    // A token without the scope: 403.
    let r = s
        .send(
            s.post("/v1/pets")
                .bearer_auth(&reader)
                .json(&new_pet("Rex", "dog", &[])),
        )
        .await;
    assert_eq!(r.problem(403), "forbidden");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );
    // A bad credential is 401 even where reads are open.
    for auth in ["Bearer not.a.jwt", "Basic YWxpY2U6cHc=", "Bearer"] {
        let r = s
            .send(s.get("/v1/pets").header(header::AUTHORIZATION, auth))
            .await;
        assert_eq!(r.problem(401), "unauthenticated", "{auth}");
    }
    let other = TokenAuthority::random(std::time::Duration::from_secs(60))
        .issue("mallory", [Scope::Admin])
        .unwrap();
    s.send(
        s.post("/v1/pets")
            .bearer_auth(&other.access_token)
            .json(&new_pet("Rex", "dog", &[])),
    )
    .await
    .problem(401);
    assert_eq!(
        s.send(s.get("/v1/pets")).await.expect(200)["data"],
        json!([])
    );
}

#[tokio::test]
async fn closed_reads_and_the_token_endpoint() {
    let config = ServiceConfig::default().require_auth_for_reads(true);
    let store = PetStore::new(
        MemoryStore::default(),
        TokenAuthority::random(config.token_ttl),
        config,
    );
    petstore_core::seed::seed(&store).await.unwrap();
    let s = Server::with(store, RestConfig::default()).await;

    assert_eq!(
        s.send(s.get("/v1/pets")).await.problem(401),
        "unauthenticated"
    );
    s.send(s.get("/v1/inventory")).await.problem(401);
    s.send(s.get("/v1/pets/changes")).await.problem(401);
    let orders_only = s.token("o", &[Scope::OrdersRead]);
    s.send(s.get("/v1/pets").bearer_auth(&orders_only))
        .await
        .problem(403);

    // Seeded alice can log in; her token reads pets but cannot create them.
    let r = s
        .send(
            s.post("/v1/auth/token")
                .json(&json!({"username": "alice", "password": "alice-password"})),
        )
        .await;
    let token = r.expect(200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(token["token_type"], "Bearer");
    let scopes: BTreeSet<&str> = token["scope"].as_str().unwrap().split(' ').collect();
    assert!(scopes.contains("orders:write") && !scopes.contains("pets:write"));
    let alice = token["access_token"].as_str().unwrap();
    let pets = s
        .send(s.get("/v1/pets").bearer_auth(alice))
        .await
        .expect(200);
    assert!(!pets["data"].as_array().unwrap().is_empty());
    s.send(
        s.post("/v1/pets")
            .bearer_auth(alice)
            .json(&new_pet("Rex", "dog", &[])),
    )
    .await
    .problem(403);

    // A writer without read scope can still use a list of ETags in If-Match.
    let pet = s.create_pet("Rex", "dog", &[]).await;
    let writer = s.token("w", &[Scope::PetsWrite]);
    let url = format!("/v1/pets/{}", pet["id"].as_str().unwrap());
    s.send(s.get(&url).bearer_auth(&writer)).await.problem(403);
    let r = s
        .send(
            s.patch(&url)
                .bearer_auth(&writer)
                .header(header::IF_MATCH, format!("\"9\", {}", etag(1)))
                .json(&json!({"age": 4})),
        )
        .await;
    assert_eq!(r.expect(200)["age"], 4);
    s.send(
        s.patch(&url)
            .bearer_auth(&writer)
            .header(header::IF_MATCH, format!("\"9\", {}", etag(1)))
            .json(&json!({"age": 5})),
    )
    .await
    .problem(412);
    s.send(
        s.patch("/v1/pets/pet_0")
            .bearer_auth(&writer)
            .header(header::IF_MATCH, format!("\"9\", {}", etag(1)))
            .json(&json!({"age": 5})),
    )
    .await
    .problem(404);

    for (user, password) in [("alice", "wrong-password"), ("nobody", "alice-password")] {
        let r = s
            .send(
                s.post("/v1/auth/token")
                    .json(&json!({"username": user, "password": password})),
            )
            .await;
        assert_eq!(r.problem(401), "unauthenticated");
    }
    s.send(s.post("/v1/auth/token").json(&json!({"username": "alice"})))
        .await
        .problem(422);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let s = Server::start().await;
    let r = s.send(s.get("/v1/nothing-here")).await;
    assert_eq!(r.problem(404), "no_route");
    let r = s.send(s.delete("/v1/pets")).await;
    assert_eq!(r.problem(405), "method_not_allowed");
    let allow = r.header("allow").unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    s.send(s.put("/v1/events")).await.problem(405);
}

#[tokio::test]
async fn inventory_counts_with_etag_and_position() {
    let s = Server::start().await;
    let r = s.send(s.get("/v1/inventory")).await;
    assert_eq!(
        r.expect(200),
        json!({"available": 0, "pending": 0, "sold": 0})
    );
    let tag = r.header("etag").unwrap().to_owned();
    let position = r.header("x-event-position").unwrap().to_owned();
    assert_eq!(tag, format!("\"{position}\""));
    s.send(s.get("/v1/inventory").header(header::IF_NONE_MATCH, &tag))
        .await
        .expect(304);
    s.create_pet("Rex", "dog", &[]).await;
    let r = s
        .send(s.get("/v1/inventory").header(header::IF_NONE_MATCH, &tag))
        .await;
    assert_eq!(r.expect(200)["available"], 1);
    assert_ne!(r.header("etag").unwrap(), tag);
}
