//! The node's shared state ([`Core`]) and its store operations: verify, store, tombstone. They
//! block on RocksDB, so they run on the blocking pool, or in place in the calling task when the
//! node's inline slot is free ([`Inline`]).
//!
//! - `blocks`: blocked accounts, refused on every direct path.
//! - `contacts`: contact operations, the local account's and other accounts'.
//! - `closing`: the store, closed on the blocking pool when the last holder drops it.
//! - `metrics`: counters and their snapshot.
//! - `inline`: the one slot for short store jobs done in place.
//! - `local`: what the local account does (send, revoke or burn, mark read, delivery outcomes).
//! - `inbound`: items from peers, and the verdict on each.
//! - `streams`: live data, checked and reported, never stored; a rate per sender.
//! - `requests`: who may message the local account; messages held as requests.
//! - `presence`: the local account's availability for its contacts, and theirs.
//! - `room_sync`: serving and applying room sync pages.
//! - `room_invites`: invitations to founded rooms, and the approval of a join request.
//! - `rooms`: founded rooms: their memberships, operations in and out, who may post.
//! - `sealing`: what a sent body is sealed to, and opening stored bodies.
//! - `seal_records`: the seal-key records other accounts are sealed to, and where they come from.
//! - `seal_announce`: seal-key announcements in private rooms.
//! - `receipts`: deletion receipts, sent for tombstones applied here and kept for this account's
//!   own revokes and burns.

mod blocks;
mod closing;
mod contacts;
mod inbound;
mod inline;
mod local;
mod metrics;
mod presence;
mod receipts;
mod requests;
mod room_invites;
mod room_sync;
mod rooms;
mod seal_announce;
mod seal_records;
mod sealing;
mod streams;
#[cfg(test)]
pub(crate) mod test_core;

use std::{
    collections::{BTreeSet, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use libp2p::PeerId;
use tim_protocol::{AccountId, AccountKey, RoomId};
use tokio::sync::{broadcast, mpsc};

pub(crate) use closing::ClosingStore;
pub(crate) use inbound::Verdict;
pub(crate) use inline::Inline;
pub(crate) use local::Destination;
pub use metrics::Metrics;
pub(crate) use metrics::{bump, Counters};
pub use presence::{ContactPresence, MyPresence, PRESENCE_INTERVAL, PRESENCE_TIMEOUT};
pub use receipts::{Confirmation, Deletion};
pub(crate) use requests::stored_inbound;
pub(crate) use rooms::{load_founded, FoundedRooms};
pub(crate) use seal_records::{load_seal_keys, Change as SealKeysChange, Tier};
pub(crate) use sealing::SealRotation;
pub use sealing::{Body, BodyReader};

use crate::{delivery::Delivery, Conversation, Event};

/// When a message read at `read_at` (ms since the epoch) that burns `secs` after reading is
/// burned; the store keeps the same deadline (`tim_storage` records it at the read).
pub(crate) fn burn_deadline(read_at: u64, secs: u32) -> u64 {
    read_at.saturating_add(u64::from(secs) * 1000)
}

/// Milliseconds since the Unix epoch by the local clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// State shared by the handle, the event loop and blocking tasks.
pub(crate) struct Core {
    pub(crate) key: AccountKey,
    /// Opens stored bodies for the local account.
    pub(crate) reader: BodyReader,
    /// See `Config::seal_direct`.
    pub(crate) seal_direct: bool,
    /// Where the seal secrets are kept and how often a new one is made.
    pub(crate) seal_rotation: sealing::SealRotation,
    /// Seal-key announcements heard in private rooms, and this account's own still to send.
    pub(crate) announcements: Mutex<seal_announce::Announcements>,
    pub(crate) account: AccountId,
    pub(crate) peer_id: PeerId,
    pub(crate) store: ClosingStore,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) revoke_window: Option<Duration>,
    /// See `Config::revoke_grace`.
    pub(crate) revoke_grace: Duration,
    /// When this run of the node started (ms since the epoch): what it held before, it has held
    /// while running only since then.
    pub(crate) started_at: u64,
    /// Joined rooms (persisted in the store; kept here for quick checks).
    pub(crate) rooms: Mutex<BTreeSet<RoomId>>,
    /// Founded rooms known here and their memberships (operations persisted in the store).
    pub(crate) founded: Mutex<FoundedRooms>,
    /// `inbound = "contacts"` is in force (see `requests`).
    pub(crate) contacts_only: std::sync::atomic::AtomicBool,
    /// The local account's presence and what contacts last said.
    pub(crate) presence: presence::PresenceBook,
    /// Per-sender rate of inbound stream frames.
    pub(crate) stream_limiter: streams::StreamLimiter,
    /// Accounts the local account blocked (persisted in the store; kept here for quick checks).
    pub(crate) blocked: Mutex<HashSet<AccountId>>,
    /// How many newest room-log entries to serve to a peer syncing from scratch.
    pub(crate) sync_window: usize,
    /// The node's one slot for store jobs done in place.
    pub(crate) inline: Inline,
    /// See `Config::deletion_receipts`.
    pub(crate) deletion_receipts: bool,
    /// Deliveries queued by inbound work (deletion receipts, contact answers), for the event loop
    /// to deliver (bounded: what does not fit waits in the outbox until the next start).
    pub(crate) replies_out: mpsc::Sender<Delivery>,
    /// Room work inbound work asks of the event loop (bounded; a sync that does not fit waits
    /// for the periodic one, an unsubscribe for the next start).
    pub(crate) room_work: mpsc::Sender<RoomWork>,
}

/// What inbound work asks the event loop to do about a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoomWork {
    /// Sync it with its connected members now (a join request was approved).
    Sync(RoomId),
    /// Leave its topic (the local account was removed from it).
    Unsubscribe(RoomId),
    /// Publish this operation (id, frame) on its topic (a leave that came to the founder).
    Publish(RoomId, tim_protocol::MessageId, Vec<u8>),
}

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
}
