//! Dials of a route record's addresses, and what to try when one of them reaches the wrong node.
//!
//! libp2p dials a peer's addresses concurrently and hands the first connection that comes up to
//! the peer-id check; when that connection is to another node (a private address such as
//! 192.168.1.5 names a different machine on every LAN, and may be another tim node there), the
//! whole dial fails with `WrongPeerId`, whatever the other addresses would have given. So the
//! loop remembers the addresses of each route dial and dials again without the one that lied.
//! I/O-free; bounded.

use std::collections::{HashMap, VecDeque};

use libp2p::{Multiaddr, PeerId};

/// Most route dials remembered at once; beyond, the oldest is forgotten (its dial then simply
/// fails as libp2p reports it).
pub(crate) const MAX_ROUTE_DIALS: usize = 1024;

/// The route dials in flight, with the addresses each may still try.
#[derive(Debug, Default)]
pub(crate) struct RouteDials {
    addrs: HashMap<PeerId, Vec<Multiaddr>>,
    order: VecDeque<PeerId>,
}

impl RouteDials {
    /// A dial of `peer` at `addrs` started.
    pub(crate) fn started(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if self.addrs.insert(peer, addrs).is_none() {
            self.order.push_back(peer);
        }
        while self.addrs.len() > MAX_ROUTE_DIALS {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.addrs.remove(&oldest);
                }
                None => break,
            }
        }
    }

    /// The dial of `peer` reached another node at `address`: the addresses left to dial again,
    /// if any (`address` is never tried again for this dial).
    pub(crate) fn reached_another_node(&mut self, peer: &PeerId, address: &Multiaddr) -> Option<Vec<Multiaddr>> {
        let addrs = self.addrs.get_mut(peer)?;
        addrs.retain(|a| !same_transport_address(a, address));
        if addrs.is_empty() {
            self.forget(peer);
            return None;
        }
        Some(addrs.clone())
    }

    /// The dial of `peer` is over: connected, or failed for another reason.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        if self.addrs.remove(peer).is_some() {
            self.order.retain(|p| p != peer);
        }
    }

    /// How many dials are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.addrs.len()
    }
}

/// Whether `a` and `b` name the same transport address, ignoring a trailing `/p2p/<peer id>`
/// (libp2p reports the address it dialled with the peer id appended).
fn same_transport_address(a: &Multiaddr, b: &Multiaddr) -> bool {
    fn bare(addr: &Multiaddr) -> Multiaddr {
        let mut addr = addr.clone();
        if matches!(addr.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) {
            addr.pop();
        }
        addr
    }
    bare(a) == bare(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap_or_else(|_| unreachable!("a test address"))
    }

    #[test]
    fn a_lying_address_is_dropped_and_the_rest_dialled_again() {
        let mut dials = RouteDials::default();
        let peer = PeerId::random();
        let lan = a("/ip4/192.168.1.5/tcp/4001");
        let public = a("/ip4/203.0.113.7/tcp/4001");
        dials.started(peer, vec![lan.clone(), public.clone()]);
        // libp2p names the address with the peer id it dialled appended.
        let reported = lan.clone().with(libp2p::multiaddr::Protocol::P2p(peer));
        assert_eq!(dials.reached_another_node(&peer, &reported), Some(vec![public.clone()]));
        // The last address lying too leaves nothing to try.
        assert_eq!(dials.reached_another_node(&peer, &public), None);
        assert_eq!(dials.len(), 0);
        // An unknown dial has nothing to retry.
        assert_eq!(dials.reached_another_node(&PeerId::random(), &public), None);
    }

    #[test]
    fn remembered_dials_are_bounded_oldest_first() {
        let mut dials = RouteDials::default();
        let first = PeerId::random();
        dials.started(first, vec![a("/ip4/203.0.113.7/tcp/1")]);
        for _ in 0..MAX_ROUTE_DIALS {
            dials.started(PeerId::random(), vec![a("/ip4/203.0.113.7/tcp/1")]);
        }
        assert_eq!(dials.len(), MAX_ROUTE_DIALS);
        assert_eq!(dials.reached_another_node(&first, &a("/ip4/1.2.3.4/tcp/1")), None);
        // A dial that ended is forgotten.
        let peer = PeerId::random();
        dials.started(peer, vec![a("/ip4/203.0.113.8/tcp/1"), a("/ip4/203.0.113.9/tcp/1")]);
        dials.forget(&peer);
        assert_eq!(dials.reached_another_node(&peer, &a("/ip4/203.0.113.8/tcp/1")), None);
    }
}
