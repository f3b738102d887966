//! Inbound items (from a pipe, gossip or a sync page): decode, check the policy, verify, then
//! store a message or apply a tombstone, and the [`Verdict`] that decides the ack or the gossip
//! report.

use tim_protocol::{
    decode, policy, policy::ReceiverClock, Ack, Action, Code, Control, Envelope, Message, Verified, Via,
};
use tim_storage::{PutOutcome, State, TombstoneOutcome};
use tracing::{debug, warn};

use super::{bump, now_ms, Core};
use crate::{Error, Event, Result};

/// What became of an inbound item; decides the ack and the gossip verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Stored or applied.
    Stored,
    /// Already had it.
    Duplicate,
    /// Valid but not taken (tombstoned, over policy, local failure): do not forward, do not
    /// penalise the peer.
    Ignored(Code),
    /// Invalid: refuse and penalise the peer.
    Invalid(Code),
}

impl Verdict {
    pub(crate) fn ack(self) -> Ack {
        match self {
            Verdict::Stored => Ack::Stored,
            Verdict::Duplicate => Ack::Duplicate,
            Verdict::Ignored(code) | Verdict::Invalid(code) => Ack::Refused { code: code.number() },
        }
    }
}

impl Core {
    /// Decodes, verifies, stores or applies an inbound frame that arrived `via` a path.
    pub(crate) fn inbound(&self, bytes: &[u8], via: &Via) -> Verdict {
        self.inbound_reporting_valid(bytes, via, || {})
    }

    /// [`Core::inbound`], calling `valid` as soon as the item passed every check that needs no
    /// write (decoding, destination, signatures, rules, not tombstoned here) and before it is
    /// stored, so gossip can forward it without waiting for the disk. Storing is idempotent and
    /// tombstones win, so a store that fails afterwards loses nothing the room cannot resend.
    pub(crate) fn inbound_reporting_valid(&self, bytes: &[u8], via: &Via, valid: impl FnOnce()) -> Verdict {
        let result = decode::<Envelope>(bytes)
            .map_err(Error::from)
            .and_then(|envelope| self.try_envelope(envelope, via, valid));
        self.verdict_of(result, via)
    }

    /// The verdict on an inbound item's outcome: failures are logged and counted by kind.
    pub(super) fn verdict_of(&self, result: Result<Verdict>, via: &Via) -> Verdict {
        let verdict = self.verdict_of_result(result, via);
        if matches!(verdict, Verdict::Ignored(_)) {
            bump(&self.counters.ignored);
        }
        verdict
    }

    fn verdict_of_result(&self, result: Result<Verdict>, via: &Via) -> Verdict {
        match result {
            Ok(verdict) => verdict,
            Err(e) => {
                let code = e.code();
                match e {
                    Error::Storage(tim_storage::Error::Tombstoned(mid)) => {
                        debug!(%mid, "refused a copy of a tombstoned message");
                        Verdict::Ignored(code)
                    }
                    Error::Storage(e) => {
                        warn!(error = %e, "storage failed on inbound item");
                        Verdict::Ignored(code)
                    }
                    // Too old, a room not known here yet (judged once its operations arrive), a
                    // full room: not the sender's fault.
                    Error::Protocol(
                        tim_protocol::Error::Expired(_)
                        | tim_protocol::Error::NotFound(_)
                        | tim_protocol::Error::Full(_),
                    ) => Verdict::Ignored(code),
                    Error::Blocked(account) => {
                        debug!(%account, "refused a blocked account's item");
                        Verdict::Ignored(code)
                    }
                    other => {
                        bump(&self.counters.invalid_rejected);
                        debug!(error = %other, ?via, "rejected invalid inbound item");
                        Verdict::Invalid(code)
                    }
                }
            }
        }
    }

    pub(super) fn try_envelope(&self, envelope: Envelope, via: &Via, valid: impl FnOnce()) -> Result<Verdict> {
        // A receipt names no header; `policy::check_receipt` judges its path.
        if let Some(header) = policy::header_of(&envelope) {
            policy::check_destination(header, &self.account, via)?;
        }
        self.check_not_blocked(&envelope, via)?;
        match envelope {
            Envelope::Message(message) => {
                policy::check_not_future("sent_at", message.head().sent_at, now_ms())?;
                let message = message.verify()?;
                self.check_room_post(&message)?;
                if self.store.is_tombstoned(&message.id())? {
                    return Err(tim_storage::Error::Tombstoned(message.id()).into());
                }
                valid();
                if *via == Via::Direct && !self.admits(&message.head().from)? {
                    return self.hold_request(&message);
                }
                match self.store.put_message(&message, State::Received)? {
                    PutOutcome::Duplicate => Ok(Verdict::Duplicate),
                    PutOutcome::Stored => {
                        self.stored(&message);
                        Ok(Verdict::Stored)
                    }
                }
            }
            Envelope::Control(control) => {
                // A revoke of a message we hold needs only its own signature checked. A held
                // message is not tombstoned (the two change in one batch), so only a target we do
                // not hold needs the tombstone lookup.
                let target = control.target.id();
                let held = self.store.message(&target)?;
                let held_since = held.as_ref().map(|m| m.stored_at.max(self.started_at));
                let known = held.map(|m| m.message.header);
                if known.is_none() && self.store.is_tombstoned(&target)? {
                    return Ok(Verdict::Duplicate);
                }
                let control = match control.verify_known(known.as_ref()) {
                    Ok(c) => c,
                    Err(e) => {
                        if matches!(e.code(), Code::InvalidSignature | Code::PermissionDenied) {
                            bump(&self.counters.forged_rejected);
                            warn!(error = %e, ?via, "refused a forged control message");
                        }
                        return Err(e.into());
                    }
                };
                let clock = ReceiverClock {
                    now: now_ms(),
                    held_since,
                    grace: self.revoke_grace,
                };
                policy::check_inbound_control(&control, &self.account, via, self.revoke_window, &clock)?;
                valid();
                match self.apply_inbound_tombstone(&control)? {
                    TombstoneOutcome::Duplicate => Ok(Verdict::Duplicate),
                    TombstoneOutcome::Applied { .. } => {
                        self.tombstoned(&control);
                        Ok(Verdict::Stored)
                    }
                }
            }
            Envelope::Receipt(receipt) => self.receipt_in(receipt, via),
            Envelope::Contact(op) => self.contact_in(op, via),
            Envelope::Stream(stream) => self.stream_in(stream, via),
            Envelope::Presence(notice) => self.presence_in(notice, via),
            Envelope::Room(op) => self.room_op_in(op, via),
            Envelope::Invite { create, invite } => self.invite_in(create, invite, via),
            Envelope::SealKey(announcement) => self.seal_key_in(announcement, via),
        }
    }

    /// A received message was stored: count and report it.
    pub(super) fn stored(&self, message: &Verified<Message>) {
        bump(&self.counters.messages_in);
        let h = message.head();
        self.learn_from_body(&h.from, &h.to, &message.body);
        // The body as it travelled: each subscriber's `Events` opens it on its own task, off the
        // path to the sender's acknowledgement.
        self.emit(Event::Message {
            mid: message.id(),
            from: h.from,
            conversation: self.conversation(h),
            sent_at: h.sent_at,
            body: message.body.clone(),
            encrypted: false,
            burn_after_read: h.burn_after_read,
        });
    }

    pub(super) fn tombstoned(&self, control: &Verified<Control>) {
        let counter = match control.action {
            Action::Revoke => &self.counters.revokes_applied,
            Action::Burn => &self.counters.burns_applied,
        };
        bump(counter);
        let conversation = self.conversation(&control.target.header);
        self.emit(Event::tombstone(control.action, control.id(), control.by, conversation));
    }
}
