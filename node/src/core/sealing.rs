//! End-to-end encryption as the node applies it: which bodies it seals and to whom, and opening
//! stored bodies for the local account (docs/protocol.md, "Sealed bodies").
//!
//! Direct messages are sealed to the recipient and the sender (unless `Config::seal_direct` is
//! off); a private founded room's posts to its members at send time, so a removed member cannot
//! open what is sent after its removal. Open rooms take anyone, so sealing would hide nothing:
//! their bodies travel plain. Nodes store bodies as they travel and open them only to show them.
//!
//! Each reader is sealed to with the newest seal-key record this node learned for it (every
//! sealed body carries its sender's), else with its derived key.

use std::collections::HashMap;

use tim_protocol::{
    seal::{self, Keyring, Reader, SealKeyRecord},
    AccountId, Message, MessageId, Recipient,
};
use tracing::debug;

use super::{
    seal_records::{Change, SealRecords, Tier},
    Core,
};
use crate::{Conversation, Event, Result};

/// A message body as the local account reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The plaintext.
    pub text: Vec<u8>,
    /// Whether it travelled sealed (end-to-end encrypted).
    pub encrypted: bool,
}

/// Seals and opens bodies for one account; cheap to clone (every clone shares its keys).
#[derive(Clone)]
pub struct BodyReader {
    account: AccountId,
    keys: std::sync::Arc<std::sync::Mutex<Keys>>,
    /// Held while the store's copy of the trusted book is written.
    writing: std::sync::Arc<std::sync::Mutex<()>>,
}

/// Where a node keeps its seal secrets and how old its newest may get.
#[derive(Debug, Clone)]
pub(crate) struct SealRotation {
    /// The data dir (the secrets are in its `seal.keys`).
    pub(crate) dir: std::path::PathBuf,
    /// See `Config::seal_key_rotation`.
    pub(crate) every: std::time::Duration,
}

/// The most messages a [`BodyReader`] remembers as not opening for its account.
const MAX_REMEMBERED_FAILURES: usize = 4096;

struct Keys {
    /// The account's seal secrets and its published record.
    ring: Keyring,
    /// The account's HPKE setups.
    seal: seal::SealKeys,
    /// Messages whose body does not open for this account, and why: a body that failed fails
    /// again (the result depends only on it and the account key), and each try costs up to two
    /// X25519 exchanges, so a history of junk bodies is not paid for at every listing.
    failed: HashMap<MessageId, tim_protocol::Error>,
    /// The seal-key records other accounts' bodies are sealed to.
    known: SealRecords,
}

impl Keys {
    fn new(ring: Keyring) -> Self {
        Keys {
            ring,
            seal: Default::default(),
            failed: HashMap::new(),
            known: SealRecords::default(),
        }
    }

    /// `body` of message `mid`, from `from` in `to`, opened (or its remembered failure).
    fn open(&mut self, mid: MessageId, from: &AccountId, to: &Recipient, body: &[u8]) -> tim_protocol::Result<Vec<u8>> {
        if let Some(e) = self.failed.get(&mid) {
            return Err(e.clone());
        }
        let opened = seal::open(&self.ring, from, to, body, &mut self.seal);
        if let Err(e) = &opened {
            if self.failed.len() >= MAX_REMEMBERED_FAILURES {
                if let Some(old) = self.failed.keys().next().copied() {
                    self.failed.remove(&old);
                }
            }
            self.failed.insert(mid, e.clone());
        }
        opened
    }
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BodyReader({})", self.account)
    }
}

impl BodyReader {
    pub(crate) fn new(ring: Keyring) -> Self {
        BodyReader {
            account: ring.account(),
            keys: std::sync::Arc::new(std::sync::Mutex::new(Keys::new(ring))),
            writing: Default::default(),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `body` from this account to `to`, sealed to `readers` (and itself), each with the newest
    /// record known for it, else its derived key (an id no body can be sealed to is skipped).
    pub(crate) fn seal(&self, to: &Recipient, readers: &[AccountId], body: &[u8]) -> Result<Vec<u8>> {
        let mut keys = self.keys();
        let Keys { ring, seal, known, .. } = &mut *keys;
        let readers: Vec<Reader> = readers
            .iter()
            .filter_map(|account| {
                known
                    .newest(account)
                    .map(Reader::of)
                    .or_else(|| Reader::derived(account))
            })
            .collect();
        Ok(seal::seal(ring, to, &readers, body, seal)?)
    }

    /// Whether taking `record` into `tier`'s book would change anything (see `seal_records`).
    pub(crate) fn would_change(&self, record: &SealKeyRecord, tier: Tier) -> bool {
        self.keys().known.would_change(record, tier)
    }

    /// Takes a verified record (see `seal_records`).
    pub(crate) fn take(&self, record: SealKeyRecord, tier: Tier) -> Change {
        self.keys().known.take(record, tier)
    }

    /// The record the trusted book holds for `account` (what the store should keep).
    pub(crate) fn trusted_record(&self, account: &AccountId) -> Option<SealKeyRecord> {
        self.keys().known.trusted(account).cloned()
    }

    /// The lock the store's copy of the trusted book is written under.
    pub(crate) fn writing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Seals and opens with `ring` from now on (a rotated keyring: it holds every older secret).
    fn replace_ring(&self, ring: Keyring) {
        self.keys().ring = ring;
    }

    /// Takes back the trusted records the store kept.
    pub(crate) fn restore(&self, records: Vec<SealKeyRecord>) {
        self.keys().known.restore(records);
    }

    /// The newest seal-key record learned for `account`.
    pub fn record_of(&self, account: &AccountId) -> Option<SealKeyRecord> {
        self.keys().known.newest(account).cloned()
    }

    /// The local account's published seal-key record.
    pub fn own_record(&self) -> Option<SealKeyRecord> {
        self.keys().ring.record().cloned()
    }

    /// The account it reads for.
    pub fn account(&self) -> AccountId {
        self.account
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
        let text = self.keys().open(message.id(), &h.from, &h.to, &message.body)?;
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
            self.keys().open(mid, &from, &to, &body).map(|text| (text, true))
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

    /// Whether the newest seal key is due for replacing at `now` (ms since the epoch).
    pub(crate) fn seal_key_due(&self, now: u64) -> bool {
        let every = u64::try_from(self.seal_rotation.every.as_millis()).unwrap_or(u64::MAX);
        self.reader
            .own_record()
            .is_none_or(|r| now.saturating_sub(r.seq) >= every)
    }

    /// Makes a new seal key if the newest is due at `now` (ms since the epoch), keeps it with the
    /// older ones in the data dir and seals with it from then on. Blocks on the file.
    pub(crate) fn rotate_seal_key(&self, now: u64) -> Result<()> {
        if !self.seal_key_due(now) {
            return Ok(());
        }
        let ring = crate::keys::load_seal_keys(&self.seal_rotation.dir, &self.key, now, self.seal_rotation.every)?;
        self.reader.replace_ring(ring);
        self.announce_seal_key_everywhere();
        Ok(())
    }

    /// A stored message's body for the local account.
    pub(crate) fn open_body(&self, message: &Message) -> Result<Body> {
        self.reader.open(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tim_protocol::{test_util::key, AccountKey, Code};

    fn reader(k: &AccountKey) -> BodyReader {
        BodyReader::new(Keyring::derived(k).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn a_body_that_does_not_open_is_remembered_and_fails_the_same_way() {
        let (alice, bob, eve) = (key(1), key(2), key(3));
        let to = Recipient::Account(bob.account_id());
        let body = reader(&alice)
            .seal(&to, &[bob.account_id()], b"not for eve")
            .unwrap_or_else(|e| panic!("{e}"));
        let message = Message::sign(&alice, to, body, 1, None)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_inner();
        let eves = reader(&eve);
        let first = eves.open(&message).map(|b| b.text).map_err(|e| e.code());
        assert_eq!(first, Err(Code::Undecryptable));
        assert!(eves.keys().failed.contains_key(&message.id()));
        assert_eq!(eves.open(&message).map(|b| b.text).map_err(|e| e.code()), first);
        // Bob opens it: failures are this account's alone.
        let bobs = reader(&bob);
        assert_eq!(
            bobs.open(&message).map(|b| b.text).unwrap_or_else(|e| panic!("{e}")),
            b"not for eve"
        );
    }

    #[test]
    fn remembered_failures_are_bounded() {
        let alice = key(1);
        let mut keys = Keys::new(Keyring::derived(&alice).unwrap_or_else(|e| panic!("{e}")));
        for i in 0..=MAX_REMEMBERED_FAILURES as u32 {
            let mut mid = [0u8; 32];
            mid[..4].copy_from_slice(&i.to_le_bytes());
            let _ = keys.open(
                MessageId::from_bytes(mid),
                &alice.account_id(),
                &Recipient::Account(alice.account_id()),
                b"\0te\x01junk",
            );
        }
        assert_eq!(keys.failed.len(), MAX_REMEMBERED_FAILURES);
    }
}
