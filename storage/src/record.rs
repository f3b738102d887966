//! What the store keeps: message records with their delivery state, tombstones, history entries.

use bincode::{Decode, Encode};
use tim_protocol::{AccountId, Action, Control, Header, Message, MessageId, Wire};

/// Where a stored message is in its life, from this node's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum State {
    /// We sent it; no delivery acknowledgement yet.
    Sent,
    /// We sent it and the recipient's node acknowledged it.
    Delivered,
    /// We received it.
    Received,
}

impl State {
    /// `sent`, `delivered` or `received`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Sent => "sent",
            State::Delivered => "delivered",
            State::Received => "received",
        }
    }
}

/// A stored message and its state.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct StoredMessage {
    /// Delivery state.
    pub state: State,
    /// When this node stored it, ms since the Unix epoch.
    pub stored_at: u64,
    /// Set when the reader marked it read (ms since the Unix epoch); starts a burn-after-read timer.
    pub read_at: Option<u64>,
    /// The message as received or sent (signed header and body).
    pub message: Message,
}

impl StoredMessage {
    /// The message id.
    pub fn id(&self) -> MessageId {
        self.message.id()
    }
}

impl Wire for StoredMessage {
    const NAME: &'static str = "stored message";
}

/// A tombstone: the verified control message that revoked or burned a message id.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Tombstone {
    /// When this node applied it, ms since the Unix epoch.
    pub applied_at: u64,
    /// The signed revoke or burn; it carries the target's signed header, so the tombstone can be
    /// forwarded and re-verified by any peer.
    pub control: Control,
}

impl Tombstone {
    /// The id of the revoked or burned message.
    pub fn target(&self) -> MessageId {
        self.control.target.id()
    }
    /// Revoke or burn.
    pub fn action(&self) -> Action {
        self.control.action
    }
    /// Who revoked or burned it.
    pub fn by(&self) -> AccountId {
        self.control.by
    }
    /// When, by the signer's clock.
    pub fn at(&self) -> u64 {
        self.control.at
    }
    /// The header of the destroyed message (who, to whom, when); never its body.
    pub fn header(&self) -> &Header {
        &self.control.target.header
    }
}

impl Wire for Tombstone {
    const NAME: &'static str = "tombstone";
}

/// What an outbox entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
#[repr(u8)]
pub enum OutKind {
    /// A direct message; its acknowledgement moves it to `delivered`.
    Message = 0,
    /// A revoke or burn of a direct message.
    Control = 1,
    /// A deletion receipt for the account that signed a revoke or burn this node applied.
    Receipt = 2,
    /// A contact operation of the local account (request, accept, reject, remove).
    Contact = 3,
    /// An invitation to a founded room, for the invitee.
    Room = 4,
}

/// A frame waiting in the outbox for an account's node to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Outgoing {
    /// The recipient account.
    pub to: AccountId,
    /// Message or control message.
    pub kind: OutKind,
    /// The encoded envelope, as it is sent.
    pub frame: Vec<u8>,
    /// When it was queued, ms since the Unix epoch; entries older than the retention are dropped.
    pub queued_at: u64,
}

impl Wire for Outgoing {
    const NAME: &'static str = "outbox entry";
}

/// One entry of a history page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A message with its body.
    Message(StoredMessage),
    /// A marker where a revoked or burned message was; no body.
    Tombstone(Tombstone),
}

impl Entry {
    /// The message id (of the message, or of the destroyed message).
    pub fn id(&self) -> MessageId {
        match self {
            Entry::Message(m) => m.id(),
            Entry::Tombstone(t) => t.target(),
        }
    }

    /// The header (of the message, or of the destroyed message).
    pub fn header(&self) -> &Header {
        match self {
            Entry::Message(m) => m.message.head(),
            Entry::Tombstone(t) => t.header(),
        }
    }
}
