//! Tombstones: applying a verified revoke or burn (the body deleted, the history entry turned
//! into a marker, any queued copy dropped, all in one batch) and reading tombstones back.

use std::sync::atomic::Ordering;

use rocksdb::WriteBatch;
use tim_protocol::{encode, Control, MessageId, Recipient, Verified};
use tracing::debug;

use super::{
    decode_value,
    inbox::{is_unread, InboxChanges},
    lock,
    messages::IDX_TOMBSTONE,
    meta::{burn_key, shred_key},
    now_ms,
    requests::request_key,
    room_log, Store,
};
use crate::{
    keys::history_key, keys::outbox_key, Cf, Conversation, OutKind, Outgoing, Result, StoredMessage, Tombstone,
};

/// What `apply_tombstone` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TombstoneOutcome {
    /// Newly applied. `had_body` tells whether a stored message was destroyed (otherwise the
    /// tombstone is "pending": the message, if it ever arrives, is refused).
    Applied {
        /// Whether a stored message body was destroyed.
        had_body: bool,
    },
    /// The id was already tombstoned; the first tombstone stands.
    Duplicate,
}

impl Store {
    /// Records a verified revoke or burn in one atomic batch: the tombstone, the deletion of the
    /// body, the history entry turned into a marker, and the removal of any queued outgoing copy
    /// of the message (it is never sent). Works when the target was never stored. The body's
    /// bytes are then shredded from disk by the background shredder (see [`Store::shred_now`]).
    pub fn apply_tombstone(&self, control: &Verified<Control>) -> Result<TombstoneOutcome> {
        Ok(self.write_tombstone(control, None)?.0)
    }

    /// [`Store::apply_tombstone`], and queues the control message in the outbox in the same batch.
    pub fn apply_tombstone_outgoing(
        &self,
        control: &Verified<Control>,
        outgoing: Outgoing,
    ) -> Result<TombstoneOutcome> {
        Ok(self.write_tombstone(control, Some(outgoing))?.0)
    }

    /// [`Store::apply_tombstone`] of another account's revoke or burn, queuing this node's deletion
    /// receipt for its signer (`receipt`, of kind [`OutKind::Receipt`]) in the same batch, so a
    /// crash cannot lose it. Receipts have their own outbox budget (`Config::outbox_receipts`):
    /// when it is full the tombstone is applied and the receipt is not queued. Returns the outcome
    /// and whether the receipt was queued (never for a duplicate).
    pub fn apply_tombstone_with_receipt(
        &self,
        control: &Verified<Control>,
        receipt: Outgoing,
    ) -> Result<(TombstoneOutcome, bool)> {
        debug_assert_eq!(receipt.kind, OutKind::Receipt);
        self.write_tombstone(control, Some(receipt))
    }

    fn write_tombstone(
        &self,
        control: &Verified<Control>,
        mut outgoing: Option<Outgoing>,
    ) -> Result<(TombstoneOutcome, bool)> {
        let db = &self.inner.db;
        let id = control.id();
        let (cf_msg, cf_idx, cf_tomb, cf_out) = (
            self.cf(Cf::Messages),
            self.cf(Cf::History),
            self.cf(Cf::Tombstones),
            self.cf(Cf::Outbox),
        );
        let mut destroyed_queued = false;
        let outcome = {
            let mut counts = lock(&self.inner.write_lock);
            let mut quotas = lock(&self.inner.quotas);
            let stored: Option<StoredMessage> = self.message(&id)?;
            // A held message is never tombstoned (every write of either holds this lock, and a
            // tombstone deletes its message in the same batch), so only a target not held needs
            // the tombstone lookup.
            if stored.is_none() && db.get_pinned_cf(cf_tomb, id.as_bytes())?.is_some() {
                return Ok((TombstoneOutcome::Duplicate, false));
            }
            // A revoke, without its target, of a stranger's room message from before the room's
            // window (its own tombstone evicted, say): the window refuses the message itself.
            let target = &control.target.header;
            if let (None, Recipient::Room(room)) = (&stored, &target.to) {
                if !quotas.known.contains(&target.from)
                    && self.before_room_window(&quotas, room, (target.sent_at, &id), &[])?
                {
                    return Ok((TombstoneOutcome::Duplicate, false));
                }
            }
            let ours = outgoing.as_ref().is_some_and(|o| o.kind == OutKind::Control);
            if outgoing.as_ref().is_some_and(|o| {
                o.kind == OutKind::Receipt
                    && counts.receipts_full(&o.to, self.inner.outbox_receipts_each, self.inner.outbox_receipts)
            }) {
                debug!(%id, "receipt budget full; the tombstone is applied without a receipt");
                outgoing = None;
            }
            let had_body = stored.is_some();
            let queued_key = outbox_key(&id, OutKind::Message);
            // Only direct messages wait in the outbox; a room message never does.
            let queued: Option<Outgoing> = match &control.target.header.to {
                Recipient::Room(_) => None,
                Recipient::Account(_) => match db.get_pinned_cf(cf_out, queued_key)? {
                    Some(v) => Some(decode_value(Cf::Outbox, &queued_key, &v)?),
                    None => None,
                },
            };
            let tombstone = Tombstone {
                applied_at: now_ms(),
                control: control.get().clone(),
            };
            let mut batch = WriteBatch::default();
            let mut inbox = InboxChanges::default();
            let conversation = Conversation::of(&control.target.header);
            // A held message request is in no history: it leaves its request list, nothing else.
            let request = match &stored {
                Some(record) if self.is_request(record)? => {
                    batch.delete_cf(self.cf(Cf::Meta), request_key(record));
                    true
                }
                _ => false,
            };
            // The quota counts change as the batch is built: if it is never written, they are
            // read back from disk.
            let filled = (|| -> Result<()> {
                match &stored {
                    // A stranger's direct message leaves the stranger quota with its body; a room
                    // message's tombstone keeps its place in the room's share.
                    Some(record) => {
                        if is_unread(record) && !request {
                            inbox.count(&conversation, -1);
                        }
                        let head = record.message.head();
                        match &head.to {
                            Recipient::Account(_) => {
                                self.release_stranger_message(
                                    &mut quotas,
                                    &mut batch,
                                    &head.from,
                                    &id,
                                    record.stored_at,
                                )?;
                            }
                            Recipient::Room(_) => {
                                // Logged next: the write lock keeps the sequence from moving.
                                let tomb_seq = self.inner.seq.load(Ordering::Relaxed) + 1;
                                self.tombstone_room_stranger_message(&mut batch, &record.message, &id, tomb_seq)?;
                            }
                        }
                    }
                    // Pending: the target may still come and must then be refused. Counted against
                    // the signer's share (a stranger can sign such tombstones for free); one this
                    // node writes itself, or one that cancels a queued copy, is not.
                    None if queued.is_none() && !ours => {
                        // Logged next, if a room's: the write lock keeps the sequence from moving.
                        let log_seq = matches!(control.target.header.to, Recipient::Room(_))
                            .then(|| self.inner.seq.load(Ordering::Relaxed) + 1);
                        self.hold_pending_tombstone(
                            &mut quotas,
                            &mut batch,
                            control.by,
                            &id,
                            tombstone.applied_at,
                            log_seq,
                        )?;
                    }
                    None => {}
                }
                batch.put_cf(cf_tomb, id.as_bytes(), encode(&tombstone)?);
                batch.delete_cf(cf_msg, id.as_bytes());
                // A direct conversation shows the marker only where it showed a message: a tombstone
                // for a message never held here marks nothing (a stranger could fill a history with
                // them). A room's history marks every revoke its members made, held or not.
                if (had_body && !request) || matches!(control.target.header.to, Recipient::Room(_)) {
                    batch.put_cf(cf_idx, history_key(&control.target.header, &id), [IDX_TOMBSTONE]);
                    inbox.touch(&conversation, control.target.header.sent_at, 0);
                }
                self.write_inbox(&mut batch, inbox)?;
                if let Some(key) = stored.as_ref().and_then(burn_key) {
                    batch.delete_cf(self.cf(Cf::Meta), key);
                }
                if queued.is_some() {
                    batch.delete_cf(cf_out, queued_key);
                }
                // The shred queue is persisted with the deletion itself, so a crash between this
                // write and the shred pass cannot leave the body's bytes behind (see `Store::open`).
                if had_body || queued.is_some() {
                    batch.put_cf(self.cf(Cf::Meta), shred_key(&id), []);
                }
                if let Some(o) = &outgoing {
                    batch.put_cf(cf_out, outbox_key(&id, o.kind), encode(o)?);
                }
                Ok(())
            })();
            if let Err(e) = filled {
                self.reload_quotas(&mut quotas);
                return Err(e);
            }
            let mut seq = self.inner.seq.load(Ordering::Relaxed);
            if let Recipient::Room(room) = &control.target.header.to {
                seq += 1;
                self.log_append(&mut batch, room, seq, &id, room_log::LOG_TOMBSTONE);
            }
            if let Err(e) = db.write_opt(batch, &self.inner.write_opts) {
                self.reload_quotas(&mut quotas);
                return Err(e.into());
            }
            self.inner.seq.store(seq, Ordering::Relaxed);
            if let Some(q) = &queued {
                counts.remove(&q.to, q.kind);
                destroyed_queued = true;
            }
            if let Some(o) = &outgoing {
                counts.add(o.to, o.kind);
            }
            TombstoneOutcome::Applied { had_body }
        };
        if outcome == (TombstoneOutcome::Applied { had_body: true }) || destroyed_queued {
            self.inner.queue_shred(id);
        }
        debug!(%id, action = control.action.as_str(), ?outcome, "tombstone applied");
        Ok((outcome, outgoing.is_some()))
    }

    /// The tombstone of this id, if any.
    pub fn tombstone(&self, id: &MessageId) -> Result<Option<Tombstone>> {
        self.read(Cf::Tombstones, id)
    }

    /// Whether this id is tombstoned (a point lookup; nothing is decoded).
    pub fn is_tombstoned(&self, id: &MessageId) -> Result<bool> {
        Ok(self
            .inner
            .db
            .get_pinned_cf(self.cf(Cf::Tombstones), id.as_bytes())?
            .is_some())
    }
}
