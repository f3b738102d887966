//! Contacts: the local account's requests, accepts, rejects and removes (signed, stored with
//! their new state and queued in the outbox in one write), and the operations of other accounts
//! (verified, checked, applied in order, reported as events).

use tim_protocol::{policy, AccountId, ContactAction, ContactOp, ContactState, Via};
use tim_storage::ContactOutcome;
use tracing::{debug, warn};

use super::{bump, now_ms, Core, Verdict};
use crate::{
    delivery::{Delivery, DeliveryKind},
    Error, Event, Result,
};

impl Core {
    /// The local account does `action` for `account`. Returns the new state and the deliveries:
    /// the signed operation, and after a request or an accept the local account's display name,
    /// if it set one.
    pub(crate) fn contact_local(
        &self,
        account: AccountId,
        action: ContactAction,
    ) -> Result<(ContactState, Vec<Delivery>)> {
        if account == self.account {
            return Err(Error::BadParameters("an account cannot be its own contact".into()));
        }
        if self.is_blocked(&account) {
            return Err(Error::Blocked(account));
        }
        let (state, op) = self.sign_contact(account, &action)?;
        let mut deliveries = vec![contact_delivery(&op)?];
        if !matches!(op.action, ContactAction::Profile { .. }) {
            self.settle_requests(&account, state)?;
            self.emit(Event::Contact { account, state });
        }
        if matches!(op.action, ContactAction::Request { .. } | ContactAction::Accept) {
            deliveries.extend(self.profile_for(account)?);
        }
        if state == ContactState::Contact && matches!(op.action, ContactAction::Accept) {
            deliveries.extend(self.presence_for(account)?);
        }
        Ok((state, deliveries))
    }

    /// Runs the local `action` for `account` through the store's state machine, signing what it
    /// says to send; returns the new state and the signed operation (already in the outbox).
    fn sign_contact(&self, account: AccountId, action: &ContactAction) -> Result<(ContactState, ContactOp)> {
        let key = &self.key;
        let (state, op) = self
            .store
            .contact_local(&account, action, |send, at| ContactOp::sign(key, account, send, at))?;
        Ok((state, op.into_inner()))
    }

    /// The local account's display name queued for `account`, if it set one.
    fn profile_for(&self, account: AccountId) -> Result<Option<Delivery>> {
        let Some(name) = self.store.profile()? else {
            return Ok(None);
        };
        let (_, op) = self.sign_contact(account, &ContactAction::Profile { name })?;
        Ok(Some(contact_delivery(&op)?))
    }

    /// Sets the local account's display name (empty: none) and queues it for every account it
    /// has a contact state with.
    pub(crate) fn set_profile(&self, name: String) -> Result<Vec<Delivery>> {
        if name.len() > tim_protocol::contact::MAX_NAME {
            return Err(tim_protocol::Error::TooLarge {
                what: "display name",
                len: name.len(),
                max: tim_protocol::contact::MAX_NAME,
            }
            .into());
        }
        self.store.set_profile(&name)?;
        let mut deliveries = Vec::new();
        for (account, _) in self.store.contacts()? {
            if self.is_blocked(&account) {
                continue;
            }
            let (_, op) = self.sign_contact(account, &ContactAction::Profile { name: name.clone() })?;
            deliveries.push(contact_delivery(&op)?);
        }
        Ok(deliveries)
    }

    /// Another account's contact operation that arrived `via` a path.
    pub(super) fn contact_in(&self, op: ContactOp, via: &Via) -> Result<Verdict> {
        let op = op.verify().inspect_err(|e| {
            bump(&self.counters.forged_rejected);
            warn!(error = %e, "refused a forged contact operation");
        })?;
        policy::check_contact(&op, &self.account, via, now_ms())?;
        let (before, after, answer) = match self.store.contact_remote(&op)? {
            ContactOutcome::Duplicate => return Ok(Verdict::Duplicate),
            ContactOutcome::Applied { before, after, answer } => (before, after, answer),
        };
        debug!(from = %op.from, action = op.action.as_str(), ?before, ?after, "contact operation applied");
        if let (ContactAction::Request { note }, ContactState::Incoming) = (&op.action, after) {
            self.emit(Event::ContactRequest {
                from: op.from,
                note: note.clone(),
            });
        }
        if let ContactAction::Profile { name } = &op.action {
            self.emit(Event::Profile {
                account: op.from,
                name: name.clone(),
            });
        }
        if after != before {
            self.settle_requests(&op.from, after)?;
            self.emit(Event::Contact {
                account: op.from,
                state: after,
            });
        }
        if after == ContactState::Contact && before != ContactState::Contact {
            if let Some(profile) = self.profile_for(op.from)? {
                if self.replies_out.try_send(profile).is_err() {
                    debug!(from = %op.from, "reply queue full; the profile is sent after a restart");
                }
            }
            // Best effort: the next interval's notice follows anyway.
            if let Some(presence) = self.presence_for(op.from)? {
                let _ = self.replies_out.try_send(presence);
            }
        }
        if answer {
            let key = &self.key;
            let from = op.from;
            let accept = self
                .store
                .contact_answer(&from, |send, at| ContactOp::sign(key, from, send, at))?;
            if self.replies_out.try_send(contact_delivery(&accept)?).is_err() {
                debug!(%from, "reply queue full; the accept is sent after a restart");
            }
        }
        Ok(Verdict::Stored)
    }
}

/// The delivery of a signed contact operation to the account it is for.
fn contact_delivery(op: &ContactOp) -> Result<Delivery> {
    let frame = tim_protocol::encode(&tim_protocol::Envelope::Contact(op.clone()))?;
    Ok(Delivery::new(op.to, op.id(), frame, DeliveryKind::Contact, now_ms()))
}
