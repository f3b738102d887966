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

/// Stores a room message from `from` as received; waits past the millisecond it was stored in,
/// so the next one is strictly younger (age is the time stored).
fn received_in_room(store: &Store, from: &AccountKey, room: &str, body: &[u8], sent_at: u64) -> Message {
    let m = tim_protocol::test_util::room_message(from, room, body, sent_at);
    let outcome = store
        .put_message(&m.clone().verify().unwrap(), State::Received)
        .unwrap();
    assert_eq!(outcome, PutOutcome::Stored);
    std::thread::sleep(std::time::Duration::from_millis(2));
    m
}

#[test]
fn a_room_keeps_a_window_of_its_strangers_newest_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (me, friend) = (key(1), key(30));
    let (room, other_room) = ("open", "elsewhere");
    let room_id = tim_protocol::RoomId::new(room).unwrap();
    let store = open_rooms(dir.path(), 3);
    // An account this one wrote to never counts as a stranger.
    let reply = direct(&me, &friend, b"hello friend", 1).verify().unwrap();
    store
        .put_outgoing(&reply, outgoing(&friend, &reply, OutKind::Message))
        .unwrap();
    let from_friend = received_in_room(&store, &friend, room, b"from a friend", 2);
    let flood: Vec<Message> = (0..5)
        .map(|i| {
            received_in_room(
                &store,
                &key(10 + i),
                room,
                format!("flood {i}").as_bytes(),
                10 + u64::from(i),
            )
        })
        .collect();
    // The room holds its 3 newest strangers' messages: the 2 oldest are deleted, out of the
    // history and the room's log, and queued for the shredder.
    for (i, m) in flood.iter().enumerate() {
        assert_eq!(store.message(&m.id()).unwrap().is_some(), i >= 2, "flood message {i}");
    }
    assert!(store.message(&from_friend.id()).unwrap().is_some());
    let history = store.history(&Conversation::Room(room_id.clone()), None, 100).unwrap();
    assert_eq!(history.entries.len(), 4, "the friend's and the 3 newest");
    let log = store.room_log(&room_id, 0, 100, 1 << 20, 0).unwrap();
    assert_eq!(log.frames.len(), 4);
    assert_eq!(store.pending_shreds(), 2);
    store.shred_now().unwrap();
    // Another room has a window of its own.
    let elsewhere = received_in_room(&store, &key(20), other_room, b"elsewhere", 20);
    assert!(store.message(&flood[2].id()).unwrap().is_some());
    // A revoked stranger message frees its place: the next one evicts nothing.
    store
        .apply_tombstone(&revoke(&key(12), &flood[2]).verify().unwrap())
        .unwrap();
    received_in_room(&store, &key(21), room, b"after the revoke", 30);
    assert!(store.message(&flood[3].id()).unwrap().is_some());
    // The counts come back at open: one more evicts the oldest left.
    drop(store);
    let store = open_rooms(dir.path(), 3);
    received_in_room(&store, &key(22), room, b"after a restart", 40);
    assert!(
        store.message(&flood[3].id()).unwrap().is_none(),
        "the oldest left was kept"
    );
    assert!(store.message(&flood[4].id()).unwrap().is_some());
    assert!(store.message(&elsewhere.id()).unwrap().is_some());
    assert!(store.message(&from_friend.id()).unwrap().is_some());
}
