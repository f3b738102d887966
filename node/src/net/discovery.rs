//! Room discovery decisions, as a state machine handed the time: when a member announces itself
//! for a room (a Kademlia provider record under the room's key), when it looks up the room's
//! other members, and which of the members found it dials. The event loop carries out the
//! `Output`s (`room_discovery.rs`) and reports back what the DHT answered.
//!
//! Rules (docs/protocol.md, "Room discovery"): on joining, announce and look up at once, then
//! keep looking up on a backoff (`retry_min`, doubling up to `retry_max`) whatever the lookups
//! find: members that join at about the same time cannot see each other's announcements in their
//! first lookups, and groups that met early would otherwise stay apart. After that joining phase,
//! re-announce every `republish` and look up as often. A room with fewer than `low` peers in its
//! mesh is looked up sooner while lookups find new members (after `retry_min`) or find none at
//! all (on the backoff). It is looked up again at once when its mesh falls below `low` after
//! being healthy. An announcement no peer took is retried on the same backoff. Of the members a
//! lookup finds, the node dials those it is not connected to, until the room would have `want`
//! connected members, at most `want` per lookup; when the room has them already, it still dials
//! one new member per lookup, so that groups of members that found only each other get joined by
//! a bridge (the connection manager prunes bridges gossipsub does not need). A lookup ends as soon
//! as those dials are made: the rest of the DHT walk would only dial peers near the room's key. A
//! peer it dialled in the last `retry_max` is not dialled again (a provider that is gone, or that
//! never subscribes to the room, costs one dial per `retry_max`).

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use libp2p::PeerId;
use tim_protocol::RoomId;

/// The timing and the wanted room size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// How often a member re-announces itself and looks up the room when its mesh is healthy.
    pub(crate) republish: Duration,
    /// First wait before looking up (or announcing) again when it did not help.
    pub(crate) retry_min: Duration,
    /// Longest such wait.
    pub(crate) retry_max: Duration,
    /// Connected members wanted per room (gossipsub's `mesh_n`).
    pub(crate) want: usize,
    /// Below this many mesh peers a room is looked up sooner (gossipsub's `mesh_n_low`).
    pub(crate) low: usize,
}

/// What the event loop should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Output {
    /// Announce this node as a member of the room (start providing its key).
    Announce(RoomId),
    /// Stop announcing (the room was left).
    StopAnnouncing(RoomId),
    /// Look up the room's members (get the providers of its key).
    LookUp(RoomId),
    /// Dial this member.
    Dial(PeerId),
}

/// What a room's peers look like now, as the event loop sees them in gossipsub.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RoomPeers {
    /// Peers in the room's mesh.
    pub(crate) mesh: usize,
    /// Connected peers subscribed to the room.
    pub(crate) members: usize,
}

/// Most peers remembered as dialled (beyond, expired ones are forgotten first, then no more are
/// remembered until some expire).
const MAX_DIALLED: usize = 1024;

/// One joined room.
#[derive(Debug)]
struct Room {
    next_announce: Instant,
    announce_retry: Duration,
    announcing: bool,
    next_lookup: Instant,
    lookup_retry: Duration,
    looking: bool,
    /// Dials this lookup asked for so far.
    dials: usize,
    /// Members this lookup found, and of them the new ones (not connected, not dialled lately).
    found: usize,
    fresh: usize,
    /// Whether the mesh was at `low` or more at the last tick.
    healthy: bool,
    /// Whether the joining phase (lookups on the backoff, whatever they find) is over.
    settled: bool,
}

/// The discovery state machine (see the module doc).
#[derive(Debug)]
pub(crate) struct Discovery {
    settings: Settings,
    local: PeerId,
    rooms: HashMap<RoomId, Room>,
    /// When each recently dialled peer was dialled.
    dialled: HashMap<PeerId, Instant>,
    outputs: VecDeque<Output>,
}

impl Discovery {
    pub(crate) fn new(local: PeerId, mut settings: Settings) -> Self {
        settings.retry_min = settings.retry_min.max(Duration::from_millis(100));
        settings.retry_max = settings.retry_max.max(settings.retry_min);
        settings.republish = settings.republish.max(settings.retry_min);
        Discovery {
            settings,
            local,
            rooms: HashMap::new(),
            dialled: HashMap::new(),
            outputs: VecDeque::new(),
        }
    }

    /// The room was joined: announce and look up at once.
    pub(crate) fn join(&mut self, room: RoomId, now: Instant) {
        let s = self.settings;
        let state = Room {
            next_announce: now + s.republish,
            announce_retry: s.retry_min,
            announcing: true,
            next_lookup: now + s.republish,
            lookup_retry: s.retry_min,
            looking: true,
            dials: 0,
            found: 0,
            fresh: 0,
            healthy: false,
            settled: false,
        };
        if self.rooms.insert(room.clone(), state).is_none() {
            self.outputs.push_back(Output::Announce(room.clone()));
            self.outputs.push_back(Output::LookUp(room));
        }
    }

    /// The room was left: stop announcing.
    pub(crate) fn leave(&mut self, room: &RoomId) {
        if self.rooms.remove(room).is_some() {
            self.outputs.push_back(Output::StopAnnouncing(room.clone()));
        }
    }

    /// Whether `room` is joined here.
    #[cfg(test)]
    pub(crate) fn is_joined(&self, room: &RoomId) -> bool {
        self.rooms.contains_key(room)
    }

    /// Time passes: re-announce and look up what is due. `peers` says how each room's mesh looks.
    pub(crate) fn tick(&mut self, now: Instant, peers: impl Fn(&RoomId) -> RoomPeers) {
        let s = self.settings;
        for (room, state) in &mut self.rooms {
            let seen = peers(room);
            let healthy = seen.mesh >= s.low;
            if state.healthy && !healthy && !state.looking {
                // The mesh just fell below `low`: look again now, on the short backoff.
                state.next_lookup = now;
                state.lookup_retry = s.retry_min;
            }
            state.healthy = healthy;
            if !state.announcing && now >= state.next_announce {
                state.announcing = true;
                self.outputs.push_back(Output::Announce(room.clone()));
            }
            if !state.looking && now >= state.next_lookup {
                state.looking = true;
                state.dials = 0;
                state.found = 0;
                state.fresh = 0;
                self.outputs.push_back(Output::LookUp(room.clone()));
            }
        }
    }

    /// An announcement ended; `reached` is whether any peer took part in it.
    pub(crate) fn announced(&mut self, room: &RoomId, reached: bool, now: Instant) {
        let s = self.settings;
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        state.announcing = false;
        if reached {
            state.announce_retry = s.retry_min;
            state.next_announce = now + s.republish;
        } else {
            state.next_announce = now + state.announce_retry;
            state.announce_retry = (state.announce_retry * 2).min(s.retry_max);
        }
    }

    /// A lookup for `room` found `providers`; `connected` says which peers are connected now and
    /// `seen` how the room looks. Queues dials to the new ones the room needs.
    pub(crate) fn found(
        &mut self,
        room: &RoomId,
        providers: impl IntoIterator<Item = PeerId>,
        connected: impl Fn(&PeerId) -> bool,
        seen: RoomPeers,
        now: Instant,
    ) {
        let s = self.settings;
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let recent = s.retry_max;
        for peer in providers {
            if peer == self.local {
                continue;
            }
            state.found += 1;
            if connected(&peer) {
                continue;
            }
            if self
                .dialled
                .get(&peer)
                .is_some_and(|at| now.saturating_duration_since(*at) < recent)
            {
                continue;
            }
            state.fresh += 1;
            let full = seen.members + state.dials >= s.want;
            // A full room still gets one bridge per lookup.
            if state.dials >= s.want || (full && state.dials > 0) {
                continue;
            }
            state.dials += 1;
            if self.dialled.len() >= MAX_DIALLED {
                self.dialled.retain(|_, at| now.saturating_duration_since(*at) < recent);
            }
            if self.dialled.len() < MAX_DIALLED {
                self.dialled.insert(peer, now);
            }
            self.outputs.push_back(Output::Dial(peer));
        }
    }

    /// Whether the lookup for `room` found what it can use: the dials it may make are queued, and
    /// with them the room has `want` connected members (a full room's bridge included). The event
    /// loop ends the Kademlia query there: walking on towards the key's closest peers would only
    /// dial peers that carry nothing for the room, which the connection manager closes again.
    pub(crate) fn lookup_has_enough(&self, room: &RoomId, seen: RoomPeers) -> bool {
        let want = self.settings.want;
        self.rooms
            .get(room)
            .is_some_and(|s| s.looking && s.dials > 0 && (s.dials >= want || seen.members + s.dials >= want))
    }

    /// A lookup for `room` ended. A short room whose lookup found someone new is looked up again
    /// soon (`retry_min`). Otherwise, in the joining phase, the next lookup comes on the backoff,
    /// whatever this one found, until the backoff reaches `retry_max`. After it, a short room
    /// whose lookup found no member at all (nobody announced yet, or the DHT is not ready) stays
    /// on the backoff; anything else waits for `republish` (the room is as big as the DHT shows
    /// it: members that join later look this one up themselves).
    pub(crate) fn lookup_done(&mut self, room: &RoomId, seen: RoomPeers, now: Instant) {
        let s = self.settings;
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        state.looking = false;
        let short = seen.mesh < s.low;
        let backoff = |state: &mut Room| {
            state.next_lookup = now + state.lookup_retry;
            state.lookup_retry = (state.lookup_retry * 2).min(s.retry_max);
        };
        if short && state.fresh > 0 {
            state.lookup_retry = s.retry_min;
            state.next_lookup = now + s.retry_min;
        } else if !state.settled {
            state.settled = state.lookup_retry >= s.retry_max;
            backoff(state);
        } else if short && state.found == 0 {
            backoff(state);
        } else {
            state.lookup_retry = s.retry_min;
            state.next_lookup = now + s.republish;
        }
    }

    /// The next thing to do, if any.
    pub(crate) fn poll(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
