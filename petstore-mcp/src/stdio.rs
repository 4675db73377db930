//! MCP over a byte stream: stdin/stdout for `petstore-server mcp-stdio`.

use std::io;

use petstore_core::{PetStore, Principal};
use rmcp::ServiceExt;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::server::PetStoreMcp;

/// Serves MCP over stdin/stdout until the client closes stdin, acting as
/// `principal`. stdout carries only protocol messages: log to stderr.
pub async fn serve_stdio(store: PetStore, principal: Principal) -> io::Result<()> {
    let (stdin, stdout) = rmcp::transport::stdio();
    serve_io(store, principal, stdin, stdout).await
}

/// Serves MCP as newline-delimited JSON-RPC over `reader` and `writer` (the stdio
/// transport over any pipe) until the client closes `reader`, acting as `principal`.
/// Clients of the current protocol and of 2025-11-25 are both served.
pub async fn serve_io<R, W>(
    store: PetStore,
    principal: Principal,
    reader: R,
    writer: W,
) -> io::Result<()>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let running = PetStoreMcp::new(store)
        .with_principal(principal)
        .serve((reader, writer))
        .await
        .map_err(io::Error::other)?;
    running.waiting().await.map_err(io::Error::other)?;
    Ok(())
}
