//! The WebSocket table: frames that are not JSON, of the wrong shape, oversize or not
//! UTF-8, unknown channels and types, chat limits, and credentials (in the handshake and
//! in an `auth` frame) on `/v1/ws`. Refused frames keep the connection open.

use bytes::Bytes;
use futures_util::SinkExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use super::{Matrix, Tokens, expect_eq, nested, start};
use crate::support::ws::{self, Got, Ws, next as next_ws};

const WS_ROWS: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    Anonymous,
    Reader,
}

/// What a WebSocket row must get.
#[derive(Debug, Clone)]
enum WsExpect {
    /// An error frame with this code; the connection stays open.
    Error(&'static str),
    /// An error frame with this code, then a close with this code.
    ErrorThenClose(&'static str, u16),
    /// The connection is closed (with this code, when the server can send one).
    Closed(Option<u16>),
    /// The handshake is refused with this HTTP status.
    Refused(u16),
}

async fn ws_connect(base: &str, token: Option<&str>) -> Result<Ws, String> {
    let mut url = ws::url(base, "/v1/ws");
    if let Some(t) = token {
        url.push_str(&format!("?token={t}"));
    }
    ws::connect(url).await
}

/// Sends `{"type":"ping","id":…}` and waits for its pong on the same connection.
async fn ws_ping(ws: &mut Ws, id: &str) -> Result<(), String> {
    ws.send(Message::text(json!({"type": "ping", "id": id}).to_string()))
        .await
        .map_err(|e| format!("send ping: {e}"))?;
    loop {
        match next_ws(ws).await {
            Got::Json(v) if v["type"] == "pong" && v["id"] == id => return Ok(()),
            Got::Json(v) if v["type"] == "event" || v["type"] == "chat.message" => continue,
            other => return Err(format!("expected pong {id}, got {other:?}")),
        }
    }
}

/// Reads frames until an error frame; returns its code.
async fn ws_error(ws: &mut Ws) -> Result<String, String> {
    loop {
        match next_ws(ws).await {
            Got::Json(v) if v["type"] == "error" => {
                if v["message"].as_str().is_none_or(str::is_empty) {
                    return Err(format!("error frame without a message: {v}"));
                }
                return Ok(v["code"].as_str().unwrap_or("").to_owned());
            }
            Got::Json(v)
                if ["event", "chat.message", "subscribed", "unsubscribed"]
                    .contains(&v["type"].as_str().unwrap_or("")) =>
            {
                continue;
            }
            other => return Err(format!("expected an error frame, got {other:?}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_refuses_hostile_frames_and_keeps_the_connection() {
    let s = start().await;
    let base = s.http_url();
    let t = Tokens::new();
    let text = |v: Value| Message::text(v.to_string());
    let raw = |s: &str| Message::text(s.to_owned());
    let big = "x".repeat(70 * 1024);
    let invalid_utf8 = Message::Frame(Frame::message(
        Bytes::from_static(b"{\"type\":\"ping\",\"x\":\"\xff\xfe\"}"),
        OpCode::Data(Data::Text),
        true,
    ));

    use Who::*;
    use WsExpect::*;
    let rows: Vec<(&str, Who, Option<Message>, WsExpect)> = vec![
        ("not JSON", Admin, Some(raw("nope")), Error("bad_request")),
        (
            "JSON array",
            Admin,
            Some(raw("[1,2]")),
            Error("bad_request"),
        ),
        (
            "no type",
            Admin,
            Some(text(json!({"channel": "pets"}))),
            Error("bad_request"),
        ),
        (
            "type is a number",
            Admin,
            Some(text(json!({"type": 1}))),
            Error("bad_request"),
        ),
        (
            "unknown type",
            Admin,
            Some(text(json!({"type": "dance"}))),
            Error("bad_request"),
        ),
        (
            "subscribe without a channel",
            Admin,
            Some(text(json!({"type": "subscribe"}))),
            Error("bad_request"),
        ),
        (
            "channel is a number",
            Admin,
            Some(text(json!({"type": "subscribe", "channel": 7}))),
            Error("bad_request"),
        ),
        (
            "unknown channel",
            Admin,
            Some(text(json!({"type": "subscribe", "channel": "admin"}))),
            Error("invalid_input"),
        ),
        (
            "path traversal channel",
            Admin,
            Some(text(
                json!({"type": "subscribe", "channel": "pets/../../etc/passwd"}),
            )),
            Error("invalid_input"),
        ),
        (
            "SQL injection channel",
            Admin,
            Some(text(
                json!({"type": "subscribe", "channel": "pets'; DROP TABLE pets;--"}),
            )),
            Error("invalid_input"),
        ),
        (
            "malformed since",
            Admin,
            Some(text(
                json!({"type": "subscribe", "channel": "pets", "since": "zzz"}),
            )),
            Error("bad_request"),
        ),
        (
            "since is a huge number",
            Admin,
            Some(raw(
                r#"{"type":"subscribe","channel":"pets","since":1e999}"#,
            )),
            Error("bad_request"),
        ),
        (
            "200 nested arrays",
            Admin,
            Some(raw(&format!(r#"{{"type":"ping","x":{}}}"#, nested(200)))),
            Error("bad_request"),
        ),
        (
            "unsubscribe from an unsubscribed channel",
            Admin,
            Some(text(json!({"type": "unsubscribe", "channel": "orders"}))),
            Error("not_subscribed"),
        ),
        (
            "chat text of 2001 characters",
            Admin,
            Some(text(
                json!({"type": "chat.send", "room": "support", "text": "x".repeat(2001)}),
            )),
            Error("invalid_input"),
        ),
        (
            "chat room with SQL injection",
            Admin,
            Some(text(
                json!({"type": "chat.send", "room": "support'; DROP TABLE chat;--", "text": "hi"}),
            )),
            Error("invalid_input"),
        ),
        (
            "chat text is a number",
            Admin,
            Some(text(
                json!({"type": "chat.send", "room": "support", "text": 5}),
            )),
            Error("bad_request"),
        ),
        (
            "binary frame",
            Admin,
            Some(Message::binary(Bytes::from_static(b"\x00\x01\x02"))),
            Error("bad_request"),
        ),
        (
            "second auth on an authenticated connection",
            Admin,
            Some(text(json!({"type": "auth", "token": t.all}))),
            Error("bad_request"),
        ),
        (
            "anonymous chat.send",
            Anonymous,
            Some(text(
                json!({"type": "chat.send", "room": "support", "text": "hi"}),
            )),
            Error("unauthenticated"),
        ),
        (
            "anonymous chat subscription",
            Anonymous,
            Some(text(json!({"type": "subscribe", "channel": "chat"}))),
            Error("unauthenticated"),
        ),
        (
            "auth frame with a forged token",
            Anonymous,
            Some(text(json!({"type": "auth", "token": t.forged}))),
            Error("unauthenticated"),
        ),
        (
            "auth frame with an expired token",
            Anonymous,
            Some(text(json!({"type": "auth", "token": t.expired}))),
            Error("unauthenticated"),
        ),
        (
            "auth frame with an alg none token",
            Anonymous,
            Some(text(json!({"type": "auth", "token": t.none}))),
            Error("unauthenticated"),
        ),
        (
            "chat.send without chat:write",
            Reader,
            Some(text(
                json!({"type": "chat.send", "room": "support", "text": "hi"}),
            )),
            Error("forbidden"),
        ),
        (
            "70 KiB message",
            Admin,
            Some(text(json!({"type": "ping", "pad": big}))),
            ErrorThenClose("message_too_large", 1009),
        ),
        (
            "invalid UTF-8 text frame",
            Admin,
            Some(invalid_utf8),
            Closed(Some(1007)),
        ),
        ("?token= forged", Admin, None, Refused(401)),
        ("?token= expired", Admin, None, Refused(401)),
        ("?token= alg none", Admin, None, Refused(401)),
    ];
    let handshake_tokens = [t.forged.clone(), t.expired.clone(), t.none.clone()];
    let mut handshakes = handshake_tokens.iter();

    let token_of = |who: Who| match who {
        Admin => Some(t.all.clone()),
        Anonymous => None,
        Reader => Some(t.reader.clone()),
    };
    let mut sockets: Vec<(Who, Ws)> = Vec::new();
    for who in [Admin, Anonymous, Reader] {
        sockets.push((
            who,
            ws_connect(&base, token_of(who).as_deref())
                .await
                .expect("connects"),
        ));
    }

    let mut matrix = Matrix::new("WebSocket", &s.store).await;
    for (i, (name, who, message, expect)) in rows.into_iter().enumerate() {
        let slot = sockets.iter().position(|(w, _)| *w == who).expect("socket");
        let ws = &mut sockets[slot].1;
        let ping_id = format!("after-{i}");
        let (answer, follow) = match (&expect, message) {
            (Refused(status), None) => {
                let token = handshakes.next().expect("a handshake token");
                let answer = match ws_connect(&base, Some(token)).await {
                    Ok(_) => Err("the handshake was accepted".to_owned()),
                    Err(e) => expect_eq("handshake", e, format!("HTTP {status}")),
                };
                (answer, ws_ping(ws, &ping_id).await)
            }
            (_, Some(message)) => {
                let sent = ws.send(message).await.map_err(|e| format!("send: {e}"));
                let answer = match (sent, &expect) {
                    (Err(e), _) => Err(e),
                    (Ok(()), Error(code)) => ws_error(ws)
                        .await
                        .and_then(|got| expect_eq("error code", got.as_str(), code)),
                    (Ok(()), ErrorThenClose(code, close)) => match ws_error(ws).await {
                        Ok(got) if got == *code => match next_ws(ws).await {
                            Got::Closed(c) => expect_eq("close code", c, Some(*close)),
                            other => Err(format!("expected close {close}, got {other:?}")),
                        },
                        Ok(got) => Err(format!("expected error {code}, got {got}")),
                        Err(e) => Err(e),
                    },
                    (Ok(()), Closed(code)) => match next_ws(ws).await {
                        Got::Closed(c) if code.is_none() || c == *code => Ok(()),
                        Got::Closed(c) => Err(format!("closed with {c:?}, expected {code:?}")),
                        other => Err(format!("expected the connection to close, got {other:?}")),
                    },
                    (Ok(()), Refused(_)) => unreachable!("handshake rows send nothing"),
                };
                let follow = match &expect {
                    // These end the connection by design: a new one must work.
                    ErrorThenClose(..) | Closed(_) => {
                        match ws_connect(&base, token_of(who).as_deref()).await {
                            Ok(mut fresh) => {
                                let ok = ws_ping(&mut fresh, &ping_id).await;
                                sockets[slot].1 = fresh;
                                ok
                            }
                            Err(e) => Err(format!("reconnect: {e}")),
                        }
                    }
                    _ => ws_ping(ws, &ping_id).await,
                };
                (answer, follow)
            }
            (_, None) => unreachable!("only handshake rows send nothing"),
        };
        matrix.row(&s.store, name, answer, follow).await;
    }
    matrix.finish(WS_ROWS);
    s.shutdown().await.unwrap();
}
