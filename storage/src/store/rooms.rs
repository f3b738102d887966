//! Founded rooms: each room's held operations (`meta`, `roomop/<room prefix><id>`), each also
//! an entry of the room's arrival log so members catching up get them, and the invitations this
//! account holds (`invite/<room prefix>`: the `Create` and `Invite` operations).

use rocksdb::WriteBatch;
use tim_protocol::{decode, encode, MessageId, RoomId, RoomOp, Verified};

use super::{corrupt, lock, meta::scan, room_log::LOG_ROOM_OP, Store};
use crate::{keys::outbox_key, Cf, Conversation, Outgoing, Result};

/// Meta key prefix: an applied room operation.
const META_ROOM_OP: &[u8] = b"roomop/";
/// Meta key prefix: an invitation held for the local account.
const META_INVITE: &[u8] = b"invite/";

fn room_op_prefix(room: &RoomId) -> Vec<u8> {
    let mut key = META_ROOM_OP.to_vec();
    key.extend_from_slice(&Conversation::Room(room.clone()).prefix());
    key
}

/// The meta key of operation `id` of `room`.
pub(super) fn room_op_key(room: &RoomId, id: &MessageId) -> Vec<u8> {
    let mut key = room_op_prefix(room);
    key.extend_from_slice(id.as_bytes());
    key
}

fn invite_key(room: &RoomId) -> Vec<u8> {
    let mut key = META_INVITE.to_vec();
    key.extend_from_slice(&Conversation::Room(room.clone()).prefix());
    key
}

impl Store {
    /// Keeps a room operation (the node's membership fold holds it, applied or inactive) and
    /// appends it to the room's log, with `outgoing` (an invitation for the invitee) in the same
    /// write. Keeping one already kept changes nothing.
    pub fn put_room_op(&self, op: &Verified<RoomOp>, outgoing: Option<Outgoing>) -> Result<()> {
        let key = room_op_key(&op.room, &op.id());
        let mut counts = lock(&self.inner.write_lock);
        if self.inner.db.get_pinned_cf(self.cf(Cf::Meta), &key)?.is_some() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(Cf::Meta), &key, encode(op.get())?);
        let seq = self.inner.seq.load(std::sync::atomic::Ordering::Relaxed) + 1;
        self.log_append(&mut batch, &op.room, seq, &op.id(), LOG_ROOM_OP);
        let queued = outgoing.map(|out| -> Result<_> {
            batch.put_cf(self.cf(Cf::Outbox), outbox_key(&op.id(), out.kind), encode(&out)?);
            Ok((out.to, out.kind))
        });
        let queued = queued.transpose()?;
        self.inner.db.write_opt(batch, &self.inner.write_opts)?;
        self.inner.seq.store(seq, std::sync::atomic::Ordering::Relaxed);
        if let Some((to, kind)) = queued {
            counts.add(to, kind);
        }
        Ok(())
    }

    /// Every kept operation of `room`, in key order (the caller folds them in their own order).
    pub fn room_ops(&self, room: &RoomId) -> Result<Vec<RoomOp>> {
        scan(&self.inner.db, self.cf(Cf::Meta), &room_op_prefix(room))?
            .into_iter()
            .map(|(key, value)| decode::<RoomOp>(&value).map_err(|_| corrupt(Cf::Meta, &key, "bad room operation")))
            .collect()
    }

    /// The kept operation `id` of `room`, if any.
    pub fn room_op(&self, room: &RoomId, id: &MessageId) -> Result<Option<RoomOp>> {
        let key = room_op_key(room, id);
        match self.inner.db.get_pinned_cf(self.cf(Cf::Meta), &key)? {
            Some(value) => Ok(Some(
                decode::<RoomOp>(&value).map_err(|_| corrupt(Cf::Meta, &key, "bad room operation"))?,
            )),
            None => Ok(None),
        }
    }

    /// Every room with kept operations (the founded rooms this node knows).
    pub fn founded_rooms(&self) -> Result<Vec<RoomId>> {
        let mut rooms: Vec<RoomId> = Vec::new();
        for (key, _) in scan(&self.inner.db, self.cf(Cf::Meta), META_ROOM_OP)? {
            let rest = &key[META_ROOM_OP.len()..];
            let conversation = rest
                .get(..rest.len().saturating_sub(32))
                .and_then(Conversation::from_prefix);
            match conversation {
                Some(Conversation::Room(room)) => {
                    if rooms.last() != Some(&room) {
                        rooms.push(room);
                    }
                }
                _ => return Err(corrupt(Cf::Meta, &key, "bad room operation key")),
            }
        }
        rooms.dedup();
        Ok(rooms)
    }

    /// Keeps an invitation of the local account to `room` (`frame`: the encoded invitation),
    /// replacing an earlier one.
    pub fn put_invite(&self, room: &RoomId, frame: &[u8]) -> Result<()> {
        Ok(self
            .inner
            .db
            .put_cf_opt(self.cf(Cf::Meta), invite_key(room), frame, &self.inner.write_opts)?)
    }

    /// The invitation held for `room`, encoded, if any.
    pub fn invite(&self, room: &RoomId) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.db.get_cf(self.cf(Cf::Meta), invite_key(room))?)
    }

    /// How many invitations are held.
    pub fn invite_count(&self) -> Result<usize> {
        let mut n = 0;
        super::meta::visit(&self.inner.db, self.cf(Cf::Meta), META_INVITE, |_, _| n += 1)?;
        Ok(n)
    }

    /// Forgets the invitation to `room` (taken or declined).
    pub fn drop_invite(&self, room: &RoomId) -> Result<()> {
        Ok(self
            .inner
            .db
            .delete_cf_opt(self.cf(Cf::Meta), invite_key(room), &self.inner.write_opts)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tim_protocol::{test_util::key, Envelope, RoomAction};

    use crate::{Config, Store};

    #[test]
    fn room_operations_are_kept_listed_and_served_to_members_catching_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Config::default()).unwrap();
        let founder = key(1);
        let create = tim_protocol::RoomOp::found(&founder, "team".into(), true, 100).unwrap();
        let room = create.room.clone();
        let invite =
            tim_protocol::RoomOp::sign(&founder, room.clone(), RoomAction::Invite(key(2).account_id()), 101).unwrap();
        store.put_room_op(&create, None).unwrap();
        store.put_room_op(&invite, None).unwrap();
        store.put_room_op(&invite, None).unwrap();
        assert_eq!(store.room_ops(&room).unwrap().len(), 2);
        assert_eq!(store.founded_rooms().unwrap(), vec![room.clone()]);

        let page = store.room_log(&room, 0, 10, 1 << 20, 0).unwrap();
        let ops: Vec<_> = page
            .frames
            .iter()
            .map(|f| tim_protocol::decode::<Envelope>(f).unwrap())
            .collect();
        assert_eq!(
            ops,
            vec![
                Envelope::Room(create.get().clone()),
                Envelope::Room(invite.get().clone())
            ]
        );

        assert_eq!(store.invite_count().unwrap(), 0);
        store.put_invite(&room, b"frame").unwrap();
        assert_eq!(store.invite(&room).unwrap().as_deref(), Some(&b"frame"[..]));
        assert_eq!(store.invite_count().unwrap(), 1);
        store.drop_invite(&room).unwrap();
        assert_eq!(store.invite_count().unwrap(), 0);
    }
}
