//! A [`Core`] over a store in a temp dir, for unit tests of the store operations.

use std::sync::Mutex;

use libp2p::PeerId;
use tim_protocol::{seal::Keyring, AccountKey, RoomId};
use tim_storage::Store;
use tokio::sync::broadcast;

use super::{ClosingStore, Core, Inline};

/// A core for `key`'s account sealing with `ring`, its store in `dir`, having joined `rooms`.
pub(crate) fn core(dir: &std::path::Path, key: AccountKey, ring: Keyring, rooms: &[RoomId]) -> Core {
    let store = Store::open(dir, tim_storage::Config::default()).unwrap_or_else(|e| panic!("{e}"));
    for room in rooms {
        store.set_room(room, true).unwrap_or_else(|e| panic!("{e}"));
    }
    Core {
        account: key.account_id(),
        reader: super::BodyReader::new(ring),
        seal_direct: true,
        announcements: Default::default(),
        seal_rotation: super::sealing::SealRotation {
            dir: dir.to_path_buf(),
            every: std::time::Duration::from_secs(7 * 24 * 3600),
        },
        key,
        peer_id: PeerId::random(),
        store: ClosingStore::new(store, None),
        events: broadcast::channel(64).0,
        counters: Default::default(),
        revoke_window: None,
        revoke_grace: tim_protocol::policy::DEFAULT_REVOKE_GRACE,
        started_at: 0,
        rooms: Mutex::new(rooms.iter().cloned().collect()),
        founded: Mutex::default(),
        room_work: tokio::sync::mpsc::channel(1).0,
        blocked: Mutex::default(),
        stream_limiter: Default::default(),
        presence: Default::default(),
        contacts_only: Default::default(),
        sync_window: 10_000,
        inline: Inline::new(true),
        deletion_receipts: true,
        replies_out: tokio::sync::mpsc::channel(16).0,
    }
}
