//! Direct delivery as an I/O-free state machine: frames on their way to an account's node, the
//! requests in flight on pipes and their deadlines, retries with backoff, deliveries waiting for
//! a route, the cap on relayed frames, cancel-on-revoke and pipe failover. It never reads a clock
//! or touches a socket: the event loop hands it events with the time ([`Now`]) and carries out the
//! [`Output`]s it returns, and asks [`Deliveries::poll_timeout`] when to call
//! [`Deliveries::handle_timeout`]. Unit tests drive hours of retries with a fake clock.
//!
//! - `item`: [`Delivery`], its [`DeliveryKind`] and its [`DeliveryOutcome`].
//! - `routes`: the route cache (which peer serves an account, until when).

mod item;
mod routes;
#[cfg(test)]
mod tests;

use std::{
    collections::{hash_map::Entry, BTreeMap, HashMap, VecDeque},
    time::{Duration, Instant},
};

use libp2p::PeerId;
use tim_protocol::{AccountId, Ack, Code, MessageId};
use tracing::{debug, info, warn};

pub(crate) use item::{Delivery, DeliveryKind, DeliveryOutcome};
use routes::RouteCache;

/// First retry delay; doubles per attempt up to `Settings::retry_max`.
pub(crate) const RETRY_BASE: Duration = Duration::from_millis(500);
/// How often pipes are checked for idleness.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The time, as the event loop reads it: monotonic for timers, wall-clock for what is signed or
/// persisted (route expiry, an outbox entry's age).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub(crate) instant: Instant,
    pub(crate) unix_ms: u64,
}

/// What the event loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Output {
    /// Open pipe `generation` to `peer` (replacing any older one).
    OpenPipe { peer: PeerId, generation: u64 },
    /// Queue request `id` carrying `frame` on pipe `generation` to `peer`. `outcome` is what a
    /// pipe may record itself when the answer is positive (none for a relay).
    SendOnPipe {
        peer: PeerId,
        generation: u64,
        id: u64,
        frame: Vec<u8>,
        outcome: Option<DeliveryOutcome>,
    },
    /// Drop pipe `generation` to `peer`, if it is still the current one (stalled or idle).
    ClosePipe { peer: PeerId, generation: u64 },
    /// Look up the route of an account (a lookup already running for it does).
    LookUpRoute(AccountId),
    /// Write these outcomes in one batch, then call [`Deliveries::outcomes_written`].
    WriteOutcomes(Vec<DeliveryOutcome>),
    /// A delivery was given up: report it.
    Failed { mid: MessageId, to: AccountId, code: Code },
    /// A stream frame's one attempt ended: taken by the recipient's node (`None`), or not, and
    /// why.
    StreamDone { mid: MessageId, refused: Option<Code> },
}

/// The fixed parameters of delivery.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The local account: deliveries to it are done at once.
    pub(crate) local: AccountId,
    /// How long a request may wait for its answer before its pipe counts as stalled.
    pub(crate) request_timeout: Duration,
    /// A pipe with nothing in flight for this long is closed.
    pub(crate) pipe_idle: Duration,
    /// Longest wait between attempts.
    pub(crate) retry_max: Duration,
    /// A delivery queued longer than this is given up (`4121 expired`).
    pub(crate) retention: Duration,
    /// Most relayed frames pending at once; beyond it a relay is refused (`5104 overloaded`).
    pub(crate) max_relays: usize,
}

/// The local side of a pipe.
#[derive(Debug)]
struct PipeState {
    generation: u64,
    /// Requests sent and not yet answered.
    in_flight: usize,
    /// When a request was last sent or answered.
    last_used: Instant,
}

/// A request in flight on a pipe.
#[derive(Debug)]
struct InFlight {
    peer: PeerId,
    generation: u64,
    delivery: Delivery,
    /// Its message was revoked while this copy was in flight: never retry it.
    cancelled: bool,
}

/// The state of every direct delivery of a node.
#[derive(Debug)]
pub(crate) struct Deliveries {
    settings: Settings,
    routes: RouteCache,
    pipes: HashMap<PeerId, PipeState>,
    last_generation: u64,
    /// Requests in flight by id, and their deadlines in sending order (one timeout for all).
    in_flight: HashMap<u64, InFlight>,
    deadlines: VecDeque<(Instant, u64)>,
    next_request: u64,
    /// Deliveries waiting for their retry time, by (time, sequence).
    retries: BTreeMap<(Instant, u64), Delivery>,
    retry_seq: u64,
    /// Deliveries waiting for a route lookup.
    waiting_for_route: HashMap<AccountId, Vec<Delivery>>,
    /// Relayed deliveries pending.
    relays: usize,
    /// Outcomes not yet handed out for writing; one batch is written at a time, so under load
    /// acknowledgements arriving together cost one write.
    unwritten: Vec<DeliveryOutcome>,
    writing: bool,
    next_idle_check: Option<Instant>,
    outputs: VecDeque<Output>,
}

impl Deliveries {
    pub(crate) fn new(mut settings: Settings) -> Self {
        settings.retry_max = settings.retry_max.max(RETRY_BASE);
        Deliveries {
            settings,
            routes: RouteCache::default(),
            pipes: HashMap::new(),
            last_generation: 0,
            in_flight: HashMap::new(),
            deadlines: VecDeque::new(),
            next_request: 0,
            retries: BTreeMap::new(),
            retry_seq: 0,
            waiting_for_route: HashMap::new(),
            relays: 0,
            unwritten: Vec::new(),
            writing: false,
            next_idle_check: None,
            outputs: VecDeque::new(),
        }
    }

    /// The next thing to do, in order.
    pub(crate) fn poll(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Deliveries::handle_timeout`] must run next, if anything waits for a time.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.deadlines.front().map(|(at, _)| *at),
            self.retries.keys().next().map(|(at, _)| *at),
            self.next_idle_check,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The peer serving `account`, if the cache holds a fresh route.
    pub(crate) fn route(&self, account: &AccountId, now: Now) -> Option<PeerId> {
        self.routes.fresh(account, now.unix_ms)
    }

    /// Whether some delivery to `account` waits for its retry time.
    pub(crate) fn is_retrying(&self, account: &AccountId) -> bool {
        self.retries.values().any(|d| d.to == *account)
    }

    /// Starts a delivery now. A relay over the cap is refused.
    pub(crate) fn deliver(&mut self, delivery: Delivery, now: Now) {
        if delivery.kind == DeliveryKind::Relay {
            if self.relays >= self.settings.max_relays {
                self.report_failed(&delivery, Code::Overloaded);
                return;
            }
            self.relays += 1;
        }
        self.attempt(delivery, now);
    }

    /// Queues an outbox entry found at start, to be sent at the next timeout.
    pub(crate) fn resume(&mut self, delivery: Delivery, now: Now) {
        self.schedule(now.instant, delivery);
    }

    /// Forgets queued copies of message `mid` (its outbox entry went with its tombstone). A
    /// request already in flight cannot be recalled; it is not retried, and the revoke that
    /// follows wins at the recipient.
    pub(crate) fn cancel(&mut self, mid: MessageId) {
        let is_it = |d: &Delivery| d.mid == mid && d.kind == DeliveryKind::Message;
        self.retries.retain(|_, d| !is_it(d));
        for list in self.waiting_for_route.values_mut() {
            list.retain(|d| !is_it(d));
        }
        self.waiting_for_route.retain(|_, list| !list.is_empty());
        for sent in self.in_flight.values_mut() {
            if is_it(&sent.delivery) {
                sent.cancelled = true;
            }
        }
    }

    /// Forgets every queued delivery to `account` (the local account blocked it; its outbox
    /// entries went with the block). Requests already in flight are not retried.
    pub(crate) fn cancel_account(&mut self, account: &AccountId) {
        let is_it = |d: &Delivery| d.to == *account && d.kind != DeliveryKind::Relay;
        self.retries.retain(|_, d| !is_it(d));
        if let Some(list) = self.waiting_for_route.get_mut(account) {
            list.retain(|d| !is_it(d));
            if list.is_empty() {
                self.waiting_for_route.remove(account);
            }
        }
        for sent in self.in_flight.values_mut() {
            if is_it(&sent.delivery) {
                sent.cancelled = true;
            }
        }
    }

    /// A verified route: `peer` serves `account` until `expires_at` (ms since the epoch). What
    /// waited for it is sent.
    pub(crate) fn route_found(&mut self, account: AccountId, peer: PeerId, expires_at: u64, now: Now) {
        self.routes.insert(account, peer, expires_at, now.unix_ms);
        for delivery in self.waiting_for_route.remove(&account).unwrap_or_default() {
            self.send_request(peer, delivery, now);
        }
    }

    /// No route was found for `account`: what waited for one is retried later.
    pub(crate) fn route_failed(&mut self, account: AccountId, now: Now) {
        for delivery in self.waiting_for_route.remove(&account).unwrap_or_default() {
            self.retry_later(delivery, now);
        }
    }

    /// `peer` connected: deliveries to the accounts it served last are retried at once.
    pub(crate) fn peer_connected(&mut self, peer: PeerId, now: Now) {
        let accounts = self.routes.served_by(&peer);
        if !accounts.is_empty() {
            self.retry_now(now, |a| accounts.contains(a));
        }
    }

    /// `account` is reachable again (a fresh route record of it arrived): retry its deliveries at
    /// once.
    pub(crate) fn retry_account_now(&mut self, account: AccountId, now: Now) {
        self.retry_now(now, |a| *a == account);
    }

    /// The answer to request `id`. `recorded` when the pipe already wrote the positive outcome.
    pub(crate) fn answer(&mut self, id: u64, ack: Ack, recorded: bool, now: Now) {
        let Some(InFlight {
            peer,
            generation,
            delivery,
            ..
        }) = self.in_flight.remove(&id)
        else {
            return;
        };
        if let Some(pipe) = self.pipes.get_mut(&peer).filter(|p| p.generation == generation) {
            pipe.in_flight = pipe.in_flight.saturating_sub(1);
            pipe.last_used = now.instant;
        }
        debug!(mid = %delivery.mid, ?ack, "direct request answered");
        match ack {
            Ack::Stored | Ack::Duplicate if recorded => {}
            Ack::Stored | Ack::Duplicate => self.conclude(delivery, true),
            Ack::Refused { code } if code == Code::Tombstoned.number() => {
                debug!(mid = %delivery.mid, "recipient already has a tombstone for it");
                self.conclude(delivery, false);
            }
            Ack::Refused { code } => {
                let code = Code::from_number(code).unwrap_or(Code::Malformed);
                if matches!(code, Code::Overloaded | Code::StorageFailure) && delivery.kind.retries() {
                    self.retry_later(delivery, now);
                } else {
                    self.give_up(delivery, code);
                }
            }
        }
    }

    /// Pipe `generation` to `peer` ended (could not open, closed or broke): every request it
    /// carried failed and is retried later.
    pub(crate) fn pipe_closed(&mut self, peer: PeerId, generation: u64, reason: &str, now: Now) {
        if self.pipes.get(&peer).is_some_and(|p| p.generation == generation) {
            self.pipes.remove(&peer);
        }
        let failed: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, s)| s.peer == peer && s.generation == generation)
            .map(|(id, _)| *id)
            .collect();
        debug!(%peer, generation, reason, failed = failed.len(), "pipe closed");
        for id in failed {
            if let Some(sent) = self.in_flight.remove(&id) {
                self.request_failed(sent, now);
            }
        }
    }

    /// The writes asked for by the last [`Output::WriteOutcomes`] are done.
    pub(crate) fn outcomes_written(&mut self) {
        self.writing = false;
        self.write_outcomes();
    }

    /// Whether a batch of outcomes is being written.
    pub(crate) fn is_writing(&self) -> bool {
        self.writing
    }

    /// Outcomes not yet handed out (at shutdown, written by the caller).
    pub(crate) fn take_unwritten(&mut self) -> Vec<DeliveryOutcome> {
        std::mem::take(&mut self.unwritten)
    }

    /// Fails requests past their deadline (closing their pipes: a pipe that stalls one request
    /// stalls the ones behind it), closes idle pipes, and starts the retries that are due.
    pub(crate) fn handle_timeout(&mut self, now: Now) {
        let mut stalled = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now.instant {
                break;
            }
            self.deadlines.pop_front();
            if let Some(sent) = self.in_flight.get(&id) {
                stalled.push((sent.peer, sent.generation));
            }
        }
        stalled.dedup();
        for (peer, generation) in stalled {
            if self.pipes.get(&peer).is_some_and(|p| p.generation == generation) {
                self.outputs.push_back(Output::ClosePipe { peer, generation });
            }
            self.pipe_closed(peer, generation, "request timed out", now);
        }
        if self.next_idle_check.is_some_and(|at| at <= now.instant) {
            self.close_idle_pipes(now);
        }
        while let Some(entry) = self.retries.first_entry() {
            if entry.key().0 > now.instant {
                break;
            }
            let delivery = entry.remove();
            self.attempt(delivery, now);
        }
    }

    fn close_idle_pipes(&mut self, now: Now) {
        let idle = self.settings.pipe_idle;
        let outputs = &mut self.outputs;
        self.pipes.retain(|peer, p| {
            let keep = p.in_flight > 0 || now.instant.duration_since(p.last_used) < idle;
            if !keep {
                outputs.push_back(Output::ClosePipe {
                    peer: *peer,
                    generation: p.generation,
                });
            }
            keep
        });
        self.next_idle_check = (!self.pipes.is_empty()).then(|| now.instant + IDLE_CHECK);
    }

    fn attempt(&mut self, delivery: Delivery, now: Now) {
        if delivery.to == self.settings.local {
            // A message to oneself is stored once, locally; it is delivered as soon as it is sent.
            self.conclude(delivery, true);
            return;
        }
        match self.routes.fresh(&delivery.to, now.unix_ms) {
            Some(peer) => self.send_request(peer, delivery, now),
            None => {
                let to = delivery.to;
                debug!(mid = %delivery.mid, %to, "waiting for a route");
                self.waiting_for_route.entry(to).or_default().push(delivery);
                self.outputs.push_back(Output::LookUpRoute(to));
            }
        }
    }

    fn send_request(&mut self, peer: PeerId, delivery: Delivery, now: Now) {
        let id = self.next_request;
        self.next_request += 1;
        let pipe = match self.pipes.entry(peer) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.last_generation += 1;
                let generation = self.last_generation;
                debug!(%peer, generation, "opening a pipe");
                self.outputs.push_back(Output::OpenPipe { peer, generation });
                e.insert(PipeState {
                    generation,
                    in_flight: 0,
                    last_used: now.instant,
                })
            }
        };
        pipe.in_flight += 1;
        pipe.last_used = now.instant;
        let generation = pipe.generation;
        if self.next_idle_check.is_none() {
            self.next_idle_check = Some(now.instant + IDLE_CHECK);
        }
        let outcome = delivery.kind.outbox_kind().map(|kind| DeliveryOutcome {
            mid: delivery.mid,
            kind,
            to: delivery.to,
            delivered: true,
        });
        debug!(mid = %delivery.mid, to = %delivery.to, %peer, request = id, "direct request sent");
        self.outputs.push_back(Output::SendOnPipe {
            peer,
            generation,
            id,
            frame: delivery.frame.clone(),
            outcome,
        });
        self.in_flight.insert(
            id,
            InFlight {
                peer,
                generation,
                delivery,
                cancelled: false,
            },
        );
        self.deadlines
            .push_back((now.instant + self.settings.request_timeout, id));
    }

    fn request_failed(&mut self, sent: InFlight, now: Now) {
        let InFlight {
            peer,
            delivery,
            cancelled,
            ..
        } = sent;
        debug!(%peer, mid = %delivery.mid, "direct request failed");
        if cancelled {
            return;
        }
        self.routes.forget_if(&delivery.to, &peer);
        self.retry_later(delivery, now);
    }

    fn schedule(&mut self, at: Instant, delivery: Delivery) {
        self.retry_seq += 1;
        self.retries.insert((at, self.retry_seq), delivery);
    }

    fn retry_later(&mut self, mut delivery: Delivery, now: Now) {
        if !delivery.kind.retries() {
            // Live data is for now or never.
            self.give_up(delivery, Code::Unreachable);
            return;
        }
        let retention = u64::try_from(self.settings.retention.as_millis()).unwrap_or(u64::MAX);
        if now.unix_ms.saturating_sub(delivery.queued_at) > retention {
            info!(mid = %delivery.mid, to = %delivery.to, "outbox entry expired undelivered; dropped");
            self.give_up(delivery, Code::Expired);
            return;
        }
        delivery.attempts = delivery.attempts.saturating_add(1);
        let backoff = RETRY_BASE
            .saturating_mul(1u32 << (delivery.attempts - 1).min(16))
            .min(self.settings.retry_max);
        debug!(mid = %delivery.mid, to = %delivery.to, attempt = delivery.attempts, ?backoff, "delivery will be retried");
        self.schedule(now.instant + backoff, delivery);
    }

    /// Moves the future retries of the accounts matching `pred` to `now`.
    fn retry_now(&mut self, now: Now, pred: impl Fn(&AccountId) -> bool) {
        let due: Vec<_> = self
            .retries
            .iter()
            .filter(|((at, _), d)| *at > now.instant && pred(&d.to))
            .map(|(key, _)| *key)
            .collect();
        for key in due {
            if let Some(d) = self.retries.remove(&key) {
                self.schedule(now.instant, d);
            }
        }
    }

    fn report_failed(&mut self, delivery: &Delivery, code: Code) {
        if delivery.kind == DeliveryKind::Stream {
            debug!(mid = %delivery.mid, to = %delivery.to, %code, "stream not delivered");
            self.outputs.push_back(Output::StreamDone {
                mid: delivery.mid,
                refused: Some(code),
            });
            return;
        }
        if delivery.kind == DeliveryKind::Receipt {
            info!(mid = %delivery.mid, to = %delivery.to, %code, "deletion receipt given up");
            return;
        }
        warn!(mid = %delivery.mid, to = %delivery.to, %code, "delivery given up");
        self.outputs.push_back(Output::Failed {
            mid: delivery.mid,
            to: delivery.to,
            code,
        });
    }

    fn give_up(&mut self, delivery: Delivery, code: Code) {
        self.report_failed(&delivery, code);
        self.conclude(delivery, false);
    }

    /// The delivery is over: acknowledged (`delivered`) or given up.
    fn conclude(&mut self, delivery: Delivery, delivered: bool) {
        if delivery.kind == DeliveryKind::Stream {
            if delivered {
                self.outputs.push_back(Output::StreamDone {
                    mid: delivery.mid,
                    refused: None,
                });
            }
            return;
        }
        match delivery.kind.outbox_kind() {
            None => self.relays = self.relays.saturating_sub(1),
            Some(kind) => {
                self.unwritten.push(DeliveryOutcome {
                    mid: delivery.mid,
                    kind,
                    to: delivery.to,
                    delivered,
                });
                self.write_outcomes();
            }
        }
    }

    fn write_outcomes(&mut self) {
        if self.writing || self.unwritten.is_empty() {
            return;
        }
        self.writing = true;
        self.outputs
            .push_back(Output::WriteOutcomes(std::mem::take(&mut self.unwritten)));
    }
}
