//! A tim node's history on RocksDB: messages by id, a per-conversation index (newest first,
//! paged), and tombstones that destroy revoked or burned bodies on disk, not just hide them.
//!
//! # Layout
//! - `error`: [`Error`], this crate's error enum, with stable codes.
//! - `keys`: column families ([`Cf`]), [`Conversation`]s and the big-endian key layouts that make
//!   "a conversation's history, newest first" a prefix scan.
//! - `record`: what is stored: [`StoredMessage`], [`Tombstone`], [`Entry`], [`State`].
//! - `store/`: [`Store`], one concern per file:
//!   - `mod.rs`: the handle, [`Config`], open and close, helpers the others share;
//!   - `messages.rs`: `put_message(s)`, `put_outgoing`, reads, state and read marks, `history`;
//!   - `tombstones.rs`: `apply_tombstone(_outgoing)`, revokes and burns that destroy a body;
//!   - `shred.rs`: the shredder thread and `shred_now`, which flush and compact so destroyed
//!     bodies leave every file under the database directory;
//!   - `outbox.rs`: frames waiting for a recipient's acknowledgement, and their limits;
//!   - `room_log.rs`: each room's arrival log served to members catching up, and sync cursors;
//!   - `meta.rs`: joined rooms, burn-after-read deadlines and the persisted shred queue;
//!   - `rooms.rs`: founded rooms' applied operations (also in the room log) and invitations;
//!   - `receipts.rs`: deletion receipts replicas sent for this account's revokes and burns;
//!   - `blocks.rs`: blocked accounts; a block drops what the outbox holds for them;
//!   - `contacts.rs`: where the local account stands with each other account;
//!   - `requests.rs`: direct messages held apart from history until their sender is admitted;
//!   - `inbox.rs`: every conversation's newest activity and unread count, newest first.
//! - `owner_only`: [`restrict_to_owner`], owner-only modes for the data dir and the database.
//!
//! Every logical change is one atomic `WriteBatch`; a mutex serialises the check-then-write of
//! `put_message` and `apply_tombstone`, so a message can never be written after its tombstone.
#![deny(missing_docs)]

mod error;
mod keys;
mod owner_only;
mod record;
mod store;

pub use error::{Error, Result};
pub use keys::{Cf, Conversation};
pub use owner_only::{restrict_to_owner, restrict_to_owner_logged};
pub use record::{Entry, OutKind, Outgoing, State, StoredMessage, Tombstone};
pub use store::{
    Config, ContactOutcome, ContactRecord, InboxItem, InboxPage, LogPage, Page, PutOutcome, ReceiptOutcome, Store,
    TombstoneOutcome, MAX_BLOCKS, MAX_INBOX_PAGE, MAX_INCOMING_REQUESTS, MAX_PAGE, MAX_REQUESTS_EACH,
    MAX_REQUESTS_TOTAL,
};
