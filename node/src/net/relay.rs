//! The event loop's side of NAT traversal: it feeds the reachability state machine what AutoNAT,
//! identify, the relay client and the swarm report, and carries out what it asks (listen
//! through a relay, stop, republish the route record). Relaying for others (`--relay`) and hole
//! punching (DCUtR) run inside their libp2p behaviours; this file only logs and counts them.

use std::collections::HashMap;

use libp2p::{
    autonat, core::ConnectedPoint, dcutr, multiaddr::Protocol, relay, swarm::ConnectionId, Multiaddr, PeerId,
};
use tracing::{debug, info, warn};

use super::{
    event_loop::EventLoop,
    reachability::{Reachability, RelayAction},
};
use crate::{core::bump, status::ConnectionStatus};

/// The connections this node has, for the status and the choice of relays.
#[derive(Default)]
pub(super) struct Links {
    /// Every established connection: its peer, remote address and whether it goes through a
    /// relay.
    open: HashMap<ConnectionId, ConnectionStatus>,
    /// Per peer, the address this node dialled it at (what a relay reservation uses).
    dialled: HashMap<PeerId, Multiaddr>,
}

impl Links {
    pub(super) fn established(&mut self, id: ConnectionId, peer: PeerId, endpoint: &ConnectedPoint) {
        let relayed = endpoint.is_relayed();
        let addr = endpoint.get_remote_address().clone();
        if let ConnectedPoint::Dialer { address, .. } = endpoint {
            if !relayed {
                self.dialled.insert(peer, without_peer(address));
            }
        }
        self.open.insert(id, ConnectionStatus { peer, addr, relayed });
    }

    /// A connection closed; `remaining` is how many the peer still has.
    pub(super) fn closed(&mut self, id: ConnectionId, peer: PeerId, remaining: u32) {
        self.open.remove(&id);
        if remaining == 0 {
            self.dialled.remove(&peer);
        }
    }

    pub(super) fn dialled(&self, peer: &PeerId) -> Option<&Multiaddr> {
        self.dialled.get(peer)
    }

    /// Relayed connections to peers this node also has a direct connection to: they only hold a
    /// relay's circuit slot (and its byte budget) now.
    pub(super) fn redundant_relayed(&self) -> Vec<ConnectionId> {
        let direct: std::collections::HashSet<PeerId> =
            self.open.values().filter(|c| !c.relayed).map(|c| c.peer).collect();
        let mut ids: Vec<ConnectionId> = self
            .open
            .iter()
            .filter(|(_, c)| c.relayed && direct.contains(&c.peer))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// Every connection, sorted by peer.
    pub(super) fn list(&self) -> Vec<ConnectionStatus> {
        let mut list: Vec<ConnectionStatus> = self.open.values().cloned().collect();
        list.sort_by_key(|c| (c.peer, c.relayed));
        list
    }
}

/// `addr` without a trailing `/p2p/<peer id>`.
fn without_peer(addr: &Multiaddr) -> Multiaddr {
    let mut addr = addr.clone();
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

/// Whether `addr` goes through a relay.
pub(super) fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

impl EventLoop {
    /// Carries out what the reachability state machine asks, in order.
    pub(super) fn carry_out_relay_actions(&mut self) {
        while let Some(action) = self.reachability.poll() {
            match action {
                RelayAction::Reserve { relay, addr } => {
                    let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
                    match self.swarm.listen_on(circuit.clone()) {
                        Ok(listener) => {
                            info!(%relay, address = %circuit, "asking a relay for a reservation");
                            self.relay_listeners.insert(listener, relay);
                        }
                        Err(e) => {
                            warn!(%relay, error = %e, "could not listen through a relay");
                            let now = tokio::time::Instant::now().into_std();
                            self.reachability.reservation_ended(relay, now);
                        }
                    }
                }
                RelayAction::Release { relay } => {
                    let listeners: Vec<_> = self
                        .relay_listeners
                        .iter()
                        .filter(|(_, r)| **r == relay)
                        .map(|(l, _)| *l)
                        .collect();
                    for listener in listeners {
                        self.relay_listeners.remove(&listener);
                        self.swarm.remove_listener(listener);
                    }
                    info!(%relay, "released a relay reservation (the node is publicly reachable)");
                }
                RelayAction::Republish => self.publish_route(),
            }
        }
    }

    /// A peer told us its protocols: remember it as a relay candidate if it relays.
    pub(super) fn on_protocols(&mut self, peer: PeerId, protocols: &[libp2p::StreamProtocol]) {
        if !protocols.contains(&relay::HOP_PROTOCOL_NAME) {
            return;
        }
        let Some(addr) = self.links.dialled(&peer).cloned() else {
            // A relay this node never dialled: its address for the circuit is unknown.
            return;
        };
        let preferred = self.bootstrap_peers.contains(&peer);
        let now = tokio::time::Instant::now().into_std();
        self.reachability.relay_offered(peer, addr, preferred, now);
    }

    /// A listener closed: if it listened through a relay, that reservation ended.
    pub(super) fn on_listener_closed(&mut self, listener: libp2p::core::transport::ListenerId) {
        if let Some(relay) = self.relay_listeners.remove(&listener) {
            info!(%relay, "relay reservation ended");
            let now = tokio::time::Instant::now().into_std();
            self.reachability.reservation_ended(relay, now);
        }
    }

    pub(super) fn on_relay_client(&mut self, event: relay::client::Event) {
        let now = tokio::time::Instant::now().into_std();
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id, renewal, ..
            } => {
                if !renewal {
                    info!(relay = %relay_peer_id, "relay reservation accepted");
                }
                self.reachability.reservation_accepted(relay_peer_id, now);
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                debug!(relay = %relay_peer_id, "outbound relayed connection");
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                debug!(peer = %src_peer_id, "inbound relayed connection");
            }
        }
    }

    pub(super) fn on_relay_server(&mut self, event: relay::Event) {
        match event {
            relay::Event::ReservationReqAccepted { src_peer_id, renewed } => {
                if !renewed {
                    bump(&self.core.counters.relay_reservations);
                }
                debug!(peer = %src_peer_id, renewed, "serving a relay reservation");
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                bump(&self.core.counters.relay_circuits);
                debug!(src = %src_peer_id, dst = %dst_peer_id, "relaying a circuit");
            }
            other => debug!(event = ?other, "relay"),
        }
    }

    pub(super) fn on_dcutr(&mut self, event: dcutr::Event) {
        match event.result {
            Ok(_) => {
                bump(&self.core.counters.holes_punched);
                info!(peer = %event.remote_peer_id, "hole punched: direct connection");
            }
            Err(e) => debug!(peer = %event.remote_peer_id, error = %e, "hole punching failed; staying relayed"),
        }
    }

    pub(super) fn on_autonat_client(&mut self, event: autonat::v2::client::Event) {
        let now = tokio::time::Instant::now().into_std();
        match event.result {
            Ok(()) => debug!(address = %event.tested_addr, server = %event.server, "address reachable"),
            Err(e) => {
                debug!(address = %event.tested_addr, server = %event.server, error = %e, "address not reachable");
                self.reachability.probe_failed(now);
            }
        }
    }

    /// The periodic turn: re-decide reachability, and close relayed connections that a direct
    /// one (hole punched, or dialled) has made redundant. Streams on them end; pipes reopen on
    /// the direct connection and their requests are retried, so nothing acknowledged is lost.
    pub(super) fn on_reachability_tick(&mut self) {
        self.reachability.tick(tokio::time::Instant::now().into_std());
        for id in self.links.redundant_relayed() {
            debug!(connection = ?id, "closing a relayed connection: a direct one exists");
            self.swarm.close_connection(id);
        }
    }

    pub(super) fn reachability_now(&self) -> Reachability {
        self.reachability.reachability(tokio::time::Instant::now().into_std())
    }
}

#[cfg(test)]
mod tests {
    use libp2p::core::{transport::PortUse, Endpoint};

    use super::*;

    fn dialer(addr: &str) -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: addr.parse().unwrap(),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        }
    }

    #[test]
    fn a_relayed_connection_is_redundant_once_the_peer_has_a_direct_one() {
        let (relay, peer) = (PeerId::random(), PeerId::random());
        let mut c = Links::default();
        c.established(
            ConnectionId::new_unchecked(1),
            relay,
            &dialer("/ip4/203.0.113.1/tcp/4001"),
        );
        let circuit = format!("/ip4/203.0.113.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{peer}");
        c.established(ConnectionId::new_unchecked(2), peer, &dialer(&circuit));
        assert!(
            c.redundant_relayed().is_empty(),
            "the relayed connection is the only one"
        );
        assert_eq!(
            c.dialled(&relay),
            Some(&"/ip4/203.0.113.1/tcp/4001".parse().unwrap()),
            "the relay's dialled address is what a reservation uses"
        );
        assert_eq!(c.dialled(&peer), None, "a circuit is no address to reserve on");
        c.established(
            ConnectionId::new_unchecked(3),
            peer,
            &dialer("/ip4/203.0.113.12/tcp/4001"),
        );
        assert_eq!(c.redundant_relayed(), vec![ConnectionId::new_unchecked(2)]);
        let list = c.list();
        assert_eq!(list.iter().filter(|s| s.relayed).count(), 1);
        c.closed(ConnectionId::new_unchecked(2), peer, 1);
        assert!(c.redundant_relayed().is_empty());
        c.closed(ConnectionId::new_unchecked(1), relay, 0);
        assert_eq!(c.dialled(&relay), None);
    }
}
