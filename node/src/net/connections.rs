//! The connection manager: which connected peers to keep and which to close, as a state machine
//! handed the time (no clock, no socket). The event loop tells it about connections, activity and
//! what each peer is needed for; on every tick (and when a connection takes the node over its high
//! watermark) it asks `prune`, and closes the peers it names.
//!
//! The policy: while more than `high` peers are connected, close the least valuable down to
//! `low`. Never closed: a peer with a protection (it is in a joined room's gossipsub mesh, has an
//! open outbound pipe, a sync in flight, or a reason another subsystem gave, such as a relay this
//! node holds a reservation on), and a peer connected less than `grace` ago that has not yet
//! exchanged anything: the Kademlia query, identify exchange or room handshake it was dialled
//! for may be under way, and closing it would fail them. A peer active (a Kademlia exchange, a
//! room message) less than `grace` ago is spared while closing idle peers down to `low`, but not
//! beyond that when the node is still over `high`: in a busy network most peers have asked
//! something of late, and sparing them all would leave the bound to the traffic. Last of all, and
//! also only as far as `high`, go peers connected within `grace` that have exchanged something
//! already (the answer a query dialled them for came): a node's Kademlia bootstrap meets dozens
//! of peers within seconds, and sparing each for its whole grace would hold the node far over
//! its bound while it starts. Among the rest, strangers go first, then peers this node chose to
//! talk to and members of its rooms; within a class, the one idle the longest goes first.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use libp2p::PeerId;

/// Why a peer must stay connected. A peer may hold several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum Reason {
    /// In the gossipsub mesh of a joined room.
    Mesh = 1,
    /// An outbound direct pipe is open to it (deliveries in flight or just done).
    Pipe = 2,
    /// A room sync with it is in flight.
    Sync = 4,
    /// A relay this node holds a reservation on (NAT traversal): its circuit address is in the
    /// node's route record, so closing it makes the node unreachable.
    Relay = 8,
}

/// How valuable an unprotected peer is, lowest pruned first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Value {
    /// Nothing known in its favour: it dialled this node, or a Kademlia query met it.
    Stranger,
    /// A peer this node chose to talk to (it delivered to it, or a bootstrap peer), or a member
    /// of a joined room outside the mesh (a mesh candidate).
    Useful,
}

/// Where an unprotected peer stands in the pruning order, first pruned first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Standing {
    /// Past its grace and idle for at least `grace`: pruned down to `low`.
    Idle,
    /// Past its grace, active within it: pruned only down to `high`.
    Active,
    /// Connected within `grace` and has exchanged something: pruned only down to `high`, last.
    Fresh,
}

/// The watermarks and the grace period.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Above this many connected peers, prune.
    pub(crate) high: usize,
    /// Prune down to this many.
    pub(crate) low: usize,
    /// A peer connected less than this long ago is not pruned; one active less than this long ago
    /// is pruned only when closing idle peers leaves the node over `high`.
    pub(crate) grace: Duration,
}

/// Most peers holding an explicit protection (`protect`), so a caller's leak stays bounded.
const MAX_PROTECTED: usize = 4096;

/// What the manager knows about one connected peer.
#[derive(Debug, Clone, Copy)]
struct Peer {
    /// Established connections with it.
    connections: u32,
    /// When its first current connection was established.
    since: Instant,
    /// The last time it did something here (connected, a Kademlia exchange, a room message).
    active: Instant,
    /// Whether it exchanged anything since it connected (a Kademlia message, a room message).
    exchanged: bool,
}

/// The connection manager (see the module doc).
#[derive(Debug)]
pub(crate) struct Connections {
    settings: Settings,
    peers: HashMap<PeerId, Peer>,
    /// Protections, as a bit set of `Reason`s per peer (connected or not: a relay reservation may
    /// be protected before its connection is counted here).
    protected: HashMap<PeerId, u8>,
}

impl Connections {
    pub(crate) fn new(mut settings: Settings) -> Self {
        settings.high = settings.high.max(1);
        settings.low = settings.low.min(settings.high);
        Connections {
            settings,
            peers: HashMap::new(),
            protected: HashMap::new(),
        }
    }

    /// Connected peers.
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether more peers are connected than the high watermark allows.
    pub(crate) fn over(&self) -> bool {
        self.peers.len() > self.settings.high
    }

    /// A connection with `peer` was established.
    pub(crate) fn connected(&mut self, peer: PeerId, now: Instant) {
        let entry = self.peers.entry(peer).or_insert(Peer {
            connections: 0,
            since: now,
            active: now,
            exchanged: false,
        });
        entry.connections += 1;
        entry.active = now;
    }

    /// A connection with `peer` closed; `remaining` are still established.
    pub(crate) fn disconnected(&mut self, peer: &PeerId, remaining: u32) {
        if remaining == 0 {
            self.peers.remove(peer);
        } else if let Some(p) = self.peers.get_mut(peer) {
            p.connections = remaining;
        }
    }

    /// `peer` did something: it is safe for `grace`, and pruned after peers idle for longer.
    pub(crate) fn active(&mut self, peer: &PeerId, now: Instant) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.active = now;
            p.exchanged = true;
        }
    }

    /// Protects `peer` for `reason` until `unprotect`. Returns false (and changes nothing) when
    /// `MAX_PROTECTED` peers hold protections already.
    pub(crate) fn protect(&mut self, peer: PeerId, reason: Reason) -> bool {
        if !self.protected.contains_key(&peer) && self.protected.len() >= MAX_PROTECTED {
            return false;
        }
        *self.protected.entry(peer).or_default() |= reason as u8;
        true
    }

    /// Removes `peer`'s protection for `reason` (others it holds stay).
    #[cfg(test)]
    pub(crate) fn unprotect(&mut self, peer: &PeerId, reason: Reason) {
        if let Some(bits) = self.protected.get_mut(peer) {
            *bits &= !(reason as u8);
            if *bits == 0 {
                self.protected.remove(peer);
            }
        }
    }

    /// Replaces the set of peers protected for `reason` with `peers` (for the reasons the event
    /// loop derives from its own state on every tick: mesh, pipes, syncs).
    pub(crate) fn set_protected(&mut self, reason: Reason, peers: impl IntoIterator<Item = PeerId>) {
        let bit = reason as u8;
        self.protected.retain(|_, bits| {
            *bits &= !bit;
            *bits != 0
        });
        for peer in peers {
            self.protect(peer, reason);
        }
    }

    /// Whether `peer` holds a protection for `reason`.
    #[cfg(test)]
    pub(crate) fn is_protected(&self, peer: &PeerId, reason: Reason) -> bool {
        self.protected.get(peer).is_some_and(|bits| bits & reason as u8 != 0)
    }

    /// The peers to close now: when more than `high` are connected, the least valuable
    /// unprotected peers connected and idle for at least `grace`, as many as it takes to get down
    /// to `low`; then, if that leaves more than `high`, unprotected peers active within `grace`,
    /// and after them fresh peers that exchanged something already (strangers first, then the
    /// longest idle), down to `high` (fewer when not enough may be closed). They are forgotten at
    /// once, so a later call does not name them again while their connections close.
    pub(crate) fn prune(&mut self, now: Instant, value: impl Fn(&PeerId) -> Value) -> Vec<PeerId> {
        if !self.over() {
            return Vec::new();
        }
        let grace = self.settings.grace;
        let mut candidates: Vec<(Standing, Value, Instant, PeerId)> = self
            .peers
            .iter()
            .filter(|(peer, _)| !self.protected.contains_key(*peer))
            .filter_map(|(peer, p)| {
                let standing = if now.saturating_duration_since(p.since) < grace {
                    if !p.exchanged {
                        return None;
                    }
                    Standing::Fresh
                } else if now.saturating_duration_since(p.active) < grace {
                    Standing::Active
                } else {
                    Standing::Idle
                };
                Some((standing, value(peer), p.active, *peer))
            })
            .collect();
        // Idle peers first (down to `low`); then, only as far as it takes to get back to `high`,
        // peers active within their grace, then fresh ones.
        candidates.sort();
        let idle = candidates
            .iter()
            .filter(|(standing, ..)| *standing == Standing::Idle)
            .count();
        let excess_low = self.peers.len() - self.settings.low;
        let excess_high = self.peers.len() - self.settings.high;
        let take = excess_low.min(idle).max(excess_high);
        let victims: Vec<PeerId> = candidates.into_iter().take(take).map(|(.., peer)| peer).collect();
        for peer in &victims {
            self.peers.remove(peer);
        }
        victims
    }
}

#[cfg(test)]
#[path = "connections_tests.rs"]
mod tests;
