//! The verification policy every peer applies on top of signatures (docs/protocol.md,
//! "Verification rules"): who may revoke or burn a message, the revoke window, and where an item
//! may arrive. Plain functions of their inputs; the caller supplies the clock.

use std::time::Duration;

use crate::{AccountId, Action, Control, Envelope, Error, Header, Recipient, Result, RoomId};

/// The path an inbound item arrived on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A direct request to this node (a pipe).
    Direct,
    /// Gossip on the topic of this room, or a sync page of this room.
    Room(RoomId),
}

/// Who may apply `action` to the message with header `target`: a revoke only by its sender
/// (4105), a burn only of a direct message (4104) and only by its recipient (4105).
pub fn check_permission(action: Action, target: &Header, by: &AccountId) -> Result<()> {
    match action {
        Action::Revoke if target.from != *by => Err(Error::PermissionDenied("only the sender may revoke a message")),
        Action::Revoke => Ok(()),
        Action::Burn => match &target.to {
            Recipient::Room(_) => Err(Error::BadParameters("room messages cannot be burned".into())),
            Recipient::Account(to) if to != by => Err(Error::PermissionDenied("only the recipient may burn a message")),
            Recipient::Account(_) => Ok(()),
        },
    }
}

/// The revoke window: a revoke made at `at` (ms since the epoch) more than `window` after its
/// target was sent is refused (4121). `None` is no limit. Burns are never limited.
pub fn check_revoke_window(target: &Header, at: u64, window: Option<Duration>) -> Result<()> {
    let Some(window) = window else { return Ok(()) };
    let limit = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    if at.saturating_sub(target.sent_at) > limit {
        return Err(Error::Expired(format!(
            "the revoke window of {} s has passed",
            window.as_secs()
        )));
    }
    Ok(())
}

/// May the local account `local` apply `action` to `target` at `now`: the permission rule, then
/// the revoke window. Checked before signing, so a node never sends what its peers must refuse.
pub fn check_local_control(
    action: Action,
    target: &Header,
    local: &AccountId,
    now: u64,
    window: Option<Duration>,
) -> Result<()> {
    check_permission(action, target, local)?;
    if action == Action::Revoke {
        check_revoke_window(target, now, window)?;
    }
    Ok(())
}

/// Where an item about the message with header `target` may arrive at `local`: a direct message
/// (or a control message about one) only directly, and only at one of its two parties; a room
/// message only on its own room's path.
pub fn check_destination(target: &Header, local: &AccountId, via: &Via) -> Result<()> {
    match (&target.to, via) {
        (Recipient::Account(to), Via::Direct) if to == local || target.from == *local => Ok(()),
        (Recipient::Account(_), Via::Direct) => Err(Error::BadParameters("not addressed to this account".into())),
        (Recipient::Room(room), Via::Room(topic)) if room == topic => Ok(()),
        _ => Err(Error::BadParameters("arrived on the wrong path".into())),
    }
}

/// The rules a verified inbound control message must also pass at `local`: its destination, and
/// for a revoke the window (measured with the revoke's own `at`).
pub fn check_inbound_control(control: &Control, local: &AccountId, via: &Via, window: Option<Duration>) -> Result<()> {
    let target = &control.target.header;
    check_destination(target, local, via)?;
    if control.action == Action::Revoke {
        check_revoke_window(target, control.at, window)?;
    }
    Ok(())
}

/// The header an envelope is about: its own, or its control message's target.
pub fn header_of(envelope: &Envelope) -> &Header {
    match envelope {
        Envelope::Message(m) => m.head(),
        Envelope::Control(c) => &c.target.header,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{
        test_util::{direct, key, room_message},
        Code,
    };

    fn code(r: Result<()>) -> Code {
        match r {
            Ok(()) => panic!("expected an error"),
            Err(e) => e.code(),
        }
    }

    #[test]
    fn local_permissions() {
        let (a, b) = (key(1), key(2));
        let (ida, idb) = (a.account_id(), b.account_id());
        let m = direct(&a, &b, b"x", 1000);
        let h = m.head();
        assert!(check_local_control(Action::Revoke, h, &ida, 2000, None).is_ok());
        assert_eq!(
            code(check_local_control(Action::Revoke, h, &idb, 2000, None)),
            Code::PermissionDenied
        );
        assert!(check_local_control(Action::Burn, h, &idb, 2000, None).is_ok());
        assert_eq!(
            code(check_local_control(Action::Burn, h, &ida, 2000, None)),
            Code::PermissionDenied
        );
        let room = room_message(&a, "r", b"", 1);
        assert_eq!(
            code(check_local_control(Action::Burn, room.head(), &idb, 2, None)),
            Code::BadParameters
        );
        assert!(check_local_control(Action::Revoke, room.head(), &ida, 2, None).is_ok());
    }

    #[test]
    fn revoke_window() {
        let (a, b) = (key(1), key(2));
        let m = direct(&a, &b, b"x", 1_000);
        let w = Some(Duration::from_secs(60));
        let (ida, idb) = (a.account_id(), b.account_id());
        assert!(check_local_control(Action::Revoke, m.head(), &ida, 61_000, w).is_ok());
        assert_eq!(
            code(check_local_control(Action::Revoke, m.head(), &ida, 61_001, w)),
            Code::Expired
        );
        // Burns are not limited by the revoke window.
        assert!(check_local_control(Action::Burn, m.head(), &idb, 1_000_000, w).is_ok());
        // A permission failure is reported before the window.
        assert_eq!(
            code(check_local_control(Action::Revoke, m.head(), &idb, 61_001, w)),
            Code::PermissionDenied
        );
    }

    #[test]
    fn destinations() {
        let (a, b, c) = (key(1), key(2), key(3));
        let m = direct(&a, &b, b"x", 1);
        let room = RoomId::new("r").unwrap();
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
        let rm = room_message(&a, "r", b"", 1);
        assert!(check_destination(rm.head(), &c.account_id(), &Via::Room(room)).is_ok());
        let other = RoomId::new("other").unwrap();
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
