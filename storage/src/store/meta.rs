//! Node metadata in the `meta` family: the rooms this node has joined, the deadlines of
//! burn-after-read timers, the bodies still to be shredded and the seal-key records learned for
//! other accounts, kept on disk so they survive a restart (and a crash).

use rocksdb::{ColumnFamily, DB};
use tim_protocol::{MessageId, RoomId};

use super::{corrupt, Store};
use crate::{Cf, Result, StoredMessage};

/// Meta key prefix: a joined room.
const META_ROOM: &[u8] = b"room/";
/// Meta key prefix: a burn-after-read deadline (`deadline u64 BE || mid`).
const META_BURN: &[u8] = b"burn/";
/// Meta key prefix: a destroyed body that may still sit in a file (`mid`). Written in the
/// tombstone's batch, deleted once a shred pass has removed the body from every file.
const META_SHRED: &[u8] = b"shred/";
/// Meta key prefix: the seal-key record the node seals to for an account (`account`), as the
/// node encoded it.
const META_SEAL_KEY: &[u8] = b"sealkey/";

impl Store {
    /// Every pending burn-after-read deadline (ms since the epoch) with its message id, soonest
    /// first. An entry disappears when the message is tombstoned.
    pub fn burn_deadlines(&self) -> Result<Vec<(u64, MessageId)>> {
        let mut out = Vec::new();
        for (key, _) in self.meta_scan(META_BURN)? {
            let rest = &key[META_BURN.len()..];
            let parsed = rest
                .get(..8)
                .and_then(|d| <[u8; 8]>::try_from(d).ok())
                .zip(rest.get(8..).and_then(|m| <[u8; 32]>::try_from(m).ok()));
            match parsed {
                Some((deadline, mid)) => out.push((u64::from_be_bytes(deadline), MessageId::from_bytes(mid))),
                None => return Err(corrupt(Cf::Meta, &key, "bad burn timer key")),
            }
        }
        Ok(out)
    }

    /// Records that this node joined (`true`) or left (`false`) a room.
    pub fn set_room(&self, room: &RoomId, joined: bool) -> Result<()> {
        let mut key = META_ROOM.to_vec();
        key.extend_from_slice(room.as_str().as_bytes());
        let cf = self.cf(Cf::Meta);
        if joined {
            self.inner.db.put_cf_opt(cf, key, [], &self.inner.write_opts)?;
        } else {
            self.inner.db.delete_cf_opt(cf, key, &self.inner.write_opts)?;
        }
        Ok(())
    }

    /// The rooms this node has joined.
    pub fn rooms(&self) -> Result<Vec<RoomId>> {
        self.meta_scan(META_ROOM)?
            .into_iter()
            .map(|(key, _)| {
                let name = std::str::from_utf8(&key[META_ROOM.len()..]).ok();
                name.and_then(|n| RoomId::new(n).ok())
                    .ok_or_else(|| corrupt(Cf::Meta, &key, "bad room id"))
            })
            .collect()
    }

    /// A setting the node keeps across restarts (`settings/<name>`), as the node wrote it.
    pub fn setting(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.db.get_cf(self.cf(Cf::Meta), setting_key(name))?)
    }

    /// Writes a setting (see [`Store::setting`]).
    pub fn set_setting(&self, name: &str, value: &[u8]) -> Result<()> {
        let cf = self.cf(Cf::Meta);
        Ok(self
            .inner
            .db
            .put_cf_opt(cf, setting_key(name), value, &self.inner.write_opts)?)
    }

    /// Keeps the seal-key record (as the node encoded it) to seal to for `account`, or forgets it.
    pub fn set_seal_key(&self, account: &tim_protocol::AccountId, record: Option<&[u8]>) -> Result<()> {
        let mut key = META_SEAL_KEY.to_vec();
        key.extend_from_slice(account.as_bytes());
        let cf = self.cf(Cf::Meta);
        match record {
            Some(value) => self.inner.db.put_cf_opt(cf, key, value, &self.inner.write_opts)?,
            None => self.inner.db.delete_cf_opt(cf, key, &self.inner.write_opts)?,
        }
        Ok(())
    }

    /// Every seal-key record kept (see [`Store::set_seal_key`]), as the node encoded them.
    pub fn seal_keys(&self) -> Result<Vec<Vec<u8>>> {
        Ok(self.meta_scan(META_SEAL_KEY)?.into_iter().map(|(_, v)| v).collect())
    }

    /// Whether the local account wrote to `account` (so its messages are not a stranger's).
    pub fn is_known(&self, account: &tim_protocol::AccountId) -> bool {
        super::lock(&self.inner.quotas).known.contains(account)
    }

    /// Every meta key and value under `prefix`, in key order.
    fn meta_scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        scan(&self.inner.db, self.cf(Cf::Meta), prefix)
    }
}

/// Every key and value of `cf` under `prefix`, in key order.
pub(super) fn scan(db: &DB, cf: &ColumnFamily, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    visit(db, cf, prefix, |k, v| out.push((k.to_vec(), v.to_vec())))?;
    Ok(out)
}

/// Calls `f` with every key and value of `cf` under `prefix`, in key order, copying nothing.
pub(super) fn visit(db: &DB, cf: &ColumnFamily, prefix: &[u8], mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
    let mut read_opts = rocksdb::ReadOptions::default();
    read_opts.set_iterate_lower_bound(prefix.to_vec());
    let mut it = db.raw_iterator_cf_opt(cf, read_opts);
    it.seek(prefix);
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !k.starts_with(prefix) {
            break;
        }
        f(k, v);
        it.next();
    }
    it.status()?;
    Ok(())
}

fn setting_key(name: &str) -> Vec<u8> {
    let mut key = b"settings/".to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// The meta key recording that the body of `id` is yet to be shredded.
pub(super) fn shred_key(id: &MessageId) -> Vec<u8> {
    let mut key = META_SHRED.to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

/// The ids whose bodies a tombstone destroyed but no completed shred pass has yet removed from
/// disk (the process stopped, or crashed, in between).
pub(super) fn pending_shreds(db: &DB, meta: &ColumnFamily) -> Result<Vec<MessageId>> {
    scan(db, meta, META_SHRED)?
        .into_iter()
        .map(|(key, _)| {
            <[u8; 32]>::try_from(&key[META_SHRED.len()..])
                .map(MessageId::from_bytes)
                .map_err(|_| corrupt(Cf::Meta, &key, "bad shred key"))
        })
        .collect()
}

/// The meta key of a read message's burn-after-read deadline, if it has one.
pub(super) fn burn_key(record: &StoredMessage) -> Option<Vec<u8>> {
    let secs = record.message.head().burn_after_read?;
    let deadline = record.read_at?.saturating_add(u64::from(secs) * 1000);
    let mut key = META_BURN.to_vec();
    key.extend_from_slice(&deadline.to_be_bytes());
    key.extend_from_slice(record.id().as_bytes());
    Some(key)
}
