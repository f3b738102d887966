//! The handle's calls about founded rooms: found one, look at it, and the founder's and managers'
//! operations (invite, approve, kick, promote, demote, cancel). Joining and leaving go through
//! [`Node::join`] and [`Node::leave`].

use tim_protocol::{AccountId, MembershipChange, RoomAction, RoomId, RoomState};
use tokio::sync::oneshot;

use super::Node;
use crate::{command::Command, Error, Result};

impl Node {
    /// Founds a room with the local account as founder and joins it; `state.room` is the id every
    /// other call takes. `4101` if this account founded a room of that name that is not cancelled.
    pub async fn create_room(&self, name: String, private: bool) -> Result<RoomState> {
        let (state, mid, frame) = self.blocking(move |core| core.found_room(name, private)).await?;
        let room = state.room.clone();
        let (reply, rx) = oneshot::channel();
        self.cmd_tx
            .send(Command::Join {
                room: room.clone(),
                reply,
            })
            .await?;
        rx.await??;
        self.cmd_tx.send(Command::Publish { room, mid, frame }).await?;
        Ok(state)
    }

    /// A founded room's state as known here (`4109` for a room not known here).
    pub fn room(&self, room: &RoomId) -> Result<RoomState> {
        self.core()?
            .room_state(room)
            .ok_or(Error::Protocol(tim_protocol::Error::NotFound(
                "no such founded room here",
            )))
    }

    /// Invites `account` (founder or manager, else `4105`); the invitee gets a `room_invite`.
    pub async fn invite(&self, room: RoomId, account: AccountId) -> Result<()> {
        self.room_op(room, RoomAction::Invite(account)).await.map(drop)
    }

    /// Admits an account that asked to join (founder or manager; `4109` without its request).
    pub async fn approve(&self, room: RoomId, account: AccountId) -> Result<()> {
        self.room_op(room, RoomAction::Approve(account)).await.map(drop)
    }

    /// Removes a member, or withdraws an invite or a request (founder or manager; only the founder
    /// removes a manager).
    pub async fn kick(&self, room: RoomId, account: AccountId) -> Result<()> {
        self.room_op(room, RoomAction::Kick(account)).await.map(drop)
    }

    /// Makes a member a manager (founder only).
    pub async fn promote(&self, room: RoomId, account: AccountId) -> Result<()> {
        self.room_op(room, RoomAction::Promote(account)).await.map(drop)
    }

    /// Makes a manager a plain member (founder only).
    pub async fn demote(&self, room: RoomId, account: AccountId) -> Result<()> {
        self.room_op(room, RoomAction::Demote(account)).await.map(drop)
    }

    /// Cancels the room for good (founder only); later posts get `4108`.
    pub async fn cancel_room(&self, room: RoomId) -> Result<()> {
        self.room_op(room, RoomAction::Cancel).await.map(drop)
    }

    /// Does the local account's `action` in `room` (the calls above, by their action).
    pub async fn room_action(&self, room: RoomId, action: RoomAction) -> Result<()> {
        self.room_op(room, action).await.map(drop)
    }

    /// Signs, applies and keeps the local account's operation, publishes it on the room's topic
    /// and sends an invitation to the invitee.
    async fn room_op(&self, room: RoomId, action: RoomAction) -> Result<Option<MembershipChange>> {
        let r = room.clone();
        let done = self.blocking(move |core| core.room_local(&r, action)).await?;
        let mid = done.op.id();
        self.cmd_tx
            .send(Command::Publish {
                room,
                mid,
                frame: done.frame,
            })
            .await?;
        if let Some(invitation) = done.invitation {
            self.cmd_tx.send(Command::Deliver(invitation)).await?;
        }
        Ok(done.change)
    }

    /// Joins a founded room: a member already only subscribes again; otherwise the signed join
    /// (taking an invitation, joining an open room, or asking) goes to the members.
    pub(super) async fn join_founded(&self, room: RoomId) -> Result<()> {
        let member = self
            .core()?
            .room_state(&room)
            .is_some_and(|s| s.is_member(&self.account));
        if member {
            return self.subscribe_room(room).await;
        }
        let r = room.clone();
        let done = self.blocking(move |core| core.room_local(&r, RoomAction::Join)).await?;
        self.subscribe_room(room.clone()).await?;
        self.cmd_tx
            .send(Command::Publish {
                room,
                mid: done.op.id(),
                frame: done.frame,
            })
            .await?;
        Ok(())
    }

    /// Withdraws the local account from a founded room it belongs to (or asked to join, or was
    /// invited to); the founder cannot leave (`4104`: it cancels).
    pub(super) async fn leave_founded(&self, room: &RoomId) -> Result<()> {
        let Some(state) = self.core()?.room_state(room) else {
            return Ok(());
        };
        let me = self.account;
        if state.founder == me {
            return Err(Error::BadParameters(
                "the founder cannot leave its room; it cancels it".into(),
            ));
        }
        if state.cancelled.is_some() {
            return Ok(());
        }
        if state.is_member(&me) || state.requests.contains_key(&me) || state.invited.contains_key(&me) {
            self.room_op(room.clone(), RoomAction::Leave).await?;
        }
        Ok(())
    }
}
