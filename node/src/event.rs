//! What a node reports to the app: [`Event`]s, and the local view of a conversation.

use libp2p::PeerId;
use tim_protocol::{AccountId, Action, Code, ContactState, Header, MessageId, Recipient, RoomId};

/// A conversation from the local account's point of view: the other account, or a room.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Conversation {
    /// The direct conversation with this account.
    Peer(AccountId),
    /// A room.
    Room(RoomId),
}

impl Conversation {
    /// The conversation `header` belongs to, seen from `local`.
    pub fn of(header: &Header, local: &AccountId) -> Self {
        match &header.to {
            Recipient::Room(room) => Conversation::Room(room.clone()),
            Recipient::Account(to) if header.from == *local => Conversation::Peer(*to),
            Recipient::Account(_) => Conversation::Peer(header.from),
        }
    }

    /// The store's name for this conversation.
    pub fn to_storage(&self, local: &AccountId) -> tim_storage::Conversation {
        match self {
            Conversation::Peer(peer) => tim_storage::Conversation::direct(*local, *peer),
            Conversation::Room(room) => tim_storage::Conversation::Room(room.clone()),
        }
    }
}

/// Something that happened on the node. Subscribers get every event from the moment they
/// subscribe; one that falls more than `Config::event_capacity` behind loses the oldest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message was stored: received from a peer, or sent by this account (so other clients of
    /// the same account see it too).
    Message {
        /// Message id.
        mid: MessageId,
        /// Sender.
        from: AccountId,
        /// Where it belongs, seen from the local account.
        conversation: Conversation,
        /// Send time by the sender's clock, ms since the epoch.
        sent_at: u64,
        /// The body, opened if it travelled sealed. The local API leaves it out of the event of
        /// a received burn-after-reading message (it is withheld until [`crate::Node::mark_read`]
        /// shows it and starts the timer); an app that shows bodies to a person should do the same.
        body: Vec<u8>,
        /// Whether the body travelled sealed (end-to-end encrypted).
        encrypted: bool,
        /// Seconds after reading at which the receiver burns it.
        burn_after_read: Option<u32>,
    },
    /// A message was stored whose sealed body the local account cannot open (`code`: 4122, or
    /// 4113 for one that does not parse): a room post from before it joined, or a damaged one.
    Undecryptable {
        /// Message id.
        mid: MessageId,
        /// Sender.
        from: AccountId,
        /// Where it belongs, seen from the local account.
        conversation: Conversation,
        /// Why.
        code: tim_protocol::Code,
    },
    /// A message was revoked by its sender (here or on another node).
    Revoked {
        /// The revoked message.
        mid: MessageId,
        /// Who revoked it (its sender).
        by: AccountId,
        /// Where it was.
        conversation: Conversation,
    },
    /// A direct message was burned by its recipient (here or on another node).
    Burned {
        /// The burned message.
        mid: MessageId,
        /// Who burned it (its recipient).
        by: AccountId,
        /// Where it was.
        conversation: Conversation,
    },
    /// The recipient's node acknowledged a direct message.
    Delivered {
        /// The message.
        mid: MessageId,
        /// The recipient.
        to: AccountId,
    },
    /// A direct message or control message could not be delivered.
    DeliveryFailed {
        /// The message (or, for a control message, its target).
        mid: MessageId,
        /// The recipient.
        to: AccountId,
        /// What failed: the recipient's refusal code, or `5105 unreachable`.
        code: Code,
    },
    /// A replica confirmed, with a signed receipt, that it destroyed a message the local account
    /// revoked or burned.
    DeletionConfirmed {
        /// The destroyed message.
        mid: MessageId,
        /// The replica's account.
        by: AccountId,
        /// When it applied the tombstone, ms since the epoch by its clock.
        at: u64,
    },
    /// Another account asks the local account to become a contact.
    ContactRequest {
        /// Who asks.
        from: AccountId,
        /// Its note.
        note: String,
    },
    /// Where the local account stands with another account changed (either side acted).
    Contact {
        /// The other account.
        account: AccountId,
        /// The new state.
        state: ContactState,
    },
    /// A direct message from an account not admitted was held as a request (under
    /// `inbound = "contacts"`); it is in no history until the sender is admitted.
    MessageRequest {
        /// The message.
        mid: MessageId,
        /// Its sender.
        from: AccountId,
    },
    /// Another account set its display name (it is a contact, or a request is between them).
    Profile {
        /// The account.
        account: AccountId,
        /// Its name; empty when it cleared it.
        name: String,
    },
    /// A contact's presence notice.
    Presence {
        /// The contact.
        account: AccountId,
        /// Its availability.
        status: tim_protocol::Availability,
        /// Its text.
        text: String,
        /// When it was heard, ms since the epoch by the local clock.
        last_seen: u64,
    },
    /// Live data from another account (a stream frame): never stored, shown only now.
    Stream {
        /// The sender.
        from: AccountId,
        /// The direct conversation with the sender, or the room.
        conversation: Conversation,
        /// The data.
        data: Vec<u8>,
    },
    /// The local account was invited to a founded room; `Node::join` accepts.
    RoomInvite {
        /// The room.
        room: RoomId,
        /// Who invited (the founder or a manager, by the invitation's signature).
        by: AccountId,
        /// The room's name.
        name: String,
    },
    /// An account asks to join a private room this account manages; `Node::approve` admits it.
    RoomJoinRequest {
        /// The room.
        room: RoomId,
        /// Who asks.
        account: AccountId,
    },
    /// A founded room's membership changed.
    RoomMember {
        /// The room.
        room: RoomId,
        /// Whom it is about.
        account: AccountId,
        /// `joined`, `left`, `kicked`, `promoted` or `demoted`.
        change: &'static str,
    },
    /// The founder cancelled a founded room.
    RoomCancelled {
        /// The room.
        room: RoomId,
    },
    /// A peer connected (first connection).
    PeerConnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer disconnected (last connection closed).
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
}

impl Event {
    /// The event for a tombstone applied by `action`.
    pub(crate) fn tombstone(action: Action, mid: MessageId, by: AccountId, conversation: Conversation) -> Event {
        match action {
            Action::Revoke => Event::Revoked { mid, by, conversation },
            Action::Burn => Event::Burned { mid, by, conversation },
        }
    }
}
