//! Kademlia with a record store that knows who sent each record: a thin wrapper that tells the
//! store the sending peer around every event from a peer's connection (an inbound `PutRecord` is
//! stored while that event is handled), so the store can bound what one peer stores here, and
//! the IP address of that connection, so it can bound what one address announces.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    ops::{Deref, DerefMut},
    task::{Context, Poll},
};

use libp2p::{
    core::{transport::PortUse, Endpoint},
    kad,
    multiaddr::Protocol,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent,
        ToSwarm,
    },
    Multiaddr, PeerId,
};

use super::store::RouteStore;

/// The inner Kademlia behaviour.
type Inner = kad::Behaviour<RouteStore>;

/// `kad::Behaviour` over a [`RouteStore`], telling the store the source of each peer's request,
/// and noting which peers Kademlia talked with (their connections are in use: see `connections`).
pub(crate) struct Kad {
    inner: Inner,
    /// Each established connection (bounded by the connections: removed when it closes).
    links: HashMap<ConnectionId, Link>,
    /// Peers Kademlia exchanged messages with since the event loop last looked.
    active: HashSet<PeerId>,
}

/// What the wrapper knows about one established connection.
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    /// Its remote IP address, if it has one.
    ip: Option<IpAddr>,
    /// Whether its handler has sent its first event (its report of whether the peer speaks
    /// Kademlia, which comes as soon as identify does, before any message).
    reported: bool,
}

/// Most peers noted as active between two looks of the event loop.
const MAX_ACTIVE: usize = 4096;

/// The first IP address in `addr` (a relayed connection's is its relay's).
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl Kad {
    pub(crate) fn new(inner: Inner) -> Self {
        Kad {
            inner,
            links: HashMap::new(),
            active: HashSet::new(),
        }
    }

    /// The peers Kademlia exchanged messages with since the last call. A connection's first
    /// handler event is not counted: Kademlia's handler reports first whether the peer speaks the
    /// protocol (as soon as identify says so, before any message), and a connection that has only
    /// been identified has exchanged nothing yet.
    pub(crate) fn take_active(&mut self) -> Vec<PeerId> {
        self.active.drain().collect()
    }
}

impl Deref for Kad {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl DerefMut for Kad {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }
}

impl NetworkBehaviour for Kad {
    type ConnectionHandler = <Inner as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = kad::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(connection_id, peer, local_addr, remote_addr)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(connection_id, maybe_peer, addresses, effective_role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(connection_id, peer, addr, role_override, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match &event {
            FromSwarm::ConnectionEstablished(e) => {
                let ip = ip_of(e.endpoint.get_remote_address());
                self.links.insert(e.connection_id, Link { ip, reported: false });
            }
            FromSwarm::ConnectionClosed(e) => {
                self.links.remove(&e.connection_id);
            }
            _ => {}
        }
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        let mut ip = None;
        if let Some(link) = self.links.get_mut(&connection_id) {
            ip = link.ip;
            if link.reported && self.active.len() < MAX_ACTIVE {
                self.active.insert(peer_id);
            }
            link.reported = true;
        }
        self.inner.store_mut().set_source(Some(peer_id), ip);
        self.inner.on_connection_handler_event(peer_id, connection_id, event);
        self.inner.store_mut().set_source(None, None);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}
