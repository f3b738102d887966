//! Room catch-up: each room's arrival log (what this node serves to a member catching up), its
//! sequence number, and the cursors of how far this node has synced from each peer.

use rocksdb::{ReadOptions, WriteBatch, DB};
use tim_protocol::{encode, Envelope, MessageId, RoomId};

use super::{cf_handle, corrupt, Store};
use crate::{keys::room_log_key, Cf, Conversation, Result};

/// Meta key: the last room-log sequence number.
const META_SEQ: &[u8] = b"seq";
/// Room-log value kind: a message.
pub(super) const LOG_MESSAGE: u8 = 0;
/// Room-log value kind: a tombstone.
pub(super) const LOG_TOMBSTONE: u8 = 1;
/// Room-log value kind: a founded room's operation.
pub(super) const LOG_ROOM_OP: u8 = 2;

/// A page of a room's arrival log, as served to a member catching up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogPage {
    /// Encoded envelopes (messages, then later their tombstones if any), oldest first.
    pub frames: Vec<Vec<u8>>,
    /// The sequence number to ask after next time.
    pub next: u64,
    /// Whether more entries follow.
    pub more: bool,
}

/// The last room-log sequence number handed out, as stored (0 in a new store).
pub(super) fn load_seq(db: &DB) -> Result<u64> {
    Ok(match db.get_cf(cf_handle(db, Cf::Meta), META_SEQ)? {
        Some(v) => u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| corrupt(Cf::Meta, META_SEQ, "bad sequence number"))?,
        ),
        None => 0,
    })
}

impl Store {
    /// Adds to `batch` the log entry `seq` of `room` (the message or tombstone of `id`, by `kind`)
    /// and the new last sequence number. The caller holds the write lock.
    pub(super) fn log_append(&self, batch: &mut WriteBatch, room: &RoomId, seq: u64, id: &MessageId, kind: u8) {
        let mut value = [0u8; 33];
        value[..32].copy_from_slice(id.as_bytes());
        value[32] = kind;
        batch.put_cf(self.cf(Cf::RoomLog), room_log_key(room, seq), value);
        batch.put_cf(self.cf(Cf::Meta), META_SEQ, seq.to_be_bytes());
    }

    /// Up to `limit` entries (at most `max_bytes` of frames) of `room`'s arrival log after
    /// sequence number `after`, as envelopes ready to send: a message that has since been
    /// tombstoned is never served (its tombstone follows in the log instead). With `after == 0`
    /// the page starts at the `window`-th newest entry, so a newcomer gets bounded history.
    pub fn room_log(
        &self,
        room: &RoomId,
        after: u64,
        limit: usize,
        max_bytes: usize,
        window: usize,
    ) -> Result<LogPage> {
        let prefix = Conversation::Room(room.clone()).prefix();
        let mut after = after;
        if after == 0 && window > 0 {
            let mut ro = ReadOptions::default();
            ro.set_iterate_lower_bound(prefix.clone());
            let mut it = self.inner.db.raw_iterator_cf_opt(self.cf(Cf::RoomLog), ro);
            it.seek_for_prev(room_log_key(room, u64::MAX));
            let mut n = 0;
            while let Some(key) = it.key() {
                if !key.starts_with(&prefix) {
                    break;
                }
                n += 1;
                if n > window {
                    after = seq_of(key).unwrap_or(0);
                    break;
                }
                it.prev();
            }
            it.status()?;
        }
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(prefix.clone());
        let mut it = self.inner.db.raw_iterator_cf_opt(self.cf(Cf::RoomLog), ro);
        it.seek(room_log_key(room, after.saturating_add(1)));
        let mut page = LogPage {
            next: after,
            ..LogPage::default()
        };
        let mut bytes = 0;
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if !key.starts_with(&prefix) {
                break;
            }
            if page.frames.len() >= limit || bytes >= max_bytes {
                page.more = true;
                break;
            }
            let seq = seq_of(key).ok_or_else(|| corrupt(Cf::RoomLog, key, "short key"))?;
            let id: [u8; 32] = value
                .get(..32)
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| corrupt(Cf::RoomLog, key, "short value"))?;
            let id = MessageId::from_bytes(id);
            let frame = match value.get(32) {
                Some(&LOG_MESSAGE) => match self.message(&id)? {
                    Some(m) => Some(encode(&Envelope::Message(m.message))?),
                    None => None, // tombstoned since: its tombstone is served instead
                },
                Some(&LOG_TOMBSTONE) => match self.tombstone(&id)? {
                    Some(t) => Some(encode(&Envelope::Control(t.control))?),
                    None => None,
                },
                Some(&LOG_ROOM_OP) => match self.room_op(room, &id)? {
                    Some(op) => Some(encode(&Envelope::Room(op))?),
                    None => None, // no longer applied
                },
                _ => return Err(corrupt(Cf::RoomLog, key, "bad kind")),
            };
            if let Some(frame) = frame {
                bytes += frame.len();
                page.frames.push(frame);
            }
            page.next = seq;
            it.next();
        }
        it.status()?;
        Ok(page)
    }

    /// The last log sequence number synced from `peer` for `room` (0 if never).
    pub fn sync_cursor(&self, room: &RoomId, peer: &[u8]) -> Result<u64> {
        let key = sync_key(room, peer);
        match self.inner.db.get_pinned_cf(self.cf(Cf::Sync), &key)? {
            Some(v) => Ok(u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| corrupt(Cf::Sync, &key, "bad cursor"))?,
            )),
            None => Ok(0),
        }
    }

    /// Records the last log sequence number synced from `peer` for `room`.
    pub fn set_sync_cursor(&self, room: &RoomId, peer: &[u8], seq: u64) -> Result<()> {
        let key = sync_key(room, peer);
        Ok(self
            .inner
            .db
            .put_cf_opt(self.cf(Cf::Sync), key, seq.to_be_bytes(), &self.inner.write_opts)?)
    }
}

/// The sequence number at the end of a room-log key.
fn seq_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// The sync-cursor key of `room` and a serving peer.
fn sync_key(room: &RoomId, peer: &[u8]) -> Vec<u8> {
    let mut k = Conversation::Room(room.clone()).prefix();
    k.extend_from_slice(peer);
    k
}
