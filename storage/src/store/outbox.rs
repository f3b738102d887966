//! The outbox: direct messages, control messages and deletion receipts waiting for the
//! recipient's node to acknowledge them, with per-recipient and total limits kept as in-memory
//! counts. Receipts have a budget of their own, so peers that make this node owe them receipts
//! can never fill the space its own messages need.

use std::collections::{HashMap, HashSet};

use rocksdb::{WriteBatch, DB};
use tim_protocol::{encode, AccountId, MessageId};

use super::{cf_handle, corrupt, decode_value, lock, Store};
use crate::{keys::outbox_key, Cf, OutKind, Outgoing, Result, State};

/// How many outbox entries wait, per recipient and in total (messages and control messages), and
/// how many receipts; guarded by the store's write lock.
#[derive(Default)]
pub(super) struct OutboxCounts {
    per: HashMap<AccountId, usize>,
    total: usize,
    receipts: usize,
    receipts_per: HashMap<AccountId, usize>,
}

impl OutboxCounts {
    /// Counts the entries of the outbox on disk.
    pub(super) fn load(db: &DB) -> Result<OutboxCounts> {
        let mut counts = OutboxCounts::default();
        for item in db.iterator_cf(cf_handle(db, Cf::Outbox), rocksdb::IteratorMode::Start) {
            let (key, value) = item?;
            let out: Outgoing = decode_value(Cf::Outbox, &key, &value)?;
            counts.add(out.to, out.kind);
        }
        Ok(counts)
    }

    /// Whether one more entry for `to` would exceed `per_recipient` or `total` entries.
    pub(super) fn is_full(&self, to: &AccountId, per_recipient: usize, total: usize) -> bool {
        let mine = self.per.get(to).copied().unwrap_or(0);
        mine >= per_recipient || self.total >= total
    }

    /// Whether one more receipt for `to` would exceed `each` receipts for it or `total` in all.
    pub(super) fn receipts_full(&self, to: &AccountId, each: usize, total: usize) -> bool {
        self.receipts >= total || self.receipts_per.get(to).copied().unwrap_or(0) >= each
    }

    pub(super) fn add(&mut self, to: AccountId, kind: OutKind) {
        if kind == OutKind::Receipt {
            self.receipts += 1;
            *self.receipts_per.entry(to).or_default() += 1;
            return;
        }
        *self.per.entry(to).or_default() += 1;
        self.total += 1;
    }

    pub(super) fn remove(&mut self, to: &AccountId, kind: OutKind) {
        if kind == OutKind::Receipt {
            if let Some(n) = self.receipts_per.get_mut(to) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.receipts_per.remove(to);
                }
                self.receipts = self.receipts.saturating_sub(1);
            }
            return;
        }
        if let Some(n) = self.per.get_mut(to) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per.remove(to);
            }
            self.total = self.total.saturating_sub(1);
        }
    }
}

impl Store {
    /// Every outbox entry, with the id of the message it is about.
    pub fn outbox(&self) -> Result<Vec<(MessageId, Outgoing)>> {
        let mut out = Vec::new();
        for item in self
            .inner
            .db
            .iterator_cf(self.cf(Cf::Outbox), rocksdb::IteratorMode::Start)
        {
            let (key, value) = item?;
            let id: [u8; 32] = key
                .get(..32)
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| corrupt(Cf::Outbox, &key, "short key"))?;
            out.push((MessageId::from_bytes(id), decode_value(Cf::Outbox, &key, &value)?));
        }
        Ok(out)
    }

    /// Removes an outbox entry. With `delivered`, a queued message also moves to
    /// [`State::Delivered`], in the same batch. Returns whether the entry existed.
    pub fn outbox_done(&self, id: &MessageId, kind: OutKind, delivered: bool) -> Result<bool> {
        let mut done = self.outbox_done_many(&[(*id, kind, delivered)])?;
        Ok(done.pop().unwrap_or(false))
    }

    /// [`Store::outbox_done`] for many entries in one atomic batch (acknowledgements arriving
    /// together cost one write). Returns, per input, whether the entry existed.
    pub fn outbox_done_many(&self, items: &[(MessageId, OutKind, bool)]) -> Result<Vec<bool>> {
        let db = &self.inner.db;
        let mut counts = lock(&self.inner.write_lock);
        let mut batch = WriteBatch::default();
        let mut existed = Vec::with_capacity(items.len());
        let mut recipients = Vec::new();
        let mut seen = HashSet::with_capacity(items.len());
        for (id, kind, delivered) in items {
            let key = outbox_key(id, *kind);
            let value = match db.get_pinned_cf(self.cf(Cf::Outbox), key)? {
                Some(value) if seen.insert(key) => value,
                _ => {
                    existed.push(false);
                    continue;
                }
            };
            let entry: Outgoing = decode_value(Cf::Outbox, &key, &value)?;
            batch.delete_cf(self.cf(Cf::Outbox), key);
            if *delivered && *kind == OutKind::Message {
                if let Some(mut record) = self.message(id)? {
                    record.state = State::Delivered;
                    batch.put_cf(self.cf(Cf::Messages), id.as_bytes(), encode(&record)?);
                }
            }
            recipients.push((entry.to, entry.kind));
            existed.push(true);
        }
        if !recipients.is_empty() {
            db.write_opt(batch, &self.inner.write_opts)?;
        }
        for (to, kind) in &recipients {
            counts.remove(to, *kind);
        }
        Ok(existed)
    }

    /// How many messages and control messages the outbox holds (receipts apart).
    pub fn outbox_len(&self) -> usize {
        lock(&self.inner.write_lock).total
    }

    /// How many deletion receipts the outbox holds.
    pub fn outbox_receipts(&self) -> usize {
        lock(&self.inner.write_lock).receipts
    }
}
