//! The HTTP listener with real sockets: a request head that never ends and an idle
//! keep-alive connection are closed after `--http-header-timeout`, a slow body is cut
//! after `--http-request-timeout` on every HTTP adapter (streams excepted), and
//! `--http-max-connections` closes the connection beyond it, says so once in the log,
//! and lets real requests through again once a place is free.

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::start_tuned;
use crate::support::binary::Binary;
use crate::support::{new_pet, within};

/// Everything the server sends until it closes the connection (a reset counts as a
/// close), at most [`crate::support::WAIT`].
async fn until_closed(tcp: &mut TcpStream, what: &str) -> String {
    let mut received = Vec::new();
    within(what, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_is_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(400);
    let server = start_tuned(|a| a.http_header_timeout = timeout).await;
    // Before the connect: the server's timer starts when it accepts, which a loaded
    // machine may do before this task runs again.
    let started = Instant::now();
    let mut tcp = TcpStream::connect(server.http_addr).await.unwrap();
    // A slowloris: a head that is never finished (no blank line).
    tcp.write_all(b"GET /v1/pets HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1")
        .await
        .unwrap();
    let answer = until_closed(&mut tcp, "the server to close a never-finished head").await;
    let took = started.elapsed();
    assert!(took >= timeout, "closed after {took:?}, before the timeout");
    assert!(!answer.contains(" 200 "), "{answer}");

    // The same for a connection that sends nothing at all.
    let mut silent = TcpStream::connect(server.http_addr).await.unwrap();
    until_closed(&mut silent, "the server to close a silent connection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(400);
    let server = start_tuned(|a| a.http_header_timeout = timeout).await;
    let mut tcp = TcpStream::connect(server.http_addr).await.unwrap();
    // Before the request is sent: the idle timer starts once it is answered.
    let started = Instant::now();
    tcp.write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    // The response comes at once; the connection stays open for the next request
    // (HTTP/1.1 keep-alive) until the timeout.
    let answer = until_closed(&mut tcp, "the server to close an idle connection").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() >= timeout,
        "closed after {:?}: before the idle timeout",
        started.elapsed()
    );
}

/// POSTs a head announcing a body of 10,000 bytes to `path`, then sends only its first
/// bytes; returns the server's answer once it closed the connection.
async fn slow_body(server: &petstore_server::RunningServer, path: &str, token: &str) -> String {
    let mut tcp = TcpStream::connect(server.http_addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: 10000\r\n\r\n{{\"a\":"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    until_closed(
        &mut tcp,
        &format!("the server to cut the slow body to {path}"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_cut_after_the_request_timeout_on_every_adapter() {
    let timeout = Duration::from_millis(500);
    let server = start_tuned(|a| a.http_request_timeout = timeout).await;
    let token = server.dev_token.clone();
    for path in [
        "/graphql",
        "/v1/webhooks",
        "/v1/payments/webhook",
        "/mcp",
        "/v1/pets",
    ] {
        let started = Instant::now();
        let answer = slow_body(&server, path, &token).await;
        let took = started.elapsed();
        assert!(took >= timeout, "{path}: closed after {took:?}");
        // REST answers its own timeout (503), the others 408; both as a problem.
        assert!(
            answer.starts_with("HTTP/1.1 408") || answer.starts_with("HTTP/1.1 503"),
            "{path}: {answer}"
        );
        assert!(
            answer.contains("application/problem+json"),
            "{path}: {answer}"
        );
        assert!(answer.contains("\"timeout\""), "{path}: {answer}");
    }
    // Nothing was created by the cut requests, and the server still answers.
    let status = reqwest::get(format!("{}/livez", server.http_url()))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_outlive_the_request_and_header_timeouts() {
    let timeout = Duration::from_millis(300);
    let server = start_tuned(|a| {
        a.http_request_timeout = timeout;
        a.http_header_timeout = timeout;
    })
    .await;
    let base = server.http_url();
    let sse = reqwest::get(format!("{base}/v1/stream/pets"))
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let mut sse = sse.bytes_stream();
    let ws_url = format!("ws://{}/v1/ws", server.http_addr);
    let (mut ws, _) = within(
        "the WebSocket handshake",
        tokio_tungstenite::connect_async(ws_url),
    )
    .await
    .unwrap();

    // Time passing is what is tested here: three timeouts with nothing sent.
    tokio::time::sleep(timeout * 3).await;

    let pet = reqwest::Client::new()
        .post(format!("{base}/v1/pets"))
        .bearer_auth(&server.dev_token)
        .json(&new_pet("Late"))
        .send()
        .await
        .unwrap();
    assert_eq!(pet.status(), 201);
    within("the pet's event on the SSE stream", async {
        let mut seen = String::new();
        while !seen.contains("Late") {
            let chunk = sse.next().await.expect("the stream is open").unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    within("the pong", async {
        loop {
            match ws.next().await.expect("the WebSocket is open").unwrap() {
                Message::Text(t) if t.contains("pong") => break,
                _ => {}
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_refuses_one_more_logs_once_and_frees_its_places() {
    let server = Binary::start(&["--http-max-connections", "2"]).await;
    let addr = server.http.trim_start_matches("http://").to_owned();
    let first = TcpStream::connect(&addr).await.unwrap();
    let mut second = TcpStream::connect(&addr).await.unwrap();
    // The second place is taken once the server answers on it.
    second
        .write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    within(
        "an answer on the second connection",
        second.read_exact(&mut buf),
    )
    .await
    .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");

    // Three more: each closed at once, without an answer.
    for n in 3..=5 {
        let mut refused = TcpStream::connect(&addr).await.unwrap();
        let _ = refused
            .write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await;
        let answer = until_closed(&mut refused, "the refused connection to be closed").await;
        assert!(answer.is_empty(), "connection {n} was served: {answer}");
    }
    server.until_logged("connection cap reached").await;
    assert_eq!(
        server.logged("connection cap reached").len(),
        1,
        "one log line for the whole episode"
    );

    // A place frees up when a connection ends, and a real request gets through.
    drop(first);
    let client = reqwest::Client::new();
    within("a request once a place is free", async {
        loop {
            match client.get(format!("{}/v1/pets", server.http)).send().await {
                Ok(r) if r.status() == 200 => break,
                // Until the server has seen the close, the cap still holds.
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
}
