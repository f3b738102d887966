//! The event loop's side of room discovery: it carries out what the discovery state machine
//! (`discovery`) decides (announce, stop, look up, dial) on Kademlia and the swarm, and reports
//! back what the DHT answered. The provider key of a room is specified in docs/protocol.md.

use std::time::Duration;

use libp2p::{
    kad,
    swarm::dial_opts::{DialOpts, PeerCondition},
    PeerId,
};
use sha2::{Digest, Sha256};
use tim_protocol::RoomId;
use tracing::{debug, warn};

use super::{
    discovery::{Output, RoomPeers, Settings},
    event_loop::EventLoop,
    rooms::{room_of, topic},
    swarm::gossipsub_config_builder,
};
use crate::Config;

/// The domain tag of room-provider keys.
const PROVIDER_KEY_TAG: &[u8] = b"tim/v1/room-provider\0";
/// How long a node keeps a provider record after its last announcement.
pub(crate) const PROVIDER_TTL: Duration = Duration::from_secs(30 * 60);
/// First and longest wait between lookups of a room whose mesh is short.
const RETRY_MIN: Duration = Duration::from_secs(2);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// The Kademlia key under which a room's members announce themselves:
/// SHA-256("tim/v1/room-provider\0" || room id).
pub(crate) fn provider_key(room: &RoomId) -> kad::RecordKey {
    let mut hash = Sha256::new();
    hash.update(PROVIDER_KEY_TAG);
    hash.update(room.as_str().as_bytes());
    kad::RecordKey::new(&hash.finalize())
}

/// The discovery settings for `config`, with gossipsub's mesh sizes.
pub(super) fn settings(config: &Config) -> Settings {
    let (want, low) = gossipsub_config_builder()
        .build()
        .map(|c| (c.mesh_n(), c.mesh_n_low()))
        .unwrap_or((6, 5));
    Settings {
        republish: config.room_announce_interval,
        retry_min: RETRY_MIN,
        retry_max: RETRY_MAX.max(RETRY_MIN),
        want,
        low,
    }
}

/// What a discovery query in flight is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Query {
    Announce,
    LookUp,
}

impl EventLoop {
    /// How `room`'s mesh looks in gossipsub now.
    pub(super) fn room_peers_seen(&self, room: &RoomId) -> RoomPeers {
        let hash = topic(room).hash();
        let gossipsub = &self.swarm.behaviour().gossipsub;
        RoomPeers {
            mesh: gossipsub.mesh_peers(&hash).count(),
            members: gossipsub
                .all_peers()
                .filter(|(_, topics)| topics.contains(&&hash))
                .count(),
        }
    }

    /// Lets the discovery state machine see the time and the rooms' meshes.
    pub(super) fn tick_discovery(&mut self) {
        let rooms: Vec<RoomId> = self.swarm.behaviour().gossipsub.topics().filter_map(room_of).collect();
        let seen: Vec<(RoomId, RoomPeers)> = rooms
            .into_iter()
            .map(|r| (r.clone(), self.room_peers_seen(&r)))
            .collect();
        let now = tokio::time::Instant::now().into_std();
        self.discovery.tick(now, |room| {
            seen.iter()
                .find(|(r, _)| r == room)
                .map(|(_, p)| *p)
                .unwrap_or_default()
        });
    }

    /// Carries out every pending output of the discovery state machine.
    pub(super) fn carry_out_discovery(&mut self) {
        while let Some(output) = self.discovery.poll() {
            match output {
                Output::Announce(room) => {
                    let kad = &mut self.swarm.behaviour_mut().kad;
                    match kad.start_providing(provider_key(&room)) {
                        Ok(id) => {
                            self.discovery_queries.insert(id, (room, Query::Announce));
                        }
                        Err(e) => warn!(%room, error = ?e, "could not announce room membership"),
                    }
                }
                Output::StopAnnouncing(room) => {
                    let key = provider_key(&room);
                    self.swarm.behaviour_mut().kad.stop_providing(&key);
                    let queries: Vec<kad::QueryId> = self
                        .discovery_queries
                        .iter()
                        .filter(|(_, (r, _))| *r == room)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in queries {
                        self.discovery_queries.remove(&id);
                        if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                            query.finish();
                        }
                    }
                }
                Output::LookUp(room) => {
                    let id = self.swarm.behaviour_mut().kad.get_providers(provider_key(&room));
                    self.discovery_queries.insert(id, (room, Query::LookUp));
                }
                Output::Dial(peer) => {
                    // Dialled while the lookup runs, so Kademlia still holds the addresses it
                    // learnt with the provider.
                    let opts = DialOpts::peer_id(peer)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        debug!(%peer, error = %e, "could not dial a room member");
                    }
                }
            }
        }
    }

    /// A step of an announcement.
    pub(super) fn on_announced(&mut self, id: kad::QueryId, result: kad::AddProviderResult, stats: &kad::QueryStats) {
        let Some((room, _)) = self.discovery_queries.remove(&id) else {
            return;
        };
        let reached = result.is_ok() && stats.num_successes() > 0;
        debug!(%room, reached, peers = stats.num_successes(), "room membership announced");
        let now = tokio::time::Instant::now().into_std();
        self.discovery.announced(&room, reached, now);
    }

    /// A step of a lookup: dial what the state machine picks among the providers found, and end
    /// the lookup on its last step.
    pub(super) fn on_providers(&mut self, id: kad::QueryId, result: kad::GetProvidersResult, last: bool) {
        let Some((room, _)) = self.discovery_queries.get(&id).cloned() else {
            return;
        };
        let now = tokio::time::Instant::now().into_std();
        let mut enough = false;
        if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = &result {
            let seen = self.room_peers_seen(&room);
            let swarm = &self.swarm;
            let found: Vec<PeerId> = providers.iter().copied().collect();
            debug!(%room, found = found.len(), "room members found");
            self.discovery.found(&room, found, |p| swarm.is_connected(p), seen, now);
            enough = self.discovery.lookup_has_enough(&room, seen);
            self.carry_out_discovery();
        }
        let done = enough || last || !matches!(result, Ok(kad::GetProvidersOk::FoundProviders { .. }));
        if done {
            self.discovery_queries.remove(&id);
            if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                query.finish();
            }
            let seen = self.room_peers_seen(&room);
            self.discovery.lookup_done(&room, seen, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_key_is_the_tagged_hash_of_the_room_id() {
        let room = RoomId::new("general").unwrap();
        let mut expected = Sha256::new();
        expected.update(b"tim/v1/room-provider\0general");
        assert_eq!(provider_key(&room).as_ref(), expected.finalize().as_slice());
        assert_ne!(provider_key(&room), provider_key(&RoomId::new("general2").unwrap()));
    }
}
