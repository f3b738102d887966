//! The handle's inbox calls: every conversation, newest first, with its unread count.

use tim_storage::InboxPage;

use super::Node;
use crate::{core::now_ms, Conversation, Result};

impl Node {
    /// Up to `limit` (1 to 200) conversations, most recently active first, after the cursor
    /// `before` of an earlier page ([`InboxPage::next`]). Each carries its newest entry (a
    /// message, or the marker of a revoked or burned one) and how many received messages in it
    /// are unread.
    pub async fn inbox(&self, before: Option<Vec<u8>>, limit: usize) -> Result<InboxPage> {
        self.blocking(move |core| Ok(core.store.inbox(before.as_deref(), limit)?))
            .await
    }

    /// Marks every unread received message of `conversation` read, except burn-after-reading
    /// ones (opening those with [`Node::mark_read`] starts their timers). Returns how many were
    /// marked.
    pub async fn mark_conversation_read(&self, conversation: &Conversation) -> Result<usize> {
        let conv = conversation.to_storage(&self.account);
        self.blocking(move |core| Ok(core.store.mark_conversation_read(&conv, now_ms())?))
            .await
    }
}
