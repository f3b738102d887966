//! The loop's answer to each swarm event: behaviour events to their handlers, connections to the
//! connection manager, links, reachability and delivery, listen addresses to the route record.

use libp2p::{identify, swarm::SwarmEvent};
use tokio::time::Instant;
use tracing::{debug, info};

use super::{
    addrs,
    event_loop::EventLoop,
    relay::is_circuit,
    swarm::{BehaviourEvent, KAD_PROTOCOL},
};
use crate::Event;

impl EventLoop {
    pub(super) fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Streams(())) => {}
            SwarmEvent::Behaviour(BehaviourEvent::Limits(never)) => match never {},
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => self.on_gossipsub(event),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                self.on_protocols(peer_id, &info.protocols);
                if info.protocols.contains(&KAD_PROTOCOL) {
                    for addr in addrs::dialable(info.listen_addrs) {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(event)) => self.on_relay_client(event),
            SwarmEvent::Behaviour(BehaviourEvent::RelayServer(event)) => self.on_relay_server(event),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(event)) => self.on_dcutr(event),
            SwarmEvent::Behaviour(BehaviourEvent::AutonatClient(event)) => self.on_autonat_client(event),
            SwarmEvent::Behaviour(BehaviourEvent::AutonatServer(event)) => {
                debug!(client = %event.client, address = %event.tested_addr, ok = event.result.is_ok(), "dialled an address back");
            }
            // The relay client confirms circuit addresses itself (so identify announces them); only
            // a direct address confirmed by AutoNAT makes the node public.
            SwarmEvent::ExternalAddrConfirmed { address } if !is_circuit(&address) => {
                info!(%address, "external address confirmed");
                self.reachability.address_confirmed(address, Instant::now().into_std());
            }
            SwarmEvent::ExternalAddrExpired { address } if !is_circuit(&address) => {
                self.reachability.address_expired(&address, Instant::now().into_std());
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => self.on_listener_closed(listener_id),
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                ref error,
                ..
            } => self.on_dial_failed(peer, error),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                ref endpoint,
                num_established,
                ..
            } => {
                self.links.established(connection_id, peer_id, endpoint);
                if let Ok(mut book) = self.peers.lock() {
                    book.connected(peer_id, endpoint.get_remote_address());
                }
                self.route_dials.forget(&peer_id);
                self.connections.connected(peer_id, Instant::now().into_std());
                if self.connections.over() {
                    self.manage_connections();
                }
                if num_established.get() == 1 {
                    self.core.emit(Event::PeerConnected { peer: peer_id });
                    // The node of some waiting recipient may be back: retry its deliveries now.
                    let now = self.now();
                    self.deliveries.peer_connected(peer_id, now);
                }
                if !self.route_published && self.route_put.is_none() {
                    self.publish_route();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.links.closed(connection_id, peer_id, num_established);
                self.connections.disconnected(&peer_id, num_established);
                if num_established == 0 {
                    if let Ok(mut book) = self.peers.lock() {
                        book.disconnected(&peer_id);
                    }
                    self.reachability.disconnected(&peer_id, Instant::now().into_std());
                    self.core.emit(Event::PeerDisconnected { peer: peer_id });
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.publish_route();
            }
            other => debug!(event = ?other, "swarm event"),
        }
    }
}
