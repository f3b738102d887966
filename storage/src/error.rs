//! The storage crate's error enum; every variant maps to a stable [`Code`].

use tim_protocol::{Code, MessageId};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// RocksDB reported an error (I/O, corruption it detected, a locked directory, ...).
    #[error("storage failure: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The message id was revoked or burned; it is never stored again.
    #[error("message {0} was revoked or burned")]
    Tombstoned(MessageId),
    /// No message or tombstone with this id.
    #[error("message {0} not found")]
    NotFound(MessageId),
    /// A stored value does not decode (bit rot, a foreign writer, an oversized value).
    #[error("corrupt {what} under key {key}: {source}")]
    Corrupt {
        /// Which column family.
        what: &'static str,
        /// The key, in hex.
        key: String,
        /// The decode error.
        source: tim_protocol::Error,
    },
    /// Encoding a value failed (e.g. over the frame limit).
    #[error(transparent)]
    Protocol(#[from] tim_protocol::Error),
    /// The outbox holds as many entries as allowed (for this recipient, or in total).
    #[error("outbox full for {0}: too many undelivered messages")]
    OutboxFull(tim_protocol::AccountId),
    /// This stranger (an account this node's account never wrote to) already has its share of
    /// stored direct messages here; it may send more once it is answered.
    #[error("too many stored messages from {0}, an account this node never wrote to")]
    StrangerQuota(tim_protocol::AccountId),
    /// This signer already has its share of tombstones for messages this node never held.
    #[error("too many tombstones for unknown messages from {0}")]
    PendingQuota(tim_protocol::AccountId),
    /// A bounded set is full (its name says which).
    #[error("too many {0}")]
    TooMany(&'static str),
    /// The database directory could not be created or made owner-only.
    #[error("data dir: {0}")]
    DataDir(std::io::Error),
    /// A caller-supplied parameter is out of range.
    #[error("bad parameters: {0}")]
    BadParameters(&'static str),
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> Code {
        match self {
            Error::Rocks(_) | Error::Corrupt { .. } | Error::DataDir(_) => Code::StorageFailure,
            Error::Tombstoned(_) => Code::Tombstoned,
            Error::NotFound(_) => Code::NotFound,
            Error::Protocol(e) => e.code(),
            Error::BadParameters(_) => Code::BadParameters,
            Error::OutboxFull(_) | Error::StrangerQuota(_) | Error::PendingQuota(_) | Error::TooMany(_) => {
                Code::Overloaded
            }
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
