//! Support chat: messages live in the event log.

use chrono::Utc;

use super::PetStore;
use crate::auth::{Principal, Scope};
use crate::backend::Change;
use crate::chat::{ChatMessage, NewChatMessage};
use crate::error::Result;
use crate::event::EventData;
use crate::id::MessageId;

impl PetStore {
    /// Posts a chat message (`chat:write`); it lives in the event log.
    #[tracing::instrument(level = "info", name = "post_chat", skip_all, fields(sub = who.subject()))]
    pub async fn post_chat(&self, who: &Principal, message: NewChatMessage) -> Result<ChatMessage> {
        who.require(Scope::ChatWrite)?;
        message.validate()?;
        let msg = ChatMessage {
            id: MessageId::generate(),
            room: message.room,
            author: who.subject().unwrap_or_default().to_owned(),
            text: message.text.trim().to_owned(),
            sent_at: Utc::now(),
        };
        self.commit(Change::new().event(EventData::ChatMessage(msg.clone())))
            .await?;
        Ok(msg)
    }
}
