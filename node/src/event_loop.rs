//! The one task that owns the `Swarm`: driven by [`Command`]s from handles (with oneshot replies),
//! swarm events, results of blocking store work, and timers (outbox retries, route refresh, room
//! sync, burns).

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    allow_block_list,
    gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash},
    identify, kad,
    multiaddr::Protocol,
    noise,
    swarm::SwarmEvent,
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use sha2::{Digest, Sha256};
use tim_protocol::{decode, encode, AccountId, Ack, Action, Code, MessageId, RoomId, RouteRecord, SyncRequest, Via};
use tim_storage::{OutKind, Outgoing};
use tokio::{
    sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore},
    time::{Instant, MissedTickBehavior},
};
use tracing::{debug, info, warn};

use crate::{
    behaviour::{Behaviour, BehaviourEvent, GOSSIP_PROTOCOL, IDENTIFY_PROTOCOL, KAD_PROTOCOL},
    core::{bump, now_ms, Core, Finished, Route, Verdict},
    node::{RoomStatus, Status},
    pipe::{self, Pipe, PipeEvent, DIRECT_PROTOCOL},
    sync::{self, SYNC_PROTOCOL},
    Config, Error, Event, Result,
};

/// Capacity of the channel that brings results of blocking work back to the loop.
const DONE_CAPACITY: usize = 1024;
/// How often due retries are looked at.
const RETRY_TICK: Duration = Duration::from_millis(100);
/// First retry delay; doubles per attempt up to `Config::retry_max`.
const RETRY_BASE: Duration = Duration::from_millis(500);
/// Most cached routes.
const MAX_ROUTES: usize = 10_000;
/// Most room syncs in flight.
const MAX_SYNCS: usize = 64;
/// Items asked for per sync page.
const SYNC_PAGE: u32 = 256;
/// How long listeners may take to report their addresses at start.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping node waits for the last task using its store before it reports stopped
/// anyway (the store then closes when that task ends).
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// A frame on its way to an account's node.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    to: AccountId,
    mid: MessageId,
    frame: Vec<u8>,
    kind: OutKind,
    /// In the store's outbox (survives restarts); relayed frames are not.
    persistent: bool,
    /// Its message was revoked while this copy was in flight: never retry it.
    cancelled: bool,
    queued_at: u64,
    attempts: u32,
}

impl Delivery {
    pub(crate) fn new(to: AccountId, mid: MessageId, frame: Vec<u8>, kind: OutKind, persistent: bool) -> Self {
        Delivery {
            to,
            mid,
            frame,
            kind,
            persistent,
            cancelled: false,
            queued_at: now_ms(),
            attempts: 0,
        }
    }

    fn from_outbox(mid: MessageId, out: Outgoing) -> Self {
        Delivery {
            to: out.to,
            mid,
            frame: out.frame,
            kind: out.kind,
            persistent: true,
            cancelled: false,
            queued_at: out.queued_at,
            attempts: 0,
        }
    }
}

/// What handles ask of the loop.
pub(crate) enum Command {
    /// Deliver a frame to an account's node (route lookup, request, retries).
    Deliver(Delivery),
    /// Publish a frame on a room's topic.
    Publish {
        room: RoomId,
        mid: MessageId,
        frame: Vec<u8>,
    },
    /// Subscribe to a room's topic and catch up.
    Join {
        room: RoomId,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Unsubscribe from a room's topic.
    Leave {
        room: RoomId,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Find the peer serving an account.
    Lookup {
        account: AccountId,
        reply: oneshot::Sender<Result<PeerId>>,
    },
    /// Report status.
    Status { reply: oneshot::Sender<Status> },
    /// Burn a read message at `deadline` (ms since the epoch).
    ScheduleBurn { mid: MessageId, deadline: u64 },
    /// Block or unblock a peer.
    Block { peer: PeerId, blocked: bool },
    /// Drop a queued, not yet sent copy of a message (it was revoked).
    Cancel { mid: MessageId },
    /// Stop the loop.
    Shutdown { reply: oneshot::Sender<()> },
}

/// The command that sends an applied control message where it must go; `None` when it concerns
/// a message to oneself (applied locally, nothing to send). Send [`Command::Cancel`] first for a
/// revoke, so an unsent queued copy of the message is never sent.
pub(crate) fn control_command(mid: MessageId, route: Route, frame: Vec<u8>) -> Option<Command> {
    match route {
        Route::Account(to) => Some(Command::Deliver(Delivery::new(to, mid, frame, OutKind::Control, true))),
        Route::Room(room) => Some(Command::Publish { room, mid, frame }),
        Route::Local => None,
    }
}

/// Results of blocking work, back on the loop.
enum Done {
    /// A gossip message was checked: report the verdict to gossipsub.
    Gossip {
        id: gossipsub::MessageId,
        source: PeerId,
        acceptance: MessageAcceptance,
    },
    /// A burn-after-read timer burned a message: send the burn.
    Burned {
        mid: MessageId,
        result: Result<Option<Command>>,
    },
    /// The cursor to sync `room` from `peer` was read.
    SyncCursor {
        room: RoomId,
        peer: PeerId,
        after: Result<u64>,
    },
    /// Fetching a sync page from `peer` failed.
    SyncFailed { room: RoomId, peer: PeerId, reason: String },
    /// A received sync page was applied.
    SyncApplied {
        room: RoomId,
        peer: PeerId,
        next: Result<(u64, bool)>,
    },
    /// A batch of finished deliveries was written.
    Finished,
}

/// A request in flight on a pipe.
struct Sent {
    peer: PeerId,
    generation: u64,
    delivery: Delivery,
}

/// Checks and stores a gossip item. gossipsub hears `Accept` as soon as the item passed every
/// check that needs no write (so it is forwarded while this node stores it); returns the report
/// still to send, if any (the verdict, or the `Accept` if the loop's queue was full then).
fn check_gossip(
    core: &Core,
    data: &[u8],
    room: &RoomId,
    id: &gossipsub::MessageId,
    source: PeerId,
    done: &mpsc::Sender<Done>,
) -> Option<Done> {
    let report = |acceptance| Done::Gossip {
        id: id.clone(),
        source,
        acceptance,
    };
    let mut reported = false;
    let verdict = core.inbound_early(data, &Via::Room(room.clone()), || {
        reported = done.try_send(report(MessageAcceptance::Accept)).is_ok();
    });
    if reported {
        return None;
    }
    Some(report(match verdict {
        Verdict::Stored => MessageAcceptance::Accept,
        Verdict::Duplicate | Verdict::Ignored(_) => MessageAcceptance::Ignore,
        Verdict::Invalid(_) => MessageAcceptance::Reject,
    }))
}

/// A verified route: which peer serves an account, until when.
#[derive(Debug, Clone)]
struct CachedRoute {
    peer: PeerId,
    expires_at: u64,
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    core: Arc<Core>,
    cmd_rx: mpsc::Receiver<Command>,
    done_tx: mpsc::Sender<Done>,
    done_rx: mpsc::Receiver<Done>,
    /// Bounds blocking inbound work; at shutdown, waiting for all permits waits for that work.
    inflight: Arc<Semaphore>,
    max_inflight: u32,
    routes: HashMap<AccountId, CachedRoute>,
    /// The peer that last served each account, kept after the route goes stale, so a reconnect
    /// of that peer retries its deliveries at once.
    last_peer: HashMap<AccountId, PeerId>,
    /// Route lookups in flight.
    lookups: HashMap<kad::QueryId, AccountId>,
    lookup_waiters: HashMap<AccountId, Vec<oneshot::Sender<Result<PeerId>>>>,
    /// Deliveries waiting for a route lookup.
    waiting: HashMap<AccountId, Vec<Delivery>>,
    /// Direct delivery: the streams to peers, their generations, and what they carry.
    control: libp2p_stream::Control,
    pipes: HashMap<PeerId, Pipe>,
    pipe_generation: u64,
    pipe_tx: mpsc::Sender<PipeEvent>,
    pipe_rx: mpsc::Receiver<PipeEvent>,
    /// Serves inbound pipes; aborted at shutdown.
    acceptor: tokio::task::JoinHandle<()>,
    /// Serves inbound room sync exchanges; aborted at shutdown.
    sync_server: tokio::task::JoinHandle<()>,
    /// Requests in flight, by id; and their deadlines in sending order (one timeout for all).
    requests: HashMap<u64, Sent>,
    deadlines: VecDeque<(Instant, u64)>,
    next_request: u64,
    request_timeout: Duration,
    pipe_idle: Duration,
    /// Deliveries waiting for their retry time.
    retries: BTreeMap<(Instant, u64), Delivery>,
    retry_seq: u64,
    /// Relayed (non-persistent) deliveries pending.
    relays: usize,
    /// Finished deliveries waiting to be written; one batch is written at a time, so under load
    /// acknowledgements arriving together cost one blocking hop and one write.
    finished: Vec<Finished>,
    finishing: bool,
    /// Room syncs in flight.
    syncing: HashSet<(RoomId, PeerId)>,
    /// Turns of the periodic sync (which member each room syncs with next).
    sync_turn: usize,
    /// Burn-after-read timers.
    burns: BTreeMap<(Instant, MessageId), ()>,
    route_published: bool,
    route_ttl: Duration,
    route_refresh: Duration,
    retry_max: Duration,
    retention: Duration,
    sync_interval: Duration,
    max_relays: usize,
}

fn route_key(account: &AccountId) -> kad::RecordKey {
    kad::RecordKey::new(&format!("/tim/route/{account}"))
}

fn topic(room: &RoomId) -> IdentTopic {
    IdentTopic::new(format!("tim/room/{room}"))
}

fn room_of(topic: &TopicHash) -> Option<RoomId> {
    topic
        .as_str()
        .strip_prefix("tim/room/")
        .and_then(|r| RoomId::new(r).ok())
}

/// The tokio instant of a wall-clock deadline (ms since the epoch).
fn instant_of(deadline: u64) -> Instant {
    Instant::now() + Duration::from_millis(deadline.saturating_sub(now_ms()))
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
        .heartbeat_interval(Duration::from_millis(500));
    builder
}

fn build_swarm(key: libp2p::identity::Keypair, config: &Config) -> Result<Swarm<Behaviour>> {
    let net = |e: &dyn std::fmt::Display| Error::Network(e.to_string());
    let refresh = config.route_refresh;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| net(&e))?
        .with_quic()
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let identify = identify::Behaviour::new(identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public()));
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
            kad_config.set_query_timeout(Duration::from_secs(30));
            kad_config.set_periodic_bootstrap_interval(Some(refresh));
            let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
            kad.set_mode(Some(kad::Mode::Server));
            let gossip_config = gossipsub_config_builder().validate_messages().build()?;
            let gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_config)?;
            let direct = libp2p_stream::Behaviour::new();
            Ok(Behaviour {
                blocked: allow_block_list::Behaviour::default(),
                identify,
                kad,
                gossipsub,
                direct,
            })
        })
        .map_err(|e| net(&e))?
        .with_swarm_config(|c| {
            // Every tim node speaks every tim protocol, so a stream's first data goes out with its
            // protocol proposal (multistream-select V1Lazy): one round trip less per direct message.
            c.with_idle_connection_timeout(config.idle_connection_timeout)
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build();
    Ok(swarm)
}

impl EventLoop {
    pub(crate) async fn new(
        key: libp2p::identity::Keypair,
        config: &Config,
        core: Arc<Core>,
        cmd_rx: mpsc::Receiver<Command>,
        rooms: &[RoomId],
        burns: &[(u64, MessageId)],
        outbox: Vec<(MessageId, Outgoing)>,
    ) -> Result<Self> {
        let mut swarm = build_swarm(key, config)?;
        let mut listeners = Vec::new();
        for addr in &config.listen {
            listeners.push(
                swarm
                    .listen_on(addr.clone())
                    .map_err(|e| Error::Network(format!("listen on {addr}: {e}")))?,
            );
        }
        // Wait until every listener has an address, so `status` can print them right away.
        let mut pending: HashSet<_> = listeners.into_iter().collect();
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while !pending.is_empty() {
            match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
                Ok(SwarmEvent::NewListenAddr { listener_id, address }) => {
                    info!(%address, "listening");
                    pending.remove(&listener_id);
                }
                Ok(SwarmEvent::ListenerError { error, .. })
                | Ok(SwarmEvent::ListenerClosed { reason: Err(error), .. }) => {
                    return Err(Error::Network(format!("listener failed: {error}")));
                }
                Ok(_) => {}
                Err(_) => return Err(Error::Network("listeners did not start in time".into())),
            }
        }
        for addr in &config.bootstrap {
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                return Err(Error::BadParameters(format!(
                    "bootstrap address {addr} must end in /p2p/<peer id>"
                )));
            };
            let mut bare = addr.clone();
            bare.pop();
            swarm.behaviour_mut().kad.add_address(&peer, bare);
            if let Err(e) = swarm.dial(addr.clone()) {
                warn!(%addr, error = %e, "could not dial bootstrap peer");
            }
        }
        if !config.bootstrap.is_empty() {
            let _ = swarm.behaviour_mut().kad.bootstrap();
        }
        for room in rooms {
            if let Err(e) = swarm.behaviour_mut().gossipsub.subscribe(&topic(room)) {
                warn!(%room, error = %e, "could not rejoin room");
            }
        }
        let (done_tx, done_rx) = mpsc::channel(DONE_CAPACITY);
        let (pipe_tx, pipe_rx) = mpsc::channel(DONE_CAPACITY);
        let max_inflight = config.max_inbound_in_flight.clamp(1, 1 << 16) as u32;
        let inflight = Arc::new(Semaphore::new(max_inflight as usize));
        let mut control = swarm.behaviour().direct.new_control();
        let incoming = control
            .accept(DIRECT_PROTOCOL)
            .map_err(|e| Error::Network(e.to_string()))?;
        let acceptor = pipe::accept(incoming, core.clone(), inflight.clone());
        let sync_incoming = control
            .accept(SYNC_PROTOCOL)
            .map_err(|e| Error::Network(e.to_string()))?;
        let sync_server = sync::serve(sync_incoming, core.clone(), inflight.clone(), config.request_timeout);
        let mut this = EventLoop {
            swarm,
            core,
            cmd_rx,
            done_tx,
            done_rx,
            inflight,
            max_inflight,
            routes: HashMap::new(),
            last_peer: HashMap::new(),
            lookups: HashMap::new(),
            lookup_waiters: HashMap::new(),
            waiting: HashMap::new(),
            control,
            pipes: HashMap::new(),
            pipe_generation: 0,
            pipe_tx,
            pipe_rx,
            acceptor,
            sync_server,
            requests: HashMap::new(),
            deadlines: VecDeque::new(),
            next_request: 0,
            request_timeout: config.request_timeout,
            pipe_idle: config.idle_connection_timeout,
            retries: BTreeMap::new(),
            retry_seq: 0,
            relays: 0,
            finished: Vec::new(),
            finishing: false,
            syncing: HashSet::new(),
            sync_turn: 0,
            burns: BTreeMap::new(),
            route_published: false,
            route_ttl: config.route_ttl,
            route_refresh: config.route_refresh,
            retry_max: config.retry_max.max(RETRY_BASE),
            retention: config.outbox_retention,
            sync_interval: config.room_sync_interval.max(Duration::from_millis(100)),
            max_relays: config.max_pending_relays,
        };
        for (deadline, mid) in burns {
            this.burns.insert((instant_of(*deadline), *mid), ());
        }
        if !outbox.is_empty() {
            info!(entries = outbox.len(), "resuming the outbox");
        }
        for (mid, out) in outbox {
            this.schedule(Instant::now(), Delivery::from_outbox(mid, out));
        }
        this.publish_route();
        Ok(this)
    }

    /// Runs until a shutdown command or the last handle is gone; `closed` resolves once the
    /// store has closed (see `Core::_closed`).
    pub(crate) async fn run(mut self, closed: oneshot::Receiver<()>) {
        let mut retry_tick = tokio::time::interval(RETRY_TICK);
        retry_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut refresh = tokio::time::interval_at(Instant::now() + self.route_refresh, self.route_refresh);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sync_tick = tokio::time::interval_at(Instant::now() + self.sync_interval, self.sync_interval);
        sync_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut shutdown_reply = None;
        loop {
            let next_burn = self.burns.keys().next().map(|(at, _)| *at);
            tokio::select! {
                biased;
                command = self.cmd_rx.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        shutdown_reply = Some(reply);
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => break,
                },
                Some(done) = self.done_rx.recv() => self.on_done(done),
                Some(event) = self.pipe_rx.recv() => self.on_pipe(event),
                event = self.swarm.select_next_some() => self.on_swarm(event),
                _ = retry_tick.tick() => self.run_retries(),
                _ = refresh.tick() => self.publish_route(),
                _ = sync_tick.tick() => self.sync_all(),
                _ = tokio::time::sleep_until(next_burn.unwrap_or_else(Instant::now)), if next_burn.is_some() => {
                    self.fire_burns()
                }
            }
        }
        info!("node stopping");
        self.acceptor.abort();
        self.sync_server.abort();
        // Write every finished delivery before the store goes quiet.
        while self.finishing {
            match self.done_rx.recv().await {
                Some(Done::Finished) | None => self.finishing = false,
                Some(_) => {}
            }
        }
        if !self.finished.is_empty() {
            let (core, batch) = (self.core.clone(), std::mem::take(&mut self.finished));
            let _ = tokio::task::spawn_blocking(move || core.deliveries_done(&batch)).await;
        }
        // Wait for blocking store work to finish, then drop the swarm (ending every connection,
        // so pipe tasks end) and everything else holding the core; the store closes when the last
        // task holding it ends. Handles hold it only for the length of a call.
        let _ = self.inflight.acquire_many(self.max_inflight).await;
        drop(self);
        if tokio::time::timeout(CLOSE_WAIT, closed).await.is_err() {
            warn!("the store is still in use {CLOSE_WAIT:?} after stopping; it closes when that work ends");
        }
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Deliver(delivery) => {
                if !delivery.persistent {
                    if self.relays >= self.max_relays {
                        self.give_up(delivery, Code::Overloaded);
                        return;
                    }
                    self.relays += 1;
                }
                self.deliver(delivery)
            }
            Command::Publish { room, mid, frame } => self.publish(&room, mid, frame),
            Command::Join { room, reply } => {
                let result = self.swarm.behaviour_mut().gossipsub.subscribe(&topic(&room));
                let _ = reply.send(result.map(|_| ()).map_err(|e| Error::Network(e.to_string())));
                self.sync_room(&room);
            }
            Command::Leave { room, reply } => {
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic(&room));
                let _ = reply.send(Ok(()));
            }
            Command::Lookup { account, reply } => {
                if account == self.core.account {
                    let _ = reply.send(Ok(self.core.peer_id));
                } else if let Some(route) = self.fresh_route(&account) {
                    let _ = reply.send(Ok(route));
                } else {
                    self.lookup_waiters.entry(account).or_default().push(reply);
                    self.start_lookup(account);
                }
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::ScheduleBurn { mid, deadline } => {
                self.burns.insert((instant_of(deadline), mid), ());
            }
            Command::Block { peer, blocked } => {
                let list = &mut self.swarm.behaviour_mut().blocked;
                if blocked {
                    list.block_peer(peer);
                } else {
                    list.unblock_peer(peer);
                }
            }
            Command::Cancel { mid } => self.cancel(mid),
            Command::Shutdown { .. } => {}
        }
    }

    /// Forgets queued deliveries of message `mid` (its outbox entry went with its tombstone).
    /// A request already in flight cannot be recalled; the revoke that follows wins there.
    fn cancel(&mut self, mid: MessageId) {
        let is_it = |d: &Delivery| d.mid == mid && d.kind == OutKind::Message;
        self.retries.retain(|_, d| !is_it(d));
        for list in self.waiting.values_mut() {
            list.retain(|d| !is_it(d));
        }
        for sent in self.requests.values_mut() {
            if is_it(&sent.delivery) {
                sent.delivery.cancelled = true;
            }
        }
    }

    fn status(&self) -> Status {
        let me = self.core.peer_id;
        let listen_addrs = self
            .swarm
            .listeners()
            .map(|a| a.clone().with(Protocol::P2p(me)))
            .collect();
        let gossip = &self.swarm.behaviour().gossipsub;
        let rooms = gossip
            .topics()
            .filter_map(room_of)
            .map(|room| {
                let hash = topic(&room).hash();
                let peers = gossip.all_peers().filter(|(_, topics)| topics.contains(&&hash)).count();
                RoomStatus { room, peers }
            })
            .collect();
        Status {
            account: self.core.account,
            peer_id: me,
            listen_addrs,
            peers: self.swarm.connected_peers().count(),
            rooms,
        }
    }

    // ---- outbound: rooms ----

    fn publish(&mut self, room: &RoomId, mid: MessageId, frame: Vec<u8>) {
        match self.swarm.behaviour_mut().gossipsub.publish(topic(room), frame) {
            Ok(_) => debug!(%room, %mid, "published"),
            Err(gossipsub::PublishError::Duplicate) => debug!(%room, %mid, "already published"),
            Err(e) => debug!(%room, %mid, error = %e, "not published now; members catch up by sync"),
        }
    }

    // ---- room sync ----

    /// The connected peers subscribed to `room`, in a stable order.
    fn room_peers(&self, room: &RoomId) -> Vec<PeerId> {
        let hash = topic(room).hash();
        let mut peers: Vec<PeerId> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&hash))
            .map(|(p, _)| *p)
            .collect();
        peers.sort();
        peers
    }

    /// Syncs `room` with every connected peer subscribed to it (on joining).
    fn sync_room(&mut self, room: &RoomId) {
        for peer in self.room_peers(room) {
            self.start_sync(room.clone(), peer);
        }
    }

    /// The periodic safety net: each joined room syncs with one of its connected members, a
    /// different one each time (round robin). Syncing with all of them every interval would make
    /// every member re-send the room's whole traffic to every other member; a member that
    /// (re)connects is synced with at once anyway (its subscription is seen).
    fn sync_all(&mut self) {
        let rooms: Vec<RoomId> = self.swarm.behaviour().gossipsub.topics().filter_map(room_of).collect();
        self.sync_turn = self.sync_turn.wrapping_add(1);
        for room in rooms {
            let peers = self.room_peers(&room);
            if !peers.is_empty() {
                let peer = peers[self.sync_turn % peers.len()];
                self.start_sync(room, peer);
            }
        }
    }

    fn start_sync(&mut self, room: RoomId, peer: PeerId) {
        if self.syncing.len() >= MAX_SYNCS || !self.syncing.insert((room.clone(), peer)) {
            return;
        }
        let (core, done) = (self.core.clone(), self.done_tx.clone());
        tokio::task::spawn_blocking(move || {
            let after = core.store.sync_cursor(&room, &peer.to_bytes()).map_err(Error::from);
            let _ = done.blocking_send(Done::SyncCursor { room, peer, after });
        });
    }

    /// Fetches the page of `room` after `after` from `peer` and applies it, in a task of its own.
    fn request_page(&mut self, room: RoomId, peer: PeerId, after: u64) {
        let request = SyncRequest {
            room: room.clone(),
            after,
            limit: SYNC_PAGE,
        };
        let (control, core, done) = (self.control.clone(), self.core.clone(), self.done_tx.clone());
        let timeout = self.request_timeout;
        tokio::spawn(async move {
            let report = match sync::fetch(control, peer, request, timeout).await {
                Ok(page) => {
                    let at = room.clone();
                    let applied = tokio::task::spawn_blocking(move || {
                        core.apply_sync(&at, &peer.to_bytes(), &page)
                            .map(|()| (page.next, page.more))
                    })
                    .await;
                    match applied {
                        Ok(next) => Done::SyncApplied { room, peer, next },
                        Err(e) => Done::SyncFailed {
                            room,
                            peer,
                            reason: format!("applying the page failed: {e}"),
                        },
                    }
                }
                Err(reason) => Done::SyncFailed { room, peer, reason },
            };
            let _ = done.send(report).await;
        });
    }

    // ---- outbound: direct ----

    fn deliver(&mut self, delivery: Delivery) {
        if delivery.to == self.core.account {
            // A message to oneself is stored once, locally; it is delivered as soon as it is sent.
            self.finish(delivery, true);
            return;
        }
        match self.fresh_route(&delivery.to) {
            Some(peer) => self.send_request(peer, delivery),
            None => {
                let to = delivery.to;
                debug!(mid = %delivery.mid, %to, "waiting for a route");
                self.waiting.entry(to).or_default().push(delivery);
                self.start_lookup(to);
            }
        }
    }

    fn send_request(&mut self, peer: PeerId, delivery: Delivery) {
        let id = self.next_request;
        self.next_request += 1;
        let pipe = match self.pipes.entry(peer) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                self.pipe_generation += 1;
                debug!(%peer, generation = self.pipe_generation, "opening a pipe");
                e.insert(Pipe::open(
                    self.control.clone(),
                    self.core.clone(),
                    peer,
                    self.pipe_generation,
                    self.pipe_tx.clone(),
                    self.request_timeout,
                ))
            }
        };
        let finishes = delivery.persistent.then_some(Finished {
            mid: delivery.mid,
            kind: delivery.kind,
            to: delivery.to,
            delivered: true,
        });
        pipe.send(id, delivery.frame.clone(), finishes);
        pipe.in_flight += 1;
        pipe.last_used = Instant::now();
        let generation = pipe.generation;
        debug!(mid = %delivery.mid, to = %delivery.to, %peer, request = id, "direct request sent");
        self.requests.insert(
            id,
            Sent {
                peer,
                generation,
                delivery,
            },
        );
        self.deadlines.push_back((Instant::now() + self.request_timeout, id));
    }

    fn on_pipe(&mut self, event: PipeEvent) {
        match event {
            PipeEvent::Answer { id, ack, finished } => self.on_response(id, ack, finished),
            PipeEvent::Closed {
                peer,
                generation,
                reason,
            } => self.close_pipe(peer, generation, &reason),
        }
    }

    /// Closes pipe `generation` to `peer` (if it is still the current one) and fails every request
    /// it carried: they are retried later.
    fn close_pipe(&mut self, peer: PeerId, generation: u64, reason: &str) {
        if self.pipes.get(&peer).is_some_and(|p| p.generation == generation) {
            self.pipes.remove(&peer);
        }
        let failed: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, s)| s.peer == peer && s.generation == generation)
            .map(|(id, _)| *id)
            .collect();
        debug!(%peer, generation, reason, failed = failed.len(), "pipe closed");
        for id in failed {
            if let Some(sent) = self.requests.remove(&id) {
                self.on_failure(sent);
            }
        }
    }

    /// Fails requests past the timeout (closing their pipes: a pipe that stalls one request stalls
    /// the ones behind it) and closes pipes idle for the idle-connection timeout.
    fn expire_requests(&mut self) {
        let now = Instant::now();
        let mut stalled = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(sent) = self.requests.get(&id) {
                stalled.push((sent.peer, sent.generation));
            }
        }
        stalled.dedup();
        for (peer, generation) in stalled {
            self.close_pipe(peer, generation, "request timed out");
        }
        let idle = self.pipe_idle;
        self.pipes
            .retain(|_, p| p.in_flight > 0 || now.duration_since(p.last_used) < idle);
    }

    fn schedule(&mut self, at: Instant, delivery: Delivery) {
        self.retry_seq += 1;
        self.retries.insert((at, self.retry_seq), delivery);
    }

    fn retry_later(&mut self, mut delivery: Delivery) {
        if now_ms().saturating_sub(delivery.queued_at) > self.retention.as_millis() as u64 {
            info!(mid = %delivery.mid, to = %delivery.to, "outbox entry expired undelivered; dropped");
            self.give_up(delivery, Code::Expired);
            return;
        }
        delivery.attempts = delivery.attempts.saturating_add(1);
        let backoff = RETRY_BASE
            .saturating_mul(1u32 << (delivery.attempts - 1).min(16))
            .min(self.retry_max);
        debug!(mid = %delivery.mid, to = %delivery.to, attempt = delivery.attempts, ?backoff, "delivery will be retried");
        self.schedule(Instant::now() + backoff, delivery);
    }

    /// Retries at once every delivery waiting for `pred`'s recipients.
    fn retry_now(&mut self, pred: impl Fn(&AccountId) -> bool) {
        let now = Instant::now();
        let due: Vec<_> = self.retries.keys().filter(|(at, _)| *at > now).copied().collect();
        for key in due {
            if self.retries.get(&key).is_some_and(|d| pred(&d.to)) {
                if let Some(d) = self.retries.remove(&key) {
                    self.schedule(now, d);
                }
            }
        }
    }

    /// The delivery is over: acknowledged (`delivered`) or given up.
    fn finish(&mut self, delivery: Delivery, delivered: bool) {
        if !delivery.persistent {
            self.relays = self.relays.saturating_sub(1);
            return;
        }
        self.finished.push(Finished {
            mid: delivery.mid,
            kind: delivery.kind,
            to: delivery.to,
            delivered,
        });
        self.write_finished();
    }

    fn write_finished(&mut self) {
        if self.finishing || self.finished.is_empty() {
            return;
        }
        self.finishing = true;
        let batch = std::mem::take(&mut self.finished);
        let (core, done) = (self.core.clone(), self.done_tx.clone());
        tokio::task::spawn_blocking(move || {
            core.deliveries_done(&batch);
            let _ = done.blocking_send(Done::Finished);
        });
    }

    fn give_up(&mut self, delivery: Delivery, code: Code) {
        bump(&self.core.counters.delivery_failures);
        warn!(mid = %delivery.mid, to = %delivery.to, %code, "delivery given up");
        self.core.emit(Event::DeliveryFailed {
            mid: delivery.mid,
            to: delivery.to,
            code,
        });
        self.finish(delivery, false);
    }

    fn run_retries(&mut self) {
        self.expire_requests();
        let now = Instant::now();
        while let Some(entry) = self.retries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let delivery = entry.remove();
            self.deliver(delivery);
        }
    }

    fn on_response(&mut self, request_id: u64, ack: Ack, finished: bool) {
        let Some(Sent {
            peer,
            generation,
            delivery,
        }) = self.requests.remove(&request_id)
        else {
            return;
        };
        if let Some(pipe) = self.pipes.get_mut(&peer).filter(|p| p.generation == generation) {
            pipe.in_flight = pipe.in_flight.saturating_sub(1);
            pipe.last_used = Instant::now();
        }
        debug!(mid = %delivery.mid, ?ack, "direct request answered");
        match ack {
            Ack::Stored | Ack::Duplicate if finished => {}
            Ack::Stored | Ack::Duplicate => self.finish(delivery, true),
            Ack::Refused { code } if code == Code::Tombstoned.number() => {
                debug!(mid = %delivery.mid, "recipient already has a tombstone for it");
                self.finish(delivery, false);
            }
            Ack::Refused { code } => {
                let code = Code::from_number(code).unwrap_or(Code::Malformed);
                if matches!(code, Code::Overloaded | Code::StorageFailure) {
                    self.retry_later(delivery);
                } else {
                    self.give_up(delivery, code);
                }
            }
        }
    }

    fn on_failure(&mut self, sent: Sent) {
        let Sent { peer, delivery, .. } = sent;
        debug!(%peer, mid = %delivery.mid, "direct request failed");
        if delivery.cancelled {
            return;
        }
        if self.routes.get(&delivery.to).is_some_and(|r| r.peer == peer) {
            self.routes.remove(&delivery.to);
        }
        self.retry_later(delivery);
    }

    // ---- routes ----

    fn fresh_route(&self, account: &AccountId) -> Option<PeerId> {
        self.routes
            .get(account)
            .filter(|r| r.expires_at > now_ms())
            .map(|r| r.peer)
    }

    fn start_lookup(&mut self, account: AccountId) {
        if self.lookups.values().any(|a| *a == account) {
            return;
        }
        let id = self.swarm.behaviour_mut().kad.get_record(route_key(&account));
        self.lookups.insert(id, account);
    }

    fn publish_route(&mut self) {
        let me = self.core.peer_id;
        let addrs: Vec<Vec<u8>> = self
            .swarm
            .listeners()
            .chain(self.swarm.external_addresses())
            .filter(|a| !a.iter().any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())))
            .take(tim_protocol::MAX_ROUTE_ADDRS)
            .map(|a| a.to_vec())
            .collect();
        let expires_at = now_ms().saturating_add(self.route_ttl.as_millis() as u64);
        let record = match RouteRecord::sign(&self.core.key, me.to_bytes(), addrs, expires_at).and_then(|r| encode(&r))
        {
            Ok(value) => kad::Record {
                key: route_key(&self.core.account),
                value,
                publisher: None,
                expires: Some(std::time::Instant::now() + self.route_ttl),
            },
            Err(e) => {
                warn!(error = %e, "could not sign route record");
                return;
            }
        };
        if let Err(e) = self.swarm.behaviour_mut().kad.put_record(record, kad::Quorum::One) {
            warn!(error = %e, "could not store route record");
        }
    }

    /// Verifies a route record found for `account`; returns the peer and its addresses.
    fn check_route(record: &kad::Record, account: &AccountId) -> Result<(PeerId, u64, Vec<Multiaddr>)> {
        let route: RouteRecord = decode(&record.value)?;
        if route.account != *account || record.key != route_key(account) {
            return Err(Error::BadParameters("route record for another account".into()));
        }
        route.verify(now_ms())?;
        let peer = PeerId::from_bytes(&route.peer).map_err(|e| Error::BadParameters(e.to_string()))?;
        let addrs = route
            .addrs
            .into_iter()
            .filter_map(|a| Multiaddr::try_from(a).ok())
            .collect();
        Ok((peer, route.expires_at, addrs))
    }

    fn route_found(&mut self, account: AccountId, peer: PeerId, expires_at: u64, addrs: Vec<Multiaddr>) {
        for addr in addrs {
            self.swarm.add_peer_address(peer, addr);
        }
        if self.routes.len() >= MAX_ROUTES {
            let now = now_ms();
            self.routes.retain(|_, r| r.expires_at > now);
            if self.routes.len() >= MAX_ROUTES {
                self.routes.clear();
            }
        }
        if self.last_peer.len() >= MAX_ROUTES {
            self.last_peer.clear();
        }
        self.routes.insert(account, CachedRoute { peer, expires_at });
        self.last_peer.insert(account, peer);
        for waiter in self.lookup_waiters.remove(&account).unwrap_or_default() {
            let _ = waiter.send(Ok(peer));
        }
        for delivery in self.waiting.remove(&account).unwrap_or_default() {
            self.send_request(peer, delivery);
        }
    }

    fn route_failed(&mut self, account: AccountId) {
        debug!(%account, "no route found");
        for waiter in self.lookup_waiters.remove(&account).unwrap_or_default() {
            let _ = waiter.send(Err(Error::Unreachable(account)));
        }
        for delivery in self.waiting.remove(&account).unwrap_or_default() {
            self.retry_later(delivery);
        }
    }

    // ---- inbound ----

    fn permit(&self) -> Option<OwnedSemaphorePermit> {
        self.inflight.clone().try_acquire_owned().ok()
    }

    fn on_gossip(&mut self, id: gossipsub::MessageId, source: PeerId, message: gossipsub::Message) {
        let room = room_of(&message.topic);
        let (Some(room), Some(permit)) = (room.clone(), self.permit()) else {
            let acceptance = if room.is_none() {
                MessageAcceptance::Reject
            } else {
                MessageAcceptance::Ignore
            };
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &source, acceptance);
            return;
        };
        // Checked in a task of its own: in place when the node's inline slot is free (no thread
        // hand-off on the way to the verdict), else on the blocking pool.
        let (core, done) = (self.core.clone(), self.done_tx.clone());
        tokio::spawn(async move {
            let data = message.data;
            let report = match core
                .inline
                .try_run(|| check_gossip(&core, &data, &room, &id, source, &done))
            {
                Some(report) => report,
                None => {
                    let done = done.clone();
                    let job = move || check_gossip(&core, &data, &room, &id, source, &done);
                    match tokio::task::spawn_blocking(job).await {
                        Ok(report) => report,
                        Err(e) => {
                            warn!(error = %e, "gossip check failed");
                            None
                        }
                    }
                }
            };
            if let Some(report) = report {
                let _ = done.send(report).await;
            }
            drop(permit);
        });
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Gossip { id, source, acceptance } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &source, acceptance);
            }
            Done::Burned { mid, result } => match result {
                Ok(Some(command)) => self.on_command(command),
                Ok(None) => {}
                Err(e) => debug!(%mid, error = %e, "burn after reading did not apply"),
            },
            Done::SyncFailed { room, peer, reason } => {
                debug!(%room, %peer, %reason, "sync request failed");
                self.syncing.remove(&(room, peer));
            }
            Done::SyncCursor { room, peer, after } => match after {
                Ok(after) => self.request_page(room, peer, after),
                Err(e) => {
                    warn!(%room, error = %e, "could not read the sync cursor");
                    self.syncing.remove(&(room, peer));
                }
            },
            Done::Finished => {
                self.finishing = false;
                self.write_finished();
            }
            Done::SyncApplied { room, peer, next } => match next {
                Ok((next, true)) => self.request_page(room, peer, next),
                Ok((_, false)) => {
                    debug!(%room, %peer, "room synced");
                    self.syncing.remove(&(room, peer));
                }
                Err(e) => {
                    warn!(%room, %peer, error = %e, "could not apply a sync page");
                    self.syncing.remove(&(room, peer));
                }
            },
        }
    }

    fn fire_burns(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.burns.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, mid), ()) = entry.remove_entry();
            let (core, done) = (self.core.clone(), self.done_tx.clone());
            tokio::task::spawn_blocking(move || {
                let result = core
                    .local_control(Action::Burn, mid)
                    .map(|(_, route, frame)| control_command(mid, route, frame));
                let _ = done.blocking_send(Done::Burned { mid, result });
            });
        }
    }

    // ---- swarm events ----

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Direct(())) => {}
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(message_id, propagation_source, message),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic })) => {
                // A member connected or joined: catch up with it.
                let joined = self.swarm.behaviour().gossipsub.topics().any(|t| *t == topic);
                if let (true, Some(room)) = (joined, room_of(&topic)) {
                    self.start_sync(room, peer_id);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                if info.protocols.contains(&KAD_PROTOCOL) {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                if num_established.get() == 1 {
                    self.core.emit(Event::PeerConnected { peer: peer_id });
                    // The node of some waiting recipient is back: retry its deliveries now.
                    let accounts: HashSet<AccountId> = self
                        .last_peer
                        .iter()
                        .filter(|(_, p)| **p == peer_id)
                        .map(|(a, _)| *a)
                        .collect();
                    if !accounts.is_empty() {
                        self.retry_now(|a| accounts.contains(a));
                    }
                }
                if !self.route_published {
                    self.publish_route();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.core.emit(Event::PeerDisconnected { peer: peer_id });
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.publish_route();
            }
            other => debug!(event = ?other, "swarm event"),
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed { id, result, step, .. } => match result {
                kad::QueryResult::GetRecord(result) => {
                    let Some(account) = self.lookups.get(&id).copied() else {
                        return;
                    };
                    if let Ok(kad::GetRecordOk::FoundRecord(found)) = &result {
                        match Self::check_route(&found.record, &account) {
                            Ok((peer, expires_at, addrs)) => {
                                self.lookups.remove(&id);
                                if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                                    query.finish();
                                }
                                self.route_found(account, peer, expires_at, addrs);
                                return;
                            }
                            Err(e) => {
                                bump(&self.core.counters.forged_rejected);
                                warn!(%account, error = %e, "ignored an invalid route record");
                            }
                        }
                    }
                    if step.last || result.is_err() {
                        self.lookups.remove(&id);
                        self.route_failed(account);
                    }
                }
                kad::QueryResult::PutRecord(Ok(_)) => {
                    if !self.route_published {
                        info!("route record published");
                    }
                    self.route_published = true;
                }
                kad::QueryResult::PutRecord(Err(e)) => {
                    debug!(error = %e, "route record not yet replicated; will retry");
                }
                kad::QueryResult::Bootstrap(Ok(_)) if step.last && !self.route_published => {
                    self.publish_route();
                }
                _ => {}
            },
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        record: Some(record),
                        source,
                        ..
                    },
            } => self.on_put_record(source, record),
            _ => {}
        }
    }

    /// Stores a route record another node asks us to keep, only if it verifies. A fresh record
    /// means its account is reachable: retry what waits for it.
    fn on_put_record(&mut self, source: PeerId, record: kad::Record) {
        let account = std::str::from_utf8(record.key.as_ref())
            .ok()
            .and_then(|k| k.strip_prefix("/tim/route/"))
            .and_then(|a| a.parse::<AccountId>().ok());
        let checked = account
            .ok_or_else(|| Error::BadParameters("not a route key".into()))
            .and_then(|a| Self::check_route(&record, &a).map(|route| (a, route)));
        match checked {
            Ok((account, (peer, expires_at, addrs))) => {
                use kad::store::RecordStore;
                if let Err(e) = self.swarm.behaviour_mut().kad.store_mut().put(record) {
                    warn!(error = %e, "could not keep route record");
                }
                let waiting = self.retries.values().any(|d| d.to == account);
                if waiting {
                    self.route_found(account, peer, expires_at, addrs);
                    self.retry_now(|a| *a == account);
                }
            }
            Err(e) => {
                bump(&self.core.counters.forged_rejected);
                warn!(%source, error = %e, "refused an invalid route record");
            }
        }
    }
}
