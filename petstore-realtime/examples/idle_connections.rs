//! Measures the memory an idle SSE or WebSocket connection costs the server.
//!
//! Run with: `cargo run --release -p petstore-realtime --example idle_connections [N]`
//!
//! Starts the realtime router in process, opens N idle SSE connections and then N
//! idle WebSocket connections (each following the `pets` channel), and reports the
//! growth of the process's resident set (VmRSS in /proc/self/status) per connection.
//! The clients are raw TCP streams that keep no buffers, so nearly all of the growth
//! is the server's: the connection task, hyper / tungstenite state and buffers, the
//! log subscription. Kernel socket buffers are not part of the RSS.

use std::net::SocketAddr;
use std::time::Duration;

use petstore_core::PetStore;
use petstore_realtime::RealtimeConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DEFAULT_CONNECTIONS: usize = 2_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(DEFAULT_CONNECTIONS)
        // Two descriptors per connection (both ends live in this process), two kinds.
        .min(open_files_limit().saturating_sub(64) / 4);

    let store = PetStore::in_memory();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = petstore_realtime::router(
        store.clone(),
        RealtimeConfig::default(),
        &petstore_http::Edge::new(),
        tokio_util::sync::CancellationToken::new(),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Warm up: lazily allocated runtime and allocator state is not per connection.
    let mut warm = Vec::new();
    for _ in 0..50 {
        warm.push(open_sse(addr).await?);
        warm.push(open_ws(addr).await?);
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let base = rss_kib();
    let mut sse = Vec::with_capacity(n);
    for _ in 0..n {
        sse.push(open_sse(addr).await?);
    }
    settle().await;
    let after_sse = rss_kib();
    let mut ws = Vec::with_capacity(n);
    for _ in 0..n {
        ws.push(open_ws(addr).await?);
    }
    settle().await;
    let after_ws = rss_kib();

    // Prove that they are live subscribers: an event reaches the first of each kind.
    store
        .create_pet(
            &petstore_core::Principal::system("example"),
            petstore_core::NewPet {
                name: "Probe".into(),
                species: "cat".into(),
                breed: None,
                age: None,
                status: None,
                tags: vec![],
                photo_urls: vec![],
                price: petstore_core::Money::parse("1.00", petstore_core::Currency::USD)
                    .expect("a valid price"),
            },
        )
        .await
        .expect("the probe pet is created");
    let sse_saw = read_until(&mut sse[0], "pet.created").await;
    let ws_saw = read_until(&mut ws[0], "pet.created").await;

    let per = |from: u64, to: u64| (to.saturating_sub(from)) as f64 / n as f64;
    println!("{n} idle connections of each kind, each following `pets`");
    println!("RSS before: {:.1} MiB", base as f64 / 1024.0);
    println!(
        "SSE:       +{:.1} MiB, {:.1} KiB per connection (live: {sse_saw})",
        (after_sse - base) as f64 / 1024.0,
        per(base, after_sse)
    );
    println!(
        "WebSocket: +{:.1} MiB, {:.1} KiB per connection (live: {ws_saw})",
        (after_ws - after_sse) as f64 / 1024.0,
        per(after_sse, after_ws)
    );
    Ok(())
}

/// An SSE stream of `pets`, once its response head and opening message arrived.
async fn open_sse(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /v1/stream/pets HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    read_until(&mut stream, "retry:").await;
    Ok(stream)
}

/// A WebSocket subscribed to `pets`, once `subscribed` arrived.
async fn open_ws(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            b"GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await?;
    read_until(&mut stream, "\r\n\r\n").await;
    stream
        .write_all(&masked_text(br#"{"type":"subscribe","channel":"pets"}"#))
        .await?;
    read_until(&mut stream, "subscribed").await;
    Ok(stream)
}

/// A client text frame (clients must mask; the payload is short).
fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads until `needle` was seen (true) or the stream ends or stalls (false).
async fn read_until(stream: &mut TcpStream, needle: &str) -> bool {
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => return false,
        }
    }
    true
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// VmRSS of this process, in KiB.
fn rss_kib() -> u64 {
    proc_field("/proc/self/status", "VmRSS:").unwrap_or(0)
}

fn open_files_limit() -> usize {
    proc_field("/proc/self/limits", "Max open files").unwrap_or(1024) as usize
}

fn proc_field(file: &str, prefix: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    line[prefix.len()..].split_whitespace().next()?.parse().ok()
}
