//! Invitations to founded rooms, as they come to the local account over a pipe: kept until
//! answered, and the approval of its own join request.

use tim_protocol::{decode, encode, policy, Code, Envelope, Membership, RoomAction, RoomId, RoomOp, Verified, Via};
use tracing::warn;

use super::{
    bump,
    inbound::Verdict,
    now_ms,
    rooms::{rebuild, MAX_INVITES},
    Core,
};
use crate::{Error, Event, Result};

impl Core {
    /// An invitation for the local account, from a pipe.
    pub(super) fn invite_in(&self, create: RoomOp, invite: RoomOp, via: &Via) -> Result<Verdict> {
        if *via != Via::Direct {
            return Err(Error::BadParameters("invitations arrive only on direct paths".into()));
        }
        let frame = encode(&Envelope::Invite {
            create: create.clone(),
            invite: invite.clone(),
        })?;
        let forged = |e: &tim_protocol::Error| {
            bump(&self.counters.forged_rejected);
            warn!(error = %e, "refused a forged invitation");
        };
        let create = create.verify().inspect_err(forged)?;
        let invite = invite.verify().inspect_err(forged)?;
        let RoomAction::Create { name, .. } = &create.action else {
            return Err(Error::BadParameters(
                "an invitation carries its room's create operation".into(),
            ));
        };
        if invite.room != create.room {
            return Err(Error::BadParameters("an invitation to another room".into()));
        }
        policy::check_not_future("invitation", invite.at, now_ms())?;
        let room = create.room.clone();
        match &invite.action {
            RoomAction::Invite(account) if *account == self.account => {}
            RoomAction::Approve(account) if *account == self.account => return self.approved(create, invite),
            _ => return Err(tim_protocol::Error::PermissionDenied("an invitation for another account").into()),
        }
        if self.store.invite(&room)?.as_deref() == Some(frame.as_slice()) {
            return Ok(Verdict::Duplicate);
        }
        if self.room_state(&room).is_some_and(|s| s.is_member(&self.account)) {
            return Ok(Verdict::Duplicate);
        }
        // Founding a room costs nothing: invitations are held within a bound, and under
        // `inbound = "contacts"` only from accounts admitted.
        if !self.admits(&invite.by)? {
            return Ok(Verdict::Ignored(Code::PermissionDenied));
        }
        if self.store.invite(&room)?.is_none() && self.store.invite_count()? >= MAX_INVITES {
            return Ok(Verdict::Ignored(Code::Overloaded));
        }
        self.store.put_invite(&room, &frame)?;
        self.emit(Event::RoomInvite {
            room,
            by: invite.by,
            name: name.clone(),
        });
        Ok(Verdict::Stored)
    }

    /// The approval of this account's join request, with the room's `Create`: the room is known
    /// here from now on (sync brings the rest, now that its members serve this account).
    fn approved(&self, create: Verified<RoomOp>, approve: Verified<RoomOp>) -> Result<Verdict> {
        let room = create.room.clone();
        if !self.is_member(&room) {
            // This node never asked to join (or left since).
            return Ok(Verdict::Ignored(Code::NotFound));
        }
        if self.room_state(&room).is_some_and(|s| s.is_member(&self.account)) {
            return Ok(Verdict::Duplicate);
        }
        let mut founded = self.founded();
        self.store.put_room_op(&create, None)?;
        let Some(mut membership) = rebuild(&self.store, &room)? else {
            return Ok(Verdict::Ignored(Code::NotFound));
        };
        // A manager's approval holds only once this node knows the manager: sync brings that.
        let _ = membership.apply(approve.clone());
        if membership.holds(&approve.id()) {
            self.store.put_room_op(&approve, None)?;
        }
        let state = membership.state().clone();
        let member = state.is_member(&self.account);
        founded.insert(room.clone(), membership);
        drop(founded);
        self.after_membership_change(&room, &state, member);
        // The members serve this account now: catch up at once rather than at the next interval.
        let _ = self.room_work.try_send(super::RoomWork::Sync(room.clone()));
        if member {
            self.emit(Event::RoomMember {
                room,
                account: self.account,
                change: "joined",
            });
        }
        Ok(Verdict::Stored)
    }

    /// A room's membership from the invitation held for it: its `Create`, and the invite if the
    /// founder made it (a manager's invite is judged by the members, who know the manager).
    pub(super) fn membership_from_invite(&self, room: &RoomId) -> Result<Option<Membership>> {
        let Some(frame) = self.store.invite(room)? else {
            return Ok(None);
        };
        let Ok(Envelope::Invite { create, invite }) = decode::<Envelope>(&frame) else {
            warn!(%room, "a kept invitation does not decode; dropped");
            self.store.drop_invite(room)?;
            return Ok(None);
        };
        let create = create.verify()?;
        let mut membership = Membership::new(create.clone())?;
        let invite = invite.verify()?;
        self.store.put_room_op(&create, None)?;
        if membership.apply(invite.clone()).is_ok() {
            self.store.put_room_op(&invite, None)?;
        }
        Ok(Some(membership))
    }
}
