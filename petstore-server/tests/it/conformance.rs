//! The cross-protocol conformance suite: the same scenarios through every protocol of
//! the server, each test on a server of its own.
//!
//! Every answer is first checked in its protocol's own terms (problem+json, gRPC
//! status details, GraphQL `extensions`, MCP `isError`, WebSocket error frames), then
//! reduced to a protocol-neutral value ([`PetView`], [`OrderView`], [`Refusal`], an
//! event envelope) and compared with the other protocols and with the core. The
//! comparisons are collected in [`Findings`] and reported together, so that one run
//! shows every difference between protocols, not just the first.

use std::collections::BTreeSet;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use pb::pet_service_client::PetServiceClient;
use pb::store_service_client::StoreServiceClient;
use petstore_core::chrono::{DateTime, SecondsFormat, Utc};
use petstore_core::{
    ErrorKind, EventFilter, NewOrder, NewPet, Pet, Principal, Scope, TokenAuthority,
};
use petstore_grpc::pb;
use petstore_server::RunningServer;
use reqwest::Method;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

use crate::support::mcp::{self, Mcp};
use crate::support::state::{snapshot, unchanged};
use crate::support::ws;
use crate::support::{grpc as grpc_client, mqtt as mqtt_client, serve, sse as sse_client};
use crate::support::{start, system, within};

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
    /// From the JSON of REST and MCP (GraphQL queries alias their fields to the same keys).
    fn json(v: Value) -> Self {
        Self {
            id: text(&v, "id"),
            name: text(&v, "name"),
            species: text(&v, "species"),
            breed: v["breed"].as_str().map(str::to_owned),
            age: v["age"].as_u64(),
            status: text(&v, "status"),
            tags: serde_json::from_value(v["tags"].clone()).expect("tags"),
            price: money(&v["price"]),
            version: v["version"].as_u64().expect("version"),
            updated_at: time(&v["updated_at"]),
        }
    }

    fn graphql(mut v: Value) -> Self {
        graphql_enum(&mut v, "status");
        Self::json(v)
    }

    fn pb(p: pb::Pet) -> Self {
        Self {
            status: proto_enum(p.status().as_str_name(), "PET_STATUS_"),
            id: p.id,
            name: p.name,
            species: p.species,
            breed: p.breed,
            age: p.age.map(u64::from),
            tags: p.tags,
            price: p
                .price
                .map(|m| format!("{} {}", m.amount, m.currency))
                .unwrap_or_default(),
            version: p.version,
            updated_at: p
                .updated_at
                .map(|t| timestamp(t.seconds, t.nanos))
                .expect("updated_at"),
        }
    }

    fn core(p: &Pet) -> Self {
        Self::json(serde_json::to_value(p).unwrap())
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
    fn json(v: Value) -> Self {
        Self {
            id: text(&v, "id"),
            pet_id: text(&v, "pet_id"),
            quantity: v["quantity"].as_u64().expect("quantity"),
            total: money(&v["total"]),
            status: text(&v, "status"),
            customer: text(&v, "customer"),
        }
    }

    fn graphql(mut v: Value) -> Self {
        graphql_enum(&mut v, "status");
        Self::json(v)
    }

    fn pb(o: pb::Order) -> Self {
        Self {
            status: proto_enum(o.status().as_str_name(), "ORDER_STATUS_"),
            id: o.id,
            pet_id: o.pet_id,
            quantity: o.quantity.into(),
            total: o
                .total
                .map(|m| format!("{} {}", m.amount, m.currency))
                .unwrap_or_default(),
            customer: o.customer,
        }
    }
}

fn text(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {v}"))
        .to_owned()
}

fn money(v: &Value) -> String {
    format!("{} {}", text(v, "amount"), text(v, "currency"))
}

fn time(v: &Value) -> DateTime<Utc> {
    let parsed = v
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
    parsed
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {v}"))
        .with_timezone(&Utc)
}

fn timestamp(seconds: i64, nanos: i32) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, nanos as u32).expect("a valid timestamp")
}

/// `PET_STATUS_AVAILABLE` -> `available`.
fn proto_enum(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{name} lacks {prefix}"))
        .to_lowercase()
}

/// A GraphQL enum value (`AVAILABLE`) as the JSON protocols spell it (`available`).
fn graphql_enum(v: &mut Value, key: &str) {
    let upper = text(v, key);
    assert_eq!(
        upper,
        upper.to_uppercase(),
        "GraphQL enums are upper case: {v}"
    );
    v[key] = json!(upper.to_lowercase());
}

/// Differences found while comparing protocols; the test fails at the end, listing all.
#[derive(Debug, Default)]
struct Findings(Vec<String>);

impl Findings {
    fn same<T: PartialEq + Debug>(&mut self, what: impl Display, got: T, want: T) {
        if got != want {
            self.0
                .push(format!("{what}:\n    got  {got:?}\n    want {want:?}"));
        }
    }

    /// `outcome` must be refused as `kind`, naming exactly `fields`.
    fn refused<T: Debug>(
        &mut self,
        what: impl Display,
        outcome: Outcome<T>,
        kind: ErrorKind,
        fields: &[&str],
    ) {
        let want = (
            kind,
            fields
                .iter()
                .map(|f| (*f).to_owned())
                .collect::<BTreeSet<_>>(),
        );
        match outcome {
            Ok(v) => self
                .0
                .push(format!("{what}: accepted ({v:?}), want {want:?}")),
            Err(e) => self.same(format!("{what} [{}]", e.wire), (e.kind, e.fields), want),
        }
    }

    /// `outcome` must succeed with `want`.
    fn answered<T: PartialEq + Debug>(&mut self, what: impl Display, outcome: Outcome<T>, want: T) {
        match outcome {
            Ok(got) => self.same(what, got, want),
            Err(e) => self
                .0
                .push(format!("{what}: refused [{}], want {want:?}", e.wire)),
        }
    }

    #[track_caller]
    fn finish(self) {
        let n = self.0.len();
        assert!(n == 0, "{n} difference(s):\n- {}", self.0.join("\n- "));
    }
}

// ----- one caller, every protocol -----------------------------------------------------

/// A caller holding one credential (or none), with a client for each protocol.
struct Wire {
    http: reqwest::Client,
    base: String,
    grpc: Channel,
    token: Option<String>,
    mcp: Option<Mcp>,
}

macro_rules! pet_fields {
    () => {
        "{ id name species breed age status tags price { amount currency } version updated_at: updatedAt }"
    };
}
macro_rules! order_fields {
    () => {
        "{ id pet_id: petId quantity total { amount currency } status customer }"
    };
}
const CREATE_PET: &str = concat!(
    "mutation($input: NewPetInput!) { createPet(input: $input) ",
    pet_fields!(),
    " }"
);
const GET_PET: &str = concat!("query($id: ID!) { pet(id: $id) ", pet_fields!(), " }");
const UPDATE_PET: &str = concat!(
    "mutation($id: ID!, $input: PetPatchInput!) { updatePet(id: $id, input: $input) ",
    pet_fields!(),
    " }"
);
const DELETE_PET: &str = "mutation($id: ID!) { deletePet(id: $id) }";
const PLACE_ORDER: &str = concat!(
    "mutation($petId: ID!) { placeOrder(petId: $petId) { replayed order ",
    order_fields!(),
    " } }"
);
const GET_ORDER: &str = concat!("query($id: ID!) { order(id: $id) ", order_fields!(), " }");
const PAY_ORDER: &str =
    "mutation($id: ID!, $token: String!) { payOrder(id: $id, token: $token) { status } }";
const CANCEL_ORDER: &str = concat!(
    "mutation($id: ID!) { cancelOrder(id: $id) ",
    order_fields!(),
    " }"
);
const ENVELOPE: &str = "{ id type source time subject offset data specversion datacontenttype }";

impl Wire {
    /// Every client, MCP included (which refuses a bad token when connecting).
    async fn connect(s: &RunningServer, token: Option<&str>) -> Self {
        let mut wire = Self::without_mcp(s, token).await;
        let mcp = mcp::connect(&s.http_url(), token).await;
        wire.mcp = Some(mcp.unwrap_or_else(|e| panic!("MCP client connects: {e}")));
        wire
    }

    async fn without_mcp(s: &RunningServer, token: Option<&str>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: s.http_url(),
            grpc: grpc_client::channel(s).await,
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

    /// Status, content type and JSON body (Null when empty).
    async fn rest_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = within(path, request.send()).await.expect("REST request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap());
        let content_type = content_type.unwrap_or_default().to_owned();
        let bytes = response.bytes().await.expect("REST body");
        let body = match bytes.is_empty() {
            true => Value::Null,
            false => serde_json::from_slice(&bytes).expect("a JSON body"),
        };
        (status, content_type, body)
    }

    async fn rest(&self, method: Method, path: &str, body: Option<Value>) -> Outcome<Value> {
        let (status, content_type, body) = self.rest_raw(method, path, body).await;
        match status {
            200..=299 => Ok(body),
            _ => Err(rest_refusal(status, &content_type, &body)),
        }
    }

    /// The value of the operation's one top-level field.
    async fn graphql(&self, query: &str, variables: Value) -> Outcome<Value> {
        let body = json!({ "query": query, "variables": variables });
        let mut request = self.http.post(format!("{}/graphql", self.base)).json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = within(query, request.send())
            .await
            .expect("GraphQL request");
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("GraphQL answers JSON");
        if body.get("errors").is_some() {
            return Err(graphql_refusal(status, &body));
        }
        assert_eq!(status, 200, "{body}");
        let data = body["data"].as_object().expect("data");
        Ok(data.values().next().expect("one field").clone())
    }

    fn authed<T>(&self, message: T) -> tonic::Request<T> {
        grpc_client::bearer(message, self.token.as_deref())
    }

    fn pets(&self) -> PetServiceClient<Channel> {
        PetServiceClient::new(self.grpc.clone())
    }

    fn orders(&self) -> StoreServiceClient<Channel> {
        StoreServiceClient::new(self.grpc.clone())
    }

    async fn mcp(&self, tool: &str, arguments: Value) -> Outcome<Value> {
        let client = self.mcp.as_ref().expect("this caller has an MCP client");
        let Value::Object(arguments) = arguments else {
            panic!("arguments are an object")
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let result = within(tool, client.call_tool(params))
            .await
            .unwrap_or_else(|e| panic!("MCP tools/call {tool} is a protocol error: {e}"));
        if result.is_error == Some(true) {
            let text = result.content.iter().filter_map(|c| c.as_text());
            let text: Vec<&str> = text.map(|t| t.text.as_str()).collect();
            return Err(mcp_refusal(&text.join("\n")));
        }
        Ok(result.structured_content.expect("structured content"))
    }

    // --- commands and queries

    async fn create_pet(&self, api: Api, pet: &Value) -> Outcome<PetView> {
        match api {
            Api::Rest => self
                .rest(Method::POST, "/v1/pets", Some(pet.clone()))
                .await
                .map(PetView::json),
            Api::GraphQl => self
                .graphql(CREATE_PET, json!({ "input": pet }))
                .await
                .map(PetView::graphql),
            Api::Grpc => {
                let text = |k: &str| pet[k].as_str().map(str::to_owned);
                let request = pb::CreatePetRequest {
                    name: text("name").unwrap_or_default(),
                    species: text("species").unwrap_or_default(),
                    breed: text("breed"),
                    age: pet["age"].as_u64().map(|a| a as u32),
                    tags: serde_json::from_value(pet["tags"].clone()).unwrap_or_default(),
                    price: Some(pb::Money {
                        amount: text_at(pet, "/price/amount"),
                        currency: text_at(pet, "/price/currency"),
                    }),
                    ..Default::default()
                };
                grpc(self.pets().create_pet(self.authed(request)))
                    .await
                    .map(PetView::pb)
            }
            Api::Mcp => self.mcp("create_pet", pet.clone()).await.map(PetView::json),
        }
    }

    async fn get_pet(&self, api: Api, id: &str) -> Outcome<PetView> {
        match api {
            Api::Rest => self
                .rest(Method::GET, &format!("/v1/pets/{id}"), None)
                .await
                .map(PetView::json),
            Api::GraphQl => self
                .graphql(GET_PET, json!({ "id": id }))
                .await
                .map(PetView::graphql),
            Api::Grpc => {
                let request = self.authed(pb::GetPetRequest { id: id.to_owned() });
                grpc(self.pets().get_pet(request)).await.map(PetView::pb)
            }
            Api::Mcp => self
                .mcp("get_pet", json!({ "id": id }))
                .await
                .map(PetView::json),
        }
    }

    /// Sets the pet's name and age.
    async fn update_pet(&self, api: Api, id: &str, name: &str, age: u32) -> Outcome<PetView> {
        let changes = json!({ "name": name, "age": age });
        match api {
            Api::Rest => {
                let path = format!("/v1/pets/{id}");
                self.rest(Method::PATCH, &path, Some(changes))
                    .await
                    .map(PetView::json)
            }
            Api::GraphQl => {
                let variables = json!({ "id": id, "input": changes });
                self.graphql(UPDATE_PET, variables)
                    .await
                    .map(PetView::graphql)
            }
            Api::Grpc => {
                let (id, name) = (id.to_owned(), name.to_owned());
                let pet = pb::Pet {
                    id,
                    name,
                    age: Some(age),
                    ..Default::default()
                };
                let mut request = pb::UpdatePetRequest {
                    pet: Some(pet),
                    ..Default::default()
                };
                // The mask names the fields to set: without one, proto3 cannot tell an
                // empty name from an absent one (and keeps the name).
                let mask = request.update_mask.insert(Default::default());
                mask.paths = vec!["name".into(), "age".into()];
                grpc(self.pets().update_pet(self.authed(request)))
                    .await
                    .map(PetView::pb)
            }
            Api::Mcp => {
                let arguments = json!({ "id": id, "changes": changes });
                self.mcp("update_pet", arguments).await.map(PetView::json)
            }
        }
    }

    async fn delete_pet(&self, api: Api, id: &str) -> Outcome<Value> {
        match api {
            Api::Rest => {
                self.rest(Method::DELETE, &format!("/v1/pets/{id}"), None)
                    .await
            }
            Api::GraphQl => self.graphql(DELETE_PET, json!({ "id": id })).await,
            Api::Grpc => {
                let request = pb::DeletePetRequest {
                    id: id.to_owned(),
                    expected_version: None,
                };
                grpc(self.pets().delete_pet(self.authed(request)))
                    .await
                    .map(|_| Value::Null)
            }
            Api::Mcp => self.mcp("delete_pet", json!({ "id": id })).await,
        }
    }

    async fn place_order(&self, api: Api, pet_id: &str) -> Outcome<OrderView> {
        let replayed = |v: Value| {
            assert_eq!(v["replayed"], false, "{v}");
            v["order"].clone()
        };
        match api {
            Api::Rest => {
                let body = json!({ "pet_id": pet_id, "quantity": 1 });
                self.rest(Method::POST, "/v1/orders", Some(body))
                    .await
                    .map(OrderView::json)
            }
            Api::GraphQl => {
                let placed = self.graphql(PLACE_ORDER, json!({ "petId": pet_id })).await;
                placed.map(replayed).map(OrderView::graphql)
            }
            Api::Grpc => {
                let request = pb::PlaceOrderRequest {
                    pet_id: pet_id.to_owned(),
                    quantity: Some(1),
                };
                grpc(self.orders().place_order(self.authed(request)))
                    .await
                    .map(OrderView::pb)
            }
            Api::Mcp => {
                let placed = self.mcp("place_order", json!({ "pet_id": pet_id })).await;
                placed.map(replayed).map(OrderView::json)
            }
        }
    }

    async fn get_order(&self, api: Api, id: &str) -> Outcome<OrderView> {
        match api {
            Api::Rest => self
                .rest(Method::GET, &format!("/v1/orders/{id}"), None)
                .await
                .map(OrderView::json),
            Api::GraphQl => self
                .graphql(GET_ORDER, json!({ "id": id }))
                .await
                .map(OrderView::graphql),
            Api::Grpc => {
                let request = self.authed(pb::GetOrderRequest { id: id.to_owned() });
                grpc(self.orders().get_order(request))
                    .await
                    .map(OrderView::pb)
            }
            Api::Mcp => self
                .mcp("get_order", json!({ "id": id }))
                .await
                .map(OrderView::json),
        }
    }

    /// Pays with a card token; the payment's status (`succeeded`, `failed`).
    async fn pay_order(&self, api: Api, id: &str, token: &str) -> Outcome<String> {
        let status = |v: Value| text(&v, "status");
        match api {
            Api::Rest => {
                let path = format!("/v1/orders/{id}/payment");
                let body = Some(json!({ "token": token }));
                let (status, content_type, body) = self.rest_raw(Method::POST, &path, body).await;
                match status {
                    201 => Ok(text(&body, "status")),
                    // REST alone answers a declined card with an error status (402
                    // problem+json carrying the recorded, failed payment).
                    402 if body["code"] == "payment_declined" => {
                        assert!(content_type.starts_with("application/problem+json"));
                        Ok(text(&body["payment"], "status"))
                    }
                    _ => Err(rest_refusal(status, &content_type, &body)),
                }
            }
            Api::GraphQl => {
                let paid = self
                    .graphql(PAY_ORDER, json!({ "id": id, "token": token }))
                    .await;
                paid.map(|mut v| {
                    graphql_enum(&mut v, "status");
                    status(v)
                })
            }
            Api::Grpc => {
                let (id, payment_token) = (id.to_owned(), Some(token.to_owned()));
                let request = pb::PayOrderRequest { id, payment_token };
                let paid = grpc(self.orders().pay_order(self.authed(request))).await;
                paid.map(|p| proto_enum(p.status().as_str_name(), "PAYMENT_STATUS_"))
            }
            Api::Mcp => self
                .mcp("pay_order", json!({ "id": id, "token": token }))
                .await
                .map(status),
        }
    }

    async fn cancel_order(&self, api: Api, id: &str) -> Outcome<OrderView> {
        match api {
            Api::Rest => {
                let path = format!("/v1/orders/{id}/cancel");
                self.rest(Method::POST, &path, None)
                    .await
                    .map(OrderView::json)
            }
            Api::GraphQl => self
                .graphql(CANCEL_ORDER, json!({ "id": id }))
                .await
                .map(OrderView::graphql),
            Api::Grpc => {
                let request = self.authed(pb::CancelOrderRequest { id: id.to_owned() });
                grpc(self.orders().cancel_order(request))
                    .await
                    .map(OrderView::pb)
            }
            Api::Mcp => self
                .mcp("cancel_order", json!({ "id": id }))
                .await
                .map(OrderView::json),
        }
    }
}

fn text_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

// ----- each protocol's errors, read in its own terms ---------------------------------

/// RFC 9457 problem+json: the HTTP status gives the kind; `code` and `errors` agree.
fn rest_refusal(status: u16, content_type: &str, body: &Value) -> Refusal {
    let wire = format!("HTTP {status} {content_type} {body}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "not a problem: {wire}"
    );
    assert_eq!(body["status"], status, "problem `status`: {wire}");
    let kind = match status {
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        412 => ErrorKind::PreconditionFailed,
        422 => ErrorKind::InvalidInput,
        _ => panic!("unexpected REST status: {wire}"),
    };
    assert_eq!(
        body["code"],
        kind.code(),
        "problem `code` agrees with the status: {wire}"
    );
    let errors = body["errors"].as_array().into_iter().flatten();
    let fields = errors.map(|e| text(e, "field")).collect();
    Refusal { kind, fields, wire }
}

/// `errors[0].extensions.code`, and `extensions.fields` for `BAD_USER_INPUT`.
fn graphql_refusal(status: u16, body: &Value) -> Refusal {
    let wire = format!("HTTP {status} {body}");
    let extensions = &body["errors"][0]["extensions"];
    let kind = match extensions["code"].as_str() {
        Some("BAD_USER_INPUT") => ErrorKind::InvalidInput,
        Some("NOT_FOUND") => ErrorKind::NotFound,
        Some("CONFLICT") => ErrorKind::Conflict,
        Some("PRECONDITION_FAILED") => ErrorKind::PreconditionFailed,
        Some("UNAUTHENTICATED") => ErrorKind::Unauthenticated,
        Some("FORBIDDEN") => ErrorKind::Forbidden,
        _ => panic!("unexpected GraphQL error: {wire}"),
    };
    let fields = extensions["fields"].as_array().into_iter().flatten();
    let fields = fields.map(|e| text(e, "field")).collect();
    Refusal { kind, fields, wire }
}

/// The status code gives the kind; `ErrorInfo.reason` agrees; `BadRequest` names the fields.
async fn grpc<T>(
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Outcome<T> {
    let status = match within("a gRPC call", call).await {
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
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo: {wire}"));
    assert_eq!(
        info.reason,
        kind.code().to_uppercase(),
        "ErrorInfo reason of {wire}"
    );
    let violations = status.get_details_bad_request().map(|b| b.field_violations);
    let fields = violations.into_iter().flatten().map(|v| v.field).collect();
    Err(Refusal { kind, fields, wire })
}

/// A tool error `"{code}: {message}"`; fields appear as `` invalid `x` `` or `` - `x`: ``.
fn mcp_refusal(text: &str) -> Refusal {
    let code = text.split_once(':').map_or(text, |(code, _)| code);
    let kind: ErrorKind = serde_json::from_value(json!(code))
        .unwrap_or_else(|_| panic!("MCP tool error without a core code: {text:?}"));
    let pieces: Vec<&str> = text.split('`').collect();
    let named = |i: &usize| pieces[i - 1].ends_with("- ") || pieces[i - 1].ends_with("invalid ");
    let fields = (1..pieces.len())
        .step_by(2)
        .filter(named)
        .map(|i| pieces[i].to_owned());
    Refusal {
        kind,
        fields: fields.collect(),
        wire: format!("isError: {text:?}"),
    }
}

// ----- shared fixtures --------------------------------------------------------------

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

// ----- 1. pet CRUD ------------------------------------------------------------------

/// Each protocol creates, reads, updates and deletes its own pet; every protocol reads
/// the same pet at each step, the one the core holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pet_crud_is_the_same_in_every_protocol() {
    let s = start().await;
    let w = Wire::connect(&s, Some(&s.dev_token)).await;
    let mut found = Findings::default();
    for api in APIS {
        let name = format!("Crud {api:?}");
        let created = w.create_pet(api, &new_pet(&name)).await;
        let created = created.unwrap_or_else(|e| panic!("{api:?} creates: {}", e.wire));
        let id = created.id.parse().unwrap();
        let stored = PetView::core(&s.store.pet(&system(), &id).await.unwrap());
        found.same(format!("{api:?} created, vs the core"), &created, &stored);
        found.same(
            format!("{api:?} created: fields"),
            (
                &*stored.name,
                &*stored.species,
                stored.breed.as_deref(),
                stored.age,
            ),
            (&*name, "dog", Some("Beagle"), Some(3)),
        );
        found.same(
            format!("{api:?} created: status, tags, price, version"),
            (
                &*stored.status,
                stored.tags.join(","),
                &*stored.price,
                stored.version,
            ),
            ("available", "friendly,small".into(), "12.50 USD", 1),
        );
        for reader in APIS {
            let read = w.get_pet(reader, &created.id).await;
            found.answered(
                format!("created by {api:?}, read by {reader:?}"),
                read,
                stored.clone(),
            );
        }

        let renamed = format!("{name} Junior");
        let updated = w.update_pet(api, &created.id, &renamed, 4).await;
        let updated = updated.unwrap_or_else(|e| panic!("{api:?} updates: {}", e.wire));
        let stored = PetView::core(&s.store.pet(&system(), &id).await.unwrap());
        found.same(format!("{api:?} updated, vs the core"), &updated, &stored);
        found.same(
            format!("{api:?} updated: name, age, version; the rest kept"),
            (
                &*stored.name,
                stored.age,
                stored.version,
                &*stored.price,
                stored.breed.as_deref(),
            ),
            (&*renamed, Some(4), 2, "12.50 USD", Some("Beagle")),
        );
        for reader in APIS {
            let read = w.get_pet(reader, &created.id).await;
            found.answered(
                format!("updated by {api:?}, read by {reader:?}"),
                read,
                stored.clone(),
            );
        }

        let deleted = w.delete_pet(api, &created.id).await;
        let deleted = deleted.unwrap_or_else(|e| panic!("{api:?} deletes: {}", e.wire));
        let echo = match api {
            Api::Rest | Api::Grpc => Value::Null, // 204 / Empty
            Api::GraphQl => json!(created.id),
            Api::Mcp => json!({ "id": created.id }),
        };
        found.same(format!("{api:?} delete answer"), deleted, echo);
        let gone = s.store.pet(&system(), &id).await.map_err(|e| e.kind());
        found.same(
            format!("deleted by {api:?}: the core"),
            gone.err(),
            Some(ErrorKind::NotFound),
        );
        for reader in APIS {
            let read = w.get_pet(reader, &created.id).await;
            let what = format!("deleted by {api:?}, read by {reader:?}");
            found.refused(what, read, ErrorKind::NotFound, &[]);
        }
    }
    w.close().await;
    found.finish();
    s.shutdown().await.unwrap();
}

// ----- 2. order state machine -------------------------------------------------------

/// Place (the pet becomes pending), a second order refused as a conflict, a declined
/// card (the order stays placed), pay (approved), pay again (conflict), cancel (the pet
/// is available again), cancel again (conflict): the same in every protocol, and
/// every protocol reads the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_state_machine_is_the_same_in_every_protocol() {
    let s = start().await;
    let w = Wire::connect(&s, Some(&s.dev_token)).await;
    let mut found = Findings::default();
    for api in APIS {
        let pet = core_pet(&s, &format!("Order {api:?}")).await;
        let pet_id = pet.id.to_string();
        let pet_status = |view: Outcome<PetView>| view.map(|p| p.status);
        let order_status = |view: Outcome<OrderView>| view.map(|o| o.status);

        let order = w.place_order(api, &pet_id).await;
        let order = order.unwrap_or_else(|e| panic!("{api:?} places an order: {}", e.wire));
        found.same(
            format!("{api:?} placed order"),
            (
                &*order.pet_id,
                order.quantity,
                &*order.total,
                &*order.status,
                &*order.customer,
            ),
            (&*pet_id, 1, "12.50 USD", "placed", "developer"),
        );
        let held = pet_status(w.get_pet(api, &pet_id).await);
        found.answered(format!("{api:?}: the ordered pet"), held, "pending".into());

        let before = snapshot(&s.store).await;
        let again = w.place_order(api, &pet_id).await;
        found.refused(
            format!("{api:?}: a second order"),
            again,
            ErrorKind::Conflict,
            &[],
        );
        found.same(
            format!("{api:?}: state after the refused order"),
            snapshot(&s.store).await,
            before,
        );

        let declined = w.pay_order(api, &order.id, "tok_declined").await;
        found.answered(format!("{api:?}: declined card"), declined, "failed".into());
        let still = order_status(w.get_order(api, &order.id).await);
        found.answered(
            format!("{api:?}: order after a declined card"),
            still,
            "placed".into(),
        );

        let paid = w.pay_order(api, &order.id, "tok_visa").await;
        found.answered(format!("{api:?}: payment"), paid, "succeeded".into());
        let approved = order_status(w.get_order(api, &order.id).await);
        found.answered(
            format!("{api:?}: order after payment"),
            approved,
            "approved".into(),
        );
        let twice = w.pay_order(api, &order.id, "tok_visa").await;
        found.refused(
            format!("{api:?}: paying twice"),
            twice,
            ErrorKind::Conflict,
            &[],
        );

        let cancelled = w.cancel_order(api, &order.id).await;
        let cancelled = cancelled.unwrap_or_else(|e| panic!("{api:?} cancels: {}", e.wire));
        found.same(
            format!("{api:?}: cancelled order"),
            &*cancelled.status,
            "cancelled",
        );
        let freed = pet_status(w.get_pet(api, &pet_id).await);
        found.answered(
            format!("{api:?}: the pet after cancelling"),
            freed,
            "available".into(),
        );
        let twice = w.cancel_order(api, &order.id).await;
        found.refused(
            format!("{api:?}: cancelling twice"),
            twice,
            ErrorKind::Conflict,
            &[],
        );

        for reader in APIS {
            let read = w.get_order(reader, &order.id).await;
            found.answered(
                format!("order of {api:?} read by {reader:?}"),
                read,
                cancelled.clone(),
            );
        }
    }
    w.close().await;
    found.finish();
    s.shutdown().await.unwrap();
}

// ----- 3. invalid input -------------------------------------------------------------

/// An empty name and a negative price: REST 422 problem+json, gRPC INVALID_ARGUMENT
/// with BadRequest, GraphQL BAD_USER_INPUT, MCP a tool error, each naming `name` and
/// `price.amount`; then an empty name on a change. Nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_invalid_input_is_refused_everywhere_naming_the_same_fields() {
    let s = start().await;
    let w = Wire::connect(&s, Some(&s.dev_token)).await;
    let pet = core_pet(&s, "Valid").await;
    let before = snapshot(&s.store).await;
    let bad =
        json!({ "name": "", "species": "dog", "price": { "amount": "-1.00", "currency": "USD" } });
    let mut found = Findings::default();
    for api in APIS {
        let created = w.create_pet(api, &bad).await;
        let what = format!("{api:?} create");
        found.refused(
            what,
            created,
            ErrorKind::InvalidInput,
            &["name", "price.amount"],
        );

        let updated = w.update_pet(api, pet.id.as_str(), "", 4).await;
        // gRPC names fields by their path in the request message (AIP-193): the new
        // values travel in `UpdatePetRequest.pet`.
        let name = if api == Api::Grpc { "pet.name" } else { "name" };
        found.refused(
            format!("{api:?} update"),
            updated,
            ErrorKind::InvalidInput,
            &[name],
        );
    }
    found.same("state after the refusals", snapshot(&s.store).await, before);
    found.same(
        "the pet after the refused changes",
        s.store.pet(&system(), &pet.id).await.unwrap(),
        pet,
    );
    w.close().await;
    found.finish();
    s.shutdown().await.unwrap();
}

// ----- 4. missing and insufficient credentials --------------------------------------

/// No token, a forged token and a token with only `pets:read`, on a write: REST
/// 401/403, gRPC UNAUTHENTICATED/PERMISSION_DENIED, GraphQL UNAUTHENTICATED/FORBIDDEN,
/// MCP a tool error (HTTP 401 for a forged token), WebSocket `chat.send` an error
/// frame (handshake 401 for a forged token). Nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_missing_or_insufficient_token_is_refused_everywhere() {
    let s = start().await;
    let reader = s
        .store
        .tokens()
        .issue("reader", [Scope::PetsRead])
        .unwrap()
        .access_token;
    let forger = TokenAuthority::random(Duration::from_secs(600));
    let forged = forger.issue("mallory", Scope::ALL).unwrap().access_token;
    let before = snapshot(&s.store).await;
    let mut found = Findings::default();

    for (case, token) in [
        ("no token", None),
        ("forged token", Some(&forged)),
        ("pets:read token", Some(&reader)),
    ] {
        let kind = if token == Some(&reader) {
            ErrorKind::Forbidden
        } else {
            ErrorKind::Unauthenticated
        };
        let w = match token == Some(&forged) {
            true => Wire::without_mcp(&s, Some(&forged)).await,
            false => Wire::connect(&s, token.map(String::as_str)).await,
        };
        for api in APIS
            .into_iter()
            .filter(|&api| api != Api::Mcp || w.mcp.is_some())
        {
            let created = w.create_pet(api, &new_pet("Intruder")).await;
            found.refused(format!("{case}: {api:?}"), created, kind, &[]);
        }
        w.close().await;
    }

    // MCP refuses a forged token at the HTTP layer, before any session.
    let refused = mcp::connect(&s.http_url(), Some(&forged)).await.is_err();
    found.same("forged token: the MCP client is refused", refused, true);
    let raw = reqwest::Client::new()
        .post(format!("{}/mcp", s.http_url()))
        .bearer_auth(&forged)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))
        .send()
        .await
        .unwrap();
    let challenge = raw
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let challenge = challenge.unwrap_or_default();
    found.same(
        "forged token: MCP over HTTP",
        (raw.status().as_u16(), challenge.starts_with("Bearer")),
        (401, true),
    );

    // WebSocket: `chat.send` is the write; the connection stays open after an error.
    let chat = json!({ "type": "chat.send", "id": 7, "room": "support", "text": "let me in" });
    let error_of = |f: &Value| (f["type"].clone(), f["code"].clone(), f["id"].clone());
    for (case, query, code) in [
        ("no token", String::new(), "unauthenticated"),
        ("pets:read token", format!("?token={reader}"), "forbidden"),
    ] {
        let mut ws = ws::open(&ws::url(&s.http_url(), &format!("/v1/ws{query}"))).await;
        ws::send(&mut ws, &chat).await;
        let frame = ws::next_json(&mut ws, |f| f["type"] != "pong").await;
        found.same(
            format!("{case}: WebSocket chat.send {frame}"),
            error_of(&frame),
            (json!("error"), json!(code), json!(7)),
        );
    }
    let url = ws::url(&s.http_url(), &format!("/v1/ws?token={forged}"));
    match within(
        "a WebSocket handshake",
        tokio_tungstenite::connect_async(url),
    )
    .await
    {
        Err(tungstenite::Error::Http(response)) => {
            found.same(
                "forged token: WebSocket handshake",
                response.status().as_u16(),
                401,
            );
        }
        other => {
            let status = other.map(|(_, r)| r.status());
            found.0.push(format!(
                "forged token: WebSocket handshake not refused with 401: {status:?}"
            ));
        }
    }
    // A forged first-frame `auth` is an error frame; the socket stays anonymous.
    let mut ws = ws::open(&ws::url(&s.http_url(), "/v1/ws")).await;
    for frame in [json!({ "type": "auth", "id": 7, "token": forged }), chat] {
        ws::send(&mut ws, &frame).await;
        let reply = ws::next_json(&mut ws, |f| f["type"] != "pong").await;
        let what = format!("forged token: WebSocket {} {reply}", frame["type"]);
        found.same(
            what,
            error_of(&reply),
            (json!("error"), json!("unauthenticated"), json!(7)),
        );
    }

    found.same("state after the refusals", snapshot(&s.store).await, before);
    found.finish();
    s.shutdown().await.unwrap();
}

// ----- 5. one event on every channel ------------------------------------------------

/// What one channel delivered: its name and the event envelope as JSON.
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

/// SSE `/v1/stream/orders`, resuming after `since` (order events need a token: the
/// browser form, `?token=`).
async fn sse(s: &RunningServer, since: &str) -> Delivery {
    let url = format!("{}/v1/stream/orders?token={}", s.http_url(), s.dev_token);
    let response = sse_client::request(url, since).await;
    assert_eq!(response.status(), 200, "SSE /v1/stream/orders");
    let mut events = response.bytes_stream().eventsource();
    Box::pin(async move {
        loop {
            let message = within("an SSE event", events.next())
                .await
                .expect("SSE stream");
            let message = message.expect("an SSE event");
            if message.event == "order.created" {
                let envelope: Value = serde_json::from_str(&message.data).expect("an envelope");
                assert_eq!(envelope["offset"], message.id, "the SSE id is the offset");
                return ("SSE", envelope);
            }
        }
    })
}

/// WebSocket `subscribe` to `orders` from `since`, confirmed by `subscribed`.
async fn websocket(s: &RunningServer, since: &str) -> Delivery {
    let path = format!("/v1/ws?token={}", s.dev_token);
    let mut ws = ws::open(&ws::url(&s.http_url(), &path)).await;
    let subscribe = json!({ "type": "subscribe", "channel": "orders", "since": since });
    ws::send(&mut ws, &subscribe).await;
    let subscribed = ws::next_json(&mut ws, |f| f["type"] != "pong").await;
    assert_eq!(
        (&subscribed["type"], &subscribed["position"]),
        (&json!("subscribed"), &json!(since))
    );
    Box::pin(async move {
        let event = |f: &Value| f["type"] == "event" && f["event"]["type"] == "order.created";
        let frame = ws::next_json(&mut ws, event).await;
        assert_eq!(frame["channel"], "orders", "{frame}");
        ("WebSocket", frame["event"].clone())
    })
}

/// GraphQL subscription `events` over graphql-transport-ws, from `since`.
async fn graphql_subscription(s: &RunningServer, since: &str) -> Delivery {
    let connected = ws::graphql(&ws::url(&s.http_url(), "/graphql"), "graphql-transport-ws").await;
    let mut ws = connected.expect("GraphQL WebSocket");
    let operation = |f: &Value| !matches!(f["type"].as_str(), Some("ping" | "pong"));
    let init = json!({
        "type": "connection_init",
        "payload": { "authorization": format!("Bearer {}", s.dev_token) },
    });
    ws::send(&mut ws, &init).await;
    let ack = ws::next_json(&mut ws, operation).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let query = format!(
        "subscription($since: String) {{ events(types: [\"order.created\"], since: $since) {ENVELOPE} }}"
    );
    let payload = json!({ "query": query, "variables": { "since": since } });
    ws::send(
        &mut ws,
        &json!({ "type": "subscribe", "id": "1", "payload": payload }),
    )
    .await;
    Box::pin(async move {
        let frame = ws::next_json(&mut ws, operation).await;
        assert_eq!(frame["type"], "next", "{frame}");
        (
            "GraphQL subscription",
            frame["payload"]["data"]["events"].clone(),
        )
    })
}

/// gRPC `WatchOrders` from `since`.
async fn grpc_watch(s: &RunningServer, since: &str) -> Delivery {
    let w = Wire::without_mcp(s, Some(&s.dev_token)).await;
    let request = pb::WatchOrdersRequest {
        since: Some(since.to_owned()),
        order_id: None,
        types: vec!["order.created".into()],
    };
    let watch = within("WatchOrders", w.orders().watch_orders(w.authed(request))).await;
    let mut stream = watch.expect("WatchOrders").into_inner();
    Box::pin(async move {
        let e = within("a WatchOrders event", stream.message())
            .await
            .expect("stream");
        let e = e.expect("an event");
        match &e.payload {
            Some(pb::event::Payload::Order(o)) => assert_eq!(o.id, e.subject),
            other => panic!("order.created carries the order: {other:?}"),
        }
        let time = e.time.map(|t| timestamp(t.seconds, t.nanos)).expect("time");
        let envelope = json!({
            "id": e.id, "type": e.r#type, "source": e.source, "time": time.to_rfc3339(),
            "subject": e.subject, "offset": e.offset, "data": e.data,
            "specversion": e.specversion, "datacontenttype": e.datacontenttype,
        });
        ("gRPC WatchOrders", envelope)
    })
}

/// MQTT 5 `petstore/orders/new`, live once the SUBACK is in.
async fn mqtt(s: &RunningServer) -> Delivery {
    let addr = s.mqtt_addr.expect("the server runs an MQTT broker");
    let id = format!("conformance-v5-{}-{}", std::process::id(), addr.port());
    let mut options = mqtt_client::options(&id, addr);
    // `orders/new` carries every customer's orders: admin's (the dev token).
    options.set_credentials("conformance", s.dev_token.clone());
    let mut client = mqtt_client::Client::start(options, None);
    client.subscribe("petstore/orders/new").await;
    Box::pin(async move {
        let publish = within("an MQTT 5 message", client.publishes.recv())
            .await
            .expect("MQTT 5");
        let envelope: Value = serde_json::from_slice(&publish.payload).expect("an envelope");
        let properties = publish.properties.unwrap_or_default().user_properties;
        let property = |name: &str| {
            let found = properties.iter().find(|(k, _)| k == name);
            found.map(|(_, v)| json!(v)).unwrap_or_default()
        };
        // The server turns the properties off on its embedded broker (rumqttd
        // 0.20 cannot forward them to MQTT 3.1.1 subscribers); when sent, they agree.
        for (name, key) in [
            ("event-id", "id"),
            ("offset", "offset"),
            ("event-type", "type"),
        ] {
            let value = property(name);
            assert!(
                value.is_null() || value == envelope[key],
                "MQTT 5 user property `{name}`"
            );
        }
        ("MQTT 5", envelope)
    })
}

/// MQTT 3.1.1 (rumqttc's default client, which the `mqtt-subscriber` example uses) on
/// `petstore/orders/new`, live once the SUBACK is in.
async fn mqtt_3_1_1(s: &RunningServer) -> Delivery {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let addr = s.mqtt_addr.expect("the server runs an MQTT broker");
    let id = format!("conformance-v4-{}-{}", std::process::id(), addr.port());
    let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_credentials("conformance", s.dev_token.clone());
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client
        .subscribe("petstore/orders/new", QoS::AtLeastOnce)
        .await
        .unwrap();
    within("MQTT 3.1.1 SUBACK", async {
        let suback = |e| matches!(e, Event::Incoming(Packet::SubAck(_)));
        while !suback(eventloop.poll().await.expect("MQTT 3.1.1 connection")) {}
    })
    .await;
    Box::pin(async move {
        let _client = client;
        within("an MQTT 3.1.1 message", async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let envelope = serde_json::from_slice(&p.payload).expect("an envelope");
                        return ("MQTT 3.1.1", envelope);
                    }
                    Ok(_) => {}
                    Err(e) => panic!("the broker dropped the MQTT 3.1.1 subscriber: {e}"),
                }
            }
        })
        .await
    })
}

/// A webhook endpoint for `order.created`, registered with the admin token; its
/// delivery must carry a valid Standard Webhooks signature by the endpoint's secret.
async fn webhook(s: &RunningServer) -> Delivery {
    type Inbox = mpsc::UnboundedSender<(HeaderMap, Bytes)>;
    async fn receive(State(inbox): State<Inbox>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let _ = inbox.send((headers, body));
        StatusCode::NO_CONTENT
    }
    let (inbox, mut deliveries) = mpsc::unbounded_channel();
    let receiver = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(inbox);
    let (addr, server) = serve(receiver).await;
    let url = format!("http://{addr}/hook");

    let response = reqwest::Client::new()
        .post(format!("{}/v1/webhooks", s.http_url()))
        .bearer_auth(&s.dev_token)
        .json(&json!({ "url": url, "events": ["order.created"] }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let endpoint: Value = response.json().await.unwrap_or_default();
    assert_eq!(
        status, 201,
        "registering a loopback webhook endpoint: {endpoint}"
    );
    let secret: petstore_webhooks::WebhookSecret = text(&endpoint, "secret").parse().unwrap();
    Box::pin(async move {
        let (headers, body) = within("a webhook delivery", deliveries.recv())
            .await
            .unwrap();
        server.abort();
        let verified = secret.verify(&headers, &body, Duration::from_secs(300));
        let verified = verified.expect("a valid Standard Webhooks signature");
        let mut envelope: Value = serde_json::from_slice(&body).expect("a JSON body");
        assert_eq!(
            envelope["id"], verified.id,
            "the webhook-id is the event id"
        );
        // The Standard Webhooks body adds `timestamp` to the envelope.
        let timestamp = envelope.as_object_mut().unwrap().remove("timestamp");
        assert!(timestamp.is_some_and(|t| t.is_string()), "a `timestamp`");
        ("webhook", envelope)
    })
}

/// One order, placed once: every push channel (subscribed from the same position, or
/// confirmed live before the order) and every pull channel delivers the same
/// `order.created` envelope, with the same `id` and `offset`, as the core's log has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_reaches_every_channel_with_the_same_id_and_offset() {
    let s = start().await;
    let pet = core_pet(&s, "Broadcast").await;
    let head = s.store.head().await.unwrap();
    let since = head.to_string();
    let push = vec![
        sse(&s, &since).await,
        websocket(&s, &since).await,
        graphql_subscription(&s, &since).await,
        grpc_watch(&s, &since).await,
        mqtt(&s).await,
        webhook(&s).await,
    ];

    let w = Wire::connect(&s, Some(&s.dev_token)).await;
    let order = w.place_order(Api::Rest, pet.id.as_str()).await;
    let order = order.unwrap_or_else(|e| panic!("the order: {}", e.wire));

    let mut seen = futures_util::future::join_all(push).await;
    let path = format!("/v1/events?since={since}&types=order.created");
    let polled = w.rest(Method::GET, &path, None).await;
    let polled = polled.unwrap_or_else(|e| panic!("polling: {}", e.wire));
    seen.push(("REST polling", polled["events"][0].clone()));
    let arguments = json!({ "since": since, "types": ["order.created"] });
    let recent = w.mcp("recent_events", arguments).await;
    let recent = recent.unwrap_or_else(|e| panic!("recent_events: {}", e.wire));
    seen.push(("MCP recent_events", recent["events"][0].clone()));
    let query = format!(
        "query($since: String) {{ events(types: [\"order.created\"], since: $since) {{ events {ENVELOPE} }} }}"
    );
    let page = w.graphql(&query, json!({ "since": since })).await;
    let page = page.unwrap_or_else(|e| panic!("GraphQL events: {}", e.wire));
    seen.push(("GraphQL events query", page["events"][0].clone()));
    w.close().await;

    // The truth: the core's log.
    let filter = EventFilter::types(["order.created".parse().unwrap()]);
    let batch = s
        .store
        .events(&system(), Some(head), 10, filter, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(batch.events.len(), 1, "one order.created in the log");
    let truth = canonical(serde_json::from_str(&batch.events[0].to_json()).unwrap());
    assert_eq!(truth["subject"], order.id);

    let mut found = Findings::default();
    for (channel, envelope) in seen {
        let envelope = canonical(envelope);
        let key = |e: &Value| [e["id"].clone(), e["offset"].clone(), e["type"].clone()];
        found.same(
            format!("{channel}: id, offset, type"),
            key(&envelope),
            key(&truth),
        );
        found.same(
            format!("{channel}: the whole envelope"),
            envelope,
            truth.clone(),
        );
    }
    found.finish();
    s.shutdown().await.unwrap();
}

/// The embedded broker serves MQTT 3.1.1 and 5 on one address: a 3.1.1 subscriber
/// gets the same envelope as an MQTT 5 one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_1_and_5_subscribers_get_the_same_event() {
    let s = start().await;
    let pet = core_pet(&s, "Versions").await;
    let subscribers = vec![mqtt(&s).await, mqtt_3_1_1(&s).await];
    let buyer = Principal::new("conformance", [Scope::OrdersWrite]);
    let placed = s
        .store
        .place_order(&buyer, NewOrder::new(pet.id), None)
        .await
        .unwrap();
    let seen = futures_util::future::join_all(subscribers).await;
    let mut found = Findings::default();
    for (channel, envelope) in &seen {
        found.same(
            format!("{channel}: subject"),
            &envelope["subject"],
            &json!(placed.order.id),
        );
    }
    found.same("MQTT 3.1.1 vs MQTT 5 envelope", &seen[1].1, &seen[0].1);
    found.finish();
    s.shutdown().await.unwrap();
}

// ----- 6. ownership -----------------------------------------------------------------

/// An order belongs to its customer. Alice (`orders:read orders:write`) acting on,
/// reading and following the admin's order is told, on every protocol, what she would
/// be told for an order that does not exist; nothing changes; and her own feeds carry
/// her orders only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_order_is_unknown_on_every_protocol() {
    let s = start().await;
    let admin = Wire::connect(&s, Some(&s.dev_token)).await;
    let alice_token = s
        .store
        .tokens()
        .issue("alice", [Scope::OrdersRead, Scope::OrdersWrite])
        .unwrap()
        .access_token;
    let alice = Wire::connect(&s, Some(&alice_token)).await;
    let pet = core_pet(&s, "Owned").await;
    let order = admin.place_order(Api::Rest, pet.id.as_str()).await;
    let order = order.unwrap_or_else(|e| panic!("the admin's order: {}", e.wire));
    let unknown = petstore_core::OrderId::generate().to_string();
    let before = snapshot(&s.store).await;

    // Act and read: NotFound, exactly as for an order that does not exist.
    let mut found = Findings::default();
    for api in APIS {
        for (id, whose) in [(&order.id, "the admin's"), (&unknown, "no one's")] {
            let read = alice.get_order(api, id).await;
            found.refused(
                format!("{api:?} read {whose}"),
                read,
                ErrorKind::NotFound,
                &[],
            );
            let paid = alice.pay_order(api, id, "tok_visa").await;
            found.refused(
                format!("{api:?} pay {whose}"),
                paid,
                ErrorKind::NotFound,
                &[],
            );
            let cancelled = alice.cancel_order(api, id).await;
            let what = format!("{api:?} cancel {whose}");
            found.refused(what, cancelled, ErrorKind::NotFound, &[]);
        }
    }

    // Follow the order's own channel: refused as unknown on every streaming protocol.
    let http = s.http_url();
    let sse = reqwest::Client::new()
        .get(format!("{http}/v1/stream/orders/{}", order.id))
        .bearer_auth(&alice_token)
        .send()
        .await
        .expect("SSE request");
    found.same("SSE orders/{id} status", sse.status().as_u16(), 404);

    let mut socket = ws::open(&ws::url(&http, &format!("/v1/ws?token={alice_token}"))).await;
    let channel = format!("orders/{}", order.id);
    ws::send(
        &mut socket,
        &json!({ "type": "subscribe", "channel": channel }),
    )
    .await;
    let frame = ws::next_json(&mut socket, |f| f["type"] != "pong").await;
    found.same(
        "WebSocket subscribe orders/{id}",
        (frame["type"].clone(), frame["code"].clone()),
        (json!("error"), json!("not_found")),
    );

    let watch = pb::WatchOrdersRequest {
        order_id: Some(order.id.clone()),
        ..Default::default()
    };
    let watched = alice.orders().watch_orders(alice.authed(watch)).await;
    found.same(
        "gRPC WatchOrders(order_id)",
        watched.err().map(|e| e.code()),
        Some(Code::NotFound),
    );

    let gql = ws::graphql(&ws::url(&http, "/graphql"), "graphql-transport-ws").await;
    let mut gql = gql.expect("GraphQL WebSocket");
    let operation = |f: &Value| !matches!(f["type"].as_str(), Some("ping" | "pong"));
    let init = json!({
        "type": "connection_init",
        "payload": { "authorization": format!("Bearer {alice_token}") },
    });
    ws::send(&mut gql, &init).await;
    assert_eq!(
        ws::next_json(&mut gql, operation).await["type"],
        "connection_ack"
    );
    let query = "subscription($id: ID) { orderChanged(id: $id) { order { id } } }";
    let payload = json!({ "query": query, "variables": { "id": order.id } });
    ws::send(
        &mut gql,
        &json!({ "type": "subscribe", "id": "1", "payload": payload }),
    )
    .await;
    let frame = ws::next_json(&mut gql, operation).await;
    let code = match frame["type"].as_str() {
        Some("error") => frame["payload"][0]["extensions"]["code"].clone(),
        Some("next") => frame["payload"]["errors"][0]["extensions"]["code"].clone(),
        _ => frame.clone(),
    };
    found.same("GraphQL orderChanged(id)", code, json!("NOT_FOUND"));

    // The refused calls changed nothing.
    if let Err(e) = unchanged(&before, &snapshot(&s.store).await) {
        found
            .0
            .push(format!("the refused calls changed the store: {e}"));
    }

    // Alice's own order feeds: the admin's next order does not show; hers does, and
    // is the first order event she sees.
    let since = s.store.head().await.unwrap().to_string();
    let sse = reqwest::Client::new()
        .get(format!("{http}/v1/stream/orders"))
        .bearer_auth(&alice_token)
        .header("last-event-id", &since)
        .send()
        .await
        .expect("SSE request");
    assert_eq!(sse.status(), 200, "SSE orders");
    let mut sse = sse.bytes_stream().eventsource();
    let mut feed = ws::open(&ws::url(&http, &format!("/v1/ws?token={alice_token}"))).await;
    ws::send(
        &mut feed,
        &json!({ "type": "subscribe", "channel": "orders", "since": since }),
    )
    .await;
    let subscribed = ws::next_json(&mut feed, |f| f["type"] != "pong").await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let watch = pb::WatchOrdersRequest {
        since: Some(since.clone()),
        ..Default::default()
    };
    let watch = within(
        "WatchOrders",
        alice.orders().watch_orders(alice.authed(watch)),
    )
    .await;
    let mut grpc_feed = watch.expect("alice watches her orders").into_inner();

    let other = core_pet(&s, "Theirs").await;
    admin
        .place_order(Api::Rest, other.id.as_str())
        .await
        .unwrap_or_else(|e| panic!("the admin's second order: {}", e.wire));
    let mine = core_pet(&s, "Mine").await;
    let hers = alice.place_order(Api::Rest, mine.id.as_str()).await;
    let hers = hers.unwrap_or_else(|e| panic!("alice's order: {}", e.wire));

    let first_sse = within("alice's SSE order event", async {
        loop {
            let message = sse.next().await.expect("open").expect("an SSE event");
            let envelope: Value = serde_json::from_str(&message.data).expect("an envelope");
            if envelope["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("order."))
            {
                return envelope;
            }
        }
    })
    .await;
    found.same(
        "SSE orders: first order event",
        first_sse["subject"].clone(),
        json!(hers.id),
    );
    let frame = ws::next_json(&mut feed, |f| f["type"] == "event").await;
    found.same(
        "WebSocket orders: first event",
        frame["event"]["subject"].clone(),
        json!(hers.id),
    );
    let event = within("alice's WatchOrders event", grpc_feed.message()).await;
    let event = event.expect("stream").expect("an event");
    found.same(
        "gRPC WatchOrders: first event",
        event.subject,
        hers.id.clone(),
    );
    let polled = alice
        .rest(Method::GET, &format!("/v1/events?since={since}"), None)
        .await
        .unwrap_or_else(|e| panic!("polling: {}", e.wire));
    let subjects: Vec<&Value> = polled["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_str().is_some_and(|t| t.starts_with("order.")))
        .map(|e| &e["subject"])
        .collect();
    found.same("polling: order events", subjects, vec![&json!(hers.id)]);
    let recent = alice
        .mcp(
            "recent_events",
            json!({ "since": since, "types": ["order.*"] }),
        )
        .await
        .unwrap_or_else(|e| panic!("recent_events: {}", e.wire));
    let subjects: Vec<Value> = recent["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].clone())
        .collect();
    found.same(
        "MCP recent_events: order events",
        subjects,
        vec![json!(hers.id)],
    );
    found.finish();
    admin.close().await;
    alice.close().await;
}
