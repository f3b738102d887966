//! The event loop's side of the connection manager (`connections`): it tells the manager what
//! each peer is needed for (mesh, pipes, syncs, and the relays `reachability` holds a slot on)
//! and closes the peers the manager names.

use libp2p::PeerId;
use tracing::debug;

use super::{
    connections::{Reason, Value},
    event_loop::EventLoop,
    rooms::{room_of, topic},
    scoring::GRAYLIST_THRESHOLD,
};

impl EventLoop {
    /// Brings the protections this loop derives from its own state up to date (joined rooms'
    /// mesh peers, open outbound pipes, syncs in flight, relays in use) and which peers Kademlia talked with, then
    /// closes what the manager names.
    pub(super) fn manage_connections(&mut self) {
        let now = tokio::time::Instant::now().into_std();
        for peer in self.swarm.behaviour_mut().kad.take_active() {
            self.connections.active(&peer, now);
        }
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let joined: Vec<_> = gossipsub.topics().filter(|t| room_of(t).is_some()).cloned().collect();
        let mesh: Vec<PeerId> = joined.iter().flat_map(|t| gossipsub.mesh_peers(t)).copied().collect();
        self.connections.set_protected(Reason::Mesh, mesh);
        self.connections.set_protected(Reason::Pipe, self.pipes.keys().copied());
        let syncing: Vec<PeerId> = self.syncing.keys().map(|(_, peer)| *peer).collect();
        self.connections.set_protected(Reason::Sync, syncing);
        self.connections
            .set_protected(Reason::Relay, self.reachability.relays_in_use());
        if !self.connections.over() {
            return;
        }
        let hashes: Vec<_> = self
            .swarm
            .behaviour()
            .gossipsub
            .topics()
            .filter_map(room_of)
            .map(|r| topic(&r).hash())
            .collect();
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let members: std::collections::HashSet<PeerId> = gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.iter().any(|t| hashes.contains(t)))
            .map(|(p, _)| *p)
            // A member gossipsub ignores for its invalid messages is no mesh candidate.
            .filter(|p| gossipsub.peer_score(p).is_none_or(|score| score >= GRAYLIST_THRESHOLD))
            .collect();
        let known = self.peers.lock().ok();
        let value = |peer: &PeerId| {
            let chosen = known.as_ref().is_some_and(|k| k.contains(peer));
            if chosen || members.contains(peer) {
                Value::Useful
            } else {
                Value::Stranger
            }
        };
        let victims = self.connections.prune(now, value);
        drop(known);
        if !victims.is_empty() {
            debug!(
                closed = victims.len(),
                left = self.connections.len(),
                "pruned connections over the high watermark"
            );
        }
        for peer in victims {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }
}
