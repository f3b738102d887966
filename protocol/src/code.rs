//! Stable numeric error codes with short names, shared by every crate and the local API.
//!
//! Codes that the tim IM engine defines keep its numbers; the ones tim lacks are ours and never
//! change meaning once released.

use std::fmt;

/// A stable error code. The number and the name are part of the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// 4101: the thing to create already exists.
    AlreadyExists,
    /// 4104: a parameter is invalid for this operation (e.g. burning a room message).
    BadParameters,
    /// 4105: the caller may not do this (e.g. revoking someone else's message).
    PermissionDenied,
    /// 4108: the room was cancelled by its founder; nothing more happens in it.
    RoomCancelled,
    /// 4106: no such account, or an account id that does not parse.
    UnknownAccount,
    /// 4109: the referenced message or object does not exist here.
    NotFound,
    /// 4110: the receiving account blocked the sender (or the local account blocked the peer).
    Blocked,
    /// 4111: the message id was revoked or burned; its content is gone for good.
    Tombstoned,
    /// 4113: bytes or text that do not decode into what they claim to be.
    Malformed,
    /// 4114: over a size limit.
    TooLarge,
    /// 4117: the same request was already applied.
    Repeated,
    /// 4118: a signature does not verify.
    InvalidSignature,
    /// 4119: a body does not match the length or hash in its signed header.
    BodyMismatch,
    /// 4120: a wire or protocol version this node does not speak.
    UnsupportedVersion,
    /// 4121: outside the allowed time window (e.g. a revoke older than `revoke_window`).
    Expired,
    /// 4122: a sealed (end-to-end encrypted) body this account cannot open: it is not one of its
    /// readers, or the body was damaged.
    Undecryptable,
    /// 4401: missing or wrong API token.
    Unauthorized,
    /// 4403: the local API refused the request's `Host` or `Origin`: a name it does not answer
    /// to (DNS rebinding) or a page from another origin.
    HostNotAllowed,
    /// 5103: the local store failed.
    StorageFailure,
    /// 5104: a queue or limit is full; retry later.
    Overloaded,
    /// 5105: the peer could not be reached now.
    Unreachable,
    /// 5106: the node has stopped.
    NodeStopped,
}

impl Code {
    /// Every code, for documentation and tests.
    pub const ALL: [Code; 22] = [
        Code::AlreadyExists,
        Code::BadParameters,
        Code::PermissionDenied,
        Code::RoomCancelled,
        Code::UnknownAccount,
        Code::NotFound,
        Code::Blocked,
        Code::Tombstoned,
        Code::Malformed,
        Code::TooLarge,
        Code::Repeated,
        Code::InvalidSignature,
        Code::BodyMismatch,
        Code::UnsupportedVersion,
        Code::Expired,
        Code::Undecryptable,
        Code::Unauthorized,
        Code::HostNotAllowed,
        Code::StorageFailure,
        Code::Overloaded,
        Code::Unreachable,
        Code::NodeStopped,
    ];

    /// The stable number.
    pub const fn number(self) -> u16 {
        match self {
            Code::AlreadyExists => 4101,
            Code::BadParameters => 4104,
            Code::PermissionDenied => 4105,
            Code::RoomCancelled => 4108,
            Code::UnknownAccount => 4106,
            Code::NotFound => 4109,
            Code::Blocked => 4110,
            Code::Tombstoned => 4111,
            Code::Malformed => 4113,
            Code::TooLarge => 4114,
            Code::Repeated => 4117,
            Code::InvalidSignature => 4118,
            Code::BodyMismatch => 4119,
            Code::UnsupportedVersion => 4120,
            Code::Expired => 4121,
            Code::Undecryptable => 4122,
            Code::Unauthorized => 4401,
            Code::HostNotAllowed => 4403,
            Code::StorageFailure => 5103,
            Code::Overloaded => 5104,
            Code::Unreachable => 5105,
            Code::NodeStopped => 5106,
        }
    }

    /// The code with this number, if it is one of ours.
    pub fn from_number(number: u16) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.number() == number)
    }

    /// The stable short name (snake case), e.g. `permission_denied`.
    pub const fn name(self) -> &'static str {
        match self {
            Code::AlreadyExists => "already_exists",
            Code::BadParameters => "bad_parameters",
            Code::PermissionDenied => "permission_denied",
            Code::RoomCancelled => "room_cancelled",
            Code::UnknownAccount => "unknown_account",
            Code::NotFound => "not_found",
            Code::Blocked => "blocked",
            Code::Tombstoned => "tombstoned",
            Code::Malformed => "malformed",
            Code::TooLarge => "too_large",
            Code::Repeated => "repeated",
            Code::InvalidSignature => "invalid_signature",
            Code::BodyMismatch => "body_mismatch",
            Code::UnsupportedVersion => "unsupported_version",
            Code::Expired => "expired",
            Code::Undecryptable => "undecryptable",
            Code::Unauthorized => "unauthorized",
            Code::HostNotAllowed => "host_not_allowed",
            Code::StorageFailure => "storage_failure",
            Code::Overloaded => "overloaded",
            Code::Unreachable => "unreachable",
            Code::NodeStopped => "node_stopped",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.number(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn numbers_and_names_are_unique() {
        let numbers: HashSet<_> = Code::ALL.iter().map(|c| c.number()).collect();
        let names: HashSet<_> = Code::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(numbers.len(), Code::ALL.len());
        assert_eq!(names.len(), Code::ALL.len());
        for c in Code::ALL {
            assert_eq!(Code::from_number(c.number()), Some(c));
        }
        assert_eq!(Code::from_number(1), None);
    }

    #[test]
    fn tim_codes_keep_their_numbers() {
        assert_eq!(Code::BadParameters.number(), 4104);
        assert_eq!(Code::PermissionDenied.number(), 4105);
        assert_eq!(Code::RoomCancelled.number(), 4108);
        assert_eq!(Code::NotFound.number(), 4109);
        assert_eq!(Code::Blocked.number(), 4110);
        assert_eq!(Code::Malformed.number(), 4113);
        assert_eq!(Code::TooLarge.number(), 4114);
        assert_eq!(Code::StorageFailure.number(), 5103);
        assert_eq!(Code::Overloaded.number(), 5104);
    }
}
