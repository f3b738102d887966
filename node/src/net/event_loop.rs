//! The one task that owns the `Swarm`. It is driven by [`Command`]s from handles (with oneshot
//! replies), swarm events, pipe events, reports of work done in other tasks, and timers: the
//! delivery state machine's timeout, route refresh, the periodic room sync, burns, and the
//! network tick (connection manager, room discovery).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use libp2p::{gossipsub::MessageAcceptance, kad, multiaddr::Protocol, swarm::SwarmEvent, PeerId, Swarm};
use tim_protocol::{AccountId, MessageId, RoomId};
use tim_storage::Outgoing;
use tokio::{
    sync::{mpsc, oneshot, Semaphore},
    time::Instant,
};
use tracing::{info, warn};

use super::{
    accept::SharedPeerBook,
    budget::Limits,
    connections::{self, Connections},
    deadline::Timeouts,
    discovery::Discovery,
    pipe::{self, Pipe, PipeEvent, DIRECT_PROTOCOL, MAX_PIPES_PER_PEER},
    quiesce,
    reachability::{ReachabilityState, RelaySettings},
    relay::Links,
    room_discovery::{self, Query},
    room_sync::{SyncProgress, MAX_PAGES_APPLYING},
    rooms,
    routing::{self, RouteDials},
    swarm::{build_swarm, Behaviour},
    sync_exchange::{self, SYNC_PROTOCOL},
    ticks::{Periods, Tick, Ticks},
};
use crate::{
    command::Command,
    core::{now_ms, Core, RoomWork},
    delivery::{Deliveries, Delivery, Now, Output, Settings},
    Config, Error, Result, Transport,
};

/// Capacity of the channels that bring reports of other tasks and pipe events to the loop.
const REPORT_CAPACITY: usize = 1024;
/// How long listeners may take to report their addresses at start.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping node waits for the last task using its store before it reports stopped
/// anyway (the store then closes when that task ends).
const CLOSE_WAIT: Duration = Duration::from_secs(30);
/// How often reachability is re-decided (relay back-offs ending, the undecided period ending).
const REACHABILITY_TICK: Duration = Duration::from_secs(5);
/// With no AutoNAT verdict after this long, a node acts as private and seeks relays.
const UNDECIDED_AFTER: Duration = Duration::from_secs(30);
/// How often the connection manager and room discovery look at the state of things.
const NET_TICK: Duration = Duration::from_secs(1);

/// What other tasks report back to the loop.
pub(super) enum TaskReport {
    /// A gossip message was checked: report the verdict to gossipsub.
    Gossip {
        id: libp2p::gossipsub::MessageId,
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
    /// A batch of delivery outcomes was written.
    OutcomesWritten,
    /// A new seal key was made: republish the route record, which carries it.
    SealKeyRotated,
}

pub(crate) struct EventLoop {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) core: Arc<Core>,
    cmd_rx: mpsc::Receiver<Command>,
    /// Deliveries queued by inbound work: deletion receipts and contact answers
    /// (`Core::replies_out`).
    replies_rx: mpsc::Receiver<Delivery>,
    /// Room work asked by inbound work (`Core::room_work`).
    room_work_rx: mpsc::Receiver<RoomWork>,
    pub(super) reports_tx: mpsc::Sender<TaskReport>,
    reports_rx: mpsc::Receiver<TaskReport>,
    /// Bounds inbound work in other tasks; at shutdown, waiting for all permits waits for it.
    pub(super) inflight: Arc<Semaphore>,
    max_inflight: u32,
    /// Direct delivery: what is in flight, waiting and retried, and which pipes exist.
    pub(super) deliveries: Deliveries,
    /// The tasks of the outbound pipes `deliveries` opened, and the channel of their events.
    pub(super) pipes: HashMap<PeerId, Pipe>,
    pub(super) pipe_tx: mpsc::Sender<PipeEvent>,
    pipe_rx: mpsc::Receiver<PipeEvent>,
    /// Opens outbound streams (pipes, sync exchanges).
    pub(super) streams: libp2p_stream::Control,
    /// Route lookups in flight, and the handles waiting for their answer.
    pub(super) lookups: HashMap<kad::QueryId, routing::Lookup>,
    pub(super) lookup_waiters: HashMap<AccountId, Vec<oneshot::Sender<Result<PeerId>>>>,
    /// Stream frames on their one attempt, with their recipient and who waits for the outcome
    /// (at most [`super::commands::MAX_PENDING_STREAMS`]).
    pub(super) pending_streams: HashMap<MessageId, (AccountId, oneshot::Sender<Result<()>>)>,
    /// Serves inbound pipes; aborted at shutdown.
    pipe_server: tokio::task::JoinHandle<()>,
    /// Serves inbound room sync exchanges; aborted at shutdown.
    sync_server: tokio::task::JoinHandle<()>,
    pub(super) request_timeout: Duration,
    /// The peers this node chose to talk to (favoured by the inbound stream budgets when they
    /// are full, and exempt from the connection limits) and where connected peers connect from.
    pub(super) peers: SharedPeerBook,
    /// Which connections to keep (`connections`), and room discovery's decisions (`discovery`)
    /// with its queries in flight.
    pub(super) connections: Connections,
    pub(super) discovery: Discovery,
    pub(super) discovery_queries: HashMap<kad::QueryId, (RoomId, Query)>,
    /// Room syncs in flight, with their progress.
    pub(super) syncing: HashMap<(RoomId, PeerId), SyncProgress>,
    /// Bounds the sync pages being verified and stored at once.
    pub(super) sync_applying: Arc<Semaphore>,
    /// Turns of the periodic sync (which member each room syncs with next).
    pub(super) sync_turn: usize,
    /// Burn-after-read timers.
    pub(super) burns: BTreeMap<(Instant, MessageId), ()>,
    pub(super) route_published: bool,
    /// The put of this node's route record in flight, if any: a node not yet published retries
    /// on a new connection only when none is (each put dials the closest peers, whose
    /// connections would otherwise start ever more puts, each making the last one stale).
    pub(super) route_put: Option<kad::QueryId>,
    pub(super) route_ttl: Duration,
    route_refresh: Duration,
    sync_interval: Duration,
    /// Whether peers can dial this node, and the relays it holds slots on.
    pub(super) reachability: ReachabilityState,
    /// The listeners that listen through a relay, and their relay.
    pub(super) relay_listeners: HashMap<libp2p::core::transport::ListenerId, PeerId>,
    /// Established connections and their addresses (status, relay candidates).
    pub(super) links: Links,
    /// Seal-key announcements no mesh peer took yet, by room: the frame and until when to retry
    /// it (on the net tick). At most one per joined room.
    pub(super) unannounced: HashMap<RoomId, (Vec<u8>, std::time::Instant)>,
    /// Route dials in flight, to dial again without an address that reached another node.
    pub(super) route_dials: RouteDials,
    /// The peers given as bootstrap: preferred relays.
    pub(super) bootstrap_peers: HashSet<PeerId>,
}

/// The tokio instant of a wall-clock deadline (ms since the epoch).
pub(super) fn instant_of(deadline: u64) -> Instant {
    Instant::now() + Duration::from_millis(deadline.saturating_sub(now_ms()))
}

impl EventLoop {
    pub(crate) async fn new(
        key: libp2p::identity::Keypair,
        config: &Config,
        core: Arc<Core>,
        (cmd_rx, replies_rx, room_work_rx): (
            mpsc::Receiver<Command>,
            mpsc::Receiver<Delivery>,
            mpsc::Receiver<RoomWork>,
        ),
        rooms: &[RoomId],
        burns: &[(u64, MessageId)],
        outbox: Vec<(MessageId, Outgoing)>,
    ) -> Result<Self> {
        let mut swarm = build_swarm(key, config, core.counters.clone())?;
        let mut reachability = ReachabilityState::new(
            RelaySettings {
                wanted: config.relay_reservations,
                undecided_after: UNDECIDED_AFTER,
            },
            Instant::now().into_std(),
        );
        for addr in &config.external_addrs {
            swarm.add_external_address(addr.clone());
            reachability.address_confirmed(addr.clone(), Instant::now().into_std());
        }
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
                    if config.transport == Transport::Memory {
                        // Every node of the process can dial a memory address: it is public.
                        swarm.add_external_address(address.clone());
                        reachability.address_confirmed(address, Instant::now().into_std());
                    }
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
            if let Err(e) = rooms::join(&mut swarm.behaviour_mut().gossipsub, room) {
                warn!(%room, error = %e, "could not rejoin room");
            }
        }
        let (reports_tx, reports_rx) = mpsc::channel(REPORT_CAPACITY);
        let (pipe_tx, pipe_rx) = mpsc::channel(REPORT_CAPACITY);
        let max_inflight = config.max_inbound_in_flight.clamp(1, 1 << 16) as u32;
        let inflight = Arc::new(Semaphore::new(max_inflight as usize));
        let mut streams = swarm.behaviour().streams.new_control();
        let incoming = streams
            .accept(DIRECT_PROTOCOL)
            .map_err(|e| Error::Network(e.to_string()))?;
        let peers = SharedPeerBook::default();
        let pipe_limits = Limits {
            total: config.max_inbound_pipes.max(1),
            per_peer: MAX_PIPES_PER_PEER,
        };
        let pipe_server = pipe::serve_inbound(
            incoming,
            core.clone(),
            inflight.clone(),
            peers.clone(),
            pipe_limits,
            Timeouts::pipe(config.idle_connection_timeout),
        );
        let sync_incoming = streams
            .accept(SYNC_PROTOCOL)
            .map_err(|e| Error::Network(e.to_string()))?;
        let sync_server = sync_exchange::serve_inbound(
            sync_incoming,
            core.clone(),
            inflight.clone(),
            peers.clone(),
            config.request_timeout,
        );
        let deliveries = Deliveries::new(Settings {
            local: core.account,
            request_timeout: config.request_timeout,
            pipe_idle: config.idle_connection_timeout,
            retry_max: config.retry_max,
            retention: config.outbox_retention,
            max_relays: config.max_pending_relays,
        });
        let core_peer = core.peer_id;
        let mut this = EventLoop {
            swarm,
            core,
            cmd_rx,
            replies_rx,
            room_work_rx,
            reports_tx,
            reports_rx,
            inflight,
            max_inflight,
            deliveries,
            pipes: HashMap::new(),
            pipe_tx,
            pipe_rx,
            streams,
            lookups: HashMap::new(),
            lookup_waiters: HashMap::new(),
            pending_streams: HashMap::new(),
            pipe_server,
            sync_server,
            request_timeout: config.request_timeout,
            peers,
            connections: Connections::new(connections::Settings {
                high: config.max_connections,
                low: config.target_connections,
                grace: config.connection_grace,
            }),
            discovery: Discovery::new(core_peer, room_discovery::settings(config)),
            discovery_queries: HashMap::new(),
            syncing: HashMap::new(),
            sync_applying: Arc::new(Semaphore::new(MAX_PAGES_APPLYING)),
            sync_turn: 0,
            burns: BTreeMap::new(),
            route_published: false,
            route_put: None,
            route_ttl: config.route_ttl,
            route_refresh: config.route_refresh,
            sync_interval: config.room_sync_interval.max(Duration::from_millis(100)),
            reachability,
            relay_listeners: HashMap::new(),
            links: Links::default(),
            unannounced: HashMap::new(),
            route_dials: RouteDials::default(),
            bootstrap_peers: config
                .bootstrap
                .iter()
                .filter_map(|a| match a.iter().last() {
                    Some(Protocol::P2p(peer)) => Some(peer),
                    _ => None,
                })
                .collect(),
        };
        for addr in &config.bootstrap {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                this.mark_known(peer);
            }
        }
        let now = Instant::now().into_std();
        for room in rooms {
            this.discovery.join(room.clone(), now);
        }
        for (deadline, mid) in burns {
            this.burns.insert((instant_of(*deadline), *mid), ());
        }
        if !outbox.is_empty() {
            info!(entries = outbox.len(), "resuming the outbox");
        }
        let now = this.now();
        for (mid, out) in outbox {
            this.deliveries.resume(Delivery::from_outbox(mid, out), now);
        }
        this.publish_route();
        // Its private rooms' members learn this run's seal key (on the first net tick, retried
        // until a mesh forms).
        this.core.announce_seal_key_everywhere();
        Ok(this)
    }

    /// Remembers `peer` as one this node chose to talk to (see `budget`), and exempts it from the
    /// connection limits; the peer forgotten to make room loses both.
    pub(super) fn mark_known(&mut self, peer: PeerId) {
        let forgotten = match self.peers.lock() {
            Ok(mut known) => {
                if known.contains(&peer) {
                    return;
                }
                known.insert(peer)
            }
            Err(_) => return,
        };
        let limits = &mut self.swarm.behaviour_mut().limits;
        limits.bypass_peer_id(&peer);
        if let Some(old) = forgotten {
            limits.remove_peer_id(&old);
        }
    }

    /// The time for the delivery state machine.
    pub(super) fn now(&self) -> Now {
        Now {
            instant: Instant::now().into_std(),
            unix_ms: now_ms(),
        }
    }

    /// Runs until a shutdown command or the last handle is gone; `closed` resolves once the
    /// store has closed (see `ClosingStore`).
    pub(crate) async fn run(mut self, closed: oneshot::Receiver<()>) {
        let mut ticks = Ticks::new(
            Instant::now().into_std(),
            Periods {
                route_refresh: self.route_refresh,
                room_sync: self.sync_interval,
                reachability: REACHABILITY_TICK,
                presence: crate::PRESENCE_INTERVAL,
                net: NET_TICK,
            },
        );
        let mut shutdown_reply = None;
        // One timer for the delivery state machine, reset only when its next deadline changes
        // (not re-registered on every turn of the loop).
        let delivery_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(delivery_timer);
        let mut delivery_armed: Option<Instant> = None;
        // The periodic work's next deadline, and the next burn's, each on one timer reset only
        // when its deadline changes.
        let tick_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(tick_timer);
        let mut tick_armed: Option<Instant> = None;
        let burn_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(burn_timer);
        let mut burn_armed: Option<Instant> = None;
        loop {
            self.carry_out_deliveries();
            self.carry_out_relay_actions();
            self.carry_out_discovery();
            let next_burn = self.burns.keys().next().map(|(at, _)| *at);
            if next_burn != burn_armed {
                if let Some(at) = next_burn {
                    burn_timer.as_mut().reset(at);
                }
                burn_armed = next_burn;
            }
            let next_tick = ticks.next().map(Instant::from_std);
            if next_tick != tick_armed {
                if let Some(at) = next_tick {
                    tick_timer.as_mut().reset(at);
                }
                tick_armed = next_tick;
            }
            let next_delivery = self.deliveries.poll_timeout().map(Instant::from_std);
            if next_delivery != delivery_armed {
                if let Some(at) = next_delivery {
                    delivery_timer.as_mut().reset(at);
                }
                delivery_armed = next_delivery;
            }
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
                Some(report) = self.reports_rx.recv() => self.on_report(report),
                Some(receipt) = self.replies_rx.recv() => {
                    let now = self.now();
                    self.deliveries.deliver(receipt, now);
                }
                Some(work) = self.room_work_rx.recv() => self.on_room_work(work),
                Some(event) = self.pipe_rx.recv() => self.on_pipe(event),
                event = self.swarm.select_next_some() => self.on_swarm(event),
                _ = &mut delivery_timer, if delivery_armed.is_some() => {
                    delivery_armed = None;
                    let now = self.now();
                    self.deliveries.handle_timeout(now);
                }
                _ = &mut tick_timer, if tick_armed.is_some() => {
                    tick_armed = None;
                    for tick in ticks.take_due(Instant::now().into_std()) {
                        match tick {
                            Tick::RouteRefresh => {
                                self.rotate_seal_key();
                                self.publish_route();
                            }
                            Tick::RoomSync => self.sync_all(),
                            Tick::Reachability => self.on_reachability_tick(),
                            Tick::Presence => self.send_presence(),
                            Tick::Net => {
                                self.announce_seal_keys();
                                self.manage_connections();
                                self.tick_discovery();
                            }
                        }
                    }
                }
                _ = &mut burn_timer, if burn_armed.is_some() => {
                    burn_armed = None;
                    self.fire_burns()
                }
            }
        }
        info!("node stopping");
        self.pipe_server.abort();
        self.sync_server.abort();
        self.write_last_outcomes().await;
        // Wait for store work in other tasks to finish, then drop the swarm (ending every
        // connection, so pipe tasks end) and everything else holding the core; the store closes
        // when the last task holding it ends. Handles hold it only for the length of a call.
        quiesce::wait_until_idle(
            &self.inflight,
            self.max_inflight,
            &mut self.reports_rx,
            &mut self.pipe_rx,
        )
        .await;
        drop(self);
        if tokio::time::timeout(CLOSE_WAIT, closed).await.is_err() {
            warn!("the store is still in use {CLOSE_WAIT:?} after stopping; it closes when that work ends");
        }
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// Writes every delivery outcome before the store goes quiet: waits for the batch being
    /// written, writes here whatever that releases, then the rest. Other outputs are dropped: the
    /// node is stopping, and the outbox keeps what was not acknowledged.
    async fn write_last_outcomes(&mut self) {
        loop {
            // A batch queued but not yet handed out is written here.
            while let Some(output) = self.deliveries.poll() {
                if let Output::WriteOutcomes(batch) = output {
                    let core = self.core.clone();
                    let _ = tokio::task::spawn_blocking(move || core.record_outcomes(&batch)).await;
                    self.deliveries.outcomes_written();
                }
            }
            if !self.deliveries.is_writing() {
                break;
            }
            match self.reports_rx.recv().await {
                Some(TaskReport::OutcomesWritten) | None => self.deliveries.outcomes_written(),
                Some(_) => {}
            }
        }
        let rest = self.deliveries.take_unwritten();
        if !rest.is_empty() {
            let core = self.core.clone();
            let _ = tokio::task::spawn_blocking(move || core.record_outcomes(&rest)).await;
        }
    }
}
