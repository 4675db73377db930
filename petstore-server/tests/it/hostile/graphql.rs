//! The GraphQL table: bodies, media types, sizes, parse and validation failures, depth
//! and complexity limits, credentials and domain validation over `POST /graphql`; and
//! the graphql-transport-ws close codes.

use futures_util::SinkExt as _;
use petstore_core::Pet;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Answer, Matrix, Req, Setup, expect_eq, other_epoch_token, req, send, setup};
use crate::support::new_pet;
use crate::support::ws::{self, Got};

const GRAPHQL_ROWS: usize = 37;

fn gql(query: &str, variables: Value) -> String {
    json!({"query": query, "variables": variables}).to_string()
}

/// Checks a GraphQL answer: the HTTP status and the first error's `extensions.code`
/// (and field, for `BAD_USER_INPUT`).
fn check_graphql(r: &Req, a: &Answer) -> Result<(), String> {
    if a.status != r.status {
        return Err(format!(
            "expected HTTP {} {}, got {}: {}",
            r.status,
            r.code,
            a.status,
            a.text()
        ));
    }
    let body = a.json()?;
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    let Some(first) = errors.first() else {
        return Err(format!("no `errors`: {}", a.text()));
    };
    expect_eq(
        "extensions.code",
        first["extensions"]["code"].as_str().unwrap_or(""),
        r.code,
    )
    .map_err(|e| format!("{e}: {}", a.text()))?;
    if first["message"].as_str().is_none_or(str::is_empty) {
        return Err(format!("the error has no message: {}", a.text()));
    }
    if let Some(field) = r.field {
        let fields: Vec<&str> = first["extensions"]["fields"]
            .as_array()
            .map(|f| f.iter().filter_map(|f| f["field"].as_str()).collect())
            .unwrap_or_default();
        if !fields.iter().any(|f| f.ends_with(field)) {
            return Err(format!(
                "expected field `{field}`, got {fields:?}: {}",
                a.text()
            ));
        }
    }
    Ok(())
}

async fn graphql_follow_up(http: &reqwest::Client, base: &str, pet: &Pet) -> Result<(), String> {
    let body = gql(
        "query($id: ID!) { pet(id: $id) { name } }",
        json!({"id": pet.id}),
    );
    let a = send(
        http,
        base,
        &req("follow-up", Method::POST, "/graphql").json(body),
    )
    .await?;
    expect_eq("status", a.status, 200)?;
    expect_eq(
        "pet name",
        a.json()?["data"]["pet"]["name"].as_str().map(str::to_owned),
        Some(pet.name.clone()),
    )
}

/// A graphql-transport-ws exchange: send `frames`, expect the socket to close with
/// `close`.
async fn graphql_ws_row(base: &str, frames: &[String], close: u16) -> Result<(), String> {
    let mut ws = ws::graphql(&ws::url(base, "/graphql"), "graphql-transport-ws").await?;
    for f in frames {
        ws.send(Message::text(f.clone()))
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    loop {
        match ws::next(&mut ws).await {
            Got::Closed(code) => return expect_eq("close code", code, Some(close)),
            Got::Json(v) if v["type"] == "pong" || v["type"] == "ping" => continue,
            other => return Err(format!("expected close {close}, got {other:?}")),
        }
    }
}

/// A fresh graphql-transport-ws connection is still acknowledged.
async fn graphql_ws_follow_up(base: &str, token: &str) -> Result<(), String> {
    let mut ws = ws::graphql(&ws::url(base, "/graphql"), "graphql-transport-ws").await?;
    let init =
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}});
    ws.send(Message::text(init.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    match ws::next(&mut ws).await {
        Got::Json(v) if v["type"] == "connection_ack" => Ok(()),
        other => Err(format!("expected connection_ack, got {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_refuses_hostile_input_and_changes_nothing() {
    let Setup {
        s,
        base,
        http,
        t,
        rex,
        shelly,
        head,
    } = setup().await;
    let g = |name| req(name, Method::POST, "/graphql").bearer(&t.all);
    let create = "mutation($input: NewPetInput!) { createPet(input: $input) { id } }";
    let pet_input = |key: &str, value: Value| {
        let mut input = new_pet("Hostile");
        input[key] = value;
        gql(create, json!({"input": input}))
    };
    let valid_create = pet_input("name", json!("Hostile"));
    let fields = "id name species breed age status tags photoUrls createdAt updatedAt version";
    let costly = format!(
        "{{ {} }}",
        (0..6)
            .map(|i| format!("a{i}: pets(first: 100) {{ nodes {{ {fields} }} }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let brackets = format!(
        "{{ pets {{ nodes {} }} }}",
        "{ ".repeat(200) + &"} ".repeat(200)
    );
    let mut invalid_utf8 = br#"{"query":"{ pet(id: \""#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe");
    invalid_utf8.extend_from_slice(br#"\") { name } }"}"#);
    let place =
        "mutation($pet: ID!, $q: Int!) { placeOrder(petId: $pet, quantity: $q) { order { id } } }";
    let events = "query($since: String, $types: [String!]) { events(since: $since, types: $types) { next } }";

    let rows = vec![
        g("body is not JSON").json("{ pets { nodes { id } } ").expect(400, "BAD_REQUEST"),
        g("invalid UTF-8 body").json(invalid_utf8).expect(400, "BAD_REQUEST"),
        g("text/plain content type").body(Some("text/plain"), gql("{ inventory { available } }", json!({}))).expect(415, "BAD_REQUEST"),
        g("100 KiB body").json(gql(&format!("{{ inventory {{ available }} }} #{}", "x".repeat(100 * 1024)), json!({}))).expect(413, "PAYLOAD_TOO_LARGE"),
        g("no query").json("{}").expect(400, "BAD_REQUEST"),
        g("variables are an array").json(json!({"query": "{ inventory { available } }", "variables": [1]}).to_string()).expect(400, "BAD_REQUEST"),
        g("syntax error").json(gql("{ pets { nodes { id }", json!({}))).expect(400, "GRAPHQL_PARSE_FAILED"),
        g("unknown field").json(gql("{ secrets }", json!({}))).expect(400, "GRAPHQL_VALIDATION_FAILED"),
        g("unknown enum value").json(gql("{ pets(status: FLYING) { nodes { id } } }", json!({}))).expect(400, "GRAPHQL_VALIDATION_FAILED"),
        g("Int literal beyond 32 bits").json(gql("{ pets(first: 99999999999) { nodes { id } } }", json!({}))).expect(400, "GRAPHQL_PARSE_FAILED"),
        g("variable of the wrong type").json(pet_input("name", json!(42))).expect(400, "GRAPHQL_VALIDATION_FAILED"),
        g("Int variable beyond 32 bits").json(pet_input("age", json!(4_294_967_296_u64))).expect(400, "GRAPHQL_VALIDATION_FAILED"),
        g("unknown enum value in a variable").json(pet_input("status", json!("FLYING"))).expect(400, "GRAPHQL_VALIDATION_FAILED"),
        g("200 nested brackets").json(gql(&brackets, json!({}))).expect(400, "QUERY_TOO_DEEP"),
        g("complexity over the limit").json(gql(&costly, json!({}))).expect(400, "QUERY_TOO_COMPLEX"),
        g("unknown operation name").json(json!({"query": "query A { inventory { available } }", "operationName": "B"}).to_string()).expect(400, "OPERATION_RESOLUTION_FAILURE"),
        req("mutation over GET", Method::GET, "/graphql?query=mutation%20%7B%20deletePet(id%3A%20%22pet_x%22)%20%7D").bearer(&t.all).expect(405, "BAD_REQUEST"),
        // Credentials.
        g("missing token").anonymous().json(valid_create.clone()).expect(200, "UNAUTHENTICATED"),
        g("expired token").bearer(&t.expired).json(valid_create.clone()).expect(401, "UNAUTHENTICATED"),
        g("forged token").bearer(&t.forged).json(valid_create.clone()).expect(401, "UNAUTHENTICATED"),
        g("alg none token").bearer(&t.none).json(valid_create.clone()).expect(401, "UNAUTHENTICATED"),
        g("garbage token").bearer(&t.garbage).json(valid_create.clone()).expect(401, "UNAUTHENTICATED"),
        g("token without the scope").bearer(&t.reader).json(valid_create.clone()).expect(200, "FORBIDDEN"),
        // Domain validation.
        g("empty name").json(pet_input("name", json!(""))).expect(200, "BAD_USER_INPUT").field("name"),
        g("SQL injection in species").json(pet_input("species", json!("dog'; DROP TABLE pets;--"))).expect(200, "BAD_USER_INPUT").field("species"),
        g("price 1e999").json(pet_input("price", json!({"amount": "1e999", "currency": "USD"}))).expect(200, "BAD_USER_INPUT").field("amount"),
        g("lower-case currency").json(pet_input("price", json!({"amount": "1.00", "currency": "usd"}))).expect(200, "BAD_USER_INPUT").field("currency"),
        g("negative age").json(pet_input("age", json!(-5))).expect(200, "BAD_USER_INPUT").field("age"),
        g("order for an unknown pet").json(gql(place, json!({"pet": "pet_doesnotexist", "q": 1}))).expect(200, "NOT_FOUND"),
        g("order for a sold pet").json(gql(place, json!({"pet": shelly.id, "q": 1}))).expect(200, "CONFLICT"),
        g("order quantity 0").json(gql(place, json!({"pet": rex.id, "q": 0}))).expect(200, "BAD_USER_INPUT").field("quantity"),
        g("stale ifVersion").json(gql("mutation($id: ID!) { updatePet(id: $id, input: {name: \"Stale\"}, ifVersion: 999) { id } }", json!({"id": rex.id}))).expect(200, "PRECONDITION_FAILED"),
        g("malformed resume token").json(gql(events, json!({"since": "zzz"}))).expect(200, "BAD_USER_INPUT"),
        g("resume token of another epoch").json(gql(events, json!({"since": other_epoch_token(head)}))).expect(200, "RESUME_EXPIRED"),
        g("unknown event type").json(gql(events, json!({"types": ["order.shipped"]}))).expect(200, "BAD_USER_INPUT"),
    ];

    let mut matrix = Matrix::new("GraphQL", &s.store).await;
    for r in &rows {
        let answer = match send(&http, &base, r).await {
            Ok(a) => check_graphql(r, &a),
            Err(e) => Err(e),
        };
        let follow = graphql_follow_up(&http, &base, &rex).await;
        matrix.row(&s.store, r.name, answer, follow).await;
    }
    // graphql-transport-ws: the spec's close codes.
    let init = |token: &str| {
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}})
            .to_string()
    };
    let ws_rows: Vec<(&str, Vec<String>, u16)> = vec![
        ("ws: forged token in connection_init", vec![init(&t.forged)], 4403),
        ("ws: subscribe before connection_init", vec![json!({"id": "1", "type": "subscribe", "payload": {"query": "{ inventory { available } }"}}).to_string()], 4401),
    ];
    for (name, frames, close) in ws_rows {
        let answer = graphql_ws_row(&base, &frames, close).await;
        let follow = graphql_ws_follow_up(&base, &t.all).await;
        matrix.row(&s.store, name, answer, follow).await;
    }
    matrix.finish(GRAPHQL_ROWS);
    s.shutdown().await.unwrap();
}
