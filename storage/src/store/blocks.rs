//! Blocked accounts, in the meta family as `block/<account>` (value: when, ms since the epoch,
//! big-endian). Blocking an account drops, in the same batch, everything the outbox holds for it:
//! nothing queued before the block reaches it afterwards.

use rocksdb::WriteBatch;
use tim_protocol::AccountId;

use super::{corrupt, decode_value, lock, meta::visit, now_ms, Store};
use crate::{Cf, Error, Outgoing, Result};

/// Meta key prefix: a blocked account.
const BLOCK: &[u8] = b"block/";

/// The most accounts one node blocks; a block beyond it is refused (`5104`). Blocking is a local
/// decision of the node's own user, so this bounds only a runaway script.
pub const MAX_BLOCKS: usize = 10_000;

fn block_key(account: &AccountId) -> Vec<u8> {
    let mut key = BLOCK.to_vec();
    key.extend_from_slice(account.as_bytes());
    key
}

impl Store {
    /// Blocks `account` and drops every outbox entry addressed to it, in one batch. Returns how
    /// many entries were dropped; blocking an account already blocked drops nothing and keeps the
    /// first block time.
    pub fn block(&self, account: &AccountId) -> Result<usize> {
        let db = &self.inner.db;
        let (cf_meta, cf_out) = (self.cf(Cf::Meta), self.cf(Cf::Outbox));
        let mut counts = lock(&self.inner.write_lock);
        let key = block_key(account);
        let mut batch = WriteBatch::default();
        if db.get_pinned_cf(cf_meta, &key)?.is_none() {
            if self.blocks()?.len() >= MAX_BLOCKS {
                return Err(Error::TooMany("blocked accounts"));
            }
            batch.put_cf(cf_meta, &key, now_ms().to_be_bytes());
        }
        let mut dropped = Vec::new();
        for item in db.iterator_cf(cf_out, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            let out: Outgoing = decode_value(Cf::Outbox, &k, &v)?;
            if out.to == *account {
                batch.delete_cf(cf_out, &k);
                dropped.push(out.kind);
            }
        }
        if !batch.is_empty() {
            db.write_opt(batch, &self.inner.write_opts)?;
        }
        for kind in &dropped {
            counts.remove(account, *kind);
        }
        Ok(dropped.len())
    }

    /// Lifts a block. Returns whether `account` was blocked.
    pub fn unblock(&self, account: &AccountId) -> Result<bool> {
        let _guard = lock(&self.inner.write_lock);
        let key = block_key(account);
        let cf_meta = self.cf(Cf::Meta);
        if self.inner.db.get_pinned_cf(cf_meta, &key)?.is_none() {
            return Ok(false);
        }
        self.inner.db.delete_cf_opt(cf_meta, &key, &self.inner.write_opts)?;
        Ok(true)
    }

    /// Every blocked account, in id order.
    pub fn blocks(&self) -> Result<Vec<AccountId>> {
        let mut out = Vec::new();
        let mut bad = None;
        visit(
            &self.inner.db,
            self.cf(Cf::Meta),
            BLOCK,
            |key, _| match <[u8; 32]>::try_from(&key[BLOCK.len()..]) {
                Ok(bytes) => match AccountId::from_bytes(bytes) {
                    Ok(account) => out.push(account),
                    Err(_) => bad = Some(key.to_vec()),
                },
                Err(_) => bad = Some(key.to_vec()),
            },
        )?;
        match bad {
            Some(key) => Err(corrupt(Cf::Meta, &key, "bad block key")),
            None => Ok(out),
        }
    }
}
