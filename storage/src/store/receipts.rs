//! Deletion receipts kept by the account that revoked or burned a message: one signed receipt per
//! replica and message (`receipts` family, keyed by target then replica account), at most
//! `Config::receipts_per_message` per message. The node checks each receipt against its tombstone
//! before it gets here; the store keeps the first receipt of each replica and counts.

use rocksdb::WriteBatch;
use tim_protocol::{encode, AccountId, MessageId, Receipt, Verified};

use super::{
    decode_value, lock,
    meta::{scan, visit},
    Store,
};
use crate::{Cf, Result};

/// What `put_receipt` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// The first receipt of this replica for this message: kept.
    Stored,
    /// This replica's receipt for this message was already kept; the first stands.
    Duplicate,
    /// This message already has `Config::receipts_per_message` receipts: refused.
    Full,
}

fn receipt_key(target: &MessageId, by: &AccountId) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(target.as_bytes());
    key[32..].copy_from_slice(by.as_bytes());
    key
}

impl Store {
    /// Keeps a verified receipt (checked by the caller against this account's tombstone).
    pub fn put_receipt(&self, receipt: &Verified<Receipt>) -> Result<ReceiptOutcome> {
        let db = &self.inner.db;
        let cf = self.cf(Cf::Receipts);
        let key = receipt_key(&receipt.target, &receipt.by);
        // The write lock makes the count-then-write of concurrent receipts one step.
        let _guard = lock(&self.inner.write_lock);
        if db.get_pinned_cf(cf, key)?.is_some() {
            return Ok(ReceiptOutcome::Duplicate);
        }
        if self.receipt_count(&receipt.target)? >= self.inner.receipts_per_message {
            return Ok(ReceiptOutcome::Full);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, key, encode(receipt.get())?);
        db.write_opt(batch, &self.inner.write_opts)?;
        Ok(ReceiptOutcome::Stored)
    }

    /// Every receipt kept for `target`, by replica account.
    pub fn receipts(&self, target: &MessageId) -> Result<Vec<Receipt>> {
        scan(&self.inner.db, self.cf(Cf::Receipts), target.as_bytes())?
            .into_iter()
            .map(|(key, value)| decode_value(Cf::Receipts, &key, &value))
            .collect()
    }

    /// How many receipts are kept for `target` (nothing is copied or decoded).
    pub fn receipt_count(&self, target: &MessageId) -> Result<usize> {
        let mut n = 0;
        visit(&self.inner.db, self.cf(Cf::Receipts), target.as_bytes(), |_, _| n += 1)?;
        Ok(n)
    }
}
