//! Tests of seal-key announcements in private rooms.

use super::*;
use tim_protocol::{
    seal::{Keyring, SealSecret},
    test_util::key,
    AccountKey,
};

fn publishing(k: &AccountKey, seq: u64) -> Keyring {
    Keyring::new(k, &[(seq, SealSecret::generate())]).unwrap_or_else(|e| panic!("{e}"))
}

/// A core for `key` that founded a private room and invited `invitees` (at `now`).
fn founder_core(dir: &std::path::Path, founder: &AccountKey, invitees: &[&AccountKey]) -> (Core, RoomId) {
    let now = now_ms();
    let create =
        tim_protocol::RoomOp::found(founder, "team".into(), true, now - 10_000).unwrap_or_else(|e| panic!("{e}"));
    let room = create.room.clone();
    let mut membership = tim_protocol::Membership::new(create).unwrap_or_else(|e| panic!("{e}"));
    for (i, invitee) in invitees.iter().enumerate() {
        let action = tim_protocol::RoomAction::Invite(invitee.account_id());
        let invite = tim_protocol::RoomOp::sign_linked(
            founder,
            room.clone(),
            action.clone(),
            now - 9_000 + i as u64,
            membership.links_for(&founder.account_id(), &action),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        membership.apply(invite).unwrap_or_else(|e| panic!("{e}"));
    }
    let core = crate::core::test_core::core(
        dir,
        founder.clone(),
        publishing(founder, 1),
        std::slice::from_ref(&room),
    );
    core.founded().insert(room.clone(), membership);
    (core, room)
}

fn announcement(k: &AccountKey, room: &RoomId, ring: &Keyring, at: u64) -> SealKeyAnnouncement {
    let record = ring.record().cloned().unwrap_or_else(|| panic!("no record"));
    SealKeyAnnouncement::sign(k, room.clone(), record, at).unwrap_or_else(|e| panic!("{e}"))
}

/// Admits `k` to `room` at `core` (the founder's invite, then `k`'s join) and returns the state.
fn admit(core: &Core, room: &RoomId, founder: &AccountKey, k: &AccountKey, at: u64) -> RoomState {
    let mut founded = core.founded();
    let membership = founded.get_mut(room).unwrap_or_else(|| panic!("no room"));
    for (by, action, at) in [
        (founder, tim_protocol::RoomAction::Invite(k.account_id()), at),
        (k, tim_protocol::RoomAction::Join, at + 1),
    ] {
        let links = membership.links_for(&by.account_id(), &action);
        let op =
            tim_protocol::RoomOp::sign_linked(by, room.clone(), action, at, links).unwrap_or_else(|e| panic!("{e}"));
        membership.apply(op).unwrap_or_else(|e| panic!("{e}"));
    }
    membership.state().clone()
}

#[test]
fn announcements_are_taken_from_members_signed_by_them_fresh_and_a_few_a_minute() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (founder, bob, carol) = (key(1), key(2), key(3));
    let (core, room) = founder_core(dir.path(), &founder, &[]);
    let now = now_ms();
    admit(&core, &room, &founder, &bob, now - 8_000);
    let via = Via::Room(room.clone());
    let (bobs, carols) = (publishing(&bob, 1), publishing(&carol, 1));
    let verdict = |a: SealKeyAnnouncement| core.seal_key_in(a, &via).map_err(|e| e.code());

    // Off the clock, on another path, or not signed by the record's account: not taken.
    let stale = announcement(&bob, &room, &bobs, now - ANNOUNCEMENT_SKEW_MS - 1000);
    assert_eq!(verdict(stale), Ok(Verdict::Ignored(Code::Expired)));
    let direct = core.seal_key_in(announcement(&bob, &room, &bobs, now), &Via::Direct);
    assert_eq!(direct.map_err(|e| e.code()).err(), Some(Code::BadParameters));
    let mut forged = announcement(&bob, &room, &bobs, now);
    forged.at += 1;
    assert_eq!(verdict(forged), Err(Code::InvalidSignature));
    assert_eq!(core.reader.record_of(&bob.account_id()), None);

    // A member's: taken and forwarded; the same bytes again (a replay): not forwarded; a new
    // one naming the record held: forwarded, up to 30 a minute.
    let first = announcement(&bob, &room, &bobs, now);
    assert_eq!(verdict(first.clone()), Ok(Verdict::Stored));
    assert_eq!(core.reader.record_of(&bob.account_id()).as_ref(), bobs.record());
    assert_eq!(verdict(first), Ok(Verdict::Duplicate));
    for i in 1..MAX_PER_MINUTE as u64 {
        assert_eq!(
            verdict(announcement(&bob, &room, &bobs, now + i)),
            Ok(Verdict::Stored),
            "{i}"
        );
    }
    assert_eq!(
        verdict(announcement(&bob, &room, &bobs, now + 100)),
        Ok(Verdict::Duplicate)
    );
    // The minute is this node's, not the announcer's: dating ahead buys no more.
    assert_eq!(
        verdict(announcement(&bob, &room, &bobs, now + 120_000)),
        Ok(Verdict::Duplicate)
    );
    // The first taken from Bob was answered: this account's own announcement is asked for, once.
    let later = now_ms() + ANSWER_AFTER_MS;
    assert_eq!(core.announcements().due_own(later), vec![room.clone()]);
    assert!(core.announcements().due_own(later).is_empty());

    // Carol's, before she is a member: held, not forwarded, and taken once she is one.
    assert_eq!(
        verdict(announcement(&carol, &room, &carols, now)),
        Ok(Verdict::Ignored(Code::PermissionDenied))
    );
    assert_eq!(core.reader.record_of(&carol.account_id()), None);
    let state = admit(&core, &room, &founder, &carol, now - 5_000);
    core.after_membership_change(&room, &state, true);
    assert_eq!(core.reader.record_of(&carol.account_id()).as_ref(), carols.record());
}
