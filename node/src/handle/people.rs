//! The handle's calls about other accounts: contacts and blocking.

use tim_protocol::{AccountId, ContactAction, ContactState};
use tim_storage::{ContactRecord, StoredMessage};

use super::Node;
use crate::{command::Command, ContactPresence, Inbound, MyPresence, Result};

impl Node {
    /// Does `action` for `account` (a contact request with a note, accept, reject or remove):
    /// signs it, stores the new state and queues the operation for `account`'s node in one
    /// write, then sends it. Returns the new state; `4101` for a request to a contact, `4109` for
    /// an accept or reject with no request waiting or a remove with nothing to remove, `4110`
    /// for a blocked account.
    pub async fn contact(&self, account: AccountId, action: ContactAction) -> Result<ContactState> {
        let (state, deliveries) = self.blocking(move |core| core.contact_local(account, action)).await?;
        for delivery in deliveries {
            self.cmd_tx.send(Command::Deliver(delivery)).await?;
        }
        Ok(state)
    }

    /// Sets the local account's display name (at most 64 bytes; empty clears it) and sends it,
    /// signed, to every account it has a contact state with; later contacts get it when a request
    /// or an accept goes out.
    pub async fn set_profile(&self, name: String) -> Result<()> {
        let deliveries = self.blocking(move |core| core.set_profile(name)).await?;
        for delivery in deliveries {
            self.cmd_tx.send(Command::Deliver(delivery)).await?;
        }
        Ok(())
    }

    /// The local account's display name, if it set one.
    pub async fn profile(&self) -> Result<Option<String>> {
        self.blocking(|core| Ok(core.store.profile()?)).await
    }

    /// Every account with a contact state (`requested`, `incoming` or `contact`), in id order.
    pub async fn contacts(&self) -> Result<Vec<(AccountId, ContactRecord)>> {
        self.blocking(|core| Ok(core.store.contacts()?)).await
    }

    /// Sets what the local account shows its contacts (availability and text; `status: None` is
    /// invisible: nothing is sent) and tells them now.
    pub async fn set_presence(&self, presence: MyPresence) -> Result<()> {
        let notices = self.blocking(move |core| core.set_presence(presence)).await?;
        for notice in notices {
            self.cmd_tx.send(Command::Deliver(notice)).await?;
        }
        Ok(())
    }

    /// What the local account shows its contacts.
    pub fn presence(&self) -> Result<MyPresence> {
        Ok(self.core()?.my_presence())
    }

    /// What `account` (a contact) last said in this run, `offline` once not heard from for
    /// [`crate::PRESENCE_TIMEOUT`]; `None` if never heard from.
    pub fn presence_of(&self, account: &AccountId) -> Result<Option<ContactPresence>> {
        Ok(self.core()?.presence_of(account))
    }

    /// Tells every contact the local account goes offline, waiting at most `wait` for their
    /// nodes to take it (the node stops next).
    pub(super) async fn announce_offline(&self, wait: std::time::Duration) {
        let notices = self
            .blocking(|core| core.presence_notices(Some(tim_protocol::Availability::Offline)))
            .await
            .unwrap_or_default();
        let mut replies = Vec::new();
        for delivery in notices {
            let (reply, rx) = tokio::sync::oneshot::channel();
            if self.cmd_tx.send(Command::Stream { delivery, reply }).await.is_err() {
                return;
            }
            replies.push(rx);
        }
        let _ = tokio::time::timeout(wait, futures::future::join_all(replies)).await;
    }

    /// Who may put direct messages into this account's history.
    pub async fn inbound(&self) -> Result<Inbound> {
        Ok(self.core()?.inbound_setting())
    }

    /// Changes who may message this account (kept across restarts). Back to
    /// [`Inbound::Anyone`], every held request joins the history.
    pub async fn set_inbound(&self, inbound: Inbound) -> Result<()> {
        self.blocking(move |core| core.set_inbound_setting(inbound)).await
    }

    /// The direct messages held as requests (under [`Inbound::Contacts`]), by sender, oldest
    /// first. Accepting a sender ([`Node::contact`] with a request, which accepts its request if
    /// one waits) moves them into the history; [`Node::reject_requests`] destroys them.
    pub async fn requests(&self) -> Result<Vec<(AccountId, Vec<StoredMessage>)>> {
        self.blocking(|core| Ok(core.store.requests()?)).await
    }

    /// Destroys the messages `account` sent while not admitted (shredded like a burned body),
    /// and declines its contact request if one waits. Returns how many messages went.
    pub async fn reject_requests(&self, account: AccountId) -> Result<usize> {
        let (destroyed, deliveries) = self
            .blocking(move |core| {
                let waiting = core
                    .store
                    .contact(&account)?
                    .is_some_and(|r| r.state == ContactState::Incoming);
                let deliveries = if waiting {
                    core.contact_local(account, ContactAction::Reject)?.1
                } else {
                    Vec::new()
                };
                Ok((core.store.reject_requests(&account)?, deliveries))
            })
            .await?;
        for delivery in deliveries {
            self.cmd_tx.send(Command::Deliver(delivery)).await?;
        }
        Ok(destroyed)
    }

    /// Blocks `account`: its direct messages, revokes, burns, receipts and contact operations
    /// are refused with `4110 blocked` (its node gets that answer), nothing more is sent to it,
    /// and what waited in the outbox for it is dropped. Survives a restart. Returns how many
    /// queued items were dropped. Room messages are not affected (see docs/api.md, "Blocking").
    pub async fn block(&self, account: AccountId) -> Result<usize> {
        let dropped = self.blocking(move |core| core.block(account)).await?;
        self.cmd_tx.send(Command::CancelAccount { account }).await?;
        Ok(dropped)
    }

    /// Lifts a block; returns whether `account` was blocked.
    pub async fn unblock(&self, account: AccountId) -> Result<bool> {
        self.blocking(move |core| core.unblock(account)).await
    }

    /// The accounts the local account blocked, in id order.
    pub async fn blocks(&self) -> Result<Vec<AccountId>> {
        self.blocking(|core| Ok(core.store.blocks()?)).await
    }
}
