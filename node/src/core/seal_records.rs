//! The seal-key records this node seals other accounts' bodies to: which it takes, from where,
//! and which it keeps across restarts.
//!
//! Two books. Records of accounts this node has reason to trust (ones the local account wrote
//! to, members of a private room it is in) are kept in the store, up to 16,384. Records from
//! strangers (their direct messages, routes resolved for them) live in memory only, up to 1,024,
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
    /// An account the local account wrote to, or a member of a private room it is in.
    Trusted,
    /// Any other account (a direct message's sender, a route resolved for a receipt).
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

    /// The record held for `account` in the trusted book (what the store keeps for it).
    pub(crate) fn trusted(&self, account: &AccountId) -> Option<&SealKeyRecord> {
        self.trusted.get(account)
    }

    /// Whether taking `record` into `tier`'s book would change anything: it is newer than what
    /// is held for its account, or it is the record held as a stranger's and now trusted.
    pub(crate) fn would_change(&self, record: &SealKeyRecord, tier: Tier) -> bool {
        let news = self.newest(&record.account).is_none_or(|held| record.supersedes(held));
        news || (tier == Tier::Trusted && self.is_promotion(record))
    }

    fn is_promotion(&self, record: &SealKeyRecord) -> bool {
        !self.trusted.contains_key(&record.account) && self.strangers.get(&record.account) == Some(record)
    }

    /// Takes a verified `record` into `tier`'s book, if it changes anything
    /// ([`SealRecords::would_change`]). A stranger's record for an account already trusted goes
    /// to the trusted book: it is that account's own.
    pub(crate) fn take(&mut self, record: SealKeyRecord, tier: Tier) -> Change {
        let mut change = Change::default();
        if !self.would_change(&record, tier) {
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
        if record.account != *from || !self.reader.would_change(&record, tier) || seal::check(body).is_err() {
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

    /// Brings the store in line with the trusted book for the accounts `change` touched. It
    /// writes what the book holds now, under one lock, so concurrent changes land in any order
    /// and the store still ends with the newest. Logged if it fails: the record is then only
    /// remembered until the node stops.
    pub(crate) fn keep_seal_keys(&self, change: &Change) {
        let accounts = change.keep.iter().map(|r| r.account).chain(change.forget);
        let _writing = self.reader.writing();
        for account in accounts {
            let result = match self.reader.trusted_record(&account) {
                Some(record) => tim_protocol::encode(&record)
                    .map_err(crate::Error::from)
                    .and_then(|bytes| Ok(self.store.set_seal_key(&account, Some(&bytes))?)),
                None => self.store.set_seal_key(&account, None).map_err(crate::Error::from),
            };
            if let Err(e) = result {
                warn!(%account, error = %e, "could not keep a seal-key record");
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
#[path = "seal_records_tests.rs"]
mod tests;
