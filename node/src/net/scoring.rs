//! Gossipsub peer scoring for tim rooms: a message the application reports `Reject` (invalid
//! signature, wrong room, broken rules) counts against the peer that sent it in that room's
//! topic, and a peer whose score falls low enough is no longer gossiped with, then ignored
//! altogether (graylisted). docs/architecture.md ("Rooms") lists the numbers and why.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use libp2p::gossipsub::{self, score_parameter_decay, PeerScoreParams, PeerScoreThresholds, TopicScoreParams};

use super::swarm::gossipsub_config_builder;

/// Below this score a peer gets no gossip (IHAVE/IWANT) from us and we take none from it: one
/// invalid message puts a peer there.
pub(super) const GOSSIP_THRESHOLD: f64 = -10.0;
/// Below this score we do not flood-publish our own messages to the peer.
pub(super) const PUBLISH_THRESHOLD: f64 = -50.0;
/// Below this score every RPC from the peer is ignored: three invalid messages in a short time.
pub(super) const GRAYLIST_THRESHOLD: f64 = -80.0;
/// Weight of one invalid message, squared with the peer's decaying count in the topic.
const INVALID_WEIGHT: f64 = -20.0;
/// How long until a peer's count of invalid messages has decayed to nothing.
const INVALID_DECAY: Duration = Duration::from_secs(3600);
/// Most a peer's good behaviour across all topics can add to its score, so it can never bank
/// enough credit to send invalid messages unpunished.
const TOPIC_SCORE_CAP: f64 = 10.0;

/// The score thresholds of a tim node.
pub(super) fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        // Peer exchange is off (gossipsub's default), so this only matters if it is turned on:
        // above what any peer can reach, i.e. never accept PX.
        accept_px_threshold: TOPIC_SCORE_CAP + 1.0,
        opportunistic_graft_threshold: 1.0,
    }
}

/// The peer score parameters of a tim node; room topics get theirs on joining
/// ([`room_topic_params`]).
pub(super) fn params() -> PeerScoreParams {
    PeerScoreParams {
        topic_score_cap: TOPIC_SCORE_CAP,
        app_specific_weight: 0.0,
        // Many peers behind one address are suspect (sybils on one host), but loopback peers are
        // this machine's own (tests, a local client node).
        ip_colocation_factor_weight: -5.0,
        ip_colocation_factor_threshold: 10.0,
        ip_colocation_factor_whitelist: [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]
            .into_iter()
            .collect(),
        // Router-detected misbehaviour (re-grafting during backoff, unanswered IWANTs), tolerant
        // of a few slips.
        behaviour_penalty_weight: -10.0,
        behaviour_penalty_threshold: 6.0,
        behaviour_penalty_decay: score_parameter_decay(Duration::from_secs(600)),
        retain_score: Duration::from_secs(3600),
        ..PeerScoreParams::default()
    }
}

/// The score parameters of one room topic. Rooms are quiet: a peer that delivers nothing is not
/// penalised (no mesh-delivery penalty); it earns a little for time in the mesh and for first
/// deliveries, and loses much for every invalid message.
pub(super) fn room_topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: score_parameter_decay(Duration::from_secs(3600)),
        first_message_deliveries_cap: 5.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_WEIGHT,
        invalid_message_deliveries_decay: score_parameter_decay(INVALID_DECAY),
        ..TopicScoreParams::default()
    }
}

/// The gossipsub behaviour of a tim node: tim's settings, application validation, scoring on.
pub(super) fn gossipsub() -> Result<gossipsub::Behaviour, String> {
    let config = gossipsub_config_builder()
        .validate_messages()
        .build()
        .map_err(|e| e.to_string())?;
    let mut behaviour = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)?;
    behaviour.with_peer_score(params(), thresholds())?;
    Ok(behaviour)
}

#[cfg(test)]
#[path = "scoring_tests.rs"]
mod tests;
