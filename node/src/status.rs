//! What [`crate::Node::status`] reports: the node's identity, addresses, peers and rooms.

use libp2p::{Multiaddr, PeerId};
use tim_protocol::{AccountId, RoomId};

pub use crate::net::Reachability;

/// A joined room and how many connected peers are subscribed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomStatus {
    /// The room.
    pub room: RoomId,
    /// Connected peers subscribed to its topic.
    pub peers: usize,
    /// A founded room's name, if the room is known here.
    pub name: Option<String>,
}

/// A snapshot of the node's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The local account.
    pub account: AccountId,
    /// The node's libp2p peer id.
    pub peer_id: PeerId,
    /// Full listen addresses, each ending in `/p2p/<peer id>`, ready for another node's bootstrap.
    pub listen_addrs: Vec<Multiaddr>,
    /// Connected peers.
    pub peers: usize,
    /// Joined rooms.
    pub rooms: Vec<RoomStatus>,
    /// Whether peers can dial this node directly (AutoNAT's verdict).
    pub reachability: Reachability,
    /// Addresses peers were seen to reach this node at (confirmed by AutoNAT, or configured).
    pub external_addrs: Vec<Multiaddr>,
    /// Relays this node holds a reservation on (reachable through them).
    pub relays: Vec<PeerId>,
    /// Every established connection.
    pub connections: Vec<ConnectionStatus>,
}

/// One established connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStatus {
    /// The peer.
    pub peer: PeerId,
    /// The peer's address on this connection (a `/p2p-circuit` address when relayed).
    pub addr: Multiaddr,
    /// Whether the connection goes through a relay (else it is direct).
    pub relayed: bool,
}
