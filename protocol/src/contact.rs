//! Contacts: signed operations between two accounts (request with a note, accept, reject,
//! remove), and the state machine both sides run on them, so both keep the same state without a
//! server.

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::{codec::raw, tag, AccountId, AccountKey, Error, MessageId, Result, Verified};

/// What a bad contact signature is reported as (`Error::InvalidSignature`).
const CONTACT_WHAT: &str = "contact operation";

/// The longest note of a contact request, in bytes (UTF-8).
pub const MAX_CONTACT_NOTE: usize = 280;

/// The longest display name, in bytes (UTF-8).
pub const MAX_NAME: usize = 64;

/// What a contact operation does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub enum ContactAction {
    /// Asks `to` to become a contact, with a short note.
    Request {
        /// Shown to `to` with the request; at most [`MAX_CONTACT_NOTE`] bytes.
        note: String,
    },
    /// Accepts `to`'s request.
    Accept,
    /// Declines `to`'s request.
    Reject,
    /// Ends the contact (or withdraws a request) on both sides.
    Remove,
    /// The signer's display name, for an account it has a contact state with. Changes no state;
    /// a receiver keeps the newest.
    Profile {
        /// At most [`MAX_NAME`] bytes; empty for none.
        name: String,
    },
}

impl ContactAction {
    /// `request`, `accept`, `reject` or `remove`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ContactAction::Request { .. } => "request",
            ContactAction::Accept => "accept",
            ContactAction::Reject => "reject",
            ContactAction::Remove => "remove",
            ContactAction::Profile { .. } => "profile",
        }
    }
}

/// A signed contact operation.
///
/// Signed payload: `tag::CONTACT || bincode((from, to, action, at))`. `at` orders the operations
/// of one signer for one peer: a receiver applies only operations newer than the last it applied
/// from that signer, so an old one replayed cannot undo a newer one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct ContactOp {
    /// The signer.
    pub from: AccountId,
    /// The account it is for.
    pub to: AccountId,
    /// What it does.
    pub action: ContactAction,
    /// When, ms since the Unix epoch by the signer's clock.
    pub at: u64,
    /// ed25519 signature by `from`.
    pub signature: [u8; 64],
}

fn check_fields(from: &AccountId, to: &AccountId, action: &ContactAction) -> Result<()> {
    if from == to {
        return Err(Error::BadParameters(
            "a contact operation is for another account".into(),
        ));
    }
    match action {
        ContactAction::Request { note } if note.len() > MAX_CONTACT_NOTE => Err(Error::TooLarge {
            what: "contact note",
            len: note.len(),
            max: MAX_CONTACT_NOTE,
        }),
        ContactAction::Profile { name } if name.len() > MAX_NAME => Err(Error::TooLarge {
            what: "display name",
            len: name.len(),
            max: MAX_NAME,
        }),
        _ => Ok(()),
    }
}

impl ContactOp {
    /// Signs `key`'s operation `action` for `to` at `at`.
    pub fn sign(key: &AccountKey, to: AccountId, action: ContactAction, at: u64) -> Result<Verified<ContactOp>> {
        let from = key.account_id();
        check_fields(&from, &to, &action)?;
        let signature = key.sign_tagged(tag::CONTACT, &raw(&(&from, &to, &action, at)));
        let op = ContactOp {
            from,
            to,
            action,
            at,
            signature,
        };
        let id = op.id();
        Ok(Verified::new(op, id))
    }

    /// The operation's id: SHA-256 of `tag::CONTACT || bincode((from, to, action, at))`, the
    /// bytes signed. Outboxes and acks name the operation by it.
    pub fn id(&self) -> MessageId {
        let mut h = Sha256::new();
        h.update(tag::CONTACT);
        h.update(raw(&(&self.from, &self.to, &self.action, self.at)));
        MessageId::from_bytes(h.finalize().into())
    }

    /// Verifies the fields (4104, 4114) and the signature (4118).
    pub fn verify(self) -> Result<Verified<ContactOp>> {
        check_fields(&self.from, &self.to, &self.action)?;
        self.from.verify_tagged(
            CONTACT_WHAT,
            tag::CONTACT,
            &raw(&(&self.from, &self.to, &self.action, self.at)),
            &self.signature,
        )?;
        let id = self.id();
        Ok(Verified::new(self, id))
    }
}

/// Where the local account stands with another account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum ContactState {
    /// Nothing between them.
    None,
    /// The local account asked; no answer yet.
    Requested,
    /// The other account asked; the local account has not answered.
    Incoming,
    /// Both agreed.
    Contact,
}

impl ContactState {
    /// `none`, `requested`, `incoming` or `contact`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactState::None => "none",
            ContactState::Requested => "requested",
            ContactState::Incoming => "incoming",
            ContactState::Contact => "contact",
        }
    }
}

/// The state after the local account does `action` in `state`, and the action to send (a request
/// while the other account's request waits is sent as its acceptance). Refused: a request to a
/// contact (4101), an accept or reject with no request waiting, a remove with nothing to remove
/// (4109).
pub fn on_local(state: ContactState, action: &ContactAction) -> Result<(ContactState, ContactAction)> {
    use ContactState as S;
    match (state, action) {
        (S::Contact, ContactAction::Request { .. }) => Err(Error::AlreadyExists("already a contact")),
        (S::Incoming, ContactAction::Request { .. }) => Ok((S::Contact, ContactAction::Accept)),
        (S::None | S::Requested, ContactAction::Request { .. }) => Ok((S::Requested, action.clone())),
        (S::Incoming, ContactAction::Accept) => Ok((S::Contact, ContactAction::Accept)),
        (S::Incoming, ContactAction::Reject) => Ok((S::None, ContactAction::Reject)),
        (_, ContactAction::Accept | ContactAction::Reject) => Err(Error::NotFound("no contact request waits")),
        (S::None, ContactAction::Remove) => Err(Error::NotFound("not a contact")),
        (_, ContactAction::Remove) => Ok((S::None, ContactAction::Remove)),
        (S::None, ContactAction::Profile { .. }) => Err(Error::NotFound("not a contact")),
        (state, ContactAction::Profile { .. }) => Ok((state, action.clone())),
    }
}

/// The state after the other account's verified `action` arrives in `state`, and whether the
/// local node answers it with an accept (a request from an account already a contact: it lost
/// its state, and the answer makes both agree again). Refused (4104): an accept or reject of a
/// request the local account never made.
pub fn on_remote(state: ContactState, action: &ContactAction) -> Result<(ContactState, bool)> {
    use ContactState as S;
    match (state, action) {
        (S::None | S::Incoming, ContactAction::Request { .. }) => Ok((S::Incoming, false)),
        (S::Requested, ContactAction::Request { .. }) => Ok((S::Contact, false)),
        (S::Contact, ContactAction::Request { .. }) => Ok((S::Contact, true)),
        (S::Requested | S::Contact, ContactAction::Accept) => Ok((S::Contact, false)),
        (S::Requested, ContactAction::Reject) => Ok((S::None, false)),
        (_, ContactAction::Accept | ContactAction::Reject) => {
            Err(Error::BadParameters("no contact request of this account waits".into()))
        }
        (_, ContactAction::Remove) => Ok((S::None, false)),
        // A name is kept only from an account there is something with: a stranger cannot make
        // this node store one.
        (S::None, ContactAction::Profile { .. }) => Err(Error::BadParameters("a profile from a stranger".into())),
        (state, ContactAction::Profile { .. }) => Ok((state, false)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{test_util::key, Code};
    use ContactState as S;

    fn request() -> ContactAction {
        ContactAction::Request { note: "hi".into() }
    }

    #[test]
    fn a_signed_operation_verifies_and_any_change_breaks_it() {
        let (alice, bob) = (key(1), key(2));
        let op = ContactOp::sign(&alice, bob.account_id(), request(), 5)
            .unwrap()
            .into_inner();
        assert_eq!(op.clone().verify().unwrap().id(), op.id());
        let mut other = op.clone();
        other.action = ContactAction::Accept;
        assert_eq!(other.verify().unwrap_err().code(), Code::InvalidSignature);
        let mut other = op.clone();
        other.at += 1;
        assert_eq!(other.verify().unwrap_err().code(), Code::InvalidSignature);
        let mut other = op.clone();
        other.to = key(3).account_id();
        assert_eq!(other.verify().unwrap_err().code(), Code::InvalidSignature);
        let mut other = op;
        other.from = key(3).account_id();
        assert_eq!(other.verify().unwrap_err().code(), Code::InvalidSignature);
    }

    #[test]
    fn notes_are_bounded_and_nobody_befriends_themselves() {
        let alice = key(1);
        let long = ContactAction::Request {
            note: "x".repeat(MAX_CONTACT_NOTE + 1),
        };
        let bob = key(2).account_id();
        assert_eq!(
            ContactOp::sign(&alice, bob, long, 1).unwrap_err().code(),
            Code::TooLarge
        );
        assert_eq!(
            ContactOp::sign(&alice, alice.account_id(), request(), 1)
                .unwrap_err()
                .code(),
            Code::BadParameters
        );
    }

    #[test]
    fn both_sides_reach_the_same_state_for_every_exchange() {
        // Request, accept.
        let (a, sent) = on_local(S::None, &request()).unwrap();
        let (b, _) = on_remote(S::None, &sent).unwrap();
        assert_eq!((a, b), (S::Requested, S::Incoming));
        let (b, sent) = on_local(b, &ContactAction::Accept).unwrap();
        let (a, _) = on_remote(a, &sent).unwrap();
        assert_eq!((a, b), (S::Contact, S::Contact));
        // Remove, from either side.
        let (b, sent) = on_local(b, &ContactAction::Remove).unwrap();
        let (a, _) = on_remote(a, &sent).unwrap();
        assert_eq!((a, b), (S::None, S::None));
        // Request, reject.
        let (a, sent) = on_local(a, &request()).unwrap();
        let (b, _) = on_remote(b, &sent).unwrap();
        let (b, sent) = on_local(b, &ContactAction::Reject).unwrap();
        let (a, _) = on_remote(a, &sent).unwrap();
        assert_eq!((a, b), (S::None, S::None));
        // Both ask at once: both become contacts.
        let (a, from_a) = on_local(S::None, &request()).unwrap();
        let (b, from_b) = on_local(S::None, &request()).unwrap();
        let (a, _) = on_remote(a, &from_b).unwrap();
        let (b, _) = on_remote(b, &from_a).unwrap();
        assert_eq!((a, b), (S::Contact, S::Contact));
        // Asking back is accepting.
        let (b, sent) = on_local(S::Incoming, &request()).unwrap();
        assert_eq!((b, sent), (S::Contact, ContactAction::Accept));
    }

    #[test]
    fn operations_that_make_no_sense_are_refused_with_their_codes() {
        assert_eq!(
            on_local(S::Contact, &request()).unwrap_err().code(),
            Code::AlreadyExists
        );
        assert_eq!(
            on_local(S::None, &ContactAction::Accept).unwrap_err().code(),
            Code::NotFound
        );
        assert_eq!(
            on_local(S::Requested, &ContactAction::Reject).unwrap_err().code(),
            Code::NotFound
        );
        assert_eq!(
            on_local(S::None, &ContactAction::Remove).unwrap_err().code(),
            Code::NotFound
        );
        // An unasked accept cannot make anyone a contact.
        for s in [S::None, S::Incoming] {
            assert_eq!(
                on_remote(s, &ContactAction::Accept).unwrap_err().code(),
                Code::BadParameters
            );
        }
        assert_eq!(on_remote(S::Contact, &request()).unwrap(), (S::Contact, true));
    }
}
