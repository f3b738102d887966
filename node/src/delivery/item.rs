//! What travels through the delivery state machine: a [`Delivery`] (a frame for an account's
//! node, of a [`DeliveryKind`]) and, once it is over, its [`DeliveryOutcome`].

use tim_protocol::{AccountId, MessageId};
use tim_storage::{OutKind, Outgoing};

/// What a delivery carries, which decides whether it is in the outbox and whether a revoke
/// cancels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryKind {
    /// A message of the local account, in the outbox; a revoke cancels its unsent copies.
    Message,
    /// A revoke or burn of the local account, in the outbox.
    Control,
    /// A deletion receipt for another account's revoke or burn, in the outbox; its failure is
    /// logged, not reported (it is about someone else's message).
    Receipt,
    /// A contact operation of the local account, in the outbox.
    Contact,
    /// A founded room's operation for one account, in the outbox: an invitation for the
    /// invitee, an approval for the approved account, a leave for the founder.
    Invite,
    /// A stream frame: never in the outbox and never retried; its one attempt ends in
    /// [`Output::StreamDone`].
    Stream,
    /// A frame signed by anyone, forwarded as is (`Node::relay`); not in the outbox, counted
    /// against `Settings::max_relays`.
    Relay,
}

impl DeliveryKind {
    /// The outbox kind, for what is in the outbox.
    /// Whether a failed attempt is tried again later (everything but live data).
    pub(super) fn retries(self) -> bool {
        self != DeliveryKind::Stream
    }

    pub(super) fn outbox_kind(self) -> Option<OutKind> {
        match self {
            DeliveryKind::Message => Some(OutKind::Message),
            DeliveryKind::Control => Some(OutKind::Control),
            DeliveryKind::Receipt => Some(OutKind::Receipt),
            DeliveryKind::Contact => Some(OutKind::Contact),
            DeliveryKind::Invite => Some(OutKind::Room),
            DeliveryKind::Relay | DeliveryKind::Stream => None,
        }
    }
}

/// A frame on its way to an account's node.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) to: AccountId,
    pub(crate) mid: MessageId,
    pub(crate) frame: Vec<u8>,
    pub(crate) kind: DeliveryKind,
    /// When it was queued, ms since the epoch (an outbox entry keeps its age across restarts).
    pub(crate) queued_at: u64,
    pub(super) attempts: u32,
}

impl Delivery {
    pub(crate) fn new(to: AccountId, mid: MessageId, frame: Vec<u8>, kind: DeliveryKind, queued_at: u64) -> Self {
        Delivery {
            to,
            mid,
            frame,
            kind,
            queued_at,
            attempts: 0,
        }
    }

    /// An outbox entry found at start.
    pub(crate) fn from_outbox(mid: MessageId, out: Outgoing) -> Self {
        let kind = match out.kind {
            OutKind::Message => DeliveryKind::Message,
            OutKind::Control => DeliveryKind::Control,
            OutKind::Receipt => DeliveryKind::Receipt,
            OutKind::Contact => DeliveryKind::Contact,
            OutKind::Room => DeliveryKind::Invite,
        };
        Delivery::new(out.to, mid, out.frame, kind, out.queued_at)
    }
}

/// An outbox entry whose delivery is over, to be written to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeliveryOutcome {
    pub(crate) mid: MessageId,
    pub(crate) kind: OutKind,
    pub(crate) to: AccountId,
    /// Acknowledged by the recipient (else given up).
    pub(crate) delivered: bool,
}
