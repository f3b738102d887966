//! What strangers can make a node store in a room, bounded (the direct and pending quotas are
//! in `quotas.rs`).
//!
//! **Stranger room messages**: room messages from accounts this node's account never wrote to.
//! A room is open to anyone who joins it, and one joiner with free accounts could otherwise
//! make every member store without end. At most `Config::room_stranger_messages` per room;
//! when full, the room's oldest such message by signed send time is evicted: deleted with its
//! history and log entries, and shredded. A message older than all the full room keeps is not
//! kept, so members converge on the same newest messages and an evicted one fed back by a
//! peer changes nothing. A revoked one keeps its place as its tombstone and is evicted in
//! its turn. Nothing is refused. The messages this node sends and those of accounts it wrote
//! to never count; writing to an account releases its messages.
//!
//! The meta family records each (`rstrange/<room prefix><sent_at><mid>`, value: the sender and
//! the message's room-log sequence number, then its tombstone's once revoked); `quotas.rs`
//! rebuilds the counts from them at open. Everything here runs under the store's write lock.

use std::collections::HashSet;

use rocksdb::WriteBatch;
use tim_protocol::{AccountId, MessageId, Recipient, RoomId};

use super::{
    inbox::InboxChanges,
    quotas::{oldest, timed_key, Quotas},
    Store,
};
use crate::{
    keys::{history_key, room_log_key},
    Cf, Conversation, Result,
};

/// Meta key prefix: a held stranger room message (`room prefix || sent_at BE || mid`, value:
/// its sender and its room-log sequence number, then its tombstone's once revoked, big-endian).
pub(super) const ROOM_STRANGE: &[u8] = b"rstrange/";

/// A stranger's room message about to be stored: its sender, id, signed send time, room, and
/// the sequence number it gets in this node's room log.
#[derive(Debug, Clone, Copy)]
pub(super) struct RoomStranger<'a> {
    pub(super) from: AccountId,
    pub(super) id: &'a MessageId,
    pub(super) sent_at: u64,
    pub(super) room: &'a RoomId,
    pub(super) seq: u64,
}

impl Store {
    /// Counts a received room message of a stranger. When the room's share is full, the room's
    /// oldest stranger messages (by signed send time) are evicted until there is room: each one's
    /// record (or, for one revoked since, its tombstone), history entry, log entries and unread
    /// mark go in `batch`, and its id joins `evicted`, to be shredded once the batch is written.
    /// A message older than every one the full room keeps is not kept (`false`, nothing added),
    /// so a member feeding back what others evicted changes nothing, a late copy of a message
    /// whose tombstone was evicted included, and every member keeps the same newest messages.
    pub(super) fn hold_room_stranger_message(
        &self,
        quotas: &mut Quotas,
        batch: &mut WriteBatch,
        held: RoomStranger<'_>,
        evicted: &mut Vec<MessageId>,
        inbox: &mut InboxChanges,
    ) -> Result<bool> {
        let meta = self.cf(Cf::Meta);
        let room_prefix = Conversation::Room(held.room.clone()).prefix();
        let entry_prefix = [ROOM_STRANGE, room_prefix.as_slice()].concat();
        if self.before_room_window(quotas, held.room, (held.sent_at, held.id), evicted)? {
            return Ok(false);
        }
        let limit = quotas.limits.room_total.max(1);
        while quotas.rooms.get(&room_prefix).copied().unwrap_or(0) >= limit {
            let skip: HashSet<MessageId> = evicted.iter().copied().collect();
            let Some((key, victim, sender)) = oldest(&self.inner.db, meta, &entry_prefix, &skip, 1)?.pop() else {
                break;
            };
            let entry = self
                .inner
                .db
                .get_pinned_cf(meta, &key)?
                .map(|v| v.to_vec())
                .unwrap_or_default();
            if !self.evict_message(batch, &victim, inbox)? {
                self.evict_tombstone(batch, &victim)?;
            }
            // The message's log entry, and the tombstone's if it was revoked.
            for logged in [seq_at(&entry, 32), seq_at(&entry, 40)].into_iter().flatten() {
                batch.delete_cf(self.cf(Cf::RoomLog), room_log_key(held.room, logged));
            }
            batch.delete_cf(meta, key);
            if let Some(n) = quotas.rooms.get_mut(&room_prefix) {
                *n = n.saturating_sub(1);
            }
            quotas.room_senders.remove(&sender);
            evicted.push(victim);
        }
        let mut value = Vec::with_capacity(40);
        value.extend_from_slice(held.from.as_bytes());
        value.extend_from_slice(&held.seq.to_be_bytes());
        batch.put_cf(meta, timed_key(&entry_prefix, held.sent_at, held.id), value);
        *quotas.rooms.entry(room_prefix).or_default() += 1;
        quotas.room_senders.add(held.from);
        Ok(true)
    }

    /// A stranger's room message is being revoked, its tombstone logged at `tomb_seq`: the
    /// tombstone keeps the message's place in the room's share (so a stranger posting and
    /// revoking in turn is bounded too), and is evicted in its turn.
    pub(super) fn tombstone_room_stranger_message(
        &self,
        batch: &mut WriteBatch,
        message: &tim_protocol::Message,
        id: &MessageId,
        tomb_seq: u64,
    ) -> Result<()> {
        let head = message.head();
        let Recipient::Room(room) = &head.to else { return Ok(()) };
        let meta = self.cf(Cf::Meta);
        let room_prefix = Conversation::Room(room.clone()).prefix();
        let key = timed_key(&[ROOM_STRANGE, room_prefix.as_slice()].concat(), head.sent_at, id);
        if let Some(value) = self.inner.db.get_pinned_cf(meta, &key)? {
            let mut value = value.get(..40).unwrap_or(&value).to_vec();
            value.extend_from_slice(&tomb_seq.to_be_bytes());
            batch.put_cf(meta, key, value);
        }
        Ok(())
    }

    /// Whether a stranger's room message sent at `sent_at` falls before the window of `room`: the
    /// room's share is full and every entry in it (but those `evicted` in the batch being built)
    /// is newer. Such a message is not kept, and
    /// neither is a revoke of it that arrives without it (the window refuses the message itself).
    pub(super) fn before_room_window(
        &self,
        quotas: &Quotas,
        room: &RoomId,
        (sent_at, id): (u64, &MessageId),
        evicted: &[MessageId],
    ) -> Result<bool> {
        let room_prefix = Conversation::Room(room.clone()).prefix();
        if quotas.rooms.get(&room_prefix).copied().unwrap_or(0) < quotas.limits.room_total.max(1) {
            return Ok(false);
        }
        let entry_prefix = [ROOM_STRANGE, room_prefix.as_slice()].concat();
        let skip: HashSet<MessageId> = evicted.iter().copied().collect();
        let meta = self.cf(Cf::Meta);
        let Some((oldest_key, _, _)) = oldest(&self.inner.db, meta, &entry_prefix, &skip, 1)?.pop() else {
            return Ok(false);
        };
        Ok(timed_key(&entry_prefix, sent_at, id) < oldest_key)
    }

    /// Deletes an evicted tombstone in `batch` with its history marker.
    fn evict_tombstone(&self, batch: &mut WriteBatch, victim: &MessageId) -> Result<()> {
        let Some(tombstone) = self.tombstone(victim)? else {
            return Ok(());
        };
        batch.delete_cf(self.cf(Cf::Tombstones), victim.as_bytes());
        batch.delete_cf(
            self.cf(Cf::History),
            history_key(&tombstone.control.target.header, victim),
        );
        Ok(())
    }
}

/// The room prefix in a stranger room message's quota key
/// (`ROOM_STRANGE || room prefix || sent_at BE || mid`).
pub(super) fn room_of_entry(key: &[u8]) -> Result<&[u8]> {
    key.get(ROOM_STRANGE.len()..key.len().saturating_sub(40))
        .filter(|room| !room.is_empty())
        .ok_or_else(|| super::corrupt(Cf::Meta, key, "bad room quota key"))
}

/// A room-log sequence number in a stranger room message's quota entry: the message's at 32,
/// its tombstone's (once revoked) at 40.
pub(super) fn seq_at(value: &[u8], at: usize) -> Option<u64> {
    value
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}
