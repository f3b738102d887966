//! End-to-end encryption as the node applies it: which bodies it seals and to whom, and opening
//! stored bodies for the local account (docs/protocol.md, "Sealed bodies").
//!
//! Direct messages are sealed to the recipient and the sender (unless `Config::seal_direct` is
//! off); a private founded room's posts to its members at send time, so a removed member cannot
//! open what is sent after its removal. Open rooms take anyone, so sealing would hide nothing:
//! their bodies travel plain. Nodes store bodies as they travel and open them only to show them.

use tim_protocol::{seal, AccountId, AccountKey, Message, Recipient};
use tracing::debug;

use super::Core;
use crate::{Conversation, Event, Result};

/// A message body as the local account reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The plaintext.
    pub text: Vec<u8>,
    /// Whether it travelled sealed (end-to-end encrypted).
    pub encrypted: bool,
}

/// Opens stored bodies for one account; cheap to clone, holds the account key.
#[derive(Clone)]
pub struct BodyReader {
    key: std::sync::Arc<AccountKey>,
    /// The account's HPKE setups, as sender and as reader (shared by every clone).
    keys: std::sync::Arc<std::sync::Mutex<seal::SealKeys>>,
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BodyReader({})", self.key.account_id())
    }
}

impl BodyReader {
    pub(crate) fn new(key: std::sync::Arc<AccountKey>) -> Self {
        BodyReader {
            key,
            keys: Default::default(),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, seal::SealKeys> {
        self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `body` from this account to `to`, sealed to `readers` (and itself).
    pub(crate) fn seal(&self, to: &Recipient, readers: &[AccountId], body: &[u8]) -> Result<Vec<u8>> {
        Ok(seal::seal(&self.key, to, readers, body, &mut self.keys())?)
    }

    /// The account it reads for.
    pub fn account(&self) -> AccountId {
        self.key.account_id()
    }

    /// `message`'s body for this account: a plain body as it is, a sealed one opened
    /// (`4122 undecryptable` if it is not sealed to this account or was damaged, `4113` if it
    /// does not parse).
    pub fn open(&self, message: &Message) -> Result<Body> {
        if !seal::is_sealed(&message.body) {
            return Ok(Body {
                text: message.body.clone(),
                encrypted: false,
            });
        }
        let h = message.head();
        let text = seal::open(&self.key, &h.from, &h.to, &message.body, &mut self.keys())?;
        Ok(Body { text, encrypted: true })
    }

    /// An event as a subscriber sees it: a message's sealed body opened (`encrypted: true`), or
    /// [`Event::Undecryptable`] if it does not open; every other event as it is.
    pub(crate) fn open_event(&self, event: Event) -> Event {
        let Event::Message {
            mid,
            from,
            conversation,
            sent_at,
            body,
            encrypted: _,
            burn_after_read,
        } = event
        else {
            return event;
        };
        let local = self.account();
        let opened = if seal::is_sealed(&body) {
            // The header's `to`, from the conversation as the local account sees it.
            let to = match &conversation {
                Conversation::Room(room) => Recipient::Room(room.clone()),
                Conversation::Peer(peer) if from == local => Recipient::Account(*peer),
                Conversation::Peer(_) => Recipient::Account(local),
            };
            seal::open(&self.key, &from, &to, &body, &mut self.keys()).map(|text| (text, true))
        } else {
            Ok((body, false))
        };
        match opened {
            Ok((body, encrypted)) => Event::Message {
                mid,
                from,
                conversation,
                sent_at,
                body,
                encrypted,
                burn_after_read,
            },
            Err(e) => {
                debug!(%mid, error = %e, "a stored body this account cannot open");
                Event::Undecryptable {
                    mid,
                    from,
                    conversation,
                    code: e.code(),
                }
            }
        }
    }
}

impl Core {
    /// The readers `body` is sealed to when the local account sends it to `to`, or `None` to send
    /// it plain (see the module docs).
    fn readers_of(&self, to: &Recipient) -> Option<Vec<AccountId>> {
        match to {
            Recipient::Account(account) => self.seal_direct.then(|| vec![*account]),
            Recipient::Room(room) => self
                .founded()
                .get(room)
                .map(tim_protocol::Membership::state)
                .filter(|state| state.private)
                .map(|state| state.members.keys().copied().collect()),
        }
    }

    /// What travels for a new message from the local account: `body` sealed to its readers, or
    /// plain.
    pub(crate) fn outgoing_body(&self, to: &Recipient, body: &[u8]) -> Result<Vec<u8>> {
        match self.readers_of(to) {
            Some(readers) => self.reader.seal(to, &readers, body),
            None => Ok(body.to_vec()),
        }
    }

    /// A stored message's body for the local account.
    pub(crate) fn open_body(&self, message: &Message) -> Result<Body> {
        self.reader.open(message)
    }
}
