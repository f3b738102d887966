//! The verification policy every peer applies on top of signatures (docs/protocol.md,
//! "Verification rules"): who may revoke or burn a message, the revoke window, signed times not
//! in the future, and where an item may arrive. Plain functions of their inputs; the caller
//! supplies the clock.

use std::time::Duration;

use crate::{AccountId, Action, Control, Envelope, Error, Header, Receipt, Recipient, Result, RoomId};

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

/// How far ahead of a receiver's clock a signed time (a message's `sent_at`, a control message's
/// `at`) may lie: the clock skew tolerated between honest peers. Later times are refused (4104),
/// so nobody can pin a message to the top of a history or stretch a revoke window forward.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The default grace a receiver allows, beyond the revoke window, between holding a message and
/// receiving its revoke (delivery delay and retries while both are online).
pub const DEFAULT_REVOKE_GRACE: Duration = Duration::from_secs(2 * 60);

/// Refuses (4104) a signed time `at` (ms since the epoch) that lies more than [`MAX_CLOCK_SKEW`]
/// after the receiver's `now`.
pub fn check_not_future(what: &'static str, at: u64, now: u64) -> Result<()> {
    let skew = u64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
    if at > now.saturating_add(skew) {
        return Err(Error::BadParameters(format!("{what} lies in the future")));
    }
    Ok(())
}

/// What a receiver knows, on its own clock, when a control message arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverClock {
    /// The receiver's time now, ms since the epoch.
    pub now: u64,
    /// Since when the receiver has held the target while running (ms since the epoch): the later
    /// of when it stored the target and when it last started (a revoke made in time may have
    /// waited in the revoker's outbox while the receiver was down). `None`: it does not hold the
    /// target, so only the signed times can be judged.
    pub held_since: Option<u64>,
    /// How long beyond the window a revoke may take to reach a running receiver.
    pub grace: Duration,
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

/// The rules a verified inbound control message must also pass at `local`: its destination, its
/// signed times not in the future, and for a revoke the window twice: by the signed times (the
/// revoke's `at` against the target's `sent_at`), and by the receiver's own clock, since both
/// signed times are the revoker's choice: a revoke reaching a receiver that has held the target
/// for longer than the window plus `clock.grace` is refused (4121).
pub fn check_inbound_control(
    control: &Control,
    local: &AccountId,
    via: &Via,
    window: Option<Duration>,
    clock: &ReceiverClock,
) -> Result<()> {
    let target = &control.target.header;
    check_destination(target, local, via)?;
    check_not_future("the control message's time", control.at, clock.now)?;
    check_not_future("the target's sent_at", target.sent_at, clock.now)?;
    if control.action == Action::Revoke {
        check_revoke_window(target, control.at, window)?;
        if let (Some(window), Some(held_since)) = (window, clock.held_since) {
            let limit = u64::try_from(window.saturating_add(clock.grace).as_millis()).unwrap_or(u64::MAX);
            if clock.now.saturating_sub(held_since) > limit {
                return Err(Error::Expired(format!(
                    "the revoke window of {} s has passed on this node's clock",
                    window.as_secs()
                )));
            }
        }
    }
    Ok(())
}

/// The header an envelope is about: its own, or its control message's target. A receipt names
/// only its target's id: `None`.
pub fn header_of(envelope: &Envelope) -> Option<&Header> {
    match envelope {
        Envelope::Message(m) => Some(m.head()),
        Envelope::Control(c) => Some(&c.target.header),
        Envelope::Receipt(_)
        | Envelope::Contact(_)
        | Envelope::Stream(_)
        | Envelope::Presence(_)
        | Envelope::Room(_)
        | Envelope::Invite { .. }
        | Envelope::SealKey(_) => None,
    }
}

/// Whether a verified contact operation may be applied by `local` at `now`: it arrived directly
/// (4104), is addressed to `local` (4105) and is not dated in the future (4104). Whether it is
/// newer than the last one applied from its signer is the store's question.
pub fn check_contact(op: &crate::ContactOp, local: &AccountId, via: &Via, now: u64) -> Result<()> {
    if *via != Via::Direct {
        return Err(Error::BadParameters(
            "contact operations arrive only on direct paths".into(),
        ));
    }
    if op.to != *local {
        return Err(Error::PermissionDenied("a contact operation for another account"));
    }
    check_not_future("contact operation", op.at, now)
}

/// The account whose replica of `target` a tombstone signed by `by` must reach, for a direct
/// message: the other party (the recipient of a revoke, the sender of a burn). `None` for a room
/// message (every member holds one) and for a message to oneself (no other replica).
pub fn direct_replica(target: &Header, by: &AccountId) -> Option<AccountId> {
    match &target.to {
        Recipient::Room(_) => None,
        Recipient::Account(to) if *to == target.from => None,
        Recipient::Account(to) if to == by => Some(target.from),
        Recipient::Account(to) => Some(*to),
    }
}

/// Receipts arrive only on direct paths (4104); checked before the receipt's signature.
pub fn check_receipt_path(via: &Via) -> Result<()> {
    match via {
        Via::Direct => Ok(()),
        Via::Room(_) => Err(Error::BadParameters("receipts arrive only on direct paths".into())),
    }
}

/// Whether a verified `receipt` is one `local` asked for: it arrived directly (4104), is addressed
/// to `local` (4105), answers a tombstone `local` signed (`tombstone`: the control message of this
/// node's tombstone for the target, if any; 4105), comes from a replica of the target (for a
/// direct message only the other party; in a room any member; 4105), and is not dated in the
/// future (4104).
pub fn check_receipt(
    receipt: &Receipt,
    local: &AccountId,
    via: &Via,
    tombstone: Option<&Control>,
    now: u64,
) -> Result<()> {
    check_receipt_path(via)?;
    if receipt.to != *local {
        return Err(Error::PermissionDenied("receipt addressed to another account"));
    }
    let Some(control) = tombstone.filter(|c| c.by == *local) else {
        return Err(Error::PermissionDenied("no deletion by this account to confirm"));
    };
    let target = &control.target.header;
    if let Recipient::Account(_) = target.to {
        if direct_replica(target, local) != Some(receipt.by) {
            return Err(Error::PermissionDenied("the signer holds no replica of this message"));
        }
    }
    check_not_future("the receipt's time", receipt.at, now)
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

    fn revoke_at(m: &crate::Message, at: u64) -> Control {
        let a = key(1);
        Control::sign(&a, Action::Revoke, m.header.clone(), at)
            .expect("a revoke by the sender")
            .into_inner()
    }

    #[test]
    fn the_receiver_judges_the_revoke_window_on_its_own_clock() {
        let (a, b) = (key(1), key(2));
        let local = b.account_id();
        let w = Some(Duration::from_secs(60));
        let grace = Duration::from_secs(120);
        let sent = 1_000_000;
        let m = direct(&a, &b, b"x", sent);
        // Backdated: the revoke claims to be 1 ms after the message, but the receiver has held
        // the message for 10 minutes: refused, whatever the signed times say.
        let backdated = revoke_at(&m, sent + 1);
        let clock = |now, held_since| ReceiverClock { now, held_since, grace };
        let late = clock(sent + 600_000, Some(sent));
        assert_eq!(
            code(check_inbound_control(&backdated, &local, &Via::Direct, w, &late)),
            Code::Expired
        );
        // Within window plus grace of holding it: accepted.
        let in_time = clock(sent + 180_000, Some(sent));
        assert!(check_inbound_control(&backdated, &local, &Via::Direct, w, &in_time).is_ok());
        assert_eq!(
            code(check_inbound_control(
                &backdated,
                &local,
                &Via::Direct,
                w,
                &clock(sent + 180_001, Some(sent))
            )),
            Code::Expired
        );
        // Held since a restart 10 s ago (the revoke may have waited in an outbox): accepted.
        let after_restart = clock(sent + 600_000, Some(sent + 590_000));
        assert!(check_inbound_control(&backdated, &local, &Via::Direct, w, &after_restart).is_ok());
        // Not held: only the signed times count.
        assert!(check_inbound_control(&backdated, &local, &Via::Direct, w, &clock(sent + 600_000, None)).is_ok());
        assert_eq!(
            code(check_inbound_control(
                &revoke_at(&m, sent + 61_000),
                &local,
                &Via::Direct,
                w,
                &clock(sent, None)
            )),
            Code::Expired
        );
        // No window: no limit on either clock.
        assert!(check_inbound_control(&backdated, &local, &Via::Direct, None, &late).is_ok());
    }

    #[test]
    fn signed_times_in_the_future_are_refused() {
        let (a, b) = (key(1), key(2));
        let local = b.account_id();
        let now = 10_000_000;
        let skew = MAX_CLOCK_SKEW.as_millis() as u64;
        assert!(check_not_future("t", now + skew, now).is_ok());
        assert_eq!(code(check_not_future("t", now + skew + 1, now)), Code::BadParameters);
        let clock = ReceiverClock {
            now,
            held_since: None,
            grace: DEFAULT_REVOKE_GRACE,
        };
        // A revoke dated an hour ahead, of a message sent now.
        let m = direct(&a, &b, b"x", now);
        let ahead = revoke_at(&m, now + 3_600_000);
        assert_eq!(
            code(check_inbound_control(&ahead, &local, &Via::Direct, None, &clock)),
            Code::BadParameters
        );
        // A revoke of a message dated an hour ahead.
        let future = direct(&a, &b, b"x", now + 3_600_000);
        let of_future = revoke_at(&future, now + 3_600_001);
        assert_eq!(
            code(check_inbound_control(&of_future, &local, &Via::Direct, None, &clock)),
            Code::BadParameters
        );
        assert!(check_inbound_control(&revoke_at(&m, now + 1), &local, &Via::Direct, None, &clock).is_ok());
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

    #[test]
    fn receipts_only_from_replicas_for_this_accounts_deletions() {
        use crate::{test_util::revoke, Receipt};
        let (a, b, c) = (key(1), key(2), key(3));
        let (ida, idb) = (a.account_id(), b.account_id());
        let m = direct(&a, &b, b"x", 1_000);
        let tomb = revoke(&a, &m);
        let now = 10_000;
        let receipt = |by: &crate::AccountKey, to| Receipt::sign(by, m.id(), to, 2_000).unwrap().into_inner();
        // Bob, the other party, confirms Alice's revoke.
        assert!(check_receipt(&receipt(&b, ida), &ida, &Via::Direct, Some(&tomb), now).is_ok());
        // A stranger holds no replica of a direct message.
        assert_eq!(
            code(check_receipt(&receipt(&c, ida), &ida, &Via::Direct, Some(&tomb), now)),
            Code::PermissionDenied
        );
        // Addressed to someone else, or about a deletion this account did not make.
        assert_eq!(
            code(check_receipt(&receipt(&a, idb), &ida, &Via::Direct, Some(&tomb), now)),
            Code::PermissionDenied
        );
        assert_eq!(
            code(check_receipt(&receipt(&b, ida), &ida, &Via::Direct, None, now)),
            Code::PermissionDenied
        );
        assert_eq!(
            code(check_receipt(&receipt(&a, idb), &idb, &Via::Direct, Some(&tomb), now)),
            Code::PermissionDenied
        );
        // Only on direct paths, and not from the future.
        let room = RoomId::new("r").unwrap();
        assert_eq!(
            code(check_receipt(
                &receipt(&b, ida),
                &ida,
                &Via::Room(room),
                Some(&tomb),
                now
            )),
            Code::BadParameters
        );
        let late = Receipt::sign(&b, m.id(), ida, now + 6 * 60 * 1000)
            .unwrap()
            .into_inner();
        assert_eq!(
            code(check_receipt(&late, &ida, &Via::Direct, Some(&tomb), now)),
            Code::BadParameters
        );
        // In a room any member may confirm; a burn is confirmed by the sender.
        let rm = room_message(&a, "r", b"x", 1_000);
        let room_tomb = revoke(&a, &rm);
        let by_c = Receipt::sign(&c, rm.id(), ida, 2_000).unwrap().into_inner();
        assert!(check_receipt(&by_c, &ida, &Via::Direct, Some(&room_tomb), now).is_ok());
        let burned = crate::test_util::burn(&b, &m);
        let by_a = Receipt::sign(&a, m.id(), idb, 2_000).unwrap().into_inner();
        assert!(check_receipt(&by_a, &idb, &Via::Direct, Some(&burned), now).is_ok());
        let by_c = Receipt::sign(&c, m.id(), idb, 2_000).unwrap().into_inner();
        assert_eq!(
            code(check_receipt(&by_c, &idb, &Via::Direct, Some(&burned), now)),
            Code::PermissionDenied
        );
    }
}
