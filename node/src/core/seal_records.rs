//! The seal-key records this node seals other accounts' bodies to: which it takes, from where,
//! and which it keeps across restarts.
//!
//! Two books. Records of accounts this node has reason to trust (ones the local account wrote
//! to, members of a private room it is in, accounts whose route it resolved) are kept in the
//! store, up to 16,384. Records from strangers' direct messages live in memory only, up to 1,024,
//! so a flood of free identities displaces other strangers' records and never a contact's. A
//! record is taken only if it is newer than the one held for its account, its `seq` is not more
//! than a day ahead of the local clock (a record dated far ahead would pin its account's key),
//! and it verifies.

use std::collections::HashMap;

use tim_protocol::{seal, seal::SealKeyRecord, AccountId, Recipient};
use tracing::{debug, warn};

use super::{now_ms, Core};

/// The most records of trusted accounts kept (in the store too).
const MAX_TRUSTED: usize = 16_384;
/// The most records from strangers kept (in memory).
const MAX_STRANGERS: usize = 1_024;
/// How far ahead of the local clock a record's `seq` may be (ms).
pub(crate) const MAX_SEQ_AHEAD_MS: u64 = 24 * 3600 * 1000;

/// Which book a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// A contact, a private room's member, an account whose route this node resolved.
    Trusted,
    /// The sender of a direct message the local account never wrote to.
    Stranger,
}

/// What taking a record changed in the trusted book, for the store to follow.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// Keep this record for its account.
    pub(crate) keep: Option<SealKeyRecord>,
    /// Forget this account's record (displaced by a newcomer).
    pub(crate) forget: Option<AccountId>,
}

/// The two books (see the module docs).
#[derive(Default)]
pub(crate) struct SealRecords {
    trusted: HashMap<AccountId, SealKeyRecord>,
    strangers: HashMap<AccountId, SealKeyRecord>,
}

impl SealRecords {
    /// The newest record held for `account`.
    pub(crate) fn newest(&self, account: &AccountId) -> Option<&SealKeyRecord> {
        match (self.trusted.get(account), self.strangers.get(account)) {
            (Some(t), Some(s)) if s.supersedes(t) => Some(s),
            (Some(t), _) => Some(t),
            (None, s) => s,
        }
    }

    /// Whether `record` would replace what is held for its account.
    pub(crate) fn is_news(&self, record: &SealKeyRecord) -> bool {
        self.newest(&record.account).is_none_or(|held| record.supersedes(held))
    }

    /// Takes a verified `record` into `tier`'s book, if it is news. A stranger's record for an
    /// account already trusted goes to the trusted book: it is that account's own.
    pub(crate) fn take(&mut self, record: SealKeyRecord, tier: Tier) -> Change {
        let mut change = Change::default();
        if !self.is_news(&record) {
            return change;
        }
        let account = record.account;
        if tier == Tier::Trusted || self.trusted.contains_key(&account) {
            self.strangers.remove(&account);
            if self.trusted.len() >= MAX_TRUSTED && !self.trusted.contains_key(&account) {
                change.forget = evict_one(&mut self.trusted);
            }
            self.trusted.insert(account, record.clone());
            change.keep = Some(record);
        } else {
            if self.strangers.len() >= MAX_STRANGERS && !self.strangers.contains_key(&account) {
                evict_one(&mut self.strangers);
            }
            self.strangers.insert(account, record);
        }
        change
    }

    /// Takes back the trusted records the store kept (they were verified when taken).
    pub(crate) fn restore(&mut self, records: Vec<SealKeyRecord>) {
        for record in records.into_iter().take(MAX_TRUSTED) {
            if self
                .trusted
                .get(&record.account)
                .is_none_or(|held| record.supersedes(held))
            {
                self.trusted.insert(record.account, record);
            }
        }
    }
}

/// Forgets one entry of a full book (the first in the map's randomly keyed order).
fn evict_one(book: &mut HashMap<AccountId, SealKeyRecord>) -> Option<AccountId> {
    let account = book.keys().next().copied()?;
    book.remove(&account);
    Some(account)
}

impl Core {
    /// Learns the seal-key record a stored message's sealed body carries (the message is
    /// verified, so the body is its sender's): from a direct message to the local account, or a
    /// post in a private room it is in; never from an open room, where anyone posts anything.
    pub(crate) fn learn_from_body(&self, from: &AccountId, to: &Recipient, body: &[u8]) {
        let Some(record) = seal::sealer_of(body) else {
            return;
        };
        let tier = match to {
            Recipient::Account(account) if *account == self.account => {
                if self.store.is_known(from) {
                    Tier::Trusted
                } else {
                    Tier::Stranger
                }
            }
            Recipient::Room(room) => {
                let member = self
                    .founded()
                    .get(room)
                    .map(tim_protocol::Membership::state)
                    .is_some_and(|state| state.private && state.is_member(from));
                if !member {
                    return;
                }
                Tier::Trusted
            }
            Recipient::Account(_) => return,
        };
        if record.account != *from || !self.reader.is_news(&record) || seal::check(body).is_err() {
            return;
        }
        if let Err(e) = record.verify() {
            debug!(%from, error = %e, "a sealed body carries a seal-key record that does not verify");
            return;
        }
        let change = self.learn_seal_key(record, tier);
        self.keep_seal_keys(&change);
    }

    /// Takes a verified seal-key record into `tier`'s book (see the module docs), in memory; the
    /// change to the trusted book is for [`Core::keep_seal_keys`] to store.
    pub(crate) fn learn_seal_key(&self, record: SealKeyRecord, tier: Tier) -> Change {
        if record.account == self.account || record.seq > now_ms().saturating_add(MAX_SEQ_AHEAD_MS) {
            return Change::default();
        }
        self.reader.take(record, tier)
    }

    /// Keeps a change to the trusted book in the store (logged if it fails: the record is then
    /// only remembered until the node stops).
    pub(crate) fn keep_seal_keys(&self, change: &Change) {
        if let Some(record) = &change.keep {
            let kept = tim_protocol::encode(record)
                .map_err(crate::Error::from)
                .and_then(|bytes| Ok(self.store.set_seal_key(&record.account, Some(&bytes))?));
            if let Err(e) = kept {
                warn!(account = %record.account, error = %e, "could not keep a seal-key record");
            }
        }
        if let Some(account) = &change.forget {
            if let Err(e) = self.store.set_seal_key(account, None) {
                warn!(%account, error = %e, "could not forget a seal-key record");
            }
        }
    }
}

/// The trusted records `store` kept, decoded (one that does not decode is skipped, logged).
pub(crate) fn load_seal_keys(store: &tim_storage::Store) -> crate::Result<Vec<SealKeyRecord>> {
    Ok(store
        .seal_keys()?
        .into_iter()
        .filter_map(|bytes| match tim_protocol::decode::<SealKeyRecord>(&bytes) {
            Ok(record) => Some(record),
            Err(e) => {
                warn!(error = %e, "skipping a kept seal-key record that does not decode");
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tim_protocol::{seal::SealSecret, test_util::key, AccountKey};

    fn record(k: &AccountKey, seq: u64) -> SealKeyRecord {
        SealKeyRecord::sign(k, &SealSecret::generate(), seq)
    }

    #[test]
    fn a_flood_of_strangers_never_displaces_a_trusted_record() {
        let mut book = SealRecords::default();
        let contact = key(1);
        let kept = record(&contact, 5);
        assert_eq!(book.take(kept.clone(), Tier::Trusted).keep, Some(kept.clone()));
        for _ in 0..MAX_STRANGERS + 10 {
            let change = book.take(record(&AccountKey::generate(), 1), Tier::Stranger);
            assert_eq!(
                change,
                Change::default(),
                "strangers' records are not kept in the store"
            );
        }
        assert_eq!(book.strangers.len(), MAX_STRANGERS);
        assert_eq!(book.newest(&contact.account_id()), Some(&kept));
    }

    #[test]
    fn only_newer_records_replace_and_a_trusted_accounts_record_stays_trusted() {
        let mut book = SealRecords::default();
        let bob = key(2);
        let (old, new) = (record(&bob, 1), record(&bob, 2));
        book.take(new.clone(), Tier::Trusted);
        assert_eq!(book.take(old, Tier::Trusted), Change::default());
        assert_eq!(book.newest(&bob.account_id()), Some(&new));
        // A newer record of Bob's arriving on a stranger's path is still Bob's: kept as trusted.
        let newer = record(&bob, 3);
        assert_eq!(book.take(newer.clone(), Tier::Stranger).keep, Some(newer.clone()));
        assert!(book.strangers.is_empty());
        // A stranger's record, then the same account trusted: the stranger entry goes.
        let carol = key(3);
        book.take(record(&carol, 1), Tier::Stranger);
        let trusted = record(&carol, 2);
        book.take(trusted.clone(), Tier::Trusted);
        assert_eq!(book.newest(&carol.account_id()), Some(&trusted));
        assert!(!book.strangers.contains_key(&carol.account_id()));
    }

    #[test]
    fn a_full_trusted_book_forgets_one_record_and_says_which() {
        let mut book = SealRecords::default();
        for _ in 0..MAX_TRUSTED {
            book.take(record(&AccountKey::generate(), 1), Tier::Trusted);
        }
        let change = book.take(record(&key(4), 1), Tier::Trusted);
        let forgot = change.forget.unwrap_or_else(|| panic!("nothing forgotten"));
        assert!(book.newest(&forgot).is_none());
        assert_eq!(book.trusted.len(), MAX_TRUSTED);
    }
}

#[cfg(test)]
mod learning_tests {
    use super::*;
    use tim_protocol::{
        seal::{is_sealed_to, Keyring, Reader, SealSecret},
        test_util::key,
        AccountKey, RoomId,
    };
    use tim_storage::Store;

    fn publishing(k: &AccountKey, seq: u64) -> Keyring {
        Keyring::new(k, &[(seq, SealSecret::generate())]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A sealed body from `ring`'s account to `to`, sealed to `readers` with derived keys.
    fn body_from(ring: &Keyring, to: &Recipient, readers: &[AccountId]) -> Vec<u8> {
        let readers: Vec<Reader> = readers.iter().filter_map(Reader::derived).collect();
        seal::seal(ring, to, &readers, b"hello", &mut Default::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_reader_is_sealed_to_with_the_newest_record_its_own_verified_bodies_carry() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (alice, bob) = (key(1), key(2));
        let core = super::super::test_core::core(dir.path(), alice.clone(), publishing(&alice, 1), &[]);
        let to_alice = Recipient::Account(alice.account_id());
        let to_bob = Recipient::Account(bob.account_id());
        let bob_derived = Reader::derived(&bob.account_id()).unwrap_or_else(|| panic!("no key"));
        let first = core.outgoing_body(&to_bob, b"hi").unwrap_or_else(|e| panic!("{e}"));
        assert!(is_sealed_to(&first, &bob_derived), "no record yet: the derived key");

        let bobs = publishing(&bob, 1);
        let record = bobs.record().cloned().unwrap_or_else(|| panic!("no record"));
        let answer = body_from(&bobs, &to_alice, &[alice.account_id()]);
        // Mallory relaying Bob's body as hers, or Bob's body in an open room: not learned.
        core.learn_from_body(&key(5).account_id(), &to_alice, &answer);
        let lobby = Recipient::Room(RoomId::new("lobby").unwrap_or_else(|e| panic!("{e}")));
        core.learn_from_body(&bob.account_id(), &lobby, &answer);
        assert_eq!(core.reader.record_of(&bob.account_id()), None);
        core.learn_from_body(&bob.account_id(), &to_alice, &answer);
        assert_eq!(core.reader.record_of(&bob.account_id()), Some(record.clone()));
        let second = core.outgoing_body(&to_bob, b"again").unwrap_or_else(|e| panic!("{e}"));
        assert!(is_sealed_to(&second, &Reader::of(&record)));
        assert!(!is_sealed_to(&second, &bob_derived));

        // An older record, one dated more than a day ahead, and a forged one replace nothing.
        let older = body_from(&publishing(&bob, 0), &to_alice, &[alice.account_id()]);
        let ahead = body_from(
            &publishing(&bob, now_ms() + MAX_SEQ_AHEAD_MS + 60_000),
            &to_alice,
            &[alice.account_id()],
        );
        for body in [older, ahead, forged_sealer(&bob)] {
            core.learn_from_body(&bob.account_id(), &to_alice, &body);
            assert_eq!(core.reader.record_of(&bob.account_id()), Some(record.clone()));
        }
    }

    /// A body from Bob whose sealer field is a record of his with a swapped key.
    fn forged_sealer(bob: &AccountKey) -> Vec<u8> {
        let mut forged = SealKeyRecord::sign(bob, &SealSecret::generate(), 9);
        forged.key = SealSecret::generate().public();
        let ring = Keyring::derived(bob).unwrap_or_else(|e| panic!("{e}"));
        let to = Recipient::Account(bob.account_id());
        let body = seal::seal(&ring, &to, &[], b"x", &mut Default::default()).unwrap_or_else(|e| panic!("{e}"));
        let config = bincode::config::standard().with_fixed_int_encoding();
        let mut out = seal::SEALED_MAGIC.to_vec();
        out.extend(bincode::encode_to_vec(Some(&forged), config).unwrap_or_else(|e| panic!("{e}")));
        // The derived-only ring wrote `None` (one byte) there.
        out.extend_from_slice(&body[seal::SEALED_MAGIC.len() + 1..]);
        assert!(seal::sealer_of(&out).is_some());
        out
    }

    #[test]
    fn trusted_records_are_kept_across_restarts_and_strangers_are_not() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let alice = key(1);
        let (contact, stranger) = (publishing(&key(2), 1), publishing(&key(3), 1));
        let (contacts, strangers) = (
            contact.record().cloned().unwrap_or_else(|| panic!("no record")),
            stranger.record().cloned().unwrap_or_else(|| panic!("no record")),
        );
        {
            let core = super::super::test_core::core(dir.path(), alice.clone(), publishing(&alice, 1), &[]);
            for (record, tier) in [(contacts.clone(), Tier::Trusted), (strangers.clone(), Tier::Stranger)] {
                let change = core.learn_seal_key(record, tier);
                core.keep_seal_keys(&change);
            }
            assert_eq!(core.reader.record_of(&strangers.account), Some(strangers.clone()));
        }
        let store = Store::open(dir.path(), tim_storage::Config::default()).unwrap_or_else(|e| panic!("{e}"));
        let kept = load_seal_keys(&store).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kept, vec![contacts]);
    }

    #[test]
    fn a_running_node_rotates_when_due_and_still_opens_what_was_sealed_before() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let alice = key(1);
        let week = std::time::Duration::from_secs(7 * 24 * 3600);
        let start = now_ms();
        let ring = crate::keys::load_seal_keys(dir.path(), &alice, start, week).unwrap_or_else(|e| panic!("{e}"));
        let core = super::super::test_core::core(dir.path(), alice.clone(), ring, &[]);
        let first = core.reader.own_record().unwrap_or_else(|| panic!("no record"));
        let to = Recipient::Account(key(2).account_id());
        let body = core.outgoing_body(&to, b"before").unwrap_or_else(|e| panic!("{e}"));
        let message = tim_protocol::Message::sign(&alice, to.clone(), body, 1, None)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_inner();
        assert!(!core.seal_key_due(start + 1000));
        core.rotate_seal_key(start + 1000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(core.reader.own_record().as_ref(), Some(&first));
        let later = start + week.as_millis() as u64;
        assert!(core.seal_key_due(later));
        core.rotate_seal_key(later).unwrap_or_else(|e| panic!("{e}"));
        let second = core.reader.own_record().unwrap_or_else(|| panic!("no record"));
        assert!(second.supersedes(&first));
        let opened = core.reader.open(&message).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opened.text, b"before");
        // The new key is what its own copies are sealed to now, and it was kept on disk.
        let next = core.outgoing_body(&to, b"after").unwrap_or_else(|e| panic!("{e}"));
        assert!(is_sealed_to(&next, &Reader::of(&second)));
        let reloaded = crate::keys::load_seal_keys(dir.path(), &alice, later, week).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reloaded.record().map(|r| r.key), Some(second.key));
    }
}
