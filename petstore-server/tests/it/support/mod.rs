//! What every system suite shares, once: a server on free ports, bounded waits, a small
//! HTTP server for receivers, the store's state, and a client per protocol (`grpc`,
//! `mcp`, `mqtt`, `sse`, `ws`), and the server binary as a child process (`binary`).

pub(crate) mod binary;
#[allow(dead_code)] // the metrics test binaries use it; `it` does not
pub(crate) mod exposition;
pub(crate) mod grpc;
pub(crate) mod mcp;
pub(crate) mod mqtt;
pub(crate) mod process;
pub(crate) mod sse;
pub(crate) mod state;
pub(crate) mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use petstore_core::testing::RecordingStore;
use petstore_core::{MemoryStore, PetStore, Principal, ServiceConfig, TokenAuthority};
use petstore_server::{RunningServer, ServerArgs};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long any one expected answer, frame, message or condition may take.
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// `fut`, or a panic naming `what` after [`WAIT`].
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// Waits until `ready` holds (checked every few milliseconds), at most [`WAIT`].
pub(crate) async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    within(what, async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// The server with its defaults, every listener on a free loopback port.
pub(crate) async fn start() -> RunningServer {
    start_with(ServerArgs::ephemeral()).await
}

/// The server with `args`. Its in-memory backend records every commit, so that
/// [`state::snapshot`] sees writes no listing shows (payments, idempotency keys,
/// payment notice records); a server verifying tokens with JWKS is built as the binary
/// builds it.
pub(crate) async fn start_with(args: ServerArgs) -> RunningServer {
    if args.jwks_url.is_some() {
        return petstore_server::start(args).await.expect("server starts");
    }
    let config = ServiceConfig::default().require_auth_for_reads(args.require_auth_for_reads);
    let auth = match &args.jwt_secret {
        Some(secret) => TokenAuthority::new(secret.as_bytes(), config.token_ttl),
        None => TokenAuthority::random(config.token_ttl),
    };
    let backend = RecordingStore::new(MemoryStore::default());
    let commits = backend.commits();
    let store = PetStore::new(backend, auth, config);
    if args.seed {
        petstore_core::seed::seed(&store)
            .await
            .expect("the seed loads");
    }
    state::record(&store, commits);
    petstore_server::start_with_store(store, args)
        .await
        .expect("server starts")
}

/// Serves `app` on a free loopback port (a webhook receiver, a second listener).
pub(crate) async fn serve(app: axum::Router) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serves");
    });
    (addr, task)
}

/// The suites' principal for reading (and seeding) straight through the service.
pub(crate) fn system() -> Principal {
    Principal::system("system-tests")
}

/// The smallest valid new pet, as the JSON protocols take it.
pub(crate) fn new_pet(name: &str) -> Value {
    json!({ "name": name, "species": "dog", "price": { "amount": "10.00", "currency": "USD" } })
}

/// The first word after `service` at the start of a banner line (`REST`, `gRPC`, ...):
/// that service's address.
pub(crate) fn banner_address(banner: &[String], service: &str) -> Option<String> {
    banner
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(service))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}

/// Reads a `petstore-server` child's stdout up to the end of its banner (the line
/// saying "Press Ctrl-C"), bounded, then keeps draining it in the background so that
/// the child never blocks on a full pipe. Returns the banner's lines.
pub(crate) async fn read_banner(stdout: tokio::process::ChildStdout) -> Vec<String> {
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    within("the server's banner", async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            let done = line.contains("Press Ctrl-C");
            banner.push(line);
            if done {
                break;
            }
        }
    })
    .await;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    banner
}
