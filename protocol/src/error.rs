//! The protocol crate's error enum; every variant maps to a stable [`Code`].

use crate::Code;

/// Why bytes, a message or a control message were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes or text do not decode into the named type.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What was wrong, for logs.
        detail: String,
    },
    /// An enum tag (message kind, action, ...) that this version does not know.
    #[error("unknown {what} kind")]
    UnknownKind {
        /// What was being decoded.
        what: &'static str,
    },
    /// Over a size limit; checked before anything is allocated.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A wire or header version this node does not speak.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// A signature that does not verify, or a public key that is not a valid point.
    #[error("invalid signature on {0}")]
    InvalidSignature(&'static str),
    /// The body does not match the length or hash in its signed header.
    #[error("body does not match its signed header")]
    BodyMismatch,
    /// The signer may not do this (revoke by someone other than the sender, burn by someone other
    /// than the recipient).
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    /// Outside its validity window (an expired route record, a revoke older than the window).
    #[error("expired: {0}")]
    Expired(String),
    /// A parameter that is invalid for this operation (burn of a room message, bad room id, ...).
    #[error("bad parameters: {0}")]
    BadParameters(String),
    /// What the operation would create exists already (a contact request to a contact).
    #[error("already exists: {0}")]
    AlreadyExists(&'static str),
    /// What the operation refers to does not exist (no contact request to accept).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// Already applied (a join by a member, a second promotion).
    #[error("repeated: {0}")]
    Repeated(&'static str),
    /// The room was cancelled; nothing more is applied in it.
    #[error("the room was cancelled")]
    RoomCancelled,
    /// A sealed body this account cannot open: not one of its readers, or damaged.
    #[error("cannot open the sealed body: {0}")]
    Undecryptable(&'static str),
    /// A bounded set is full (pending join requests of a room).
    #[error("full: {0}")]
    Full(&'static str),
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> Code {
        match self {
            Error::Malformed { .. } | Error::UnknownKind { .. } => Code::Malformed,
            Error::TooLarge { .. } => Code::TooLarge,
            Error::UnsupportedVersion(_) => Code::UnsupportedVersion,
            Error::InvalidSignature(_) => Code::InvalidSignature,
            Error::BodyMismatch => Code::BodyMismatch,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::BadParameters(_) => Code::BadParameters,
            Error::Expired(_) => Code::Expired,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::NotFound(_) => Code::NotFound,
            Error::Repeated(_) => Code::Repeated,
            Error::RoomCancelled => Code::RoomCancelled,
            Error::Full(_) => Code::Overloaded,
            Error::Undecryptable(_) => Code::Undecryptable,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
