//! What every gRPC call goes through before its service: a span (method, request id,
//! the caller's `sub` once the interceptor knows it), the core [`RequestContext`]
//! (request id, client address, a valid incoming `traceparent`, so that writes made
//! over gRPC carry their trace context into the events), one INFO line when the call
//! is answered, and the request metrics.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use petstore_core::{RequestContext, TraceParent, telemetry};
use tonic::transport::server::TcpConnectInfo;
use tracing::Instrument as _;

const X_REQUEST_ID: &str = "x-request-id";

/// Fresh request ids: a random prefix per process and a counter (as the HTTP edge
/// makes them).
static IDS: LazyLock<(u64, AtomicU64)> = LazyLock::new(|| {
    (
        RandomState::new().build_hasher().finish(),
        AtomicU64::new(0),
    )
});

fn request_id(request: &Request) -> String {
    let sane = |id: &str| {
        !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@~".contains(&b))
    };
    match request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
    {
        Some(id) if sane(id) => id.to_owned(),
        _ => {
            let n = IDS.1.fetch_add(1, Ordering::Relaxed);
            format!("{:016x}{n:016x}", IDS.0)
        }
    }
}

/// The `grpc-status` of an answer: in the headers of a trailers-only answer (every
/// error before the first message), else `OK` (a unary success, or a stream that
/// started).
fn outcome(response: &Response) -> &'static str {
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Every method path this server serves (`/petstore.v1.PetService/CreatePet`, health,
/// reflection), from the services' file descriptors.
static KNOWN_METHODS: LazyLock<std::collections::HashSet<Box<str>>> = LazyLock::new(|| {
    use prost::Message as _;
    let mut known = std::collections::HashSet::new();
    for set in [
        crate::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    known.insert(path.into_boxed_str());
                }
            }
        }
    }
    known
});

/// The method as logs and metrics name it: its path when the server has that method,
/// else `unknown`, so that a client cannot add a series or a log value per made-up
/// path.
fn method_label(path: &str) -> &'static str {
    KNOWN_METHODS.get(path).map_or("unknown", |known| &**known)
}

/// The middleware around every gRPC route.
pub(crate) async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // The method path (`/petstore.v1.PetService/CreatePet`): one per RPC, never data.
    let method = method_label(request.uri().path());
    let id = request_id(&request);
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<TraceParent>().ok());
    let mut context = RequestContext::new()
        .with_request_id(id.as_str())
        .with_traceparent(traceparent);
    if let Some(ip) = request
        .extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0)
        })
        .map(|a| a.ip())
    {
        context = context.with_client_ip(ip);
    }
    let span = tracing::info_span!(
        "grpc_call",
        method = %method,
        request_id = %id,
        sub = tracing::field::Empty,
    );
    #[cfg(feature = "opentelemetry")]
    if let Some(traceparent) = context.traceparent() {
        traceparent.continue_in(&span);
    }
    let call = async move {
        let mut response = next.run(request).await;
        let elapsed = started.elapsed();
        let outcome = outcome(&response);
        // The method is the span's, written with the line: not repeated.
        tracing::info!(
            code = outcome,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "call answered"
        );
        telemetry::record_request("grpc", method, outcome, elapsed);
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(X_REQUEST_ID, value);
        }
        response
    };
    context.scope(call.instrument(span)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method the server serves keeps its path; anything else is `unknown`.
    #[test]
    fn served_methods_keep_their_path_and_others_are_unknown() {
        for served in [
            "/petstore.v1.PetService/GetPet",
            "/petstore.v1.StoreService/PlaceOrder",
            "/petstore.v1.ChatService/Chat",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(method_label(served), served);
        }
        for other in [
            "/petstore.v1.PetService/getPet",
            "/petstore.v1.PetService/GetPet/",
            "/evil.Svc/Attack",
            "/",
            "",
        ] {
            assert_eq!(method_label(other), "unknown", "{other}");
        }
    }
}
