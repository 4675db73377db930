//! Support chat messages. They live in the event log (`chat.message` events).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Result, Validator};
use crate::id::MessageId;
use crate::rules::{CHAT_TEXT, ROOM};

/// A message posted to a chat room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChatMessage {
    /// Identifier (`msg_…`).
    pub id: MessageId,
    /// The room, e.g. `support`.
    pub room: String,
    /// The author (token subject).
    pub author: String,
    /// The text.
    pub text: String,
    /// When it was posted.
    pub sent_at: DateTime<Utc>,
}

/// What a client posts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChatMessage {
    /// The room, e.g. `support`.
    #[schemars(length(min = ROOM.min, max = ROOM.max), pattern(ROOM.pattern))]
    pub room: String,
    /// The text (it may span lines).
    #[schemars(length(min = CHAT_TEXT.min, max = CHAT_TEXT.max), pattern(CHAT_TEXT.pattern))]
    pub text: String,
}

impl NewChatMessage {
    /// Longest accepted text, in characters.
    pub const TEXT_MAX: usize = 2000;

    /// Checks room and text.
    pub fn validate(&self) -> Result<()> {
        let mut v = Validator::default();
        v.text("room", &self.room, &ROOM);
        v.text("text", &self.text, &CHAT_TEXT);
        v.finish()
    }
}

/// What a room name matches: 1 to 64 characters of `a-z`, `0-9`, `_` and `-`.
pub const ROOM_PATTERN: &str = "^[a-z0-9_-]{1,64}$";

/// Whether `room` is a valid room name.
pub fn is_room_name(room: &str) -> bool {
    ROOM.accepts(room)
}
