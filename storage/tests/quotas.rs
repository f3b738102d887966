//! What strangers can make a node store: direct messages from accounts this node's account never
//! wrote to, and tombstones for messages it never held, each capped per account (refused with
//! `5104`) and in total (the oldest evicted), across restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::outgoing;

use std::path::Path;

use tim_protocol::{
    test_util::{direct, key, revoke},
    AccountKey, Code, Message,
};
use tim_storage::{Config, Conversation, OutKind, PutOutcome, State, Store, TombstoneOutcome};

fn open(dir: &Path, each: usize, total: usize) -> Store {
    let config = Config {
        stranger_messages_each: each,
        stranger_messages_total: total,
        pending_tombstones_each: each,
        pending_tombstones_total: total,
        ..Config::default()
    };
    Store::open(dir, config).unwrap()
}

fn received(store: &Store, from: &AccountKey, to: &AccountKey, i: u64) -> tim_storage::Result<PutOutcome> {
    let m = direct(from, to, format!("from a stranger {i}").as_bytes(), i)
        .verify()
        .unwrap();
    store.put_message(&m, State::Received)
}

#[test]
fn a_stranger_gets_its_share_and_no_more_until_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (me, stranger) = (key(1), key(2));
    let store = open(dir.path(), 3, 100);
    for i in 0..3 {
        assert_eq!(received(&store, &stranger, &me, i).unwrap(), PutOutcome::Stored);
    }
    let refused = received(&store, &stranger, &me, 3).unwrap_err();
    assert_eq!(refused.code(), Code::Overloaded);
    let conversation = Conversation::direct(me.account_id(), stranger.account_id());
    assert_eq!(
        store.history(&conversation, None, 10).unwrap().entries.len(),
        3,
        "the refused one was stored"
    );
    // Still so after a restart: the counts come back from disk.
    drop(store);
    let store = open(dir.path(), 3, 100);
    assert_eq!(
        received(&store, &stranger, &me, 4).unwrap_err().code(),
        Code::Overloaded
    );
    // Answering makes the account known: it is no longer held to a stranger's share.
    let reply = direct(&me, &stranger, b"hi", 10).verify().unwrap();
    store
        .put_outgoing(&reply, outgoing(&stranger, &reply, OutKind::Message))
        .unwrap();
    for i in 5..10 {
        assert_eq!(received(&store, &stranger, &me, i).unwrap(), PutOutcome::Stored);
    }
    drop(store);
    let store = open(dir.path(), 3, 100);
    assert_eq!(
        received(&store, &stranger, &me, 11).unwrap(),
        PutOutcome::Stored,
        "known after a restart"
    );
}

#[test]
fn a_destroyed_stranger_message_frees_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let (me, stranger) = (key(1), key(2));
    let store = open(dir.path(), 2, 100);
    let first = direct(&stranger, &me, b"first", 1).verify().unwrap();
    store.put_message(&first, State::Received).unwrap();
    received(&store, &stranger, &me, 2).unwrap();
    assert_eq!(
        received(&store, &stranger, &me, 3).unwrap_err().code(),
        Code::Overloaded
    );
    store
        .apply_tombstone(&revoke(&stranger, &first).verify().unwrap())
        .unwrap();
    assert_eq!(received(&store, &stranger, &me, 4).unwrap(), PutOutcome::Stored);
}

#[test]
fn when_strangers_fill_the_total_the_oldest_stranger_message_goes() {
    let dir = tempfile::tempdir().unwrap();
    let me = key(1);
    let store = open(dir.path(), 10, 5);
    let strangers: Vec<AccountKey> = (10..16).map(key).collect();
    let oldest = direct(&strangers[0], &me, b"oldest", 1).verify().unwrap();
    store.put_message(&oldest, State::Received).unwrap();
    // Age is the time stored, to the millisecond: make the first one strictly the oldest.
    std::thread::sleep(std::time::Duration::from_millis(2));
    for (i, s) in strangers[1..5].iter().enumerate() {
        received(&store, s, &me, 2 + i as u64).unwrap();
    }
    // Full: the sixth stranger's message gets in, and the oldest is deleted and queued for the
    // shredder.
    assert_eq!(received(&store, &strangers[5], &me, 9).unwrap(), PutOutcome::Stored);
    assert!(
        store.message(&oldest.id()).unwrap().is_none(),
        "the oldest is still held"
    );
    let conversation = Conversation::direct(me.account_id(), strangers[0].account_id());
    assert!(store.history(&conversation, None, 10).unwrap().entries.is_empty());
    assert_eq!(store.pending_shreds(), 1);
    store.shred_now().unwrap();
    // A contact's messages are never evicted, whatever strangers send.
    let friend = key(30);
    let reply = direct(&me, &friend, b"hello friend", 20).verify().unwrap();
    store
        .put_outgoing(&reply, outgoing(&friend, &reply, OutKind::Message))
        .unwrap();
    let from_friend = direct(&friend, &me, b"from a friend", 21).verify().unwrap();
    store.put_message(&from_friend, State::Received).unwrap();
    for (i, s) in (40..60).map(key).enumerate() {
        received(&store, &s, &me, 30 + i as u64).unwrap();
    }
    assert!(store.message(&from_friend.id()).unwrap().is_some());
}

#[test]
fn tombstones_for_never_seen_messages_are_capped_and_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    let me = key(1);
    let store = open(dir.path(), 100, 150);
    // A stranger signs headers to me for messages never sent, and revokes them.
    let stranger = key(2);
    let never_sent: Vec<Message> = (0..101).map(|i| direct(&stranger, &me, b"never sent", i)).collect();
    for (i, m) in never_sent[..100].iter().enumerate() {
        if i == 1 {
            // Age is the time applied, to the millisecond: make the first one strictly the oldest.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let applied = store.apply_tombstone(&revoke(&stranger, m).verify().unwrap()).unwrap();
        assert_eq!(applied, TombstoneOutcome::Applied { had_body: false });
    }
    let refused = store
        .apply_tombstone(&revoke(&stranger, &never_sent[100]).verify().unwrap())
        .unwrap_err();
    assert_eq!(refused.code(), Code::Overloaded);
    assert!(!store.is_tombstoned(&never_sent[100].id()).unwrap());
    // Nothing of it is in my history.
    let conversation = Conversation::direct(me.account_id(), stranger.account_id());
    assert!(store.history(&conversation, None, 500).unwrap().entries.is_empty());
    // A pending tombstone still does its job: the message, if it comes, is refused.
    assert_eq!(
        store
            .put_message(&never_sent[0].clone().verify().unwrap(), State::Received)
            .unwrap_err()
            .code(),
        Code::Tombstoned
    );
    // Other signers fill the total: the oldest pending tombstones make room, one each.
    let other = key(3);
    for i in 0..60 {
        let m = direct(&other, &me, b"never sent either", i);
        store.apply_tombstone(&revoke(&other, &m).verify().unwrap()).unwrap();
    }
    assert!(!store.is_tombstoned(&never_sent[0].id()).unwrap(), "the oldest stayed");
    assert!(
        store.is_tombstoned(&never_sent[99].id()).unwrap(),
        "more than the oldest went"
    );
    // The counts survive a restart.
    drop(store);
    let store = open(dir.path(), 100, 150);
    let one_more = direct(&other, &me, b"over the share", 1_000);
    store
        .apply_tombstone(&revoke(&other, &one_more).verify().unwrap())
        .unwrap();
    let another = direct(&key(4), &me, b"x", 1);
    store
        .apply_tombstone(&revoke(&key(4), &another).verify().unwrap())
        .unwrap();
    assert!(store.is_tombstoned(&another.id()).unwrap());
}

fn open_rooms(dir: &Path, per_room: usize) -> Store {
    let config = Config {
        room_stranger_messages: per_room,
        ..Config::default()
    };
    Store::open(dir, config).unwrap()
}

/// Offers a room message from `from` as received; returns it and what became of it.
fn offer_in_room(store: &Store, from: &AccountKey, room: &str, body: &[u8], sent_at: u64) -> (Message, PutOutcome) {
    let m = tim_protocol::test_util::room_message(from, room, body, sent_at);
    let outcome = store
        .put_message(&m.clone().verify().unwrap(), State::Received)
        .unwrap();
    (m, outcome)
}

fn received_in_room(store: &Store, from: &AccountKey, room: &str, body: &[u8], sent_at: u64) -> Message {
    let (m, outcome) = offer_in_room(store, from, room, body, sent_at);
    assert_eq!(outcome, PutOutcome::Stored);
    m
}

/// The entries of `room`'s log on disk (the store closed), read with RocksDB itself: the log
/// page API skips entries whose message is gone, so it cannot show one left behind.
fn room_log_entries(dir: &Path, room: &str) -> usize {
    let names = tim_storage::Cf::ALL.map(|cf| cf.name());
    let db = rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), dir, names, false).unwrap();
    let log = db.cf_handle(tim_storage::Cf::RoomLog.name()).unwrap();
    let mut prefix = vec![2u8, room.len() as u8];
    prefix.extend_from_slice(room.as_bytes());
    db.prefix_iterator_cf(log, &prefix)
        .map(|item| item.unwrap())
        .take_while(|(key, _)| key.starts_with(&prefix))
        .count()
}

#[test]
fn a_room_keeps_a_window_of_its_strangers_newest_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (me, friend, later_friend) = (key(1), key(30), key(31));
    let (room, other_room) = ("open", "elsewhere");
    let room_id = tim_protocol::RoomId::new(room).unwrap();
    let conversation = Conversation::Room(room_id.clone());
    let store = open_rooms(dir.path(), 3);
    // An account this one wrote to never counts as a stranger.
    let reply = direct(&me, &friend, b"hello friend", 1).verify().unwrap();
    store
        .put_outgoing(&reply, outgoing(&friend, &reply, OutKind::Message))
        .unwrap();
    let from_friend = received_in_room(&store, &friend, room, b"from a friend", 2);
    // In one batch, as a sync page brings them: 5 strangers' messages (sent at 10..15), over
    // the room's share of 3.
    let flood: Vec<Message> = (0..5u8)
        .map(|i| {
            tim_protocol::test_util::room_message(
                &key(10 + i),
                room,
                format!("flood {i}").as_bytes(),
                10 + u64::from(i),
            )
        })
        .collect();
    let verified: Vec<_> = flood.iter().map(|m| m.clone().verify().unwrap()).collect();
    let batch: Vec<_> = verified.iter().map(|m| (m, State::Received)).collect();
    for outcome in store.put_messages(&batch).unwrap() {
        assert_eq!(outcome.unwrap(), PutOutcome::Stored);
    }
    // A batch evicts only what was on disk before it: all 5 are held, the room is over its
    // share, and the next message brings it back down.
    let newest = received_in_room(&store, &key(16), room, b"newest", 16);
    for (i, m) in flood.iter().enumerate() {
        assert_eq!(store.message(&m.id()).unwrap().is_some(), i >= 3, "flood message {i}");
    }
    assert!(store.message(&newest.id()).unwrap().is_some());
    assert!(store.message(&from_friend.id()).unwrap().is_some());
    assert_eq!(
        store.history(&conversation, None, 100).unwrap().entries.len(),
        4,
        "the friend's and 3 newest"
    );
    assert_eq!(
        store.unread(&conversation).unwrap(),
        4,
        "the evicted ones left the unread count"
    );
    assert_eq!(store.pending_shreds(), 3);
    store.shred_now().unwrap();
    // A member feeding back an evicted message, older than all the full room keeps: not kept.
    let refed = store.put_message(&verified[0], State::Received).unwrap();
    assert_eq!(refed, PutOutcome::Duplicate);
    assert!(
        store.message(&flood[0].id()).unwrap().is_none(),
        "an evicted message came back"
    );
    // A new message dated before the window is let go just the same.
    let (late, outcome) = offer_in_room(&store, &key(19), room, b"dated early", 11);
    assert_eq!(outcome, PutOutcome::Duplicate);
    assert!(store.message(&late.id()).unwrap().is_none());
    // Another room has a share of its own.
    let elsewhere = received_in_room(&store, &key(20), other_room, b"elsewhere", 20);
    assert!(store.message(&flood[3].id()).unwrap().is_some());
    // A revoked stranger message keeps its place as its tombstone, so posting and revoking in
    // turn is bounded too: the next message evicts the tombstone with its history marker.
    store
        .apply_tombstone(&revoke(&key(13), &flood[3]).verify().unwrap())
        .unwrap();
    let before = store.history(&conversation, None, 100).unwrap().entries.len();
    received_in_room(&store, &later_friend, room, b"after the revoke", 30);
    assert!(
        !store.is_tombstoned(&flood[3].id()).unwrap(),
        "the oldest entry, a tombstone, was kept"
    );
    assert!(store.message(&flood[4].id()).unwrap().is_some());
    assert_eq!(
        store.history(&conversation, None, 100).unwrap().entries.len(),
        before,
        "one message in, the marker out"
    );
    // A late copy of the revoked message is older than all the room keeps: not stored again.
    assert_eq!(
        store.put_message(&verified[3], State::Received).unwrap(),
        PutOutcome::Duplicate
    );
    assert!(store.message(&flood[3].id()).unwrap().is_none());
    // Its revoke delivered again (by sync or gossip) is not kept either.
    assert_eq!(
        store
            .apply_tombstone(&revoke(&key(13), &flood[3]).verify().unwrap())
            .unwrap(),
        TombstoneOutcome::Duplicate
    );
    assert!(!store.is_tombstoned(&flood[3].id()).unwrap());
    // Writing to an account releases its messages from the count: one more evicts nothing.
    let hello = direct(&me, &later_friend, b"hello", 31).verify().unwrap();
    store
        .put_outgoing(&hello, outgoing(&later_friend, &hello, OutKind::Message))
        .unwrap();
    received_in_room(&store, &key(22), room, b"after the reply", 40);
    assert!(store.message(&flood[4].id()).unwrap().is_some());
    // The counts come back at open: one more evicts the oldest left.
    drop(store);
    let store = open_rooms(dir.path(), 3);
    received_in_room(&store, &key(23), room, b"after a restart", 50);
    assert!(
        store.message(&flood[4].id()).unwrap().is_none(),
        "the oldest left was kept"
    );
    assert!(store.message(&newest.id()).unwrap().is_some());
    assert!(store.message(&elsewhere.id()).unwrap().is_some());
    assert!(store.message(&from_friend.id()).unwrap().is_some());
    // Nothing of the evicted ones is left in the room's log: of the 11 entries written (the
    // friend's, 5 flood, newest, the revoke, the later friend's and 2 more), the 5 evicted
    // messages' and the evicted tombstone's are gone.
    drop(store);
    assert_eq!(room_log_entries(dir.path(), room), 5);
}

#[test]
fn an_evicted_room_tombstone_for_a_message_never_held_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let stranger = key(2);
    let room = "open";
    let conversation = Conversation::Room(tim_protocol::RoomId::new(room).unwrap());
    let store = open(dir.path(), 100, 2);
    // Revokes of room messages this node never held: each leaves a marker in the room's history
    // and an entry in its log; the pending total is 2.
    let never: Vec<Message> = (0..3)
        .map(|i| tim_protocol::test_util::room_message(&stranger, room, b"never held", 100 + i))
        .collect();
    for m in &never {
        let applied = store.apply_tombstone(&revoke(&stranger, m).verify().unwrap()).unwrap();
        assert_eq!(applied, TombstoneOutcome::Applied { had_body: false });
        // Age is the time applied, to the millisecond.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // The oldest was evicted, with its marker and its log entry.
    assert!(!store.is_tombstoned(&never[0].id()).unwrap());
    assert!(store.is_tombstoned(&never[2].id()).unwrap());
    assert_eq!(store.history(&conversation, None, 100).unwrap().entries.len(), 2);
    drop(store);
    assert_eq!(room_log_entries(dir.path(), room), 2);
}
