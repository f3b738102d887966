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
    let readers: Vec<crate::seal::Reader> = room
        .state()
        .members
        .keys()
        .filter_map(crate::seal::Reader::derived)
        .collect();
    assert_eq!(readers.len(), MAX_PRIVATE_MEMBERS);
    let to = crate::Recipient::Room(room.id());
    let ring = crate::seal::Keyring::derived(&founder).unwrap();
    let sealed = crate::seal::seal(&ring, &to, &readers, b"hi", &mut Default::default()).unwrap();
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

#[path = "links_tests.rs"]
mod links;
