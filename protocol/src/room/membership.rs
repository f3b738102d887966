//! A founded room's membership: its operations in order `(at, id)`, folded from the `Create`
//! operation into a [`RoomState`]. Each operation is judged against the state just before it,
//! and the state is a function of the set of operations held alone, whatever order they came
//! in: every member that holds the same operations computes the same members, managers, invites
//! and requests. An operation refused where it stands is kept (inactive) when its signer has
//! standing in the room, because an operation that arrives later, dated earlier, may make it
//! valid.
//!
//! Signed times alone would let an account date an operation back to before its removal or
//! demotion. So each operation names its signer's previous one (`prev`), and the founder's
//! `Kick` or `Demote` of an account names the heads of that account's chain it held (`seen`):
//! an operation of that account dated before the removal is void unless a chain from one of
//! them reaches it (`links.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{
    links::{self, is_pin, Pins},
    Links, RoomAction, RoomOp,
};
use crate::{AccountId, Error, MessageId, Result, RoomId, Verified};

/// The most operations one room keeps from accounts that do not manage it; later ones are
/// refused (5104). The founder's and managers' operations are always taken, so nobody can fill
/// a room to stop its founder from removing them or cancelling it.
pub const MAX_ROOM_OPS: usize = 4096;

/// The most members a private room has (the founder included): every post is sealed to each of
/// them, and a sealed body has at most [`crate::seal::MAX_READERS`] readers. A join or approval
/// beyond it is refused (5104).
pub const MAX_PRIVATE_MEMBERS: usize = crate::seal::MAX_READERS;

/// The most join requests a node keeps unanswered for a room (a node's own bound, checked when a
/// request arrives, not a rule of the fold: an approval admits an account whether or not its
/// request is held).
pub const MAX_PENDING_REQUESTS: usize = 256;

/// What an applied operation changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// The room was founded (its founder is its first member).
    Created,
    /// `account` was invited by `by`.
    Invited {
        /// The invitee.
        account: AccountId,
        /// The founder or manager that invited.
        by: AccountId,
    },
    /// `account` asked to join a private room.
    Requested(AccountId),
    /// `account` became a member (joined an open room, accepted an invite, or was approved).
    Joined(AccountId),
    /// `account` left, withdrew its request or declined its invite.
    Left(AccountId),
    /// `account` was removed (member, invite or request) by `by`.
    Kicked {
        /// Who was removed.
        account: AccountId,
        /// The founder or manager that removed it.
        by: AccountId,
    },
    /// `account` became a manager.
    Promoted(AccountId),
    /// `account` is a plain member again.
    Demoted(AccountId),
    /// The founder cancelled the room.
    Cancelled,
}

impl MembershipChange {
    /// The account the change is about (`None` for the room itself).
    pub fn account(&self) -> Option<&AccountId> {
        match self {
            MembershipChange::Created | MembershipChange::Cancelled => None,
            MembershipChange::Invited { account, .. } | MembershipChange::Kicked { account, .. } => Some(account),
            MembershipChange::Requested(a)
            | MembershipChange::Joined(a)
            | MembershipChange::Left(a)
            | MembershipChange::Promoted(a)
            | MembershipChange::Demoted(a) => Some(a),
        }
    }
}

/// Who is what in a founded room, after its operations so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomState {
    /// The room id.
    pub room: RoomId,
    /// Its name, from the `Create` operation.
    pub name: String,
    /// Private or open.
    pub private: bool,
    /// The founder: always a member and a manager, never removed.
    pub founder: AccountId,
    /// When the room was founded (the `Create` operation's signed time).
    pub created_at: u64,
    /// Managers other than the founder.
    pub managers: BTreeSet<AccountId>,
    /// Members (the founder included), each with the signed time it became one.
    pub members: BTreeMap<AccountId, u64>,
    /// Pending invites: invitee and inviter.
    pub invited: BTreeMap<AccountId, AccountId>,
    /// Pending join requests, each with the signed time it was made.
    pub requests: BTreeMap<AccountId, u64>,
    /// When the founder cancelled the room, if it did.
    pub cancelled: Option<u64>,
    /// Past membership spans `[from, to)` of accounts that left or were removed.
    past: BTreeMap<AccountId, Vec<(u64, u64)>>,
}

impl RoomState {
    fn founded(create: &RoomOp) -> Result<RoomState> {
        let RoomAction::Create { name, private, .. } = &create.action else {
            return Err(Error::BadParameters("a room starts with its create operation".into()));
        };
        Ok(RoomState {
            room: create.room.clone(),
            name: name.clone(),
            private: *private,
            founder: create.by,
            created_at: create.at,
            managers: BTreeSet::new(),
            members: BTreeMap::from([(create.by, create.at)]),
            invited: BTreeMap::new(),
            requests: BTreeMap::new(),
            cancelled: None,
            past: BTreeMap::new(),
        })
    }

    /// Whether `account` has, or had, a part in the room: founder, manager, member (now or
    /// before), invitee or requester. Refused operations are kept only from such accounts.
    pub fn has_standing(&self, account: &AccountId) -> bool {
        self.manages(account)
            || self.members.contains_key(account)
            || self.past.contains_key(account)
            || self.invited.contains_key(account)
            || self.requests.contains_key(account)
    }

    /// The founder or a manager.
    pub fn manages(&self, account: &AccountId) -> bool {
        *account == self.founder || self.managers.contains(account)
    }

    /// A member now.
    pub fn is_member(&self, account: &AccountId) -> bool {
        self.members.contains_key(account)
    }

    /// Whether `account` was a member at `at` (ms since the epoch).
    pub fn was_member(&self, account: &AccountId, at: u64) -> bool {
        self.members.get(account).is_some_and(|since| at >= *since)
            || self
                .past
                .get(account)
                .is_some_and(|spans| spans.iter().any(|(from, to)| (*from..*to).contains(&at)))
    }

    /// The accounts that were members at `at`, in id order.
    pub fn members_at(&self, at: u64) -> Vec<AccountId> {
        let mut out: Vec<AccountId> = self
            .members
            .iter()
            .filter(|(_, since)| at >= **since)
            .map(|(a, _)| *a)
            .collect();
        for (account, spans) in &self.past {
            if spans.iter().any(|(from, to)| (*from..*to).contains(&at)) && !out.contains(account) {
                out.push(*account);
            }
        }
        out.sort();
        out
    }

    /// Whether a post by `account` sent at `sent_at` belongs in the room: not after a cancel
    /// (4108), and in a private room only from an account that was a member then (4105).
    pub fn check_post(&self, account: &AccountId, sent_at: u64) -> Result<()> {
        if self.cancelled.is_some_and(|at| sent_at >= at) {
            return Err(Error::RoomCancelled);
        }
        if self.private && !self.was_member(account, sent_at) {
            return Err(Error::PermissionDenied("only members post in a private room"));
        }
        Ok(())
    }

    /// Refuses a new member of a private room that has [`MAX_PRIVATE_MEMBERS`] already.
    fn check_room_for_one_more(&self) -> Result<()> {
        if self.private && self.members.len() >= MAX_PRIVATE_MEMBERS {
            return Err(Error::Full("a private room's members"));
        }
        Ok(())
    }

    fn end_membership(&mut self, account: &AccountId, at: u64) {
        if let Some(since) = self.members.remove(account) {
            self.past.entry(*account).or_default().push((since, at));
        }
        self.managers.remove(account);
    }

    /// Judges `op` against this state and, only if it is allowed, applies it.
    fn step(&mut self, op: &Verified<RoomOp>, pins: &Pins) -> Result<MembershipChange> {
        if op.room != self.room {
            return Err(Error::BadParameters("an operation of another room".into()));
        }
        if op.at < self.created_at {
            return Err(Error::BadParameters("an operation dated before its room".into()));
        }
        if self.cancelled.is_some() {
            return Err(Error::RoomCancelled);
        }
        if pins.voids(op) {
            return Err(Error::PermissionDenied(
                "dated before its signer's removal or demotion, which does not stand by it",
            ));
        }
        let by = op.by;
        let manager_only = |state: &RoomState| {
            if state.manages(&by) {
                Ok(())
            } else {
                Err(Error::PermissionDenied("only the founder or a manager may do this"))
            }
        };
        let founder_only = |state: &RoomState| {
            if by == state.founder {
                Ok(())
            } else {
                Err(Error::PermissionDenied("only the founder may do this"))
            }
        };
        match &op.action {
            RoomAction::Create { .. } => Err(Error::AlreadyExists("the room was founded already")),
            RoomAction::Invite(account) => {
                manager_only(self)?;
                if self.is_member(account) {
                    return Err(Error::Repeated("already a member"));
                }
                self.invited.insert(*account, by);
                Ok(MembershipChange::Invited { account: *account, by })
            }
            RoomAction::Join => {
                if self.is_member(&by) {
                    return Err(Error::Repeated("already a member"));
                }
                let invited = self.invited.get(&by).is_some_and(|inviter| self.manages(inviter));
                if !self.private || invited {
                    self.check_room_for_one_more()?;
                    self.invited.remove(&by);
                    self.requests.remove(&by);
                    self.members.insert(by, op.at);
                    return Ok(MembershipChange::Joined(by));
                }
                if self.requests.contains_key(&by) {
                    return Err(Error::Repeated("already asked to join"));
                }
                self.requests.insert(by, op.at);
                Ok(MembershipChange::Requested(by))
            }
            RoomAction::Approve(account) => {
                manager_only(self)?;
                if self.is_member(account) {
                    return Err(Error::Repeated("already a member"));
                }
                self.check_room_for_one_more()?;
                // A manager's decision: it admits whether or not this node holds the request.
                self.requests.remove(account);
                self.invited.remove(account);
                self.members.insert(*account, op.at);
                Ok(MembershipChange::Joined(*account))
            }
            RoomAction::Kick(account) => {
                manager_only(self)?;
                if *account == self.founder {
                    return Err(Error::PermissionDenied("nobody removes the founder"));
                }
                if self.managers.contains(account) && by != self.founder {
                    return Err(Error::PermissionDenied("only the founder removes a manager"));
                }
                let pending = self.invited.remove(account).is_some() | self.requests.remove(account).is_some();
                if !pending && !self.is_member(account) {
                    return Err(Error::NotFound("not a member, invitee or requester"));
                }
                self.end_membership(account, op.at);
                Ok(MembershipChange::Kicked { account: *account, by })
            }
            RoomAction::Leave => {
                if by == self.founder {
                    return Err(Error::BadParameters(
                        "the founder cannot leave; it cancels the room".into(),
                    ));
                }
                let pending = self.invited.remove(&by).is_some() | self.requests.remove(&by).is_some();
                if !pending && !self.is_member(&by) {
                    return Err(Error::NotFound("not a member"));
                }
                self.end_membership(&by, op.at);
                Ok(MembershipChange::Left(by))
            }
            RoomAction::Promote(account) => {
                founder_only(self)?;
                if !self.is_member(account) {
                    return Err(Error::NotFound("not a member"));
                }
                if self.manages(account) {
                    return Err(Error::Repeated("already a manager"));
                }
                self.managers.insert(*account);
                Ok(MembershipChange::Promoted(*account))
            }
            RoomAction::Demote(account) => {
                founder_only(self)?;
                if !self.managers.remove(account) {
                    return Err(Error::NotFound("not a manager"));
                }
                Ok(MembershipChange::Demoted(*account))
            }
            RoomAction::Cancel => {
                founder_only(self)?;
                self.cancelled = Some(op.at);
                Ok(MembershipChange::Cancelled)
            }
        }
    }
}

/// The order of a room's operations: signed time, then id.
pub(super) fn order(op: &Verified<RoomOp>) -> (u64, MessageId) {
    (op.at, op.id())
}

/// A founded room's operations and the state they fold into.
#[derive(Debug, Clone)]
pub struct Membership {
    /// Every operation held, `Create` first, in [`order`]: applied and inactive ones.
    ops: Vec<Verified<RoomOp>>,
    ids: HashSet<MessageId>,
    /// How many held operations come from accounts that did not manage the room when they came.
    outsiders: usize,
    pins: Pins,
    state: RoomState,
}

impl Membership {
    /// A room from its verified `Create` operation.
    pub fn new(create: Verified<RoomOp>) -> Result<Membership> {
        let state = RoomState::founded(&create)?;
        Ok(Membership {
            ids: HashSet::from([create.id()]),
            ops: vec![create],
            outsiders: 0,
            pins: Pins::default(),
            state,
        })
    }

    /// A room from its stored operations (`Create` among them): the fold of all of them in
    /// order, whatever order they are given in.
    ///
    /// Every operation given is held (they were taken by [`Membership::apply`] once), and they
    /// are folded once under the links of the whole set: applying them one by one would fold
    /// everything again at each of the founder's removals.
    pub fn rebuild(ops: Vec<Verified<RoomOp>>) -> Result<Membership> {
        let mut ops = ops;
        ops.sort_by_key(order);
        ops.dedup_by_key(|op| op.id());
        let first = ops
            .iter()
            .position(|op| matches!(op.action, RoomAction::Create { .. }))
            .ok_or(Error::NotFound("the room's create operation"))?;
        let create = ops.remove(first);
        let state = RoomState::founded(&create)?;
        let room = state.room.clone();
        // `Create` first; an operation dated before it still folds after it (and is refused).
        let mut held = Vec::with_capacity(ops.len() + 1);
        held.push(create);
        held.extend(ops.into_iter().filter(|op| op.room == room));
        let pins = Pins::of(&held, &state.founder);
        let (state, outsiders) = fold_counting(&held, &pins)?;
        Ok(Membership {
            ids: held.iter().map(|op| op.id()).collect(),
            ops: held,
            outsiders,
            pins,
            state,
        })
    }

    /// The room's state.
    pub fn state(&self) -> &RoomState {
        &self.state
    }

    /// The `Create` operation.
    pub fn create(&self) -> &Verified<RoomOp> {
        &self.ops[0]
    }

    /// Every operation held, `Create` first, in order (applied and inactive ones).
    pub fn ops(&self) -> &[Verified<RoomOp>] {
        &self.ops
    }

    /// Whether the operation `id` is held (applied or inactive).
    pub fn holds(&self, id: &MessageId) -> bool {
        self.ids.contains(id)
    }

    /// The newest signed time among the operations held.
    pub fn newest_at(&self) -> u64 {
        self.ops.last().map_or(0, |op| op.at)
    }

    /// Whether `op` would be applied now, and what it would change; changes nothing. The local
    /// account asks this before it signs, so it never sends what the members must refuse.
    pub fn check(&self, op: &Verified<RoomOp>) -> Result<MembershipChange> {
        self.state.clone().step(op, &self.pins)
    }

    /// The causal links of an operation `by` is about to sign: the head of its chain held, and
    /// for a `Kick` or `Demote` every head of the subject's (the newest [`super::MAX_SEEN`]).
    pub fn links_for(&self, by: &AccountId, action: &RoomAction) -> Links {
        Links {
            prev: self.heads_of(by).into_iter().next(),
            seen: match action {
                RoomAction::Kick(account) | RoomAction::Demote(account) => {
                    let mut heads = self.heads_of(account);
                    heads.truncate(super::MAX_SEEN);
                    heads
                }
                _ => Vec::new(),
            },
        }
    }

    /// The heads of `account`'s chain, newest first: among its operations whose chain is whole
    /// here (every `prev` back to the first held), those that none of those follows. So a
    /// signer's operation behind one it withholds is never named.
    fn heads_of(&self, account: &AccountId) -> Vec<MessageId> {
        let own: HashMap<MessageId, Option<MessageId>> = self
            .ops
            .iter()
            .filter(|op| op.by == *account)
            .map(|op| (op.id(), op.prev))
            .collect();
        let whole = links::whole_chains(&own);
        let followed: HashSet<MessageId> = own
            .iter()
            .filter(|(id, _)| whole.contains(*id))
            .filter_map(|(_, prev)| *prev)
            .collect();
        self.ops
            .iter()
            .rev()
            .filter(|op| op.by == *account)
            .map(|op| op.id())
            .filter(|id| whole.contains(id) && !followed.contains(id))
            .collect()
    }

    /// Takes a verified operation, whether or not the operations it links to are held (an
    /// invitation's come without their history; sync brings the rest). A duplicate is 4117. One its signer may not do where it stands is refused
    /// with the rule's code and changes nothing, but is kept (see [`Membership::holds`]) when its
    /// signer has standing in the room. One dated before the newest held operation is judged in
    /// its place, and everything after it is folded again. Beyond [`MAX_ROOM_OPS`] held
    /// operations of accounts that do not manage the room, theirs are refused (5104).
    pub fn apply(&mut self, op: Verified<RoomOp>) -> Result<MembershipChange> {
        if self.ids.contains(&op.id()) {
            return Err(Error::Repeated("room operation"));
        }
        let outsider = !self.state.manages(&op.by);
        if outsider && self.outsiders >= MAX_ROOM_OPS {
            return Err(Error::Full("the room's operations"));
        }
        let standing = self.state.has_standing(&op.by);
        // From an account that never had a part in the room, anything but a join is refused
        // where it stands and not kept (what a founder or manager may do needs standing, which
        // an account that managed keeps for good; a leave needs membership, an invitation or a
        // request): refused before the work of judging it in its place.
        // Nor is what no place in the room can take, whoever signs it: another room's, one dated
        // before the room, or (without standing) one after its cancel.
        if op.room != self.state.room {
            return Err(Error::BadParameters("an operation of another room".into()));
        }
        if op.at < self.state.created_at {
            return Err(Error::BadParameters("an operation dated before its room".into()));
        }
        if !standing && self.state.cancelled.is_some_and(|at| op.at > at) {
            return Err(Error::RoomCancelled);
        }
        if !standing && !matches!(op.action, RoomAction::Create { .. } | RoomAction::Join) {
            return Err(match op.action {
                RoomAction::Leave => Error::NotFound("not a member"),
                _ => Error::PermissionDenied("only the founder or a manager may do this"),
            });
        }
        let in_order = self.ops.last().is_none_or(|last| order(last) < order(&op));
        // A removal or demotion may void earlier operations, and an operation of an account under
        // one may link others into what it stands by: both fold everything again.
        let relinks = is_pin(&op, &self.state.founder) || self.pins.covers(&op.by);
        if in_order && !relinks {
            // `step` changes nothing when it refuses.
            let result = self.state.step(&op, &self.pins);
            if result.is_ok() || standing {
                self.ids.insert(op.id());
                self.ops.push(op);
                self.outsiders += usize::from(outsider);
            }
            return result;
        }
        // Never before `Create`: an operation dated with it but ordered first goes after it.
        let at = self.ops.partition_point(|held| order(held) < order(&op)).max(1);
        let mut ops = self.ops.clone();
        ops.insert(at, op.clone());
        let pins = Pins::of(&ops, &self.state.founder);
        let mut before = fold(&ops[..at], &pins)?;
        let result = before.step(&op, &pins);
        let after = fold(&ops, &pins)?;
        // The operation may link its signer's earlier ones back into what a removal stands by,
        // giving it the standing it lacked.
        if result.is_ok() || standing || after.has_standing(&op.by) {
            self.state = after;
            self.ids.insert(op.id());
            self.ops = ops;
            self.pins = pins;
            self.outsiders += usize::from(outsider);
        }
        result
    }
}

/// The state `ops` (`Create` first, in order) fold into, under `pins` (of the same operations).
fn fold(ops: &[Verified<RoomOp>], pins: &Pins) -> Result<RoomState> {
    fold_counting(ops, pins).map(|(state, _)| state)
}

/// [`fold`], and how many of `ops` came from accounts that did not manage the room where they
/// stand.
fn fold_counting(ops: &[Verified<RoomOp>], pins: &Pins) -> Result<(RoomState, usize)> {
    let (create, rest) = ops
        .split_first()
        .ok_or(Error::NotFound("the room's create operation"))?;
    let mut state = RoomState::founded(create)?;
    let mut outsiders = 0;
    for op in rest {
        outsiders += usize::from(!state.manages(&op.by));
        // `step` changes nothing when it refuses; a refused operation stays inactive.
        let _ = state.step(op, pins);
    }
    Ok((state, outsiders))
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
