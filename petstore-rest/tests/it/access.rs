//! Every write route needs its scope: 401 without a token, 403 with a token lacking
//! the scope, and nothing changes either way.
//!
//! The routes come from the served OpenAPI document, which is generated from the same
//! route table as the router (`the_router_serves_exactly_the_documented_routes` checks
//! that they agree), so a new write route cannot escape this test.

use petstore_core::{NewOrder, OrderQuery, PetId, PetQuery, Principal, Scope};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Server, new_pet};

/// Everything a refused write must leave alone: the log head and every resource.
async fn state(s: &Server) -> (String, Value, Value) {
    let system = Principal::system("test");
    let head = s.store.head().await.unwrap().to_string();
    let pets = s
        .store
        .pets(&system, &PetQuery::default().limit(100))
        .await
        .unwrap();
    let orders = s
        .store
        .orders(&system, &OrderQuery::default().limit(100))
        .await
        .unwrap();
    (
        head,
        serde_json::to_value(pets.data).unwrap(),
        serde_json::to_value(orders.data).unwrap(),
    )
}

#[tokio::test]
async fn every_write_route_needs_its_scope_and_changes_nothing() {
    let s = Server::start().await;
    let pet = s.create_pet("Rex", "dog", &[]).await;
    let pet_id = pet["id"].as_str().unwrap().to_owned();
    let held = s.create_pet("Tom", "cat", &[]).await;
    let held_id: PetId = held["id"].as_str().unwrap().parse().unwrap();
    let order = s
        .store
        .place_order(&Principal::system("test"), NewOrder::new(held_id), None)
        .await
        .unwrap()
        .order;
    let before = state(&s).await;

    let mut tested = Vec::new();
    for (path, item) in s.doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let write = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
            if !write.contains(&method) || path == "/v1/auth/token" {
                continue;
            }
            let what = format!("{method} {path}");
            // The document states the one scope the route needs.
            let security = op["security"].as_array().unwrap();
            assert_eq!(security.len(), 1, "{what}: {security:?}");
            let scope: Scope = serde_json::from_value(security[0]["bearerAuth"][0].clone())
                .unwrap_or_else(|e| panic!("{what} names no scope ({e}): {security:?}"));
            assert!(!scope.is_read(), "{what} is a write guarded by {scope}");

            // Real resources and valid bodies: only the credential is wrong.
            let url = path
                .replace("/pets/{id}", &format!("/pets/{pet_id}"))
                .replace("/orders/{id}", &format!("/orders/{}", order.id));
            let body = match (method.as_str(), path.as_str()) {
                ("POST" | "PUT", "/v1/pets" | "/v1/pets/{id}") => new_pet("Max", "dog", &[]),
                ("PATCH", _) => json!({"name": "Max"}),
                ("POST", "/v1/orders") => json!({"pet_id": pet_id}),
                ("POST", "/v1/orders/{id}/payment") => json!({"token": "tok_visa"}),
                _ => json!({}),
            };
            let request = || {
                s.req(method.clone(), &url)
                    .header("content-type", "application/merge-patch+json")
                    .body(body.to_string())
            };

            let r = s.send(request()).await;
            assert_eq!(r.problem(401), "unauthenticated", "{what} without a token");
            assert!(r.header("www-authenticate").is_some(), "{what}");
            let r = s.send(request().bearer_auth("not.a.jwt")).await;
            assert_eq!(r.problem(401), "unauthenticated", "{what} with a bad token");

            // Every other scope, but not this one (nor admin, which grants all).
            let others: Vec<Scope> = Scope::ALL
                .into_iter()
                .filter(|other| *other != scope && *other != Scope::Admin)
                .collect();
            let r = s
                .send(request().bearer_auth(s.token("mallory", &others)))
                .await;
            assert_eq!(r.problem(403), "forbidden", "{what} without {scope}");
            assert!(
                r.json()["detail"]
                    .as_str()
                    .unwrap()
                    .contains(scope.as_str()),
                "{what}: the problem names the missing scope"
            );
            tested.push(what);
        }
    }
    assert_eq!(state(&s).await, before, "a refused write changed something");
    tested.sort();
    assert_eq!(
        tested,
        [
            "DELETE /v1/pets/{id}",
            "PATCH /v1/pets/{id}",
            "POST /v1/orders",
            "POST /v1/orders/{id}/cancel",
            "POST /v1/orders/{id}/deliver",
            "POST /v1/orders/{id}/payment",
            "POST /v1/pets",
            "PUT /v1/pets/{id}",
        ],
        "the write routes (add a body above for a new one if it needs one)"
    );
}
