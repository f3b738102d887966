//! Node configuration: a plain struct with documented defaults; binaries map their flags into it.

use std::{path::PathBuf, time::Duration};

use libp2p::Multiaddr;

/// Who may put direct messages into this account's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Inbound {
    /// Everyone (within the stranger quotas).
    #[default]
    Anyone,
    /// Contacts, accounts this account asked or wrote to; other accounts' messages are held as
    /// requests (a few each) until accepted or rejected.
    Contacts,
}

impl Inbound {
    /// `anyone` or `contacts`.
    pub fn as_str(self) -> &'static str {
        match self {
            Inbound::Anyone => "anyone",
            Inbound::Contacts => "contacts",
        }
    }

    /// The setting named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Inbound> {
        match name {
            "anyone" => Some(Inbound::Anyone),
            "contacts" => Some(Inbound::Contacts),
            _ => None,
        }
    }
}

/// How a node runs. Build with [`Config::new`] and change fields as needed.
#[derive(Debug, Clone)]
pub struct Config {
    /// Holds `node.key` (libp2p identity), `account.key` (ed25519 seed) and `db/` (RocksDB).
    /// Created on first start.
    pub data_dir: PathBuf,
    /// Where to listen. Default: TCP and QUIC on every interface, OS-chosen ports.
    pub listen: Vec<Multiaddr>,
    /// Peers to bootstrap from, each `/ip4/…/tcp/…/p2p/<peer id>`. Default: none.
    pub bootstrap: Vec<Multiaddr>,
    /// Refuse revokes more than this long after the message was sent, on the sending side and on
    /// every verifying side. Default `None`: no limit, as tim.
    pub revoke_window: Option<Duration>,
    /// With a revoke window set, how long beyond it a revoke may take to reach this node once it
    /// holds the target (its own clock; see docs/protocol.md, "Revoke window"). Default 2 minutes.
    pub revoke_grace: Duration,
    /// Send a signed deletion receipt to the account whose revoke or burn this node applies
    /// (docs/protocol.md, "Deletion receipts"). A receipt tells that account this node was
    /// online and when it applied it; `false` sends none, as a person may turn off read
    /// receipts. Receipts for this account's own deletions are kept either way. Default `true`.
    pub deletion_receipts: bool,
    /// Seal direct messages end to end to the recipient and the sender (docs/protocol.md,
    /// "Sealed bodies"). `false` sends them plain, for a peer that cannot open sealed bodies or
    /// to measure what sealing costs. A private room's posts are sealed regardless. Default
    /// `true`.
    pub seal_direct: bool,
    /// How old the newest seal key (the X25519 key peers seal this account's bodies to,
    /// published in a record signed by the account key) may get: a node whose newest is this old
    /// or older makes a new one (checked at start and at every `route_refresh`). Old secrets are kept, so earlier bodies still open.
    /// Default 7 days.
    pub seal_key_rotation: Duration,
    /// Who may put direct messages into this account's history (docs/api.md, "Who may message
    /// me"). Changed at run time with `PUT /v1/settings`, which is kept across restarts and then
    /// wins over this. Default [`Inbound::Anyone`].
    pub inbound: Inbound,
    /// Lifetime of the route record this node publishes for its account. Default 1 hour.
    pub route_ttl: Duration,
    /// How often the route record is re-published (and the routing table refreshed). Default
    /// 10 minutes.
    pub route_refresh: Duration,
    /// How long a direct request may take. Default 10 s.
    pub request_timeout: Duration,
    /// How long an idle connection is kept. Default 60 s.
    pub idle_connection_timeout: Duration,
    /// Most inbound messages being verified and stored at once; beyond it direct requests get
    /// `5104 overloaded` and gossip is ignored. Default 256.
    pub max_inbound_in_flight: usize,
    /// Capacity of the event broadcast; a subscriber that falls further behind loses the oldest
    /// events (and is told how many). Default 1024.
    pub event_capacity: usize,
    /// Most relayed frames (not in the outbox) waiting for delivery at once. Default 1,000.
    pub max_pending_relays: usize,
    /// Undelivered outbox entries older than this are dropped with a log line and a
    /// `delivery_failed` event (code 4121). Default 30 days.
    pub outbox_retention: Duration,
    /// Longest wait between delivery attempts; the wait starts at 500 ms and doubles. A retry also
    /// happens at once when the recipient becomes reachable again. Default 30 s.
    pub retry_max: Duration,
    /// Most undelivered outbox entries for one recipient; beyond it `send` fails with `5104`.
    /// Default 10,000.
    pub outbox_per_recipient: usize,
    /// Most undelivered outbox entries in total. Default 100,000.
    pub outbox_total: usize,
    /// How often a node re-syncs each joined room with one of its connected members, a different
    /// one each time (it also syncs with all of them on joining, and with a member whenever it
    /// connects). Default 30 s.
    pub room_sync_interval: Duration,
    /// How many of a room's newest log entries a member serves to a peer syncing from scratch.
    /// Default 10,000.
    pub sync_window: usize,
    /// fsync the store's WAL on every write (see `tim_storage::Config::sync_writes`). Default
    /// `false`.
    pub sync_writes: bool,
    /// How long destroyed bodies gather before one shred pass removes their bytes from disk (see
    /// `tim_storage::Config::shred_delay`). They are unreadable at once. Default 1 s.
    pub shred_delay: Duration,
    /// Most direct messages held from one stranger (an account this one never wrote to); beyond
    /// it they are refused with `5104` (the sender retries) until this account answers.
    /// Default 100. See `tim_storage::Config::stranger_messages_each`.
    pub stranger_messages_each: usize,
    /// Most direct messages held from strangers in all; then the oldest is evicted. Default
    /// 10,000.
    pub stranger_messages_total: usize,
    /// Most tombstones for messages never held here, per signer (beyond: `5104`). Default 100.
    pub pending_tombstones_each: usize,
    /// Most such tombstones in all; then the oldest is evicted. Default 10,000.
    pub pending_tombstones_total: usize,
    /// Most messages kept in one room from accounts this one never wrote to; then the room's
    /// oldest such message is evicted (deleted and shredded). Default 10,000. See
    /// `tim_storage::Config::room_stranger_messages`.
    pub room_stranger_messages: usize,
    /// Most inbound direct pipes served at once (4 at most per peer). When full, a pipe from a
    /// peer this node chose to talk to (one it delivered to, or a bootstrap peer) displaces a
    /// stranger's, and a stranger's displaces one from the address holding the most if it holds
    /// at least two more than the newcomer's address; else it is refused. Default 1,024.
    pub max_inbound_pipes: usize,
    /// Most connections being set up (handshakes) that peers opened. Default 128.
    pub max_pending_incoming: u32,
    /// Most established connections that peers opened. Peers this node chose to talk to are not
    /// counted. Default 512.
    pub max_established_incoming: u32,
    /// Most established connections, both directions, not counting peers this node chose to
    /// talk to. Default 1,024.
    pub max_established: u32,
    /// Most established connections with one peer (two is normal: both dialled at once).
    /// Default 4.
    pub max_established_per_peer: u32,
    /// The connection manager's high watermark: with more peers connected than this, the least
    /// valuable are closed down to `target_connections`. Peers in a joined room's mesh, with an
    /// open outbound pipe or a room sync in flight, protected relays, and peers connected for
    /// less than `connection_grace` are never closed, so the count can stay above it while they
    /// need it; peers merely active within `connection_grace` give way when closing idle ones is
    /// not enough. The hard ceilings above still apply. Default 64.
    pub max_connections: usize,
    /// The low watermark that pruning brings the peer count down to. Default 48.
    pub target_connections: usize,
    /// How long a new connection is safe from pruning (its Kademlia query, identify exchange or
    /// room handshake may be under way), and how long activity spares a peer while that keeps the
    /// node within `max_connections`. Default 10 s.
    pub connection_grace: Duration,
    /// How often a room member re-announces itself for each joined room (a Kademlia provider
    /// record) and looks up the room's members, when the room's mesh is healthy; a short mesh is
    /// looked up sooner. Default 10 minutes.
    pub room_announce_interval: Duration,
    /// Serve as a relay (circuit relay v2) for nodes that peers cannot dial: for a site node with
    /// a public address. Default `false`. Every node can *use* relays either way.
    pub relay_server: bool,
    /// Relay limits when serving (`relay_server`).
    pub relay_limits: RelayLimits,
    /// Relay reservations a node keeps while peers cannot dial it (AutoNAT says private).
    /// Default 2.
    pub relay_reservations: usize,
    /// Addresses peers can dial this node at, known in advance (a site node's public address);
    /// published at once, without waiting for AutoNAT to confirm them. Default: none.
    pub external_addrs: Vec<Multiaddr>,
    /// What carries connections. Default [`Transport::Network`].
    pub transport: Transport,
}

/// What carries a node's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// TCP and QUIC (and relayed circuits over them): what every deployed node uses.
    #[default]
    Network,
    /// libp2p's in-process memory transport (`/memory/<port>` addresses, same Noise and yamux
    /// upgrades as TCP): many nodes in one process reach each other without sockets. For
    /// simulations and tests; such a node reaches only nodes of its own process.
    Memory,
}

/// What a relay grants the nodes it serves (libp2p's own resource limits).
#[derive(Debug, Clone)]
pub struct RelayLimits {
    /// Most reservations held at once. Default 128.
    pub max_reservations: usize,
    /// Most reservations one peer holds. Default 4.
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before the node renews it. Default 1 hour.
    pub reservation_duration: Duration,
    /// Most circuits relayed at once. Default 64.
    pub max_circuits: usize,
    /// Most circuits one peer opens at once. Default 4.
    pub max_circuits_per_peer: usize,
    /// A circuit is closed after this long (the two nodes then reconnect, ideally directly by
    /// hole punching). Default 30 minutes.
    pub max_circuit_duration: Duration,
    /// A circuit is closed after this many bytes in each direction. Default 16 MiB.
    pub max_circuit_bytes: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_reservations: 128,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(3600),
            max_circuits: 64,
            max_circuits_per_peer: 4,
            max_circuit_duration: Duration::from_secs(30 * 60),
            max_circuit_bytes: 16 << 20,
        }
    }
}

impl Config {
    /// Defaults, with the given data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".parse().unwrap_or_else(|_| Multiaddr::empty()),
                "/ip4/0.0.0.0/udp/0/quic-v1"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
            ],
            bootstrap: Vec::new(),
            revoke_window: None,
            revoke_grace: tim_protocol::policy::DEFAULT_REVOKE_GRACE,
            deletion_receipts: true,
            seal_direct: true,
            seal_key_rotation: Duration::from_secs(7 * 24 * 3600),
            inbound: Inbound::Anyone,
            route_ttl: Duration::from_secs(3600),
            route_refresh: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
            idle_connection_timeout: Duration::from_secs(60),
            max_inbound_in_flight: 256,
            event_capacity: 1024,
            max_pending_relays: 1_000,
            outbox_retention: Duration::from_secs(30 * 24 * 3600),
            retry_max: Duration::from_secs(30),
            outbox_per_recipient: 10_000,
            outbox_total: 100_000,
            room_sync_interval: Duration::from_secs(30),
            sync_window: 10_000,
            sync_writes: false,
            shred_delay: Duration::from_secs(1),
            stranger_messages_each: 100,
            stranger_messages_total: 10_000,
            pending_tombstones_each: 100,
            pending_tombstones_total: 10_000,
            room_stranger_messages: 10_000,
            max_inbound_pipes: 1024,
            max_pending_incoming: 128,
            max_established_incoming: 512,
            max_established: 1024,
            max_established_per_peer: 4,
            max_connections: 64,
            target_connections: 48,
            connection_grace: Duration::from_secs(10),
            room_announce_interval: Duration::from_secs(600),
            relay_server: false,
            relay_limits: RelayLimits::default(),
            relay_reservations: 2,
            external_addrs: Vec::new(),
            transport: Transport::Network,
        }
    }

    /// Defaults for a node on loopback only (tests, the demo): TCP on `127.0.0.1`, any port.
    pub fn loopback(data_dir: impl Into<PathBuf>) -> Self {
        let mut c = Config::new(data_dir);
        c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap_or_else(|_| Multiaddr::empty())];
        c
    }

    /// Defaults for a node on the in-process memory transport ([`Transport::Memory`]), listening
    /// on a port the transport picks.
    pub fn memory(data_dir: impl Into<PathBuf>) -> Self {
        let mut c = Config::new(data_dir);
        c.transport = Transport::Memory;
        c.listen = vec!["/memory/0".parse().unwrap_or_else(|_| Multiaddr::empty())];
        c
    }
}
