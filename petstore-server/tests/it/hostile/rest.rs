//! The REST table: bodies, media types, sizes, credentials, conditional requests,
//! paths and queries of `/v1/pets`, `/v1/orders`, `/v1/events` and `/v1/auth/token`;
//! and injection-looking text stored verbatim.

use petstore_core::Principal;
use reqwest::Method;
use serde_json::{Value, json};

use super::{
    Matrix, Setup, Tokens, check_problem, http_client, nested, other_epoch_token, req,
    rest_follow_up, send, setup, start,
};
use crate::support::new_pet;

/// A valid new pet with `key` set to `value` (`Value::Null` removes nothing: use
/// [`without`] for that).
fn pet_with(key: &str, value: Value) -> String {
    let mut pet = new_pet("Hostile");
    pet[key] = value;
    pet.to_string()
}

fn without(mut body: Value, key: &str) -> String {
    body.as_object_mut().expect("object").remove(key);
    body.to_string()
}

const REST_ROWS: usize = 65;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_refuses_hostile_input_and_changes_nothing() {
    let Setup {
        s,
        base,
        http,
        t,
        rex,
        shelly,
        head,
    } = setup().await;
    let pets = "/v1/pets";
    let orders = "/v1/orders";
    let rex_path = format!("/v1/pets/{}", rex.id);
    let w = |name, method, path: &str| req(name, method, path).bearer(&t.all);
    let post = |name| w(name, Method::POST, pets);
    let big_name = "x".repeat(51);
    let huge = vec![b'a'; 1024 * 1024];
    let mut invalid_utf8 = br#"{"name":""#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe\xfd");
    invalid_utf8
        .extend_from_slice(br#"","species":"dog","price":{"amount":"1.00","currency":"USD"}}"#);

    let rows = vec![
        // Malformed bodies: 400.
        post("malformed JSON").json(r#"{"name": "Rex","#).expect(400, "malformed_json"),
        post("trailing garbage after the JSON").json(format!("{} {{}}", new_pet("Hostile"))).expect(400, "malformed_json"),
        post("empty body").json("").expect(400, "malformed_json"),
        post("invalid UTF-8 in a string").json(invalid_utf8.clone()).expect(400, "malformed_json"),
        post("lone UTF-16 surrogate escape").json(pet_with("name", json!("x")).replace("\"x\"", r#""\ud800""#)).expect(400, "malformed_json"),
        // The syntax check does not recurse; the typed parse stops at the first array.
        post("10000 nested arrays").json(pet_with("tags", json!("X")).replace("\"X\"", &nested(10_000))).expect(422, "invalid_input").field("tags[0]"),
        post("number with a 400-digit exponent").json(pet_with("age", json!("X")).replace("\"X\"", "1e400")).expect(400, "malformed_json"),
        // Well-formed JSON of the wrong shape: 422 naming the field.
        post("JSON null body").json("null").expect(422, "invalid_input"),
        post("JSON array body").json("[]").expect(422, "invalid_input"),
        post("positional array instead of an object").json(r#"["Positional","dog",null,null,null,[],[],{"amount":"1.00","currency":"USD"}]"#).expect(422, "invalid_input"),
        post("name is a number").json(pet_with("name", json!(42))).expect(422, "invalid_input").field("name"),
        post("price is a float").json(pet_with("price", json!(10.5))).expect(422, "invalid_input").field("price"),
        post("price as a positional array").json(pet_with("price", json!(["1.00", "USD"]))).expect(422, "invalid_input").field("price"),
        post("age is a string").json(pet_with("age", json!("three"))).expect(422, "invalid_input").field("age"),
        post("missing required species").json(without(new_pet("Hostile"), "species")).expect(422, "invalid_input").field("species"),
        post("unknown field").json(pet_with("owner", json!("mallory"))).expect(422, "invalid_input").field("owner"),
        post("duplicate field").json(r#"{"name":"A","name":"B","species":"dog","price":{"amount":"1.00","currency":"USD"}}"#).expect(422, "invalid_input"),
        post("unknown enum value").json(pet_with("status", json!("flying"))).expect(422, "invalid_input").field("status"),
        post("enum value in the wrong case").json(pet_with("status", json!("AVAILABLE"))).expect(422, "invalid_input").field("status"),
        post("age beyond u32").json(pet_with("age", json!(4_294_967_296_u64))).expect(422, "invalid_input").field("age"),
        post("age 1e20 as a float").json(pet_with("age", json!(1e20))).expect(422, "invalid_input").field("age"),
        post("negative age").json(pet_with("age", json!(-1))).expect(422, "invalid_input").field("age"),
        post("age over 100").json(pet_with("age", json!(101))).expect(422, "invalid_input").field("age"),
        post("29-digit price").json(pet_with("price", json!({"amount": "99999999999999999999999999999", "currency": "USD"}))).expect(422, "invalid_input"),
        post("negative price").json(pet_with("price", json!({"amount": "-1.00", "currency": "USD"}))).expect(422, "invalid_input").field("price.amount"),
        post("price with 3 fraction digits").json(pet_with("price", json!({"amount": "1.001", "currency": "USD"}))).expect(422, "invalid_input").field("price.amount"),
        post("price over the maximum").json(pet_with("price", json!({"amount": "10000000.01", "currency": "USD"}))).expect(422, "invalid_input").field("price.amount"),
        post("price in exponent notation").json(pet_with("price", json!({"amount": "1e9", "currency": "USD"}))).expect(422, "invalid_input"),
        post("lower-case currency").json(pet_with("price", json!({"amount": "1.00", "currency": "usd"}))).expect(422, "invalid_input"),
        post("51-character name").json(pet_with("name", json!(big_name))).expect(422, "invalid_input").field("name"),
        post("NUL control character in the name").json(pet_with("name", json!("Rex\u{0}"))).expect(422, "invalid_input").field("name"),
        post("21 tags").json(pet_with("tags", json!(vec!["t"; 21]))).expect(422, "invalid_input").field("tags"),
        post("javascript: photo URL").json(pet_with("photo_urls", json!(["javascript:alert(1)"]))).expect(422, "invalid_input").field("photo_urls[0]"),
        post("SQL injection in species").json(pet_with("species", json!("dog'; DROP TABLE pets;--"))).expect(422, "invalid_input").field("species"),
        post("script injection in species").json(pet_with("species", json!("<script>alert(1)</script>"))).expect(422, "invalid_input").field("species"),
        // Size and media type.
        post("1 MiB body").json(huge.clone()).expect(413, "payload_too_large"),
        post("text/plain content type").body(Some("text/plain"), new_pet("Hostile").to_string()).expect(415, "unsupported_media_type"),
        post("no content type").body(None, new_pet("Hostile").to_string()).expect(415, "unsupported_media_type"),
        post("form content type").body(Some("application/x-www-form-urlencoded"), "name=Rex&species=dog").expect(415, "unsupported_media_type"),
        // Credentials.
        post("missing token").anonymous().json(new_pet("Hostile").to_string()).expect(401, "unauthenticated"),
        post("expired token").bearer(&t.expired).json(new_pet("Hostile").to_string()).expect(401, "unauthenticated"),
        post("forged token").bearer(&t.forged).json(new_pet("Hostile").to_string()).expect(401, "unauthenticated"),
        post("alg none token").bearer(&t.none).json(new_pet("Hostile").to_string()).expect(401, "unauthenticated"),
        post("garbage token").bearer(&t.garbage).json(new_pet("Hostile").to_string()).expect(401, "unauthenticated"),
        post("Basic credentials").authorization(b"Basic YWRtaW46YWRtaW4tcGFzc3dvcmQ=").json(new_pet("Hostile").to_string()).expect(401, "unauthenticated"),
        post("non-UTF-8 Authorization header").authorization(b"Bearer \xff\xfe").json(new_pet("Hostile").to_string()).expect(401, "unauthenticated"),
        post("token without the scope").bearer(&t.reader).json(new_pet("Hostile").to_string()).expect(403, "forbidden"),
        // Orders.
        w("order quantity 0", Method::POST, orders).json(json!({"pet_id": rex.id, "quantity": 0}).to_string()).expect(422, "invalid_input").field("quantity"),
        w("order quantity beyond u32", Method::POST, orders).json(json!({"pet_id": rex.id, "quantity": 1_u64 << 40}).to_string()).expect(422, "invalid_input").field("quantity"),
        w("order pet id with SQL injection", Method::POST, orders).json(json!({"pet_id": "pet_1' OR '1'='1"}).to_string()).expect(422, "invalid_input").field("pet_id"),
        w("order for an unknown pet", Method::POST, orders).json(json!({"pet_id": "pet_doesnotexist"}).to_string()).expect(404, "not_found"),
        w("order for a sold pet", Method::POST, orders).json(json!({"pet_id": shelly.id}).to_string()).expect(409, "conflict"),
        // A refused request leaves no idempotency key behind (a retry may succeed).
        w("order for a sold pet with an Idempotency-Key", Method::POST, orders).header("idempotency-key", "hostile-1").json(json!({"pet_id": shelly.id}).to_string()).expect(409, "conflict"),
        // Conditional requests and patches.
        w("merge patch that is an array", Method::PATCH, &rex_path).body(Some("application/merge-patch+json"), "[]").expect(422, "invalid_input"),
        w("stale If-Match", Method::PATCH, &rex_path).header("if-match", "\"999\"").body(Some("application/merge-patch+json"), r#"{"name":"Stale"}"#).expect(412, "precondition_failed"),
        w("malformed If-Match", Method::PATCH, &rex_path).header("if-match", "999").body(Some("application/merge-patch+json"), r#"{"name":"Bad"}"#).expect(400, "bad_request"),
        // Paths and queries.
        w("path traversal as a pet id", Method::GET, "/v1/pets/..%2F..%2Fetc%2Fpasswd").expect(404, "not_found"),
        w("SQL injection as a pet id", Method::DELETE, "/v1/pets/pet_1'%20OR%20'1'='1").expect(404, "not_found"),
        w("unknown status filter", Method::GET, "/v1/pets?status=flying").expect(400, "bad_request"),
        w("limit beyond u32", Method::GET, "/v1/pets?limit=99999999999").expect(400, "bad_request"),
        w("forged cursor", Method::GET, "/v1/pets?cursor=Zm9vJyBPUiAxPTE").expect(422, "invalid_input").field("cursor"),
        w("malformed resume token", Method::GET, "/v1/events?since=zzz").expect(400, "bad_request"),
        w("resume token of another epoch", Method::GET, format!("/v1/events?since={}", other_epoch_token(head)).as_str()).expect(410, "resume_expired"),
        // Logging in.
        req("wrong password", Method::POST, "/v1/auth/token").json(json!({"username": "admin", "password": "wrong-password"}).to_string()).expect(401, "unauthenticated"),
        req("1 MiB password", Method::POST, "/v1/auth/token").json(format!(r#"{{"username":"admin","password":"{}"}}"#, String::from_utf8_lossy(&huge))).expect(413, "payload_too_large"),
    ];

    let mut matrix = Matrix::new("REST", &s.store).await;
    for r in &rows {
        let answer = match send(&http, &base, r).await {
            Ok(a) => check_problem(r, &a),
            Err(e) => Err(e),
        };
        let follow = rest_follow_up(&http, &base, &rex).await;
        matrix.row(&s.store, r.name, answer, follow).await;
    }
    matrix.finish(REST_ROWS);
    s.shutdown().await.unwrap();
}

/// Injection-looking text where text is allowed is stored and returned verbatim, as
/// data: never interpreted, never escaped twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_looking_text_is_stored_verbatim() {
    let s = start().await;
    let http = http_client();
    let t = Tokens::new();
    let name = r#"<img src=x onerror=alert(1)>' OR 1=1; --"#;
    let breed = "x'); DROP TABLE pets;-- ${jndi:x} {{7*7}}";
    let body = json!({"name": name, "species": "dog", "breed": breed, "price": {"amount": "1.00", "currency": "USD"}});
    let r = req("create", Method::POST, "/v1/pets")
        .bearer(&t.all)
        .json(body.to_string());
    let a = send(&http, &s.http_url(), &r).await.unwrap();
    assert_eq!(a.status, 201, "{}", a.text());
    let id = a.json().unwrap()["id"].as_str().unwrap().to_owned();
    let got = send(
        &http,
        &s.http_url(),
        &req("get", Method::GET, format!("/v1/pets/{id}")),
    )
    .await
    .unwrap();
    assert!(got.header("content-type").starts_with("application/json"));
    let pet = got.json().unwrap();
    assert_eq!(pet["name"], name);
    assert_eq!(pet["breed"], breed);
    let stored = s
        .store
        .pet(&Principal::anonymous(), &id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(stored.name, name);
    // Search treats the text as text.
    let q = send(
        &http,
        &s.http_url(),
        &req("search", Method::GET, "/v1/pets?q=%27%20OR%201%3D1"),
    )
    .await
    .unwrap();
    let found = q.json().unwrap()["data"].as_array().unwrap().len();
    assert_eq!(
        found,
        1,
        "only the pet whose name contains the text: {}",
        q.text()
    );
    s.shutdown().await.unwrap();
}
