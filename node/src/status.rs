//! What [`crate::Node::status`] reports: the node's identity, addresses, peers and rooms.

use libp2p::{Multiaddr, PeerId};
use tim_protocol::{AccountId, RoomId};

/// A joined room and how many connected peers are subscribed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomStatus {
    /// The room.
    pub room: RoomId,
    /// Connected peers subscribed to its topic.
    pub peers: usize,
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
}
