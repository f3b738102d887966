//! The node's shared state and its blocking operations (verify, store, tombstone): called from
//! `spawn_blocking`, never on the swarm task.

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use libp2p::PeerId;
use tim_protocol::{
    decode, encode, policy, AccountId, AccountKey, Ack, Action, Code, Control, Envelope, Header, Message, MessageId,
    Recipient, RoomId, SyncPage, SyncRequest, Verified, Via,
};
use tim_storage::{OutKind, Outgoing, PutOutcome, State, Store, TombstoneOutcome};
use tokio::sync::{broadcast, oneshot, Semaphore};
use tracing::{debug, warn};

use crate::{Conversation, Error, Event, Result};

/// Counters a node keeps; read with `Node::metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) revokes_applied: AtomicU64,
    pub(crate) burns_applied: AtomicU64,
    pub(crate) forged_rejected: AtomicU64,
    pub(crate) invalid_rejected: AtomicU64,
    pub(crate) delivery_failures: AtomicU64,
    pub(crate) sync_pages: AtomicU64,
}

/// A snapshot of a node's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Messages received and stored.
    pub messages_in: u64,
    /// Messages sent by this node's account.
    pub messages_out: u64,
    /// Revokes applied (local and remote).
    pub revokes_applied: u64,
    /// Burns applied (local and remote).
    pub burns_applied: u64,
    /// Control messages refused because their signature or permission failed (forgeries).
    pub forged_rejected: u64,
    /// Other inbound items refused as invalid (malformed, bad signature, wrong path).
    pub invalid_rejected: u64,
    /// Deliveries given up.
    pub delivery_failures: u64,
    /// Undelivered entries in the outbox.
    pub outbox_depth: u64,
    /// Room sync pages received and applied.
    pub sync_pages_applied: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Metrics {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            messages_in: g(&self.messages_in),
            messages_out: g(&self.messages_out),
            revokes_applied: g(&self.revokes_applied),
            burns_applied: g(&self.burns_applied),
            forged_rejected: g(&self.forged_rejected),
            invalid_rejected: g(&self.invalid_rejected),
            delivery_failures: g(&self.delivery_failures),
            outbox_depth: 0,
            sync_pages_applied: g(&self.sync_pages),
        }
    }
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Milliseconds since the Unix epoch by the local clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What became of an inbound item; decides the ack and the gossip verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Stored or applied.
    Stored,
    /// Already had it.
    Duplicate,
    /// Valid but not taken (tombstoned, over policy, local failure): do not forward, do not
    /// penalise the peer.
    Ignored(Code),
    /// Invalid: refuse and penalise the peer.
    Invalid(Code),
}

impl Verdict {
    pub(crate) fn ack(self) -> Ack {
        match self {
            Verdict::Stored => Ack::Stored,
            Verdict::Duplicate => Ack::Duplicate,
            Verdict::Ignored(code) | Verdict::Invalid(code) => Ack::Refused { code: code.number() },
        }
    }
}

/// An outbox entry whose delivery is over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finished {
    pub(crate) mid: MessageId,
    pub(crate) kind: OutKind,
    pub(crate) to: AccountId,
    /// Acknowledged by the recipient (else given up).
    pub(crate) delivered: bool,
}

/// Where a control message must go after it was applied locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// To the other party of a direct message.
    Account(AccountId),
    /// To the room's topic.
    Room(tim_protocol::RoomId),
    /// Nowhere (a message to oneself).
    Local,
}

/// Lets an async task (a pipe's, or a gossip item's) run a short store job itself instead of
/// handing it to the blocking pool: a lone item's latency is mostly thread hand-offs, not work.
/// One job at a time per node, so at most one runtime worker is ever busy with tim's store work
/// and the swarm and other tasks keep the rest; under load (the slot taken) jobs go to the
/// blocking pool as usual. Off when every write waits for an fsync.
#[derive(Clone)]
pub(crate) struct Inline {
    slot: Arc<Semaphore>,
    enabled: bool,
}

impl Inline {
    pub(crate) fn new(enabled: bool) -> Self {
        Inline {
            slot: Arc::new(Semaphore::new(1)),
            enabled,
        }
    }

    /// The slot, if it is free (and in-place jobs are enabled): hold it while the job runs.
    pub(crate) fn slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if !self.enabled {
            return None;
        }
        self.slot.try_acquire().ok()
    }

    /// Runs `job` here and now if the slot is free; `None` if it must go elsewhere.
    pub(crate) fn try_run<T>(&self, job: impl FnOnce() -> T) -> Option<T> {
        let _slot = self.slot()?;
        Some(job())
    }
}

/// State shared by the handle, the event loop and blocking tasks.
pub(crate) struct Core {
    pub(crate) key: AccountKey,
    pub(crate) account: AccountId,
    pub(crate) peer_id: PeerId,
    pub(crate) store: Store,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) revoke_window: Option<Duration>,
    /// Joined rooms (persisted in the store; kept here for quick checks).
    pub(crate) rooms: Mutex<BTreeSet<RoomId>>,
    /// How many newest room-log entries to serve to a peer syncing from scratch.
    pub(crate) sync_window: usize,
    /// The node's one slot for store jobs done in place.
    pub(crate) inline: Inline,
    /// Dropped after `store` (fields drop in declaration order): its receiver learns that the
    /// database is closed and the data dir free. Keep it the last field.
    pub(crate) _closed: Option<oneshot::Sender<()>>,
}

/// Most items in one served sync page.
const SYNC_PAGE_ITEMS: usize = 256;
/// Most frame bytes in one served sync page (well under `MAX_SYNC_PAGE_LEN`).
const SYNC_PAGE_BYTES: usize = 1024 * 1024;

impl Core {
    pub(crate) fn emit(&self, event: Event) {
        // No subscriber is fine: events are informational, the store is the truth.
        let _ = self.events.send(event);
    }

    fn conversation(&self, header: &tim_protocol::Header) -> Conversation {
        Conversation::of(header, &self.account)
    }

    pub(crate) fn is_member(&self, room: &RoomId) -> bool {
        self.rooms.lock().map(|r| r.contains(room)).unwrap_or(false)
    }

    /// Signs and stores a new message from the local account (state `sent`); a direct message is
    /// queued in the outbox in the same write. Returns its header, id and frame.
    pub(crate) fn send(
        &self,
        to: Recipient,
        body: Vec<u8>,
        burn_after_read: Option<u32>,
    ) -> Result<(Header, MessageId, Vec<u8>)> {
        let message = Message::sign(&self.key, to, body, now_ms(), burn_after_read)?;
        let frame = encode(&Envelope::Message(message.get().clone()))?;
        let h = message.head().clone();
        match &h.to {
            Recipient::Account(to) if *to != self.account => {
                let outgoing = Outgoing {
                    to: *to,
                    kind: OutKind::Message,
                    frame: frame.clone(),
                    queued_at: now_ms(),
                };
                self.store.put_outgoing(&message, outgoing)?
            }
            _ => self.store.put_message(&message, State::Sent)?,
        };
        bump(&self.counters.messages_out);
        self.emit(Event::Message {
            mid: message.id(),
            from: h.from,
            conversation: self.conversation(&h),
            sent_at: h.sent_at,
            body: message.body.clone(),
            burn_after_read: h.burn_after_read,
        });
        Ok((h, message.id(), frame))
    }

    /// Revokes or burns `mid` as the local account: checks the rules, signs, tombstones locally
    /// (queuing the control message in the outbox for a direct message, in the same write) and
    /// says where the control message must go.
    pub(crate) fn local_control(&self, action: Action, mid: MessageId) -> Result<(Verified<Control>, Route, Vec<u8>)> {
        let now = now_ms();
        let target = match self.store.entry(&mid)? {
            None => return Err(Error::NotFound(mid)),
            Some(tim_storage::Entry::Tombstone(_)) => return Err(Error::Tombstoned(mid)),
            Some(tim_storage::Entry::Message(stored)) => stored.message.header,
        };
        policy::check_local_control(action, &target.header, &self.account, now, self.revoke_window)?;
        // The target comes from our store, which holds only verified messages.
        let control = Control::sign_known(&self.key, action, target, now)?;
        let frame = encode(&Envelope::Control(control.get().clone()))?;
        let h = &control.target.header;
        let route = match (&h.to, action) {
            (Recipient::Room(room), _) => Route::Room(room.clone()),
            (Recipient::Account(to), _) if *to == h.from => Route::Local,
            (Recipient::Account(to), Action::Revoke) => Route::Account(*to),
            (Recipient::Account(_), Action::Burn) => Route::Account(h.from),
        };
        let outcome = match &route {
            Route::Account(to) => {
                let outgoing = Outgoing {
                    to: *to,
                    kind: OutKind::Control,
                    frame: frame.clone(),
                    queued_at: now,
                };
                self.store.apply_tombstone_outgoing(&control, outgoing)?
            }
            _ => self.store.apply_tombstone(&control)?,
        };
        match outcome {
            TombstoneOutcome::Applied { .. } => self.tombstoned(&control),
            TombstoneOutcome::Duplicate => return Err(Error::Tombstoned(mid)),
        }
        Ok((control, route, frame))
    }

    /// Outbox entries are done, acknowledged (`delivered`) or given up, in one write. A delivered
    /// message moves to `delivered` and is reported.
    pub(crate) fn deliveries_done(&self, done: &[Finished]) {
        let items: Vec<_> = done.iter().map(|f| (f.mid, f.kind, f.delivered)).collect();
        match self.store.outbox_done_many(&items) {
            Ok(existed) => {
                for (f, existed) in done.iter().zip(existed) {
                    if existed && f.delivered && f.kind == OutKind::Message {
                        self.emit(Event::Delivered { mid: f.mid, to: f.to });
                    }
                }
            }
            Err(e) => warn!(count = done.len(), error = %e, "could not update the outbox"),
        }
    }

    /// Serves a page of a joined room's log to a member catching up.
    pub(crate) fn serve_sync(&self, req: &SyncRequest) -> SyncPage {
        let empty = SyncPage {
            frames: Vec::new(),
            next: req.after,
            more: false,
        };
        if !self.is_member(&req.room) {
            return empty;
        }
        let limit = (req.limit as usize).clamp(1, SYNC_PAGE_ITEMS);
        match self
            .store
            .room_log(&req.room, req.after, limit, SYNC_PAGE_BYTES, self.sync_window)
        {
            Ok(page) => SyncPage {
                frames: page.frames,
                next: page.next,
                more: page.more,
            },
            Err(e) => {
                warn!(room = %req.room, error = %e, "could not serve a sync page");
                empty
            }
        }
    }

    /// Applies a sync page from `peer` exactly as if its items came by gossip, tombstones first so
    /// a message revoked while we were away is never shown, then records the cursor.
    pub(crate) fn apply_sync(&self, room: &RoomId, peer: &[u8], page: &SyncPage) -> Result<()> {
        let via = Via::Room(room.clone());
        let mut messages = Vec::with_capacity(page.frames.len());
        for frame in &page.frames {
            // Control messages (and anything malformed) one by one, before any message.
            match decode::<Envelope>(frame) {
                Ok(Envelope::Message(m)) => messages.push(m),
                Ok(control) => {
                    self.verdict_of(self.try_envelope(control, &via, || {}), &via);
                }
                Err(e) => {
                    self.verdict_of(Err(e.into()), &via);
                }
            }
        }
        // Messages already held (stored or tombstoned) are skipped unverified: a periodic re-sync
        // brings back mostly what gossip delivered. The rest: the same checks as gossip, verified
        // on every core, stored in one batch.
        let ids: Vec<MessageId> = messages.iter().map(Message::id).collect();
        let known = self.store.known_many(&ids)?;
        let messages: Vec<Message> = messages
            .into_iter()
            .zip(known)
            .filter_map(|(m, known)| (!known).then_some(m))
            .collect();
        let checked = par_map(messages, |m| -> Result<Verified<Message>> {
            policy::check_destination(m.head(), &self.account, &via)?;
            Ok(m.verify()?)
        });
        let mut verified = Vec::with_capacity(checked.len());
        for item in checked {
            match item {
                Ok(m) => verified.push(m),
                Err(e) => {
                    self.verdict_of(Err(e), &via);
                }
            }
        }
        let items: Vec<(&Verified<Message>, State)> = verified.iter().map(|m| (m, State::Received)).collect();
        for (message, outcome) in verified.iter().zip(self.store.put_messages(&items)?) {
            match outcome {
                Ok(PutOutcome::Stored) => self.stored(message),
                Ok(PutOutcome::Duplicate) => {}
                Err(e) => {
                    self.verdict_of(Err(e.into()), &via);
                }
            }
        }
        self.store.set_sync_cursor(room, peer, page.next)?;
        bump(&self.counters.sync_pages);
        Ok(())
    }

    /// A received message was stored: count and report it.
    fn stored(&self, message: &Verified<Message>) {
        bump(&self.counters.messages_in);
        let h = message.head();
        self.emit(Event::Message {
            mid: message.id(),
            from: h.from,
            conversation: self.conversation(h),
            sent_at: h.sent_at,
            body: message.body.clone(),
            burn_after_read: h.burn_after_read,
        });
    }

    fn tombstoned(&self, control: &Verified<Control>) {
        let counter = match control.action {
            Action::Revoke => &self.counters.revokes_applied,
            Action::Burn => &self.counters.burns_applied,
        };
        bump(counter);
        let conversation = self.conversation(&control.target.header);
        self.emit(Event::tombstone(control.action, control.id(), control.by, conversation));
    }

    /// Marks a received message read; returns its burn deadline, if it has one. Reading a message
    /// the local account sent changes nothing.
    pub(crate) fn mark_read(&self, mid: MessageId) -> Result<Option<u64>> {
        let Some(stored) = self.store.message(&mid)? else {
            return Err(match self.store.tombstone(&mid)? {
                Some(_) => Error::Tombstoned(mid),
                None => Error::NotFound(mid),
            });
        };
        if stored.message.head().from == self.account {
            return Ok(None);
        }
        let Some(record) = self.store.mark_read(&mid, now_ms())? else {
            return Err(Error::Tombstoned(mid));
        };
        let h = record.message.head();
        Ok(h.burn_after_read
            .zip(record.read_at)
            .map(|(secs, read_at)| read_at.saturating_add(u64::from(secs) * 1000)))
    }

    /// Decodes, verifies, stores or applies an inbound frame that arrived `via` a path.
    pub(crate) fn inbound(&self, bytes: &[u8], via: &Via) -> Verdict {
        self.inbound_early(bytes, via, || {})
    }

    /// [`Core::inbound`], calling `valid` as soon as the item passed every check that needs no
    /// write (decoding, destination, signatures, rules, not tombstoned here) and before it is
    /// stored, so gossip can forward it without waiting for the disk. Storing is idempotent and
    /// tombstones win, so a store that fails afterwards loses nothing the room cannot resend.
    pub(crate) fn inbound_early(&self, bytes: &[u8], via: &Via, valid: impl FnOnce()) -> Verdict {
        let result = decode::<Envelope>(bytes)
            .map_err(Error::from)
            .and_then(|envelope| self.try_envelope(envelope, via, valid));
        self.verdict_of(result, via)
    }

    /// The verdict on an inbound item's outcome: failures are logged and counted by kind.
    fn verdict_of(&self, result: Result<Verdict>, via: &Via) -> Verdict {
        match result {
            Ok(verdict) => verdict,
            Err(e) => {
                let code = e.code();
                match e {
                    Error::Storage(tim_storage::Error::Tombstoned(mid)) => {
                        debug!(%mid, "refused a copy of a tombstoned message");
                        Verdict::Ignored(code)
                    }
                    Error::Storage(e) => {
                        warn!(error = %e, "storage failed on inbound item");
                        Verdict::Ignored(code)
                    }
                    Error::Protocol(tim_protocol::Error::Expired(_)) => Verdict::Ignored(code),
                    other => {
                        bump(&self.counters.invalid_rejected);
                        debug!(error = %other, ?via, "rejected invalid inbound item");
                        Verdict::Invalid(code)
                    }
                }
            }
        }
    }

    fn try_envelope(&self, envelope: Envelope, via: &Via, valid: impl FnOnce()) -> Result<Verdict> {
        policy::check_destination(policy::header_of(&envelope), &self.account, via)?;
        match envelope {
            Envelope::Message(message) => {
                let message = message.verify()?;
                if self.store.is_tombstoned(&message.id())? {
                    return Err(tim_storage::Error::Tombstoned(message.id()).into());
                }
                valid();
                match self.store.put_message(&message, State::Received)? {
                    PutOutcome::Duplicate => Ok(Verdict::Duplicate),
                    PutOutcome::Stored => {
                        self.stored(&message);
                        Ok(Verdict::Stored)
                    }
                }
            }
            Envelope::Control(control) => {
                // A revoke of a message we hold needs only its own signature checked. A held
                // message is not tombstoned (the two change in one batch), so only a target we do
                // not hold needs the tombstone lookup.
                let target = control.target.id();
                let known = self.store.message(&target)?.map(|m| m.message.header);
                if known.is_none() && self.store.is_tombstoned(&target)? {
                    return Ok(Verdict::Duplicate);
                }
                let control = match control.verify_known(known.as_ref()) {
                    Ok(c) => c,
                    Err(e) => {
                        if matches!(e.code(), Code::InvalidSignature | Code::PermissionDenied) {
                            bump(&self.counters.forged_rejected);
                            warn!(error = %e, ?via, "refused a forged control message");
                        }
                        return Err(e.into());
                    }
                };
                policy::check_inbound_control(&control, &self.account, via, self.revoke_window)?;
                valid();
                match self.store.apply_tombstone(&control)? {
                    TombstoneOutcome::Duplicate => Ok(Verdict::Duplicate),
                    TombstoneOutcome::Applied { .. } => {
                        self.tombstoned(&control);
                        Ok(Verdict::Stored)
                    }
                }
            }
        }
    }
}

/// `f` over `items`, in order, spread over the machine's cores (at most one scoped thread per
/// core, the caller's included): the signature checks of a sync page run in parallel.
fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 || items.len() < 8 {
        return items.into_iter().map(f).collect();
    }
    let size = items.len().div_ceil(cores);
    let mut chunks: Vec<(usize, Vec<T>)> = Vec::with_capacity(cores);
    let mut rest = items.into_iter();
    loop {
        let chunk: Vec<T> = rest.by_ref().take(size).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push((chunks.len(), chunk));
    }
    let queue = Mutex::new(chunks);
    let done = Mutex::new(Vec::with_capacity(cores));
    let work = || loop {
        let next = queue.lock().ok().and_then(|mut q| q.pop());
        let Some((i, chunk)) = next else { break };
        let part: Vec<R> = chunk.into_iter().map(&f).collect();
        if let Ok(mut d) = done.lock() {
            d.push((i, part));
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..cores {
            // If a thread cannot be started, the caller's thread takes its share.
            let _ = std::thread::Builder::new().spawn_scoped(scope, work);
        }
        work();
    });
    let mut parts = done.into_inner().unwrap_or_else(|p| p.into_inner());
    parts.sort_by_key(|(i, _)| *i);
    parts.into_iter().flat_map(|(_, part)| part).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn core(dir: &std::path::Path, key: AccountKey, room: &RoomId) -> Core {
        let store = Store::open(dir, tim_storage::Config::default()).unwrap();
        store.set_room(room, true).unwrap();
        Core {
            account: key.account_id(),
            key,
            peer_id: PeerId::random(),
            store,
            events: broadcast::channel(64).0,
            counters: Default::default(),
            revoke_window: None,
            rooms: Mutex::new([room.clone()].into_iter().collect()),
            sync_window: 10_000,
            inline: Inline::new(true),
            _closed: None,
        }
    }

    fn post(key: &AccountKey, room: &RoomId, i: u8) -> Message {
        let to = Recipient::Room(room.clone());
        let body = format!("room message {i}").into_bytes();
        Message::sign_with_nonce(key, to, body, 1_700_000_000_000 + u64::from(i), None, [i; 16])
            .unwrap()
            .into_inner()
    }

    fn frame(env: Envelope) -> Vec<u8> {
        encode(&env).unwrap()
    }

    /// A sync page mixing good items, forgeries, a wrong room, a duplicate and a revoke placed
    /// after its message: only the good ones are stored, the revoked one never is, each
    /// forgery is counted, and the cursor moves.
    #[test]
    fn sync_page_applies_tombstones_first_and_refuses_bad_items() {
        let dir = tempfile::tempdir().unwrap();
        let (me, alice, eve) = (
            AccountKey::from_secret_bytes(&[1; 32]),
            AccountKey::from_secret_bytes(&[2; 32]),
            AccountKey::from_secret_bytes(&[3; 32]),
        );
        let room = RoomId::new("general").unwrap();
        let other = RoomId::new("elsewhere").unwrap();
        let core = core(dir.path(), me, &room);
        let mut events = core.events.subscribe();
        let good: Vec<Message> = (0..20).map(|i| post(&alice, &room, i)).collect();
        let revoked = good[3].clone();
        let revoke = Control::sign(&alice, Action::Revoke, revoked.header.clone(), 1_700_000_100_000).unwrap();
        let mut forged = post(&alice, &room, 100);
        forged.header.header.sent_at += 1; // breaks the signature
        let mut forged_revoke = Control::sign(&alice, Action::Revoke, good[5].header.clone(), 1)
            .unwrap()
            .into_inner();
        forged_revoke.by = eve.account_id(); // eve claims alice's revoke
        let mut frames: Vec<Vec<u8>> = good.iter().map(|m| frame(Envelope::Message(m.clone()))).collect();
        frames.push(frame(Envelope::Message(forged.clone())));
        frames.push(frame(Envelope::Message(post(&alice, &other, 101))));
        frames.push(frame(Envelope::Message(good[7].clone()))); // duplicate in the same page
        frames.push(frame(Envelope::Control(forged_revoke)));
        frames.push(frame(Envelope::Control(revoke.get().clone()))); // after its message
        frames.push(vec![0xff, 0, 1]); // garbage
        let page = SyncPage {
            frames,
            next: 42,
            more: false,
        };
        core.apply_sync(&room, b"peer", &page).unwrap();

        for (i, m) in good.iter().enumerate() {
            let entry = core.store.entry(&m.id()).unwrap();
            match i {
                3 => assert!(
                    matches!(entry, Some(tim_storage::Entry::Tombstone(_))),
                    "revoked one is a tombstone"
                ),
                _ => assert!(
                    matches!(entry, Some(tim_storage::Entry::Message(_))),
                    "message {i} stored"
                ),
            }
        }
        assert!(core.store.entry(&forged.id()).unwrap().is_none());
        assert_eq!(core.store.sync_cursor(&room, b"peer").unwrap(), 42);
        let m = core.counters.snapshot();
        assert_eq!(m.messages_in, 19);
        assert_eq!(m.revokes_applied, 1);
        assert_eq!(m.forged_rejected, 1, "eve's revoke");
        assert_eq!(
            m.invalid_rejected, 4,
            "bad signature, wrong room, forged revoke, garbage"
        );
        // The revoked message was never shown.
        let mut shown = 0;
        while let Ok(e) = events.try_recv() {
            if let Event::Message { mid, .. } = e {
                assert_ne!(mid, revoked.id(), "a revoked message was shown");
                shown += 1;
            }
        }
        assert_eq!(shown, 19);

        // A re-sync of what is already here (as a periodic sync brings back what gossip
        // delivered) verifies nothing again and changes nothing: a copy of a held message with
        // a broken signature has the same id and is skipped, not stored over the original.
        let mut tampered = good[0].clone();
        tampered.header.signature[0] ^= 1;
        let page = SyncPage {
            frames: vec![
                frame(Envelope::Message(tampered)),
                frame(Envelope::Message(good[1].clone())),
                frame(Envelope::Message(revoked.clone())),
                frame(Envelope::Control(revoke.get().clone())),
            ],
            next: 46,
            more: false,
        };
        core.apply_sync(&room, b"peer", &page).unwrap();
        let after = core.counters.snapshot();
        assert_eq!((after.messages_in, after.revokes_applied), (19, 1));
        assert_eq!(after.invalid_rejected, 4, "nothing held was checked again");
        assert!(events.try_recv().is_err(), "a re-sync emitted an event");
        let Some(tim_storage::Entry::Message(kept)) = core.store.entry(&good[0].id()).unwrap() else {
            panic!("the original is gone")
        };
        assert_eq!(kept.message.header.signature, good[0].header.signature);
        assert!(matches!(
            core.store.entry(&revoked.id()).unwrap(),
            Some(tim_storage::Entry::Tombstone(_))
        ));
        assert_eq!(core.store.sync_cursor(&room, b"peer").unwrap(), 46);
    }

    #[test]
    fn par_map_keeps_every_item_in_order() {
        for n in [0usize, 1, 7, 8, 9, 255, 256, 1000] {
            let out = par_map((0..n).collect(), |i| i * 2);
            assert_eq!(out, (0..n).map(|i| i * 2).collect::<Vec<_>>(), "n = {n}");
        }
    }
}
