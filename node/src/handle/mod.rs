//! The public handle: [`Node::start`] opens the data dir, builds the swarm and spawns the event
//! loop; the cheap, cloneable [`Node`] sends it commands and runs store work itself, in place or
//! on the blocking pool. `people` adds the calls about other accounts (contacts, blocking),
//! `rooms` founded rooms (create, invite, approve, kick, managers, cancel),
//! `inbox` the list of conversations, `streams` live data.

mod inbox;
mod people;
mod rooms;
mod streams;

use std::sync::{Arc, Mutex, Weak};

use libp2p::PeerId;
use tim_protocol::{AccountId, Action, Envelope, MessageId, Recipient, RoomId, MAX_BODY_LEN};
use tim_storage::{Entry, Page};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::warn;

use crate::{
    command::Command,
    core::{now_ms, ClosingStore, Core, Counters, Inline},
    delivery::{Delivery, DeliveryKind},
    keys,
    net::EventLoop,
    status::Status,
    Config, Conversation, Deletion, Error, Event, Metrics, Result,
};

/// How long a clean stop waits for contacts' nodes to take the offline notice.
const OFFLINE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Capacity of the command channel from handles to the event loop.
const COMMAND_CAPACITY: usize = 256;
/// Capacity of the channel of deletion receipts from inbound work to the event loop.
const REPLY_CAPACITY: usize = 1024;
/// Capacity of the channel of room work inbound work asks of the event loop.
const ROOM_WORK_CAPACITY: usize = 64;

/// Returned by [`Node::send`] as soon as the message is signed and stored locally (state `sent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The new message's id.
    pub mid: MessageId,
    /// Where it was sent.
    pub conversation: Conversation,
    /// Its send time, ms since the epoch.
    pub sent_at: u64,
}

/// The acknowledgement of a revoke or burn: names the message, the action and the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlAck {
    /// The revoked or burned message.
    pub mid: MessageId,
    /// Revoke or burn.
    pub action: Action,
    /// Where the message was.
    pub conversation: Conversation,
}

/// What [`Node::mark_read`] hands back: the body of the message that was opened, and its read
/// state. For a received burn-after-reading message this is the one place the local API gives out
/// the body before it was read, so that showing the body and starting the timer are one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The message's id.
    pub mid: MessageId,
    /// Its body (opened, if it travelled sealed).
    pub body: Vec<u8>,
    /// Whether it travelled sealed (end-to-end encrypted).
    pub encrypted: bool,
    /// When the local account first read it, ms since the epoch; `None` for a message it sent.
    pub read_at: Option<u64>,
    /// When the node burns it (ms since the epoch), if it carries `burn_after_read`.
    pub burn_at: Option<u64>,
}

/// A stream of [`Event`]s. A subscriber that falls behind by more than the configured capacity
/// skips the oldest events (logged with their count).
pub struct Events(broadcast::Receiver<Event>, crate::BodyReader);

impl Events {
    /// The next event; `None` once the node is gone. A message's sealed body is opened here, on
    /// the subscriber's task (an [`Event::Undecryptable`] if it does not open).
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.0.recv().await {
                Ok(event) => return Some(self.1.open_event(event)),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    warn!(skipped, "event subscriber fell behind; oldest events skipped");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// A handle to a running node. Cheap to clone; the node stops on [`Node::shutdown`] or when the
/// last handle is dropped. Handles do not keep the node's store open: once it has stopped, their
/// methods return [`Error::NodeStopped`].
#[derive(Clone)]
pub struct Node {
    cmd_tx: mpsc::Sender<Command>,
    core: Weak<Core>,
    account: AccountId,
    peer_id: PeerId,
    counters: Arc<Counters>,
    reader: crate::BodyReader,
}

impl Node {
    /// Starts a node: opens (or creates) the data dir, listens, bootstraps, and spawns its event
    /// loop on the current tokio runtime. Returns once it is listening.
    pub async fn start(config: Config) -> Result<(Node, Events)> {
        let dir = config.data_dir.clone();
        let store_config = tim_storage::Config {
            sync_writes: config.sync_writes,
            outbox_per_recipient: config.outbox_per_recipient,
            outbox_total: config.outbox_total,
            shred_delay: config.shred_delay,
            stranger_messages_each: config.stranger_messages_each,
            stranger_messages_total: config.stranger_messages_total,
            room_stranger_messages: config.room_stranger_messages,
            pending_tombstones_each: config.pending_tombstones_each,
            pending_tombstones_total: config.pending_tombstones_total,
            ..tim_storage::Config::default()
        };
        let config_inbound = config.inbound;
        let rotation = config.seal_key_rotation;
        let (node_key, account_key, (ring, sealed_to), store, (rooms, founded, blocked, inbound), burns, outbox) =
            tokio::task::spawn_blocking(move || -> Result<_> {
                let (node_key, account_key) = keys::load_or_create(&dir)?;
                let ring = keys::load_seal_keys(&dir, &account_key, crate::core::now_ms(), rotation)?;
                let store = tim_storage::Store::open(dir.join("db"), store_config)?;
                let sealed_to = crate::core::load_seal_keys(&store)?;
                let rooms = store.rooms()?;
                let founded = crate::core::load_founded(&store)?;
                let blocked = store.blocks()?;
                let inbound = crate::core::stored_inbound(&store)?.unwrap_or(config_inbound);
                let burns = store.burn_deadlines()?;
                let outbox = store.outbox()?;
                Ok((
                    node_key,
                    account_key,
                    (ring, sealed_to),
                    store,
                    (rooms, founded, blocked, inbound),
                    burns,
                    outbox,
                ))
            })
            .await??;
        let (events, events_rx) = broadcast::channel(config.event_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let (closed_tx, closed_rx) = oneshot::channel();
        let (replies_tx, replies_rx) = mpsc::channel(REPLY_CAPACITY);
        let (room_work_tx, room_work_rx) = mpsc::channel(ROOM_WORK_CAPACITY);
        let core = Arc::new(Core {
            account: account_key.account_id(),
            reader: {
                let reader = crate::core::BodyReader::new(ring);
                reader.restore(sealed_to);
                reader
            },
            seal_direct: config.seal_direct,
            announcements: Default::default(),
            seal_rotation: crate::core::SealRotation {
                dir: config.data_dir.clone(),
                every: config.seal_key_rotation,
            },
            key: account_key,
            peer_id: node_key.public().to_peer_id(),
            store: ClosingStore::new(store, Some(closed_tx)),
            events,
            counters: counters.clone(),
            revoke_window: config.revoke_window,
            revoke_grace: config.revoke_grace,
            started_at: crate::core::now_ms(),
            rooms: Mutex::new(rooms.iter().cloned().collect()),
            founded: Mutex::new(founded),
            blocked: Mutex::new(blocked.into_iter().collect()),
            stream_limiter: Default::default(),
            presence: Default::default(),
            contacts_only: (inbound == crate::Inbound::Contacts).into(),
            sync_window: config.sync_window,
            inline: Inline::new(!config.sync_writes),
            deletion_receipts: config.deletion_receipts,
            replies_out: replies_tx,
            room_work: room_work_tx,
        });
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
        let event_loop = EventLoop::new(
            node_key,
            &config,
            core.clone(),
            (cmd_rx, replies_rx, room_work_rx),
            &rooms,
            &burns,
            outbox,
        )
        .await?;
        let node = Node {
            cmd_tx,
            core: Arc::downgrade(&core),
            account: core.account,
            peer_id: core.peer_id,
            counters,
            reader: core.reader.clone(),
        };
        drop(core);
        tokio::spawn(event_loop.run(closed_rx));
        let reader = node.reader.clone();
        Ok((node, Events(events_rx, reader)))
    }

    /// Opens stored bodies for the local account (the entries of [`Node::history`] carry
    /// bodies as they travelled; a sealed one opens only with the account's seal secrets), and
    /// tells the seal-key records in use.
    pub fn reader(&self) -> crate::BodyReader {
        self.reader.clone()
    }

    /// The local account.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// The node's libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// A new subscription to this node's events, from now on; already ended if the node stopped.
    pub fn subscribe(&self) -> Events {
        match self.core.upgrade() {
            Some(core) => Events(core.events.subscribe(), self.reader.clone()),
            None => Events(broadcast::channel(1).1, self.reader.clone()),
        }
    }

    /// The shared state, while the node runs.
    fn core(&self) -> Result<Arc<Core>> {
        self.core.upgrade().ok_or(Error::NodeStopped)
    }

    /// Bytes used by the node's database directory.
    pub async fn disk_bytes(&self) -> Result<u64> {
        self.blocking(|core| Ok(core.store.disk_bytes())).await
    }

    /// The node's counters (the outbox depth reads 0 once the node has stopped).
    pub fn metrics(&self) -> Metrics {
        let mut m = self.counters.snapshot();
        if let Some(core) = self.core.upgrade() {
            m.outbox_depth = core.store.outbox_len() as u64;
        }
        m
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Core) -> Result<T> + Send + 'static) -> Result<T> {
        let core = self.core()?;
        tokio::task::spawn_blocking(move || f(&core)).await?
    }

    /// A short store job (sign and store one item): done in the caller's task when the node's
    /// inline slot is free (no thread hand-off before it is on its way), else on the blocking pool.
    async fn inline_or_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Core) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let core = self.core()?;
        if let Some(_slot) = core.inline.slot() {
            return f(&core);
        }
        tokio::task::spawn_blocking(move || f(&core)).await?
    }

    /// Hands commands to the loop from a store job: at once if there is room (so a job on the
    /// blocking pool needs no second hop through the caller), else after the job, by waiting.
    fn hand_over(cmd_tx: &mpsc::Sender<Command>, commands: Vec<Command>) -> Result<Vec<Command>> {
        let mut left = Vec::new();
        for command in commands {
            if !left.is_empty() {
                left.push(command);
                continue;
            }
            match cmd_tx.try_send(command) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(command)) => left.push(command),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(Error::NodeStopped),
            }
        }
        Ok(left)
    }

    /// Sends a message to an account (direct) or a room. Returns once it is signed and stored
    /// locally; delivery is reported later by an [`Event::Delivered`] (direct messages).
    /// `burn_after_read` (direct only) makes the receiver burn it that many seconds after reading.
    pub async fn send(&self, to: Recipient, body: Vec<u8>, burn_after_read: Option<u32>) -> Result<Sent> {
        if body.len() > MAX_BODY_LEN {
            return Err(tim_protocol::Error::TooLarge {
                what: "body",
                len: body.len(),
                max: MAX_BODY_LEN,
            }
            .into());
        }
        if let Recipient::Room(room) = &to {
            let core = self.core()?;
            if !core.is_member(room) {
                return Err(Error::BadParameters(format!("join room {room} before sending to it")));
            }
            core.check_local_post(room)?;
        }
        // The store job hands the stored message to the loop itself: one wake-up less before it is
        // on the wire.
        let cmd_tx = self.cmd_tx.clone();
        let (h, mid, left) = self
            .inline_or_blocking(move |core| {
                let (h, mid, frame) = core.send(to, body, burn_after_read)?;
                let command = match &h.to {
                    Recipient::Account(to) => {
                        Command::Deliver(Delivery::new(*to, mid, frame, DeliveryKind::Message, h.sent_at))
                    }
                    Recipient::Room(room) => Command::Publish {
                        room: room.clone(),
                        mid,
                        frame,
                    },
                };
                let left = Self::hand_over(&cmd_tx, vec![command])?;
                Ok((h, mid, left))
            })
            .await?;
        for command in left {
            self.cmd_tx.send(command).await?;
        }
        Ok(Sent {
            mid,
            conversation: Conversation::of(&h, &self.account),
            sent_at: h.sent_at,
        })
    }

    /// Revokes a message the local account sent, for everyone: tombstones it here and sends the
    /// signed revoke to the recipient or the room. Anyone else's message: `4105`.
    pub async fn revoke(&self, mid: MessageId) -> Result<ControlAck> {
        self.revoke_or_burn(Action::Revoke, mid).await
    }

    /// Burns a direct message the local account received: tombstones it here and sends the signed
    /// burn to the sender. A room message: `4104`; a message we sent: `4105`.
    pub async fn burn(&self, mid: MessageId) -> Result<ControlAck> {
        self.revoke_or_burn(Action::Burn, mid).await
    }

    async fn revoke_or_burn(&self, action: Action, mid: MessageId) -> Result<ControlAck> {
        let cmd_tx = self.cmd_tx.clone();
        let (control, left) = self
            .inline_or_blocking(move |core| {
                let (control, destination, frame) = core.revoke_or_burn(action, mid)?;
                let mut commands = Vec::with_capacity(2);
                if action == Action::Revoke {
                    commands.push(Command::Cancel { mid });
                }
                commands.extend(Command::send_control(mid, destination, frame));
                Ok((control, Self::hand_over(&cmd_tx, commands)?))
            })
            .await?;
        for command in left {
            self.cmd_tx.send(command).await?;
        }
        let conversation = Conversation::of(&control.target.header, &self.account);
        Ok(ControlAck {
            mid,
            action,
            conversation,
        })
    }

    /// Forwards an already encoded envelope frame (a message or control message signed by
    /// anyone) to an account's node or a room, as is. Receivers verify it like any other; use it
    /// to relay a peer's control message. Nothing is stored or checked locally.
    pub async fn relay(&self, to: Recipient, frame: Vec<u8>) -> Result<()> {
        let envelope: Envelope = tim_protocol::decode(&frame)?;
        let mid = match &envelope {
            Envelope::Message(m) => m.id(),
            Envelope::Control(c) => c.target.id(),
            Envelope::Receipt(r) => r.target,
            Envelope::Contact(c) => c.id(),
            Envelope::Stream(s) => s.id(),
            Envelope::Room(op) => op.id(),
            Envelope::Invite { invite, .. } => invite.id(),
            Envelope::Presence(_) | Envelope::SealKey(_) => MessageId::from_bytes(rand::random()),
        };
        let command = match to {
            Recipient::Account(to) => Command::Deliver(Delivery::new(to, mid, frame, DeliveryKind::Relay, now_ms())),
            Recipient::Room(room) => Command::Publish { room, mid, frame },
        };
        Ok(self.cmd_tx.send(command).await?)
    }

    /// Refuses every connection with `peer` (closing current ones) until [`Node::unblock_peer`].
    /// Not persisted.
    pub async fn block_peer(&self, peer: PeerId) -> Result<()> {
        Ok(self.cmd_tx.send(Command::Block { peer, blocked: true }).await?)
    }

    /// Lifts a [`Node::block_peer`].
    pub async fn unblock_peer(&self, peer: PeerId) -> Result<()> {
        Ok(self.cmd_tx.send(Command::Block { peer, blocked: false }).await?)
    }

    /// Opens a message: marks a received one read (the first read time stands) and returns its
    /// body. If it carries `burn_after_read`, the node burns it that many seconds after the first
    /// read (the timer survives a restart); [`Opened::burn_at`] is that deadline. A message the
    /// local account sent is returned unchanged.
    pub async fn mark_read(&self, mid: MessageId) -> Result<Opened> {
        let opened = self.blocking(move |core| core.mark_read(mid)).await?;
        if let Some(deadline) = opened.burn_at {
            self.cmd_tx.send(Command::ScheduleBurn { mid, deadline }).await?;
        }
        Ok(opened)
    }

    /// A page of a conversation's history, newest first; revoked and burned messages appear as
    /// markers. `limit` is 1 to 500. Entries hold the bodies of unread burn-after-reading
    /// messages too; the local API seals those until [`Node::mark_read`] opens them.
    pub async fn history(&self, conversation: &Conversation, before: Option<MessageId>, limit: usize) -> Result<Page> {
        let conv = conversation.to_storage(&self.account);
        self.blocking(move |core| Ok(core.store.history(&conv, before.as_ref(), limit)?))
            .await
    }

    /// Where a revoke or burn the local account made took effect: the replicas expected to
    /// confirm it, the signed receipts they sent, and those still pending. `4109` when `mid` was
    /// not revoked or burned here, `4105` when another account did it.
    pub async fn deletion(&self, mid: MessageId) -> Result<Deletion> {
        self.blocking(move |core| core.deletion(mid)).await
    }

    /// The replicas a deletion by the local account of the message with this header must reach:
    /// the other party of a direct message, the members of a private founded room when it was
    /// sent; `None` for other rooms.
    pub fn expected_replicas(&self, target: &tim_protocol::Header) -> Option<Vec<AccountId>> {
        self.core().ok()?.expected_replicas(target)
    }

    /// How many replicas confirmed each of these deletions (0 for an id that is not one of the
    /// local account's deletions).
    pub async fn confirmed_counts(&self, mids: Vec<MessageId>) -> Result<Vec<usize>> {
        self.blocking(move |core| core.confirmed_counts(&mids)).await
    }

    /// The message or tombstone with this id, as stored here.
    pub async fn entry(&self, mid: MessageId) -> Result<Option<Entry>> {
        self.blocking(move |core| Ok(core.store.entry(&mid)?)).await
    }

    /// Joins a room: subscribes to its topic; remembered across restarts. A founded room's join
    /// is a signed operation: it takes an invitation held here, joins an open room, or asks a
    /// private room's managers to approve.
    pub async fn join(&self, room: RoomId) -> Result<()> {
        if tim_protocol::room::is_founded_id(&room) {
            return self.join_founded(room).await;
        }
        self.subscribe_room(room).await
    }

    /// Joins a room's topic and remembers it.
    pub(super) async fn subscribe_room(&self, room: RoomId) -> Result<()> {
        let r = room.clone();
        self.blocking(move |core| {
            core.store.set_room(&r, true)?;
            if let Ok(mut rooms) = core.rooms.lock() {
                rooms.insert(r);
            }
            Ok(())
        })
        .await?;
        let (reply, rx) = oneshot::channel();
        self.cmd_tx.send(Command::Join { room, reply }).await?;
        rx.await?
    }

    /// Leaves a room (a founded room's with a signed `Leave` its members apply).
    pub async fn leave(&self, room: RoomId) -> Result<()> {
        if tim_protocol::room::is_founded_id(&room) {
            self.leave_founded(&room).await?;
        }
        self.unsubscribe_room(room).await
    }

    /// Leaves a room's topic and forgets it.
    pub(super) async fn unsubscribe_room(&self, room: RoomId) -> Result<()> {
        let r = room.clone();
        self.blocking(move |core| {
            core.store.set_room(&r, false)?;
            if let Ok(mut rooms) = core.rooms.lock() {
                rooms.remove(&r);
            }
            Ok(())
        })
        .await?;
        let (reply, rx) = oneshot::channel();
        self.cmd_tx.send(Command::Leave { room, reply }).await?;
        rx.await?
    }

    /// The node's status.
    pub async fn status(&self) -> Result<Status> {
        let (reply, rx) = oneshot::channel();
        self.cmd_tx.send(Command::Status { reply }).await?;
        Ok(rx.await?)
    }

    /// Finds the peer that serves `account`, through the DHT (or the route cache). Fails with
    /// `5105 unreachable` if no valid route record is found.
    pub async fn lookup(&self, account: AccountId) -> Result<PeerId> {
        let (reply, rx) = oneshot::channel();
        self.cmd_tx.send(Command::Lookup { account, reply }).await?;
        rx.await?
    }

    /// Stops the node: closes connections, waits for in-flight store work, and returns once the
    /// store is closed, so the data dir can be reopened or removed. Handles outlive it and then
    /// return [`Error::NodeStopped`].
    pub async fn shutdown(&self) -> Result<()> {
        // Contacts learn at once that this account went offline (not after the timeout).
        self.announce_offline(OFFLINE_WAIT).await;
        let (reply, rx) = oneshot::channel();
        self.cmd_tx.send(Command::Shutdown { reply }).await?;
        Ok(rx.await?)
    }
}
