//! The composed libp2p behaviour, under tim's own protocol names so tim nodes form their own DHT
//! and mesh. Kept to what tim needs: libp2p polls every behaviour's connection handler on every
//! wake-up of every connection, so each one costs CPU per message (direct pipes and room sync
//! both run on the one `libp2p_stream` behaviour: see `pipe` and `sync`).

use libp2p::{allow_block_list, gossipsub, identify, kad, swarm::NetworkBehaviour, StreamProtocol};

/// Kademlia protocol name: tim nodes only talk DHT with tim nodes.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/tim/kad/1.0.0");
/// Identify protocol version string.
pub(crate) const IDENTIFY_PROTOCOL: &str = "/tim/id/1.0.0";
/// Gossipsub protocol: version 1.1 only (every tim node speaks it; offering the 1.0 fallback too
/// would only lengthen the protocol list libp2p re-checks on every poll of every connection).
pub(crate) const GOSSIP_PROTOCOL: &str = "/tim/meshsub/1.1.0";

/// Everything a tim node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Peers this node refuses to talk to (operator blocks, test partitions).
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Tells peers our listen addresses and protocols; feeds Kademlia's routing table.
    pub(crate) identify: identify::Behaviour,
    /// Account routing: signed route records, and peer discovery.
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Room traffic; every message is validated by the application before it is forwarded.
    pub(crate) gossipsub: gossipsub::Behaviour,
    /// Streams handed to tasks: direct pipes (`pipe`) and room sync exchanges (`sync`).
    pub(crate) direct: libp2p_stream::Behaviour,
}
