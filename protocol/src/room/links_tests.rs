//! The fold under causal links (`links.rs`): pins, whole chains, heads.

use super::*;

/// Founder promotes M (M joined by invitation), M invites bob; the founder demotes M, standing by
/// what it held of M's.
fn room_with_a_demoted_manager() -> (Room, AccountKey, AccountKey) {
    let mut room = Room::new(true);
    let founder = room.founder.clone();
    let (m, bob) = (key(5), key(2));
    room.apply(&founder, A::Invite(m.account_id()), 101).unwrap();
    room.apply(&m, A::Join, 102).unwrap();
    room.apply(&founder, A::Promote(m.account_id()), 103).unwrap();
    room.apply(&m, A::Invite(bob.account_id()), 110).unwrap();
    room.apply(&bob, A::Join, 120).unwrap();
    room.apply(&founder, A::Demote(m.account_id()), 200).unwrap();
    (room, m, bob)
}

#[test]
fn a_demoted_manager_cannot_date_an_invite_back_to_when_it_managed() {
    let (mut room, m, bob) = room_with_a_demoted_manager();
    let carol = key(3);
    // What the founder stood by holds: M's invite, so bob's membership.
    assert!(room.state().is_member(&bob.account_id()));
    // Signed after the demotion but dated before it, linked to M's own chain or to nothing:
    // void, and kept inactive, so carol's join is only a request.
    let linked = room.op(&m, A::Invite(carol.account_id()), 150);
    assert_eq!(code(room.membership.apply(linked)), Code::PermissionDenied);
    let unlinked = room.unlinked(&m, A::Approve(key(4).account_id()), 151);
    assert_eq!(code(room.membership.apply(unlinked)), Code::PermissionDenied);
    assert!(!room.state().is_member(&key(4).account_id()));
    assert_eq!(
        room.apply(&carol, A::Join, 220).unwrap(),
        MembershipChange::Requested(carol.account_id())
    );
    // After a new promotion M's later operations count again.
    let founder = room.founder.clone();
    room.apply(&founder, A::Promote(m.account_id()), 230).unwrap();
    assert_eq!(
        room.apply(&m, A::Approve(carol.account_id()), 240).unwrap(),
        MembershipChange::Joined(carol.account_id())
    );
}

#[test]
fn a_removal_voids_what_the_founder_had_not_seen_and_every_order_agrees() {
    let mut room = Room::new(true);
    let founder = room.founder.clone();
    let (m, bob, dave) = (key(5), key(2), key(7));
    room.apply(&founder, A::Invite(m.account_id()), 101).unwrap();
    room.apply(&m, A::Join, 102).unwrap();
    room.apply(&founder, A::Promote(m.account_id()), 103).unwrap();
    room.apply(&m, A::Invite(bob.account_id()), 110).unwrap();
    room.apply(&bob, A::Join, 120).unwrap();
    // The founder removes M having seen its invite of bob...
    let kick = room.op(&founder, A::Kick(m.account_id()), 200);
    // ... while M's invite of dave and dave's join, dated 150 and 160, reach members only
    // afterwards.
    let mut unseen = room.op(&m, A::Invite(dave.account_id()), 150);
    room.membership.apply(kick.clone()).unwrap();
    assert_eq!(code(room.membership.apply(unseen.clone())), Code::PermissionDenied);
    room.apply(&dave, A::Join, 160).unwrap();
    assert!(room.state().is_member(&bob.account_id()));
    assert!(!room.state().is_member(&dave.account_id()));
    assert!(room.state().requests.contains_key(&dave.account_id()));
    // Any arrival order, the late invite included, folds to the same state.
    let mut ops: Vec<_> = room.membership.ops().to_vec();
    for _ in 0..ops.len() {
        ops.rotate_left(1);
        let rebuilt = Membership::rebuild(ops.clone()).unwrap();
        assert_eq!(rebuilt.state(), room.state());
    }
    ops.reverse();
    assert_eq!(Membership::rebuild(ops).unwrap().state(), room.state());
    // Had the founder not seen the invite of bob either, it would be void too.
    unseen = room.unlinked(&founder, A::Kick(m.account_id()), 200);
    let mut without: Vec<_> = room
        .membership
        .ops()
        .iter()
        .filter(|op| op.id() != kick.id())
        .cloned()
        .collect();
    without.push(unseen);
    let rebuilt = Membership::rebuild(without).unwrap();
    assert!(!rebuilt.state().is_member(&bob.account_id()));
    assert!(!rebuilt.state().is_member(&m.account_id()));
}

#[test]
fn a_pin_over_a_gap_voids_nothing_until_the_gap_is_filled() {
    // M's chain: join (102), invite bob (110), invite carol (115); the demotion stands by the
    // last. A member that holds all but the middle cannot walk the chain whole: the demotion
    // voids nothing there (not even a dated-back invite) until the middle comes.
    let mut room = Room::new(true);
    let founder = room.founder.clone();
    let (m, bob, carol, dave) = (key(5), key(2), key(3), key(4));
    room.apply(&founder, A::Invite(m.account_id()), 101).unwrap();
    room.apply(&m, A::Join, 102).unwrap();
    room.apply(&founder, A::Promote(m.account_id()), 103).unwrap();
    room.apply(&m, A::Invite(bob.account_id()), 110).unwrap();
    room.apply(&m, A::Invite(carol.account_id()), 115).unwrap();
    room.apply(&founder, A::Demote(m.account_id()), 200).unwrap();
    let dated_back = room.unlinked(&m, A::Invite(dave.account_id()), 150);
    assert_eq!(code(room.membership.apply(dated_back.clone())), Code::PermissionDenied);
    let ops: Vec<_> = room.membership.ops().to_vec();
    let middle = ops
        .iter()
        .find(|op| op.action == A::Invite(bob.account_id()))
        .cloned()
        .unwrap();
    let mut partial = Membership::rebuild(ops.iter().filter(|op| op.id() != middle.id()).cloned().collect()).unwrap();
    assert!(partial.state().is_member(&m.account_id()));
    assert!(partial.state().invited.contains_key(&carol.account_id()));
    assert!(
        partial.state().invited.contains_key(&dave.account_id()),
        "an incomplete pin voided"
    );
    partial.apply(middle).unwrap();
    assert_eq!(partial.state(), room.state());
    assert!(!partial.state().invited.contains_key(&dave.account_id()));
}

#[test]
fn links_name_the_signers_and_the_subjects_newest_operations() {
    let (room, m, _) = room_with_a_demoted_manager();
    let founder = room.founder.clone();
    let newest = |account: &AccountKey| {
        room.membership
            .ops()
            .iter()
            .rev()
            .find(|op| op.by == account.account_id())
            .map(|op| op.id())
    };
    let links = room
        .membership
        .links_for(&founder.account_id(), &A::Kick(m.account_id()));
    assert_eq!(links.prev, newest(&founder));
    assert_eq!(links.seen, newest(&m).into_iter().collect::<Vec<_>>());
    assert_eq!(
        room.membership.links_for(&m.account_id(), &A::Leave),
        Links {
            prev: newest(&m),
            seen: Vec::new()
        }
    );
    // A link where none belongs is refused at signing and at verification.
    let bad = Links {
        prev: None,
        seen: newest(&m).into_iter().collect(),
    };
    assert_eq!(
        code(RoomOp::sign_linked(
            &founder,
            room.id(),
            A::Invite(key(3).account_id()),
            300,
            bad
        )),
        Code::BadParameters
    );
}

/// M, invited and promoted by the founder, approves Y, then signs X2 and X3 (invites): the room,
/// all of them applied, and those two.
struct Chain {
    room: Room,
    m: AccountKey,
    y: AccountKey,
    x2: Verified<RoomOp>,
    x3: Verified<RoomOp>,
}

fn chain() -> Chain {
    let mut room = Room::new(true);
    let founder = room.founder.clone();
    let (m, y) = (key(5), key(6));
    room.apply(&founder, A::Invite(m.account_id()), 101).unwrap();
    room.apply(&m, A::Join, 102).unwrap();
    room.apply(&founder, A::Promote(m.account_id()), 103).unwrap();
    room.apply(&m, A::Approve(y.account_id()), 110).unwrap();
    let x2 = room.op(&m, A::Invite(key(7).account_id()), 120);
    room.membership.apply(x2.clone()).unwrap();
    let x3 = room.op(&m, A::Invite(key(8).account_id()), 130);
    room.membership.apply(x3.clone()).unwrap();
    Chain { room, m, y, x2, x3 }
}

#[test]
fn an_operation_is_taken_before_the_one_it_follows_and_both_fold_the_same() {
    let Chain { room, x2, x3, .. } = chain();
    let held: Vec<_> = room
        .membership
        .ops()
        .iter()
        .filter(|op| op.id() != x2.id() && op.id() != x3.id())
        .cloned()
        .collect();
    let mut member = Membership::rebuild(held).unwrap();
    member.apply(x3.clone()).unwrap();
    assert!(member.holds(&x3.id()));
    member.apply(x2.clone()).unwrap();
    assert_eq!(member.state(), room.state());
}

#[test]
fn a_member_that_hears_a_demotion_before_what_it_stands_by_loses_nothing() {
    // The founder demotes M having seen X3; member Y hears the demotion first, then X3, then X2.
    let Chain { mut room, m, y, x2, x3 } = chain();
    let founder = room.founder.clone();
    let demote = room.op(&founder, A::Demote(m.account_id()), 200);
    assert_eq!(demote.seen, vec![x3.id()]);
    room.membership.apply(demote.clone()).unwrap();
    let early: Vec<_> = room
        .membership
        .ops()
        .iter()
        .filter(|op| ![x2.id(), x3.id(), demote.id()].contains(&op.id()))
        .cloned()
        .collect();
    let mut at_y = Membership::rebuild(early).unwrap();
    for op in [demote, x3, x2] {
        let _ = at_y.apply(op);
        assert!(at_y.state().is_member(&y.account_id()), "Y's approval by M was voided");
        assert!(at_y.state().is_member(&m.account_id()));
    }
    assert_eq!(at_y.state(), room.state());
}

#[test]
fn operations_behind_a_withheld_one_are_void_after_the_demotion() {
    // M signs W (dated 140) and P after it, publishes only P: P's chain is not whole, so the
    // founder's demotion names X3, not P, and stands by X3's chain. M then publishes W: both
    // void.
    let Chain { mut room, m, x3, .. } = chain();
    let founder = room.founder.clone();
    let w = room.op(&m, A::Invite(key(9).account_id()), 140);
    let p = RoomOp::sign_linked(
        &m,
        room.id(),
        A::Invite(key(10).account_id()),
        141,
        Links {
            prev: Some(w.id()),
            seen: Vec::new(),
        },
    )
    .unwrap();
    room.membership.apply(p.clone()).unwrap();
    assert!(room.state().invited.contains_key(&key(10).account_id()));
    let demote = room.op(&founder, A::Demote(m.account_id()), 200);
    assert_eq!(demote.seen, vec![x3.id()]);
    room.membership.apply(demote).unwrap();
    assert_eq!(code(room.membership.apply(w.clone())), Code::PermissionDenied);
    let state = room.state();
    assert!(!state.invited.contains_key(&key(9).account_id()));
    assert!(!state.invited.contains_key(&key(10).account_id()));
    assert!(state.invited.contains_key(&key(8).account_id()));
}

#[test]
fn links_follow_the_chain_even_when_the_clock_stepped_back() {
    // M's clock steps back: its next operation is dated before its previous one. The head of its
    // chain is the one nothing follows, not the newest by date.
    let Chain { mut room, m, x3, .. } = chain();
    let back = room.op(&m, A::Invite(key(11).account_id()), 125);
    assert_eq!(back.prev, Some(x3.id()));
    room.membership.apply(back.clone()).unwrap();
    assert_eq!(
        room.membership.links_for(&m.account_id(), &A::Leave).prev,
        Some(back.id())
    );
    let founder = room.founder.clone();
    assert_eq!(
        room.membership
            .links_for(&founder.account_id(), &A::Demote(m.account_id()))
            .seen,
        vec![back.id()]
    );
}

#[test]
fn a_removal_stands_by_every_head_of_a_forked_chain_it_held() {
    // M's node lost its data and signed on a fresh chain: two heads. The founder's demotion
    // names both, so neither branch is voided; more than MAX_SEEN heads are refused.
    let Chain { mut room, m, x3, .. } = chain();
    let fork = room.unlinked(&m, A::Invite(key(12).account_id()), 140);
    room.membership.apply(fork.clone()).unwrap();
    let founder = room.founder.clone();
    let demote = room.op(&founder, A::Demote(m.account_id()), 200);
    assert_eq!(demote.seen, vec![fork.id(), x3.id()]);
    room.membership.apply(demote).unwrap();
    let state = room.state();
    assert!(state.invited.contains_key(&key(8).account_id()));
    assert!(state.invited.contains_key(&key(12).account_id()));
    let many = Links {
        prev: None,
        seen: vec![x3.id(); crate::room::MAX_SEEN + 1],
    };
    assert_eq!(
        code(RoomOp::sign_linked(
            &founder,
            room.id(),
            A::Kick(m.account_id()),
            300,
            many
        )),
        Code::TooLarge
    );
}

#[test]
fn the_founders_pin_of_a_leave_heard_before_its_predecessor_voids_neither() {
    // M approves key 13, then leaves; the founder hears the leave first and pins M naming it.
    let Chain { mut room, m, .. } = chain();
    let approve = room.op(&m, A::Approve(key(13).account_id()), 150);
    let leave = RoomOp::sign_linked(
        &m,
        room.id(),
        A::Leave,
        160,
        Links {
            prev: Some(approve.id()),
            seen: Vec::new(),
        },
    )
    .unwrap();
    room.membership.apply(leave.clone()).unwrap();
    let founder = room.founder.clone();
    let mut links = room
        .membership
        .links_for(&founder.account_id(), &A::Demote(m.account_id()));
    assert!(!links.seen.contains(&leave.id()), "the leave's chain is not whole yet");
    links.seen.insert(0, leave.id());
    let pin = RoomOp::sign_linked(&founder, room.id(), A::Demote(m.account_id()), 170, links).unwrap();
    assert_eq!(
        code(room.membership.apply(pin)),
        Code::NotFound,
        "kept inactive: M manages no more"
    );
    assert!(!room.state().is_member(&m.account_id()), "the leave was voided");
    room.membership.apply(approve).unwrap();
    assert!(!room.state().is_member(&m.account_id()));
    assert!(room.state().is_member(&key(13).account_id()));
    // A dated-back invite signed after the leave is void now that the chain is whole.
    let back = room.unlinked(&m, A::Invite(key(14).account_id()), 155);
    assert_eq!(code(room.membership.apply(back)), Code::PermissionDenied);
}
