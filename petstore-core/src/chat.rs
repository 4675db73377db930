//! Support chat messages. They live in the event log (`chat.message` events).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Result, Validator};
use crate::id::MessageId;

/// A message posted to a chat room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChatMessage {
    /// Identifier (`msg_…`).
    pub id: MessageId,
    /// The room, e.g. `support`.
    pub room: String,
    /// The author (token subject).
    pub author: String,
    /// The text, 1 to 2000 characters.
    pub text: String,
    /// When it was posted.
    pub sent_at: DateTime<Utc>,
}

/// What a client posts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChatMessage {
    /// The room: 1 to 64 characters of `[a-z0-9_-]`.
    pub room: String,
    /// The text, 1 to 2000 characters.
    pub text: String,
}

impl NewChatMessage {
    /// Longest accepted text, in characters.
    pub const TEXT_MAX: usize = 2000;

    /// Checks room and text.
    pub fn validate(&self) -> Result<()> {
        let mut v = Validator::default();
        v.check(
            is_room_name(&self.room),
            "room",
            "must be 1 to 64 characters of a-z, 0-9, `_`, `-`",
        );
        let len = self.text.trim().chars().count();
        v.check(len >= 1, "text", "must not be empty");
        v.check(
            len <= Self::TEXT_MAX,
            "text",
            "must have at most 2000 characters",
        );
        if self
            .text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            v.push("text", "must not contain control characters");
        }
        v.finish()
    }
}

/// Whether `room` is a valid room name.
pub fn is_room_name(room: &str) -> bool {
    (1..=64).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
