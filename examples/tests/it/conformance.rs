//! The cross-protocol conformance suite: the same scenarios through every protocol of
//! the example server, each test on a server of its own.
//!
//! Every answer is first checked in its protocol's own terms (problem+json, gRPC
//! status details, GraphQL `extensions`, MCP `isError`, WebSocket error frames), then
//! reduced to a protocol-neutral value ([`PetView`], [`OrderView`], [`Refusal`], an
//! event envelope) so that the protocols can be compared with each other and with
//! the core. Comparisons are collected in a [`Findings`] list and reported together,
//! so one run shows every difference between protocols, not just the first.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use eventsource_stream::Eventsource as _;
use futures_util::{SinkExt as _, StreamExt as _};
use petstore_core::chrono::{DateTime, SecondsFormat, Utc};
use petstore_core::{
    ErrorKind, EventFilter, NewPet, Pet, PetId, PetQuery, Principal, ResumeToken, Scope,
    TokenAuthority, TypePattern,
};
use petstore_examples::server::RunningServer;
use petstore_grpc::pb;
use pb::pet_service_client::PetServiceClient;
use pb::store_service_client::StoreServiceClient;
use reqwest::Method;
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientInfo};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest as _};
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::smoke::start;

/// How long any one expected answer, frame or message may take.
const WAIT: Duration = Duration::from_secs(15);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

// ----- protocol-neutral values --------------------------------------------------------

/// The request/response protocols that carry commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Rest,
    GraphQl,
    Grpc,
    Mcp,
}

const APIS: [Api; 4] = [Api::Rest, Api::GraphQl, Api::Grpc, Api::Mcp];

/// A refused request, whatever the protocol: the core error kind it stands for and
/// the fields it names, plus what the protocol literally said (for messages).
#[derive(Debug, Clone)]
struct Refusal {
    kind: ErrorKind,
    fields: BTreeSet<String>,
    wire: String,
}

impl Refusal {
    /// What must agree between protocols.
    fn meaning(&self) -> (ErrorKind, BTreeSet<String>) {
        (self.kind, self.fields.clone())
    }
}

type Outcome<T> = Result<T, Refusal>;

/// A pet as every protocol must show it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PetView {
    id: String,
    name: String,
    species: String,
    breed: Option<String>,
    age: Option<u64>,
    status: String,
    tags: Vec<String>,
    price: String,
    version: u64,
    updated_at: DateTime<Utc>,
}

impl PetView {
    /// From the JSON of REST, MCP and GraphQL (whose query aliases give the same keys).
    fn from_json(v: &Value) -> Self {
        let text = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("pet `{k}` is not a string: {v}"))
                .to_owned()
        };
        Self {
            id: text("id"),
            name: text("name"),
            species: text("species"),
            breed: v["breed"].as_str().map(str::to_owned),
            age: v["age"].as_u64(),
            status: text("status"),
            tags: v["tags"]
                .as_array()
                .unwrap_or_else(|| panic!("pet tags: {v}"))
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect(),
            price: money(&v["price"]),
            version: v["version"].as_u64().unwrap_or_else(|| panic!("version: {v}")),
            updated_at: time(&v["updated_at"]),
        }
    }

    fn from_pb(p: pb::Pet) -> Self {
        Self {
            status: proto_enum(p.status().as_str_name(), "PET_STATUS_"),
            id: p.id,
            name: p.name,
            species: p.species,
            breed: p.breed,
            age: p.age.map(u64::from),
            tags: p.tags,
            price: p.price.map_or_else(String::new, |m| format!("{} {}", m.amount, m.currency)),
            version: p.version,
            updated_at: p
                .updated_at
                .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos as u32))
                .expect("updated_at"),
        }
    }

    fn from_core(p: &Pet) -> Self {
        Self::from_json(&serde_json::to_value(p).unwrap())
    }
}

/// An order as every protocol must show it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OrderView {
    id: String,
    pet_id: String,
    quantity: u64,
    total: String,
    status: String,
    customer: String,
}

impl OrderView {
    fn from_json(v: &Value) -> Self {
        let text = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("order `{k}` is not a string: {v}"))
                .to_owned()
        };
        Self {
            id: text("id"),
            pet_id: text("pet_id"),
            quantity: v["quantity"].as_u64().unwrap_or_else(|| panic!("quantity: {v}")),
            total: money(&v["total"]),
            status: text("status"),
            customer: text("customer"),
        }
    }

    fn from_pb(o: pb::Order) -> Self {
        Self {
            status: proto_enum(o.status().as_str_name(), "ORDER_STATUS_"),
            id: o.id,
            pet_id: o.pet_id,
            quantity: o.quantity.into(),
            total: o.total.map_or_else(String::new, |m| format!("{} {}", m.amount, m.currency)),
            customer: o.customer,
        }
    }
}

fn money(v: &Value) -> String {
    match (v["amount"].as_str(), v["currency"].as_str()) {
        (Some(a), Some(c)) => format!("{a} {c}"),
        _ => panic!("not money: {v}"),
    }
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {v}"))
        .with_timezone(&Utc)
}

/// `PET_STATUS_AVAILABLE` -> `available`.
fn proto_enum(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{name} lacks {prefix}"))
        .to_lowercase()
}

/// A GraphQL enum value (`AVAILABLE`) as the JSON protocols spell it (`available`).
fn graphql_enum(v: &mut Value, key: &str) {
    let upper = v[key].as_str().unwrap_or_else(|| panic!("`{key}`: {v}")).to_owned();
    assert_eq!(upper, upper.to_uppercase(), "GraphQL enums are upper case: {v}");
    v[key] = json!(upper.to_lowercase());
}

/// Differences found while comparing protocols; the test fails at the end listing all.
#[derive(Debug, Default)]
struct Findings(Vec<String>);

impl Findings {
    fn same<T: PartialEq + Debug>(&mut self, what: impl Into<String>, got: T, want: T) {
        if got != want {
            self.0.push(format!("{}:\n    got  {got:?}\n    want {want:?}", what.into()));
        }
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.0.push(what.into());
        }
    }

    #[track_caller]
    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} difference(s):\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

// ----- one caller, every protocol -----------------------------------------------------

type Mcp = RunningService<rmcp::RoleClient, ClientInfo>;

/// A caller holding one credential (or none), with a client for each protocol.
struct Wire {
    http: reqwest::Client,
    base: String,
    grpc: tonic::transport::Channel,
    token: Option<String>,
    mcp: Option<Mcp>,
}

const PET: &str = "id name species breed age status tags price { amount currency } version updated_at: updatedAt";
const ORDER: &str = "id pet_id: petId quantity total { amount currency } status customer";

impl Wire {
    /// Every client, MCP included (which refuses a bad token at connect time).
    async fn connect(s: &RunningServer, token: Option<&str>) -> Self {
        let mut wire = Self::without_mcp(s, token).await;
        wire.mcp = Some(
            mcp_connect(s, token)
                .await
                .unwrap_or_else(|e| panic!("MCP client connects: {e}")),
        );
        wire
    }

    async fn without_mcp(s: &RunningServer, token: Option<&str>) -> Self {
        let grpc_url = format!("http://{}", s.grpc_addr.expect("gRPC is served"));
        let grpc = within(
            "gRPC connection",
            tonic::transport::Endpoint::from_shared(grpc_url).unwrap().connect(),
        )
        .await
        .expect("gRPC connects");
        Self {
            http: reqwest::Client::new(),
            base: s.http_url(),
            grpc,
            token: token.map(str::to_owned),
            mcp: None,
        }
    }

    async fn close(self) {
        if let Some(mcp) = self.mcp {
            let _ = mcp.cancel().await;
        }
    }

    // --- transports

    async fn rest_raw(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, String, Value) {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = within("REST response", request.send()).await.expect("REST request");
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.bytes().await.expect("REST body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!("{method} {path}: {status} body is not JSON ({e}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        (status, content_type, body)
    }

    async fn rest(&self, method: Method, path: &str, body: Option<Value>) -> Outcome<Value> {
        let (status, content_type, body) = self.rest_raw(method, path, body).await;
        if status.is_success() {
            Ok(body)
        } else {
            Err(rest_refusal(status, &content_type, &body))
        }
    }

    async fn graphql(&self, query: &str, variables: Value, field: &str) -> Outcome<Value> {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = within("GraphQL response", request.send()).await.expect("GraphQL request");
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("GraphQL answers JSON");
        if body.get("errors").is_some() {
            return Err(graphql_refusal(status, &body));
        }
        assert_eq!(status, 200, "{body}");
        Ok(body["data"][field].clone())
    }

    fn grpc_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    }

    fn pets(&self) -> PetServiceClient<tonic::transport::Channel> {
        PetServiceClient::new(self.grpc.clone())
    }

    fn orders(&self) -> StoreServiceClient<tonic::transport::Channel> {
        StoreServiceClient::new(self.grpc.clone())
    }

    async fn mcp(&self, tool: &str, arguments: Value) -> Outcome<Value> {
        let client = self.mcp.as_ref().expect("this caller has an MCP client");
        let Value::Object(arguments) = arguments else { panic!("arguments must be an object") };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let result = within(tool, client.call_tool(params))
            .await
            .unwrap_or_else(|e| panic!("MCP tools/call {tool} is a protocol error: {e}"));
        if result.is_error == Some(true) {
            let text: Vec<String> = result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect();
            return Err(mcp_refusal(&text.join("\n")));
        }
        Ok(result.structured_content.unwrap_or_else(|| panic!("{tool} has structured content")))
    }

    // --- commands and queries

    async fn create_pet(&self, api: Api, pet: &Value) -> Outcome<PetView> {
        match api {
            Api::Rest => self.rest(Method::POST, "/v1/pets", Some(pet.clone())).await.map(|v| PetView::from_json(&v)),
            Api::GraphQl => {
                let q = format!("mutation($input: NewPetInput!) {{ createPet(input: $input) {{ {PET} }} }}");
                self.graphql(&q, json!({ "input": pet }), "createPet").await.map(graphql_pet)
            }
            Api::Grpc => {
                let text = |k: &str| pet[k].as_str().map(str::to_owned);
                let request = pb::CreatePetRequest {
                    name: text("name").unwrap_or_default(),
                    species: text("species").unwrap_or_default(),
                    breed: text("breed"),
                    age: pet["age"].as_u64().map(|a| a as u32),
                    tags: pet["tags"]
                        .as_array()
                        .map(|t| t.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
                        .unwrap_or_default(),
                    price: Some(pb::Money {
                        amount: pet["price"]["amount"].as_str().unwrap().to_owned(),
                        currency: pet["price"]["currency"].as_str().unwrap().to_owned(),
                    }),
                    ..Default::default()
                };
                let call = self.pets().create_pet(self.grpc_request(request));
                grpc(within("CreatePet", call).await).map(PetView::from_pb)
            }
            Api::Mcp => self.mcp("create_pet", pet.clone()).await.map(|v| PetView::from_json(&v)),
        }
    }

    async fn get_pet(&self, api: Api, id: &str) -> Outcome<PetView> {
        match api {
            Api::Rest => self.rest(Method::GET, &format!("/v1/pets/{id}"), None).await.map(|v| PetView::from_json(&v)),
            Api::GraphQl => {
                let q = format!("query($id: ID!) {{ pet(id: $id) {{ {PET} }} }}");
                self.graphql(&q, json!({ "id": id }), "pet").await.map(graphql_pet)
            }
            Api::Grpc => {
                let call = self.pets().get_pet(self.grpc_request(pb::GetPetRequest { id: id.to_owned() }));
                grpc(within("GetPet", call).await).map(PetView::from_pb)
            }
            Api::Mcp => self.mcp("get_pet", json!({ "id": id })).await.map(|v| PetView::from_json(&v)),
        }
    }

    /// Renames the pet and sets its age.
    async fn update_pet(&self, api: Api, id: &str, name: &str, age: u32) -> Outcome<PetView> {
        let changes = json!({ "name": name, "age": age });
        match api {
            Api::Rest => self
                .rest(Method::PATCH, &format!("/v1/pets/{id}"), Some(changes))
                .await
                .map(|v| PetView::from_json(&v)),
            Api::GraphQl => {
                let q = format!(
                    "mutation($id: ID!, $input: PetPatchInput!) {{ updatePet(id: $id, input: $input) {{ {PET} }} }}"
                );
                self.graphql(&q, json!({ "id": id, "input": changes }), "updatePet").await.map(graphql_pet)
            }
            Api::Grpc => {
                // Without a field mask, the fields set to a non-default value apply.
                let pet = pb::Pet { id: id.to_owned(), name: name.to_owned(), age: Some(age), ..Default::default() };
                let request = pb::UpdatePetRequest { pet: Some(pet), update_mask: None, expected_version: None };
                let call = self.pets().update_pet(self.grpc_request(request));
                grpc(within("UpdatePet", call).await).map(PetView::from_pb)
            }
            Api::Mcp => self
                .mcp("update_pet", json!({ "id": id, "changes": changes }))
                .await
                .map(|v| PetView::from_json(&v)),
        }
    }

    async fn delete_pet(&self, api: Api, id: &str) -> Outcome<()> {
        match api {
            Api::Rest => self.rest(Method::DELETE, &format!("/v1/pets/{id}"), None).await.map(|v| {
                assert_eq!(v, Value::Null, "DELETE answers 204 without a body");
            }),
            Api::GraphQl => self
                .graphql("mutation($id: ID!) { deletePet(id: $id) }", json!({ "id": id }), "deletePet")
                .await
                .map(|v| assert_eq!(v, json!(id))),
            Api::Grpc => {
                let call = self.pets().delete_pet(self.grpc_request(pb::DeletePetRequest {
                    id: id.to_owned(),
                    expected_version: None,
                }));
                grpc(within("DeletePet", call).await).map(|_| ())
            }
            Api::Mcp => self.mcp("delete_pet", json!({ "id": id })).await.map(|v| assert_eq!(v, json!({ "id": id }))),
        }
    }

    async fn place_order(&self, api: Api, pet_id: &str) -> Outcome<OrderView> {
        match api {
            Api::Rest => self
                .rest(Method::POST, "/v1/orders", Some(json!({ "pet_id": pet_id, "quantity": 1 })))
                .await
                .map(|v| OrderView::from_json(&v)),
            Api::GraphQl => {
                let q = format!("mutation($petId: ID!) {{ placeOrder(petId: $petId) {{ order {{ {ORDER} }} replayed }} }}");
                self.graphql(&q, json!({ "petId": pet_id }), "placeOrder").await.map(|v| {
                    assert_eq!(v["replayed"], false);
                    graphql_order(v["order"].clone())
                })
            }
            Api::Grpc => {
                let request = pb::PlaceOrderRequest { pet_id: pet_id.to_owned(), quantity: Some(1) };
                let call = self.orders().place_order(self.grpc_request(request));
                grpc(within("PlaceOrder", call).await).map(OrderView::from_pb)
            }
            Api::Mcp => self.mcp("place_order", json!({ "pet_id": pet_id })).await.map(|v| {
                assert_eq!(v["replayed"], false);
                OrderView::from_json(&v["order"])
            }),
        }
    }

    async fn get_order(&self, api: Api, id: &str) -> Outcome<OrderView> {
        match api {
            Api::Rest => self.rest(Method::GET, &format!("/v1/orders/{id}"), None).await.map(|v| OrderView::from_json(&v)),
            Api::GraphQl => {
                let q = format!("query($id: ID!) {{ order(id: $id) {{ {ORDER} }} }}");
                self.graphql(&q, json!({ "id": id }), "order").await.map(graphql_order)
            }
            Api::Grpc => {
                let call = self.orders().get_order(self.grpc_request(pb::GetOrderRequest { id: id.to_owned() }));
                grpc(within("GetOrder", call).await).map(OrderView::from_pb)
            }
            Api::Mcp => self.mcp("get_order", json!({ "id": id })).await.map(|v| OrderView::from_json(&v)),
        }
    }

    /// Pays with a card token; the payment's status (`succeeded`, `failed`).
    async fn pay_order(&self, api: Api, id: &str, token: &str) -> Outcome<String> {
        match api {
            Api::Rest => {
                let path = format!("/v1/orders/{id}/payment");
                let (status, content_type, body) = self.rest_raw(Method::POST, &path, Some(json!({ "token": token }))).await;
                match status.as_u16() {
                    201 => Ok(body["status"].as_str().unwrap().to_owned()),
                    // REST alone answers a declined card with an error status (402
                    // problem+json carrying the failed payment); the payment is recorded.
                    402 => {
                        assert!(content_type.starts_with("application/problem+json"), "{content_type}");
                        assert_eq!(body["code"], "payment_declined", "{body}");
                        Ok(body["payment"]["status"].as_str().unwrap_or_else(|| panic!("402 carries the payment: {body}")).to_owned())
                    }
                    _ => Err(rest_refusal(status, &content_type, &body)),
                }
            }
            Api::GraphQl => self
                .graphql(
                    "mutation($id: ID!, $token: String!) { payOrder(id: $id, token: $token) { status } }",
                    json!({ "id": id, "token": token }),
                    "payOrder",
                )
                .await
                .map(|mut v| {
                    graphql_enum(&mut v, "status");
                    v["status"].as_str().unwrap().to_owned()
                }),
            Api::Grpc => {
                let request = pb::PayOrderRequest { id: id.to_owned(), payment_token: Some(token.to_owned()) };
                let call = self.orders().pay_order(self.grpc_request(request));
                grpc(within("PayOrder", call).await).map(|p| proto_enum(p.status().as_str_name(), "PAYMENT_STATUS_"))
            }
            Api::Mcp => self
                .mcp("pay_order", json!({ "id": id, "token": token }))
                .await
                .map(|v| v["status"].as_str().unwrap().to_owned()),
        }
    }

    async fn cancel_order(&self, api: Api, id: &str) -> Outcome<OrderView> {
        match api {
            Api::Rest => self
                .rest(Method::POST, &format!("/v1/orders/{id}/cancel"), None)
                .await
                .map(|v| OrderView::from_json(&v)),
            Api::GraphQl => {
                let q = format!("mutation($id: ID!) {{ cancelOrder(id: $id) {{ {ORDER} }} }}");
                self.graphql(&q, json!({ "id": id }), "cancelOrder").await.map(graphql_order)
            }
            Api::Grpc => {
                let call = self.orders().cancel_order(self.grpc_request(pb::CancelOrderRequest { id: id.to_owned() }));
                grpc(within("CancelOrder", call).await).map(OrderView::from_pb)
            }
            Api::Mcp => self.mcp("cancel_order", json!({ "id": id })).await.map(|v| OrderView::from_json(&v)),
        }
    }
}

async fn mcp_connect(s: &RunningServer, token: Option<&str>) -> Result<Mcp, String> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", s.http_url()));
    if let Some(token) = token {
        config = config.auth_header(token.to_owned());
    }
    within("MCP connection", ClientInfo::default().serve(StreamableHttpClientTransport::from_config(config)))
        .await
        .map_err(|e| e.to_string())
}

fn graphql_pet(mut v: Value) -> PetView {
    graphql_enum(&mut v, "status");
    PetView::from_json(&v)
}

fn graphql_order(mut v: Value) -> OrderView {
    graphql_enum(&mut v, "status");
    OrderView::from_json(&v)
}

// ----- each protocol's errors, read in its own terms ---------------------------------

/// RFC 9457 problem+json: the HTTP status gives the kind; `code` and `errors` agree.
fn rest_refusal(status: StatusCode, content_type: &str, body: &Value) -> Refusal {
    let wire = format!("HTTP {status} {content_type} {body}");
    assert!(content_type.starts_with("application/problem+json"), "not a problem: {wire}");
    assert_eq!(body["status"], status.as_u16(), "problem `status`: {wire}");
    let kind = match status.as_u16() {
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        412 => ErrorKind::PreconditionFailed,
        422 => ErrorKind::InvalidInput,
        _ => panic!("unexpected REST status: {wire}"),
    };
    assert_eq!(body["code"], kind.code(), "problem `code` agrees with the status: {wire}");
    let fields = body["errors"]
        .as_array()
        .map(|errors| errors.iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    Refusal { kind, fields, wire }
}

/// `errors[0].extensions.code`, and `extensions.fields` for `BAD_USER_INPUT`.
fn graphql_refusal(status: u16, body: &Value) -> Refusal {
    let wire = format!("HTTP {status} {body}");
    let error = &body["errors"][0];
    let kind = match error["extensions"]["code"].as_str() {
        Some("BAD_USER_INPUT") => ErrorKind::InvalidInput,
        Some("NOT_FOUND") => ErrorKind::NotFound,
        Some("CONFLICT") => ErrorKind::Conflict,
        Some("PRECONDITION_FAILED") => ErrorKind::PreconditionFailed,
        Some("UNAUTHENTICATED") => ErrorKind::Unauthenticated,
        Some("FORBIDDEN") => ErrorKind::Forbidden,
        _ => panic!("unexpected GraphQL error: {wire}"),
    };
    let fields = error["extensions"]["fields"]
        .as_array()
        .map(|f| f.iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    Refusal { kind, fields, wire }
}

/// The status code gives the kind; `ErrorInfo.reason` agrees; `BadRequest` names the fields.
fn grpc<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Outcome<T> {
    let status = match result {
        Ok(response) => return Ok(response.into_inner()),
        Err(status) => status,
    };
    let wire = format!("{:?}: {}", status.code(), status.message());
    let kind = match status.code() {
        Code::InvalidArgument => ErrorKind::InvalidInput,
        Code::NotFound => ErrorKind::NotFound,
        Code::FailedPrecondition => ErrorKind::Conflict,
        Code::Aborted => ErrorKind::PreconditionFailed,
        Code::Unauthenticated => ErrorKind::Unauthenticated,
        Code::PermissionDenied => ErrorKind::Forbidden,
        _ => panic!("unexpected gRPC status: {wire}"),
    };
    let info = status.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo in {wire}"));
    assert_eq!(info.reason, kind.code().to_uppercase(), "ErrorInfo reason of {wire}");
    let fields = status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    Refusal { kind, fields, wire }
}

/// A tool error `"{code}: {message}"`; fields appear as `` invalid `x` `` or `` - `x`: ``.
fn mcp_refusal(text: &str) -> Refusal {
    let code = text.split_once(':').map_or(text, |(code, _)| code);
    let kind: ErrorKind = serde_json::from_value(json!(code))
        .unwrap_or_else(|_| panic!("MCP tool error without a core code: {text:?}"));
    let pieces: Vec<&str> = text.split('`').collect();
    let fields = pieces
        .iter()
        .enumerate()
        .skip(1)
        .step_by(2)
        .filter(|(i, _)| pieces[i - 1].ends_with("- ") || pieces[i - 1].ends_with("invalid "))
        .map(|(_, f)| (*f).to_owned())
        .collect();
    Refusal { kind, fields, wire: format!("isError: {text:?}") }
}

// ----- shared fixtures --------------------------------------------------------------

fn system() -> Principal {
    Principal::system("conformance")
}

fn new_pet(name: &str) -> Value {
    json!({
        "name": name,
        "species": "dog",
        "breed": "Beagle",
        "age": 3,
        "tags": ["Friendly", "small"],
        "price": { "amount": "12.50", "currency": "USD" },
    })
}

async fn core_pet(s: &RunningServer, name: &str) -> Pet {
    let new: NewPet = serde_json::from_value(new_pet(name)).unwrap();
    s.store.create_pet(&system(), new).await.unwrap()
}

async fn pet_count(s: &RunningServer) -> usize {
    s.store.pets(&system(), &PetQuery::default().limit(100)).await.unwrap().data.len()
}

fn ws_url(s: &RunningServer, path: &str) -> String {
    format!("ws://{}{path}", s.http_addr)
}

// ----- 1. pet CRUD ------------------------------------------------------------------

/// Each protocol creates, reads, updates and deletes its own pet; every protocol sees
/// the same pet at each step, the one the core holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pet_crud_is_the_same_in_every_protocol() {
    let s = start().await;
    let w = Wire::connect(&s, Some(&s.dev_token)).await;
    let mut found = Findings::default();
    for api in APIS {
        let name = format!("Crud {api:?}");
        let created = w
            .create_pet(api, &new_pet(&name))
            .await
            .unwrap_or_else(|e| panic!("{api:?} creates a pet: {}", e.wire));
        let id: PetId = created.id.parse().unwrap();
        let stored = PetView::from_core(&s.store.pet(&system(), &id).await.unwrap());
        found.same(format!("{api:?} created, as the core holds it"), &created, &stored);
        found.same(
            format!("{api:?} created: fields"),
            (created.name.as_str(), created.species.as_str(), created.breed.as_deref(), created.age),
            (name.as_str(), "dog", Some("Beagle"), Some(3)),
        );
        found.same(
            format!("{api:?} created: status, tags, price, version"),
            (created.status.as_str(), created.tags.clone(), created.price.as_str(), created.version),
            ("available", vec!["friendly".to_owned(), "small".to_owned()], "12.50 USD", 1),
        );
        for reader in APIS {
            match w.get_pet(reader, &created.id).await {
                Ok(read) => found.same(format!("created by {api:?}, read by {reader:?}"), &read, &stored),
                Err(e) => found.0.push(format!("created by {api:?}, read by {reader:?}: {}", e.wire)),
            }
        }

        let renamed = format!("{name} Junior");
        let updated = w
            .update_pet(api, &created.id, &renamed, 4)
            .await
            .unwrap_or_else(|e| panic!("{api:?} updates its pet: {}", e.wire));
        let stored = PetView::from_core(&s.store.pet(&system(), &id).await.unwrap());
        found.same(format!("{api:?} updated, as the core holds it"), &updated, &stored);
        found.same(
            format!("{api:?} updated: name, age, version; the rest kept"),
            (updated.name.as_str(), updated.age, updated.version, updated.price.as_str(), updated.breed.as_deref()),
            (renamed.as_str(), Some(4), 2, "12.50 USD", Some("Beagle")),
        );
        for reader in APIS {
            match w.get_pet(reader, &created.id).await {
                Ok(read) => found.same(format!("updated by {api:?}, read by {reader:?}"), &read, &stored),
                Err(e) => found.0.push(format!("updated by {api:?}, read by {reader:?}: {}", e.wire)),
            }
        }

        w.delete_pet(api, &created.id)
            .await
            .unwrap_or_else(|e| panic!("{api:?} deletes its pet: {}", e.wire));
        found.check(s.store.pet(&system(), &id).await.is_err(), format!("{api:?} deleted: the core still has it"));
        for reader in APIS {
            match w.get_pet(reader, &created.id).await {
                Ok(read) => found.0.push(format!("deleted by {api:?}, still read by {reader:?}: {read:?}")),
                Err(e) => found.same(
                    format!("deleted by {api:?}, read by {reader:?} ({})", e.wire),
                    e.meaning(),
                    (ErrorKind::NotFound, BTreeSet::new()),
                ),
            }
        }
    }
    w.close().await;
    found.finish();
    s.shutdown().await.unwrap();
}

// ----- 2. order state machine -------------------------------------------------------

/// Place (the pet becomes pending), a second order refused as a conflict, a declined
/// card (the order stays placed), pay (approved), cancel (the pet is available again):
/// the same transitions in every protocol, and every protocol reads the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_state_machine_is_the_same_in_every_protocol() {
    let s = start().await;
    let w = Wire::connect(&s, Some(&s.dev_token)).await;
    let mut found = Findings::default();
    for api in APIS {
        let pet = core_pet(&s, &format!("Order {api:?}")).await;
        let pet_id = pet.id.to_string();
        let status_of_pet = |view: Outcome<PetView>| view.map(|p| p.status).unwrap_or_else(|e| e.wire);

        let order = w
            .place_order(api, &pet_id)
            .await
            .unwrap_or_else(|e| panic!("{api:?} places an order: {}", e.wire));
        found.same(
            format!("{api:?} placed order"),
            (order.pet_id.as_str(), order.quantity, order.total.as_str(), order.status.as_str(), order.customer.as_str()),
            (pet_id.as_str(), 1, "12.50 USD", "placed", "developer"),
        );
        found.same(format!("{api:?}: the ordered pet"), status_of_pet(w.get_pet(api, &pet_id).await), "pending".into());

        let head = s.store.head().await.unwrap();
        match w.place_order(api, &pet_id).await {
            Ok(again) => found.0.push(format!("{api:?}: a second order on a pending pet was placed: {again:?}")),
            Err(e) => found.same(
                format!("{api:?}: second order on the same pet ({})", e.wire),
                e.meaning(),
                (ErrorKind::Conflict, BTreeSet::new()),
            ),
        }
        found.same(format!("{api:?}: log head after the refused order"), s.store.head().await.unwrap(), head);

        let declined = w.pay_order(api, &order.id, "tok_declined").await.map_err(|e| e.wire);
        found.same(format!("{api:?}: declined payment"), declined, Ok("failed".to_owned()));
        let still = w.get_order(api, &order.id).await.map(|o| o.status).map_err(|e| e.wire);
        found.same(format!("{api:?}: order after a declined card"), still, Ok("placed".to_owned()));

        let paid = w.pay_order(api, &order.id, "tok_visa").await.map_err(|e| e.wire);
        found.same(format!("{api:?}: payment"), paid, Ok("succeeded".to_owned()));
        let approved = w.get_order(api, &order.id).await.map(|o| o.status).map_err(|e| e.wire);
        found.same(format!("{api:?}: order after payment"), approved, Ok("approved".to_owned()));
        match w.pay_order(api, &order.id, "tok_visa").await {
            Ok(twice) => found.0.push(format!("{api:?}: an approved order was paid again: {twice}")),
            Err(e) => found.same(
                format!("{api:?}: paying an approved order ({})", e.wire),
                e.meaning(),
                (ErrorKind::Conflict, BTreeSet::new()),
            ),
        }

        let cancelled = w
            .cancel_order(api, &order.id)
            .await
            .unwrap_or_else(|e| panic!("{api:?} cancels: {}", e.wire));
        found.same(format!("{api:?}: cancelled order status"), cancelled.status.as_str(), "cancelled");
        found.same(format!("{api:?}: the pet after cancelling"), status_of_pet(w.get_pet(api, &pet_id).await), "available".into());
        match w.cancel_order(api, &order.id).await {
            Ok(twice) => found.0.push(format!("{api:?}: a cancelled order was cancelled again: {twice:?}")),
            Err(e) => found.same(
                format!("{api:?}: cancelling a cancelled order ({})", e.wire),
                e.meaning(),
                (ErrorKind::Conflict, BTreeSet::new()),
            ),
        }

        // Every protocol reads the same order.
        for reader in APIS {
            let read = w.get_order(reader, &order.id).await.map_err(|e| e.wire);
            found.same(format!("order of {api:?} read by {reader:?}"), read, Ok(cancelled.clone()));
        }
    }
    w.close().await;
    found.finish();
    s.shutdown().await.unwrap();
}

// ----- 3. invalid input -------------------------------------------------------------

/// An empty name and a negative price: REST 422 problem+json, gRPC INVALID_ARGUMENT
/// with BadRequest, GraphQL BAD_USER_INPUT, MCP a tool error, each naming `name` and
/// `price.amount`; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_invalid_input_is_refused_everywhere_naming_the_same_fields() {
    let s = start().await;
    let w = Wire::connect(&s, Some(&s.dev_token)).await;
    let bad = json!({ "name": "", "species": "dog", "price": { "amount": "-1.00", "currency": "USD" } });
    let (count, head) = (pet_count(&s).await, s.store.head().await.unwrap());
    let want = (ErrorKind::InvalidInput, BTreeSet::from(["name".to_owned(), "price.amount".to_owned()]));

    let mut found = Findings::default();
    for api in APIS {
        match w.create_pet(api, &bad).await {
            Ok(pet) => found.0.push(format!("{api:?} created an invalid pet: {pet:?}")),
            Err(e) => found.same(format!("{api:?} ({})", e.wire), e.meaning(), want.clone()),
        }
    }
    // The same rule on a change: an empty name.
    found.same("pets after the refused creations", pet_count(&s).await, count);
    found.same("log head after the refused creations", s.store.head().await.unwrap(), head);
    let pet = core_pet(&s, "Valid").await;
    let (count, head) = (count + 1, s.store.head().await.unwrap());
    for api in APIS {
        match w.update_pet(api, pet.id.as_str(), "", 4).await {
            Ok(pet) => found.0.push(format!("{api:?} accepted an empty name: {pet:?}")),
            Err(e) => found.same(
                format!("{api:?} update ({})", e.wire),
                e.meaning(),
                (ErrorKind::InvalidInput, BTreeSet::from(["name".to_owned()])),
            ),
        }
    }
    found.same("pets after the refusals", pet_count(&s).await, count);
    found.same("log head after the refusals", s.store.head().await.unwrap(), head);
    found.same("the pet after refused changes", s.store.pet(&system(), &pet.id).await.unwrap(), pet);
    w.close().await;
    found.finish();
    s.shutdown().await.unwrap();
}

// ----- 4. missing and insufficient credentials --------------------------------------

/// No token, a forged token and a token with only `pets:read`, on a write: REST
/// 401/403, gRPC UNAUTHENTICATED/PERMISSION_DENIED, GraphQL UNAUTHENTICATED/FORBIDDEN,
/// MCP a tool error (HTTP 401 for a forged token), WebSocket `chat.send` an error
/// frame (handshake 401 for a forged token); nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_missing_or_insufficient_token_is_refused_everywhere() {
    let s = start().await;
    let reader = s.store.tokens().issue("reader", [Scope::PetsRead]).unwrap().access_token;
    let forged = TokenAuthority::random(Duration::from_secs(600))
        .issue("mallory", Scope::ALL)
        .unwrap()
        .access_token;
    let (count, head) = (pet_count(&s).await, s.store.head().await.unwrap());
    let mut found = Findings::default();

    let cases = [
        ("no token", None, ErrorKind::Unauthenticated),
        ("forged token", Some(forged.as_str()), ErrorKind::Unauthenticated),
        ("pets:read token", Some(reader.as_str()), ErrorKind::Forbidden),
    ];
    for (case, token, want) in cases {
        let w = if token == Some(forged.as_str()) {
            Wire::without_mcp(&s, token).await
        } else {
            Wire::connect(&s, token).await
        };
        for api in APIS {
            if api == Api::Mcp && w.mcp.is_none() {
                continue;
            }
            match w.create_pet(api, &new_pet("Intruder")).await {
                Ok(pet) => found.0.push(format!("{case}: {api:?} created {pet:?}")),
                Err(e) => found.same(format!("{case}: {api:?} ({})", e.wire), e.meaning(), (want, BTreeSet::new())),
            }
        }
        w.close().await;
    }

    // MCP refuses a forged token at the HTTP layer, before any session.
    match mcp_connect(&s, Some(&forged)).await {
        Ok(_) => found.0.push("forged token: the MCP client connected".into()),
        Err(e) => found.check(e.contains("401") || e.to_lowercase().contains("unauthorized"), format!("forged token: MCP connect error {e}")),
    }
    let raw = reqwest::Client::new()
        .post(format!("{}/mcp", s.http_url()))
        .bearer_auth(&forged)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    found.same("forged token: MCP HTTP status", raw.status().as_u16(), 401);
    found.check(
        raw.headers().get("www-authenticate").is_some_and(|v| v.to_str().unwrap_or("").starts_with("Bearer")),
        format!("forged token: MCP 401 has WWW-Authenticate: Bearer ({:?})", raw.headers()),
    );

    // WebSocket: `chat.send` is the write.
    let chat = json!({ "type": "chat.send", "id": 7, "room": "support", "text": "let me in" });
    for (case, query, want) in [("no token", String::new(), "unauthenticated"), ("pets:read token", format!("?token={reader}"), "forbidden")] {
        let mut ws = ws_open(&ws_url(&s, &format!("/v1/ws{query}"))).await;
        ws_send(&mut ws, &chat).await;
        let frame = ws_next(&mut ws, |f| f["type"] != "pong").await;
        found.same(format!("{case}: WebSocket chat.send ({frame})"), (frame["type"].as_str(), frame["code"].as_str(), frame["id"].as_u64()), (Some("error"), Some(want), Some(7)));
    }
    match tokio_tungstenite::connect_async(ws_url(&s, &format!("/v1/ws?token={forged}"))).await {
        Err(tungstenite::Error::Http(response)) => found.same("forged token: WebSocket handshake", response.status().as_u16(), 401),
        other => found.0.push(format!("forged token: WebSocket handshake was not refused with 401: {:?}", other.map(|(_, r)| r.status()))),
    }
    // ...and a forged first-frame `auth` is an error frame; the socket stays anonymous.
    let mut ws = ws_open(&ws_url(&s, "/v1/ws")).await;
    ws_send(&mut ws, &json!({ "type": "auth", "id": 1, "token": forged })).await;
    let frame = ws_next(&mut ws, |f| f["type"] != "pong").await;
    found.same(format!("forged token: WebSocket auth frame ({frame})"), (frame["type"].as_str(), frame["code"].as_str()), (Some("error"), Some("unauthenticated")));
    ws_send(&mut ws, &chat).await;
    let frame = ws_next(&mut ws, |f| f["type"] != "pong").await;
    found.same(format!("forged token: WebSocket chat.send after it ({frame})"), frame["code"].as_str(), Some("unauthenticated"));

    found.same("pets after the refusals", pet_count(&s).await, count);
    found.same("log head after the refusals", s.store.head().await.unwrap(), head);
    found.finish();
    s.shutdown().await.unwrap();
}

// ----- 5. one event on every channel ------------------------------------------------

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_open(url: &str) -> Ws {
    let (ws, response) = within(url, tokio_tungstenite::connect_async(url))
        .await
        .unwrap_or_else(|e| panic!("WebSocket {url}: {e}"));
    assert_eq!(response.status(), 101);
    ws
}

async fn ws_send(ws: &mut Ws, frame: &Value) {
    ws.send(Message::text(frame.to_string())).await.expect("WebSocket send");
}

/// The next JSON text frame for which `wanted` holds (others, and pings, skipped).
async fn ws_next(ws: &mut Ws, wanted: impl Fn(&Value) -> bool) -> Value {
    within("a WebSocket frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    if wanted(&frame) {
                        return frame;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("WebSocket ended or sent a non-text frame: {other:?}"),
            }
        }
    })
    .await
}

/// What one channel delivered: the event envelope as JSON.
type Delivery = Pin<Box<dyn Future<Output = (&'static str, Value)> + Send>>;

/// The envelope with `time` in one spelling and `data` as JSON (not JSON text), so
/// that envelopes from every channel compare equal.
fn canonical(mut envelope: Value) -> Value {
    let t = time(&envelope["time"]);
    envelope["time"] = json!(t.to_rfc3339_opts(SecondsFormat::Nanos, true));
    if let Some(text) = envelope["data"].as_str() {
        envelope["data"] = serde_json::from_str(text).expect("`data` is JSON text");
    }
    envelope
}

/// GraphQL subscription `events` over graphql-transport-ws, from `since`.
async fn graphql_events(s: &RunningServer, since: &str) -> Delivery {
    let mut request = ws_url(s, "/graphql").into_client_request().unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut ws, _) = within("GraphQL WebSocket", tokio_tungstenite::connect_async(request)).await.expect("GraphQL WebSocket");
    ws_send(&mut ws, &json!({ "type": "connection_init", "payload": {} })).await;
    let ack = ws_next(&mut ws, |f| !matches!(f["type"].as_str(), Some("ping" | "pong"))).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let query = "subscription($since: String) { events(types: [\"order.created\"], since: $since) \
                 { id type source time subject offset data specversion datacontenttype } }";
    ws_send(&mut ws, &json!({ "type": "subscribe", "id": "1", "payload": { "query": query, "variables": { "since": since } } })).await;
    Box::pin(async move {
        let frame = ws_next(&mut ws, |f| !matches!(f["type"].as_str(), Some("ping" | "pong"))).await;
        assert_eq!(frame["type"], "next", "{frame}");
        ("GraphQL subscription", frame["payload"]["data"]["events"].clone())
    })
}

/// gRPC `WatchOrders` from `since`.
async fn grpc_watch(s: &RunningServer, since: &str) -> Delivery {
    let w = Wire::without_mcp(s, None).await;
    let request = pb::WatchOrdersRequest { since: Some(since.to_owned()), order_id: None, types: vec!["order.created".into()] };
    let mut stream = within("WatchOrders", w.orders().watch_orders(request)).await.expect("WatchOrders").into_inner();
    Box::pin(async move {
        let e = within("a WatchOrders event", stream.message()).await.expect("stream").expect("an event");
        let order = match &e.payload {
            Some(pb::event::Payload::Order(o)) => o.id.clone(),
            other => panic!("order.created carries the order: {other:?}"),
        };
        assert_eq!(order, e.subject);
        let time = e.time.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos as u32)).expect("time");
        let envelope = json!({
            "id": e.id, "type": e.r#type, "source": e.source, "time": time.to_rfc3339(), "subject": e.subject,
            "offset": e.offset, "data": e.data, "specversion": e.specversion, "datacontenttype": e.datacontenttype,
        });
        ("gRPC WatchOrders", envelope)
    })
}

/// SSE `/v1/stream/orders`, resuming after `since`.
async fn sse(s: &RunningServer, since: &str) -> Delivery {
    let response = within(
        "SSE response",
        reqwest::Client::new().get(format!("{}/v1/stream/orders", s.http_url())).header("last-event-id", since).send(),
    )
    .await
    .expect("SSE request");
    assert_eq!(response.status(), 200, "SSE /v1/stream/orders");
    let mut events = response.bytes_stream().eventsource();
    Box::pin(async move {
        loop {
            let message = within("an SSE event", events.next()).await.expect("SSE stream goes on").expect("SSE event");
            if message.event == "order.created" {
                let envelope: Value = serde_json::from_str(&message.data).expect("SSE data is the envelope");
                assert_eq!(Some(message.id.as_str()), envelope["offset"].as_str(), "SSE id is the offset");
                return ("SSE", envelope);
            }
        }
    })
}

/// WebSocket `subscribe` to `orders` from `since`, confirmed by `subscribed`.
async fn websocket(s: &RunningServer, since: &str) -> Delivery {
    let mut ws = ws_open(&ws_url(s, "/v1/ws")).await;
    ws_send(&mut ws, &json!({ "type": "subscribe", "channel": "orders", "since": since })).await;
    let subscribed = ws_next(&mut ws, |f| f["type"] != "pong").await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["position"], since, "{subscribed}");
    Box::pin(async move {
        let frame = ws_next(&mut ws, |f| f["type"] == "event" && f["event"]["type"] == "order.created").await;
        assert_eq!(frame["channel"], "orders", "{frame}");
        ("WebSocket", frame["event"].clone())
    })
}

/// MQTT `petstore/orders/new`, live once the SUBACK is in.
async fn mqtt(s: &RunningServer) -> Delivery {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let addr = s.mqtt_addr.expect("the example server runs an MQTT broker");
    let id = format!("conformance-{}-{}", std::process::id(), addr.port());
    let (client, mut eventloop) = AsyncClient::new(MqttOptions::new(id, addr.ip().to_string(), addr.port()), 16);
    client.subscribe("petstore/orders/new", QoS::AtLeastOnce).await.unwrap();
    within("MQTT SUBACK", async {
        loop {
            match eventloop.poll().await.expect("MQTT connection") {
                Event::Incoming(Packet::SubAck(_)) => break,
                _ => continue,
            }
        }
    })
    .await;
    Box::pin(async move {
        let _client = client;
        within("an MQTT message", async {
            loop {
                if let Event::Incoming(Packet::Publish(p)) = eventloop.poll().await.expect("MQTT connection") {
                    let envelope: Value = serde_json::from_slice(&p.payload).expect("MQTT payload is the envelope");
                    return ("MQTT", envelope);
                }
            }
        })
        .await
    })
}

/// A webhook endpoint for `order.created`, registered with the admin token; its
/// deliveries are verified against the endpoint's secret.
async fn webhook(s: &RunningServer) -> Delivery {
    type Received = mpsc::UnboundedSender<(HeaderMap, Bytes)>;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let receiver = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(|State(tx): State<Received>, headers: HeaderMap, body: Bytes| async move {
                let _ = tx.send((headers, body));
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });
    let response = reqwest::Client::new()
        .post(format!("{}/v1/webhooks", s.http_url()))
        .bearer_auth(&s.dev_token)
        .json(&json!({ "url": url, "events": ["order.created"] }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    assert_eq!(status, 201, "registering a loopback webhook endpoint (dev mode must allow loopback): {body}");
    let secret: petstore_webhooks::WebhookSecret = body["secret"].as_str().expect("the new endpoint's secret").parse().unwrap();
    Box::pin(async move {
        let (headers, body) = within("a webhook delivery", rx.recv()).await.expect("receiver runs");
        server.abort();
        let verified = secret.verify(&headers, &body, Duration::from_secs(300)).expect("a valid Standard Webhooks signature");
        let mut envelope: Value = serde_json::from_slice(&body).expect("JSON body");
        assert_eq!(envelope["id"].as_str(), Some(verified.id.as_str()), "webhook-id is the event id");
        assert!(envelope["timestamp"].is_string(), "Standard Webhooks `timestamp`: {envelope}");
        envelope.as_object_mut().unwrap().remove("timestamp");
        ("webhook", envelope)
    })
}

/// One order, placed once: every push channel (subscribed from the same head, or
/// confirmed live before it) and every pull channel delivers the same `order.created`
/// envelope, with the same `id` and `offset`, as the core's log holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_reaches_every_channel_with_the_same_id_and_offset() {
    let s = start().await;
    let pet = core_pet(&s, "Broadcast").await;
    // Every channel starts from this position (or is live before the order).
    let head: ResumeToken = s.store.head().await.unwrap();
    let since_order = head.to_string();

    let channels = vec![
        sse(&s, &since_order).await,
        websocket(&s, &since_order).await,
        graphql_events(&s, &since_order).await,
        grpc_watch(&s, &since_order).await,
        mqtt(&s).await,
        webhook(&s).await,
    ];

    let w = Wire::connect(&s, Some(&s.dev_token)).await;
    let order = w.place_order(Api::Rest, pet.id.as_str()).await.unwrap_or_else(|e| panic!("order: {}", e.wire));

    let mut seen: Vec<(&str, Value)> = futures_util::future::join_all(channels).await;
    // Pull channels, from the same position.
    let polled = w
        .rest(Method::GET, &format!("/v1/events?since={since_order}&types=order.created"), None)
        .await
        .unwrap_or_else(|e| panic!("polling: {}", e.wire));
    seen.push(("REST polling", polled["events"][0].clone()));
    let recent = w
        .mcp("recent_events", json!({ "since": since_order, "types": ["order.created"] }))
        .await
        .unwrap_or_else(|e| panic!("recent_events: {}", e.wire));
    seen.push(("MCP recent_events", recent["events"][0].clone()));
    let q = "query($since: String) { events(types: [\"order.created\"], since: $since) \
             { events { id type source time subject offset data specversion datacontenttype } } }";
    let page = w.graphql(q, json!({ "since": since_order }), "events").await.unwrap_or_else(|e| panic!("{}", e.wire));
    seen.push(("GraphQL events query", page["events"][0].clone()));
    w.close().await;

    // The truth: the core's log.
    let filter = EventFilter::types(["order.created".parse::<TypePattern>().unwrap()]);
    let batch = s.store.events(&system(), Some(head), 10, filter, Duration::ZERO).await.unwrap();
    assert_eq!(batch.events.len(), 1, "one order.created in the log");
    let truth = canonical(serde_json::from_str(&batch.events[0].to_json()).unwrap());
    assert_eq!(truth["subject"], order.id.as_str());

    let mut found = Findings::default();
    for (channel, envelope) in seen {
        let envelope = canonical(envelope);
        found.same(
            format!("{channel}: id, offset, type, subject"),
            (&envelope["id"], &envelope["offset"], &envelope["type"], &envelope["subject"]),
            (&truth["id"], &truth["offset"], &truth["type"], &truth["subject"]),
        );
        found.same(format!("{channel}: whole envelope"), &envelope, &truth);
    }
    found.finish();
    s.shutdown().await.unwrap();
}
