//! The hostile-input matrix: for every protocol of the server, a table of
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
//!
//! This module holds the machinery (tokens, rows, the per-row check of the store, the
//! report); each protocol's table is in a file of its own.

mod graphql;
mod grpc;
mod mcp;
mod mqtt;
mod rest;
mod sse;
mod webhooks;
mod ws;

use std::fmt::Debug;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use petstore_core::{Pet, PetQuery, PetStore, ResumeToken};
use petstore_server::{RunningServer, ServerArgs};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::support::state::{Snapshot, snapshot, unchanged};
use crate::support::{WAIT, start_with, system};

/// The HS256 secret of the matrix's servers, so that tests can mint, expire and forge
/// tokens with an ordinary JWT library.
const JWT_SECRET: &str = "hostile-matrix-jwt-secret-0123456789abcdef";
/// Another secret: what a forger signs with.
const OTHER_SECRET: &str = "mallory-forged-jwt-secret-0123456789abcdef";
/// The inbound payments webhook secret of the matrix's servers.
const PAYMENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ALL_SCOPES: &str = "pets:read pets:write orders:read orders:write chat:write admin";

async fn start() -> RunningServer {
    start_with(ServerArgs {
        jwt_secret: Some(JWT_SECRET.into()),
        payments_webhook_secret: Some(PAYMENTS_SECRET.into()),
        ..ServerArgs::ephemeral()
    })
    .await
}

/// What every table starts from.
struct Setup {
    s: RunningServer,
    /// The HTTP base URL.
    base: String,
    http: reqwest::Client,
    t: Tokens,
    /// A seeded pet that is available.
    rex: Pet,
    /// A seeded pet that is sold.
    shelly: Pet,
    /// The log head at the start.
    head: ResumeToken,
}

async fn setup() -> Setup {
    let s = start().await;
    let rex = pet_named(&s.store, "Rex").await;
    let shelly = pet_named(&s.store, "Shelly").await;
    let head = s.store.head().await.unwrap();
    Setup {
        base: s.http_url(),
        http: http_client(),
        t: Tokens::new(),
        rex,
        shelly,
        head,
        s,
    }
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

async fn pet_named(store: &PetStore, name: &str) -> Pet {
    let page = store
        .pets(&system(), &PetQuery::default().q(name))
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
