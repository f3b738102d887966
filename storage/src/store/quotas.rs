//! What strangers can make a node store, bounded. Peer identities are free, so every limit per
//! account sits under a total one:
//!
//! - **Stranger messages**: direct messages received from an account this node's account never
//!   wrote to. At most `Config::stranger_messages_each` per account (beyond: refused with
//!   [`Error::StrangerQuota`], `5104 overloaded`; the sender's node retries later) and
//!   `Config::stranger_messages_total` in all; when the total is full, the oldest stranger message
//!   is evicted (deleted and shredded) to make room. Writing to an account makes it known: its
//!   messages stop counting, and nothing of it is evicted again.
//! - **Pending tombstones**: revokes and burns of messages this node never held (the message may
//!   still come, and must then be refused). At most `Config::pending_tombstones_each` per signer
//!   (beyond: refused with [`Error::PendingQuota`], `5104`) and `Config::pending_tombstones_total`
//!   in all, the oldest evicted when full (a copy of its target arriving afterwards would be
//!   stored).
//! - **Stranger room messages**: see `room_quota.rs`.
//!
//! The meta family records them (`strange/<stored_at><mid>` and `pending/<applied_at><mid>`,
//! value: the account; `rstrange/<room prefix><sent_at><mid>`, value: the sender and the
//! message's room-log sequence number) and the known accounts (`known/<account>`); the counts
//! are rebuilt from them at open. Everything here runs under the store's write lock.

use std::collections::{HashMap, HashSet};

use rocksdb::{ColumnFamily, WriteBatch, DB};
use tim_protocol::{AccountId, MessageId, Recipient};

use super::{
    cf_handle,
    inbox::{is_unread, InboxChanges},
    meta::{burn_key, shred_key},
    room_quota::{room_of_entry, seq_at, ROOM_STRANGE},
    Store,
};
use crate::{
    keys::{history_key, room_log_key},
    Cf, Conversation, Error, Result,
};

/// Meta key prefix: an account this node's account has written to.
pub(super) const KNOWN: &[u8] = b"known/";
/// Meta key prefix: a held stranger message (`stored_at BE || mid`, value: its sender).
pub(super) const STRANGE: &[u8] = b"strange/";
/// Meta key prefix: a pending tombstone (`applied_at BE || mid`, value: its signer, then for a
/// room its room-log sequence number, big-endian).
pub(super) const PENDING: &[u8] = b"pending/";
/// A stranger's direct message about to be stored: its sender, id and store time.
#[derive(Debug, Clone, Copy)]
pub(super) struct StrangerMessage<'a> {
    pub(super) from: AccountId,
    pub(super) id: &'a MessageId,
    pub(super) stored_at: u64,
}

/// How many items each account holds, and in total.
#[derive(Default, Debug)]
pub(super) struct Held {
    per: HashMap<AccountId, usize>,
    total: usize,
}

impl Held {
    pub(super) fn of(&self, account: &AccountId) -> usize {
        self.per.get(account).copied().unwrap_or(0)
    }

    pub(super) fn total(&self) -> usize {
        self.total
    }

    pub(super) fn add(&mut self, account: AccountId) {
        *self.per.entry(account).or_default() += 1;
        self.total += 1;
    }

    pub(super) fn remove(&mut self, account: &AccountId) {
        if let Some(n) = self.per.get_mut(account) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.per.remove(account);
            }
        }
    }

    /// Forgets everything `account` holds.
    pub(super) fn forget(&mut self, account: &AccountId) {
        if let Some(n) = self.per.remove(account) {
            self.total -= n;
        }
    }
}

/// The limits (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) stranger_each: usize,
    pub(super) stranger_total: usize,
    pub(super) pending_each: usize,
    pub(super) pending_total: usize,
    pub(super) room_total: usize,
}

/// What a new item from `account` needs, given what is held: refused, stored after evicting the
/// oldest item, or stored as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    Refuse,
    EvictOldest,
    Admit,
}

/// Admission of one more item from `account` under `each` per account and `total` in all.
pub(super) fn admit(held: &Held, account: &AccountId, each: usize, total: usize) -> Admission {
    if held.of(account) >= each {
        Admission::Refuse
    } else if held.total() >= total.max(1) {
        Admission::EvictOldest
    } else {
        Admission::Admit
    }
}

/// The quota state, guarded by the store's write lock.
#[derive(Debug)]
pub(super) struct Quotas {
    pub(super) limits: Limits,
    pub(super) known: HashSet<AccountId>,
    pub(super) strangers: Held,
    pub(super) pending: Held,
    /// Held stranger room messages, per room (by the room's key prefix).
    pub(super) rooms: HashMap<Vec<u8>, usize>,
    /// The same, per sender (all rooms together).
    pub(super) room_senders: Held,
}

impl Quotas {
    /// Rebuilds the counts from the meta family.
    pub(super) fn load(db: &DB, limits: Limits) -> Result<Quotas> {
        let meta = cf_handle(db, Cf::Meta);
        let mut quotas = Quotas {
            limits,
            known: HashSet::new(),
            strangers: Held::default(),
            pending: Held::default(),
            rooms: HashMap::new(),
            room_senders: Held::default(),
        };
        for (key, _) in scan(db, meta, KNOWN)? {
            quotas.known.insert(account_at(&key, KNOWN.len())?);
        }
        for (_, value) in scan(db, meta, STRANGE)? {
            quotas.strangers.add(account_at(&value, 0)?);
        }
        for (_, value) in scan(db, meta, PENDING)? {
            quotas.pending.add(account_at(&value, 0)?);
        }
        for (key, value) in scan(db, meta, ROOM_STRANGE)? {
            *quotas.rooms.entry(room_of_entry(&key)?.to_vec()).or_default() += 1;
            quotas.room_senders.add(account_at(&value, 0)?);
        }
        Ok(quotas)
    }

    /// The stranger-message admission of a message from `from`.
    pub(super) fn admit_stranger(&self, from: &AccountId) -> Result<Admission> {
        match admit(
            &self.strangers,
            from,
            self.limits.stranger_each,
            self.limits.stranger_total,
        ) {
            Admission::Refuse => Err(Error::StrangerQuota(*from)),
            other => Ok(other),
        }
    }

    /// The admission of a pending tombstone signed by `by`.
    pub(super) fn admit_pending(&self, by: &AccountId) -> Result<Admission> {
        match admit(&self.pending, by, self.limits.pending_each, self.limits.pending_total) {
            Admission::Refuse => Err(Error::PendingQuota(*by)),
            other => Ok(other),
        }
    }
}

impl Store {
    /// Makes `account` known (this node's account writes to it): recorded in `batch`, and its
    /// held messages stop counting as a stranger's.
    pub(super) fn make_known(&self, quotas: &mut Quotas, batch: &mut WriteBatch, account: AccountId) -> Result<()> {
        if !quotas.known.insert(account) {
            return Ok(());
        }
        let meta = self.cf(Cf::Meta);
        batch.put_cf(meta, known_key(&account), []);
        if quotas.strangers.of(&account) > 0 {
            for (key, value) in scan(&self.inner.db, meta, STRANGE)? {
                if value == account.as_bytes() {
                    batch.delete_cf(meta, key);
                }
            }
            quotas.strangers.forget(&account);
        }
        if quotas.room_senders.of(&account) > 0 {
            for (key, value) in scan(&self.inner.db, meta, ROOM_STRANGE)? {
                if value.get(..32) == Some(account.as_bytes().as_slice()) {
                    if let Some(n) = quotas.rooms.get_mut(room_of_entry(&key)?) {
                        *n = n.saturating_sub(1);
                    }
                    batch.delete_cf(meta, key);
                }
            }
            quotas.room_senders.forget(&account);
        }
        Ok(())
    }

    /// Counts a received direct message of a stranger, evicting the oldest stranger message
    /// first when the total is full (its id joins `evicted`, to be shredded once the batch is
    /// written; its unread mark leaves `inbox`). Refused with [`Error::StrangerQuota`] when the
    /// sender has its share; nothing is then added to `batch`.
    pub(super) fn hold_stranger_message(
        &self,
        quotas: &mut Quotas,
        batch: &mut WriteBatch,
        held: StrangerMessage<'_>,
        evicted: &mut Vec<MessageId>,
        inbox: &mut InboxChanges,
    ) -> Result<()> {
        let StrangerMessage {
            from,
            id,
            stored_at: now,
        } = held;
        if quotas.admit_stranger(&from)? == Admission::EvictOldest {
            let skip: HashSet<MessageId> = evicted.iter().copied().collect();
            let meta = self.cf(Cf::Meta);
            if let Some((key, victim, sender)) = oldest(&self.inner.db, meta, STRANGE, &skip, 1)?.pop() {
                self.evict_message(batch, &victim, inbox)?;
                batch.delete_cf(meta, key);
                quotas.strangers.remove(&sender);
                evicted.push(victim);
            }
        }
        batch.put_cf(self.cf(Cf::Meta), timed_key(STRANGE, now, id), from.as_bytes());
        quotas.strangers.add(from);
        Ok(())
    }

    /// Deletes an evicted message in `batch`: its record, history entry, unread mark (from
    /// `inbox`) and burn timer, and queues its body for the shredder with the deletion.
    /// Whether there was a message to delete.
    pub(super) fn evict_message(
        &self,
        batch: &mut WriteBatch,
        victim: &MessageId,
        inbox: &mut InboxChanges,
    ) -> Result<bool> {
        let Some(record) = self.message(victim)? else {
            return Ok(false);
        };
        let meta = self.cf(Cf::Meta);
        batch.delete_cf(self.cf(Cf::Messages), victim.as_bytes());
        batch.delete_cf(self.cf(Cf::History), history_key(record.message.head(), victim));
        if is_unread(&record) {
            inbox.count(&Conversation::of(record.message.head()), -1);
        }
        if let Some(burn) = burn_key(&record) {
            batch.delete_cf(meta, burn);
        }
        batch.put_cf(meta, shred_key(victim), []);
        Ok(true)
    }

    /// Stops counting a stranger message that is being destroyed (stored at `stored_at`).
    pub(super) fn release_stranger_message(
        &self,
        quotas: &mut Quotas,
        batch: &mut WriteBatch,
        from: &AccountId,
        id: &MessageId,
        stored_at: u64,
    ) -> Result<()> {
        let meta = self.cf(Cf::Meta);
        let key = timed_key(STRANGE, stored_at, id);
        if self.inner.db.get_pinned_cf(meta, &key)?.is_some() {
            batch.delete_cf(meta, key);
            quotas.strangers.remove(from);
        }
        Ok(())
    }

    /// Writes `batch` with `account` made known in it (see [`Store::make_known`]); if either
    /// fails, the counts are read back from disk.
    pub(super) fn write_making_known(&self, mut batch: WriteBatch, account: AccountId) -> Result<()> {
        let mut quotas = super::lock(&self.inner.quotas);
        let written = self
            .make_known(&mut quotas, &mut batch, account)
            .and_then(|()| Ok(self.inner.db.write_opt(batch, &self.inner.write_opts)?));
        if written.is_err() {
            self.reload_quotas(&mut quotas);
        }
        written
    }

    /// Counts a tombstone by `by` for a message this node never held, applied at `now`,
    /// evicting the oldest such tombstone first when the total is full. Refused with
    /// [`Error::PendingQuota`] when `by` has its share.
    pub(super) fn hold_pending_tombstone(
        &self,
        quotas: &mut Quotas,
        batch: &mut WriteBatch,
        by: AccountId,
        id: &MessageId,
        now: u64,
        log_seq: Option<u64>,
    ) -> Result<()> {
        let meta = self.cf(Cf::Meta);
        if quotas.admit_pending(&by)? == Admission::EvictOldest {
            if let Some((key, victim, signer)) = oldest(&self.inner.db, meta, PENDING, &HashSet::new(), 1)?.pop() {
                // A room's tombstone also left a history marker and a room-log entry.
                let logged = self
                    .inner
                    .db
                    .get_pinned_cf(meta, &key)?
                    .as_deref()
                    .and_then(|v| seq_at(v, 32));
                if let Some(tombstone) = self.tombstone(&victim)? {
                    let target = &tombstone.control.target.header;
                    if let Recipient::Room(room) = &target.to {
                        batch.delete_cf(self.cf(Cf::History), history_key(target, &victim));
                        if let Some(seq) = logged {
                            batch.delete_cf(self.cf(Cf::RoomLog), room_log_key(room, seq));
                        }
                    }
                }
                batch.delete_cf(self.cf(Cf::Tombstones), victim.as_bytes());
                batch.delete_cf(meta, key);
                quotas.pending.remove(&signer);
            }
        }
        let mut value = by.as_bytes().to_vec();
        if let Some(seq) = log_seq {
            value.extend_from_slice(&seq.to_be_bytes());
        }
        batch.put_cf(meta, timed_key(PENDING, now, id), value);
        quotas.pending.add(by);
        Ok(())
    }

    /// After a failed write: the counts, changed for a batch that never landed, again as on disk.
    pub(super) fn reload_quotas(&self, quotas: &mut Quotas) {
        match Quotas::load(&self.inner.db, quotas.limits) {
            Ok(fresh) => *quotas = fresh,
            Err(e) => tracing::warn!(error = %e, "could not reload the stranger quotas"),
        }
    }
}

/// `prefix || time BE || mid`.
pub(super) fn timed_key(prefix: &[u8], at: u64, id: &MessageId) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 40);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&at.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// The message id at the end of a [`timed_key`].
pub(super) fn id_of_timed_key(key: &[u8], prefix: &[u8]) -> Result<MessageId> {
    key.get(prefix.len() + 8..)
        .and_then(|id| <[u8; 32]>::try_from(id).ok())
        .map(MessageId::from_bytes)
        .ok_or_else(|| super::corrupt(Cf::Meta, key, "bad quota key"))
}

pub(super) fn known_key(account: &AccountId) -> Vec<u8> {
    [KNOWN, account.as_bytes().as_slice()].concat()
}

/// The oldest entries under `prefix` (key order is time order), skipping `skip`, at most `n`.
pub(super) fn oldest(
    db: &DB,
    meta: &ColumnFamily,
    prefix: &[u8],
    skip: &HashSet<MessageId>,
    n: usize,
) -> Result<Vec<(Vec<u8>, MessageId, AccountId)>> {
    let mut read_opts = rocksdb::ReadOptions::default();
    read_opts.set_iterate_lower_bound(prefix.to_vec());
    let mut it = db.raw_iterator_cf_opt(meta, read_opts);
    it.seek(prefix);
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !k.starts_with(prefix) || out.len() >= n {
            break;
        }
        let id = id_of_timed_key(k, prefix)?;
        if !skip.contains(&id) {
            out.push((k.to_vec(), id, account_at(v, 0)?));
        }
        it.next();
    }
    it.status()?;
    Ok(out)
}

/// Every key and value under `prefix`.
pub(super) fn scan(db: &DB, cf: &ColumnFamily, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    super::meta::scan(db, cf, prefix)
}

fn account_at(bytes: &[u8], at: usize) -> Result<AccountId> {
    bytes
        .get(at..at + 32)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| AccountId::from_bytes(b).ok())
        .ok_or_else(|| super::corrupt(Cf::Meta, bytes, "bad account in quota entry"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(n: u8) -> AccountId {
        tim_protocol::test_util::key(n).account_id()
    }

    #[test]
    fn an_account_over_its_share_is_refused_and_a_full_total_evicts_the_oldest() {
        let mut held = Held::default();
        let (a, b, c) = (account(1), account(2), account(3));
        for _ in 0..2 {
            assert_eq!(admit(&held, &a, 2, 3), Admission::Admit);
            held.add(a);
        }
        // a has its share: refused, whatever the total.
        assert_eq!(admit(&held, &a, 2, 3), Admission::Refuse);
        assert_eq!(admit(&held, &b, 2, 3), Admission::Admit);
        held.add(b);
        // The total is full: c gets in by evicting the oldest.
        assert_eq!(admit(&held, &c, 2, 3), Admission::EvictOldest);
        held.remove(&a);
        assert_eq!(admit(&held, &a, 2, 3), Admission::Admit);
        held.forget(&b);
        assert_eq!((held.of(&b), held.total()), (0, 1));
        // Removing what an account does not hold changes nothing.
        held.remove(&c);
        assert_eq!(held.total(), 1);
    }
}
