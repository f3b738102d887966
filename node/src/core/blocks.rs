//! Blocked accounts: a blocked account's direct messages, revokes, burns, receipts, contact
//! operations and streams are refused
//! with `4110 blocked` before anything is stored, and nothing new is sent to it. The set lives in
//! the store (so it survives a restart) and in memory (so the check costs no read).
//!
//! Rooms are shared replicas: a member's node also serves the room to others catching up, so a
//! block does not refuse a blocked member's room messages (that would leave a hole in what this
//! node relays and serves).

use tim_protocol::{AccountId, Envelope, Via};

use super::Core;
use crate::{Error, Result};

impl Core {
    /// Whether the local account blocked `account`.
    pub(crate) fn is_blocked(&self, account: &AccountId) -> bool {
        self.blocked.lock().map(|b| b.contains(account)).unwrap_or(false)
    }

    /// Blocks `account`: from now on its direct items are refused, and what the outbox held for
    /// it is dropped. Returns how many outbox entries were dropped.
    pub(crate) fn block(&self, account: AccountId) -> Result<usize> {
        if account == self.account {
            return Err(Error::BadParameters("an account cannot block itself".into()));
        }
        let dropped = self.store.block(&account)?;
        // What it sent while not admitted goes too, shredded like a burned body.
        self.store.reject_requests(&account)?;
        if let Ok(mut blocked) = self.blocked.lock() {
            blocked.insert(account);
        }
        Ok(dropped)
    }

    /// Lifts a block; returns whether `account` was blocked.
    pub(crate) fn unblock(&self, account: AccountId) -> Result<bool> {
        let was = self.store.unblock(&account)?;
        if let Ok(mut blocked) = self.blocked.lock() {
            blocked.remove(&account);
        }
        Ok(was)
    }

    /// Refuses (`4110`) a direct item signed by a blocked account: its messages, its revokes and
    /// burns, its receipts.
    pub(super) fn check_not_blocked(&self, envelope: &Envelope, via: &Via) -> Result<()> {
        if *via != Via::Direct {
            return Ok(());
        }
        let signer = match envelope {
            Envelope::Message(m) => m.head().from,
            Envelope::Control(c) => c.by,
            Envelope::Receipt(r) => r.by,
            Envelope::Contact(c) => c.from,
            Envelope::Stream(s) => s.from,
            Envelope::Presence(p) => p.from,
            Envelope::Room(op) => op.by,
            Envelope::Invite { invite, .. } => invite.by,
            Envelope::SealKey(a) => a.record.account,
        };
        if self.is_blocked(&signer) {
            return Err(Error::Blocked(signer));
        }
        Ok(())
    }
}
