//! A tim node's history on RocksDB: messages by id, a per-conversation index (newest first,
//! paged), and tombstones that destroy revoked or burned bodies on disk, not just hide them.
//!
//! # Layout
//! - `error`: [`Error`], this crate's error enum, with stable codes.
//! - `keys`: column families ([`Cf`]), [`Conversation`]s and the big-endian key layouts that make
//!   "a conversation's history, newest first" a prefix scan.
//! - `record`: what is stored: [`StoredMessage`], [`Tombstone`], [`Entry`], [`State`].
//! - `store`: [`Store`]: `put_message(s)`, `apply_tombstone`, `history`, and the shredder thread
//!   that flushes and compacts so destroyed bodies leave every file under the database directory.
//!
//! Every logical change is one atomic `WriteBatch`; a mutex serialises the check-then-write of
//! `put_message` and `apply_tombstone`, so a message can never be written after its tombstone.
#![deny(missing_docs)]

mod error;
mod keys;
mod record;
mod store;

pub use error::{Error, Result};
pub use keys::{Cf, Conversation};
pub use record::{Entry, OutKind, Outgoing, State, StoredMessage, Tombstone};
pub use store::{Config, LogPage, Page, PutOutcome, Store, TombstoneOutcome, MAX_PAGE};
