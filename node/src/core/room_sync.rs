//! Room catch-up on the store side: serving a page of a joined room's log, and applying a page
//! received from a member exactly as if its items came by gossip.

use std::sync::Mutex;

use tim_protocol::{decode, policy, Envelope, Message, MessageId, RoomId, SyncPage, SyncRequest, Verified, Via};
use tim_storage::{PutOutcome, State};
use tracing::warn;

use super::{bump, now_ms, Core};
use crate::{Error, Result};

/// Most items in one served sync page.
const SYNC_PAGE_ITEMS: usize = 256;
/// Most frame bytes in one served sync page (well under `MAX_SYNC_PAGE_LEN`).
const SYNC_PAGE_BYTES: usize = 1024 * 1024;

impl Core {
    /// Serves a page of a joined room's log to a member catching up (`peer`: the asking node).
    pub(crate) fn serve_sync(&self, req: &SyncRequest, peer: &libp2p::PeerId) -> SyncPage {
        let empty = SyncPage {
            frames: Vec::new(),
            next: req.after,
            more: false,
        };
        if !self.is_member(&req.room) || !self.may_sync(req, peer) {
            return empty;
        }
        let limit = (req.limit as usize).clamp(1, SYNC_PAGE_ITEMS);
        // A founded room's newcomer needs every membership operation, however old: its log is
        // served from the start.
        let window = if tim_protocol::room::is_founded_id(&req.room) {
            0
        } else {
            self.sync_window
        };
        match self
            .store
            .room_log(&req.room, req.after, limit, SYNC_PAGE_BYTES, window)
        {
            Ok(page) => SyncPage {
                frames: page.frames,
                next: page.next,
                more: page.more,
            },
            Err(e) => {
                warn!(room = %req.room, error = %e, "could not serve a sync page");
                empty
            }
        }
    }

    /// Applies a sync page from `peer` exactly as if its items came by gossip, tombstones first so
    /// a message revoked while we were away is never shown, then records the cursor. If storing
    /// any item failed here, the cursor stays and the first such error is returned: the next sync
    /// asks for the page again rather than skip what this node did not keep.
    pub(crate) fn apply_sync(&self, room: &RoomId, peer: &[u8], page: &SyncPage) -> Result<()> {
        let via = Via::Room(room.clone());
        let mut messages = Vec::with_capacity(page.frames.len());
        let mut store_failure: Option<tim_storage::Error> = None;
        for frame in &page.frames {
            // Control messages (and anything malformed) one by one, before any message.
            match decode::<Envelope>(frame) {
                Ok(Envelope::Message(m)) => messages.push(m),
                Ok(control) => match self.try_envelope(control, &via, || {}) {
                    Err(Error::Storage(e)) if !matches!(e, tim_storage::Error::Tombstoned(_)) => {
                        warn!(error = %e, %room, "storing a control message of a sync page failed");
                        store_failure.get_or_insert(e);
                    }
                    result => {
                        self.verdict_of(result, &via);
                    }
                },
                Err(e) => {
                    self.verdict_of(Err(e.into()), &via);
                }
            }
        }
        // Messages already held (stored or tombstoned) are skipped unverified: a periodic re-sync
        // brings back mostly what gossip delivered. The rest: the same checks as gossip, verified
        // on every core, stored in one batch. One `verify_strict` each, not
        // `tim_protocol::batch`: a batch that agrees with `verify_strict` must test every R for
        // torsion, which costs about what batching saves (docs/performance.md, issue 14).
        let ids: Vec<MessageId> = messages.iter().map(Message::id).collect();
        let known = self.store.known_many(&ids)?;
        let messages: Vec<Message> = messages
            .into_iter()
            .zip(known)
            .filter_map(|(m, known)| (!known).then_some(m))
            .collect();
        let now = now_ms();
        let checked = par_map(messages, |m| -> Result<Verified<Message>> {
            policy::check_destination(m.head(), &self.account, &via)?;
            policy::check_not_future("sent_at", m.head().sent_at, now)?;
            let m = m.verify()?;
            self.check_room_post(&m)?;
            Ok(m)
        });
        let mut verified = Vec::with_capacity(checked.len());
        // A founded room's post this node cannot judge yet (the operation that admits its
        // sender, or this account, comes in a later page): the cursor stays, so the next sync
        // brings it again.
        let mut unjudged = false;
        for item in checked {
            match item {
                Ok(m) => verified.push(m),
                Err(e) => {
                    unjudged |= e.code() == tim_protocol::Code::NotFound;
                    self.verdict_of(Err(e), &via);
                }
            }
        }
        let items: Vec<(&Verified<Message>, State)> = verified.iter().map(|m| (m, State::Received)).collect();
        for (message, outcome) in verified.iter().zip(self.store.put_messages(&items)?) {
            match outcome {
                Ok(PutOutcome::Stored) => self.stored(message),
                Ok(PutOutcome::Duplicate) => {}
                Err(e @ tim_storage::Error::Tombstoned(_)) => {
                    self.verdict_of(Err(e.into()), &via);
                }
                Err(e) => {
                    warn!(error = %e, %room, "storing a message of a sync page failed");
                    store_failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = store_failure {
            return Err(e.into());
        }
        if !unjudged {
            self.store.set_sync_cursor(room, peer, page.next)?;
        }
        bump(&self.counters.sync_pages);
        Ok(())
    }
}

/// `f` over `items`, in order, spread over the machine's cores (at most one scoped thread per
/// core, the caller's included): the signature checks of a sync page run in parallel.
fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 || items.len() < 8 {
        return items.into_iter().map(f).collect();
    }
    let size = items.len().div_ceil(cores);
    let mut chunks: Vec<(usize, Vec<T>)> = Vec::with_capacity(cores);
    let mut rest = items.into_iter();
    loop {
        let chunk: Vec<T> = rest.by_ref().take(size).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push((chunks.len(), chunk));
    }
    let queue = Mutex::new(chunks);
    let done = Mutex::new(Vec::with_capacity(cores));
    let work = || loop {
        let next = queue.lock().ok().and_then(|mut q| q.pop());
        let Some((i, chunk)) = next else { break };
        let part: Vec<R> = chunk.into_iter().map(&f).collect();
        if let Ok(mut d) = done.lock() {
            d.push((i, part));
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..cores {
            // If a thread cannot be started, the caller's thread takes its share.
            let _ = std::thread::Builder::new().spawn_scoped(scope, work);
        }
        work();
    });
    let mut parts = done.into_inner().unwrap_or_else(|p| p.into_inner());
    parts.sort_by_key(|(i, _)| *i);
    parts.into_iter().flat_map(|(_, part)| part).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tim_protocol::{encode, AccountKey, Action, Control, Recipient};

    use super::*;
    use crate::{core::Verdict, Event};

    fn core(dir: &std::path::Path, key: AccountKey, room: &RoomId) -> Core {
        let ring = tim_protocol::seal::Keyring::derived(&key).unwrap_or_else(|e| panic!("{e}"));
        crate::core::test_core::core(dir, key, ring, std::slice::from_ref(room))
    }

    fn post(key: &AccountKey, room: &RoomId, i: u8) -> Message {
        let to = Recipient::Room(room.clone());
        let body = format!("room message {i}").into_bytes();
        Message::sign_with_nonce(key, to, body, 1_700_000_000_000 + u64::from(i), None, [i; 16])
            .unwrap()
            .into_inner()
    }

    fn frame(env: Envelope) -> Vec<u8> {
        encode(&env).unwrap()
    }

    /// A sync page mixing good items, forgeries, a wrong room, a duplicate and a revoke placed
    /// after its message: only the good ones are stored, the revoked one never is, each
    /// forgery is counted, and the cursor moves.
    #[test]
    fn a_members_leave_reaches_the_founder_on_a_pipe_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let founder = AccountKey::from_secret_bytes(&[1; 32]);
        let bob = AccountKey::from_secret_bytes(&[2; 32]);
        let core = core(dir.path(), founder, &RoomId::new("general").unwrap());
        let (state, _, _) = core.found_room("open".into(), false).unwrap();
        let room = state.room;
        let sign = |action, at| {
            tim_protocol::RoomOp::sign(&bob, room.clone(), action, at)
                .unwrap()
                .into_inner()
        };
        let now = crate::core::now_ms();
        let on_topic = Via::Room(room.clone());
        let join = sign(tim_protocol::RoomAction::Join, now);
        let join_id = join.id();
        assert_eq!(core.room_op_in(join, &on_topic).unwrap(), Verdict::Stored);
        // Any other operation on a pipe is refused; a leave is taken.
        assert!(core
            .room_op_in(sign(tim_protocol::RoomAction::Cancel, now + 1), &Via::Direct)
            .is_err());
        // Linked to bob's join, as his node signs it (a leave stands only by its own chain).
        let links = tim_protocol::room::Links {
            prev: Some(join_id),
            seen: Vec::new(),
        };
        let leave =
            tim_protocol::RoomOp::sign_linked(&bob, room.clone(), tim_protocol::RoomAction::Leave, now + 2, links)
                .unwrap()
                .into_inner();
        assert_eq!(core.room_op_in(leave.clone(), &Via::Direct).unwrap(), Verdict::Stored);
        assert!(!core.room_state(&room).unwrap().is_member(&bob.account_id()));
        // The same leave by gossip afterwards is a duplicate.
        assert_eq!(core.room_op_in(leave, &on_topic).unwrap(), Verdict::Duplicate);
    }

    #[test]
    fn invitations_from_free_rooms_are_held_within_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let me = AccountKey::from_secret_bytes(&[1; 32]);
        let local = me.account_id();
        let core = core(dir.path(), me, &RoomId::new("general").unwrap());
        let invitation = |i: usize| {
            let mut secret = [9u8; 32];
            secret[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let founder = AccountKey::from_secret_bytes(&secret);
            let create = tim_protocol::RoomOp::found(&founder, "spam".into(), true, 1_000).unwrap();
            let invite = tim_protocol::RoomOp::sign(
                &founder,
                create.room.clone(),
                tim_protocol::RoomAction::Invite(local),
                1_001,
            )
            .unwrap();
            (create.into_inner(), invite.into_inner())
        };
        for i in 0..crate::core::rooms::MAX_INVITES {
            let (create, invite) = invitation(i);
            assert_eq!(core.invite_in(create, invite, &Via::Direct).unwrap(), Verdict::Stored);
        }
        let (create, invite) = invitation(100_000);
        assert_eq!(
            core.invite_in(create, invite, &Via::Direct).unwrap(),
            Verdict::Ignored(tim_protocol::Code::Overloaded)
        );
        assert_eq!(core.store.invite_count().unwrap(), crate::core::rooms::MAX_INVITES);
        // Not on a room's path.
        let (create, invite) = invitation(100_001);
        assert!(core
            .invite_in(create, invite, &Via::Room(RoomId::new("general").unwrap()))
            .is_err());
    }

    #[test]
    fn posts_of_a_founded_room_not_known_here_are_passed_over_without_blame() {
        let dir = tempfile::tempdir().unwrap();
        let (me, alice) = (
            AccountKey::from_secret_bytes(&[1; 32]),
            AccountKey::from_secret_bytes(&[2; 32]),
        );
        let room = tim_protocol::room::founded_room_id(&alice.account_id(), "x", true, &[9; 16]);
        let core = core(dir.path(), me, &room);
        let posted = post(&alice, &room, 1);
        let page = SyncPage {
            frames: vec![encode(&Envelope::Message(posted.clone())).unwrap()],
            next: 1,
            more: false,
        };
        core.apply_sync(&room, b"peer", &page).unwrap();
        assert!(core.store.entry(&posted.id()).unwrap().is_none());
        let m = core.counters.snapshot();
        assert_eq!((m.ignored, m.invalid_rejected, m.messages_in), (1, 0, 0));
        // The cursor stays: once the room's operations are here, the next sync takes the post.
        assert_eq!(core.store.sync_cursor(&room, b"peer").unwrap(), 0);
    }

    #[test]
    fn sync_page_applies_tombstones_first_and_refuses_bad_items() {
        let dir = tempfile::tempdir().unwrap();
        let (me, alice, eve) = (
            AccountKey::from_secret_bytes(&[1; 32]),
            AccountKey::from_secret_bytes(&[2; 32]),
            AccountKey::from_secret_bytes(&[3; 32]),
        );
        let room = RoomId::new("general").unwrap();
        let other = RoomId::new("elsewhere").unwrap();
        let core = core(dir.path(), me, &room);
        let mut events = core.events.subscribe();
        let good: Vec<Message> = (0..20).map(|i| post(&alice, &room, i)).collect();
        let revoked = good[3].clone();
        let revoke = Control::sign(&alice, Action::Revoke, revoked.header.clone(), 1_700_000_100_000).unwrap();
        let mut forged = post(&alice, &room, 100);
        forged.header.header.sent_at += 1; // breaks the signature
        let mut forged_revoke = Control::sign(&alice, Action::Revoke, good[5].header.clone(), 1)
            .unwrap()
            .into_inner();
        forged_revoke.by = eve.account_id(); // eve claims alice's revoke
        let mut frames: Vec<Vec<u8>> = good.iter().map(|m| frame(Envelope::Message(m.clone()))).collect();
        frames.push(frame(Envelope::Message(forged.clone())));
        frames.push(frame(Envelope::Message(post(&alice, &other, 101))));
        frames.push(frame(Envelope::Message(good[7].clone()))); // duplicate in the same page
        frames.push(frame(Envelope::Control(forged_revoke)));
        frames.push(frame(Envelope::Control(revoke.get().clone()))); // after its message
        frames.push(vec![0xff, 0, 1]); // garbage
        let page = SyncPage {
            frames,
            next: 42,
            more: false,
        };
        core.apply_sync(&room, b"peer", &page).unwrap();

        for (i, m) in good.iter().enumerate() {
            let entry = core.store.entry(&m.id()).unwrap();
            match i {
                3 => assert!(
                    matches!(entry, Some(tim_storage::Entry::Tombstone(_))),
                    "revoked one is a tombstone"
                ),
                _ => assert!(
                    matches!(entry, Some(tim_storage::Entry::Message(_))),
                    "message {i} stored"
                ),
            }
        }
        assert!(core.store.entry(&forged.id()).unwrap().is_none());
        assert_eq!(core.store.sync_cursor(&room, b"peer").unwrap(), 42);
        let m = core.counters.snapshot();
        assert_eq!(m.messages_in, 19);
        assert_eq!(m.revokes_applied, 1);
        assert_eq!(m.forged_rejected, 1, "eve's revoke");
        assert_eq!(
            m.invalid_rejected, 4,
            "bad signature, wrong room, forged revoke, garbage"
        );
        // The revoked message was never shown.
        let mut shown = 0;
        while let Ok(e) = events.try_recv() {
            if let Event::Message { mid, .. } = e {
                assert_ne!(mid, revoked.id(), "a revoked message was shown");
                shown += 1;
            }
        }
        assert_eq!(shown, 19);

        // A re-sync of what is already here (as a periodic sync brings back what gossip
        // delivered) verifies nothing again and changes nothing: a copy of a held message with
        // a broken signature has the same id and is skipped, not stored over the original.
        let mut tampered = good[0].clone();
        tampered.header.signature[0] ^= 1;
        let page = SyncPage {
            frames: vec![
                frame(Envelope::Message(tampered)),
                frame(Envelope::Message(good[1].clone())),
                frame(Envelope::Message(revoked.clone())),
                frame(Envelope::Control(revoke.get().clone())),
            ],
            next: 46,
            more: false,
        };
        core.apply_sync(&room, b"peer", &page).unwrap();
        let after = core.counters.snapshot();
        assert_eq!((after.messages_in, after.revokes_applied), (19, 1));
        assert_eq!(after.invalid_rejected, 4, "nothing held was checked again");
        assert!(events.try_recv().is_err(), "a re-sync emitted an event");
        let Some(tim_storage::Entry::Message(kept)) = core.store.entry(&good[0].id()).unwrap() else {
            panic!("the original is gone")
        };
        assert_eq!(kept.message.header.signature, good[0].header.signature);
        assert!(matches!(
            core.store.entry(&revoked.id()).unwrap(),
            Some(tim_storage::Entry::Tombstone(_))
        ));
        assert_eq!(core.store.sync_cursor(&room, b"peer").unwrap(), 46);
    }

    /// A tombstone of a sync page that this node fails to store: the cursor stays, so the next
    /// sync brings the page (and the revoke) again instead of skipping past it.
    #[test]
    fn a_page_whose_tombstone_failed_to_store_keeps_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let (me, alice) = (
            AccountKey::from_secret_bytes(&[1; 32]),
            AccountKey::from_secret_bytes(&[2; 32]),
        );
        let room = RoomId::new("general").unwrap();
        let core = core(dir.path(), me, &room);
        let target = post(&alice, &room, 1);
        let revoke = Control::sign(&alice, Action::Revoke, target.header.clone(), 1_700_000_100_000).unwrap();
        // The target's record is unreadable: applying the revoke fails in the store.
        core.store
            .raw_put_for_tests(tim_storage::Cf::Messages, target.id().as_bytes(), b"rot")
            .unwrap();
        let page = SyncPage {
            frames: vec![
                frame(Envelope::Control(revoke.get().clone())),
                frame(Envelope::Message(post(&alice, &room, 2))),
            ],
            next: 7,
            more: false,
        };
        let failed = core.apply_sync(&room, b"peer", &page).unwrap_err();
        assert_eq!(failed.code(), tim_protocol::Code::StorageFailure);
        assert_eq!(
            core.store.sync_cursor(&room, b"peer").unwrap(),
            0,
            "the cursor moved past a lost revoke"
        );
        // Once the store can take it, the same page applies and the cursor moves.
        core.store
            .raw_put_for_tests(
                tim_storage::Cf::Messages,
                target.id().as_bytes(),
                &encode(&tim_storage::StoredMessage {
                    state: tim_storage::State::Received,
                    stored_at: 1,
                    read_at: None,
                    message: target.clone(),
                })
                .unwrap(),
            )
            .unwrap();
        core.apply_sync(&room, b"peer", &page).unwrap();
        assert_eq!(core.store.sync_cursor(&room, b"peer").unwrap(), 7);
        assert!(matches!(
            core.store.entry(&target.id()).unwrap(),
            Some(tim_storage::Entry::Tombstone(_))
        ));
    }

    #[test]
    fn par_map_keeps_every_item_in_order() {
        for n in [0usize, 1, 7, 8, 9, 255, 256, 1000] {
            let out = par_map((0..n).collect(), |i| i * 2);
            assert_eq!(out, (0..n).map(|i| i * 2).collect::<Vec<_>>(), "n = {n}");
        }
    }
}
