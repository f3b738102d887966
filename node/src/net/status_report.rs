//! What the event loop reports for `Node::status`: identity, addresses, rooms, reachability and
//! every connection.

use libp2p::multiaddr::Protocol;

use super::{
    event_loop::EventLoop,
    relay::is_circuit,
    rooms::{room_of, topic},
};
use crate::status::{RoomStatus, Status};

impl EventLoop {
    pub(super) fn status(&self) -> Status {
        let me = self.core.peer_id;
        let listen_addrs = self
            .swarm
            .listeners()
            .map(|a| a.clone().with(Protocol::P2p(me)))
            .collect();
        let gossip = &self.swarm.behaviour().gossipsub;
        let rooms = gossip
            .topics()
            .filter_map(room_of)
            .map(|room| {
                let hash = topic(&room).hash();
                let peers = gossip.all_peers().filter(|(_, topics)| topics.contains(&&hash)).count();
                let name = self.core.room_name(&room);
                RoomStatus { room, peers, name }
            })
            .collect();
        Status {
            account: self.core.account,
            peer_id: me,
            listen_addrs,
            peers: self.swarm.connected_peers().count(),
            rooms,
            reachability: self.reachability_now(),
            external_addrs: self
                .swarm
                .external_addresses()
                .filter(|a| !is_circuit(a))
                .cloned()
                .collect(),
            relays: self.reachability.relays(),
            connections: self.links.list(),
        }
    }
}
