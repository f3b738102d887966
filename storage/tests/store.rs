//! Store behaviour: idempotence, tombstones (before and after the message), history paging,
//! restart and crash durability, concurrency and corrupt data. Bodies destroyed on disk: shred.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::outgoing;

use std::{path::Path, sync::Arc};

use tim_protocol::{
    decode,
    test_util::{burn, direct, key, revoke, room_message},
    AccountKey, Action, Code, Envelope, Message, MessageId, Recipient, RoomId,
};
use tim_storage::{Cf, Config, Conversation, Entry, OutKind, PutOutcome, State, Store, TombstoneOutcome};

/// A store without stranger quotas: these tests store thousands of messages and tombstones
/// from accounts never written to (quotas.rs tests the quotas).
fn open(dir: &Path) -> Store {
    let config = Config {
        stranger_messages_each: usize::MAX,
        stranger_messages_total: usize::MAX,
        pending_tombstones_each: usize::MAX,
        pending_tombstones_total: usize::MAX,
        ..Config::default()
    };
    Store::open(dir, config).unwrap()
}

fn conv(a: &AccountKey, b: &AccountKey) -> Conversation {
    Conversation::direct(a.account_id(), b.account_id())
}

fn ids(page: &tim_storage::Page) -> Vec<MessageId> {
    page.entries.iter().map(Entry::id).collect()
}

#[test]
fn put_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (key(1), key(2));
    let m = direct(&a, &b, b"hi", 10).verify().unwrap();
    assert_eq!(store.put_message(&m, State::Received).unwrap(), PutOutcome::Stored);
    assert_eq!(store.put_message(&m, State::Received).unwrap(), PutOutcome::Duplicate);
    let page = store.history(&conv(&a, &b), None, 10).unwrap();
    assert_eq!(ids(&page), vec![m.id()]);
    // A batch holding the same message twice and an already stored one stores each once.
    let n = direct(&a, &b, b"again", 11).verify().unwrap();
    let out = store
        .put_messages(&[(&n, State::Received), (&n, State::Received), (&m, State::Received)])
        .unwrap();
    let out: Vec<_> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        out,
        vec![PutOutcome::Stored, PutOutcome::Duplicate, PutOutcome::Duplicate]
    );
    assert_eq!(store.history(&conv(&a, &b), None, 10).unwrap().entries.len(), 2);
}

#[test]
fn tombstone_destroys_and_refuses_later_copies() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (key(1), key(2));
    let m = direct(&a, &b, b"oops", 10).verify().unwrap();
    store.put_message(&m, State::Sent).unwrap();
    let r = revoke(&a, &m).verify().unwrap();
    assert_eq!(
        store.apply_tombstone(&r).unwrap(),
        TombstoneOutcome::Applied { had_body: true }
    );
    assert_eq!(store.apply_tombstone(&r).unwrap(), TombstoneOutcome::Duplicate);
    assert!(store.message(&m.id()).unwrap().is_none());
    let err = store.put_message(&m, State::Received).unwrap_err();
    assert_eq!(err.code(), Code::Tombstoned);
    let page = store.history(&conv(&a, &b), None, 10).unwrap();
    match &page.entries[..] {
        [Entry::Tombstone(t)] => {
            assert_eq!(t.target(), m.id());
            assert_eq!(t.action(), Action::Revoke);
            assert_eq!(t.by(), a.account_id());
        }
        other => panic!("expected one marker, got {other:?}"),
    }
}

#[test]
fn tombstone_before_message_is_pending_and_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (key(1), key(2));
    let m = direct(&a, &b, b"late", 10).verify().unwrap();
    let burn = burn(&b, &m).verify().unwrap();
    assert_eq!(
        store.apply_tombstone(&burn).unwrap(),
        TombstoneOutcome::Applied { had_body: false }
    );
    assert_eq!(
        store.put_message(&m, State::Received).unwrap_err().code(),
        Code::Tombstoned
    );
    let batch = store.put_messages(&[(&m, State::Received)]).unwrap();
    assert_eq!(batch[0].as_ref().unwrap_err().code(), Code::Tombstoned);
    assert!(store.message(&m.id()).unwrap().is_none());
    let entry = store.entry(&m.id()).unwrap().unwrap();
    assert!(matches!(entry, Entry::Tombstone(t) if t.action() == Action::Burn));
}

#[test]
fn history_pages_newest_first_across_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b, c) = (key(1), key(2), key(3));
    let msgs: Vec<_> = (0..25u64)
        .map(|i| {
            if i % 2 == 0 {
                direct(&a, &b, format!("m{i}").as_bytes(), 100 + i).verify().unwrap()
            } else {
                direct(&b, &a, format!("m{i}").as_bytes(), 100 + i).verify().unwrap()
            }
        })
        .collect();
    for m in &msgs {
        store.put_message(m, State::Received).unwrap();
    }
    // Another conversation must not leak into this one.
    store
        .put_message(&direct(&a, &c, b"other", 105).verify().unwrap(), State::Sent)
        .unwrap();
    // Revoke message 12 (sent by a), burn message 13 (sent by b to a, burned by a).
    store.apply_tombstone(&revoke(&a, &msgs[12]).verify().unwrap()).unwrap();
    let burn = burn(&a, &msgs[13]).verify().unwrap();
    store.apply_tombstone(&burn).unwrap();

    let mut all = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let page = store.history(&conv(&a, &b), before.as_ref(), 10).unwrap();
        pages += 1;
        all.extend(page.entries.clone());
        match page.next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<MessageId> = msgs.iter().rev().map(|m| m.id()).collect();
    assert_eq!(all.iter().map(Entry::id).collect::<Vec<_>>(), expected);
    let markers: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Entry::Tombstone(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(markers, vec![24 - 13, 24 - 12]);
    // Paging from a tombstoned id works too.
    let after_marker = store.history(&conv(&a, &b), Some(&msgs[13].id()), 2).unwrap();
    assert_eq!(ids(&after_marker), vec![msgs[12].id(), msgs[11].id()]);
    // Unknown cursor and bad limits are typed errors.
    let unknown = MessageId::from_bytes([9; 32]);
    assert_eq!(
        store.history(&conv(&a, &b), Some(&unknown), 5).unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        store.history(&conv(&a, &b), None, 0).unwrap_err().code(),
        Code::BadParameters
    );
    assert_eq!(
        store.history(&conv(&a, &b), None, 501).unwrap_err().code(),
        Code::BadParameters
    );
    // A cursor from another conversation is not found in this one.
    let other = store.history(&conv(&a, &c), None, 5).unwrap();
    assert_eq!(
        store
            .history(&conv(&a, &b), Some(&other.entries[0].id()), 5)
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[test]
fn room_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = key(1);
    let room = RoomId::new("general").unwrap();
    let m = room_message(&a, "general", b"hello room", 5).verify().unwrap();
    store.put_message(&m, State::Received).unwrap();
    let page = store.history(&Conversation::Room(room), None, 10).unwrap();
    assert_eq!(ids(&page), vec![m.id()]);
    assert!(store
        .history(&Conversation::Room(RoomId::new("generall").unwrap()), None, 10)
        .unwrap()
        .entries
        .is_empty());
}

#[test]
fn state_and_read_marks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (key(1), key(2));
    let m = direct(&a, &b, b"hi", 10).verify().unwrap();
    store.put_message(&m, State::Sent).unwrap();
    assert!(store.set_state(&m.id(), State::Delivered).unwrap());
    assert_eq!(store.message(&m.id()).unwrap().unwrap().state, State::Delivered);
    let read = store.mark_read(&m.id(), 77).unwrap().unwrap();
    assert_eq!(read.read_at, Some(77));
    // The first read time stands.
    assert_eq!(store.mark_read(&m.id(), 99).unwrap().unwrap().read_at, Some(77));
    assert!(!store
        .set_state(&MessageId::from_bytes([1; 32]), State::Delivered)
        .unwrap());
}

#[test]
fn burn_deadlines_and_rooms_persist_and_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (key(1), key(2));
    let m = Message::sign(
        &a,
        Recipient::Account(b.account_id()),
        b"ephemeral".to_vec(),
        10,
        Some(8),
    )
    .unwrap();
    let plain = direct(&a, &b, b"plain", 11).verify().unwrap();
    let room = RoomId::new("team").unwrap();
    {
        let store = open(dir.path());
        store.put_message(&m, State::Received).unwrap();
        store.put_message(&plain, State::Received).unwrap();
        store.mark_read(&m.id(), 1_000).unwrap();
        store.mark_read(&plain.id(), 1_000).unwrap();
        store.set_room(&room, true).unwrap();
        store.set_room(&RoomId::new("gone").unwrap(), true).unwrap();
        store.set_room(&RoomId::new("gone").unwrap(), false).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.burn_deadlines().unwrap(), vec![(9_000, m.id())]);
    assert_eq!(store.rooms().unwrap(), vec![room]);
    let burn = burn(&b, &m).verify().unwrap();
    store.apply_tombstone(&burn).unwrap();
    assert!(store.burn_deadlines().unwrap().is_empty());
}

#[test]
fn restart_keeps_messages_tombstones_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (key(1), key(2));
    let kept = direct(&a, &b, b"keep me", 10).verify().unwrap();
    let gone = direct(&a, &b, b"revoke me", 11).verify().unwrap();
    {
        let store = open(dir.path());
        store.put_message(&kept, State::Sent).unwrap();
        store.put_message(&gone, State::Sent).unwrap();
        store.set_state(&kept.id(), State::Delivered).unwrap();
        store.apply_tombstone(&revoke(&a, &gone).verify().unwrap()).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.message(&kept.id()).unwrap().unwrap().state, State::Delivered);
    assert!(store.tombstone(&gone.id()).unwrap().is_some());
    assert_eq!(
        store.put_message(&gone, State::Received).unwrap_err().code(),
        Code::Tombstoned
    );
    assert_eq!(store.history(&conv(&a, &b), None, 10).unwrap().entries.len(), 2);
}

#[test]
fn concurrent_writers_never_leave_a_body_behind_a_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let (a, b) = (key(1), key(2));
    let msgs: Arc<Vec<_>> = Arc::new(
        (0..400u64)
            .map(|i| direct(&a, &b, format!("c{i}").as_bytes(), i).verify().unwrap())
            .collect(),
    );
    let revokes: Arc<Vec<_>> = Arc::new(
        msgs.iter()
            .step_by(2)
            .map(|m| revoke(&a, m).verify().unwrap())
            .collect(),
    );
    let mut threads = Vec::new();
    for t in 0..4 {
        let (store, msgs, revokes) = (store.clone(), msgs.clone(), revokes.clone());
        threads.push(std::thread::spawn(move || {
            // Writers go forwards and backwards so puts and tombstones interleave.
            if t % 2 == 0 {
                for m in msgs.iter() {
                    let _ = store.put_message(m, State::Received);
                }
            } else {
                for r in revokes.iter().rev() {
                    store.apply_tombstone(r).unwrap();
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    for (i, m) in msgs.iter().enumerate() {
        let body = store.message(&m.id()).unwrap();
        let tomb = store.tombstone(&m.id()).unwrap();
        if i % 2 == 0 {
            assert!(body.is_none() && tomb.is_some(), "message {i} survived its revoke");
        } else {
            assert!(body.is_some() && tomb.is_none(), "message {i} lost");
        }
    }
    // History: every kept message, and a marker only for a revoke that came after its message
    // (a tombstone for a direct message never held marks nothing).
    let page = store.history(&conv(&a, &b), None, 500).unwrap();
    let kept = page.entries.iter().filter(|e| matches!(e, Entry::Message(_))).count();
    assert_eq!(kept, 200);
    assert!(page.entries.len() <= 400);
}

#[test]
fn corrupt_and_oversized_values_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = MessageId::from_bytes([5; 32]);
    store
        .raw_put_for_tests(Cf::Messages, id.as_bytes(), b"\x01garbage")
        .unwrap();
    assert_eq!(store.message(&id).unwrap_err().code(), Code::StorageFailure);
    let huge = vec![1u8; tim_protocol::MAX_FRAME_LEN + 10];
    store.raw_put_for_tests(Cf::Tombstones, id.as_bytes(), &huge).unwrap();
    let err = store.tombstone(&id).unwrap_err();
    assert_eq!(err.code(), Code::StorageFailure);
    assert!(err.to_string().contains("over the limit"), "{err}");
    assert_eq!(store.entry(&id).unwrap_err().code(), Code::StorageFailure);
}

/// Set by `crash_keeps_acknowledged_writes` for its child: the database directory to write to.
const CRASH_DIR_VAR: &str = "TIM_CRASH_DIR";

/// Child half of `crash_keeps_acknowledged_writes`, which runs it in a child process: writes,
/// reports each acknowledged id on stdout, then aborts without closing the database. Run by
/// itself it would prove nothing, so it fails.
#[test]
#[ignore = "only the child process of crash_keeps_acknowledged_writes; fails when run by itself"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR_VAR) else {
        panic!("crash_child runs only as the child of crash_keeps_acknowledged_writes, which sets {CRASH_DIR_VAR}");
    };
    let store = open(Path::new(&dir));
    let (a, b) = (key(1), key(2));
    for i in 0..200u64 {
        let m = direct(&a, &b, format!("crash {i}").as_bytes(), i).verify().unwrap();
        store.put_message(&m, State::Received).unwrap();
        if i % 10 == 0 {
            store.apply_tombstone(&revoke(&a, &m).verify().unwrap()).unwrap();
        }
        println!("ACK {}", m.id());
    }
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::process::abort();
}

#[test]
fn crash_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CRASH_DIR_VAR, dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child must die by abort");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        // SIGABRT: the child reached its abort, rather than failing or finding no test to run.
        assert_eq!(
            out.status.signal(),
            Some(6),
            "child status {:?}, stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let acked: Vec<MessageId> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once("ACK ").map(|(_, id)| id))
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        acked.len(),
        200,
        "child output: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = open(dir.path());
    for (i, id) in acked.iter().enumerate() {
        if i % 10 == 0 {
            assert!(store.tombstone(id).unwrap().is_some(), "tombstone {i} lost");
            assert!(store.message(id).unwrap().is_none());
        } else {
            assert!(store.message(id).unwrap().is_some(), "message {i} lost");
        }
    }
}

#[test]
fn outbox_is_atomic_with_the_message_bounded_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (key(1), key(2), key(3));
    let config = || Config {
        outbox_per_recipient: 2,
        outbox_total: 3,
        ..Config::default()
    };
    let m1 = direct(&a, &b, b"one", 1).verify().unwrap();
    let m2 = direct(&a, &b, b"two", 2).verify().unwrap();
    let m3 = direct(&a, &b, b"three", 3).verify().unwrap();
    {
        let store = Store::open(dir.path(), config()).unwrap();
        store.put_outgoing(&m1, outgoing(&b, &m1, OutKind::Message)).unwrap();
        store.put_outgoing(&m2, outgoing(&b, &m2, OutKind::Message)).unwrap();
        // Full for b: refused, and nothing written.
        let err = store
            .put_outgoing(&m3, outgoing(&b, &m3, OutKind::Message))
            .unwrap_err();
        assert_eq!(err.code(), Code::Overloaded);
        assert!(store.message(&m3.id()).unwrap().is_none());
        assert_eq!(store.outbox_len(), 2);
    }
    let store = Store::open(dir.path(), config()).unwrap();
    assert_eq!(store.outbox_len(), 2);
    let ids: Vec<MessageId> = store.outbox().unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&m1.id()) && ids.contains(&m2.id()));
    // Still full for b after the restart; another recipient fits until the total limit.
    let m4 = direct(&a, &c, b"four", 4).verify().unwrap();
    store.put_outgoing(&m4, outgoing(&c, &m4, OutKind::Message)).unwrap();
    let m5 = direct(&a, &c, b"five", 5).verify().unwrap();
    assert_eq!(
        store
            .put_outgoing(&m5, outgoing(&c, &m5, OutKind::Message))
            .unwrap_err()
            .code(),
        Code::Overloaded
    );
    // Delivered: the entry goes and the message moves to `delivered`, together.
    assert!(store.outbox_done(&m1.id(), OutKind::Message, true).unwrap());
    assert_eq!(store.message(&m1.id()).unwrap().unwrap().state, State::Delivered);
    assert!(!store.outbox_done(&m1.id(), OutKind::Message, true).unwrap());
    // Revoking a queued message drops it from the outbox; the revoke is queued instead.
    let revoke = revoke(&a, &m2).verify().unwrap();
    store
        .apply_tombstone_outgoing(&revoke, outgoing(&b, &m2, OutKind::Control))
        .unwrap();
    let left: Vec<(MessageId, OutKind)> = store
        .outbox()
        .unwrap()
        .into_iter()
        .map(|(id, o)| (id, o.kind))
        .collect();
    assert!(left.contains(&(m2.id(), OutKind::Control)));
    assert!(!left.contains(&(m2.id(), OutKind::Message)));
    assert_eq!(store.outbox_len(), 2);
}

#[test]
fn many_outbox_entries_finish_in_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (key(1), key(2));
    let ms: Vec<_> = (0..4u8)
        .map(|i| direct(&a, &b, &[i], u64::from(i)).verify().unwrap())
        .collect();
    for m in &ms {
        store.put_outgoing(m, outgoing(&b, m, OutKind::Message)).unwrap();
    }
    assert_eq!(store.outbox_len(), 4);
    let done = store
        .outbox_done_many(&[
            (ms[0].id(), OutKind::Message, true),
            (ms[1].id(), OutKind::Message, false), // given up
            (ms[0].id(), OutKind::Message, true),  // the same entry twice
            (ms[2].id(), OutKind::Control, true),  // no such entry
        ])
        .unwrap();
    assert_eq!(done, vec![true, true, false, false]);
    assert_eq!(store.outbox_len(), 2);
    assert_eq!(store.message(&ms[0].id()).unwrap().unwrap().state, State::Delivered);
    assert_eq!(store.message(&ms[1].id()).unwrap().unwrap().state, State::Sent);
    let left: Vec<MessageId> = store.outbox().unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&ms[2].id()) && left.contains(&ms[3].id()));
    // Nothing to do is fine.
    assert_eq!(store.outbox_done_many(&[]).unwrap(), Vec::<bool>::new());
}

#[test]
fn room_log_serves_tombstones_instead_of_revoked_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = key(1);
    let room = RoomId::new("log").unwrap();
    let msgs: Vec<_> = (0..5u64)
        .map(|i| room_message(&a, "log", format!("r{i}").as_bytes(), i).verify().unwrap())
        .collect();
    for m in &msgs {
        store.put_message(m, State::Received).unwrap();
    }
    store.apply_tombstone(&revoke(&a, &msgs[1]).verify().unwrap()).unwrap();
    // Another room's traffic does not leak in.
    let other = room_message(&a, "logx", b"x", 9).verify().unwrap();
    store.put_message(&other, State::Received).unwrap();

    let describe = |frames: &[Vec<u8>]| -> Vec<String> {
        frames
            .iter()
            .map(|f| match decode::<Envelope>(f).unwrap() {
                Envelope::Message(m) => String::from_utf8(m.body).unwrap(),
                Envelope::Control(c) => format!("revoke {}", c.target.id() == msgs[1].id()),
                Envelope::Receipt(r) => format!("receipt {}", r.target),
                Envelope::Contact(c) => format!("contact {}", c.from),
                Envelope::Stream(s) => format!("stream {}", s.from),
                Envelope::Presence(p) => format!("presence {}", p.from),
                other => format!("{other:?}"),
            })
            .collect()
    };
    let all = store.room_log(&room, 0, 100, 1 << 20, 0).unwrap();
    assert_eq!(describe(&all.frames), ["r0", "r2", "r3", "r4", "revoke true"]);
    assert!(!all.more);
    // Paging: limit 2, then from the cursor.
    let p1 = store.room_log(&room, 0, 2, 1 << 20, 0).unwrap();
    assert_eq!(describe(&p1.frames), ["r0", "r2"]);
    assert!(p1.more);
    let p2 = store.room_log(&room, p1.next, 100, 1 << 20, 0).unwrap();
    assert_eq!(describe(&p2.frames), ["r3", "r4", "revoke true"]);
    // Nothing new after the end.
    let p3 = store.room_log(&room, p2.next, 100, 1 << 20, 0).unwrap();
    assert!(p3.frames.is_empty() && !p3.more);
    // A newcomer gets the newest `window` entries only.
    let windowed = store.room_log(&room, 0, 100, 1 << 20, 2).unwrap();
    assert_eq!(describe(&windowed.frames), ["r4", "revoke true"]);
    // Cursors per room and peer.
    assert_eq!(store.sync_cursor(&room, b"peer-1").unwrap(), 0);
    store.set_sync_cursor(&room, b"peer-1", p2.next).unwrap();
    assert_eq!(store.sync_cursor(&room, b"peer-1").unwrap(), p2.next);
    assert_eq!(store.sync_cursor(&room, b"peer-2").unwrap(), 0);
}

#[test]
fn known_many_reports_messages_and_tombstones_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (key(1), key(2));
    let stored = direct(&a, &b, b"kept", 1).verify().unwrap();
    let revoked = direct(&a, &b, b"gone", 2).verify().unwrap();
    let never_seen_target = direct(&a, &b, b"revoked before it came", 3).verify().unwrap();
    let unknown = direct(&a, &b, b"unknown", 4).verify().unwrap();
    store.put_message(&stored, State::Received).unwrap();
    store.put_message(&revoked, State::Received).unwrap();
    store.apply_tombstone(&revoke(&a, &revoked).verify().unwrap()).unwrap();
    store
        .apply_tombstone(&revoke(&a, &never_seen_target).verify().unwrap())
        .unwrap();
    let ids = [
        unknown.id(),
        stored.id(),
        revoked.id(),
        never_seen_target.id(),
        unknown.id(),
    ];
    assert_eq!(store.known_many(&ids).unwrap(), vec![false, true, true, true, false]);
    assert_eq!(store.known_many(&[]).unwrap(), Vec::<bool>::new());
}
