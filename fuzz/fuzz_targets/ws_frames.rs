//! WebSocket client frames: each input goes through petstore-realtime's real frame
//! parser (`__parse_client_frame`), then through the core parsers the adapter applies
//! to the frame's fields: `channel` (`Channel::from_str`), `since`
//! (`ResumeToken::from_str`) and `room` (`is_room_name`).
//!
//! Invariants: nothing panics; a JSON value serialises and parses again; every parsed
//! channel and token survives `parse(display(x)) == x`; a valid room name makes a
//! valid `chat/{room}` channel.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petstore_core::{Channel, ResumeToken, is_room_name};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // The adapter's own parser: a verdict, never a panic; non-JSON is a bad request.
        let verdict = petstore_realtime::__parse_client_frame(text);
        if serde_json::from_str::<Value>(text).is_err() {
            assert_eq!(verdict, Err("bad_request"));
        }
    }
    let Ok(frame) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    // What the adapter echoes (a frame's `id`) serialises and parses again. Not
    // compared for equality: without serde_json's `float_roundtrip` feature a float
    // of more than 17 significant digits may come back one ulp off.
    let text = serde_json::to_vec(&frame).expect("a value serialises");
    let _: Value = serde_json::from_slice(&text).expect("a serialised value parses");

    let Some(fields) = frame.as_object() else {
        return;
    };
    if let Some(Value::String(channel)) = fields.get("channel")
        && let Ok(parsed) = channel.parse::<Channel>()
    {
        let shown = parsed.to_string();
        assert_eq!(
            shown.parse::<Channel>().expect("a shown channel parses"),
            parsed
        );
        let json = serde_json::to_string(&parsed).expect("serialises");
        assert_eq!(
            serde_json::from_str::<Channel>(&json).expect("parses"),
            parsed
        );
        let _ = parsed.read_scope();
    }
    if let Some(Value::String(since)) = fields.get("since")
        && let Ok(token) = since.parse::<ResumeToken>()
    {
        assert_eq!(
            token.to_string().parse::<ResumeToken>().expect("parses"),
            token
        );
    }
    if let Some(Value::String(room)) = fields.get("room")
        && is_room_name(room)
    {
        assert_eq!(
            format!("chat/{room}")
                .parse::<Channel>()
                .expect("a room's channel parses"),
            Channel::ChatRoom(room.clone())
        );
    }
});
