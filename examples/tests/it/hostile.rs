//! The hostile-input matrix: for every protocol of the example server, a table of
//! hostile inputs (malformed JSON, wrong types, oversize bodies, frames and messages,
//! invalid UTF-8, unknown enum values, huge numbers, deep nesting, injection-looking
//! strings, wrong content types, missing / expired / forged / `alg: none` / wrong-scope
//! tokens, replayed webhook ids, stale timestamps, unknown MQTT command topics).
//!
//! Each row names its input and the error the protocol must answer with. After every
//! row the matrix checks that the answer is that error, that a valid follow-up request
//! still works (the server keeps serving; for WebSocket, on the same connection), and
//! that the store is unchanged: same log head, same pets, same orders. A few rows are
//! valid requests that must be refused without a change (a replayed webhook id, an
//! ignored event type); they are checked the same way.
//!
//! Every row of a table runs even when an earlier one fails: the failures are collected
//! and reported together, so one run shows every gap. The row counts are printed and
//! recorded in ARCHITECTURE.md ("Hostile-input matrix").

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use petstore_core::{NewOrder, Order, OrderQuery, Pet, PetQuery, PetStore, Principal, ResumeToken};
use petstore_examples::server::{self, RunningServer, ServerArgs};
use petstore_grpc::pb;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message};

/// How long any one expected answer may take.
const WAIT: Duration = Duration::from_secs(15);
/// The HS256 secret of the matrix's servers, so that tests can mint, expire and forge
/// tokens with an ordinary JWT library.
const JWT_SECRET: &str = "hostile-matrix-jwt-secret-0123456789abcdef";
/// Another secret: what a forger signs with.
const OTHER_SECRET: &str = "mallory-forged-jwt-secret-0123456789abcdef";
/// The inbound payments webhook secret of the matrix's servers.
const PAYMENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ALL_SCOPES: &str = "pets:read pets:write orders:read orders:write chat:write admin";

async fn start() -> RunningServer {
    server::start(ServerArgs {
        jwt_secret: Some(JWT_SECRET.into()),
        payments_webhook_secret: Some(PAYMENTS_SECRET.into()),
        ..ServerArgs::ephemeral()
    })
    .await
    .expect("server starts")
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

// ----- tokens ------------------------------------------------------------------------

fn jwt(secret: &str, scope: &str, exp: u64) -> String {
    let claims = json!({"sub": "hostile", "scope": scope, "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signs")
}

/// Every kind of credential the matrix presents.
struct Tokens {
    /// Valid, every scope.
    all: String,
    /// Valid, read scopes only.
    reader: String,
    /// Signed with the server's secret, expired an hour ago.
    expired: String,
    /// Signed with another secret.
    forged: String,
    /// `alg: none`, no signature.
    none: String,
    /// Not a JWT at all.
    garbage: String,
}

impl Tokens {
    fn new() -> Self {
        let later = unix_now() + 3600;
        let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        Self {
            all: jwt(JWT_SECRET, ALL_SCOPES, later),
            reader: jwt(JWT_SECRET, "pets:read orders:read", later),
            expired: jwt(JWT_SECRET, ALL_SCOPES, unix_now() - 3600),
            forged: jwt(OTHER_SECRET, ALL_SCOPES, later),
            none: format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "JWT"})),
                b64(json!({"sub": "hostile", "scope": ALL_SCOPES, "exp": later}))
            ),
            garbage: "not.a.jwt".into(),
        }
    }
}

// ----- the store's state ---------------------------------------------------------------

/// Everything a hostile request must leave alone.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    head: ResumeToken,
    pets: Vec<Pet>,
    orders: Vec<Order>,
}

async fn snapshot(store: &PetStore) -> Snapshot {
    let who = Principal::system("hostile-matrix");
    let head = store.head().await.expect("head");
    let mut pets = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = PetQuery::default().limit(100);
        if let Some(c) = cursor.take() {
            query = query.cursor(c);
        }
        let page = store.pets(&who, &query).await.expect("pets");
        pets.extend(page.data);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut orders = Vec::new();
    loop {
        let mut query = OrderQuery::default().limit(100);
        if let Some(c) = cursor.take() {
            query = query.cursor(c);
        }
        let page = store.orders(&who, &query).await.expect("orders");
        orders.extend(page.data);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Snapshot { head, pets, orders }
}

fn unchanged(before: &Snapshot, after: &Snapshot) -> Result<(), String> {
    if before == after {
        return Ok(());
    }
    let mut what = Vec::new();
    if before.head != after.head {
        what.push(format!("log head moved {} -> {}", before.head, after.head));
    }
    if before.pets != after.pets {
        what.push(format!(
            "pets changed ({} -> {})",
            before.pets.len(),
            after.pets.len()
        ));
    }
    if before.orders != after.orders {
        what.push(format!(
            "orders changed ({} -> {})",
            before.orders.len(),
            after.orders.len()
        ));
    }
    Err(format!("the store changed: {}", what.join("; ")))
}

async fn pet_named(store: &PetStore, name: &str) -> Pet {
    let page = store
        .pets(
            &Principal::system("hostile-matrix"),
            &PetQuery::default().q(name),
        )
        .await
        .expect("search");
    page.data
        .into_iter()
        .find(|p| p.name == name)
        .expect("seeded pet")
}

// ----- the matrix ----------------------------------------------------------------------

/// The rows of one protocol's table and what went wrong in them.
struct Matrix {
    protocol: &'static str,
    rows: usize,
    failures: Vec<String>,
    before: Snapshot,
}

impl Matrix {
    async fn new(protocol: &'static str, store: &PetStore) -> Self {
        Self {
            protocol,
            rows: 0,
            failures: Vec::new(),
            before: snapshot(store).await,
        }
    }

    /// Records one row: the answer's check and the follow-up's, then compares the
    /// store with its state before the row.
    async fn row(
        &mut self,
        store: &PetStore,
        name: &str,
        answer: Result<(), String>,
        follow_up: Result<(), String>,
    ) {
        self.rows += 1;
        let after = snapshot(store).await;
        let mut problems = Vec::new();
        if let Err(e) = answer {
            problems.push(e);
        }
        if let Err(e) = follow_up {
            problems.push(format!("follow-up failed: {e}"));
        }
        if let Err(e) = unchanged(&self.before, &after) {
            problems.push(e);
            // Compare the next rows with the new state, so one bug is reported once.
            self.before = after;
        }
        if !problems.is_empty() {
            self.failures.push(format!(
                "[{}] {name}: {}",
                self.protocol,
                problems.join(" | ")
            ));
        }
    }

    /// Prints the count and fails with every failing row.
    fn finish(self, expected_rows: usize) {
        println!(
            "hostile matrix: {} {} rows, {} failing",
            self.protocol,
            self.rows,
            self.failures.len()
        );
        assert!(
            self.failures.is_empty(),
            "{} of {} {} rows failed:\n{}",
            self.failures.len(),
            self.rows,
            self.protocol,
            self.failures.join("\n")
        );
        assert_eq!(
            self.rows, expected_rows,
            "the {} table changed size: update ARCHITECTURE.md (Hostile-input matrix) and this count",
            self.protocol
        );
    }
}

fn expect_eq<T: PartialEq + Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: expected {want:?}, got {got:?}"))
    }
}

// ----- JSON fixtures -------------------------------------------------------------------

fn new_pet() -> Value {
    json!({"name": "Hostile", "species": "dog", "price": {"amount": "10.00", "currency": "USD"}})
}

/// A valid new pet with `key` set to `value` (`Value::Null` removes nothing: use
/// [`without`] for that).
fn pet_with(key: &str, value: Value) -> String {
    let mut pet = new_pet();
    pet[key] = value;
    pet.to_string()
}

fn without(mut body: Value, key: &str) -> String {
    body.as_object_mut().expect("object").remove(key);
    body.to_string()
}

/// `depth` nested JSON arrays.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn other_epoch_token(head: ResumeToken) -> String {
    ResumeToken::new(head.epoch ^ 0x5a5a_5a5a_5a5a_5a5a, 1).to_string()
}

// ----- HTTP rows -----------------------------------------------------------------------

/// One HTTP request of a table and the answer it must get.
#[derive(Debug, Clone)]
struct Req {
    name: &'static str,
    method: Method,
    path: String,
    authorization: Option<HeaderValue>,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Option<Vec<u8>>,
    status: u16,
    /// The protocol's error code (problem `code`, GraphQL `extensions.code`, ...).
    code: &'static str,
    field: Option<&'static str>,
    /// For a 2xx answer: a top-level member of the JSON body and its value.
    member: Option<(&'static str, Value)>,
}

fn req(name: &'static str, method: Method, path: impl Into<String>) -> Req {
    Req {
        name,
        method,
        path: path.into(),
        authorization: None,
        content_type: None,
        headers: Vec::new(),
        body: None,
        status: 0,
        code: "",
        field: None,
        member: None,
    }
}

impl Req {
    fn bearer(mut self, token: &str) -> Self {
        self.authorization =
            Some(HeaderValue::from_str(&format!("Bearer {token}")).expect("header"));
        self
    }

    fn authorization(mut self, raw: &[u8]) -> Self {
        self.authorization = Some(HeaderValue::from_bytes(raw).expect("header bytes"));
        self
    }

    fn anonymous(mut self) -> Self {
        self.authorization = None;
        self
    }

    fn json(self, body: impl Into<Vec<u8>>) -> Self {
        self.body(Some("application/json"), body)
    }

    fn body(mut self, content_type: Option<&'static str>, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = content_type;
        self.body = Some(body.into());
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers
            .push((name, HeaderValue::from_str(value).expect("header")));
        self
    }

    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = code;
        self
    }

    fn field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    fn member(mut self, key: &'static str, value: Value) -> Self {
        self.member = Some((key, value));
        self
    }
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(400).collect()
    }

    fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("body is not JSON ({e}): {}", self.text()))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(http: &reqwest::Client, base: &str, r: &Req) -> Result<Answer, String> {
    let mut request = http.request(r.method.clone(), format!("{base}{}", r.path));
    if let Some(auth) = &r.authorization {
        request = request.header(reqwest::header::AUTHORIZATION, auth.clone());
    }
    if let Some(ct) = r.content_type {
        request = request.header(reqwest::header::CONTENT_TYPE, ct);
    }
    for (name, value) in &r.headers {
        request = request.header(*name, value.clone());
    }
    if let Some(body) = &r.body {
        request = request.body(body.clone());
    }
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .map_err(|_| "no answer in time".to_owned())?
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = tokio::time::timeout(WAIT, response.bytes())
        .await
        .map_err(|_| "no body in time".to_owned())?
        .map_err(|e| format!("reading the body: {e}"))?
        .to_vec();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Checks an RFC 9457 problem answer (REST, SSE refusals, webhooks).
fn check_problem(r: &Req, a: &Answer) -> Result<(), String> {
    if a.status != r.status {
        return Err(format!(
            "expected {} {}, got {}: {}",
            r.status,
            r.code,
            a.status,
            a.text()
        ));
    }
    if (200..300).contains(&a.status) {
        return check_member(r, a);
    }
    let ct = a.header("content-type");
    if !ct.starts_with("application/problem+json") {
        return Err(format!(
            "content-type `{ct}` is not problem+json: {}",
            a.text()
        ));
    }
    let body = a.json()?;
    expect_eq("problem code", body["code"].as_str().unwrap_or(""), r.code)
        .map_err(|e| format!("{e} ({})", a.text()))?;
    expect_eq(
        "problem status",
        body["status"].as_u64(),
        Some(u64::from(a.status)),
    )?;
    if body["detail"].as_str().is_none_or(str::is_empty) {
        return Err(format!("the problem has no detail: {}", a.text()));
    }
    if let Some(field) = r.field {
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|f| f["field"].as_str()).collect())
            .unwrap_or_default();
        if !fields.contains(&field) {
            return Err(format!(
                "expected field `{field}` in errors, got {fields:?}: {}",
                a.text()
            ));
        }
    }
    if a.status == 401 && a.header("www-authenticate").is_empty() {
        return Err("401 without WWW-Authenticate".into());
    }
    Ok(())
}

fn check_member(r: &Req, a: &Answer) -> Result<(), String> {
    if let Some((key, value)) = &r.member {
        let body = a.json()?;
        expect_eq(&format!("`{key}`"), &body[*key], value)
            .map_err(|e| format!("{e}: {}", a.text()))?;
    }
    Ok(())
}

/// The follow-up of HTTP tables: reading a pet still works.
async fn rest_follow_up(http: &reqwest::Client, base: &str, pet: &Pet) -> Result<(), String> {
    let r = req("follow-up", Method::GET, format!("/v1/pets/{}", pet.id));
    let a = send(http, base, &r).await?;
    expect_eq("GET pet status", a.status, 200)?;
    expect_eq(
        "pet name",
        a.json()?["name"].as_str().map(str::to_owned),
        Some(pet.name.clone()),
    )
}

/// A client that opens a connection per request: a server answering a big body early
/// (413) closes that connection, which must not look like a failure of the next row.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

// ----- REST ----------------------------------------------------------------------------

const REST_ROWS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_refuses_hostile_input_and_changes_nothing() {
    let s = start().await;
    let base = s.http_url();
    let http = http_client();
    let t = Tokens::new();
    let rex = pet_named(&s.store, "Rex").await;
    let shelly = pet_named(&s.store, "Shelly").await;
    let head = s.store.head().await.unwrap();
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
        post("trailing garbage after the JSON").json(format!("{} {{}}", new_pet())).expect(400, "malformed_json"),
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
        post("missing required species").json(without(new_pet(), "species")).expect(422, "invalid_input").field("species"),
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
        post("text/plain content type").body(Some("text/plain"), new_pet().to_string()).expect(415, "unsupported_media_type"),
        post("no content type").body(None, new_pet().to_string()).expect(415, "unsupported_media_type"),
        post("form content type").body(Some("application/x-www-form-urlencoded"), "name=Rex&species=dog").expect(415, "unsupported_media_type"),
        // Credentials.
        post("missing token").anonymous().json(new_pet().to_string()).expect(401, "unauthenticated"),
        post("expired token").bearer(&t.expired).json(new_pet().to_string()).expect(401, "unauthenticated"),
        post("forged token").bearer(&t.forged).json(new_pet().to_string()).expect(401, "unauthenticated"),
        post("alg none token").bearer(&t.none).json(new_pet().to_string()).expect(401, "unauthenticated"),
        post("garbage token").bearer(&t.garbage).json(new_pet().to_string()).expect(401, "unauthenticated"),
        post("Basic credentials").authorization(b"Basic YWRtaW46YWRtaW4tcGFzc3dvcmQ=").json(new_pet().to_string()).expect(401, "unauthenticated"),
        post("non-UTF-8 Authorization header").authorization(b"Bearer \xff\xfe").json(new_pet().to_string()).expect(401, "unauthenticated"),
        post("token without the scope").bearer(&t.reader).json(new_pet().to_string()).expect(403, "forbidden"),
        // Orders.
        w("order quantity 0", Method::POST, orders).json(json!({"pet_id": rex.id, "quantity": 0}).to_string()).expect(422, "invalid_input").field("quantity"),
        w("order quantity beyond u32", Method::POST, orders).json(json!({"pet_id": rex.id, "quantity": 1_u64 << 40}).to_string()).expect(422, "invalid_input").field("quantity"),
        w("order pet id with SQL injection", Method::POST, orders).json(json!({"pet_id": "pet_1' OR '1'='1"}).to_string()).expect(404, "not_found"),
        w("order for an unknown pet", Method::POST, orders).json(json!({"pet_id": "pet_doesnotexist"}).to_string()).expect(404, "not_found"),
        w("order for a sold pet", Method::POST, orders).json(json!({"pet_id": shelly.id}).to_string()).expect(409, "conflict"),
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

// ----- GraphQL -------------------------------------------------------------------------

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

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What came next on a WebSocket.
#[derive(Debug)]
enum Got {
    Json(Value),
    #[allow(dead_code)] // shown through `Debug` in failure messages
    Text(String),
    Closed(Option<u16>),
    /// The connection ended without a close frame.
    #[allow(dead_code)] // shown through `Debug` in failure messages
    Dropped(String),
}

async fn next_ws(ws: &mut Ws) -> Got {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => return Got::Text("<nothing in time>".into()),
            Ok(None) => return Got::Dropped("end of stream".into()),
            Ok(Some(Err(e))) => return Got::Dropped(e.to_string()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Got::Closed(frame.map(|f| u16::from(f.code)));
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                return match serde_json::from_str(&text) {
                    Ok(v) => Got::Json(v),
                    Err(_) => Got::Text(text.to_string()),
                };
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}

async fn graphql_ws(base: &str, protocol: &str) -> Result<Ws, String> {
    use tungstenite::client::IntoClientRequest as _;
    let url = format!("{}/graphql", base.replace("http://", "ws://"));
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(protocol).expect("header"),
    );
    let (ws, _) = within(
        "GraphQL WebSocket",
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map_err(|e| format!("connect: {e}"))?;
    Ok(ws)
}

/// A graphql-transport-ws exchange: send `frames`, expect the socket to close with
/// `close`.
async fn graphql_ws_row(base: &str, frames: &[String], close: u16) -> Result<(), String> {
    let mut ws = graphql_ws(base, "graphql-transport-ws").await?;
    for f in frames {
        ws.send(Message::text(f.clone()))
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    loop {
        match next_ws(&mut ws).await {
            Got::Closed(code) => return expect_eq("close code", code, Some(close)),
            Got::Json(v) if v["type"] == "pong" || v["type"] == "ping" => continue,
            other => return Err(format!("expected close {close}, got {other:?}")),
        }
    }
}

/// A fresh graphql-transport-ws connection is still acknowledged.
async fn graphql_ws_follow_up(base: &str, token: &str) -> Result<(), String> {
    let mut ws = graphql_ws(base, "graphql-transport-ws").await?;
    let init =
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}});
    ws.send(Message::text(init.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    match next_ws(&mut ws).await {
        Got::Json(v) if v["type"] == "connection_ack" => Ok(()),
        other => Err(format!("expected connection_ack, got {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_refuses_hostile_input_and_changes_nothing() {
    let s = start().await;
    let base = s.http_url();
    let http = http_client();
    let t = Tokens::new();
    let rex = pet_named(&s.store, "Rex").await;
    let shelly = pet_named(&s.store, "Shelly").await;
    let head = s.store.head().await.unwrap();
    let g = |name| req(name, Method::POST, "/graphql").bearer(&t.all);
    let create = "mutation($input: NewPetInput!) { createPet(input: $input) { id } }";
    let pet_input = |key: &str, value: Value| {
        let mut input = json!({"name": "Hostile", "species": "dog", "price": {"amount": "10.00", "currency": "USD"}});
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

// ----- SSE -----------------------------------------------------------------------------

const SSE_ROWS: usize = 13;

/// Reads an SSE response until an `event: reset` message and returns its data.
async fn sse_reset(mut response: reqwest::Response) -> Result<Value, String> {
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(at) = text.find("event: reset") {
                let rest = &text[at..];
                if let Some(end) = rest.find("\n\n") {
                    let data: String = rest[..end]
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim)
                        .collect();
                    return serde_json::from_str(&data)
                        .map_err(|e| format!("reset data is not JSON ({e}): {data}"));
                }
            }
        }
        Err(format!("the stream ended without a reset: {text}"))
    };
    tokio::time::timeout(WAIT, read)
        .await
        .map_err(|_| "no reset in time".to_owned())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_refuses_hostile_input_and_changes_nothing() {
    let s = start().await;
    let base = s.http_url();
    let http = http_client();
    let t = Tokens::new();
    let rex = pet_named(&s.store, "Rex").await;
    let head = s.store.head().await.unwrap();
    let get = |name, path: &str| req(name, Method::GET, path);
    let many = (0..100)
        .map(|i| format!("pets/pet_{i}"))
        .collect::<Vec<_>>()
        .join(",");

    let rows = vec![
        get("unknown channel", "/v1/stream/admin").expect(422, "invalid_input"),
        get(
            "path traversal channel",
            "/v1/stream/pets/..%2F..%2Fetc%2Fpasswd",
        )
        .expect(422, "invalid_input"),
        get(
            "SQL injection channel",
            "/v1/stream?channels=pets%27%3B%20DROP%20TABLE%20pets%3B--",
        )
        .expect(422, "invalid_input"),
        get("unknown event type", "/v1/stream/pets?types=order.shipped")
            .expect(422, "invalid_input"),
        get("100 channels", &format!("/v1/stream?channels={many}"))
            .expect(422, "invalid_input")
            .field("channels"),
        get("chat without a token", "/v1/stream/chat").expect(401, "unauthenticated"),
        get("expired token", "/v1/stream/pets")
            .bearer(&t.expired)
            .expect(401, "unauthenticated"),
        get("forged token", "/v1/stream/pets")
            .bearer(&t.forged)
            .expect(401, "unauthenticated"),
        get("alg none token", "/v1/stream/pets")
            .bearer(&t.none)
            .expect(401, "unauthenticated"),
        get("garbage ?token=", "/v1/stream/pets?token=not.a.jwt").expect(401, "unauthenticated"),
        get("non-UTF-8 Authorization header", "/v1/stream/pets")
            .authorization(b"Bearer \xff")
            .expect(401, "unauthenticated"),
        // Valid requests that cannot resume: 200 with `event: reset`.
        get("malformed Last-Event-ID", "/v1/stream/pets")
            .header("last-event-id", "'; DROP TABLE events;--")
            .expect(200, "invalid_token"),
        get("Last-Event-ID of another epoch", "/v1/stream/pets")
            .header("last-event-id", &other_epoch_token(head))
            .expect(200, "epoch_mismatch"),
    ];

    let mut matrix = Matrix::new("SSE", &s.store).await;
    for r in &rows {
        let answer = if r.status == 200 {
            let mut request = http.get(format!("{base}{}", r.path));
            for (k, v) in &r.headers {
                request = request.header(*k, v.clone());
            }
            match within("SSE response", request.send()).await {
                Ok(resp) if resp.status() == 200 => sse_reset(resp).await.and_then(|data| {
                    expect_eq(
                        "reset reason",
                        data["reason"].as_str().unwrap_or(""),
                        r.code,
                    )
                }),
                Ok(resp) => Err(format!("expected 200 + reset, got {}", resp.status())),
                Err(e) => Err(e.to_string()),
            }
        } else {
            match send(&http, &base, r).await {
                Ok(a) => check_problem(r, &a),
                Err(e) => Err(e),
            }
        };
        let follow = rest_follow_up(&http, &base, &rex).await;
        matrix.row(&s.store, r.name, answer, follow).await;
    }
    matrix.finish(SSE_ROWS);
    s.shutdown().await.unwrap();
}

// ----- WebSocket -----------------------------------------------------------------------

const WS_ROWS: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    Anonymous,
    Reader,
}

/// What a WebSocket row must get.
#[derive(Debug, Clone)]
enum WsExpect {
    /// An error frame with this code; the connection stays open.
    Error(&'static str),
    /// An error frame with this code, then a close with this code.
    ErrorThenClose(&'static str, u16),
    /// The connection is closed (with this code, when the server can send one).
    Closed(Option<u16>),
    /// The handshake is refused with this HTTP status.
    Refused(u16),
}

async fn ws_connect(base: &str, token: Option<&str>) -> Result<Ws, String> {
    let mut url = format!("{}/v1/ws", base.replace("http://", "ws://"));
    if let Some(t) = token {
        url.push_str(&format!("?token={t}"));
    }
    within("WebSocket handshake", tokio_tungstenite::connect_async(url))
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::Error::Http(resp) => format!("HTTP {}", resp.status().as_u16()),
            other => other.to_string(),
        })
}

/// Sends `{"type":"ping","id":…}` and waits for its pong on the same connection.
async fn ws_ping(ws: &mut Ws, id: &str) -> Result<(), String> {
    ws.send(Message::text(json!({"type": "ping", "id": id}).to_string()))
        .await
        .map_err(|e| format!("send ping: {e}"))?;
    loop {
        match next_ws(ws).await {
            Got::Json(v) if v["type"] == "pong" && v["id"] == id => return Ok(()),
            Got::Json(v) if v["type"] == "event" || v["type"] == "chat.message" => continue,
            other => return Err(format!("expected pong {id}, got {other:?}")),
        }
    }
}

/// Reads frames until an error frame; returns its code.
async fn ws_error(ws: &mut Ws) -> Result<String, String> {
    loop {
        match next_ws(ws).await {
            Got::Json(v) if v["type"] == "error" => {
                if v["message"].as_str().is_none_or(str::is_empty) {
                    return Err(format!("error frame without a message: {v}"));
                }
                return Ok(v["code"].as_str().unwrap_or("").to_owned());
            }
            Got::Json(v)
                if ["event", "chat.message", "subscribed", "unsubscribed"]
                    .contains(&v["type"].as_str().unwrap_or("")) =>
            {
                continue;
            }
            other => return Err(format!("expected an error frame, got {other:?}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_refuses_hostile_frames_and_keeps_the_connection() {
    let s = start().await;
    let base = s.http_url();
    let t = Tokens::new();
    let text = |v: Value| Message::text(v.to_string());
    let raw = |s: &str| Message::text(s.to_owned());
    let big = "x".repeat(70 * 1024);
    let invalid_utf8 = Message::Frame(Frame::message(
        Bytes::from_static(b"{\"type\":\"ping\",\"x\":\"\xff\xfe\"}"),
        OpCode::Data(Data::Text),
        true,
    ));

    use Who::*;
    use WsExpect::*;
    let rows: Vec<(&str, Who, Option<Message>, WsExpect)> = vec![
        ("not JSON", Admin, Some(raw("nope")), Error("bad_request")),
        (
            "JSON array",
            Admin,
            Some(raw("[1,2]")),
            Error("bad_request"),
        ),
        (
            "no type",
            Admin,
            Some(text(json!({"channel": "pets"}))),
            Error("bad_request"),
        ),
        (
            "type is a number",
            Admin,
            Some(text(json!({"type": 1}))),
            Error("bad_request"),
        ),
        (
            "unknown type",
            Admin,
            Some(text(json!({"type": "dance"}))),
            Error("bad_request"),
        ),
        (
            "subscribe without a channel",
            Admin,
            Some(text(json!({"type": "subscribe"}))),
            Error("bad_request"),
        ),
        (
            "channel is a number",
            Admin,
            Some(text(json!({"type": "subscribe", "channel": 7}))),
            Error("bad_request"),
        ),
        (
            "unknown channel",
            Admin,
            Some(text(json!({"type": "subscribe", "channel": "admin"}))),
            Error("invalid_input"),
        ),
        (
            "path traversal channel",
            Admin,
            Some(text(
                json!({"type": "subscribe", "channel": "pets/../../etc/passwd"}),
            )),
            Error("invalid_input"),
        ),
        (
            "SQL injection channel",
            Admin,
            Some(text(
                json!({"type": "subscribe", "channel": "pets'; DROP TABLE pets;--"}),
            )),
            Error("invalid_input"),
        ),
        (
            "malformed since",
            Admin,
            Some(text(
                json!({"type": "subscribe", "channel": "pets", "since": "zzz"}),
            )),
            Error("bad_request"),
        ),
        (
            "since is a huge number",
            Admin,
            Some(raw(
                r#"{"type":"subscribe","channel":"pets","since":1e999}"#,
            )),
            Error("bad_request"),
        ),
        (
            "200 nested arrays",
            Admin,
            Some(raw(&format!(r#"{{"type":"ping","x":{}}}"#, nested(200)))),
            Error("bad_request"),
        ),
        (
            "unsubscribe from an unsubscribed channel",
            Admin,
            Some(text(json!({"type": "unsubscribe", "channel": "orders"}))),
            Error("not_subscribed"),
        ),
        (
            "chat text of 2001 characters",
            Admin,
            Some(text(
                json!({"type": "chat.send", "room": "support", "text": "x".repeat(2001)}),
            )),
            Error("invalid_input"),
        ),
        (
            "chat room with SQL injection",
            Admin,
            Some(text(
                json!({"type": "chat.send", "room": "support'; DROP TABLE chat;--", "text": "hi"}),
            )),
            Error("invalid_input"),
        ),
        (
            "chat text is a number",
            Admin,
            Some(text(
                json!({"type": "chat.send", "room": "support", "text": 5}),
            )),
            Error("bad_request"),
        ),
        (
            "binary frame",
            Admin,
            Some(Message::binary(Bytes::from_static(b"\x00\x01\x02"))),
            Error("bad_request"),
        ),
        (
            "second auth on an authenticated connection",
            Admin,
            Some(text(json!({"type": "auth", "token": t.all}))),
            Error("bad_request"),
        ),
        (
            "anonymous chat.send",
            Anonymous,
            Some(text(
                json!({"type": "chat.send", "room": "support", "text": "hi"}),
            )),
            Error("unauthenticated"),
        ),
        (
            "anonymous chat subscription",
            Anonymous,
            Some(text(json!({"type": "subscribe", "channel": "chat"}))),
            Error("unauthenticated"),
        ),
        (
            "auth frame with a forged token",
            Anonymous,
            Some(text(json!({"type": "auth", "token": t.forged}))),
            Error("unauthenticated"),
        ),
        (
            "auth frame with an expired token",
            Anonymous,
            Some(text(json!({"type": "auth", "token": t.expired}))),
            Error("unauthenticated"),
        ),
        (
            "auth frame with an alg none token",
            Anonymous,
            Some(text(json!({"type": "auth", "token": t.none}))),
            Error("unauthenticated"),
        ),
        (
            "chat.send without chat:write",
            Reader,
            Some(text(
                json!({"type": "chat.send", "room": "support", "text": "hi"}),
            )),
            Error("forbidden"),
        ),
        (
            "70 KiB message",
            Admin,
            Some(text(json!({"type": "ping", "pad": big}))),
            ErrorThenClose("message_too_large", 1009),
        ),
        (
            "invalid UTF-8 text frame",
            Admin,
            Some(invalid_utf8),
            Closed(Some(1007)),
        ),
        ("?token= forged", Admin, None, Refused(401)),
        ("?token= expired", Admin, None, Refused(401)),
        ("?token= alg none", Admin, None, Refused(401)),
    ];
    let handshake_tokens = [t.forged.clone(), t.expired.clone(), t.none.clone()];
    let mut handshakes = handshake_tokens.iter();

    let token_of = |who: Who| match who {
        Admin => Some(t.all.clone()),
        Anonymous => None,
        Reader => Some(t.reader.clone()),
    };
    let mut sockets: Vec<(Who, Ws)> = Vec::new();
    for who in [Admin, Anonymous, Reader] {
        sockets.push((
            who,
            ws_connect(&base, token_of(who).as_deref())
                .await
                .expect("connects"),
        ));
    }

    let mut matrix = Matrix::new("WebSocket", &s.store).await;
    for (i, (name, who, message, expect)) in rows.into_iter().enumerate() {
        let slot = sockets.iter().position(|(w, _)| *w == who).expect("socket");
        let ws = &mut sockets[slot].1;
        let ping_id = format!("after-{i}");
        let (answer, follow) = match (&expect, message) {
            (Refused(status), None) => {
                let token = handshakes.next().expect("a handshake token");
                let answer = match ws_connect(&base, Some(token)).await {
                    Ok(_) => Err("the handshake was accepted".to_owned()),
                    Err(e) => expect_eq("handshake", e, format!("HTTP {status}")),
                };
                (answer, ws_ping(ws, &ping_id).await)
            }
            (_, Some(message)) => {
                let sent = ws.send(message).await.map_err(|e| format!("send: {e}"));
                let answer = match (sent, &expect) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Error(code)) => ws_error(ws)
                        .await
                        .and_then(|got| expect_eq("error code", got.as_str(), code)),
                    (Ok(()), ErrorThenClose(code, close)) => match ws_error(ws).await {
                        Ok(got) if got == *code => match next_ws(ws).await {
                            Got::Closed(c) => expect_eq("close code", c, Some(*close)),
                            other => Err(format!("expected close {close}, got {other:?}")),
                        },
                        Ok(got) => Err(format!("expected error {code}, got {got}")),
                        Err(e) => Err(e),
                    },
                    (Ok(()), Closed(code)) => match next_ws(ws).await {
                        Got::Closed(c) if code.is_none() || c == *code => Ok(()),
                        Got::Closed(c) => Err(format!("closed with {c:?}, expected {code:?}")),
                        other => Err(format!("expected the connection to close, got {other:?}")),
                    },
                    (Ok(()), Refused(_)) => unreachable!("handshake rows send nothing"),
                };
                let follow = match &expect {
                    // These end the connection by design: a new one must work.
                    ErrorThenClose(..) | Closed(_) => {
                        match ws_connect(&base, token_of(who).as_deref()).await {
                            Ok(mut fresh) => {
                                let ok = ws_ping(&mut fresh, &ping_id).await;
                                sockets[slot].1 = fresh;
                                ok
                            }
                            Err(e) => Err(format!("reconnect: {e}")),
                        }
                    }
                    _ => ws_ping(ws, &ping_id).await,
                };
                (answer, follow)
            }
            (_, None) => unreachable!("only handshake rows send nothing"),
        };
        matrix.row(&s.store, name, answer, follow).await;
    }
    matrix.finish(WS_ROWS);
    s.shutdown().await.unwrap();
}

// ----- gRPC ----------------------------------------------------------------------------

const GRPC_ROWS: usize = 29;

/// One gRPC call of the table.
enum Call {
    CreatePet(pb::CreatePetRequest),
    GetPet(pb::GetPetRequest),
    UpdatePet(pb::UpdatePetRequest),
    PlaceOrder(pb::PlaceOrderRequest),
    WatchPets(pb::WatchPetsRequest),
    Chat(pb::ChatSend),
    /// Raw bytes: a gRPC frame (or anything) POSTed to `path` over h2c.
    Raw {
        path: &'static str,
        content_type: &'static str,
        body: Vec<u8>,
    },
}

/// A gRPC row: name, call, `authorization` metadata, expected code, expected
/// `BadRequest` field.
type GrpcRow<'a> = (&'a str, Call, Option<String>, tonic::Code, Option<&'a str>);

fn with_auth<T>(message: T, authorization: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("ASCII metadata"));
    }
    request
}

/// Runs a call; `Err` is the status it ended with.
async fn grpc_call(
    channel: &tonic::transport::Channel,
    h2: &reqwest::Client,
    addr: &str,
    call: Call,
    auth: Option<&str>,
) -> Result<(), tonic::Status> {
    use pb::chat_service_client::ChatServiceClient;
    use pb::pet_service_client::PetServiceClient;
    use pb::store_service_client::StoreServiceClient;
    let mut pets = PetServiceClient::new(channel.clone());
    let mut store = StoreServiceClient::new(channel.clone());
    match call {
        Call::CreatePet(m) => pets.create_pet(with_auth(m, auth)).await.map(drop),
        Call::GetPet(m) => pets.get_pet(with_auth(m, auth)).await.map(drop),
        Call::UpdatePet(m) => pets.update_pet(with_auth(m, auth)).await.map(drop),
        Call::PlaceOrder(m) => store.place_order(with_auth(m, auth)).await.map(drop),
        Call::WatchPets(m) => {
            let mut stream = pets.watch_pets(with_auth(m, auth)).await?.into_inner();
            // A live watch with nothing to send waits: only an error ends it in time.
            match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                Ok(Err(status)) => Err(status),
                Ok(Ok(_)) => Ok(()),
                Err(_) => Ok(()),
            }
        }
        Call::Chat(m) => {
            let mut chat = ChatServiceClient::new(channel.clone());
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tx.send(m).await.expect("queued");
            let mut stream = chat
                .chat(with_auth(
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                    auth,
                ))
                .await?
                .into_inner();
            match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                Ok(Err(status)) => Err(status),
                _ => Ok(()),
            }
        }
        Call::Raw {
            path,
            content_type,
            body,
        } => {
            let response = h2
                .post(format!("http://{addr}{path}"))
                .header("content-type", content_type)
                .header("te", "trailers")
                .body(body)
                .send()
                .await
                .map_err(|e| tonic::Status::unknown(format!("raw request failed: {e}")))?;
            let http = response.status().as_u16();
            let header = |n: &str| {
                response
                    .headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            match header("grpc-status") {
                Some(code) => {
                    let code = tonic::Code::from_i32(code.parse().unwrap_or(2));
                    let message = header("grpc-message").unwrap_or_default();
                    if code == tonic::Code::Ok {
                        Ok(())
                    } else {
                        Err(tonic::Status::new(code, message))
                    }
                }
                None => Err(tonic::Status::unknown(format!(
                    "HTTP {http} without grpc-status in the headers"
                ))),
            }
        }
    }
}

fn grpc_frame(message: &[u8], compressed: bool) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Protobuf: field `number` as a length-delimited value.
fn proto_bytes(number: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    let mut len = value.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(value);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_refuses_hostile_input_and_changes_nothing() {
    use tonic::Code;
    use tonic_types::StatusExt as _;
    let s = start().await;
    let addr = s.grpc_addr.expect("gRPC is on").to_string();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("gRPC connects");
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let t = Tokens::new();
    let rex = pet_named(&s.store, "Rex").await;
    let shelly = pet_named(&s.store, "Shelly").await;
    let head = s.store.head().await.unwrap();
    let money = |amount: &str, currency: &str| {
        Some(pb::Money {
            amount: amount.into(),
            currency: currency.into(),
        })
    };
    let pet = || pb::CreatePetRequest {
        name: "Hostile".into(),
        species: "dog".into(),
        price: money("10.00", "USD"),
        ..Default::default()
    };
    let bearer = |tok: &str| Some(format!("Bearer {tok}"));
    let all = bearer(&t.all);
    let mut create_with_bad_utf8 = proto_bytes(1, b"\xff\xfe");
    create_with_bad_utf8.extend(proto_bytes(2, b"dog"));
    let big_species = proto_bytes(2, &vec![b'a'; 5 * 1024 * 1024]);
    let create_path = "/petstore.v1.PetService/CreatePet";
    let grpc_ct = "application/grpc";

    let rows: Vec<GrpcRow<'_>> = vec![
        (
            "empty name",
            Call::CreatePet(pb::CreatePetRequest {
                name: String::new(),
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("name"),
        ),
        (
            "no price",
            Call::CreatePet(pb::CreatePetRequest {
                price: None,
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("price"),
        ),
        (
            "unknown enum value 99",
            Call::CreatePet(pb::CreatePetRequest {
                status: 99,
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("status"),
        ),
        (
            "age u32::MAX",
            Call::CreatePet(pb::CreatePetRequest {
                age: Some(u32::MAX),
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("age"),
        ),
        (
            "price 1e999",
            Call::CreatePet(pb::CreatePetRequest {
                price: money("1e999", "USD"),
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            None,
        ),
        (
            "lower-case currency",
            Call::CreatePet(pb::CreatePetRequest {
                price: money("1.00", "usd"),
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            None,
        ),
        (
            "SQL injection in species",
            Call::CreatePet(pb::CreatePetRequest {
                species: "dog'; DROP TABLE pets;--".into(),
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("species"),
        ),
        (
            "NUL in the name",
            Call::CreatePet(pb::CreatePetRequest {
                name: "Rex\0".into(),
                ..pet()
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("name"),
        ),
        (
            "missing token",
            Call::CreatePet(pet()),
            None,
            Code::Unauthenticated,
            None,
        ),
        (
            "expired token",
            Call::CreatePet(pet()),
            bearer(&t.expired),
            Code::Unauthenticated,
            None,
        ),
        (
            "forged token",
            Call::CreatePet(pet()),
            bearer(&t.forged),
            Code::Unauthenticated,
            None,
        ),
        (
            "alg none token",
            Call::CreatePet(pet()),
            bearer(&t.none),
            Code::Unauthenticated,
            None,
        ),
        (
            "Basic credentials",
            Call::CreatePet(pet()),
            Some("Basic YWRtaW46YWRtaW4tcGFzc3dvcmQ=".into()),
            Code::Unauthenticated,
            None,
        ),
        (
            "token without the scope",
            Call::CreatePet(pet()),
            bearer(&t.reader),
            Code::PermissionDenied,
            None,
        ),
        (
            "unknown pet",
            Call::GetPet(pb::GetPetRequest {
                id: "pet_doesnotexist".into(),
            }),
            None,
            Code::NotFound,
            None,
        ),
        (
            "SQL injection as a pet id",
            Call::GetPet(pb::GetPetRequest {
                id: "pet_1' OR '1'='1".into(),
            }),
            None,
            Code::NotFound,
            None,
        ),
        (
            "unknown field in the update mask",
            Call::UpdatePet(pb::UpdatePetRequest {
                pet: Some(pb::Pet {
                    id: rex.id.to_string(),
                    name: "Masked".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["owner".into()],
                }),
                expected_version: None,
            }),
            all.clone(),
            Code::InvalidArgument,
            None,
        ),
        (
            "stale expected_version",
            Call::UpdatePet(pb::UpdatePetRequest {
                pet: Some(pb::Pet {
                    id: rex.id.to_string(),
                    name: "Stale".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                expected_version: Some(999),
            }),
            all.clone(),
            Code::Aborted,
            None,
        ),
        (
            "order quantity 0",
            Call::PlaceOrder(pb::PlaceOrderRequest {
                pet_id: rex.id.to_string(),
                quantity: Some(0),
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("quantity"),
        ),
        (
            "order quantity u32::MAX",
            Call::PlaceOrder(pb::PlaceOrderRequest {
                pet_id: rex.id.to_string(),
                quantity: Some(u32::MAX),
            }),
            all.clone(),
            Code::InvalidArgument,
            Some("quantity"),
        ),
        (
            "order for a sold pet",
            Call::PlaceOrder(pb::PlaceOrderRequest {
                pet_id: shelly.id.to_string(),
                quantity: None,
            }),
            all.clone(),
            Code::FailedPrecondition,
            None,
        ),
        (
            "malformed resume token",
            Call::WatchPets(pb::WatchPetsRequest {
                since: Some("zzz".into()),
                ..Default::default()
            }),
            None,
            Code::InvalidArgument,
            None,
        ),
        (
            "resume token of another epoch",
            Call::WatchPets(pb::WatchPetsRequest {
                since: Some(other_epoch_token(head)),
                ..Default::default()
            }),
            None,
            Code::OutOfRange,
            None,
        ),
        (
            "unknown event type",
            Call::WatchPets(pb::WatchPetsRequest {
                types: vec!["pet.flying".into()],
                ..Default::default()
            }),
            None,
            Code::InvalidArgument,
            None,
        ),
        (
            "chat room with SQL injection",
            Call::Chat(pb::ChatSend {
                room: "support'; DROP TABLE chat;--".into(),
                text: "hi".into(),
            }),
            all.clone(),
            Code::InvalidArgument,
            None,
        ),
        (
            "malformed protobuf",
            Call::Raw {
                path: create_path,
                content_type: grpc_ct,
                body: grpc_frame(&[0x0a, 0x7f, 0x01], false),
            },
            None,
            Code::Internal,
            None,
        ),
        (
            "invalid UTF-8 in a string field",
            Call::Raw {
                path: create_path,
                content_type: grpc_ct,
                body: grpc_frame(&create_with_bad_utf8, false),
            },
            None,
            Code::Internal,
            None,
        ),
        (
            "5 MiB message",
            Call::Raw {
                path: create_path,
                content_type: grpc_ct,
                body: grpc_frame(&big_species, false),
            },
            None,
            Code::OutOfRange,
            None,
        ),
        (
            "compressed flag without grpc-encoding",
            Call::Raw {
                path: create_path,
                content_type: grpc_ct,
                body: grpc_frame(&proto_bytes(1, b"Rex"), true),
            },
            None,
            Code::Internal,
            None,
        ),
    ];

    let mut matrix = Matrix::new("gRPC", &s.store).await;
    for (name, call, auth, code, field) in rows {
        let answer =
            match within(name, grpc_call(&channel, &h2, &addr, call, auth.as_deref())).await {
                Ok(()) => Err(format!("expected {code:?}, the call succeeded")),
                Err(status) => {
                    let mut check = expect_eq("code", status.code(), code)
                        .map_err(|e| format!("{e}: {}", status.message()));
                    if check.is_ok() && status.message().is_empty() {
                        check = Err("the status has no message".into());
                    }
                    if let (Ok(()), Some(field)) = (&check, field) {
                        let fields: Vec<String> = status
                            .get_details_bad_request()
                            .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
                            .unwrap_or_default();
                        if !fields.iter().any(|f| f == field) {
                            check = Err(format!(
                                "expected BadRequest field `{field}`, got {fields:?}"
                            ));
                        }
                    }
                    check
                }
            };
        let follow = async {
            let mut client = pb::pet_service_client::PetServiceClient::new(channel.clone());
            let got = client
                .get_pet(pb::GetPetRequest {
                    id: rex.id.to_string(),
                })
                .await
                .map_err(|e| e.to_string())?;
            expect_eq("pet name", got.into_inner().name, rex.name.clone())
        }
        .await;
        matrix.row(&s.store, name, answer, follow).await;
    }
    matrix.finish(GRPC_ROWS);
    s.shutdown().await.unwrap();
}

// ----- MCP -----------------------------------------------------------------------------

const MCP_ROWS: usize = 31;

type McpClient = rmcp::service::RunningService<rmcp::RoleClient, rmcp::model::ClientConfig>;

async fn mcp_client(base: &str, token: Option<&str>) -> McpClient {
    use rmcp::ServiceExt as _;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"));
    if let Some(t) = token {
        config = config.auth_header(t);
    }
    within(
        "MCP client",
        rmcp::model::ClientConfig::default()
            .serve(StreamableHttpClientTransport::from_config(config)),
    )
    .await
    .expect("MCP client connects")
}

/// What a tool-call row must get.
enum McpExpect {
    /// A tool result with `isError: true` whose text contains this.
    ToolError(&'static str),
    /// A JSON-RPC error.
    RpcError,
}

fn initialize_body() -> String {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "hostile", "version": "0"}}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_refuses_hostile_input_and_changes_nothing() {
    use rmcp::model::{CallToolRequestParams, ReadResourceRequestParams};
    let s = start().await;
    let base = s.http_url();
    let http = http_client();
    let t = Tokens::new();
    let rex = pet_named(&s.store, "Rex").await;
    let shelly = pet_named(&s.store, "Shelly").await;
    let head = s.store.head().await.unwrap();

    // Transport-level rows: raw POSTs to /mcp.
    let post = |name| {
        req(name, Method::POST, "/mcp")
            .bearer(&t.all)
            .header("accept", "application/json, text/event-stream")
    };
    let mut invalid_utf8 = br#"{"jsonrpc":"2.0","id":1,"method":""#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe\"}");
    let raw_rows = vec![
        post("body is not JSON")
            .json("{\"jsonrpc\": \"2.0\",")
            .expect(400, ""),
        post("invalid UTF-8 body")
            .json(invalid_utf8)
            .expect(400, ""),
        post("100000 nested arrays")
            .json(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}}"#,
                nested(100_000)
            ))
            .expect(400, ""),
        post("JSON-RPC 1.0 envelope")
            .json(initialize_body().replace("\"2.0\"", "\"1.0\""))
            .expect(400, ""),
        post("text/plain content type")
            .body(Some("text/plain"), initialize_body())
            .expect(415, ""),
        req("no Accept header", Method::POST, "/mcp")
            .json(initialize_body())
            .expect(406, ""),
        post("4 MiB body")
            .json(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"pad":"{}"}}}}"#,
                "x".repeat(4 * 1024 * 1024)
            ))
            .expect(413, ""),
        post("expired token")
            .bearer(&t.expired)
            .json(initialize_body())
            .expect(401, "unauthenticated"),
        post("forged token")
            .bearer(&t.forged)
            .json(initialize_body())
            .expect(401, "unauthenticated"),
        post("alg none token")
            .bearer(&t.none)
            .json(initialize_body())
            .expect(401, "unauthenticated"),
        post("garbage token")
            .bearer(&t.garbage)
            .json(initialize_body())
            .expect(401, "unauthenticated"),
        post("foreign Host (DNS rebinding)")
            .header("host", "evil.example")
            .json(initialize_body())
            .expect(403, ""),
        post("foreign Origin")
            .header("origin", "https://evil.example")
            .json(initialize_body())
            .expect(403, ""),
    ];
    let mut matrix = Matrix::new("MCP", &s.store).await;
    for r in &raw_rows {
        let answer = match send(&http, &base, r).await {
            Ok(a) if a.status == r.status => {
                if r.code.is_empty() {
                    Ok(())
                } else {
                    a.json()
                        .and_then(|b| expect_eq("code", b["code"].as_str().unwrap_or(""), r.code))
                }
            }
            Ok(a) => Err(format!(
                "expected HTTP {}, got {}: {}",
                r.status,
                a.status,
                a.text()
            )),
            Err(e) => Err(e),
        };
        let follow = match send(&http, &base, &post("follow-up").json(initialize_body())).await {
            Ok(a) => expect_eq("initialize status", a.status, 200),
            Err(e) => Err(e),
        };
        matrix.row(&s.store, r.name, answer, follow).await;
    }

    // Tool calls through the rmcp client.
    let admin = mcp_client(&base, Some(&t.all)).await;
    let anonymous = mcp_client(&base, None).await;
    let reader = mcp_client(&base, Some(&t.reader)).await;
    let pet = |key: &str, value: Value| {
        let mut v = json!({"name": "Hostile", "species": "dog", "price": {"amount": "10.00", "currency": "USD"}});
        v[key] = value;
        v
    };
    use McpExpect::*;
    let rows: Vec<(&str, &McpClient, &str, Value, McpExpect)> = vec![
        (
            "create_pet without a token",
            &anonymous,
            "create_pet",
            pet("name", json!("Anon")),
            ToolError("unauthenticated"),
        ),
        (
            "create_pet without the scope",
            &reader,
            "create_pet",
            pet("name", json!("Reader")),
            ToolError("forbidden"),
        ),
        (
            "name is a number",
            &admin,
            "create_pet",
            pet("name", json!(42)),
            ToolError("name"),
        ),
        (
            "unknown enum value",
            &admin,
            "create_pet",
            pet("status", json!("flying")),
            ToolError("status"),
        ),
        (
            "age 1e20",
            &admin,
            "create_pet",
            pet("age", json!(1e20)),
            ToolError("age"),
        ),
        (
            "unknown field",
            &admin,
            "create_pet",
            pet("owner", json!("mallory")),
            ToolError("owner"),
        ),
        (
            "missing price",
            &admin,
            "create_pet",
            json!({"name": "NoPrice", "species": "dog"}),
            ToolError("price"),
        ),
        (
            "SQL injection in species",
            &admin,
            "create_pet",
            pet("species", json!("dog'; DROP TABLE pets;--")),
            ToolError("invalid_input"),
        ),
        (
            "100 nested arrays as tags",
            &admin,
            "create_pet",
            pet("tags", serde_json::from_str(&nested(100)).unwrap()),
            ToolError("tags"),
        ),
        (
            "order for an unknown pet",
            &admin,
            "place_order",
            json!({"pet_id": "pet_doesnotexist"}),
            ToolError("not_found"),
        ),
        (
            "order for a sold pet",
            &admin,
            "place_order",
            json!({"pet_id": shelly.id}),
            ToolError("conflict"),
        ),
        (
            "order quantity 0",
            &admin,
            "place_order",
            json!({"pet_id": rex.id, "quantity": 0}),
            ToolError("invalid_input"),
        ),
        (
            "order quantity beyond u32",
            &admin,
            "place_order",
            json!({"pet_id": rex.id, "quantity": 1_u64 << 40}),
            ToolError("quantity"),
        ),
        (
            "SQL injection as a pet id",
            &admin,
            "get_pet",
            json!({"id": "pet_1' OR '1'='1"}),
            ToolError("not_found"),
        ),
        (
            "malformed resume token",
            &admin,
            "recent_events",
            json!({"since": "zzz"}),
            ToolError("since"),
        ),
        (
            "resume token of another epoch",
            &admin,
            "recent_events",
            json!({"since": other_epoch_token(head)}),
            ToolError("resume_expired"),
        ),
        ("unknown tool", &admin, "drop_tables", json!({}), RpcError),
    ];
    for (name, client, tool, arguments, expect) in rows {
        let Value::Object(arguments) = arguments else {
            unreachable!("objects")
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let result = within(name, client.call_tool(params)).await;
        let answer = match (result, expect) {
            (Ok(r), ToolError(needle)) => {
                let text: String = r
                    .content
                    .iter()
                    .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                    .collect::<Vec<_>>()
                    .join("\n");
                if r.is_error != Some(true) {
                    Err(format!("expected a tool error, got success: {text}"))
                } else if !text.contains(needle) {
                    Err(format!(
                        "the tool error does not mention `{needle}`: {text}"
                    ))
                } else {
                    Ok(())
                }
            }
            (Err(e), ToolError(needle)) => Err(format!(
                "expected a tool error mentioning `{needle}`, got a protocol error: {e}"
            )),
            (Err(_), RpcError) => Ok(()),
            (Ok(r), RpcError) => Err(format!("expected a JSON-RPC error, got a result: {r:?}")),
        };
        let follow = mcp_follow_up(client).await;
        matrix.row(&s.store, name, answer, follow).await;
    }
    // Resources.
    let uri = "petstore://pets/../../etc/passwd";
    let read = within(
        "resources/read",
        admin.read_resource(ReadResourceRequestParams::new(uri)),
    )
    .await;
    let answer = match read {
        Err(_) => Ok(()),
        Ok(r) => Err(format!("read {uri}: {r:?}")),
    };
    let follow = mcp_follow_up(&admin).await;
    matrix
        .row(&s.store, "path traversal resource URI", answer, follow)
        .await;

    for c in [admin, anonymous, reader] {
        let _ = c.cancel().await;
    }
    matrix.finish(MCP_ROWS);
    s.shutdown().await.unwrap();
}

async fn mcp_follow_up(client: &McpClient) -> Result<(), String> {
    use rmcp::model::CallToolRequestParams;
    let result = within(
        "get_inventory",
        client.call_tool(CallToolRequestParams::new("get_inventory".to_owned())),
    )
    .await
    .map_err(|e| e.to_string())?;
    if result.is_error == Some(true) {
        return Err(format!("get_inventory failed: {:?}", result.content));
    }
    Ok(())
}

// ----- webhooks ------------------------------------------------------------------------

const WEBHOOK_ROWS: usize = 40;

fn signed(
    secret: &petstore_webhooks::WebhookSecret,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", secret.sign(id, timestamp, body)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_refuse_hostile_input_and_change_nothing() {
    let s = start().await;
    let base = s.http_url();
    let http = http_client();
    let t = Tokens::new();
    let rex = pet_named(&s.store, "Rex").await;
    let bella = pet_named(&s.store, "Bella").await;
    let secret: petstore_webhooks::WebhookSecret = PAYMENTS_SECRET.parse().unwrap();
    let forger = petstore_webhooks::WebhookSecret::generate();
    let staff = Principal::system("hostile-matrix");
    // An approved order (its notice applied once) and a placed one.
    let approved = s
        .store
        .place_order(&staff, NewOrder::new(rex.id.clone()), None)
        .await
        .unwrap()
        .order;
    let placed = s
        .store
        .place_order(&staff, NewOrder::new(bella.id.clone()), None)
        .await
        .unwrap()
        .order;
    let now = i64::try_from(unix_now()).unwrap();
    let notice = |order: &str| {
        json!({"type": "payment.succeeded", "data": {"order_id": order}})
            .to_string()
            .into_bytes()
    };
    let first = notice(approved.id.as_str());
    let hook = "/v1/payments/webhook";
    let applied = req("apply once", Method::POST, hook).json(first.clone());
    let applied = signed(&secret, "msg_applied", now, &first)
        .into_iter()
        .fold(applied, |r, (k, v)| r.header(k, &v));
    let a = send(&http, &base, &applied).await.unwrap();
    assert_eq!(a.status, 200, "setup notice: {}", a.text());

    let inbound = |name: &'static str, body: Vec<u8>, headers: Vec<(&'static str, String)>| {
        headers
            .into_iter()
            .fold(req(name, Method::POST, hook).json(body), |r, (k, v)| {
                r.header(k, &v)
            })
    };
    let sign = |id: &str, body: &[u8]| signed(&secret, id, now, body);
    let target = notice(placed.id.as_str());
    let mut bad_utf8 = br#"{"type":"payment.succeeded","data":{"order_id":""#.to_vec();
    bad_utf8.extend_from_slice(b"\xff\xfe\"}}");
    let deep = format!(
        r#"{{"type":"payment.succeeded","data":{}}}"#,
        nested(100_000)
    )
    .into_bytes();
    let huge = format!(
        r#"{{"type":"payment.succeeded","data":{{"order_id":"{}","pad":"{}"}}}}"#,
        placed.id,
        "x".repeat(2 * 1024 * 1024)
    )
    .into_bytes();
    let data = |d: Value| {
        json!({"type": "payment.succeeded", "data": d})
            .to_string()
            .into_bytes()
    };
    let sig_only = |value: &str| {
        let mut h = sign("msg_x", &target);
        h[2].1 = value.to_owned();
        h
    };
    let with_ts = |ts: &str| {
        let mut h = sign("msg_ts", &target);
        h[1].1 = ts.to_owned();
        h
    };

    let webhook_id_300 = "m".repeat(300);
    let rows = vec![
        inbound("no webhook headers", target.clone(), vec![]).expect(401, "unauthenticated"),
        inbound("no webhook-signature", target.clone(), sign("msg_1", &target)[..2].to_vec()).expect(401, "unauthenticated"),
        inbound("no webhook-id", target.clone(), sign("msg_1", &target)[1..].to_vec()).expect(401, "unauthenticated"),
        inbound("signed with another secret", target.clone(), signed(&forger, "msg_2", now, &target)).expect(401, "unauthenticated"),
        inbound("signature of another body", target.clone(), sign("msg_3", &first)).expect(401, "unauthenticated"),
        inbound("signature of another webhook-id", target.clone(), { let mut h = sign("msg_4", &target); h[0].1 = "msg_5".into(); h }).expect(401, "unauthenticated"),
        inbound("stale timestamp (1 hour old)", target.clone(), signed(&secret, "msg_6", now - 3600, &target)).expect(401, "unauthenticated"),
        inbound("future timestamp (1 hour ahead)", target.clone(), signed(&secret, "msg_7", now + 3600, &target)).expect(401, "unauthenticated"),
        inbound("timestamp is not a number", target.clone(), with_ts("yesterday")).expect(401, "unauthenticated"),
        inbound("timestamp beyond i64", target.clone(), with_ts("99999999999999999999")).expect(401, "unauthenticated"),
        inbound("signature not base64", target.clone(), sig_only("v1,!!!not-base64!!!")).expect(401, "unauthenticated"),
        inbound("only an unsupported v1a signature", target.clone(), sig_only("v1a,AAAA")).expect(401, "unauthenticated"),
        inbound("empty signature", target.clone(), sig_only("")).expect(401, "unauthenticated"),
        inbound("replayed webhook-id", first.clone(), sign("msg_applied", &first)).expect(200, "").member("duplicate", json!(true)),
        inbound("replayed webhook-id with another order", target.clone(), sign("msg_applied", &target)).expect(200, "").member("duplicate", json!(true)),
        inbound("new webhook-id for an approved order", first.clone(), sign("msg_again", &first)).expect(409, "conflict"),
        inbound("signed malformed JSON", b"{\"type\":".to_vec(), sign("msg_8", b"{\"type\":")).expect(400, "malformed_json"),
        inbound("signed invalid UTF-8", bad_utf8.clone(), sign("msg_9", &bad_utf8)).expect(400, "malformed_json"),
        inbound("signed 100000 nested arrays", deep.clone(), sign("msg_10", &deep)).expect(400, "malformed_json"),
        inbound("signed, no order_id", data(json!({})), sign("msg_11", &data(json!({})))).expect(422, "invalid_input").field("data.order_id"),
        inbound("signed, order_id is a number", data(json!({"order_id": 7})), sign("msg_12", &data(json!({"order_id": 7})))).expect(422, "invalid_input").field("data"),
        inbound("signed, SQL injection order_id", data(json!({"order_id": "ord_1' OR '1'='1"})), sign("msg_13", &data(json!({"order_id": "ord_1' OR '1'='1"})))).expect(422, "invalid_input").field("data.order_id"),
        inbound("signed, unknown order", data(json!({"order_id": "ord_doesnotexist"})), sign("msg_14", &data(json!({"order_id": "ord_doesnotexist"})))).expect(404, "not_found"),
        inbound("signed, 300-character reference", data(json!({"order_id": placed.id, "reference": "r".repeat(300)})), sign("msg_15", &data(json!({"order_id": placed.id, "reference": "r".repeat(300)})))).expect(422, "invalid_input").field("data.reference"),
        inbound("signed, 300-character webhook-id", target.clone(), sign(&webhook_id_300, &target)).expect(422, "invalid_input"),
        inbound("signed, unknown event type", json!({"type": "payment.refunded", "data": {"order_id": placed.id}}).to_string().into_bytes(), sign("msg_16", json!({"type": "payment.refunded", "data": {"order_id": placed.id}}).to_string().as_bytes())).expect(200, "").member("ignored", json!(true)),
        inbound("signed 2 MiB body", huge.clone(), sign("msg_17", &huge)).expect(413, "payload_too_large"),
        // Endpoint management.
        req("create without a token", Method::POST, "/v1/webhooks").json(json!({"url": "http://127.0.0.1:9/hook"}).to_string()).expect(401, "unauthenticated"),
        req("create with an expired token", Method::POST, "/v1/webhooks").bearer(&t.expired).json(json!({"url": "http://127.0.0.1:9/hook"}).to_string()).expect(401, "unauthenticated"),
        req("create with a forged token", Method::POST, "/v1/webhooks").bearer(&t.forged).json(json!({"url": "http://127.0.0.1:9/hook"}).to_string()).expect(401, "unauthenticated"),
        req("create with an alg none token", Method::POST, "/v1/webhooks").bearer(&t.none).json(json!({"url": "http://127.0.0.1:9/hook"}).to_string()).expect(401, "unauthenticated"),
        req("create without admin", Method::POST, "/v1/webhooks").bearer(&t.reader).json(json!({"url": "http://127.0.0.1:9/hook"}).to_string()).expect(403, "forbidden"),
        req("create with malformed JSON", Method::POST, "/v1/webhooks").bearer(&t.all).json("{\"url\":").expect(400, "malformed_json"),
        req("create with text/plain", Method::POST, "/v1/webhooks").bearer(&t.all).body(Some("text/plain"), json!({"url": "http://127.0.0.1:9/hook"}).to_string()).expect(415, "unsupported_media_type"),
        req("file: URL", Method::POST, "/v1/webhooks").bearer(&t.all).json(json!({"url": "file:///etc/passwd"}).to_string()).expect(422, "invalid_input").field("url"),
        req("cloud metadata URL (SSRF)", Method::POST, "/v1/webhooks").bearer(&t.all).json(json!({"url": "http://169.254.169.254/latest/meta-data"}).to_string()).expect(422, "invalid_input").field("url"),
        req("private network URL (SSRF)", Method::POST, "/v1/webhooks").bearer(&t.all).json(json!({"url": "http://10.0.0.1/hook"}).to_string()).expect(422, "invalid_input").field("url"),
        req("unknown event type", Method::POST, "/v1/webhooks").bearer(&t.all).json(json!({"url": "http://127.0.0.1:9/hook", "events": ["order.shipped"]}).to_string()).expect(422, "invalid_input"),
        req("5000-character URL", Method::POST, "/v1/webhooks").bearer(&t.all).json(json!({"url": format!("http://127.0.0.1:9/{}", "a".repeat(5000))}).to_string()).expect(422, "invalid_input").field("url"),
        req("2 MiB create body", Method::POST, "/v1/webhooks").bearer(&t.all).json(json!({"url": "http://127.0.0.1:9/hook", "description": "x".repeat(2 * 1024 * 1024)}).to_string()).expect(413, "payload_too_large"),
    ];

    let endpoints = || async {
        let r = req("list", Method::GET, "/v1/webhooks").bearer(&t.all);
        let a = send(&http, &base, &r).await?;
        expect_eq("list status", a.status, 200)?;
        Ok::<usize, String>(a.json()?["data"].as_array().map_or(0, Vec::len))
    };
    let mut endpoints_before = endpoints().await.unwrap();
    let mut matrix = Matrix::new("webhooks", &s.store).await;
    for r in &rows {
        let answer = match send(&http, &base, r).await {
            Ok(a) => check_problem(r, &a),
            Err(e) => Err(e),
        };
        let follow = match endpoints().await {
            Ok(n) => {
                let same = expect_eq("webhook endpoints", n, endpoints_before);
                endpoints_before = n;
                same
            }
            Err(e) => Err(e),
        }
        .and(rest_follow_up(&http, &base, &rex).await);
        matrix.row(&s.store, r.name, answer, follow).await;
    }
    matrix.finish(WEBHOOK_ROWS);
    s.shutdown().await.unwrap();
}

// ----- MQTT ----------------------------------------------------------------------------

const MQTT_ROWS: usize = 21;

/// An MQTT 5 client that sends commands and collects replies. It subscribes to its
/// reply topic again whenever it (re)connects.
struct Mqtt {
    client: rumqttc::v5::AsyncClient,
    replies: tokio::sync::mpsc::UnboundedReceiver<(Option<Bytes>, Bytes)>,
    /// One item per SUBACK of the reply topic.
    ready: tokio::sync::mpsc::UnboundedReceiver<()>,
    /// One item per lost connection, saying why.
    drops: tokio::sync::mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

const REPLIES: &str = "hostile/replies";

impl Mqtt {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::{AsyncClient, Event, MqttOptions};
        let mut options = MqttOptions::new("hostile-matrix", addr.ip().to_string(), addr.port());
        options.set_max_packet_size(Some(4 * 1024 * 1024));
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let (tx, replies) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready) = tokio::sync::mpsc::unbounded_channel();
        let (drop_tx, drops) = tokio::sync::mpsc::unbounded_channel();
        let subscriber = client.clone();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // A clean session: (re)subscribe on every connection.
                        let _ = subscriber.try_subscribe(REPLIES, QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let correlation = p.properties.and_then(|p| p.correlation_data);
                        let _ = tx.send((correlation, p.payload));
                    }
                    Ok(Event::Incoming(Packet::Disconnect(d))) => {
                        let _ = drop_tx.send(format!("DISCONNECT {:?}", d.reason_code));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = drop_tx.send(e.to_string());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        let mut mqtt = Self {
            client,
            replies,
            ready,
            drops,
            task,
        };
        within("SUBACK", mqtt.ready.recv())
            .await
            .expect("event loop runs");
        mqtt
    }

    async fn publish_with(
        &self,
        topic: &str,
        payload: Vec<u8>,
        response_topic: &str,
        correlation: &str,
    ) {
        let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
            response_topic: Some(response_topic.to_owned()),
            correlation_data: Some(Bytes::copy_from_slice(correlation.as_bytes())),
            ..Default::default()
        };
        self.client
            .publish_with_properties(
                topic,
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                false,
                payload,
                props,
            )
            .await
            .expect("publish");
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>, correlation: &str) {
        self.publish_with(topic, payload, REPLIES, correlation)
            .await;
    }

    /// The reply with `correlation`, and any other replies that came before it (a
    /// row must not cause a reply it was not asked for).
    async fn reply(
        &mut self,
        correlation: &str,
        patience: Duration,
    ) -> (Option<Value>, Vec<String>) {
        let mut others = Vec::new();
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match tokio::time::timeout_at(deadline, self.replies.recv()).await {
                Ok(Some((c, payload))) if c.as_deref() == Some(correlation.as_bytes()) => {
                    return (serde_json::from_slice(&payload).ok(), others);
                }
                Ok(Some((c, payload))) => others.push(format!(
                    "{}: {}",
                    String::from_utf8_lossy(&c.unwrap_or_default()),
                    String::from_utf8_lossy(&payload)
                )),
                _ => return (None, others),
            }
        }
    }

    /// A command on an unknown topic: the bridge answers `not_found` and changes
    /// nothing, so the answer proves that the bridge is serving.
    async fn probe(&mut self, id: &str) -> Result<(), String> {
        self.publish("petstore/commands/probe", b"{}".to_vec(), id)
            .await;
        match self.reply(id, WAIT).await {
            (Some(v), others) if v["error"]["code"] == "not_found" && others.is_empty() => Ok(()),
            other => Err(format!("probe {id}: {other:?}")),
        }
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_refuses_hostile_commands_and_changes_nothing() {
    let s = start().await;
    let addr = s.mqtt_addr.expect("MQTT is on");
    let rex = pet_named(&s.store, "Rex").await;
    let shelly = pet_named(&s.store, "Shelly").await;
    let mut mqtt = Mqtt::connect(addr).await;
    // Readiness: the bridge subscribes to the command topics soon after start; ask
    // until it answers.
    within("the bridge answers commands", async {
        for i in 0.. {
            let id = format!("ready-{i}");
            mqtt.publish("petstore/commands/probe", b"{}".to_vec(), &id)
                .await;
            if mqtt
                .reply(&id, Duration::from_millis(500))
                .await
                .0
                .is_some()
            {
                break;
            }
        }
    })
    .await;
    // Late answers to earlier probes.
    while mqtt.replies.try_recv().is_ok() {}

    let status = format!("petstore/commands/pets/{}/status", rex.id);
    let orders = "petstore/commands/orders".to_owned();
    let mut invalid_utf8 = br#"{"status":""#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe\"}");
    let padded = |size: usize| {
        format!(r#"{{"pet_id":"{}","pad":"{}"}}"#, rex.id, "x".repeat(size)).into_bytes()
    };
    let b = |s: &str| s.as_bytes().to_vec();

    let rows: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "unknown command topic",
            "petstore/commands/launch".into(),
            b("{}"),
            "not_found",
        ),
        (
            "unknown nested command topic",
            format!("petstore/commands/pets/{}/feed", rex.id),
            b(r#"{"status":"sold"}"#),
            "not_found",
        ),
        (
            "SQL injection as a pet id in the topic",
            "petstore/commands/pets/pet_1' OR '1'='1/status".into(),
            b(r#"{"status":"sold"}"#),
            "not_found",
        ),
        (
            "malformed JSON",
            status.clone(),
            b(r#"{"status":"#),
            "invalid_input",
        ),
        ("empty payload", status.clone(), Vec::new(), "invalid_input"),
        (
            "invalid UTF-8",
            status.clone(),
            invalid_utf8,
            "invalid_input",
        ),
        (
            "status is a number",
            status.clone(),
            b(r#"{"status":1}"#),
            "invalid_input",
        ),
        (
            "unknown enum value",
            status.clone(),
            b(r#"{"status":"flying"}"#),
            "invalid_input",
        ),
        (
            "unknown field",
            status.clone(),
            b(r#"{"status":"sold","owner":"mallory"}"#),
            "invalid_input",
        ),
        (
            "100000 nested arrays",
            status.clone(),
            format!(r#"{{"status":{}}}"#, nested(100_000)).into_bytes(),
            "invalid_input",
        ),
        (
            "JSON array payload",
            orders.clone(),
            b("[]"),
            "invalid_input",
        ),
        (
            "quantity beyond u32",
            orders.clone(),
            format!(r#"{{"pet_id":"{}","quantity":4294967296}}"#, rex.id).into_bytes(),
            "invalid_input",
        ),
        (
            "quantity 1e999",
            orders.clone(),
            format!(r#"{{"pet_id":"{}","quantity":1e999}}"#, rex.id).into_bytes(),
            "invalid_input",
        ),
        (
            "quantity 0",
            orders.clone(),
            format!(r#"{{"pet_id":"{}","quantity":0}}"#, rex.id).into_bytes(),
            "invalid_input",
        ),
        (
            "idempotency key is an object",
            orders.clone(),
            format!(
                r#"{{"pet_id":"{}","idempotency_key":{{"$ne":null}}}}"#,
                rex.id
            )
            .into_bytes(),
            "invalid_input",
        ),
        (
            "pet id with SQL injection",
            orders.clone(),
            b(r#"{"pet_id":"pet_1' OR '1'='1"}"#),
            "not_found",
        ),
        (
            "order for an unknown pet",
            orders.clone(),
            b(r#"{"pet_id":"pet_doesnotexist"}"#),
            "not_found",
        ),
        (
            "order for a sold pet",
            orders.clone(),
            format!(r#"{{"pet_id":"{}"}}"#, shelly.id).into_bytes(),
            "conflict",
        ),
        (
            "900 KiB payload",
            orders.clone(),
            padded(900 * 1024),
            "invalid_input",
        ),
    ];

    let mut matrix = Matrix::new("MQTT", &s.store).await;
    for (i, (name, topic, payload, code)) in rows.into_iter().enumerate() {
        let id = format!("row-{i}");
        mqtt.publish(&topic, payload, &id).await;
        let answer = match mqtt.reply(&id, WAIT).await {
            (Some(v), others) if others.is_empty() => {
                if v["ok"] != false {
                    Err(format!("expected ok:false, got {v}"))
                } else if v["error"]["message"].as_str().is_none_or(str::is_empty) {
                    Err(format!("no message: {v}"))
                } else {
                    expect_eq(
                        "reply code",
                        v["error"]["code"].as_str().unwrap_or(""),
                        code,
                    )
                    .map_err(|e| format!("{e}: {v}"))
                }
            }
            (reply, others) => Err(format!("reply {reply:?}, unexpected others {others:?}")),
        };
        let follow = mqtt.probe(&format!("after-{i}")).await;
        matrix.row(&s.store, name, answer, follow).await;
    }

    // A response topic with wildcards cannot be published to: no reply, and the
    // bridge keeps its broker connection and keeps serving.
    mqtt.publish_with(
        "petstore/commands/launch",
        b"{}".to_vec(),
        "hostile/#",
        "wildcard",
    )
    .await;
    let follow = mqtt.probe("after-wildcard").await;
    let answer = match mqtt.reply("wildcard", Duration::ZERO).await {
        (None, others) if others.is_empty() => Ok(()),
        other => Err(format!("unexpected replies: {other:?}")),
    };
    matrix
        .row(&s.store, "wildcard response topic", answer, follow)
        .await;

    // Over the broker's 1 MiB limit: the broker drops the sender's connection (MQTT
    // has no error reply for it); the bridge never sees it and keeps serving.
    mqtt.publish(&orders, padded(1024 * 1024 + 1), "oversize")
        .await;
    let answer = match within("the broker drops the connection", mqtt.drops.recv()).await {
        Some(_why) => Ok(()),
        None => Err("the client task ended".into()),
    };
    let follow = match within("re-SUBACK", mqtt.ready.recv()).await {
        Some(()) => mqtt.probe("after-oversize").await,
        None => Err("the client task ended".into()),
    };
    matrix
        .row(
            &s.store,
            "payload over the broker's 1 MiB limit",
            answer,
            follow,
        )
        .await;

    matrix.finish(MQTT_ROWS);
    drop(mqtt);
    s.shutdown().await.unwrap();
}
