//! The one task that owns the `Swarm`: driven by [`Command`]s from handles (with oneshot replies),
//! swarm events, results of blocking store work, and timers (retries, route refresh, burns).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash},
    identify, kad,
    multiaddr::Protocol,
    noise, ping,
    request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel},
    swarm::SwarmEvent,
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use sha2::{Digest, Sha256};
use tim_protocol::{
    decode, encode, AccountId, Ack, Action, Code, Control, Envelope, MessageId, RoomId,
    RouteRecord, Verified,
};
use tokio::{
    sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore},
    time::{Instant, MissedTickBehavior},
};
use tracing::{debug, info, warn};

use crate::{
    behaviour::{
        Behaviour, BehaviourEvent, DirectCodec, DIRECT_PROTOCOL, GOSSIP_PREFIX, IDENTIFY_PROTOCOL,
        KAD_PROTOCOL,
    },
    core::{bump, now_ms, Core, Route, Verdict},
    node::{RoomStatus, Status},
    rules::Via,
    Config, Error, Event, Result,
};

/// Capacity of the channel that brings results of blocking work back to the loop.
const DONE_CAPACITY: usize = 1024;
/// How often due retries are looked at.
const RETRY_TICK: Duration = Duration::from_millis(100);
/// First retry delay; doubles per attempt.
const RETRY_BASE: Duration = Duration::from_millis(500);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Most cached routes.
const MAX_ROUTES: usize = 10_000;
/// How long listeners may take to report their addresses at start.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryKind {
    /// A direct message: its ack moves it to `delivered`.
    Message,
    /// A revoke or burn of a direct message.
    Control,
}

/// A frame on its way to an account's node.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    to: AccountId,
    mid: MessageId,
    frame: Vec<u8>,
    kind: DeliveryKind,
    attempts: u32,
}

impl Delivery {
    pub(crate) fn new(to: AccountId, mid: MessageId, frame: Vec<u8>, kind: DeliveryKind) -> Self {
        Delivery {
            to,
            mid,
            frame,
            kind,
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
    /// Subscribe to a room's topic.
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
    /// Stop the loop.
    Shutdown { reply: oneshot::Sender<()> },
}

/// The command that sends an applied control message where it must go.
pub(crate) fn control_command(control: Verified<Control>, route: Route) -> Result<Command> {
    let mid = control.id();
    let frame = encode(&Envelope::Control(control.into_inner()))?;
    Ok(match route {
        Route::Account(to) => {
            Command::Deliver(Delivery::new(to, mid, frame, DeliveryKind::Control))
        }
        Route::Room(room) => Command::Publish { room, mid, frame },
        Route::Local => Command::Publish {
            room: local_room(),
            mid,
            frame: Vec::new(),
        },
    })
}

/// Placeholder room for control messages that go nowhere (a message to oneself).
fn local_room() -> RoomId {
    RoomId::new("local").unwrap_or_else(|_| unreachable!("\"local\" is a valid room id"))
}

/// Results of blocking work, back on the loop.
enum Done {
    /// A direct request was processed: answer it.
    Direct {
        channel: ResponseChannel<Ack>,
        verdict: Verdict,
    },
    /// A gossip message was processed: report the verdict to gossipsub.
    Gossip {
        id: gossipsub::MessageId,
        source: PeerId,
        verdict: Verdict,
    },
    /// A burn-after-read timer burned a message: send the burn.
    Burned {
        mid: MessageId,
        result: Result<(Verified<Control>, Route)>,
    },
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
    /// Route lookups in flight.
    lookups: HashMap<kad::QueryId, AccountId>,
    lookup_waiters: HashMap<AccountId, Vec<oneshot::Sender<Result<PeerId>>>>,
    /// Deliveries waiting for a route lookup.
    waiting: HashMap<AccountId, Vec<Delivery>>,
    /// Requests in flight.
    requests: HashMap<OutboundRequestId, (PeerId, Delivery)>,
    /// Deliveries waiting for their retry time.
    retries: BTreeMap<(Instant, u64), Delivery>,
    retry_seq: u64,
    /// Burn-after-read timers.
    burns: BTreeMap<(Instant, MessageId), ()>,
    route_published: bool,
    route_ttl: Duration,
    route_refresh: Duration,
    delivery_attempts: u32,
    max_pending: usize,
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

fn build_swarm(key: libp2p::identity::Keypair, config: &Config) -> Result<Swarm<Behaviour>> {
    let net = |e: &dyn std::fmt::Display| Error::Network(e.to_string());
    let request_timeout = config.request_timeout;
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
            let identify = identify::Behaviour::new(identify::Config::new(
                IDENTIFY_PROTOCOL.into(),
                key.public(),
            ));
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
            kad_config.set_query_timeout(Duration::from_secs(30));
            kad_config.set_periodic_bootstrap_interval(Some(refresh));
            let mut kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad_config,
            );
            kad.set_mode(Some(kad::Mode::Server));
            let gossip_config = gossipsub::ConfigBuilder::default()
                .protocol_id_prefix(GOSSIP_PREFIX)
                .validation_mode(gossipsub::ValidationMode::Anonymous)
                .validate_messages()
                .message_id_fn(|m: &gossipsub::Message| {
                    gossipsub::MessageId::from(&Sha256::digest(&m.data)[..20])
                })
                .max_transmit_size(tim_protocol::MAX_FRAME_LEN + 1024)
                .heartbeat_interval(Duration::from_millis(500))
                .build()?;
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Anonymous,
                gossip_config,
            )?;
            let direct = request_response::Behaviour::with_codec(
                DirectCodec,
                [(DIRECT_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(request_timeout)
                    .with_max_concurrent_streams(256),
            );
            Ok(Behaviour {
                identify,
                ping: ping::Behaviour::default(),
                kad,
                gossipsub,
                direct,
            })
        })
        .map_err(|e| net(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
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
        let mut pending: std::collections::HashSet<_> = listeners.into_iter().collect();
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        while !pending.is_empty() {
            match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
                Ok(SwarmEvent::NewListenAddr {
                    listener_id,
                    address,
                }) => {
                    info!(%address, "listening");
                    pending.remove(&listener_id);
                }
                Ok(SwarmEvent::ListenerError { error, .. })
                | Ok(SwarmEvent::ListenerClosed {
                    reason: Err(error), ..
                }) => {
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
        let max_inflight = config.max_inbound_in_flight.clamp(1, 1 << 16) as u32;
        let mut this = EventLoop {
            swarm,
            core,
            cmd_rx,
            done_tx,
            done_rx,
            inflight: Arc::new(Semaphore::new(max_inflight as usize)),
            max_inflight,
            routes: HashMap::new(),
            lookups: HashMap::new(),
            lookup_waiters: HashMap::new(),
            waiting: HashMap::new(),
            requests: HashMap::new(),
            retries: BTreeMap::new(),
            retry_seq: 0,
            burns: BTreeMap::new(),
            route_published: false,
            route_ttl: config.route_ttl,
            route_refresh: config.route_refresh,
            delivery_attempts: config.delivery_attempts.max(1),
            max_pending: config.max_pending_deliveries,
        };
        for (deadline, mid) in burns {
            this.burns.insert((instant_of(*deadline), *mid), ());
        }
        this.publish_route();
        Ok(this)
    }

    pub(crate) async fn run(mut self) {
        let mut retry_tick = tokio::time::interval(RETRY_TICK);
        retry_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut refresh =
            tokio::time::interval_at(Instant::now() + self.route_refresh, self.route_refresh);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
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
                event = self.swarm.select_next_some() => self.on_swarm(event),
                _ = retry_tick.tick() => self.run_retries(),
                _ = refresh.tick() => self.publish_route(),
                _ = tokio::time::sleep_until(next_burn.unwrap_or_else(Instant::now)), if next_burn.is_some() => self.fire_burns(),
            }
        }
        info!("node stopping");
        // Wait for blocking store work to finish, so the store is quiet when handles drop it.
        let _ = self.inflight.acquire_many(self.max_inflight).await;
        drop(self.swarm);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Deliver(delivery) => self.deliver(delivery),
            Command::Publish { room, mid, frame } => self.publish(&room, mid, frame),
            Command::Join { room, reply } => {
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&topic(&room));
                let _ = reply.send(
                    result
                        .map(|_| ())
                        .map_err(|e| Error::Network(e.to_string())),
                );
            }
            Command::Leave { room, reply } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .unsubscribe(&topic(&room));
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
            Command::Shutdown { .. } => {}
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
                let peers = gossip
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .count();
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
        if frame.is_empty() {
            return; // a control message about a message to oneself: applied locally, nothing to send
        }
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic(room), frame)
        {
            Ok(_) => debug!(%room, %mid, "published"),
            Err(gossipsub::PublishError::Duplicate) => debug!(%room, %mid, "already published"),
            Err(e) => {
                warn!(%room, %mid, error = %e, "publish failed; stored locally, members catch up by sync")
            }
        }
    }

    // ---- outbound: direct ----

    fn pending_count(&self) -> usize {
        self.waiting.values().map(Vec::len).sum::<usize>()
            + self.retries.len()
            + self.requests.len()
    }

    fn deliver(&mut self, delivery: Delivery) {
        if delivery.to == self.core.account {
            // A message to oneself is stored once, locally; it is delivered as soon as it is sent.
            if delivery.kind == DeliveryKind::Message {
                let core = self.core.clone();
                let (mid, to) = (delivery.mid, delivery.to);
                tokio::task::spawn_blocking(move || core.delivered(mid, to));
            }
            return;
        }
        if self.pending_count() >= self.max_pending {
            self.give_up(delivery, Code::Overloaded);
            return;
        }
        match self.fresh_route(&delivery.to) {
            Some(peer) => self.send_request(peer, delivery),
            None => {
                let to = delivery.to;
                self.waiting.entry(to).or_default().push(delivery);
                self.start_lookup(to);
            }
        }
    }

    fn send_request(&mut self, peer: PeerId, delivery: Delivery) {
        let id = self
            .swarm
            .behaviour_mut()
            .direct
            .send_request(&peer, delivery.frame.clone());
        self.requests.insert(id, (peer, delivery));
    }

    fn retry_later(&mut self, mut delivery: Delivery) {
        delivery.attempts += 1;
        if delivery.attempts >= self.delivery_attempts {
            self.give_up(delivery, Code::Unreachable);
            return;
        }
        let backoff = RETRY_BASE
            .saturating_mul(1 << (delivery.attempts - 1).min(16))
            .min(RETRY_MAX);
        self.retry_seq += 1;
        debug!(mid = %delivery.mid, to = %delivery.to, attempt = delivery.attempts, ?backoff, "delivery will be retried");
        self.retries
            .insert((Instant::now() + backoff, self.retry_seq), delivery);
    }

    fn give_up(&mut self, delivery: Delivery, code: Code) {
        bump(&self.core.counters.delivery_failures);
        warn!(mid = %delivery.mid, to = %delivery.to, %code, "delivery given up");
        self.core.emit(Event::DeliveryFailed {
            mid: delivery.mid,
            to: delivery.to,
            code,
        });
    }

    fn run_retries(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.retries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let delivery = entry.remove();
            self.deliver(delivery);
        }
    }

    fn on_response(&mut self, request_id: OutboundRequestId, ack: Ack) {
        let Some((_, delivery)) = self.requests.remove(&request_id) else {
            return;
        };
        match ack {
            Ack::Stored | Ack::Duplicate => {
                if delivery.kind == DeliveryKind::Message {
                    let core = self.core.clone();
                    tokio::task::spawn_blocking(move || core.delivered(delivery.mid, delivery.to));
                } else {
                    debug!(mid = %delivery.mid, to = %delivery.to, "control message delivered");
                }
            }
            Ack::Refused { code } if code == Code::Tombstoned.number() => {
                debug!(mid = %delivery.mid, "recipient already has a tombstone for it");
            }
            Ack::Refused { code } => {
                let code = Code::from_number(code).unwrap_or(Code::Malformed);
                if code == Code::Overloaded {
                    self.retry_later(delivery);
                } else {
                    self.give_up(delivery, code);
                }
            }
        }
    }

    fn on_outbound_failure(
        &mut self,
        request_id: OutboundRequestId,
        error: &request_response::OutboundFailure,
    ) {
        let Some((peer, delivery)) = self.requests.remove(&request_id) else {
            return;
        };
        debug!(%peer, mid = %delivery.mid, %error, "direct request failed");
        if self
            .routes
            .get(&delivery.to)
            .is_some_and(|r| r.peer == peer)
        {
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
        let id = self
            .swarm
            .behaviour_mut()
            .kad
            .get_record(route_key(&account));
        self.lookups.insert(id, account);
    }

    fn publish_route(&mut self) {
        let me = self.core.peer_id;
        let addrs: Vec<Vec<u8>> = self
            .swarm
            .listeners()
            .chain(self.swarm.external_addresses())
            .filter(|a| {
                !a.iter()
                    .any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified()))
            })
            .take(tim_protocol::MAX_ROUTE_ADDRS)
            .map(|a| a.to_vec())
            .collect();
        let expires_at = now_ms().saturating_add(self.route_ttl.as_millis() as u64);
        let record = match RouteRecord::sign(&self.core.key, me.to_bytes(), addrs, expires_at)
            .and_then(|r| encode(&r))
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
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(record, kad::Quorum::One)
        {
            warn!(error = %e, "could not store route record");
        }
    }

    /// Verifies a route record found for `account`; returns the peer and its addresses.
    fn check_route(
        record: &kad::Record,
        account: &AccountId,
    ) -> Result<(PeerId, u64, Vec<Multiaddr>)> {
        let route: RouteRecord = decode(&record.value)?;
        if route.account != *account || record.key != route_key(account) {
            return Err(Error::BadParameters(
                "route record for another account".into(),
            ));
        }
        route.verify(now_ms())?;
        let peer =
            PeerId::from_bytes(&route.peer).map_err(|e| Error::BadParameters(e.to_string()))?;
        let addrs = route
            .addrs
            .into_iter()
            .filter_map(|a| Multiaddr::try_from(a).ok())
            .collect();
        Ok((peer, route.expires_at, addrs))
    }

    fn route_found(
        &mut self,
        account: AccountId,
        peer: PeerId,
        expires_at: u64,
        addrs: Vec<Multiaddr>,
    ) {
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
        self.routes
            .insert(account, CachedRoute { peer, expires_at });
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

    fn on_request(&mut self, request: Vec<u8>, channel: ResponseChannel<Ack>) {
        let Some(permit) = self.permit() else {
            let ack = Ack::Refused {
                code: Code::Overloaded.number(),
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .direct
                .send_response(channel, ack);
            return;
        };
        let (core, done) = (self.core.clone(), self.done_tx.clone());
        tokio::task::spawn_blocking(move || {
            let verdict = core.inbound(&request, &Via::Direct);
            let _ = done.blocking_send(Done::Direct { channel, verdict });
            drop(permit);
        });
    }

    fn on_gossip(&mut self, id: gossipsub::MessageId, source: PeerId, message: gossipsub::Message) {
        let room = room_of(&message.topic);
        let (Some(room), Some(permit)) = (room, self.permit()) else {
            let acceptance = if room_of(&message.topic).is_none() {
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
        let (core, done) = (self.core.clone(), self.done_tx.clone());
        tokio::task::spawn_blocking(move || {
            let verdict = core.inbound(&message.data, &Via::Room(room));
            let _ = done.blocking_send(Done::Gossip {
                id,
                source,
                verdict,
            });
            drop(permit);
        });
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Direct { channel, verdict } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .direct
                    .send_response(channel, verdict.ack());
            }
            Done::Gossip {
                id,
                source,
                verdict,
            } => {
                let acceptance = match verdict {
                    Verdict::Stored => MessageAcceptance::Accept,
                    Verdict::Duplicate | Verdict::Ignored(_) => MessageAcceptance::Ignore,
                    Verdict::Invalid(_) => MessageAcceptance::Reject,
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &source, acceptance);
            }
            Done::Burned { mid, result } => {
                match result.and_then(|(control, route)| control_command(control, route)) {
                    Ok(Command::Deliver(delivery)) => self.deliver(delivery),
                    Ok(Command::Publish { room, mid, frame }) => self.publish(&room, mid, frame),
                    Ok(_) => {}
                    Err(e) => debug!(%mid, error = %e, "burn after reading did not apply"),
                }
            }
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
                let result = core.local_control(Action::Burn, mid);
                let _ = done.blocking_send(Done::Burned { mid, result });
            });
        }
    }

    // ---- swarm events ----

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Direct(event)) => self.on_direct(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(message_id, propagation_source, message),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
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

    fn on_direct(&mut self, event: request_response::Event<Vec<u8>, Ack>) {
        match event {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_request(request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_response(request_id, response),
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => self.on_outbound_failure(request_id, &error),
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound direct request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                kad::QueryResult::GetRecord(result) => {
                    let Some(account) = self.lookups.get(&id).copied() else {
                        return;
                    };
                    if let Ok(kad::GetRecordOk::FoundRecord(found)) = &result {
                        match Self::check_route(&found.record, &account) {
                            Ok((peer, expires_at, addrs)) => {
                                self.lookups.remove(&id);
                                if let Some(mut query) =
                                    self.swarm.behaviour_mut().kad.query_mut(&id)
                                {
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
                kad::QueryResult::Bootstrap(Ok(_)) if step.last => {
                    if !self.route_published {
                        self.publish_route();
                    }
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

    /// Stores a route record another node asks us to keep, only if it verifies.
    fn on_put_record(&mut self, source: PeerId, record: kad::Record) {
        let account = std::str::from_utf8(record.key.as_ref())
            .ok()
            .and_then(|k| k.strip_prefix("/tim/route/"))
            .and_then(|a| a.parse::<AccountId>().ok());
        let checked = account
            .ok_or_else(|| Error::BadParameters("not a route key".into()))
            .and_then(|a| Self::check_route(&record, &a));
        match checked {
            Ok(_) => {
                use kad::store::RecordStore;
                if let Err(e) = self.swarm.behaviour_mut().kad.store_mut().put(record) {
                    warn!(error = %e, "could not keep route record");
                }
            }
            Err(e) => {
                bump(&self.core.counters.forged_rejected);
                warn!(%source, error = %e, "refused an invalid route record");
            }
        }
    }
}
