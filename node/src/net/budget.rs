//! Who gets one of a protocol's inbound stream slots when they are scarce, as a plain state
//! machine: a per-peer and a total limit, and when the total is full a stream from a peer this
//! node knows takes the slot of the oldest stream from a stranger instead of being refused.
//!
//! A *known* peer is one this node chose to talk to: it opened a pipe to it (the peer serves the
//! route of an account this node delivers to) or dialled it as a bootstrap peer. Being known cannot
//! be bought with free identities or free accounts: a stranger can sign a valid message with a
//! fresh account, but cannot make this node deliver to it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use libp2p::PeerId;

/// How many streams of one protocol are served at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) total: usize,
    pub(crate) per_peer: usize,
}

/// Most peers remembered as known; the oldest is forgotten first.
pub(crate) const MAX_KNOWN_PEERS: usize = 4096;

/// The peers this node chose to talk to, the most recent [`MAX_KNOWN_PEERS`].
#[derive(Debug, Default)]
pub(crate) struct KnownPeers {
    set: HashSet<PeerId>,
    order: VecDeque<PeerId>,
}

impl KnownPeers {
    /// Remembers `peer`; returns the peer forgotten to make room, if any.
    pub(crate) fn insert(&mut self, peer: PeerId) -> Option<PeerId> {
        if !self.set.insert(peer) {
            return None;
        }
        self.order.push_back(peer);
        if self.order.len() <= MAX_KNOWN_PEERS {
            return None;
        }
        let old = self.order.pop_front()?;
        self.set.remove(&old);
        Some(old)
    }

    pub(crate) fn contains(&self, peer: &PeerId) -> bool {
        self.set.contains(peer)
    }
}

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The peer already has its share.
    PerPeer,
    /// Every slot is taken, and none by a stranger a known peer could displace.
    Total,
}

/// What to do with a new stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Serve it in `slot`; first end the stream in `evict` (already released here).
    Admit {
        slot: u64,
        evict: Option<u64>,
    },
    Refuse(Refusal),
}

/// The slots of one protocol's inbound streams.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: Limits,
    /// Every slot taken, in the order taken, with its peer.
    slots: BTreeMap<u64, PeerId>,
    /// The slots taken by strangers, oldest first.
    strangers: BTreeSet<u64>,
    per_peer: HashMap<PeerId, usize>,
    next: u64,
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Self {
        Admission {
            limits,
            slots: BTreeMap::new(),
            strangers: BTreeSet::new(),
            per_peer: HashMap::new(),
            next: 0,
        }
    }

    /// Decides on a new stream from `peer` (`known`: see the module doc).
    pub(crate) fn admit(&mut self, peer: PeerId, known: bool) -> Decision {
        if self.per_peer.get(&peer).copied().unwrap_or(0) >= self.limits.per_peer {
            return Decision::Refuse(Refusal::PerPeer);
        }
        let mut evict = None;
        if self.slots.len() >= self.limits.total {
            let oldest_stranger = if known { self.strangers.first().copied() } else { None };
            let Some(old) = oldest_stranger else {
                return Decision::Refuse(Refusal::Total);
            };
            self.release(old);
            evict = Some(old);
        }
        let slot = self.next;
        self.next += 1;
        self.slots.insert(slot, peer);
        if !known {
            self.strangers.insert(slot);
        }
        *self.per_peer.entry(peer).or_insert(0) += 1;
        Decision::Admit { slot, evict }
    }

    /// Frees `slot` (its stream ended); a slot already freed is ignored.
    pub(crate) fn release(&mut self, slot: u64) {
        let Some(peer) = self.slots.remove(&slot) else { return };
        self.strangers.remove(&slot);
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }

    /// Slots taken.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Slots taken by `peer`.
    #[cfg(test)]
    fn of(&self, peer: &PeerId) -> usize {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(d: Decision) -> (u64, Option<u64>) {
        match d {
            Decision::Admit { slot, evict } => (slot, evict),
            other => panic!("refused: {other:?}"),
        }
    }

    #[test]
    fn per_peer_and_total_limits_refuse_strangers() {
        let mut a = Admission::new(Limits { total: 3, per_peer: 2 });
        let (p, q, r) = (PeerId::random(), PeerId::random(), PeerId::random());
        admitted(a.admit(p, false));
        admitted(a.admit(p, false));
        assert_eq!(a.admit(p, false), Decision::Refuse(Refusal::PerPeer));
        admitted(a.admit(q, false));
        assert_eq!(a.admit(r, false), Decision::Refuse(Refusal::Total));
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn a_known_peer_displaces_the_oldest_stranger_when_full() {
        let mut a = Admission::new(Limits { total: 3, per_peer: 3 });
        let (s1, s2, k) = (PeerId::random(), PeerId::random(), PeerId::random());
        let (first, _) = admitted(a.admit(s1, false));
        let (second, _) = admitted(a.admit(s2, false));
        let (known_slot, none) = admitted(a.admit(k, true));
        assert_eq!(none, None, "not full yet: nobody displaced");
        // Full: the known peer takes the oldest stranger's slot, then the next.
        assert_eq!(admitted(a.admit(k, true)).1, Some(first));
        assert_eq!(a.of(&s1), 0);
        assert_eq!(admitted(a.admit(k, true)).1, Some(second));
        // Only known streams left: a fourth known one is refused, never a known one displaced.
        assert_eq!(a.admit(k, true), Decision::Refuse(Refusal::PerPeer));
        let other_known = PeerId::random();
        assert_eq!(a.admit(other_known, true), Decision::Refuse(Refusal::Total));
        // A stranger never displaces anyone.
        a.release(known_slot);
        admitted(a.admit(s1, false));
        assert_eq!(a.admit(s2, false), Decision::Refuse(Refusal::Total));
    }

    #[test]
    fn released_slots_are_free_again_and_double_releases_change_nothing() {
        let mut a = Admission::new(Limits { total: 1, per_peer: 1 });
        let p = PeerId::random();
        let (slot, _) = admitted(a.admit(p, false));
        a.release(slot);
        a.release(slot);
        assert_eq!(a.len(), 0);
        let (next, _) = admitted(a.admit(p, false));
        // An evicted slot was released by `admit`; its stream's end releases it again, harmlessly.
        let (_, evicted) = admitted(a.admit(PeerId::random(), true));
        assert_eq!(evicted, Some(next));
        a.release(next);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn known_peers_forget_the_oldest_beyond_the_bound() {
        let mut known = KnownPeers::default();
        let first = PeerId::random();
        assert_eq!(known.insert(first), None);
        assert_eq!(known.insert(first), None, "a repeat is no new entry");
        for _ in 1..MAX_KNOWN_PEERS {
            assert_eq!(known.insert(PeerId::random()), None);
        }
        assert_eq!(known.insert(PeerId::random()), Some(first));
        assert!(!known.contains(&first));
    }
}
