//! What handles ask of the event loop: [`Command`]s, each with a oneshot reply where one is
//! awaited.

use libp2p::PeerId;
use tim_protocol::{AccountId, MessageId, RoomId};
use tokio::sync::oneshot;

use crate::{
    core::{now_ms, Destination},
    delivery::{Delivery, DeliveryKind},
    status::Status,
    Result,
};

/// A request to the event loop.
pub(crate) enum Command {
    /// Deliver a frame to an account's node (route lookup, request, retries).
    Deliver(Delivery),
    /// Publish a frame on a room's topic.
    Publish {
        room: RoomId,
        mid: MessageId,
        frame: Vec<u8>,
    },
    /// Subscribe to a room's topic and catch up.
    Join {
        room: RoomId,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Unsubscribe from a room's topic.
    Leave {
        room: RoomId,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Find the peer serving an account.
    Lookup {
        account: AccountId,
        reply: oneshot::Sender<Result<PeerId>>,
    },
    /// Report status.
    Status { reply: oneshot::Sender<Status> },
    /// Burn a read message at `deadline` (ms since the epoch).
    ScheduleBurn { mid: MessageId, deadline: u64 },
    /// Block or unblock a peer.
    Block { peer: PeerId, blocked: bool },
    /// Drop the queued, not yet sent copies of a message (it was revoked).
    Cancel { mid: MessageId },
    /// Deliver a stream frame once, now; `reply` gets how it ended.
    Stream {
        delivery: Delivery,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Drop every queued delivery to an account (the local account blocked it).
    CancelAccount { account: AccountId },
    /// Stop the loop.
    Shutdown { reply: oneshot::Sender<()> },
}

impl Command {
    /// The command that sends a locally applied control message (`frame`, about message `mid`) to
    /// `destination`; `None` for a message to oneself (nothing to send). For a revoke, send
    /// [`Command::Cancel`] first, so an unsent queued copy of the message is never sent.
    pub(crate) fn send_control(mid: MessageId, destination: Destination, frame: Vec<u8>) -> Option<Command> {
        match destination {
            Destination::Account(to) => Some(Command::Deliver(Delivery::new(
                to,
                mid,
                frame,
                DeliveryKind::Control,
                now_ms(),
            ))),
            Destination::Room(room) => Some(Command::Publish { room, mid, frame }),
            Destination::Local => None,
        }
    }
}
