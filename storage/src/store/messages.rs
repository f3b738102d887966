//! Messages: storing them (alone, in batches, or with an outbox entry), reading them back, their
//! delivery and read state, and history pages of a conversation.

use std::{collections::HashSet, sync::atomic::Ordering};

use rocksdb::{ReadOptions, WriteBatch};
use tim_protocol::{encode, Message, MessageId, Recipient, Verified};

use super::{
    corrupt, decode_value,
    inbox::{is_unread, InboxChanges},
    lock,
    meta::burn_key,
    now_ms,
    quotas::StrangerMessage,
    room_log,
    room_quota::RoomStranger,
    Store,
};
use crate::{
    keys::{history_key, id_of_history_key, outbox_key},
    Cf, Conversation, Entry, Error, Outgoing, Result, State, StoredMessage,
};

/// The largest history page.
pub const MAX_PAGE: usize = 500;

/// History index value: the entry is a message.
pub(super) const IDX_MESSAGE: u8 = 0;
/// History index value: the entry is a tombstone marker.
pub(super) const IDX_TOMBSTONE: u8 = 1;

/// What `put_message` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Newly stored.
    Stored,
    /// Already stored; nothing changed.
    Duplicate,
}

/// A page of history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The entries, newest first.
    pub entries: Vec<Entry>,
    /// Pass as `before` for the next (older) page; `None` at the start of the conversation.
    pub next: Option<MessageId>,
}

impl Store {
    /// Stores a verified message with its state. Idempotent: storing the same message again is a
    /// [`PutOutcome::Duplicate`] and changes nothing. Refused with [`Error::Tombstoned`] (and
    /// nothing written) if its id was revoked or burned.
    pub fn put_message(&self, message: &Verified<Message>, state: State) -> Result<PutOutcome> {
        let mut results = self.write_messages(&[(message, state, None)])?;
        results.pop().unwrap_or(Err(Error::BadParameters("empty batch")))
    }

    /// Stores a message this node sends (state `sent`) and queues `outgoing` in the outbox, in
    /// one atomic batch. Refused with [`Error::OutboxFull`] when the outbox limits are reached.
    pub fn put_outgoing(&self, message: &Verified<Message>, outgoing: Outgoing) -> Result<PutOutcome> {
        let mut results = self.write_messages(&[(message, State::Sent, Some(outgoing))])?;
        results.pop().unwrap_or(Err(Error::BadParameters("empty batch")))
    }

    /// Stores many verified messages in one atomic `WriteBatch`; one outcome per input, in order.
    pub fn put_messages(&self, messages: &[(&Verified<Message>, State)]) -> Result<Vec<Result<PutOutcome>>> {
        let items: Vec<_> = messages.iter().map(|(m, s)| (*m, *s, None)).collect();
        self.write_messages(&items)
    }

    /// The one write path of messages: under the write lock, refuses tombstoned ids, skips
    /// duplicates, checks the outbox limits and the stranger quotas, and writes the record, its
    /// history entry, its room-log entry and any outbox entry in one batch.
    fn write_messages(
        &self,
        messages: &[(&Verified<Message>, State, Option<Outgoing>)],
    ) -> Result<Vec<Result<PutOutcome>>> {
        let mut counts = lock(&self.inner.write_lock);
        let mut quotas = lock(&self.inner.quotas);
        let mut seq = self.inner.seq.load(Ordering::Relaxed);
        let mut evicted = Vec::new();
        let mut queued = Vec::new();
        // The quota counts change as the batch is built: if it is never written, they are read
        // back from disk.
        let built = self.build_message_batch(messages, &counts, &mut quotas, (&mut seq, &mut evicted, &mut queued));
        let (batch, out) = match built {
            Ok(built) => built,
            Err(e) => {
                self.reload_quotas(&mut quotas);
                return Err(e);
            }
        };
        if !batch.is_empty() {
            if let Err(e) = self.inner.db.write_opt(batch, &self.inner.write_opts) {
                self.reload_quotas(&mut quotas);
                return Err(e.into());
            }
            self.inner.seq.store(seq, Ordering::Relaxed);
            for (to, kind) in queued {
                counts.add(to, kind);
            }
        }
        drop((quotas, counts));
        for victim in evicted {
            self.inner.queue_shred(victim);
        }
        Ok(out)
    }

    /// The batch of [`Store::write_messages`] and each message's outcome; advances `seq` by the
    /// room-log entries written, and collects the evicted ids and the outbox entries queued.
    #[allow(clippy::type_complexity)]
    fn build_message_batch(
        &self,
        messages: &[(&Verified<Message>, State, Option<Outgoing>)],
        counts: &super::outbox::OutboxCounts,
        quotas: &mut super::quotas::Quotas,
        (seq, evicted, queued): (
            &mut u64,
            &mut Vec<MessageId>,
            &mut Vec<(tim_protocol::AccountId, crate::OutKind)>,
        ),
    ) -> Result<(WriteBatch, Vec<Result<PutOutcome>>)> {
        let db = &self.inner.db;
        let (cf_msg, cf_idx, cf_tomb) = (self.cf(Cf::Messages), self.cf(Cf::History), self.cf(Cf::Tombstones));
        let now = now_ms();
        let keys: Vec<[u8; 32]> = messages.iter().map(|(m, _, _)| *m.id().as_bytes()).collect();
        let tombs = db.batched_multi_get_cf(cf_tomb, &keys, false);
        let existing = db.batched_multi_get_cf(cf_msg, &keys, false);
        let mut batch = WriteBatch::default();
        let mut seen = HashSet::with_capacity(messages.len());
        let mut out = Vec::with_capacity(messages.len());
        let mut inbox = InboxChanges::default();
        for (((message, state, outgoing), tomb), existing) in messages.iter().zip(tombs).zip(existing) {
            let id = message.id();
            if tomb?.is_some() {
                out.push(Err(Error::Tombstoned(id)));
                continue;
            }
            if existing?.is_some() || !seen.insert(id) {
                out.push(Ok(PutOutcome::Duplicate));
                continue;
            }
            let head = message.head();
            let received_from_stranger = *state == State::Received && !quotas.known.contains(&head.from);
            match &head.to {
                Recipient::Account(_) if received_from_stranger => {
                    let held = StrangerMessage {
                        from: head.from,
                        id: &id,
                        stored_at: now,
                    };
                    match self.hold_stranger_message(quotas, &mut batch, held, evicted, &mut inbox) {
                        Err(e @ Error::StrangerQuota(_)) => {
                            out.push(Err(e));
                            continue;
                        }
                        other => other?,
                    }
                }
                Recipient::Room(room) if received_from_stranger => {
                    let held = RoomStranger {
                        from: head.from,
                        id: &id,
                        sent_at: head.sent_at,
                        room,
                        seq: *seq + 1,
                    };
                    if !self.hold_room_stranger_message(quotas, &mut batch, held, evicted, &mut inbox)? {
                        // Older than every stranger message the full room keeps: let go at once.
                        out.push(Ok(PutOutcome::Duplicate));
                        continue;
                    }
                }
                _ => {}
            }
            if let Some(o) = outgoing {
                if counts.is_full(&o.to, self.inner.outbox_per_recipient, self.inner.outbox_total) {
                    out.push(Err(Error::OutboxFull(o.to)));
                    continue;
                }
                batch.put_cf(self.cf(Cf::Outbox), outbox_key(&id, o.kind), encode(o)?);
                queued.push((o.to, o.kind));
                if matches!(head.to, Recipient::Account(_)) {
                    self.make_known(quotas, &mut batch, o.to)?;
                }
            }
            let record = StoredMessage {
                state: *state,
                stored_at: now,
                read_at: None,
                message: message.get().clone(),
            };
            batch.put_cf(cf_msg, id.as_bytes(), encode(&record)?);
            batch.put_cf(cf_idx, history_key(message.head(), &id), [IDX_MESSAGE]);
            inbox.touch(
                &Conversation::of(head),
                head.sent_at,
                i64::from(*state == State::Received),
            );
            if let Recipient::Room(room) = &message.head().to {
                *seq += 1;
                self.log_append(&mut batch, room, *seq, &id, room_log::LOG_MESSAGE);
            }
            out.push(Ok(PutOutcome::Stored));
        }
        self.write_inbox(&mut batch, inbox)?;
        Ok((batch, out))
    }

    /// The stored message with this id, if any.
    pub fn message(&self, id: &MessageId) -> Result<Option<StoredMessage>> {
        self.read(Cf::Messages, id)
    }

    /// The message or tombstone with this id, if any.
    pub fn entry(&self, id: &MessageId) -> Result<Option<Entry>> {
        if let Some(t) = self.tombstone(id)? {
            return Ok(Some(Entry::Tombstone(t)));
        }
        Ok(self.message(id)?.map(Entry::Message))
    }

    /// For each id, whether this store already holds it, as a message or as a tombstone (one
    /// batched lookup per column family): what a catch-up page need not verify again.
    pub fn known_many(&self, ids: &[MessageId]) -> Result<Vec<bool>> {
        let db = &self.inner.db;
        let keys: Vec<&[u8; 32]> = ids.iter().map(MessageId::as_bytes).collect();
        let tombs = db.batched_multi_get_cf(self.cf(Cf::Tombstones), &keys, false);
        let stored = db.batched_multi_get_cf(self.cf(Cf::Messages), &keys, false);
        tombs
            .into_iter()
            .zip(stored)
            .map(|(t, m)| Ok(t?.is_some() || m?.is_some()))
            .collect()
    }

    /// Changes the state of a stored message (e.g. `Sent` to `Delivered`). Returns `false` if the
    /// message is not stored (never was, or tombstoned).
    pub fn set_state(&self, id: &MessageId, state: State) -> Result<bool> {
        self.update_message(id, |m| m.state = state)
    }

    /// Marks a stored message read at `read_at` (ms since the epoch), once; the first read time
    /// stands. If the message carries `burn_after_read`, its burn deadline is recorded in the same
    /// batch, so the timer survives a restart (see [`Store::burn_deadlines`]). Returns the record
    /// as now stored, or `None` if it is not stored.
    pub fn mark_read(&self, id: &MessageId, read_at: u64) -> Result<Option<StoredMessage>> {
        let (cf_msg, cf_meta) = (self.cf(Cf::Messages), self.cf(Cf::Meta));
        let _guard = lock(&self.inner.write_lock);
        let Some(mut record) = self.message(id)? else {
            return Ok(None);
        };
        if record.read_at.is_some() {
            return Ok(Some(record));
        }
        let mut batch = WriteBatch::default();
        if is_unread(&record) && !self.is_request(&record)? {
            let mut inbox = InboxChanges::default();
            inbox.count(&Conversation::of(record.message.head()), -1);
            self.write_inbox(&mut batch, inbox)?;
        }
        record.read_at = Some(read_at);
        batch.put_cf(cf_msg, id.as_bytes(), encode(&record)?);
        if let Some(key) = burn_key(&record) {
            batch.put_cf(cf_meta, key, []);
        }
        self.inner.db.write_opt(batch, &self.inner.write_opts)?;
        Ok(Some(record))
    }

    /// Rewrites a stored message record under the write lock (so it cannot race its tombstone).
    fn update_message(&self, id: &MessageId, change: impl FnOnce(&mut StoredMessage)) -> Result<bool> {
        let cf_msg = self.cf(Cf::Messages);
        let _guard = lock(&self.inner.write_lock);
        let Some(mut record) = self.message(id)? else {
            return Ok(false);
        };
        change(&mut record);
        self.inner
            .db
            .put_cf_opt(cf_msg, id.as_bytes(), encode(&record)?, &self.inner.write_opts)?;
        Ok(true)
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) entries of a conversation, newest first, strictly
    /// older than `before` if given. Revoked and burned messages appear as tombstone markers.
    pub fn history(&self, conversation: &Conversation, before: Option<&MessageId>, limit: usize) -> Result<Page> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::BadParameters("history limit must be between 1 and 500"));
        }
        let prefix = conversation.prefix();
        let start = match before {
            Some(id) => {
                let entry = self.entry(id)?.ok_or(Error::NotFound(*id))?;
                if Conversation::of(entry.header()) != *conversation {
                    return Err(Error::NotFound(*id));
                }
                history_key(entry.header(), id)
            }
            None => {
                let mut k = prefix.clone();
                k.extend_from_slice(&[0xff; 40]);
                k
            }
        };
        let mut read_opts = ReadOptions::default();
        read_opts.set_iterate_lower_bound(prefix.clone());
        let mut it = self.inner.db.raw_iterator_cf_opt(self.cf(Cf::History), read_opts);
        it.seek_for_prev(&start);
        let mut found: Vec<(MessageId, u8)> = Vec::with_capacity(limit);
        let mut more = false;
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if !key.starts_with(&prefix) {
                break;
            }
            if before.is_some() && key == start.as_slice() {
                it.prev();
                continue;
            }
            if found.len() == limit {
                more = true;
                break;
            }
            let id = id_of_history_key(key).ok_or_else(|| corrupt(Cf::History, key, "short key"))?;
            let kind = *value.first().ok_or_else(|| corrupt(Cf::History, key, "empty value"))?;
            found.push((id, kind));
            it.prev();
        }
        it.status()?;
        let (cf_msg, cf_tomb) = (self.cf(Cf::Messages), self.cf(Cf::Tombstones));
        let lookups = found.iter().map(|(id, kind)| {
            (
                if *kind == IDX_TOMBSTONE { cf_tomb } else { cf_msg },
                id.as_bytes().to_vec(),
            )
        });
        let values = self.inner.db.multi_get_cf(lookups);
        let mut entries = Vec::with_capacity(found.len());
        for ((id, kind), value) in found.iter().zip(values) {
            let Some(bytes) = value? else {
                // A concurrent tombstone moved it between our scan and this read; skip it here,
                // the next page load shows the marker.
                continue;
            };
            entries.push(if *kind == IDX_TOMBSTONE {
                Entry::Tombstone(decode_value(Cf::Tombstones, id.as_bytes(), &bytes)?)
            } else {
                Entry::Message(decode_value(Cf::Messages, id.as_bytes(), &bytes)?)
            });
        }
        let next = if more { found.last().map(|(id, _)| *id) } else { None };
        Ok(Page { entries, next })
    }
}
