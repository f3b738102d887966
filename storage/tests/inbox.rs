//! The inbox: every conversation, newest first, with its newest entry and its unread count, kept
//! right by every write that changes a history or a read mark, across restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use tim_protocol::{
    test_util::{burn, direct, key, revoke, room_message},
    AccountKey, Message, Recipient, RoomId,
};
use tim_storage::{Config, Conversation, Entry, InboxItem, OutKind, State, Store};

fn open(dir: &Path, config: Config) -> Store {
    Store::open(dir, config).unwrap()
}

fn received(store: &Store, m: &Message) {
    store
        .put_message(&m.clone().verify().unwrap(), State::Received)
        .unwrap();
}

fn all(store: &Store) -> Vec<InboxItem> {
    store.inbox(None, 200).unwrap().items
}

fn summary(store: &Store) -> Vec<(Conversation, u32, u64)> {
    all(store)
        .into_iter()
        .map(|i| (i.conversation, i.unread, i.updated_at))
        .collect()
}

fn body_of(entry: &Entry) -> Option<Vec<u8>> {
    match entry {
        Entry::Message(m) => Some(m.message.body.clone()),
        Entry::Tombstone(_) => None,
    }
}

#[test]
fn conversations_come_newest_first_with_their_unread_counts_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (me, alice, carol) = (key(1), key(2), key(3));
    let lobby = Conversation::Room(RoomId::new("lobby").unwrap());
    let with_alice = Conversation::direct(me.account_id(), alice.account_id());
    let with_carol = Conversation::direct(me.account_id(), carol.account_id());
    {
        let store = open(dir.path(), Config::default());
        assert!(all(&store).is_empty());
        received(&store, &direct(&alice, &me, b"a1", 1_000));
        received(&store, &direct(&alice, &me, b"a2", 1_100));
        received(&store, &room_message(&carol, "lobby", b"r1", 1_200));
        // What this account sends counts as activity, never as unread.
        let to_carol = direct(&me, &carol, b"c1", 1_300).verify().unwrap();
        store
            .put_outgoing(&to_carol, common::outgoing(&carol, to_carol.get(), OutKind::Message))
            .unwrap();
        // An older message arriving late is unread, but does not make its conversation newer.
        received(&store, &direct(&alice, &me, b"a0", 900));
        assert_eq!(
            summary(&store),
            vec![
                (with_carol.clone(), 0, 1_300),
                (lobby.clone(), 1, 1_200),
                (with_alice.clone(), 3, 1_100),
            ]
        );
        let newest = &all(&store)[2].last;
        assert_eq!(
            body_of(newest).as_deref(),
            Some(&b"a2"[..]),
            "the newest entry, not the latest arrival"
        );
    }
    let store = open(dir.path(), Config::default());
    assert_eq!(summary(&store)[2], (with_alice.clone(), 3, 1_100), "kept on disk");
    // A reply from alice moves her conversation to the top.
    received(&store, &direct(&alice, &me, b"a3", 1_400));
    assert_eq!(summary(&store)[0], (with_alice, 4, 1_400));
}

#[test]
fn reading_revoking_and_burning_lower_the_unread_count_and_never_leave_a_body_in_last() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    let (me, alice) = (key(1), key(2));
    let with_alice = Conversation::direct(me.account_id(), alice.account_id());
    let (m1, m2, m3) = (
        direct(&alice, &me, b"one", 1_000),
        direct(&alice, &me, b"two", 1_100),
        direct(&alice, &me, b"pin 4821", 1_200),
    );
    for m in [&m1, &m2, &m3] {
        received(&store, m);
    }
    assert_eq!(store.unread(&with_alice).unwrap(), 3);
    // Read once: one fewer; read again: no change.
    store.mark_read(&m1.id(), 5_000).unwrap();
    store.mark_read(&m1.id(), 6_000).unwrap();
    assert_eq!(store.unread(&with_alice).unwrap(), 2);
    // The newest is revoked unread: one fewer, and `last` is its marker, without the body.
    store.apply_tombstone(&revoke(&alice, &m3).verify().unwrap()).unwrap();
    assert_eq!(store.unread(&with_alice).unwrap(), 1);
    let last = &all(&store)[0].last;
    assert!(matches!(last, Entry::Tombstone(t) if t.target() == m3.id()));
    assert_eq!(body_of(last), None);
    // A read message burned: no change (it was not unread). The unread one burned: zero.
    store.apply_tombstone(&burn(&me, &m1).verify().unwrap()).unwrap();
    assert_eq!(store.unread(&with_alice).unwrap(), 1);
    store.apply_tombstone(&burn(&me, &m2).verify().unwrap()).unwrap();
    assert_eq!(store.unread(&with_alice).unwrap(), 0);
    // A tombstone applied twice changes nothing.
    store.apply_tombstone(&burn(&me, &m2).verify().unwrap()).unwrap();
    assert_eq!(store.unread(&with_alice).unwrap(), 0);
}

#[test]
fn marking_a_conversation_read_skips_burn_after_reading_and_other_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    let (me, alice, carol) = (key(1), key(2), key(3));
    let with_alice = Conversation::direct(me.account_id(), alice.account_id());
    let with_carol = Conversation::direct(me.account_id(), carol.account_id());
    for i in 0..5u64 {
        received(&store, &direct(&alice, &me, format!("a{i}").as_bytes(), 1_000 + i));
    }
    let sealed = Message::sign(
        &alice,
        Recipient::Account(me.account_id()),
        b"sealed".to_vec(),
        2_000,
        Some(10),
    )
    .unwrap()
    .into_inner();
    received(&store, &sealed);
    received(&store, &direct(&carol, &me, b"c", 1_500));
    assert_eq!(store.unread(&with_alice).unwrap(), 6);
    assert_eq!(store.mark_conversation_read(&with_alice, 9_000).unwrap(), 5);
    assert_eq!(
        store.unread(&with_alice).unwrap(),
        1,
        "the burn-after-reading message waits to be opened"
    );
    assert_eq!(
        store.unread(&with_carol).unwrap(),
        1,
        "another conversation is untouched"
    );
    assert!(store.burn_deadlines().unwrap().is_empty(), "no burn timer was started");
    // Opening the sealed one reads it.
    store.mark_read(&sealed.id(), 9_500).unwrap();
    assert_eq!(store.unread(&with_alice).unwrap(), 0);
    assert_eq!(store.mark_conversation_read(&with_alice, 9_900).unwrap(), 0);
}

#[test]
fn pages_of_conversations_follow_each_other_without_gaps_or_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    let me = key(1);
    let peers: Vec<AccountKey> = (10..35).map(key).collect();
    for (i, peer) in peers.iter().enumerate() {
        received(&store, &direct(peer, &me, b"hi", 1_000 + i as u64));
    }
    let mut seen = Vec::new();
    let mut before: Option<Vec<u8>> = None;
    loop {
        let page = store.inbox(before.as_deref(), 7).unwrap();
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|i| i.updated_at));
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    let expected: Vec<u64> = (0..25u64).rev().map(|i| 1_000 + i).collect();
    assert_eq!(seen, expected);
    assert!(store.inbox(None, 0).is_err());
    assert!(store.inbox(None, 201).is_err());
    assert!(
        store.inbox(Some(b"junk"), 10).is_err(),
        "a cursor that is not one is refused"
    );
}

#[test]
fn an_evicted_stranger_message_leaves_the_unread_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        stranger_messages_total: 2,
        ..Config::default()
    };
    let store = open(dir.path(), config);
    let (me, s1, s2) = (key(1), key(2), key(3));
    received(&store, &direct(&s1, &me, b"first", 1_000));
    received(&store, &direct(&s1, &me, b"second", 1_100));
    // A third stranger message evicts the oldest stored (both of s1's may share a millisecond,
    // so which of them goes is not fixed).
    received(&store, &direct(&s2, &me, b"third", 1_200));
    let with_s1 = Conversation::direct(me.account_id(), s1.account_id());
    assert_eq!(store.unread(&with_s1).unwrap(), 1);
    let s1_item = all(&store).into_iter().find(|i| i.conversation == with_s1).unwrap();
    let left = body_of(&s1_item.last).unwrap();
    assert!(left == b"first" || left == b"second", "{left:?}");
    let page = store.history(&with_s1, None, 10).unwrap();
    assert_eq!(
        page.entries.len(),
        1,
        "one of the two was evicted, with its history entry"
    );
}

#[test]
fn a_conversation_whose_only_message_is_dated_zero_is_still_listed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Config::default());
    let (me, alice) = (key(1), key(2));
    received(&store, &direct(&alice, &me, b"from the epoch", 0));
    let items = all(&store);
    assert_eq!(items.len(), 1);
    assert_eq!((items[0].unread, items[0].updated_at), (1, 0));
}
