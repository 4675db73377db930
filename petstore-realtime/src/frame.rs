//! The JSON text frames of the WebSocket protocol.

use petstore_core::{Channel, ChatMessage, Event, EventType, FieldError, ResumeToken};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::WireError;

/// What a client sends. Every frame may also carry an `id` (any JSON value) that the
/// direct reply (`authenticated`, `subscribed`, `unsubscribed`, `chat.sent`, `pong`,
/// `error`) echoes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub(crate) enum ClientFrame {
    /// Authenticates an anonymous connection.
    #[serde(rename = "auth")]
    Auth {
        /// A bearer token (JWT), with or without `Bearer `.
        token: String,
    },
    /// Follows a channel, optionally replaying what came after `since`.
    #[serde(rename = "subscribe")]
    Subscribe {
        /// `pets`, `orders`, `inventory`, `chat`, `pets/{id}`, `orders/{id}`, `chat/{room}`.
        channel: String,
        /// A resume token (an event's `offset`, or a `subscribed` frame's `position`).
        #[serde(default)]
        since: Option<String>,
    },
    /// Stops following a channel.
    #[serde(rename = "unsubscribe")]
    Unsubscribe {
        /// The channel.
        channel: String,
    },
    /// Posts a chat message (needs `chat:write`).
    #[serde(rename = "chat.send")]
    ChatSend {
        /// The room, e.g. `support`.
        room: String,
        /// The text.
        text: String,
    },
    /// Asks for a `pong`.
    #[serde(rename = "ping")]
    Ping,
}

/// Parses a text frame into its `id` (if any) and the frame, or the reason it is bad.
pub(crate) fn parse(text: &str) -> (Option<Value>, Result<ClientFrame, WireError>) {
    let mut value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            return (
                None,
                Err(WireError::bad_request(format!(
                    "the frame is not JSON: {e}"
                ))),
            );
        }
    };
    let Some(object) = value.as_object_mut() else {
        return (
            None,
            Err(WireError::bad_request(
                "a frame must be a JSON object with a `type`",
            )),
        );
    };
    let id = object.remove("id");
    let frame = match object.get("type") {
        None => Err(WireError::bad_request("the frame has no `type`")),
        Some(Value::String(_)) => serde_json::from_value(value)
            .map_err(|e| WireError::bad_request(format!("bad frame: {e}"))),
        Some(_) => Err(WireError::bad_request("`type` must be a string")),
    };
    (id, frame)
}

/// What the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub(crate) enum ServerFrame<'a> {
    /// The `auth` frame was accepted.
    #[serde(rename = "authenticated")]
    Authenticated {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
        /// The token subject.
        subject: &'a str,
        /// The granted scopes.
        scopes: Vec<&'static str>,
    },
    /// A subscription is active.
    #[serde(rename = "subscribed")]
    Subscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
        channel: &'a Channel,
        /// The subscription delivers every event after this resume token.
        position: ResumeToken,
        /// True when `since` was given and honoured (the missed events follow).
        recovered: bool,
    },
    /// A subscription ended.
    #[serde(rename = "unsubscribed")]
    Unsubscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
        channel: &'a Channel,
    },
    /// An event on a subscribed channel.
    #[serde(rename = "event")]
    Event {
        channel: &'a Channel,
        event: &'a Event,
    },
    /// A chat message on a subscribed chat channel.
    #[serde(rename = "chat.message")]
    ChatMessage {
        channel: &'a Channel,
        /// The message (the event's `data`).
        message: &'a Value,
        /// The whole envelope (its `offset` resumes the channel).
        event: &'a Event,
    },
    /// The sender's `chat.send` was stored.
    #[serde(rename = "chat.sent")]
    ChatSent {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
        message: &'a ChatMessage,
    },
    /// A frame could not be honoured. The connection stays open.
    #[serde(rename = "error")]
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a Channel>,
        #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
        errors: &'a [FieldError],
        /// For `resume_expired`: why (`expired`, `epoch_mismatch`).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        /// For `resume_expired`: the live subscription starts after this token.
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_from: Option<ResumeToken>,
    },
    /// The reply to `ping`.
    #[serde(rename = "pong")]
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
}

impl ServerFrame<'_> {
    /// The frame as JSON text.
    pub(crate) fn to_text(&self) -> String {
        // Plain data: serialising into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The frame that carries `event` to a subscriber of `channel`: `chat.message` for
/// chat messages, `event` for everything else.
pub(crate) fn delivery(channel: &Channel, event: &Event) -> String {
    if event.event_type == EventType::ChatMessage {
        ServerFrame::ChatMessage {
            channel,
            message: &event.data,
            event,
        }
    } else {
        ServerFrame::Event { channel, event }
    }
    .to_text()
}

/// The `error` frame for `error`.
pub(crate) fn error(id: Option<&Value>, channel: Option<&Channel>, error: &WireError) -> String {
    ServerFrame::Error {
        id,
        code: error.code,
        message: &error.message,
        channel,
        errors: &error.fields,
        reason: None,
        resume_from: None,
    }
    .to_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_with_ids_and_bad_ones_say_why() {
        let (id, frame) = parse(r#"{"type":"subscribe","channel":"orders","id":7}"#);
        assert_eq!(id, Some(Value::from(7)));
        assert_eq!(
            frame.unwrap(),
            ClientFrame::Subscribe {
                channel: "orders".into(),
                since: None
            }
        );
        assert_eq!(parse(r#"{"type":"ping"}"#).1.unwrap(), ClientFrame::Ping);
        // Unknown fields are ignored, so that clients may add their own.
        assert_eq!(
            parse(r#"{"type":"ping","trace":"abc"}"#).1.unwrap(),
            ClientFrame::Ping
        );
        assert_eq!(
            parse(r#"{"type":"subscribe","channel":"pets","since":null}"#)
                .1
                .unwrap(),
            ClientFrame::Subscribe {
                channel: "pets".into(),
                since: None
            }
        );
        for (bad, needle) in [
            ("nope", "not JSON"),
            ("[1]", "JSON object"),
            (r#"{"channel":"pets"}"#, "no `type`"),
            (r#"{"type":1}"#, "must be a string"),
            (r#"{"type":"dance"}"#, "unknown variant"),
            (r#"{"type":"subscribe"}"#, "missing field `channel`"),
        ] {
            let err = parse(bad).1.unwrap_err();
            assert_eq!(err.code, "bad_request");
            assert!(err.message.contains(needle), "{bad}: {}", err.message);
        }
    }
}
