//! What the local account does to its own history: send (sign, store, queue), revoke or burn
//! (check, sign, tombstone, queue), mark read, and record how deliveries ended.

use tim_protocol::{
    encode, policy, AccountId, Action, Control, Envelope, Header, Message, MessageId, Recipient, Verified,
};
use tim_storage::{OutKind, Outgoing, State, TombstoneOutcome};
use tracing::warn;

use super::{bump, burn_deadline, now_ms, Core};
use crate::{delivery::DeliveryOutcome, Error, Event, Opened, Result};

/// Where a control message must go after it was applied locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// To the other party of a direct message.
    Account(AccountId),
    /// To the room's topic.
    Room(tim_protocol::RoomId),
    /// Nowhere (a message to oneself).
    Local,
}

impl Core {
    /// Signs and stores a new message from the local account (state `sent`); a direct message is
    /// queued in the outbox in the same write. Returns its header, id and frame.
    pub(crate) fn send(
        &self,
        to: Recipient,
        body: Vec<u8>,
        burn_after_read: Option<u32>,
    ) -> Result<(Header, MessageId, Vec<u8>)> {
        if let Recipient::Account(account) = &to {
            if self.is_blocked(account) {
                return Err(Error::Blocked(*account));
            }
        }
        let travelling = self.outgoing_body(&to, &body)?;
        let message = Message::sign(&self.key, to, travelling, now_ms(), burn_after_read)?;
        let frame = encode(&Envelope::Message(message.get().clone()))?;
        let h = message.head().clone();
        match &h.to {
            Recipient::Account(to) if *to != self.account => {
                let outgoing = Outgoing {
                    to: *to,
                    kind: OutKind::Message,
                    frame: frame.clone(),
                    queued_at: now_ms(),
                };
                self.store.put_outgoing(&message, outgoing)?
            }
            _ => self.store.put_message(&message, State::Sent)?,
        };
        bump(&self.counters.messages_out);
        self.emit(Event::Message {
            mid: message.id(),
            from: h.from,
            conversation: self.conversation(&h),
            sent_at: h.sent_at,
            // As it travels; `Events` opens it (see `Core::stored`).
            body: message.body.clone(),
            encrypted: false,
            burn_after_read: h.burn_after_read,
        });
        Ok((h, message.id(), frame))
    }

    /// Revokes or burns `mid` as the local account: checks the rules, signs, tombstones locally
    /// (queuing the control message in the outbox for a direct message, in the same write) and
    /// says where the control message must go.
    pub(crate) fn revoke_or_burn(
        &self,
        action: Action,
        mid: MessageId,
    ) -> Result<(Verified<Control>, Destination, Vec<u8>)> {
        let now = now_ms();
        let target = match self.store.entry(&mid)? {
            None => return Err(Error::NotFound(mid)),
            Some(tim_storage::Entry::Tombstone(_)) => return Err(Error::Tombstoned(mid)),
            Some(tim_storage::Entry::Message(stored)) => stored.message.header,
        };
        policy::check_local_control(action, &target.header, &self.account, now, self.revoke_window)?;
        // The target comes from our store, which holds only verified messages.
        let control = Control::sign_known(&self.key, action, target, now)?;
        let frame = encode(&Envelope::Control(control.get().clone()))?;
        let h = &control.target.header;
        let route = match (&h.to, action) {
            (Recipient::Room(room), _) => Destination::Room(room.clone()),
            (Recipient::Account(to), _) if *to == h.from => Destination::Local,
            (Recipient::Account(to), Action::Revoke) => Destination::Account(*to),
            (Recipient::Account(_), Action::Burn) => Destination::Account(h.from),
        };
        let outcome = match &route {
            Destination::Account(to) => {
                let outgoing = Outgoing {
                    to: *to,
                    kind: OutKind::Control,
                    frame: frame.clone(),
                    queued_at: now,
                };
                self.store.apply_tombstone_outgoing(&control, outgoing)?
            }
            _ => self.store.apply_tombstone(&control)?,
        };
        match outcome {
            TombstoneOutcome::Applied { .. } => self.tombstoned(&control),
            TombstoneOutcome::Duplicate => return Err(Error::Tombstoned(mid)),
        }
        Ok((control, route, frame))
    }

    /// Marks a received message read and returns its body with its read time and burn deadline.
    /// Opening a message the local account sent changes nothing.
    pub(crate) fn mark_read(&self, mid: MessageId) -> Result<Opened> {
        let Some(stored) = self.store.message(&mid)? else {
            return Err(match self.store.tombstone(&mid)? {
                Some(_) => Error::Tombstoned(mid),
                None => Error::NotFound(mid),
            });
        };
        let record = if stored.message.head().from == self.account {
            stored
        } else {
            match self.store.mark_read(&mid, now_ms())? {
                Some(record) => record,
                // Burned or revoked between the two reads.
                None => return Err(Error::Tombstoned(mid)),
            }
        };
        let burn_at = record
            .message
            .head()
            .burn_after_read
            .zip(record.read_at)
            .map(|(secs, read_at)| burn_deadline(read_at, secs));
        let body = self.open_body(&record.message)?;
        Ok(Opened {
            mid,
            read_at: record.read_at,
            burn_at,
            body: body.text,
            encrypted: body.encrypted,
        })
    }

    /// Outbox entries are done, acknowledged (`delivered`) or given up, in one write. A delivered
    /// message moves to `delivered` and is reported.
    pub(crate) fn record_outcomes(&self, outcomes: &[DeliveryOutcome]) {
        let items: Vec<_> = outcomes.iter().map(|f| (f.mid, f.kind, f.delivered)).collect();
        match self.store.outbox_done_many(&items) {
            Ok(existed) => {
                for (f, existed) in outcomes.iter().zip(existed) {
                    if existed && f.delivered && f.kind == OutKind::Message {
                        self.emit(Event::Delivered { mid: f.mid, to: f.to });
                    }
                }
            }
            Err(e) => warn!(count = outcomes.len(), error = %e, "could not update the outbox"),
        }
    }
}
