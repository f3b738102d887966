//! Column families and key layouts. All integers are big-endian so byte order is numeric order.
//!
//! | cf | key | value |
//! |---|---|---|
//! | `messages` | mid (32) | [`crate::StoredMessage`] record |
//! | `history` | conversation prefix, sent_at (u64 BE), mid (32) | 1 byte: 0 message, 1 tombstone |
//! | `tombstones` | mid (32) | [`crate::Tombstone`] record |
//! | `outbox` | id (32), kind (1: 0 message, 1 control, 2 receipt, 3 contact, 4 room invitation) | [`crate::Outgoing`] record |
//! | `room_log` | room prefix, seq (u64 BE) | mid (32), kind (1: 0 message, 1 tombstone, 2 room operation) |
//! | `sync` | room prefix, peer id bytes | last seq synced from that peer (u64 BE) |
//! | `receipts` | target mid (32), replica account (32) | signed [`tim_protocol::Receipt`] |
//! | `inbox` | `0x00`, conversation prefix | newest `sent_at` (u64 BE), unread count (u32 BE) |
//! | `inbox` | `0x01`, newest `sent_at` (u64 BE), conversation prefix | empty: the recency index |
//! | `meta` | `room/<id>`, `burn/<deadline><mid>`, `shred/<mid>`, `block/<account>`, `contact/<account>`, `request/<from><sent_at><mid>`, `profile`, `settings/inbound`, `known/`, `strange/`, `pending/`, `roomop/<room prefix><id>`, `invite/<room prefix>`, `seq` | joined rooms, founded rooms' operations, invitations, burn timers, shred queue, blocks, contacts, quotas, log sequence |
//!
//! Conversation prefix: `0x01 || min(a, b) || max(a, b)` for the direct conversation of accounts
//! `a` and `b` (the same on both sides), `0x02 || len (u8) || room id` for a room.

use tim_protocol::{AccountId, Header, MessageId, Recipient, RoomId};

/// A RocksDB column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cf {
    /// Message records by id. Bodies live only here, so destroying one touches one family.
    Messages,
    /// Per-conversation index for history pages.
    History,
    /// Tombstones by target id.
    Tombstones,
    /// Messages and control messages waiting for delivery (node outbox).
    Outbox,
    /// Per-room arrival log: what this node can serve to a member catching up.
    RoomLog,
    /// Room sync cursors, per room and serving peer.
    Sync,
    /// Node metadata: joined rooms, burn-after-read deadlines, the last room-log sequence number.
    Meta,
    /// Deletion receipts from replicas, for messages this node's account revoked or burned.
    Receipts,
    /// Each conversation's newest activity and unread count, and a recency index over them.
    Inbox,
}

impl Cf {
    /// Every column family, in creation order.
    pub const ALL: [Cf; 9] = [
        Cf::Messages,
        Cf::History,
        Cf::Tombstones,
        Cf::Outbox,
        Cf::RoomLog,
        Cf::Sync,
        Cf::Meta,
        Cf::Receipts,
        Cf::Inbox,
    ];

    /// The RocksDB name.
    pub const fn name(self) -> &'static str {
        match self {
            Cf::Messages => "messages",
            Cf::History => "history",
            Cf::Tombstones => "tombstones",
            Cf::Outbox => "outbox",
            Cf::RoomLog => "room_log",
            Cf::Sync => "sync",
            Cf::Meta => "meta",
            Cf::Receipts => "receipts",
            Cf::Inbox => "inbox",
        }
    }
}

/// A conversation: the direct conversation of two accounts, or a room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conversation {
    /// Two accounts, stored in ascending order so both sides name it the same.
    Direct(AccountId, AccountId),
    /// A room.
    Room(RoomId),
}

impl Conversation {
    /// The direct conversation between `a` and `b` (order does not matter).
    pub fn direct(a: AccountId, b: AccountId) -> Self {
        if a <= b {
            Conversation::Direct(a, b)
        } else {
            Conversation::Direct(b, a)
        }
    }

    /// The conversation a message header belongs to.
    pub fn of(header: &Header) -> Self {
        match &header.to {
            Recipient::Account(to) => Conversation::direct(header.from, *to),
            Recipient::Room(room) => Conversation::Room(room.clone()),
        }
    }

    /// The conversation a [`Conversation::prefix`] names; `None` for bytes that are not one.
    pub(crate) fn from_prefix(bytes: &[u8]) -> Option<Conversation> {
        match bytes.split_first()? {
            (1, rest) if rest.len() == 64 => {
                let a = AccountId::from_bytes(rest[..32].try_into().ok()?).ok()?;
                let b = AccountId::from_bytes(rest[32..].try_into().ok()?).ok()?;
                Some(Conversation::Direct(a, b))
            }
            (2, rest) => {
                let (len, name) = rest.split_first()?;
                if name.len() != usize::from(*len) {
                    return None;
                }
                let room = RoomId::new(std::str::from_utf8(name).ok()?).ok()?;
                Some(Conversation::Room(room))
            }
            _ => None,
        }
    }

    pub(crate) fn prefix(&self) -> Vec<u8> {
        match self {
            Conversation::Direct(a, b) => {
                let mut k = Vec::with_capacity(65 + 40);
                k.push(1);
                k.extend_from_slice(a.as_bytes());
                k.extend_from_slice(b.as_bytes());
                k
            }
            Conversation::Room(room) => {
                let r = room.as_str().as_bytes();
                let mut k = Vec::with_capacity(2 + r.len() + 40);
                k.push(2);
                // Room ids are at most 64 bytes (checked by RoomId), so the length fits a byte.
                k.push(r.len() as u8);
                k.extend_from_slice(r);
                k
            }
        }
    }
}

/// The outbox key of an outgoing item.
pub(crate) fn outbox_key(id: &MessageId, kind: crate::OutKind) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[..32].copy_from_slice(id.as_bytes());
    k[32] = kind as u8;
    k
}

/// The room-log key of sequence number `seq` in `room`.
pub(crate) fn room_log_key(room: &RoomId, seq: u64) -> Vec<u8> {
    let mut k = Conversation::Room(room.clone()).prefix();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The history key of a message: conversation prefix, send time, id.
pub(crate) fn history_key(header: &Header, id: &MessageId) -> Vec<u8> {
    let mut k = Conversation::of(header).prefix();
    k.extend_from_slice(&header.sent_at.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// The message id at the end of a history key.
pub(crate) fn id_of_history_key(key: &[u8]) -> Option<MessageId> {
    let tail: [u8; 32] = key.get(key.len().checked_sub(32)?..)?.try_into().ok()?;
    Some(MessageId::from_bytes(tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tim_protocol::AccountKey;

    #[test]
    fn direct_conversation_is_symmetric() {
        let a = AccountKey::generate().account_id();
        let b = AccountKey::generate().account_id();
        assert_eq!(Conversation::direct(a, b), Conversation::direct(b, a));
        assert_eq!(Conversation::direct(a, b).prefix().len(), 65);
    }

    #[test]
    fn a_prefix_names_its_conversation_and_nothing_else_parses() {
        let a = AccountKey::generate().account_id();
        let b = AccountKey::generate().account_id();
        let room = Conversation::Room(RoomId::new("lobby").unwrap_or_else(|_| unreachable!()));
        for c in [Conversation::direct(a, b), room.clone()] {
            assert_eq!(Conversation::from_prefix(&c.prefix()), Some(c));
        }
        let mut long = room.prefix();
        long.push(b'x');
        assert_eq!(Conversation::from_prefix(&long), None);
        assert_eq!(Conversation::from_prefix(&[1; 10]), None);
        assert_eq!(Conversation::from_prefix(&[]), None);
    }

    #[test]
    fn room_prefixes_do_not_nest() {
        let ab = Conversation::Room(RoomId::new("ab").unwrap_or_else(|_| unreachable!()));
        let abc = Conversation::Room(RoomId::new("abc").unwrap_or_else(|_| unreachable!()));
        assert!(!abc.prefix().starts_with(&ab.prefix()));
    }
}
