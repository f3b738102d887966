//! Who may message the local account: under [`Inbound::Contacts`] a direct message from an
//! account not admitted (not a contact, not asked, never written to, or removed) is held as a
//! request,
//! apart from every history, until the local account admits the sender (it becomes a contact,
//! or the local account asks it) or rejects it (the held messages are destroyed like a burned
//! body).

use std::sync::atomic::Ordering;

use tim_protocol::{AccountId, ContactState, Message, Verified};
use tim_storage::PutOutcome;
use tracing::debug;

use super::{Core, Verdict};
use crate::{Event, Inbound, Result};

/// The store's name of the setting.
const SETTING: &str = "inbound";

impl Core {
    /// The setting in force.
    pub(crate) fn inbound_setting(&self) -> Inbound {
        if self.contacts_only.load(Ordering::Relaxed) {
            Inbound::Contacts
        } else {
            Inbound::Anyone
        }
    }

    /// Changes the setting, kept across restarts. Turning it to `anyone` admits what was held.
    pub(crate) fn set_inbound_setting(&self, inbound: Inbound) -> Result<()> {
        self.store.set_setting(SETTING, inbound.as_str().as_bytes())?;
        self.contacts_only
            .store(inbound == Inbound::Contacts, Ordering::Relaxed);
        if inbound == Inbound::Anyone {
            for (account, _) in self.store.requests()? {
                self.store.admit_requests(&account)?;
            }
        }
        Ok(())
    }

    /// Whether messages from `from` go to the history under the setting in force.
    pub(super) fn admits(&self, from: &AccountId) -> Result<bool> {
        if !self.contacts_only.load(Ordering::Relaxed) || *from == self.account {
            return Ok(true);
        }
        // A contact, or an account asked, is admitted; one removed or rejected is not, even if
        // this account once wrote to it; otherwise having written to it admits it.
        Ok(match self.store.contact(from)?.map(|r| r.state) {
            Some(ContactState::Contact | ContactState::Requested) => true,
            Some(ContactState::None) => false,
            Some(ContactState::Incoming) | None => self.store.is_known(from),
        })
    }

    /// Holds a verified direct message of an account not admitted as a request.
    pub(super) fn hold_request(&self, message: &Verified<Message>) -> Result<Verdict> {
        match self.store.put_request(message)? {
            PutOutcome::Duplicate => Ok(Verdict::Duplicate),
            PutOutcome::Stored => {
                debug!(mid = %message.id(), from = %message.head().from, "held a message request");
                self.emit(Event::MessageRequest {
                    mid: message.id(),
                    from: message.head().from,
                });
                Ok(Verdict::Stored)
            }
        }
    }

    /// After the contact state with `account` changed to `state`: an admitted account's held
    /// messages join the history; a rejected or removed one's are destroyed.
    pub(super) fn settle_requests(&self, account: &AccountId, state: ContactState) -> Result<()> {
        match state {
            ContactState::Contact | ContactState::Requested => {
                let moved = self.store.admit_requests(account)?;
                if moved > 0 {
                    debug!(%account, moved, "message requests admitted");
                }
            }
            ContactState::None => {
                self.store.reject_requests(account)?;
            }
            ContactState::Incoming => {}
        }
        Ok(())
    }
}

/// The setting kept in the store, if any.
pub(crate) fn stored_inbound(store: &tim_storage::Store) -> Result<Option<Inbound>> {
    Ok(store
        .setting(SETTING)?
        .and_then(|v| std::str::from_utf8(&v).ok().and_then(Inbound::parse)))
}
