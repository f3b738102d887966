//! The composed libp2p behaviour and the swarm built around it, under tim's own protocol names so
//! tim nodes form their own DHT and mesh. Kept to what tim needs: libp2p polls every behaviour's
//! connection handler on every wake-up of every connection, so each one costs CPU per message
//! (direct pipes and room sync both run on the one `libp2p_stream` behaviour: see `pipe` and
//! `sync_exchange`).

use std::{sync::Arc, time::Duration};

use libp2p::{
    allow_block_list, autonat, connection_limits,
    core::{
        transport::{MemoryTransport, Transport as _},
        upgrade,
    },
    dcutr, gossipsub, identify, kad, noise, relay,
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour},
    tcp, yamux, StreamProtocol, Swarm,
};
use sha2::{Digest, Sha256};

use super::{
    routing::{Kad, Limits, RouteStore},
    scoring,
};
use crate::{core::Counters, Config, Error, Result, Transport};

/// Kademlia protocol name: tim nodes only talk DHT with tim nodes. Version 2: route records
/// carry a sequence number (docs/protocol.md), so nodes with v1 records form a separate DHT.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/tim/kad/3.0.0");
/// Identify protocol version string.
pub(crate) const IDENTIFY_PROTOCOL: &str = "/tim/id/1.0.0";
/// Gossipsub protocol: version 1.1 only (every tim node speaks it; offering the 1.0 fallback too
/// would only lengthen the protocol list libp2p re-checks on every poll of every connection).
pub(crate) const GOSSIP_PROTOCOL: &str = "/tim/meshsub/1.1.0";

/// Everything a tim node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Ceilings on connections (`Config::max_established*`, `max_pending_incoming`), first so a
    /// connection over them is denied before any other behaviour sets up for it. Peers this node
    /// chose to talk to are exempt (`EventLoop::mark_known`).
    pub(crate) limits: connection_limits::Behaviour,
    /// Peers this node refuses to talk to (operator blocks, test partitions).
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Tells peers our listen addresses and protocols; feeds Kademlia's routing table.
    pub(crate) identify: identify::Behaviour,
    /// Account routing: signed route records (kept within bounds by `RouteStore`), and peer
    /// discovery.
    pub(crate) kad: Kad,
    /// Room traffic; every message is validated by the application before it is forwarded, and
    /// peers are scored (`scoring`).
    pub(crate) gossipsub: gossipsub::Behaviour,
    /// Streams handed to tasks: direct pipes (`pipe`) and room sync exchanges (`sync_exchange`).
    pub(crate) streams: libp2p_stream::Behaviour,
    /// Listening and dialling through relays (`/p2p-circuit` addresses).
    pub(crate) relay_client: relay::client::Behaviour,
    /// Relaying for others, with `Config::relay_server` only.
    pub(crate) relay_server: Toggle<relay::Behaviour>,
    /// Upgrades relayed connections to direct ones by hole punching.
    pub(crate) dcutr: dcutr::Behaviour,
    /// Asks peers to dial this node's candidate addresses back (learns whether it is public).
    /// Off on the memory transport: a memory address is public to the process, and each
    /// connection's observed address is a fresh port, so every connection would bring a new
    /// candidate to probe.
    pub(crate) autonat_client: Toggle<autonat::v2::client::Behaviour>,
    /// Dials back the addresses peers ask about.
    pub(crate) autonat_server: autonat::v2::server::Behaviour,
}

/// The relay server's behaviour under `limits`, with libp2p's default rate limits per peer and
/// per IP on reservations and circuits.
fn relay_service(peer_id: libp2p::PeerId, limits: &crate::RelayLimits) -> relay::Behaviour {
    let config = relay::Config {
        max_reservations: limits.max_reservations,
        max_reservations_per_peer: limits.max_reservations_per_peer,
        reservation_duration: limits.reservation_duration,
        max_circuits: limits.max_circuits,
        max_circuits_per_peer: limits.max_circuits_per_peer,
        // libp2p refuses durations beyond u32::MAX seconds.
        max_circuit_duration: limits.max_circuit_duration.min(Duration::from_secs(u32::MAX as u64)),
        max_circuit_bytes: limits.max_circuit_bytes,
        ..relay::Config::default()
    };
    relay::Behaviour::new(peer_id, config)
}

/// The gossipsub settings of a tim node, except that a node also validates every message in the
/// application before it is forwarded (`validate_messages`). Public so that benchmarks compare tim
/// with bare gossipsub under the same settings.
pub fn gossipsub_config_builder() -> gossipsub::ConfigBuilder {
    let mut builder = gossipsub::ConfigBuilder::default();
    builder
        .protocol_id(GOSSIP_PROTOCOL, gossipsub::Version::V1_1)
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(|m: &gossipsub::Message| gossipsub::MessageId::from(&Sha256::digest(&m.data)[..20]))
        .max_transmit_size(tim_protocol::MAX_FRAME_LEN + 1024)
        .heartbeat_interval(Duration::from_millis(500))
        .connection_handler_queue_len(GOSSIP_QUEUE_LEN);
    builder
}

/// Gossipsub's send queue per connection: half for this node's own publications and control
/// messages, half (allocated up front) for forwards and gossip; beyond it a slow peer misses
/// messages (they reach it through its other mesh peers, or room sync). gossipsub's default of
/// 5,000 is sized for blockchain traffic and costs about 580 KB per connection at once (most of
/// an idle node's memory at 40 connections); chat rooms need far less.
const GOSSIP_QUEUE_LEN: usize = 512;

pub(crate) fn build_swarm(
    key: libp2p::identity::Keypair,
    config: &Config,
    counters: Arc<Counters>,
) -> Result<Swarm<Behaviour>> {
    let net = |e: &dyn std::fmt::Display| Error::Network(e.to_string());
    let builder = libp2p::SwarmBuilder::with_existing_identity(key).with_tokio();
    let swarm = match config.transport {
        Transport::Network => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| net(&e))?
            .with_quic()
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| net(&e))?
            .with_behaviour(|key, relay_client| behaviour(key, relay_client, config, counters))
            .map_err(|e| net(&e))?
            .with_swarm_config(|c| swarm_config(c, config))
            .build(),
        Transport::Memory => builder
            .with_other_transport(|key| {
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    MemoryTransport::default()
                        .upgrade(upgrade::Version::V1)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default()),
                )
            })
            .map_err(|e| net(&e))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| net(&e))?
            .with_behaviour(|key, relay_client| behaviour(key, relay_client, config, counters))
            .map_err(|e| net(&e))?
            .with_swarm_config(|c| swarm_config(c, config))
            .build(),
    };
    Ok(swarm)
}

/// Every tim node speaks every tim protocol, so a stream's first data goes out with its protocol
/// proposal (multistream-select V1Lazy): one round trip less per direct message.
fn swarm_config(c: libp2p::swarm::Config, config: &Config) -> libp2p::swarm::Config {
    c.with_idle_connection_timeout(config.idle_connection_timeout)
        .with_substream_upgrade_protocol_override(upgrade::Version::V1Lazy)
}

/// The behaviour of a node with identity `key`, whatever its transport.
fn behaviour(
    key: &libp2p::identity::Keypair,
    relay_client: relay::client::Behaviour,
    config: &Config,
    counters: Arc<Counters>,
) -> std::result::Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let refresh = config.route_refresh;
    let peer_id = key.public().to_peer_id();
    let identify = identify::Behaviour::new(identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public()));
    // Inbound records go straight to `RouteStore::put`, which verifies and bounds them; a
    // refusal resets the sender's request, so it is never told a dropped record is stored.
    // Each node republishes its own record every `route_refresh`, so Kademlia's own
    // replication, republication and caching are off: every record here was put by the
    // peer that sent it, which is what the store's per-peer bound counts.
    let limits = Limits::default();
    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config.set_record_filtering(kad::StoreInserts::Unfiltered);
    kad_config.set_record_ttl(Some(limits.max_ttl));
    kad_config.set_replication_interval(None);
    kad_config.set_publication_interval(None);
    kad_config.set_caching(kad::Caching::Disabled);
    // Room members announce themselves (provider records, `room_discovery`) and
    // re-announce on their own schedule, so Kademlia's own provider republication is off.
    kad_config.set_provider_record_ttl(Some(super::room_discovery::PROVIDER_TTL));
    kad_config.set_provider_publication_interval(None);
    kad_config.set_query_timeout(Duration::from_secs(30));
    kad_config.set_periodic_bootstrap_interval(Some(refresh));
    let store = RouteStore::new(peer_id, limits, counters);
    let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
    kad.set_mode(Some(kad::Mode::Server));
    let kad = Kad::new(kad);
    let gossipsub = scoring::gossipsub()?;
    let streams = libp2p_stream::Behaviour::new();
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_pending_incoming(Some(config.max_pending_incoming))
        .with_max_established_incoming(Some(config.max_established_incoming))
        .with_max_established(Some(config.max_established))
        .with_max_established_per_peer(Some(config.max_established_per_peer));
    let relay_server = Toggle::from(
        config
            .relay_server
            .then(|| relay_service(peer_id, &config.relay_limits)),
    );
    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        blocked: allow_block_list::Behaviour::default(),
        identify,
        kad,
        gossipsub,
        streams,
        relay_client,
        relay_server,
        dcutr: dcutr::Behaviour::new(peer_id),
        autonat_client: Toggle::from(
            (config.transport == Transport::Network).then(|| {
                autonat::v2::client::Behaviour::new(rand::rngs::OsRng, autonat::v2::client::Config::default())
            }),
        ),
        autonat_server: autonat::v2::server::Behaviour::new(rand::rngs::OsRng),
    })
}
