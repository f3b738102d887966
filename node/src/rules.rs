//! I/O-free decisions: may the local account revoke or burn this message, does a control message
//! respect the revoke window, does an inbound item belong where it arrived.

use std::time::Duration;

use tim_protocol::{AccountId, Action, Control, Envelope, Header, Recipient, RoomId};
use tim_storage::Entry;

use crate::{Error, Result};

/// How an inbound envelope reached us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Via {
    /// A direct request to this node.
    Direct,
    /// Gossip on the topic of this room.
    Room(RoomId),
}

/// Checks a local revoke or burn of the stored `entry` (the message `mid` as this node has it)
/// by `local`, and returns the signed header to put in the control message.
pub(crate) fn check_local(
    action: Action,
    local: &AccountId,
    entry: Option<Entry>,
    mid: tim_protocol::MessageId,
    now: u64,
    window: Option<Duration>,
) -> Result<tim_protocol::SignedHeader> {
    let stored = match entry {
        None => return Err(Error::NotFound(mid)),
        Some(Entry::Tombstone(_)) => return Err(Error::Tombstoned(mid)),
        Some(Entry::Message(m)) => m,
    };
    let h = stored.message.head();
    match action {
        Action::Revoke => {
            if h.from != *local {
                return Err(Error::PermissionDenied("only the sender may revoke a message"));
            }
            check_window(h, now, window)?;
        }
        Action::Burn => match &h.to {
            Recipient::Room(_) => return Err(Error::BadParameters("room messages cannot be burned".into())),
            Recipient::Account(to) if to != local => {
                return Err(Error::PermissionDenied("only the recipient may burn a message"))
            }
            Recipient::Account(_) => {}
        },
    }
    Ok(stored.message.header)
}

/// The revoke window policy: a revoke made more than `window` after the target was sent is
/// refused. Applies only to revokes; `at` is the revoke time (ms since the epoch).
pub(crate) fn check_window(target: &Header, at: u64, window: Option<Duration>) -> Result<()> {
    if let Some(window) = window {
        let limit = window.as_millis() as u64;
        if at.saturating_sub(target.sent_at) > limit {
            return Err(Error::Expired(window.as_secs()));
        }
    }
    Ok(())
}

/// Checks that a verified inbound control message belongs where it arrived and respects policy.
pub(crate) fn check_inbound_control(
    control: &Control,
    local: &AccountId,
    via: &Via,
    window: Option<Duration>,
) -> Result<()> {
    let h = &control.target.header;
    check_destination(h, local, via)?;
    if control.action == Action::Revoke {
        check_window(h, control.at, window)?;
    }
    Ok(())
}

/// Where an item about the message with header `h` may arrive: a direct message (or a control
/// message about one) only directly, and only at one of its two parties; a room message only on
/// its room's topic.
pub(crate) fn check_destination(h: &Header, local: &AccountId, via: &Via) -> Result<()> {
    match (&h.to, via) {
        (Recipient::Account(to), Via::Direct) if to == local || h.from == *local => Ok(()),
        (Recipient::Account(_), Via::Direct) => Err(Error::BadParameters("not addressed to this account".into())),
        (Recipient::Room(room), Via::Room(topic)) if room == topic => Ok(()),
        _ => Err(Error::BadParameters("arrived on the wrong path".into())),
    }
}

/// The header an inbound envelope is about.
pub(crate) fn header_of(env: &Envelope) -> &Header {
    match env {
        Envelope::Message(m) => m.head(),
        Envelope::Control(c) => &c.target.header,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tim_protocol::{AccountKey, Code, Message};
    use tim_storage::{State, StoredMessage};

    fn key(seed: u8) -> AccountKey {
        AccountKey::from_secret_bytes(&[seed; 32])
    }

    fn stored(m: Message) -> Option<Entry> {
        Some(Entry::Message(StoredMessage {
            state: State::Received,
            stored_at: 0,
            read_at: None,
            message: m,
        }))
    }

    fn direct(from: &AccountKey, to: &AccountKey, sent_at: u64) -> Message {
        Message::sign(from, Recipient::Account(to.account_id()), b"x".to_vec(), sent_at, None)
            .map(|v| v.into_inner())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn code(r: Result<impl std::fmt::Debug>) -> Code {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.code(),
        }
    }

    #[test]
    fn local_permissions() {
        let (a, b) = (key(1), key(2));
        let (ida, idb) = (a.account_id(), b.account_id());
        let m = direct(&a, &b, 1000);
        let mid = m.id();
        assert!(check_local(Action::Revoke, &ida, stored(m.clone()), mid, 2000, None).is_ok());
        assert_eq!(
            code(check_local(Action::Revoke, &idb, stored(m.clone()), mid, 2000, None)),
            Code::PermissionDenied
        );
        assert!(check_local(Action::Burn, &idb, stored(m.clone()), mid, 2000, None).is_ok());
        assert_eq!(
            code(check_local(Action::Burn, &ida, stored(m.clone()), mid, 2000, None)),
            Code::PermissionDenied
        );
        assert_eq!(
            code(check_local(Action::Burn, &ida, None, mid, 2000, None)),
            Code::NotFound
        );
        let room = Message::sign(
            &a,
            Recipient::Room(RoomId::new("r").unwrap_or_else(|e| panic!("{e}"))),
            vec![],
            1,
            None,
        )
        .map(|v| v.into_inner())
        .unwrap_or_else(|e| panic!("{e}"));
        let rid = room.id();
        assert_eq!(
            code(check_local(Action::Burn, &idb, stored(room.clone()), rid, 2, None)),
            Code::BadParameters
        );
        assert!(check_local(Action::Revoke, &ida, stored(room), rid, 2, None).is_ok());
    }

    #[test]
    fn revoke_window() {
        let (a, b) = (key(1), key(2));
        let m = direct(&a, &b, 1_000);
        let w = Some(Duration::from_secs(60));
        assert!(check_local(Action::Revoke, &a.account_id(), stored(m.clone()), m.id(), 61_000, w).is_ok());
        assert_eq!(
            code(check_local(
                Action::Revoke,
                &a.account_id(),
                stored(m.clone()),
                m.id(),
                61_001,
                w
            )),
            Code::Expired
        );
        // Burns are not limited by the revoke window.
        assert!(check_local(Action::Burn, &b.account_id(), stored(m.clone()), m.id(), 1_000_000, w).is_ok());
    }

    #[test]
    fn destinations() {
        let (a, b, c) = (key(1), key(2), key(3));
        let m = direct(&a, &b, 1);
        let room = RoomId::new("r").unwrap_or_else(|e| panic!("{e}"));
        assert!(check_destination(m.head(), &b.account_id(), &Via::Direct).is_ok());
        assert!(check_destination(m.head(), &a.account_id(), &Via::Direct).is_ok());
        assert_eq!(
            code(check_destination(m.head(), &c.account_id(), &Via::Direct)),
            Code::BadParameters
        );
        assert_eq!(
            code(check_destination(m.head(), &b.account_id(), &Via::Room(room.clone()))),
            Code::BadParameters
        );
        let rm = Message::sign(&a, Recipient::Room(room.clone()), vec![], 1, None)
            .map(|v| v.into_inner())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(check_destination(rm.head(), &c.account_id(), &Via::Room(room)).is_ok());
        let other = RoomId::new("other").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            code(check_destination(rm.head(), &c.account_id(), &Via::Room(other))),
            Code::BadParameters
        );
        assert_eq!(
            code(check_destination(rm.head(), &c.account_id(), &Via::Direct)),
            Code::BadParameters
        );
    }
}
