//! Deletion receipts, both ways. As a replica: applying another account's revoke or burn queues
//! this node's signed receipt for that account in the tombstone's own write, and hands it to the
//! event loop for delivery. As the revoker (or burner): a receipt that arrives is checked against
//! this account's tombstone and kept, and [`Core::deletion`] says which replicas confirmed.

use tim_protocol::{
    encode, policy, AccountId, Action, Control, Envelope, Header, MessageId, Receipt, Recipient, Verified, Via,
};
use tim_storage::{OutKind, Outgoing, ReceiptOutcome, TombstoneOutcome};
use tracing::{debug, warn};

use super::{bump, inbound::Verdict, now_ms, Core};
use crate::{
    delivery::{Delivery, DeliveryKind},
    Error, Event, Result,
};

/// One replica's confirmation that it destroyed a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// The replica's account.
    pub account: AccountId,
    /// When it applied the tombstone, ms since the epoch by its clock (signed).
    pub at: u64,
}

/// Where a revoke or burn of the local account took effect, from the receipts its replicas sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The destroyed message.
    pub mid: MessageId,
    /// Revoke or burn.
    pub action: Action,
    /// The replicas that must confirm: for a direct message the other party (none for a message
    /// to oneself); for a private founded room the members when the message was sent, but the
    /// local account; `None` for any other room, whose membership is open.
    pub expected: Option<Vec<AccountId>>,
    /// The replicas that confirmed, each with its signed time, oldest first.
    pub confirmed: Vec<Confirmation>,
    /// `expected` less `confirmed`; `None` for an open room.
    pub pending: Option<Vec<AccountId>>,
}

impl Core {
    /// The replicas a deletion by the local account of the message with header `target` must
    /// reach (see [`Deletion::expected`]).
    pub(crate) fn expected_replicas(&self, target: &Header) -> Option<Vec<AccountId>> {
        match &target.to {
            Recipient::Room(room) => {
                let state = self.room_state(room).filter(|s| s.private)?;
                let mut members = state.members_at(target.sent_at);
                members.retain(|a| *a != self.account);
                Some(members)
            }
            Recipient::Account(_) => Some(policy::direct_replica(target, &self.account).into_iter().collect()),
        }
    }

    /// Applies a verified inbound revoke or burn. One signed by another account also queues this
    /// node's receipt for its signer in the same write, and hands it to the event loop.
    pub(super) fn apply_inbound_tombstone(&self, control: &Verified<Control>) -> Result<TombstoneOutcome> {
        if control.by == self.account || !self.deletion_receipts {
            // This account's own control (back from a room or another device): nobody to tell.
            return Ok(self.store.apply_tombstone(control)?);
        }
        let at = now_ms();
        let receipt = Receipt::sign(&self.key, control.id(), control.by, at)?;
        let frame = encode(&Envelope::Receipt(receipt.into_inner()))?;
        let outgoing = Outgoing {
            to: control.by,
            kind: OutKind::Receipt,
            frame,
            queued_at: at,
        };
        let (outcome, queued) = self.store.apply_tombstone_with_receipt(control, outgoing.clone())?;
        if queued {
            bump(&self.counters.receipts_sent);
            let delivery = Delivery::new(control.by, control.id(), outgoing.frame, DeliveryKind::Receipt, at);
            if self.replies_out.try_send(delivery).is_err() {
                // It waits in the outbox on disk and goes out at the next start.
                debug!(mid = %control.id(), "receipt queue full; the receipt is sent after a restart");
            }
        }
        Ok(outcome)
    }

    /// A receipt that arrived `via` a path: verified, checked against this account's tombstone,
    /// kept, reported. Refusals are counted.
    pub(super) fn receipt_in(&self, receipt: Receipt, via: &Via) -> Result<Verdict> {
        let result = self.check_and_keep_receipt(receipt, via);
        if result.is_err() {
            bump(&self.counters.receipts_refused);
        }
        result
    }

    fn check_and_keep_receipt(&self, receipt: Receipt, via: &Via) -> Result<Verdict> {
        policy::check_receipt_path(via)?;
        let receipt = receipt
            .verify()
            .inspect_err(|e| warn!(error = %e, "refused a forged receipt"))?;
        let tombstone = self.store.tombstone(&receipt.target)?;
        policy::check_receipt(
            &receipt,
            &self.account,
            via,
            tombstone.as_ref().map(|t| &t.control),
            now_ms(),
        )
        .inspect_err(|e| debug!(error = %e, mid = %receipt.target, by = %receipt.by, "refused a receipt"))?;
        match self.store.put_receipt(&receipt)? {
            ReceiptOutcome::Duplicate => Ok(Verdict::Duplicate),
            // Not retried by the sender (4104): the bound stands.
            ReceiptOutcome::Full => {
                Err(tim_protocol::Error::BadParameters("this message has all the receipts it keeps".into()).into())
            }
            ReceiptOutcome::Stored => {
                bump(&self.counters.receipts_confirmed);
                self.emit(Event::DeletionConfirmed {
                    mid: receipt.target,
                    by: receipt.by,
                    at: receipt.at,
                });
                Ok(Verdict::Stored)
            }
        }
    }

    /// The receipts for a revoke or burn the local account made: `4109` when `mid` has no
    /// tombstone here, `4105` when someone else made it.
    pub(crate) fn deletion(&self, mid: MessageId) -> Result<Deletion> {
        let Some(tombstone) = self.store.tombstone(&mid)? else {
            return Err(Error::NotFound(mid));
        };
        if tombstone.by() != self.account {
            return Err(tim_protocol::Error::PermissionDenied("another account made this deletion").into());
        }
        let mut confirmed: Vec<Confirmation> = self
            .store
            .receipts(&mid)?
            .into_iter()
            .map(|r| Confirmation {
                account: r.by,
                at: r.at,
            })
            .collect();
        confirmed.sort_by_key(|c| (c.at, c.account));
        let expected = self.expected_replicas(tombstone.header());
        let pending = expected.as_ref().map(|e| {
            e.iter()
                .filter(|a| !confirmed.iter().any(|c| c.account == **a))
                .copied()
                .collect()
        });
        Ok(Deletion {
            mid,
            action: tombstone.action(),
            expected,
            confirmed,
            pending,
        })
    }

    /// For each id, the number of receipts kept (0 for anything that is not this account's
    /// deletion).
    pub(crate) fn confirmed_counts(&self, mids: &[MessageId]) -> Result<Vec<usize>> {
        mids.iter().map(|mid| Ok(self.store.receipt_count(mid)?)).collect()
    }
}
