//! Who gets one of a protocol's inbound stream slots when they are scarce, as a plain state
//! machine: a per-peer and a total limit, and when the total is full, a fair share between the
//! places strangers connect from. A stream from a peer this node knows takes the slot of a
//! stranger, and a stranger takes one from the source that holds the most stranger slots, as long
//! as that source holds more than the newcomer's would after taking it.
//!
//! A *known* peer is one this node chose to talk to: it opened a pipe to it (the peer serves the
//! route of an account this node delivers to) or dialled it as a bootstrap peer. Being known cannot
//! be bought with free identities or free accounts: a stranger can sign a valid message with a
//! fresh account, but cannot make this node deliver to it.
//!
//! A stranger's *source* is where its connection comes from ([`Source`]). Identities are free but
//! addresses are not, so many identities behind one address share one source's part of the budget
//! and cannot crowd out strangers connecting from elsewhere.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};

/// How many streams of one protocol are served at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) total: usize,
    pub(crate) per_peer: usize,
}

/// Most peers remembered as known; the oldest is forgotten first.
pub(crate) const MAX_KNOWN_PEERS: usize = 4096;

/// Where a peer's connection comes from, at the granularity one party controls cheaply: an IPv4
/// address, or an IPv6 /64 (one host is commonly given a whole /64). A relayed connection's
/// source is its relay's address (the first IP in it): the relay limits its own circuits. An
/// address without an IP (memory transport, DNS) is [`Source::Unknown`], one source for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
    Unknown,
}

impl Source {
    /// The source of a connection whose remote address is `addr`.
    pub(crate) fn of(addr: &Multiaddr) -> Source {
        for protocol in addr.iter() {
            match protocol {
                Protocol::Ip4(ip) => return Source::V4(ip.octets()),
                Protocol::Ip6(ip) => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&ip.octets()[..8]);
                    return Source::V6(prefix);
                }
                _ => {}
            }
        }
        Source::Unknown
    }
}

/// What the accept tasks know of peers: the peers this node chose to talk to (the most recent
/// [`MAX_KNOWN_PEERS`]) and the source of every connected one (an entry per connected peer, so
/// bounded by the connection limits).
#[derive(Debug, Default)]
pub(crate) struct PeerBook {
    known: HashSet<PeerId>,
    order: VecDeque<PeerId>,
    sources: HashMap<PeerId, Source>,
}

impl PeerBook {
    /// Remembers `peer` as known; returns the peer forgotten to make room, if any.
    pub(crate) fn insert(&mut self, peer: PeerId) -> Option<PeerId> {
        if !self.known.insert(peer) {
            return None;
        }
        self.order.push_back(peer);
        if self.order.len() <= MAX_KNOWN_PEERS {
            return None;
        }
        let old = self.order.pop_front()?;
        self.known.remove(&old);
        Some(old)
    }

    pub(crate) fn contains(&self, peer: &PeerId) -> bool {
        self.known.contains(peer)
    }

    /// `peer` connected from `addr` (its latest connection's source is the one counted).
    pub(crate) fn connected(&mut self, peer: PeerId, addr: &Multiaddr) {
        self.sources.insert(peer, Source::of(addr));
    }

    /// `peer` has no connection left.
    pub(crate) fn disconnected(&mut self, peer: &PeerId) {
        self.sources.remove(peer);
    }

    /// How a stream from `peer` stands in the budget.
    pub(crate) fn standing(&self, peer: &PeerId) -> Standing {
        if self.contains(peer) {
            Standing::Known
        } else {
            Standing::Stranger(self.sources.get(peer).copied().unwrap_or(Source::Unknown))
        }
    }
}

/// How a new stream's peer stands (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    Known,
    Stranger(Source),
}

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The peer already has its share.
    PerPeer,
    /// Every slot is taken, and no stranger source holds more than its share.
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
    /// The slots taken by strangers, with their source.
    strangers: HashMap<u64, Source>,
    /// Per source, its strangers' slots, oldest first.
    by_source: HashMap<Source, BTreeSet<u64>>,
    per_peer: HashMap<PeerId, usize>,
    next: u64,
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Self {
        Admission {
            limits,
            slots: BTreeMap::new(),
            strangers: HashMap::new(),
            by_source: HashMap::new(),
            per_peer: HashMap::new(),
            next: 0,
        }
    }

    /// Decides on a new stream from `peer`.
    pub(crate) fn admit(&mut self, peer: PeerId, standing: Standing) -> Decision {
        if self.per_peer.get(&peer).copied().unwrap_or(0) >= self.limits.per_peer {
            return Decision::Refuse(Refusal::PerPeer);
        }
        let mut evict = None;
        if self.slots.len() >= self.limits.total {
            let Some(old) = self.displaceable(standing) else {
                return Decision::Refuse(Refusal::Total);
            };
            self.release(old);
            evict = Some(old);
        }
        let slot = self.next;
        self.next += 1;
        self.slots.insert(slot, peer);
        if let Standing::Stranger(source) = standing {
            self.strangers.insert(slot, source);
            self.by_source.entry(source).or_default().insert(slot);
        }
        *self.per_peer.entry(peer).or_insert(0) += 1;
        Decision::Admit { slot, evict }
    }

    /// The slot a stream of `standing` may take when every slot is taken: the oldest of the
    /// source holding the most stranger slots (of those, the one holding the oldest), if a known
    /// peer asks or that source holds at least two more than the asking stranger's.
    fn displaceable(&self, standing: Standing) -> Option<u64> {
        let (count, oldest) = self
            .by_source
            .values()
            .filter_map(|slots| Some((slots.len(), *slots.first()?)))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))?;
        let fair = match standing {
            Standing::Known => true,
            Standing::Stranger(source) => {
                let mine = self.by_source.get(&source).map_or(0, BTreeSet::len);
                count > mine + 1
            }
        };
        fair.then_some(oldest)
    }

    /// Frees `slot` (its stream ended); a slot already freed is ignored.
    pub(crate) fn release(&mut self, slot: u64) {
        let Some(peer) = self.slots.remove(&slot) else { return };
        if let Some(source) = self.strangers.remove(&slot) {
            if let Some(slots) = self.by_source.get_mut(&source) {
                slots.remove(&slot);
                if slots.is_empty() {
                    self.by_source.remove(&source);
                }
            }
        }
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

    /// A stranger from the one source most tests need.
    const STRANGER: Standing = Standing::Stranger(Source::Unknown);

    fn from(last_octet: u8) -> Standing {
        Standing::Stranger(Source::V4([192, 0, 2, last_octet]))
    }

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
        admitted(a.admit(p, STRANGER));
        admitted(a.admit(p, STRANGER));
        assert_eq!(a.admit(p, STRANGER), Decision::Refuse(Refusal::PerPeer));
        admitted(a.admit(q, STRANGER));
        assert_eq!(a.admit(r, STRANGER), Decision::Refuse(Refusal::Total));
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn a_known_peer_displaces_the_oldest_stranger_when_full() {
        let mut a = Admission::new(Limits { total: 3, per_peer: 3 });
        let (s1, s2, k) = (PeerId::random(), PeerId::random(), PeerId::random());
        let (first, _) = admitted(a.admit(s1, STRANGER));
        let (second, _) = admitted(a.admit(s2, STRANGER));
        let (known_slot, none) = admitted(a.admit(k, Standing::Known));
        assert_eq!(none, None, "not full yet: nobody displaced");
        // Full: the known peer takes the oldest stranger's slot, then the next.
        assert_eq!(admitted(a.admit(k, Standing::Known)).1, Some(first));
        assert_eq!(a.of(&s1), 0);
        assert_eq!(admitted(a.admit(k, Standing::Known)).1, Some(second));
        // Only known streams left: a fourth known one is refused, never a known one displaced.
        assert_eq!(a.admit(k, Standing::Known), Decision::Refuse(Refusal::PerPeer));
        let other_known = PeerId::random();
        assert_eq!(a.admit(other_known, Standing::Known), Decision::Refuse(Refusal::Total));
        // A stranger never displaces anyone.
        a.release(known_slot);
        admitted(a.admit(s1, STRANGER));
        assert_eq!(a.admit(s2, STRANGER), Decision::Refuse(Refusal::Total));
    }

    #[test]
    fn released_slots_are_free_again_and_double_releases_change_nothing() {
        let mut a = Admission::new(Limits { total: 1, per_peer: 1 });
        let p = PeerId::random();
        let (slot, _) = admitted(a.admit(p, STRANGER));
        a.release(slot);
        a.release(slot);
        assert_eq!(a.len(), 0);
        let (next, _) = admitted(a.admit(p, STRANGER));
        // An evicted slot was released by `admit`; its stream's end releases it again, harmlessly.
        let (_, evicted) = admitted(a.admit(PeerId::random(), Standing::Known));
        assert_eq!(evicted, Some(next));
        a.release(next);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn known_peers_forget_the_oldest_beyond_the_bound() {
        let mut known = PeerBook::default();
        let first = PeerId::random();
        assert_eq!(known.insert(first), None);
        assert_eq!(known.insert(first), None, "a repeat is no new entry");
        for _ in 1..MAX_KNOWN_PEERS {
            assert_eq!(known.insert(PeerId::random()), None);
        }
        assert_eq!(known.insert(PeerId::random()), Some(first));
        assert!(!known.contains(&first));
    }

    #[test]
    fn strangers_from_one_source_cannot_crowd_out_strangers_from_another() {
        let mut a = Admission::new(Limits { total: 4, per_peer: 4 });
        // One address, many identities: it takes every slot while nobody else asks.
        let flood: Vec<u64> = (0..4).map(|_| admitted(a.admit(PeerId::random(), from(1))).0).collect();
        // A stranger from elsewhere takes the flood's oldest slot, and so does the next one.
        assert_eq!(admitted(a.admit(PeerId::random(), from(2))).1, Some(flood[0]));
        assert_eq!(admitted(a.admit(PeerId::random(), from(3))).1, Some(flood[1]));
        // Now the flood holds 2, the others 1 each: a third newcomer still gets one of the
        // flood's, after which every source holds at most 1 more than another and new streams
        // (the flood's included) are refused.
        assert_eq!(admitted(a.admit(PeerId::random(), from(4))).1, Some(flood[2]));
        assert_eq!(a.admit(PeerId::random(), from(1)), Decision::Refuse(Refusal::Total));
        assert_eq!(a.admit(PeerId::random(), from(5)), Decision::Refuse(Refusal::Total));
        assert_eq!(a.admit(PeerId::random(), from(2)), Decision::Refuse(Refusal::Total));
    }

    #[test]
    fn a_known_peer_takes_from_the_largest_source_first() {
        let mut a = Admission::new(Limits { total: 3, per_peer: 3 });
        let lone = admitted(a.admit(PeerId::random(), from(1))).0;
        let flood: Vec<u64> = (0..2).map(|_| admitted(a.admit(PeerId::random(), from(2))).0).collect();
        let friend = PeerId::random();
        // The lone stranger's slot is the oldest, but the flood holds more.
        assert_eq!(admitted(a.admit(friend, Standing::Known)).1, Some(flood[0]));
        // Equal shares (1 and 1): the oldest goes first.
        assert_eq!(admitted(a.admit(friend, Standing::Known)).1, Some(lone));
        assert_eq!(admitted(a.admit(friend, Standing::Known)).1, Some(flood[1]));
    }

    #[test]
    fn sources_are_addresses_and_v6_prefixes_not_identities() {
        let addr = |s: &str| s.parse::<Multiaddr>().unwrap();
        assert_eq!(Source::of(&addr("/ip4/192.0.2.7/tcp/4001")), Source::V4([192, 0, 2, 7]));
        assert_eq!(
            Source::of(&addr("/ip6/2001:db8:1:2::1/udp/1/quic-v1")),
            Source::of(&addr("/ip6/2001:db8:1:2:ffff::9/tcp/2")),
            "one /64 is one source"
        );
        assert_ne!(
            Source::of(&addr("/ip6/2001:db8:1:2::1/tcp/1")),
            Source::of(&addr("/ip6/2001:db8:1:3::1/tcp/1"))
        );
        let relay = PeerId::random();
        let relayed = addr(&format!("/ip4/198.51.100.1/tcp/4001/p2p/{relay}/p2p-circuit"));
        assert_eq!(
            Source::of(&relayed),
            Source::V4([198, 51, 100, 1]),
            "a relayed peer counts as its relay"
        );
        assert_eq!(Source::of(&addr("/memory/5")), Source::Unknown);

        let mut book = PeerBook::default();
        let (known, stranger) = (PeerId::random(), PeerId::random());
        book.insert(known);
        book.connected(known, &addr("/ip4/192.0.2.1/tcp/1"));
        book.connected(stranger, &addr("/ip4/192.0.2.2/tcp/1"));
        assert_eq!(book.standing(&known), Standing::Known);
        assert_eq!(book.standing(&stranger), from(2));
        book.disconnected(&stranger);
        assert_eq!(
            book.standing(&stranger),
            STRANGER,
            "a source is forgotten with the connection"
        );
    }
}
