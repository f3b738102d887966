//! The node crate's error enum; every variant maps to a stable [`Code`] shared with the local API.

use tim_protocol::{Code, MessageId};

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Invalid wire data or a protocol rule (signature, size, permission) refused it.
    #[error(transparent)]
    Protocol(#[from] tim_protocol::Error),
    /// The store failed or refused (e.g. a tombstoned id).
    #[error(transparent)]
    Storage(#[from] tim_storage::Error),
    /// No message with this id here.
    #[error("message {0} not found")]
    NotFound(MessageId),
    /// A parameter is invalid for this operation.
    #[error("bad parameters: {0}")]
    BadParameters(String),
    /// The message was already revoked or burned.
    #[error("message {0} was already revoked or burned")]
    Tombstoned(MessageId),
    /// The account's route could not be found or its node not reached.
    #[error("account {0} is unreachable")]
    Unreachable(tim_protocol::AccountId),
    /// The local account blocked this account: nothing goes to it or comes from it.
    #[error("account {0} is blocked")]
    Blocked(tim_protocol::AccountId),
    /// The recipient's node refused it with this code.
    #[error("refused by the recipient's node: {0}")]
    Refused(Code),
    /// A queue or limit is full.
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
    /// The data dir could not be read or written.
    #[error("data dir: {0}")]
    Io(#[from] std::io::Error),
    /// The network could not be set up (bad listen address, transport error).
    #[error("network: {0}")]
    Network(String),
    /// The node's event loop has stopped.
    #[error("the node has stopped")]
    NodeStopped,
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> Code {
        match self {
            Error::Protocol(e) => e.code(),
            Error::Storage(e) => e.code(),
            Error::NotFound(_) => Code::NotFound,
            Error::BadParameters(_) | Error::Network(_) => Code::BadParameters,
            Error::Tombstoned(_) => Code::Tombstoned,
            Error::Unreachable(_) => Code::Unreachable,
            Error::Blocked(_) => Code::Blocked,
            Error::Refused(code) => *code,
            Error::Overloaded(_) => Code::Overloaded,
            Error::Io(_) => Code::StorageFailure,
            Error::NodeStopped => Code::NodeStopped,
        }
    }
}

impl<T> From<tokio::sync::mpsc::error::SendError<T>> for Error {
    fn from(_: tokio::sync::mpsc::error::SendError<T>) -> Self {
        Error::NodeStopped
    }
}

impl From<tokio::sync::oneshot::error::RecvError> for Error {
    fn from(_: tokio::sync::oneshot::error::RecvError) -> Self {
        Error::NodeStopped
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(_: tokio::task::JoinError) -> Self {
        Error::NodeStopped
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
