#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::super::Links;
use super::*;
use crate::{test_util::key, AccountKey, Code, RoomAction as A};

/// A room founded by `key(1)` at t = 100, and its members' keys.
struct Room {
    founder: AccountKey,
    membership: Membership,
}

impl Room {
    fn new(private: bool) -> Room {
        let founder = key(1);
        let create = RoomOp::found(&founder, "team".into(), private, 100).unwrap();
        Room {
            founder,
            membership: Membership::new(create).unwrap(),
        }
    }

    fn id(&self) -> RoomId {
        self.membership.state().room.clone()
    }

    /// `by`'s operation with the causal links an honest node gives it (from what is held).
    fn op(&self, by: &AccountKey, action: RoomAction, at: u64) -> Verified<RoomOp> {
        let links = self.membership.links_for(&by.account_id(), &action);
        RoomOp::sign_linked(by, self.id(), action, at, links).unwrap()
    }

    /// `by`'s operation with no causal links, as an account dating it back would sign it.
    fn unlinked(&self, by: &AccountKey, action: RoomAction, at: u64) -> Verified<RoomOp> {
        RoomOp::sign(by, self.id(), action, at).unwrap()
    }

    fn apply(&mut self, by: &AccountKey, action: RoomAction, at: u64) -> Result<MembershipChange> {
        let op = self.op(by, action, at);
        self.membership.apply(op)
    }

    fn state(&self) -> &RoomState {
        self.membership.state()
    }
}

fn code<T: std::fmt::Debug>(r: Result<T>) -> Code {
    r.expect_err("expected an error").code()
}

#[test]
fn an_invited_account_joins_a_private_room_and_others_only_ask() {
    let mut room = Room::new(true);
    let (bob, carol) = (key(2), key(3));
    let founder = key(1);
    assert!(room.state().is_member(&founder.account_id()));
    assert_eq!(
        room.apply(&founder, A::Invite(bob.account_id()), 110).unwrap(),
        MembershipChange::Invited {
            account: bob.account_id(),
            by: founder.account_id()
        }
    );
    assert_eq!(
        room.apply(&bob, A::Join, 120).unwrap(),
        MembershipChange::Joined(bob.account_id())
    );
    assert_eq!(code(room.apply(&bob, A::Join, 121)), Code::Repeated);

    // Uninvited: a request, which a manager approves.
    assert_eq!(
        room.apply(&carol, A::Join, 130).unwrap(),
        MembershipChange::Requested(carol.account_id())
    );
    assert!(!room.state().is_member(&carol.account_id()));
    assert_eq!(code(room.apply(&carol, A::Join, 131)), Code::Repeated);
    assert_eq!(
        code(room.apply(&bob, A::Approve(carol.account_id()), 140)),
        Code::PermissionDenied
    );
    assert_eq!(
        room.apply(&founder, A::Approve(carol.account_id()), 141).unwrap(),
        MembershipChange::Joined(carol.account_id())
    );
    // An approval is the manager's decision: it admits even without a request held here (a
    // node keeps only so many requests).
    assert_eq!(
        room.apply(&founder, A::Approve(key(4).account_id()), 142).unwrap(),
        MembershipChange::Joined(key(4).account_id())
    );
}

#[test]
fn an_open_room_lets_anyone_join_and_post() {
    let mut room = Room::new(false);
    let bob = key(2);
    assert_eq!(
        room.apply(&bob, A::Join, 110).unwrap(),
        MembershipChange::Joined(bob.account_id())
    );
    assert!(room.state().check_post(&key(9).account_id(), 120).is_ok());
}

#[test]
fn only_the_founder_and_managers_invite_and_only_the_founder_promotes() {
    let mut room = Room::new(true);
    let founder = room.founder.clone();
    let (bob, carol, dave) = (key(2), key(3), key(4));
    room.apply(&founder, A::Invite(bob.account_id()), 110).unwrap();
    room.apply(&bob, A::Join, 111).unwrap();
    assert_eq!(
        code(room.apply(&bob, A::Invite(carol.account_id()), 112)),
        Code::PermissionDenied
    );
    // Naming oneself is refused before signing.
    assert_eq!(
        code(RoomOp::sign(&bob, room.id(), A::Promote(bob.account_id()), 113)),
        Code::BadParameters
    );
    assert_eq!(
        code(room.apply(&founder, A::Promote(carol.account_id()), 114)),
        Code::NotFound
    );
    assert_eq!(
        room.apply(&founder, A::Promote(bob.account_id()), 115).unwrap(),
        MembershipChange::Promoted(bob.account_id())
    );
    assert_eq!(
        code(room.apply(&founder, A::Promote(bob.account_id()), 116)),
        Code::Repeated
    );
    // A manager invites, but neither promotes nor removes another manager nor the founder.
    room.apply(&bob, A::Invite(carol.account_id()), 117).unwrap();
    room.apply(&carol, A::Join, 118).unwrap();
    assert_eq!(
        code(room.apply(&bob, A::Promote(carol.account_id()), 119)),
        Code::PermissionDenied
    );
    room.apply(&founder, A::Promote(carol.account_id()), 120).unwrap();
    assert_eq!(
        code(room.apply(&bob, A::Kick(carol.account_id()), 121)),
        Code::PermissionDenied
    );
    assert_eq!(
        code(room.apply(&bob, A::Kick(founder.account_id()), 122)),
        Code::PermissionDenied
    );
    assert_eq!(
        code(room.apply(&dave, A::Kick(bob.account_id()), 123)),
        Code::PermissionDenied
    );
    // Demoted, a manager's rights end there.
    assert_eq!(
        room.apply(&founder, A::Demote(bob.account_id()), 124).unwrap(),
        MembershipChange::Demoted(bob.account_id())
    );
    assert_eq!(
        code(room.apply(&founder, A::Demote(bob.account_id()), 125)),
        Code::NotFound
    );
    assert_eq!(
        code(room.apply(&bob, A::Invite(dave.account_id()), 126)),
        Code::PermissionDenied
    );
    assert_eq!(code(room.apply(&bob, A::Cancel, 127)), Code::PermissionDenied);
}

#[test]
fn a_kicked_member_cannot_post_after_the_kick_but_its_earlier_posts_stand() {
    let mut room = Room::new(true);
    let founder = room.founder.clone();
    let bob = key(2);
    room.apply(&founder, A::Invite(bob.account_id()), 110).unwrap();
    room.apply(&bob, A::Join, 120).unwrap();
    assert!(room.state().check_post(&bob.account_id(), 150).is_ok());
    assert_eq!(
        room.apply(&founder, A::Kick(bob.account_id()), 200).unwrap(),
        MembershipChange::Kicked {
            account: bob.account_id(),
            by: founder.account_id()
        }
    );
    assert!(room.state().check_post(&bob.account_id(), 150).is_ok());
    assert_eq!(
        code(room.state().check_post(&bob.account_id(), 200)),
        Code::PermissionDenied
    );
    let mut then = vec![founder.account_id(), bob.account_id()];
    then.sort();
    assert_eq!(room.state().members_at(150), then);
    assert_eq!(room.state().members_at(200), vec![founder.account_id()]);
    assert_eq!(
        code(room.state().check_post(&bob.account_id(), 119)),
        Code::PermissionDenied
    );
    // Nor rejoin on the invite it had: a kick ends invites too.
    assert_eq!(
        room.apply(&bob, A::Join, 210).unwrap(),
        MembershipChange::Requested(bob.account_id())
    );
    // A stranger never posted.
    assert_eq!(
        code(room.state().check_post(&key(9).account_id(), 150)),
        Code::PermissionDenied
    );
}

#[test]
fn a_cancelled_room_takes_nothing_more() {
    let mut room = Room::new(true);
    let founder = room.founder.clone();
    let bob = key(2);
    room.apply(&founder, A::Invite(bob.account_id()), 110).unwrap();
    room.apply(&bob, A::Join, 120).unwrap();
    assert_eq!(code(room.apply(&founder, A::Leave, 125)), Code::BadParameters);
    assert_eq!(
        room.apply(&founder, A::Cancel, 130).unwrap(),
        MembershipChange::Cancelled
    );
    assert_eq!(code(room.apply(&bob, A::Leave, 140)), Code::RoomCancelled);
    assert_eq!(
        code(room.apply(&founder, A::Invite(key(3).account_id()), 141)),
        Code::RoomCancelled
    );
    assert_eq!(
        code(room.state().check_post(&bob.account_id(), 131)),
        Code::RoomCancelled
    );
    assert!(room.state().check_post(&bob.account_id(), 129).is_ok());
}

#[test]
fn replays_and_operations_of_other_rooms_change_nothing() {
    let mut room = Room::new(true);
    let founder = room.founder.clone();
    let bob = key(2);
    let invite = room.op(&founder, A::Invite(bob.account_id()), 110);
    room.membership.apply(invite.clone()).unwrap();
    room.apply(&bob, A::Join, 120).unwrap();
    room.apply(&founder, A::Kick(bob.account_id()), 130).unwrap();
    // The old invite, replayed: a duplicate, and bob stays out.
    assert_eq!(code(room.membership.apply(invite)), Code::Repeated);
    assert!(!room.state().is_member(&bob.account_id()));

    let other = Room::new(true);
    let foreign = other.op(&founder, A::Invite(bob.account_id()), 140);
    let before = room.state().clone();
    assert_eq!(code(room.membership.apply(foreign)), Code::BadParameters);
    assert_eq!(room.state(), &before);
    // A second create.
    let create = RoomOp::found(&founder, "again".into(), true, 150).unwrap();
    assert_eq!(code(room.membership.apply(create)), Code::BadParameters);
}

#[test]
fn an_operation_dated_before_its_room_is_refused() {
    let mut room = Room::new(true);
    let founder = room.founder.clone();
    assert_eq!(
        code(room.apply(&founder, A::Invite(key(2).account_id()), 99)),
        Code::BadParameters
    );
    // Nor kept, from anyone: no place in the room could ever take it.
    assert_eq!(
        code(room.apply(&AccountKey::generate(), A::Join, 50)),
        Code::BadParameters
    );
    assert_eq!(room.membership.ops().len(), 1);
}

#[test]
fn a_late_operation_is_judged_in_its_place() {
    // Members see: invite bob (110), bob joins (130). A kick of the manager that invited arrives
    // late, dated 105: bob's invite was never a manager's, so his join is only a request.
    let mut room = Room::new(true);
    let founder = room.founder.clone();
    let (mallory, bob) = (key(5), key(2));
    room.apply(&founder, A::Invite(mallory.account_id()), 101).unwrap();
    room.apply(&mallory, A::Join, 102).unwrap();
    room.apply(&founder, A::Promote(mallory.account_id()), 103).unwrap();
    room.apply(&mallory, A::Invite(bob.account_id()), 110).unwrap();
    room.apply(&bob, A::Join, 130).unwrap();
    assert!(room.state().is_member(&bob.account_id()));

    let late = room.apply(&founder, A::Kick(mallory.account_id()), 105).unwrap();
    assert_eq!(
        late,
        MembershipChange::Kicked {
            account: mallory.account_id(),
            by: founder.account_id()
        }
    );
    assert!(!room.state().is_member(&mallory.account_id()));
    assert!(!room.state().is_member(&bob.account_id()));
    assert!(room.state().requests.contains_key(&bob.account_id()));
    // The voided invite stays held, inactive: a node that got the operations in another order
    // must reach the same state.
    assert!(room
        .membership
        .ops()
        .iter()
        .any(|op| op.action == A::Invite(bob.account_id())));

    // Folding the same operations in any arrival order gives the same state.
    let mut shuffled: Vec<_> = room.membership.ops().to_vec();
    shuffled.reverse();
    let rebuilt = Membership::rebuild(shuffled).unwrap();
    assert_eq!(rebuilt.state(), room.state());
}

#[test]
fn a_refused_late_operation_changes_nothing() {
    let mut room = Room::new(true);
    let founder = room.founder.clone();
    let bob = key(2);
    room.apply(&founder, A::Invite(bob.account_id()), 110).unwrap();
    room.apply(&bob, A::Join, 120).unwrap();
    let before = room.state().clone();
    // Bob was no manager at 115.
    assert_eq!(
        code(room.apply(&bob, A::Invite(key(3).account_id()), 115)),
        Code::PermissionDenied
    );
    assert_eq!(room.state(), &before);
    // Kept, inactive (bob has standing: an earlier-dated promotion could still make it valid);
    // a stranger's refused operation is not kept.
    assert_eq!(room.membership.ops().len(), 4);
    assert_eq!(
        code(room.apply(&key(9), A::Invite(key(3).account_id()), 130)),
        Code::PermissionDenied
    );
    assert_eq!(room.membership.ops().len(), 4);
    assert_eq!(room.state(), &before);
}

#[test]
fn nodes_that_get_the_same_operations_in_different_orders_agree() {
    // Promote(M)@101, Join(A)@102, Demote(M)@103, Promote(M)@104, Kick(A)@105 by M: the kick is
    // valid in date order. A node that gets the kick before the demote and the second promote
    // still ends where a node that got them in order does.
    let founder = key(1);
    let (m, a) = (key(5), key(6));
    let create = RoomOp::found(&founder, "order".into(), false, 100).unwrap();
    let room = create.room.clone();
    let op = |by: &AccountKey, action: RoomAction, at: u64, links: Links| {
        RoomOp::sign_linked(by, room.clone(), action, at, links).unwrap()
    };
    let join_m = op(&m, A::Join, 100, Links::default());
    let ops = vec![
        join_m.clone(),
        op(&founder, A::Promote(m.account_id()), 101, Links::default()),
        op(&a, A::Join, 102, Links::default()),
        op(
            &founder,
            A::Demote(m.account_id()),
            103,
            Links {
                prev: None,
                seen: vec![join_m.id()],
            },
        ),
        op(&founder, A::Promote(m.account_id()), 104, Links::default()),
        op(
            &m,
            A::Kick(a.account_id()),
            105,
            Links {
                prev: Some(join_m.id()),
                seen: Vec::new(),
            },
        ),
    ];
    let mut in_order = Membership::new(create.clone()).unwrap();
    for o in ops.clone() {
        in_order.apply(o).unwrap();
    }
    assert!(!in_order.state().is_member(&a.account_id()));

    let mut reordered = Membership::new(create).unwrap();
    for i in [0, 1, 2, 5, 3, 4] {
        let _ = reordered.apply(ops[i].clone());
    }
    assert_eq!(reordered.state(), in_order.state());
    assert_eq!(reordered.ops().len(), in_order.ops().len());
}

#[test]
fn outsiders_fill_only_their_share_and_the_founder_still_acts() {
    let mut room = Room::new(false);
    let founder = room.founder.clone();
    let mut last = key(2);
    for i in 0..MAX_ROOM_OPS {
        let mut secret = [7u8; 32];
        secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
        last = AccountKey::from_secret_bytes(&secret);
        room.apply(&last, A::Join, 200 + i as u64).unwrap();
    }
    assert_eq!(code(room.apply(&key(250), A::Join, 100_000)), Code::Overloaded);
    // The founder removes whom it wants and cancels, however full the room is.
    room.apply(&founder, A::Kick(last.account_id()), 100_001).unwrap();
    assert_eq!(
        room.apply(&founder, A::Cancel, 100_002).unwrap(),
        MembershipChange::Cancelled
    );
}

#[test]
fn check_changes_nothing() {
    let room = Room::new(true);
    let op = room.op(&room.founder, A::Invite(key(2).account_id()), 110);
    assert!(matches!(
        room.membership.check(&op),
        Ok(MembershipChange::Invited { .. })
    ));
    assert!(room.state().invited.is_empty());
    assert_eq!(
        code(room.membership.check(&room.op(&key(2), A::Cancel, 111))),
        Code::PermissionDenied
    );
}

#[test]
fn leaving_withdraws_a_request_and_declines_an_invite() {
    let mut room = Room::new(true);
    let founder = room.founder.clone();
    let (bob, carol) = (key(2), key(3));
    room.apply(&bob, A::Join, 110).unwrap();
    assert_eq!(
        room.apply(&bob, A::Leave, 111).unwrap(),
        MembershipChange::Left(bob.account_id())
    );
    assert!(room.state().requests.is_empty());
    room.apply(&founder, A::Invite(carol.account_id()), 112).unwrap();
    room.apply(&carol, A::Leave, 113).unwrap();
    assert!(room.state().invited.is_empty());
    assert_eq!(code(room.apply(&carol, A::Leave, 114)), Code::NotFound);
}

#[test]
fn a_private_room_takes_as_many_members_as_a_body_has_readers() {
    let mut room = Room::new(true);
    let founder = key(1);
    let others: Vec<AccountKey> = (0..MAX_PRIVATE_MEMBERS).map(|_| AccountKey::generate()).collect();
    let mut at = 200;
    for member in &others[..MAX_PRIVATE_MEMBERS - 1] {
        at += 1;
        room.apply(&founder, A::Approve(member.account_id()), at).unwrap();
    }
    assert_eq!(room.state().members.len(), MAX_PRIVATE_MEMBERS);
    let last = &others[MAX_PRIVATE_MEMBERS - 1];
    // Neither an approval nor an accepted invite admits one more, and nothing changes.
    assert_eq!(
        code(room.apply(&founder, A::Approve(last.account_id()), at + 1)),
        Code::Overloaded
    );
    room.apply(&founder, A::Invite(last.account_id()), at + 2).unwrap();
    assert_eq!(code(room.apply(last, A::Join, at + 3)), Code::Overloaded);
    assert!(!room.state().is_member(&last.account_id()));
    assert_eq!(room.state().members.len(), MAX_PRIVATE_MEMBERS);
    // A member leaving makes room: the invite still stands.
    room.apply(&others[0], A::Leave, at + 4).unwrap();
    assert_eq!(
        room.apply(last, A::Join, at + 5).unwrap(),
        MembershipChange::Joined(last.account_id())
    );
    // Everyone's posts can be sealed to every member.
    let readers: Vec<AccountId> = room.state().members.keys().copied().collect();
    let to = crate::Recipient::Room(room.id());
    let sealed = crate::seal::seal(&founder, &to, &readers, b"hi", &mut Default::default()).unwrap();
    crate::seal::check(&sealed).unwrap();
}

#[test]
fn an_open_room_has_no_member_cap() {
    let mut room = Room::new(false);
    for i in 0..=MAX_PRIVATE_MEMBERS {
        room.apply(&AccountKey::generate(), A::Join, 200 + i as u64).unwrap();
    }
    assert_eq!(room.state().members.len(), MAX_PRIVATE_MEMBERS + 2);
}

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

/// M, invited and promoted by the founder, approves Y; then signs X2 and X3 (invites). Returns
/// the room and those operations, unapplied beyond the approval.
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
