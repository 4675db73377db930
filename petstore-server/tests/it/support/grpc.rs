//! gRPC clients: a channel to the server, and requests with `authorization` metadata.

use petstore_server::RunningServer;
use tonic::transport::{Channel, Endpoint};

use super::within;

/// A new connection to `url` (`http://host:port`).
pub(crate) async fn connect(url: String) -> Channel {
    let endpoint = Endpoint::from_shared(url).expect("a gRPC URL");
    within("gRPC connection", endpoint.connect())
        .await
        .expect("gRPC connects")
}

/// A new connection to the server's gRPC listener.
pub(crate) async fn channel(s: &RunningServer) -> Channel {
    connect(format!("http://{}", s.grpc_addr.expect("gRPC is served"))).await
}

/// `message` with `authorization` metadata set to `authorization` (any scheme, or none).
pub(crate) fn with_auth<T>(message: T, authorization: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("ASCII metadata"));
    }
    request
}

/// `message` with `authorization: Bearer {token}` when a token is given.
pub(crate) fn bearer<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    with_auth(message, token.map(|t| format!("Bearer {t}")).as_deref())
}
