//! Endpoint management routes: auth, CRUD, validation.

use axum::http::StatusCode;
use petstore_core::Scope;
use serde_json::{Value, json};

use crate::support::{Harness, Receiver, fast_config};

async fn endpoint_count(h: &Harness) -> usize {
    let (status, body) = h.get("/v1/webhooks").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().len()
}

fn assert_problem(
    status: StatusCode,
    headers: &axum::http::HeaderMap,
    body: &Value,
    want: StatusCode,
) {
    assert_eq!(status, want, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["status"], want.as_u16());
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());
}

#[tokio::test]
async fn management_needs_an_admin_token() {
    let h = Harness::serve(fast_config()).await;
    let body = json!({ "url": "https://example.com/hook" });

    let resp = h
        .http
        .post(h.url("/v1/webhooks"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_problem(
        status,
        &headers,
        &resp.json().await.unwrap(),
        StatusCode::UNAUTHORIZED,
    );

    let resp = h
        .http
        .get(h.url("/v1/webhooks"))
        .bearer_auth("not-a-jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let alice = h
        .store
        .tokens()
        .issue(
            "alice",
            [Scope::PetsRead, Scope::OrdersRead, Scope::OrdersWrite],
        )
        .unwrap()
        .access_token;
    let resp = h
        .http
        .post(h.url("/v1/webhooks"))
        .bearer_auth(&alice)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    assert_problem(
        status,
        &headers,
        &resp.json().await.unwrap(),
        StatusCode::FORBIDDEN,
    );
    for path in ["/v1/webhooks", "/v1/webhooks/event-types"] {
        let resp = h
            .http
            .get(h.url(path))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(endpoint_count(&h).await, 0, "nothing was created");
}

#[tokio::test]
async fn endpoints_are_created_listed_read_changed_and_deleted() {
    let h = Harness::serve(fast_config()).await;
    let (status, headers, created) = h
        .call(
            reqwest::Method::POST,
            "/v1/webhooks",
            Some(json!({
                "url": "https://example.com/hooks/petstore",
                "events": ["order.created", "pet.*", "pet.*"],
                "description": "orders and pets",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ep_"));
    assert_eq!(headers["location"], format!("/v1/webhooks/{id}").as_str());
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(
        created["events"],
        json!(["order.created", "pet.*"]),
        "deduplicated"
    );
    assert_eq!(created["enabled"], true);
    assert_eq!(created["description"], "orders and pets");
    assert_eq!(
        created["cursor"],
        h.store.head().await.unwrap().to_string().as_str()
    );

    let (_, list) = h.get("/v1/webhooks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(
        list["data"][0].get("secret").is_none(),
        "listing hides the secret"
    );
    let got = h.endpoint(&id).await;
    assert!(got.get("secret").is_none());
    assert_eq!(got["url"], "https://example.com/hooks/petstore");
    let (status, secret) = h.get(&format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(secret["secret"], created["secret"]);
    assert!(secret["previous_secret_expires_at"].is_null());

    let (status, patched) = h
        .patch(
            &format!("/v1/webhooks/{id}"),
            json!({ "description": "paused", "enabled": false, "url": "https://example.org/new" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["enabled"], false);
    assert_eq!(patched["disabled_reason"], "disabled by an administrator");
    assert_eq!(patched["description"], "paused");
    assert_eq!(patched["url"], "https://example.org/new");
    assert_eq!(
        patched["events"], created["events"],
        "untouched fields stay"
    );

    h.create_pet("Meanwhile").await;
    let (_, enabled) = h
        .patch(&format!("/v1/webhooks/{id}"), json!({ "enabled": true }))
        .await;
    assert_eq!(enabled["enabled"], true);
    assert!(enabled["disabled_reason"].is_null());
    assert_eq!(
        enabled["cursor"],
        h.store.head().await.unwrap().to_string().as_str(),
        "a re-enabled endpoint starts at the head"
    );

    let (status, _, _) = h
        .call(reqwest::Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, headers, body) = h
        .call(reqwest::Method::GET, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    let (status, _, _) = h
        .call(reqwest::Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(endpoint_count(&h).await, 0);
}

#[tokio::test]
async fn bad_input_is_rejected_and_changes_nothing() {
    let h = Harness::serve(fast_config()).await;
    let cases = [
        (json!({}), "url"),
        (json!({ "url": 42 }), "body"),
        (json!({ "url": "ftp://example.com/" }), "url"),
        (json!({ "url": "not a url" }), "url"),
        (
            json!({ "url": "https://example.com/", "events": ["order.shipped"] }),
            "events[0]",
        ),
        (
            json!({ "url": "https://example.com/", "events": ["pet.created", "pets.*"] }),
            "events[1]",
        ),
        (
            json!({ "url": "https://example.com/", "description": "x".repeat(501) }),
            "description",
        ),
        (
            json!({ "url": "https://example.com/", "secret": "whsec_abc" }),
            "secret",
        ),
        // serde reads a struct from an array of its fields too: the body is an object.
        (json!(["https://example.com/"]), "body"),
    ];
    for (body, field) in cases {
        let (status, headers, problem) = h
            .call(reqwest::Method::POST, "/v1/webhooks", Some(body.clone()))
            .await;
        assert_problem(status, &headers, &problem, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["errors"][0]["field"], field, "{body} -> {problem}");
    }
    // Said once: a missing field is the field, and its message does not name it again.
    let (_, _, problem) = h
        .call(reqwest::Method::POST, "/v1/webhooks", Some(json!({})))
        .await;
    assert_eq!(problem["detail"], "invalid `url`: is required", "{problem}");

    let resp = h
        .http
        .post(h.url("/v1/webhooks"))
        .bearer_auth(&h.admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "malformed_json");
    assert_eq!(problem["type"], "urn:petstore:problem:malformed_json");

    let huge = json!({ "url": "https://example.com/", "description": "x".repeat(300 * 1024) });
    let resp = h
        .http
        .post(h.url("/v1/webhooks"))
        .bearer_auth(&h.admin)
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "payload_too_large");
    assert_eq!(endpoint_count(&h).await, 0, "nothing was created");

    // Bad changes leave the endpoint as it was.
    let (id, _) = h
        .create_endpoint("https://example.com/ok", json!(["pet.*"]))
        .await;
    let before = h.endpoint(&id).await;
    for body in [
        json!({ "url": "gopher://example.com/" }),
        json!({ "events": ["nope"] }),
        json!({ "enabled": "yes" }),
        json!({ "colour": "blue" }),
        // Found by the OpenAPI fuzzer: an array of the fields in order was a patch.
        json!([null, null]),
        json!(["https://example.com/changed", null, null, false]),
    ] {
        let (status, problem) = h.patch(&format!("/v1/webhooks/{id}"), body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {problem}"
        );
    }
    let (status, _) = h
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            json!({ "since": "nope" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(h.endpoint(&id).await, before);

    let (status, _) = h.get(&format!("/v1/webhooks/{id}/attempts?limit=0")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = h
        .get(&format!("/v1/webhooks/{id}/attempts?limit=lots"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = h
        .patch("/v1/webhooks/ep_missing", json!({ "enabled": false }))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .post("/v1/webhooks/ep_missing/rotate-secret", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_number_of_endpoints_is_bounded() {
    let h = Harness::serve(fast_config().max_endpoints(2)).await;
    h.create_endpoint("https://example.com/1", json!([])).await;
    h.create_endpoint("https://example.com/2", json!([])).await;
    let (status, problem) = h
        .post("/v1/webhooks", json!({ "url": "https://example.com/3" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(endpoint_count(&h).await, 2);
}

#[tokio::test]
async fn event_types_are_listed_with_their_schemas() {
    let h = Harness::serve(fast_config()).await;
    let (status, body) = h.get("/v1/webhooks/event-types").await;
    assert_eq!(status, StatusCode::OK);
    let types = body["data"].as_array().unwrap();
    assert_eq!(types.len(), petstore_core::EventType::ALL.len());
    let order = types.iter().find(|t| t["name"] == "order.created").unwrap();
    assert!(
        order["data_schema"]["properties"]["total"].is_object(),
        "{order}"
    );
}

#[tokio::test]
async fn a_deleted_endpoint_gets_nothing_more() {
    let h = Harness::start(fast_config()).await;
    let mut gone = Receiver::ok().await;
    let mut stays = Receiver::ok().await;
    let (gone_id, _) = h.create_endpoint(&gone.url, json!([])).await;
    h.create_endpoint(&stays.url, json!([])).await;
    h.create_pet("One").await;
    gone.next().await;
    stays.next().await;
    let (status, _, _) = h
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/webhooks/{gone_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.create_pet("Two").await;
    stays.next().await;
    assert_eq!(gone.count(), 1);
}
