//! Whether peers on the internet can dial this node, and which relays it holds a slot on when
//! they cannot. I/O-free: the event loop feeds it what AutoNAT, identify and the relay client
//! report, and carries out the [`RelayAction`]s it asks for (see `relay`).
//!
//! - A node is *public* while AutoNAT has confirmed at least one external address of it; *private*
//!   once a probe failed (or none came within [`RelaySettings::undecided_after`]) and none is
//!   confirmed; *unknown* before that.
//! - A node that is not public keeps reservations on up to [`RelaySettings::wanted`] relays,
//!   picked among connected peers that offer the relay hop protocol, bootstrap peers first. A
//!   relay that refused, or whose reservation ended, is not asked again before a back-off that
//!   doubles up to [`MAX_BACKOFF`]. A public node releases its reservations.
//! - Every change to the set of accepted reservations or to reachability asks for the route
//!   record to be republished (its addresses changed).

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use libp2p::{Multiaddr, PeerId};

/// Longest wait before a relay that failed is asked again.
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// First wait before a relay that failed is asked again.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// Relay candidates remembered at most (the oldest non-bootstrap one is forgotten first).
const MAX_CANDIDATES: usize = 64;

/// What AutoNAT says of this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// No verdict yet.
    Unknown,
    /// Peers can dial at least one of its addresses directly.
    Public,
    /// Peers cannot dial it directly: it is reached through relays (and hole punching).
    Private,
}

impl Reachability {
    /// The name used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        }
    }
}

/// How many relays to hold and when to decide.
#[derive(Debug, Clone)]
pub(crate) struct RelaySettings {
    /// Reservations a non-public node keeps.
    pub(crate) wanted: usize,
    /// With no AutoNAT verdict after this long, the node acts as private (it may be behind a NAT
    /// that no peer could even test).
    pub(crate) undecided_after: Duration,
}

/// What the event loop is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RelayAction {
    /// Listen through `relay` (reached at `addr`): ask it for a reservation.
    Reserve { relay: PeerId, addr: Multiaddr },
    /// Stop listening through `relay`.
    Release { relay: PeerId },
    /// The addresses this node publishes changed: republish the route record.
    Republish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Asked for, no answer yet.
    Requested,
    /// Accepted: the circuit address is live.
    Accepted,
}

#[derive(Debug)]
struct Candidate {
    addr: Multiaddr,
    /// A peer this node was told to bootstrap from: preferred.
    preferred: bool,
    connected: bool,
    /// Not asked before this instant.
    not_before: Option<Instant>,
    backoff: Duration,
}

/// The reachability state machine.
#[derive(Debug)]
pub(crate) struct ReachabilityState {
    settings: RelaySettings,
    started: Instant,
    confirmed: HashSet<Multiaddr>,
    failed_probes: u64,
    candidates: BTreeMap<PeerId, Candidate>,
    /// Insertion order of the candidates, for forgetting the oldest.
    candidate_order: VecDeque<PeerId>,
    slots: HashMap<PeerId, Slot>,
    last_reported: Reachability,
    actions: VecDeque<RelayAction>,
}

impl ReachabilityState {
    pub(crate) fn new(settings: RelaySettings, now: Instant) -> Self {
        ReachabilityState {
            settings,
            started: now,
            confirmed: HashSet::new(),
            failed_probes: 0,
            candidates: BTreeMap::new(),
            candidate_order: VecDeque::new(),
            slots: HashMap::new(),
            last_reported: Reachability::Unknown,
            actions: VecDeque::new(),
        }
    }

    /// The verdict at `now`.
    pub(crate) fn reachability(&self, now: Instant) -> Reachability {
        if !self.confirmed.is_empty() {
            Reachability::Public
        } else if self.failed_probes > 0 || now.saturating_duration_since(self.started) >= self.settings.undecided_after
        {
            Reachability::Private
        } else {
            Reachability::Unknown
        }
    }

    /// Relays whose reservation is accepted.
    pub(crate) fn relays(&self) -> Vec<PeerId> {
        let mut relays: Vec<PeerId> = self
            .slots
            .iter()
            .filter(|(_, s)| **s == Slot::Accepted)
            .map(|(p, _)| *p)
            .collect();
        relays.sort();
        relays
    }

    /// Relays this node holds or asked for a slot on: their connections must stay.
    pub(crate) fn relays_in_use(&self) -> Vec<PeerId> {
        let mut relays: Vec<PeerId> = self.slots.keys().copied().collect();
        relays.sort();
        relays
    }

    /// AutoNAT confirmed that peers can dial `addr`.
    pub(crate) fn address_confirmed(&mut self, addr: Multiaddr, now: Instant) {
        self.confirmed.insert(addr);
        self.decide(now);
    }

    /// An address confirmed earlier no longer is.
    pub(crate) fn address_expired(&mut self, addr: &Multiaddr, now: Instant) {
        self.confirmed.remove(addr);
        self.decide(now);
    }

    /// An AutoNAT probe of one of this node's addresses failed (the server could not dial back).
    pub(crate) fn probe_failed(&mut self, now: Instant) {
        self.failed_probes = self.failed_probes.saturating_add(1);
        self.decide(now);
    }

    /// `peer`, connected and reached at `addr`, offers the relay hop protocol.
    pub(crate) fn relay_offered(&mut self, peer: PeerId, addr: Multiaddr, preferred: bool, now: Instant) {
        match self.candidates.get_mut(&peer) {
            Some(c) => {
                c.addr = addr;
                c.connected = true;
                c.preferred |= preferred;
            }
            None => {
                if self.candidates.len() >= MAX_CANDIDATES {
                    self.forget_oldest_candidate();
                }
                self.candidates.insert(
                    peer,
                    Candidate {
                        addr,
                        preferred,
                        connected: true,
                        not_before: None,
                        backoff: FIRST_BACKOFF,
                    },
                );
                self.candidate_order.push_back(peer);
            }
        }
        self.decide(now);
    }

    /// The last connection to `peer` closed.
    pub(crate) fn disconnected(&mut self, peer: &PeerId, now: Instant) {
        if let Some(c) = self.candidates.get_mut(peer) {
            c.connected = false;
        }
        if self.slots.contains_key(peer) {
            self.slot_lost(*peer, now);
        }
    }

    /// `relay` accepted the reservation.
    pub(crate) fn reservation_accepted(&mut self, relay: PeerId, now: Instant) {
        match self.slots.get_mut(&relay) {
            Some(slot) => {
                if *slot != Slot::Accepted {
                    *slot = Slot::Accepted;
                    self.actions.push_back(RelayAction::Republish);
                }
                if let Some(c) = self.candidates.get_mut(&relay) {
                    c.backoff = FIRST_BACKOFF;
                }
            }
            // Accepted after this node released it: release again.
            None => self.actions.push_back(RelayAction::Release { relay }),
        }
        self.decide(now);
    }

    /// The reservation on `relay` was refused or ended (its listener closed).
    pub(crate) fn reservation_ended(&mut self, relay: PeerId, now: Instant) {
        if self.slots.contains_key(&relay) {
            self.slot_lost(relay, now);
        }
    }

    /// What to do next, if anything.
    pub(crate) fn poll(&mut self) -> Option<RelayAction> {
        self.actions.pop_front()
    }

    /// Re-decides at `now` (called on a timer: back-offs end, the undecided period ends).
    pub(crate) fn tick(&mut self, now: Instant) {
        self.decide(now);
    }

    fn slot_lost(&mut self, relay: PeerId, now: Instant) {
        if self.slots.remove(&relay) == Some(Slot::Accepted) {
            self.actions.push_back(RelayAction::Republish);
        }
        if let Some(c) = self.candidates.get_mut(&relay) {
            c.not_before = Some(now + c.backoff);
            c.backoff = (c.backoff * 2).min(MAX_BACKOFF);
        }
        self.decide(now);
    }

    fn forget_oldest_candidate(&mut self) {
        let position = self
            .candidate_order
            .iter()
            .position(|p| !self.slots.contains_key(p) && self.candidates.get(p).is_some_and(|c| !c.preferred))
            .or_else(|| self.candidate_order.iter().position(|p| !self.slots.contains_key(p)));
        if let Some(peer) = position.and_then(|i| self.candidate_order.remove(i)) {
            self.candidates.remove(&peer);
        }
    }

    fn decide(&mut self, now: Instant) {
        let reachability = self.reachability(now);
        if reachability != self.last_reported {
            self.last_reported = reachability;
            self.actions.push_back(RelayAction::Republish);
        }
        if reachability == Reachability::Public {
            let mut held: Vec<PeerId> = self.slots.keys().copied().collect();
            held.sort();
            for relay in held {
                self.slots.remove(&relay);
                self.actions.push_back(RelayAction::Release { relay });
            }
            return;
        }
        if reachability == Reachability::Unknown {
            return;
        }
        while self.slots.len() < self.settings.wanted {
            let Some((peer, addr)) = self.next_candidate(now) else {
                break;
            };
            self.slots.insert(peer, Slot::Requested);
            self.actions.push_back(RelayAction::Reserve { relay: peer, addr });
        }
    }

    /// The best candidate not in use: connected, back-off over, bootstrap peers first, then the
    /// oldest known.
    fn next_candidate(&self, now: Instant) -> Option<(PeerId, Multiaddr)> {
        let usable = |peer: &PeerId| {
            self.candidates
                .get(peer)
                .filter(|c| c.connected && !self.slots.contains_key(peer) && c.not_before.is_none_or(|t| t <= now))
        };
        let pick = |preferred: bool| {
            self.candidate_order.iter().find_map(|p| {
                usable(p)
                    .filter(|c| c.preferred == preferred)
                    .map(|c| (*p, c.addr.clone()))
            })
        };
        pick(true).or_else(|| pick(false))
    }
}

#[cfg(test)]
#[path = "reachability_tests.rs"]
mod tests;
