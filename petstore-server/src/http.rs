//! Serving the HTTP listener: hyper's HTTP/1.1 connection with its header-read timeout,
//! the connection cap, the client address for every request, and graceful shutdown.
//!
//! `axum::serve` exposes none of hyper's connection settings, so the server drives
//! hyper itself. It speaks HTTP/1.1 only: hyper's automatic HTTP/1-or-2 detection
//! reads the first bytes of a connection without any timeout, so a client that
//! connects and sends nothing would hold its socket for ever; HTTP/2 clients use the
//! gRPC listener (and browsers only speak HTTP/2 over TLS, which a proxy in front
//! terminates).

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::connections::ConnectionLimit;

/// Connection-level limits of the HTTP listener.
#[derive(Debug, Clone)]
pub(crate) struct HttpLimits {
    /// How long a client may take to send a request's head, counted from the moment
    /// the connection waits for it: a new connection's first request, and the next
    /// request on a kept-alive one (so it is the idle keep-alive timeout too). The
    /// connection is closed when it passes.
    pub(crate) header_timeout: Duration,
    /// Connections open at once.
    pub(crate) max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets
/// every connection finish the request it is serving, and returns once hyper is done
/// with all of them (upgraded WebSockets are the adapters' to close, on the same
/// signal).
pub(crate) async fn serve(
    mut listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let limit = ConnectionLimit::new("HTTP", limits.max_connections);
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let closing = CancellationToken::new();
    // The HTTP exchanges, not the connections: an upgraded WebSocket leaves hyper
    // (keeping its place under the cap) and its adapter closes it on the shutdown token,
    // without shutdown waiting for the client's answer to the close frame.
    let exchanges = TaskTracker::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            // axum's accept logs and backs off on errors such as `Too many open files`.
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
        };
        let Some(conn) = limit.admit(tcp) else {
            continue;
        };
        // No Nagle delay: streamed SSE and WebSocket frames go out as they are written.
        if let Err(e) = conn.get_ref().set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        // The client address, as `into_make_service_with_connect_info` would give it,
        // for the rate limiter and the logs.
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let connection = http1
            .serve_connection(TokioIo::new(conn), service)
            .with_upgrades();
        let closing = closing.clone();
        exchanges.spawn(async move {
            let mut connection = pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    closing.cancel();
    exchanges.close();
    exchanges.wait().await;
}
