//! tim's wire protocol: accounts, signed messages, revoke and burn, their encoding and the rules
//! that decide whether they are valid. No I/O, no clock, no async: every function here takes its
//! inputs and returns a decision, so the rules are unit-tested without a network.
//!
//! # Layout
//! - [`code`]: the stable numeric error codes (and short names) every crate and the local API share.
//! - `error`: [`Error`], this crate's one error enum.
//! - `id`: [`AccountKey`], [`AccountId`], [`RoomId`], [`MessageId`] and their text forms.
//! - `message`: [`Header`], [`SignedHeader`], [`Message`]: signing and verification.
//! - `control`: [`Control`] (a revoke or a burn) and who may send which.
//! - [`policy`]: the verification policy on top of signatures: who may revoke or burn, the
//!   revoke window, where an item may arrive ([`Via`]).
//! - [`contact`]: [`ContactOp`], a signed contact request, accept, reject or remove, and the
//!   state machine ([`contact::on_local`], [`contact::on_remote`]) both sides run on them.
//! - `receipt`: [`Receipt`], a replica's signed statement that it applied a tombstone.
//! - [`stream`]: [`Stream`], live data for whoever is online now, never stored, and the rule on
//!   where and how fresh one is taken.
//! - [`presence`]: [`Presence`], an account's signed availability for one contact, never stored.
//! - [`room`]: founded rooms: [`RoomOp`] (create, invite, join, approve, kick, leave, promote,
//!   demote, cancel) and [`Membership`], the fold every member runs on a room's operations.
//! - [`seal`]: end-to-end encryption of bodies to their readers (HPKE), and the seal keys
//!   accounts publish in signed records (`seal_key`).
//! - `route`: [`RouteRecord`], the signed "account X is reachable at peer P" record.
//! - `codec`: [`encode`] / [`decode`] with the wire version and a hard size limit; [`Envelope`].
//! - `verified`: [`Verified`], proof that a value passed verification.
//! - [`batch`]: batch signature verification whose verdicts are exactly `verify_strict`'s, and
//!   [`batch::verify_messages`], the batched [`Message::verify`].
//! - `test_util` (feature `test-util`): deterministic keys and messages for tests.
//!
//! docs/protocol.md specifies the byte layouts and the verification rules.
#![deny(missing_docs)]

pub mod batch;
pub mod code;
mod codec;
pub mod contact;
mod control;
mod error;
mod id;
mod message;
pub mod policy;
pub mod presence;
mod receipt;
pub mod room;
mod route;
pub mod seal;
mod seal_key;
pub mod stream;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
mod verified;

pub use code::Code;
pub use codec::{
    decode, encode, Ack, Envelope, PipeFrame, SyncPage, SyncRequest, Wire, MAX_FRAME_LEN, MAX_SYNC_PAGE_LEN,
    WIRE_VERSION,
};
pub use contact::{ContactAction, ContactOp, ContactState};
pub use control::{Action, Control};
pub use error::{Error, Result};
pub use id::{AccountId, AccountKey, MessageId, RoomId, MAX_ROOM_ID_LEN};
pub use message::{Header, Kind, Message, Recipient, SignedHeader, MAX_BODY_LEN, PROTOCOL_VERSION};
pub use policy::Via;
pub use presence::{Availability, Presence};
pub use receipt::Receipt;
pub use room::{Membership, MembershipChange, RoomAction, RoomOp, RoomState};
pub use route::{RouteRecord, MAX_ROUTE_ADDRS};
pub use stream::Stream;
pub use verified::Verified;

/// Domain-separation tags: every signed or hashed payload starts with exactly one of these, so a
/// signature made for one purpose never verifies as another.
pub mod tag {
    /// Prefix of the bytes a sender signs for a message header.
    pub const MESSAGE: &[u8] = b"tim/v1/message\0";
    /// Prefix of the bytes a sender signs to revoke one of their messages.
    pub const REVOKE: &[u8] = b"tim/v1/revoke\0";
    /// Prefix of the bytes a recipient signs to burn a direct message.
    pub const BURN: &[u8] = b"tim/v1/burn\0";
    /// Prefix of the bytes a replica signs to confirm it applied a revoke or burn.
    pub const RECEIPT: &[u8] = b"tim/v1/receipt\0";
    /// Prefix of the bytes an account signs for a contact operation.
    pub const CONTACT: &[u8] = b"tim/v1/contact\0";
    /// Prefix of the bytes an account signs for a stream frame.
    pub const STREAM: &[u8] = b"tim/v1/stream\0";
    /// Prefix of the bytes an account signs for a presence notice.
    pub const PRESENCE: &[u8] = b"tim/v1/presence\0";
    /// Prefix of the bytes an account signs to publish where it is reachable (v3: the signed
    /// tuple carries the account's seal-key record; v2 added the sequence number).
    pub const ROUTE: &[u8] = b"tim/v3/route\0";
    /// Prefix of the bytes an account signs for a room operation (found, invite, join, ...). v2:
    /// the signed tuple carries the causal links `prev` and `seen`.
    pub const ROOM: &[u8] = b"tim/v2/room\0";
    /// Prefix of the bytes an account signs to prove, in a sync request, that a node speaks for it.
    pub const MEMBER: &[u8] = b"tim/v1/member\0";
    /// Prefix of the bytes hashed into a founded room's id.
    pub const ROOM_ID: &[u8] = b"tim/v1/room-id\0";
    /// HPKE `info` of the wraps of a sealed body's key.
    pub const SEAL: &[u8] = b"tim/v1/seal\0";
    /// HPKE exporter context of the wrap key a sender's setup to a reader yields.
    pub const SEAL_WRAP: &[u8] = b"tim/v1/seal-wrap\0";
    /// Prefix of the bytes hashed into a sealed body's key commitment.
    pub const SEAL_COMMIT: &[u8] = b"tim/v1/seal-commit\0";
    /// Prefix of the bytes hashed into a wrap's reader hint.
    pub const SEAL_HINT: &[u8] = b"tim/v1/seal-hint\0";
    /// Prefix of the bytes an account signs to publish a key bodies for it may be sealed to.
    pub const SEAL_KEY: &[u8] = b"tim/v1/seal-key\0";
    /// Prefix of the bytes an account signs to announce its seal key to a private room.
    pub const SEAL_ANNOUNCE: &[u8] = b"tim/v1/seal-announce\0";
}

#[cfg(test)]
mod tag_tests {
    #[test]
    fn no_domain_tag_is_a_prefix_of_another() {
        use super::tag::*;
        let tags = [
            MESSAGE,
            REVOKE,
            BURN,
            RECEIPT,
            CONTACT,
            STREAM,
            PRESENCE,
            ROUTE,
            ROOM,
            ROOM_ID,
            MEMBER,
            SEAL,
            SEAL_WRAP,
            SEAL_COMMIT,
            SEAL_HINT,
            SEAL_KEY,
            SEAL_ANNOUNCE,
        ];
        for (i, a) in tags.iter().enumerate() {
            for (j, b) in tags.iter().enumerate() {
                assert!(i == j || !b.starts_with(a), "{a:?} is a prefix of {b:?}");
            }
        }
    }
}
