//! The node's counters ([`Counters`], bumped as things happen) and their snapshot ([`Metrics`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters a node keeps; read with `Node::metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) revokes_applied: AtomicU64,
    pub(crate) burns_applied: AtomicU64,
    pub(crate) forged_rejected: AtomicU64,
    pub(crate) invalid_rejected: AtomicU64,
    pub(crate) ignored: AtomicU64,
    pub(crate) delivery_failures: AtomicU64,
    pub(crate) sync_pages: AtomicU64,
    pub(crate) relay_reservations: AtomicU64,
    pub(crate) relay_circuits: AtomicU64,
    pub(crate) holes_punched: AtomicU64,
    pub(crate) receipts_sent: AtomicU64,
    pub(crate) receipts_confirmed: AtomicU64,
    pub(crate) receipts_refused: AtomicU64,
}

/// A snapshot of a node's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Messages received and stored.
    pub messages_in: u64,
    /// Messages sent by this node's account.
    pub messages_out: u64,
    /// Revokes applied (local and remote).
    pub revokes_applied: u64,
    /// Burns applied (local and remote).
    pub burns_applied: u64,
    /// Control messages refused because their signature or permission failed (forgeries).
    pub forged_rejected: u64,
    /// Other inbound items refused as invalid (malformed, bad signature, wrong path).
    pub invalid_rejected: u64,
    /// Valid inbound items not taken, without blame (tombstoned, too old, blocked, a room not
    /// known here or not this account's any more, a local failure).
    pub ignored: u64,
    /// Deliveries given up.
    pub delivery_failures: u64,
    /// Undelivered entries in the outbox.
    pub outbox_depth: u64,
    /// Room sync pages received and applied.
    pub sync_pages_applied: u64,
    /// Relay reservations this node granted (with `--relay`; renewals not counted).
    pub relay_reservations_served: u64,
    /// Circuits this node relayed (with `--relay`).
    pub relay_circuits_served: u64,
    /// Relayed connections this node upgraded to direct ones by hole punching (DCUtR).
    pub holes_punched: u64,
    /// Deletion receipts this node queued for the accounts whose revokes and burns it applied.
    pub receipts_sent: u64,
    /// Deletion receipts kept for this account's revokes and burns.
    pub receipts_confirmed: u64,
    /// Receipts refused: forged, misdirected, about no deletion of this account, or over a bound.
    pub receipts_refused: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Metrics {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            messages_in: g(&self.messages_in),
            messages_out: g(&self.messages_out),
            revokes_applied: g(&self.revokes_applied),
            burns_applied: g(&self.burns_applied),
            forged_rejected: g(&self.forged_rejected),
            invalid_rejected: g(&self.invalid_rejected),
            ignored: g(&self.ignored),
            delivery_failures: g(&self.delivery_failures),
            outbox_depth: 0,
            sync_pages_applied: g(&self.sync_pages),
            relay_reservations_served: g(&self.relay_reservations),
            relay_circuits_served: g(&self.relay_circuits),
            holes_punched: g(&self.holes_punched),
            receipts_sent: g(&self.receipts_sent),
            receipts_confirmed: g(&self.receipts_confirmed),
            receipts_refused: g(&self.receipts_refused),
        }
    }
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
