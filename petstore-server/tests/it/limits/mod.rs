//! Connection and resource limits (issue 20): HTTP header, idle and body timeouts and
//! the connection cap (`http`), gRPC keepalive, per-connection streams and message
//! sizes (`grpc`), SSE streams per caller and MCP sessions (`streams`), and the memory
//! one GraphQL request may cost (`memory`).

mod grpc;
mod http;
mod memory;
mod streams;

use petstore_server::{RunningServer, ServerArgs};

/// The server with `tune` applied to its settings (no MQTT).
async fn start_tuned(tune: impl FnOnce(&mut ServerArgs)) -> RunningServer {
    let mut args = ServerArgs::ephemeral();
    args.no_mqtt = true;
    tune(&mut args);
    crate::support::start_with(args).await
}
