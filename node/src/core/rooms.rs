//! Founded rooms on this node: each room's [`Membership`] (kept in memory, its operations in the
//! store), the operations that arrive by gossip, sync or (invitations) a pipe, the local
//! account's own operations, and the rule that only members post in a private room.

use std::collections::HashMap;

use tim_protocol::{
    encode, policy, room::is_founded_id, AccountId, Code, Envelope, Membership, MembershipChange, Message, MessageId,
    Recipient, RoomAction, RoomId, RoomOp, RoomState, Verified, Via,
};
use tim_storage::{OutKind, Outgoing};
use tracing::{debug, warn};

use super::{bump, inbound::Verdict, now_ms, Core};
use crate::{
    delivery::{Delivery, DeliveryKind},
    Error, Event, Result,
};
use tim_protocol::room::MAX_PENDING_REQUESTS;

/// The most invitations a node holds unanswered; later ones are passed over (5104).
pub(crate) const MAX_INVITES: usize = 256;

/// The founded rooms this node knows, by id.
pub(crate) type FoundedRooms = HashMap<RoomId, Membership>;

/// What the local account's room operation produced, for the event loop.
pub(crate) struct LocalRoomOp {
    /// The signed operation.
    pub(crate) op: Verified<RoomOp>,
    /// `Envelope::Room(op)`, for the room's topic.
    pub(crate) frame: Vec<u8>,
    /// What goes to one account over a pipe, already in the outbox: an invitation to the
    /// invitee, an approval to the approved account, a leave to the founder.
    pub(crate) invitation: Option<Delivery>,
    /// What it changed here (`None`: the room is not known here yet; a join is then a request).
    pub(crate) change: Option<MembershipChange>,
}

/// The founded rooms of `store`, folded from their kept operations. A room whose `Create`
/// operation is not held yet (a join request sent by id) is left out until it arrives.
pub(crate) fn load_founded(store: &tim_storage::Store) -> Result<FoundedRooms> {
    let mut rooms = FoundedRooms::new();
    for room in store.founded_rooms()? {
        if let Some(membership) = rebuild(store, &room)? {
            rooms.insert(room, membership);
        }
    }
    Ok(rooms)
}

/// A room's membership from its kept operations (`None` without its `Create`).
pub(super) fn rebuild(store: &tim_storage::Store, room: &RoomId) -> Result<Option<Membership>> {
    let ops: Vec<Verified<RoomOp>> = store
        .room_ops(room)?
        .into_iter()
        .filter_map(|op| {
            op.verify()
                .inspect_err(|e| warn!(%room, error = %e, "a kept room operation no longer verifies"))
                .ok()
        })
        .collect();
    match Membership::rebuild(ops) {
        Ok(membership) => Ok(Some(membership)),
        Err(e) => {
            debug!(%room, error = %e, "room not folded yet");
            Ok(None)
        }
    }
}

/// When the local account's next operation in a room is dated: now, and after every operation
/// known here (but those dated ahead of this clock, which would push it out of the skew
/// receivers allow), so it is judged against all of them.
/// Whether `now` has a member that `before` did not.
fn gained_member(before: &[AccountId], now: &RoomState) -> bool {
    now.members.keys().any(|account| !before.contains(account))
}

fn signing_time(membership: Option<&Membership>) -> u64 {
    let now = now_ms();
    let after = membership
        .and_then(|m| m.ops().iter().rev().map(|o| o.at).find(|at| *at <= now))
        .map_or(0, |at| at + 1);
    now.max(after)
}

/// The event a membership change reports, seen from `local`.
fn event_of(room: &RoomId, change: &MembershipChange, state: Option<&RoomState>, local: &AccountId) -> Option<Event> {
    let member = |account: &AccountId, change: &'static str| Event::RoomMember {
        room: room.clone(),
        account: *account,
        change,
    };
    match change {
        MembershipChange::Created => None,
        MembershipChange::Invited { account, by } if account == local => Some(Event::RoomInvite {
            room: room.clone(),
            by: *by,
            name: state.map(|s| s.name.clone()).unwrap_or_default(),
        }),
        MembershipChange::Invited { .. } => None,
        MembershipChange::Requested(account) => state.filter(|s| s.manages(local)).map(|_| Event::RoomJoinRequest {
            room: room.clone(),
            account: *account,
        }),
        MembershipChange::Joined(a) => Some(member(a, "joined")),
        MembershipChange::Left(a) => Some(member(a, "left")),
        MembershipChange::Kicked { account, .. } => Some(member(account, "kicked")),
        MembershipChange::Promoted(a) => Some(member(a, "promoted")),
        MembershipChange::Demoted(a) => Some(member(a, "demoted")),
        MembershipChange::Cancelled => Some(Event::RoomCancelled { room: room.clone() }),
    }
}

impl Core {
    pub(super) fn founded(&self) -> std::sync::MutexGuard<'_, FoundedRooms> {
        self.founded.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A founded room's name, if this node knows the room.
    pub(crate) fn room_name(&self, room: &RoomId) -> Option<String> {
        self.founded().get(room).map(|m| m.state().name.clone())
    }

    /// A founded room's state, if this node knows the room.
    pub(crate) fn room_state(&self, room: &RoomId) -> Option<RoomState> {
        self.founded().get(room).map(|m| m.state().clone())
    }

    /// Whether the room of a post is one it belongs in: for a founded room, known here (else
    /// 4109: nothing to judge it by yet), not cancelled (4108), and in a private room from a
    /// member at its send time (4105). Other rooms take any post. A private room's posts are
    /// kept only while the local account is a member (4109 otherwise, not the sender's fault):
    /// a removed member's node may still hear the topic, but keeps nothing new from it. And they
    /// are sealed (4104 for a plain or malformed body): members never relay a readable post.
    pub(crate) fn check_room_post(&self, message: &Message) -> Result<()> {
        let header = message.head();
        let Recipient::Room(room) = &header.to else {
            return Ok(());
        };
        if !is_founded_id(room) {
            return Ok(());
        }
        match self.founded().get(room).map(Membership::state) {
            Some(state) => {
                state.check_post(&header.from, header.sent_at)?;
                if state.private && !state.is_member(&self.account) {
                    return Err(tim_protocol::Error::NotFound("a private room this account is not in").into());
                }
                if state.private {
                    tim_protocol::seal::check(&message.body).map_err(|e| {
                        Error::BadParameters(format!("a private room's posts are sealed to its members: {e}"))
                    })?;
                }
                Ok(())
            }
            None => Err(tim_protocol::Error::NotFound("the room's create operation").into()),
        }
    }

    /// Whether a sync of `req.room` may be served to the node `peer`: any room but a private
    /// founded one, and a private one only to a node proving it speaks for a member or an
    /// invitee (the proof is checked against `peer` and the clock). A private room whose
    /// `Create` is not held here has only this account's own operations to serve (its join
    /// request, which the members need): served.
    pub(crate) fn may_sync(&self, req: &tim_protocol::SyncRequest, peer: &libp2p::PeerId) -> bool {
        if !is_founded_id(&req.room) {
            return true;
        }
        let founded = self.founded();
        let Some(state) = founded.get(&req.room).map(Membership::state) else {
            return true;
        };
        if !state.private {
            return true;
        }
        let Some(proof) = &req.member else {
            return false;
        };
        match proof.verify(&req.room, &peer.to_bytes(), now_ms()) {
            Ok(account) => {
                state.is_member(&account)
                    || state
                        .invited
                        .get(&account)
                        .is_some_and(|inviter| state.manages(inviter))
            }
            Err(e) => {
                debug!(room = %req.room, %peer, error = %e, "refused a member proof");
                false
            }
        }
    }

    /// Whether the local account may post in `room` now (see [`Core::check_room_post`]).
    pub(crate) fn check_local_post(&self, room: &RoomId) -> Result<()> {
        if !is_founded_id(room) {
            return Ok(());
        }
        match self.founded().get(room) {
            Some(membership) => Ok(membership.state().check_post(&self.account, now_ms())?),
            None => Err(tim_protocol::Error::NotFound("the room is not known here yet").into()),
        }
    }

    /// A room operation from the room's topic or a sync page, or (a member's leave, for the
    /// founder) from a pipe.
    pub(super) fn room_op_in(&self, op: RoomOp, via: &Via) -> Result<Verdict> {
        // On a pipe only a member's leave, for the founder (see `room_local`).
        let direct_leave = *via == Via::Direct
            && op.action == RoomAction::Leave
            && self.room_state(&op.room).is_some_and(|s| s.founder == self.account);
        if *via != Via::Room(op.room.clone()) && !direct_leave {
            return Err(Error::BadParameters(
                "room operations arrive on their room's topic or in its sync pages".into(),
            ));
        }
        let op = op.verify().inspect_err(|e| {
            bump(&self.counters.forged_rejected);
            warn!(error = %e, "refused a forged room operation");
        })?;
        policy::check_not_future("room operation", op.at, now_ms())?;
        let room = op.room.clone();
        if !self.is_member(&room) {
            return Ok(Verdict::Ignored(Code::NotFound));
        }
        let mut founded = self.founded();
        // The founder's pin of a manager that left, to publish.
        let mut pin = None;
        // Whether the room gained a member (its members announce their seal keys then).
        let gained;
        let change = match founded.get_mut(&room) {
            Some(membership) => {
                let state = membership.state();
                let asks = op.action == RoomAction::Join
                    && state.private
                    && !state.is_member(&op.by)
                    && !state.invited.contains_key(&op.by)
                    && !state.requests.contains_key(&op.by);
                if asks && state.requests.len() >= MAX_PENDING_REQUESTS {
                    // This node's own bound on unanswered requests (an approval admits anyway).
                    return Ok(Verdict::Ignored(Code::Overloaded));
                }
                let was_member = state.is_member(&self.account);
                let left_as_manager = op.action == RoomAction::Leave && state.managers.contains(&op.by);
                let members_before: Vec<AccountId> = state.members.keys().copied().collect();
                let id = op.id();
                let result = membership.apply(op.clone());
                if membership.holds(&id) {
                    self.store.put_room_op(&op, None)?;
                }
                // The fold may admit someone whatever the operation (a late invite activates a
                // held join, a pin readmits whom a voided kick removed), so a gain is read off
                // the state.
                gained = gained_member(&members_before, membership.state());
                let change = match result {
                    Ok(change) => change,
                    Err(tim_protocol::Error::Repeated(_)) => return Ok(Verdict::Duplicate),
                    // Refused where it stands but kept: another order of arrival may make it
                    // valid, and its signer has a part in the room. No blame.
                    Err(e) if membership.holds(&id) => {
                        debug!(%room, error = %e, "a room operation held inactive");
                        let state = membership.state().clone();
                        drop(founded);
                        self.after_membership_change(&room, &state, gained);
                        return Ok(Verdict::Ignored(e.code()));
                    }
                    Err(e) => return Err(e.into()),
                };
                if left_as_manager && membership.state().founder == self.account {
                    pin = self.pin_departed_manager(membership, &room, &op.by, id)?;
                }
                if was_member && !membership.state().is_member(&self.account) {
                    // A late operation removed this account (its own change is about another).
                    let by = op.by;
                    drop(founded);
                    self.settle_local(
                        &room,
                        &MembershipChange::Kicked {
                            account: self.account,
                            by,
                        },
                    )?;
                    founded = self.founded();
                }
                change
            }
            None => {
                if !matches!(op.action, RoomAction::Create { .. }) {
                    // Judged once the room's `Create` operation is here (sync brings it).
                    return Ok(Verdict::Ignored(Code::NotFound));
                }
                self.store.put_room_op(&op, None)?;
                // Operations kept before the `Create` (this account's join request) fold in too.
                match rebuild(&self.store, &room)? {
                    Some(membership) => {
                        gained = true;
                        founded.insert(room.clone(), membership);
                    }
                    None => return Ok(Verdict::Ignored(Code::NotFound)),
                }
                MembershipChange::Created
            }
        };
        let state = founded.get(&room).map(|m| m.state().clone());
        drop(founded);
        if direct_leave {
            let frame = encode(&Envelope::Room(op.get().clone()))?;
            let _ = self
                .room_work
                .try_send(super::RoomWork::Publish(room.clone(), op.id(), frame));
        }
        if let Some((id, frame)) = pin {
            let _ = self
                .room_work
                .try_send(super::RoomWork::Publish(room.clone(), id, frame));
        }
        self.settle_local(&room, &change)?;
        if let Some(state) = &state {
            self.after_membership_change(&room, state, gained);
        }
        if let Some(event) = event_of(&room, &change, state.as_ref(), &self.account) {
            self.emit(event);
        }
        Ok(Verdict::Stored)
    }

    /// The founder's pin of `account`, a manager that just left: a `Demote` naming every head of
    /// it held, so what it signs afterwards dated back to when it managed is void
    /// (docs/protocol.md, "Causal links"). The fold refuses the demotion (it manages no more)
    /// and keeps it inactive, which is all a pin needs. Returns the operation to publish.
    fn pin_departed_manager(
        &self,
        membership: &mut Membership,
        room: &RoomId,
        account: &AccountId,
        leave: MessageId,
    ) -> Result<Option<(MessageId, Vec<u8>)>> {
        let action = RoomAction::Demote(*account);
        let mut links = membership.links_for(&self.account, &action);
        // The leave among the heads even before its chain is whole here: the pin then voids
        // nothing until it is, rather than voiding the leave (docs/protocol.md, "Causal links").
        links.seen.retain(|head| *head != leave);
        links.seen.insert(0, leave);
        links.seen.truncate(tim_protocol::room::MAX_SEEN);
        let pin = RoomOp::sign_linked(&self.key, room.clone(), action, signing_time(Some(membership)), links)?;
        let id = pin.id();
        let _ = membership.apply(pin.clone());
        if !membership.holds(&id) {
            return Ok(None);
        }
        self.store.put_room_op(&pin, None)?;
        debug!(%room, %account, "pinned a manager that left");
        Ok(Some((id, encode(&Envelope::Room(pin.into_inner()))?)))
    }

    /// What a change means for this node itself: removed from the room, it stops serving,
    /// posting and listening there.
    fn settle_local(&self, room: &RoomId, change: &MembershipChange) -> Result<()> {
        if matches!(change, MembershipChange::Left(a) if *a == self.account)
            || matches!(change, MembershipChange::Cancelled)
        {
            self.forget_room_announcements(room);
        }
        if let MembershipChange::Kicked { account, .. } = change {
            if *account == self.account {
                self.store.set_room(room, false)?;
                if let Ok(mut rooms) = self.rooms.lock() {
                    rooms.remove(room);
                }
                let _ = self.room_work.try_send(super::RoomWork::Unsubscribe(room.clone()));
                self.forget_room_announcements(room);
            }
        }
        Ok(())
    }

    /// Founds a room of the local account's (`4101` if it founded a room of this name already
    /// that is not cancelled): signs its `Create`, keeps it and joins the room.
    pub(crate) fn found_room(&self, name: String, private: bool) -> Result<(RoomState, MessageId, Vec<u8>)> {
        let mut founded = self.founded();
        let taken = founded.values().any(|m| {
            let s = m.state();
            s.founder == self.account && s.name == name && s.cancelled.is_none()
        });
        if taken {
            return Err(tim_protocol::Error::AlreadyExists("a room of that name founded by this account").into());
        }
        let create = RoomOp::found(&self.key, name, private, now_ms())?;
        let membership = Membership::new(create.clone())?;
        let room = create.room.clone();
        self.store.put_room_op(&create, None)?;
        self.store.set_room(&room, true)?;
        if let Ok(mut rooms) = self.rooms.lock() {
            rooms.insert(room.clone());
        }
        let state = membership.state().clone();
        founded.insert(room, membership);
        Ok((state, create.id(), encode(&Envelope::Room(create.into_inner()))?))
    }

    /// Signs the local account's `action` in `room`, applies it here (a refusal is its rule's
    /// code and changes nothing) and keeps it; an invitation also goes to the invitee's outbox.
    /// A join of a room not known here (no invitation held) is a request by id.
    pub(crate) fn room_local(&self, room: &RoomId, action: RoomAction) -> Result<LocalRoomOp> {
        if !is_founded_id(room) {
            return Err(Error::BadParameters(format!("{room} is not a founded room")));
        }
        let mut founded = self.founded();
        if !founded.contains_key(room) {
            if let Some(membership) = self.membership_from_invite(room)? {
                founded.insert(room.clone(), membership);
            }
        }
        let membership = founded.get_mut(room);
        let at = signing_time(membership.as_deref());
        if let (RoomAction::Approve(account), Some(m)) = (&action, membership.as_ref()) {
            let state = m.state();
            // The role first (the fold answers 4105), then the request this node holds.
            if state.manages(&self.account) && !state.requests.contains_key(account) && !state.is_member(account) {
                return Err(tim_protocol::Error::NotFound("no join request from that account").into());
            }
        }
        let links = membership
            .as_ref()
            .map(|m| m.links_for(&self.account, &action))
            .unwrap_or_default();
        let op = RoomOp::sign_linked(&self.key, room.clone(), action, at, links)?;
        // Whether the room gained a member (its members announce their seal keys then).
        let mut gained = false;
        let (change, invitation, state) = match membership {
            Some(membership) => {
                // Tried on a copy: a refused operation of its own is neither kept nor sent.
                let mut trial = membership.clone();
                let change = trial.apply(op.clone())?;
                let members_before: Vec<AccountId> = membership.state().members.keys().copied().collect();
                gained = gained_member(&members_before, trial.state());
                *membership = trial;
                // An invitee learns of its invitation, an approved requester of its approval.
                let invitation = match &op.action {
                    RoomAction::Invite(invitee) | RoomAction::Approve(invitee) => {
                        let frame = encode(&Envelope::Invite {
                            create: membership.create().get().clone(),
                            invite: op.get().clone(),
                        })?;
                        Some(Outgoing {
                            to: *invitee,
                            kind: OutKind::Room,
                            frame,
                            queued_at: op.at,
                        })
                    }
                    // A leaving node leaves the topic next: its leave also goes to the founder,
                    // which takes it even if the publish found nobody, and publishes it again.
                    RoomAction::Leave => Some(Outgoing {
                        to: membership.state().founder,
                        kind: OutKind::Room,
                        frame: encode(&Envelope::Room(op.get().clone()))?,
                        queued_at: op.at,
                    }),
                    _ => None,
                };
                (Some(change), invitation, Some(membership.state().clone()))
            }
            None if op.action == RoomAction::Join => (None, None, None),
            None => return Err(tim_protocol::Error::NotFound("the room is not known here").into()),
        };
        drop(founded);
        self.store.put_room_op(&op, invitation.clone())?;
        if op.action == RoomAction::Join {
            self.store.drop_invite(room)?;
        }
        if let Some(change) = &change {
            self.settle_local(room, change)?;
            if let Some(state) = &state {
                self.after_membership_change(room, state, gained);
            }
            if let Some(event) = event_of(room, change, state.as_ref(), &self.account) {
                self.emit(event);
            }
        }
        let invitation =
            invitation.map(|out| Delivery::new(out.to, op.id(), out.frame, DeliveryKind::Invite, out.queued_at));
        Ok(LocalRoomOp {
            frame: encode(&Envelope::Room(op.get().clone()))?,
            op,
            invitation,
            change,
        })
    }
}
