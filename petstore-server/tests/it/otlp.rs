//! OpenTelemetry export seen from outside: the server binary, built with the `otlp`
//! feature (this crate's dev-dependency on itself turns it on for its tests), sends its
//! spans over OTLP/HTTP (protobuf) to a receiver in the test (axum), which decodes
//! them with opentelemetry-proto's types.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::sync::mpsc;

use petstore_grpc::pb;
use petstore_grpc::pb::pet_service_client::PetServiceClient;

use crate::support::binary::Binary;
use crate::support::grpc::{connect, with_auth};
use crate::support::{new_pet, serve, within};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
/// The gRPC caller's trace.
const GRPC_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const GRPC_PARENT_ID: &str = "b7ad6b7169203331";

/// An attribute's value as text (strings as they are, numbers formatted).
fn value(attributes: &[KeyValue], key: &str) -> Option<String> {
    let v = attributes.iter().find(|a| a.key == key)?.value.as_ref()?;
    match v {
        AnyValue {
            value: Some(Any::StringValue(s)),
        } => Some(s.clone()),
        AnyValue {
            value: Some(Any::IntValue(i)),
        } => Some(i.to_string()),
        AnyValue {
            value: Some(Any::BoolValue(b)),
        } => Some(b.to_string()),
        AnyValue {
            value: Some(Any::DoubleValue(d)),
        } => Some(d.to_string()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A REST `POST /v1/pets` with a `traceparent` is exported as an `http_request` span
/// in the caller's trace, its parent the caller's span, carrying the request's span
/// attributes (method, route template, request id, the token's subject) and the
/// "request finished" event with the status; a request without one starts a trace of
/// its own. A gRPC call with `traceparent` metadata is exported as a `grpc_call` span in
/// its caller's trace in the same way. Spans still batched when the server stops
/// (Ctrl-C) are sent before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_write_and_a_grpc_call_are_exported_over_otlp_in_their_callers_traces() {
    let (tx, mut exports) = mpsc::unbounded_channel::<(HeaderMap, ExportTraceServiceRequest)>();
    let receiver = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return (StatusCode::BAD_REQUEST, Vec::new());
                };
                let _ = tx.send((headers, request));
                (
                    StatusCode::OK,
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let (addr, _receiver) = serve(receiver).await;
    let server = Binary::start(&["--otlp-endpoint", &format!("http://{addr}")]).await;

    let http = reqwest::Client::new();
    let traced = http
        .post(format!("{}/v1/pets", server.http))
        .bearer_auth(&server.dev_token)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .json(&new_pet("Traced"))
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status(), 201);
    let request_id = traced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let untraced = http
        .post(format!("{}/v1/pets", server.http))
        .bearer_auth(&server.dev_token)
        .json(&new_pet("Untraced"))
        .send()
        .await
        .unwrap();
    assert_eq!(untraced.status(), 201);
    let other_id = untraced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut pets = PetServiceClient::new(connect(server.grpc.clone()).await);
    let mut call = with_auth(
        pb::GetPetRequest {
            id: "00000000-0000-7000-8000-000000000000".into(),
        },
        Some(&format!("Bearer {}", server.dev_token)),
    );
    call.metadata_mut().insert(
        "traceparent",
        format!("00-{GRPC_TRACE_ID}-{GRPC_PARENT_ID}-01")
            .parse()
            .unwrap(),
    );
    let answered = pets.get_pet(call).await.expect_err("no such pet");
    assert_eq!(answered.code(), tonic::Code::NotFound, "{answered:?}");
    let grpc_id = answered
        .metadata()
        .get("x-request-id")
        .expect("the call's request id")
        .to_str()
        .unwrap()
        .to_owned();
    drop(pets);
    let exit = server.interrupt().await;
    assert!(exit.success(), "exit status {exit}");

    // Every span exported, by request id.
    let mut spans: HashMap<String, Span> = HashMap::new();
    let mut service_names = Vec::new();
    within("the three requests' spans at the OTLP receiver", async {
        while ![&request_id, &other_id, &grpc_id]
            .iter()
            .all(|id| spans.contains_key(*id))
        {
            let (headers, export) = exports.recv().await.expect("the receiver runs");
            assert_eq!(
                headers[header::CONTENT_TYPE],
                "application/x-protobuf",
                "OTLP/HTTP with protobuf bodies"
            );
            for resource in export.resource_spans {
                let attributes = resource.resource.unwrap_or_default().attributes;
                service_names.push(value(&attributes, "service.name"));
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        if let Some(id) = value(&span.attributes, "request_id") {
                            spans.insert(id, span);
                        }
                    }
                }
            }
        }
    })
    .await;
    assert!(
        service_names
            .iter()
            .all(|n| n.as_deref() == Some("petstore-server")),
        "{service_names:?}"
    );

    let span = &spans[&request_id];
    assert_eq!(span.name, "http_request");
    assert_eq!(hex(&span.trace_id), TRACE_ID, "the caller's trace");
    assert_eq!(hex(&span.parent_span_id), PARENT_ID, "the caller's span");
    let attributes = &span.attributes;
    assert_eq!(value(attributes, "method").as_deref(), Some("POST"));
    assert_eq!(value(attributes, "route").as_deref(), Some("/v1/pets"));
    assert_eq!(value(attributes, "sub").as_deref(), Some("developer"));
    let finished = event(span, "request finished");
    assert_eq!(
        value(&finished.attributes, "status").as_deref(),
        Some("201")
    );

    let other = &spans[&other_id];
    assert_ne!(hex(&other.trace_id), TRACE_ID, "a trace of its own");
    assert_eq!(other.trace_id.len(), 16);
    assert!(other.parent_span_id.is_empty(), "a root span");

    let call = &spans[&grpc_id];
    assert_eq!(call.name, "grpc_call");
    assert_eq!(
        hex(&call.trace_id),
        GRPC_TRACE_ID,
        "the gRPC caller's trace"
    );
    assert_eq!(
        hex(&call.parent_span_id),
        GRPC_PARENT_ID,
        "the gRPC caller's span"
    );
    assert_eq!(
        value(&call.attributes, "method").as_deref(),
        Some("/petstore.v1.PetService/GetPet")
    );
    let answered = event(call, "call answered");
    assert_eq!(
        value(&answered.attributes, "code").as_deref(),
        Some("NOT_FOUND")
    );
}

/// The event `name` of `span`.
fn event<'a>(span: &'a Span, name: &str) -> &'a opentelemetry_proto::tonic::trace::v1::span::Event {
    span.events
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no '{name}' event: {:?}", span.events))
}
