//! WebSocket clients: the JSON-frame protocol of `/v1/ws` and graphql-transport-ws.

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{WAIT, within};

/// A client WebSocket.
pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The `ws://` URL of `path` on the server whose HTTP base URL is `http`.
pub(crate) fn url(http: &str, path: &str) -> String {
    format!("ws://{}{path}", http.trim_start_matches("http://"))
}

async fn handshake(
    what: &str,
    request: impl IntoClientRequest + Unpin,
) -> Result<(Ws, Response), tungstenite::Error> {
    within(what, tokio_tungstenite::connect_async(request)).await
}

/// A connection, or why not: `HTTP {status}` when the handshake is refused.
pub(crate) async fn connect(request: impl IntoClientRequest + Unpin) -> Result<Ws, String> {
    handshake("WebSocket handshake", request)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::Error::Http(resp) => format!("HTTP {}", resp.status().as_u16()),
            other => other.to_string(),
        })
}

/// A connection that must succeed.
pub(crate) async fn open(url: &str) -> Ws {
    let connected = handshake(url, url).await;
    let (ws, response) = connected.unwrap_or_else(|e| panic!("WebSocket {url}: {e}"));
    assert_eq!(response.status(), 101);
    ws
}

/// A connection to `url` asking for the subprotocol `protocol` (`graphql-transport-ws`,
/// `graphql-ws`).
pub(crate) async fn graphql(url: &str, protocol: &str) -> Result<Ws, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    let protocol = protocol.parse().map_err(|e| format!("{e}"))?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol);
    connect(request).await
}

/// Sends one JSON text frame.
pub(crate) async fn send(ws: &mut Ws, frame: &Value) {
    ws.send(Message::text(frame.to_string()))
        .await
        .expect("WebSocket send");
}

/// The next JSON text frame for which `wanted` holds (others, and pings, skipped).
pub(crate) async fn next_json(ws: &mut Ws, wanted: impl Fn(&Value) -> bool) -> Value {
    within("a WebSocket frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    if wanted(&frame) {
                        return frame;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("WebSocket ended or sent a non-text frame: {other:?}"),
            }
        }
    })
    .await
}

/// What came next on a WebSocket.
#[derive(Debug)]
pub(crate) enum Got {
    Json(Value),
    #[allow(dead_code)] // shown through `Debug` in failure messages
    Text(String),
    Closed(Option<u16>),
    /// The connection ended without a close frame.
    #[allow(dead_code)] // shown through `Debug` in failure messages
    Dropped(String),
}

/// The next text frame or close, whatever it is (never panics; nothing in [`WAIT`] is
/// `Text("<nothing in time>")`).
pub(crate) async fn next(ws: &mut Ws) -> Got {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => return Got::Text("<nothing in time>".into()),
            Ok(None) => return Got::Dropped("end of stream".into()),
            Ok(Some(Err(e))) => return Got::Dropped(e.to_string()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Got::Closed(frame.map(|f| u16::from(f.code)));
            }
            Ok(Some(Ok(Message::Text(text)))) => {
                return match serde_json::from_str(&text) {
                    Ok(v) => Got::Json(v),
                    Err(_) => Got::Text(text.to_string()),
                };
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
}
