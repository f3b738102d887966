//! Founded rooms: a room created by an account (its founder), open or private, with managers and
//! a membership every member computes from signed operations (docs/protocol.md, "Founded rooms").
//!
//! - this file: [`RoomOp`] and [`RoomAction`], signing and verification, founded room ids, and
//!   [`MemberProof`], which a sync request of a private room carries;
//! - `membership`: [`Membership`], the fold of a room's operations into who is a member, manager,
//!   invited or asking, and who may do what.

mod links;
mod membership;

pub use membership::{
    Membership, MembershipChange, RoomState, MAX_PENDING_REQUESTS, MAX_PRIVATE_MEMBERS, MAX_ROOM_OPS,
};

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::{codec::raw, tag, AccountId, AccountKey, Error, MessageId, Result, RoomId, Verified};

/// What a bad room-operation signature is reported as (`Error::InvalidSignature`).
const ROOM_OP_WHAT: &str = "room operation";

/// The longest room name, in bytes (UTF-8).
pub const MAX_ROOM_NAME: usize = 64;

/// The prefix of every founded room's id; the rest is 40 lowercase hex digits.
pub const FOUNDED_PREFIX: &str = "r.";

/// What a room operation does. Its signer is [`RoomOp::by`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub enum RoomAction {
    /// Founds the room: the first operation, signed by the founder. Its id must be
    /// [`founded_room_id`]`(by, nonce)`, so no other account can found a room under that id.
    Create {
        /// Shown to members and invitees; at most [`MAX_ROOM_NAME`] bytes.
        name: String,
        /// Private: members join only by invitation or an approved request, and only members may
        /// post. Open: anyone may join and post.
        private: bool,
        /// Random; with the founder it makes the room id.
        nonce: [u8; 16],
    },
    /// Invites an account (founder or manager).
    Invite(AccountId),
    /// The signer joins: an open room at once, a private room by accepting an invite; without an
    /// invite it asks to join and waits for a manager's approval.
    Join,
    /// Admits an account that asked to join (founder or manager).
    Approve(AccountId),
    /// Removes a member, or withdraws an invite or a request (founder or manager; only the founder
    /// removes a manager; nobody removes the founder).
    Kick(AccountId),
    /// The signer leaves (or withdraws its request). The founder cannot leave: it cancels.
    Leave,
    /// Makes a member a manager (founder only).
    Promote(AccountId),
    /// Makes a manager a plain member again (founder only).
    Demote(AccountId),
    /// Ends the room for good (founder only): every later operation and post is refused (4108).
    Cancel,
}

impl RoomAction {
    /// `create`, `invite`, `join`, `approve`, `kick`, `leave`, `promote`, `demote` or `cancel`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RoomAction::Create { .. } => "create",
            RoomAction::Invite(_) => "invite",
            RoomAction::Join => "join",
            RoomAction::Approve(_) => "approve",
            RoomAction::Kick(_) => "kick",
            RoomAction::Leave => "leave",
            RoomAction::Promote(_) => "promote",
            RoomAction::Demote(_) => "demote",
            RoomAction::Cancel => "cancel",
        }
    }

    /// The account the action is about, other than its signer.
    pub fn subject(&self) -> Option<&AccountId> {
        match self {
            RoomAction::Invite(a)
            | RoomAction::Approve(a)
            | RoomAction::Kick(a)
            | RoomAction::Promote(a)
            | RoomAction::Demote(a) => Some(a),
            RoomAction::Create { .. } | RoomAction::Join | RoomAction::Leave | RoomAction::Cancel => None,
        }
    }
}

/// A signed room operation.
///
/// Signed payload: `tag::ROOM || bincode((room, by, action, at, prev, seen))`. `room` is inside
/// the signature, so an operation replayed into another room does not verify there; its id (the
/// digest of the signed bytes) makes a replay within the room a duplicate. `prev` chains each
/// signer's operations; `seen` lets the founder's removal or demotion of an account name the
/// heads of that account's chain it stands by (see [`Membership`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct RoomOp {
    /// The room.
    pub room: RoomId,
    /// The signer.
    pub by: AccountId,
    /// What it does.
    pub action: RoomAction,
    /// When, ms since the Unix epoch by the signer's clock; orders the room's operations.
    pub at: u64,
    /// The signer's previous operation in this room (the head of its own chain it held), `None`
    /// for its first.
    pub prev: Option<MessageId>,
    /// In a `Kick` or `Demote`: the heads of the subject's chain the signer held (none if it
    /// held none; at most [`MAX_SEEN`]). Empty in every other action.
    pub seen: Vec<MessageId>,
    /// ed25519 signature by `by`.
    pub signature: [u8; 64],
}

/// The most heads a `Kick` or `Demote` names (an honest account has one; more come from a chain
/// forked by a lost data dir, or by a signer trying to hide operations).
pub const MAX_SEEN: usize = 16;

/// The causal links of an operation about to be signed (see [`RoomOp`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// The signer's previous operation in the room.
    pub prev: Option<MessageId>,
    /// For a `Kick` or `Demote`: the heads of the subject's chain the signer held.
    pub seen: Vec<MessageId>,
}

/// The id of the room `founder` founds as `name`, open or `private`, with `nonce`:
/// [`FOUNDED_PREFIX`] followed by the first 20 bytes of
/// `SHA-256(tag::ROOM_ID || bincode((founder, name, private, nonce)))` in lowercase hex. The id
/// binds the whole `Create`, so a founder cannot sign two rooms under one id.
pub fn founded_room_id(founder: &AccountId, name: &str, private: bool, nonce: &[u8; 16]) -> RoomId {
    let mut h = Sha256::new();
    h.update(tag::ROOM_ID);
    h.update(raw(&(founder, name, private, nonce)));
    let digest: [u8; 32] = h.finalize().into();
    let id = format!("{FOUNDED_PREFIX}{}", hex::encode(&digest[..20]));
    // 42 characters from the allowed set: always a valid id.
    RoomId::new(id).unwrap_or_else(|_| unreachable!("a founded room id is a valid room id"))
}

/// Whether `room` has the shape of a founded room's id. Such ids are reserved: a node treats the
/// room as founded and needs its `Create` operation before it takes anything for it.
pub fn is_founded_id(room: &RoomId) -> bool {
    room.as_str()
        .strip_prefix(FOUNDED_PREFIX)
        .is_some_and(|hex| hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

fn check_fields(room: &RoomId, by: &AccountId, action: &RoomAction, seen: &[MessageId]) -> Result<()> {
    if seen.len() > MAX_SEEN {
        return Err(Error::TooLarge {
            what: "heads a room operation names",
            len: seen.len(),
            max: MAX_SEEN,
        });
    }
    if !seen.is_empty() && !matches!(action, RoomAction::Kick(_) | RoomAction::Demote(_)) {
        return Err(Error::BadParameters(format!(
            "a room {} names no subject's operation",
            action.as_str()
        )));
    }
    if !is_founded_id(room) {
        return Err(Error::BadParameters("not a founded room id".into()));
    }
    match action {
        RoomAction::Create { name, private, nonce } => {
            if name.len() > MAX_ROOM_NAME {
                return Err(Error::TooLarge {
                    what: "room name",
                    len: name.len(),
                    max: MAX_ROOM_NAME,
                });
            }
            if founded_room_id(by, name, *private, nonce) != *room {
                return Err(Error::BadParameters("the room id is not the founder's".into()));
            }
            Ok(())
        }
        other if other.subject() == Some(by) => Err(Error::BadParameters(format!(
            "a room {} names another account than its signer",
            other.as_str()
        ))),
        // An id that is no key could never sign or read: admitted, it would only be a reader
        // every post must skip.
        other if other.subject().is_some_and(|subject| !subject.is_sealable()) => Err(Error::Malformed {
            what: "room operation",
            detail: format!("a room {} names an id that is no account key", other.as_str()),
        }),
        _ => Ok(()),
    }
}

/// What a bad member-proof signature is reported as (`Error::InvalidSignature`).
const MEMBER_PROOF_WHAT: &str = "member proof";

/// Proof, in a sync request, that the asking node speaks for `account`: signed payload
/// `tag::MEMBER || bincode((room, account, peer, at))`, where `peer` is the asking node's libp2p
/// peer id (its multihash bytes). The server checks `peer` against the connection, so a proof
/// works only from the node it was made for, and `at` against its clock, so it soon expires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct MemberProof {
    /// The account the asker speaks for.
    pub account: AccountId,
    /// When it was made, ms since the Unix epoch by the asker's clock.
    pub at: u64,
    /// ed25519 signature by `account`.
    pub signature: [u8; 64],
}

impl MemberProof {
    /// `key`'s proof for a sync of `room` from the node with peer id bytes `peer`, made at `at`.
    pub fn sign(key: &AccountKey, room: &RoomId, peer: &[u8], at: u64) -> MemberProof {
        let account = key.account_id();
        let signature = key.sign_tagged(tag::MEMBER, &raw(&(room, &account, peer, at)));
        MemberProof { account, at, signature }
    }

    /// Checks the proof for `room` from the connection's peer `peer` at the server's `now`: the
    /// signature (4118), and `at` within [`crate::policy::MAX_CLOCK_SKEW`] of `now` either way
    /// (4121). Returns the account it proves.
    pub fn verify(&self, room: &RoomId, peer: &[u8], now: u64) -> Result<AccountId> {
        let skew = u64::try_from(crate::policy::MAX_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
        if self.at.abs_diff(now) > skew {
            return Err(Error::Expired("a member proof from another time".into()));
        }
        self.account.verify_tagged(
            MEMBER_PROOF_WHAT,
            tag::MEMBER,
            &raw(&(room, &self.account, peer, self.at)),
            &self.signature,
        )?;
        Ok(self.account)
    }
}

impl RoomOp {
    /// Signs `key`'s `action` in `room` at `at`, with no causal links (a first operation).
    pub fn sign(key: &AccountKey, room: RoomId, action: RoomAction, at: u64) -> Result<Verified<RoomOp>> {
        RoomOp::sign_linked(key, room, action, at, Links::default())
    }

    /// Signs `key`'s `action` in `room` at `at` with its causal `links` ([`Membership::links_for`]
    /// gives them).
    pub fn sign_linked(
        key: &AccountKey,
        room: RoomId,
        action: RoomAction,
        at: u64,
        links: Links,
    ) -> Result<Verified<RoomOp>> {
        let by = key.account_id();
        check_fields(&room, &by, &action, &links.seen)?;
        let Links { prev, seen } = links;
        let signature = key.sign_tagged(tag::ROOM, &raw(&(&room, &by, &action, at, prev, &seen)));
        let op = RoomOp {
            room,
            by,
            action,
            at,
            prev,
            seen,
            signature,
        };
        let id = op.id();
        Ok(Verified::new(op, id))
    }

    /// Signs the `Create` operation of a new room of `key`'s, with a fresh random nonce.
    pub fn found(key: &AccountKey, name: String, private: bool, at: u64) -> Result<Verified<RoomOp>> {
        let nonce: [u8; 16] = rand::random();
        let room = founded_room_id(&key.account_id(), &name, private, &nonce);
        RoomOp::sign(key, room, RoomAction::Create { name, private, nonce }, at)
    }

    /// The operation's id: SHA-256 of the signed bytes.
    pub fn id(&self) -> MessageId {
        let mut h = Sha256::new();
        h.update(tag::ROOM);
        h.update(self.signed_payload());
        MessageId::from_bytes(h.finalize().into())
    }

    /// Verifies the fields (4104, 4113, 4114) and the signature (4118). Whether the signer may do it is
    /// [`Membership::apply`]'s question.
    pub fn verify(self) -> Result<Verified<RoomOp>> {
        check_fields(&self.room, &self.by, &self.action, &self.seen)?;
        self.by
            .verify_tagged(ROOM_OP_WHAT, tag::ROOM, &self.signed_payload(), &self.signature)?;
        let id = self.id();
        Ok(Verified::new(self, id))
    }

    fn signed_payload(&self) -> Vec<u8> {
        raw(&(&self.room, &self.by, &self.action, self.at, self.prev, &self.seen))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{test_util::key, Code};

    fn code<T: std::fmt::Debug>(r: Result<T>) -> Code {
        r.expect_err("expected an error").code()
    }

    #[test]
    fn a_founded_room_id_is_the_founders_and_verifies() {
        let alice = key(1);
        let create = RoomOp::found(&alice, "team".into(), true, 10).unwrap();
        assert!(is_founded_id(&create.room));
        assert_eq!(create.clone().into_inner().verify().unwrap().id(), create.id());

        // Another account cannot found a room under the same id, even with the same nonce.
        let RoomAction::Create { nonce, .. } = create.action.clone() else {
            unreachable!()
        };
        let action = RoomAction::Create {
            name: "team".into(),
            private: true,
            nonce,
        };
        assert_eq!(
            code(RoomOp::sign(&key(2), create.room.clone(), action, 10)),
            Code::BadParameters
        );
        // Two rooms of one founder differ.
        assert_ne!(
            RoomOp::found(&alice, "team".into(), true, 10).unwrap().room,
            create.room
        );
    }

    #[test]
    fn an_operation_naming_an_id_that_is_no_account_key_is_refused() {
        let alice = key(1);
        let room = RoomOp::found(&alice, "a".into(), true, 10).unwrap().room.clone();
        // The identity point: a valid encoding, of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = AccountId::from_bytes(identity).unwrap();
        for action in [
            RoomAction::Invite(weak),
            RoomAction::Approve(weak),
            RoomAction::Kick(weak),
            RoomAction::Promote(weak),
            RoomAction::Demote(weak),
        ] {
            assert_eq!(
                code(RoomOp::sign(&alice, room.clone(), action.clone(), 11)),
                Code::Malformed
            );
            // Nor does one signed without the check verify.
            let (none, nothing): (Option<MessageId>, Vec<MessageId>) = (None, Vec::new());
            let signature = alice.sign_tagged(
                tag::ROOM,
                &raw(&(&room, &alice.account_id(), &action, 11u64, none, &nothing)),
            );
            let op = RoomOp {
                room: room.clone(),
                by: alice.account_id(),
                action,
                at: 11,
                prev: None,
                seen: Vec::new(),
                signature,
            };
            assert_eq!(code(op.verify()), Code::Malformed);
        }
    }

    #[test]
    fn an_operation_replayed_into_another_room_does_not_verify() {
        let alice = key(1);
        let a = RoomOp::found(&alice, "a".into(), true, 10).unwrap();
        let b = RoomOp::found(&alice, "b".into(), true, 10).unwrap();
        let mut invite = RoomOp::sign(&alice, a.room.clone(), RoomAction::Invite(key(2).account_id()), 11)
            .unwrap()
            .into_inner();
        invite.room = b.room.clone();
        assert_eq!(code(invite.verify()), Code::InvalidSignature);
    }

    #[test]
    fn bad_fields_are_refused() {
        let alice = key(1);
        let room = RoomOp::found(&alice, "a".into(), true, 10).unwrap().room.clone();
        assert_eq!(
            code(RoomOp::sign(
                &alice,
                room.clone(),
                RoomAction::Invite(alice.account_id()),
                11
            )),
            Code::BadParameters
        );
        assert_eq!(
            code(RoomOp::sign(
                &alice,
                RoomId::new("lobby").unwrap(),
                RoomAction::Join,
                11
            )),
            Code::BadParameters
        );
        assert_eq!(code(RoomOp::found(&alice, "x".repeat(65), true, 10)), Code::TooLarge);
        let mut changed = RoomOp::sign(&alice, room, RoomAction::Cancel, 11).unwrap().into_inner();
        changed.at = 12;
        assert_eq!(code(changed.verify()), Code::InvalidSignature);
    }

    #[test]
    fn a_member_proof_holds_only_for_its_room_peer_and_time() {
        let alice = key(1);
        let room = RoomOp::found(&alice, "a".into(), true, 10).unwrap().room.clone();
        let other = RoomOp::found(&alice, "b".into(), true, 10).unwrap().room.clone();
        let proof = MemberProof::sign(&alice, &room, b"peer-a", 1_000_000);
        assert_eq!(proof.verify(&room, b"peer-a", 1_000_000).unwrap(), alice.account_id());
        assert_eq!(code(proof.verify(&other, b"peer-a", 1_000_000)), Code::InvalidSignature);
        assert_eq!(code(proof.verify(&room, b"peer-b", 1_000_000)), Code::InvalidSignature);
        assert_eq!(code(proof.verify(&room, b"peer-a", 1_000_000 + 301_000)), Code::Expired);
        let mut forged = proof.clone();
        forged.account = key(2).account_id();
        assert_eq!(code(forged.verify(&room, b"peer-a", 1_000_000)), Code::InvalidSignature);
    }

    #[test]
    fn only_founded_shapes_are_founded_ids() {
        let ok = RoomId::new("r.0123456789abcdef0123456789abcdef01234567").unwrap();
        assert!(is_founded_id(&ok));
        for not in [
            "lobby",
            "r.0123",
            "r.0123456789abcdef0123456789abcdef0123456g",
            "r.0123456789abcdef0123456789abcdef012345678",
        ] {
            assert!(!is_founded_id(&RoomId::new(not).unwrap()), "{not}");
        }
    }
}
