//! Multi-node tests on 127.0.0.1 with temp dirs: DHT routing, direct and room messaging, revoke
//! and burn end to end, every permission case, forgeries, out-of-order control messages, burn
//! after reading, and restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tim_node::{
    protocol::{
        encode,
        test_util::{direct, key, revoke},
        AccountKey, Action, Code, Control, Envelope, Message, MessageId, Recipient, RoomId,
    },
    storage::Entry,
    Config, Conversation, Event, Events, Node,
};

/// Three nodes, B and C bootstrapped only from A; waits until C can route to B through the DHT.
struct Trio {
    _dirs: Vec<tempfile::TempDir>,
    a: (Node, Events),
    b: (Node, Events),
    c: (Node, Events),
}

async fn trio() -> Trio {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = start(dirs[0].path(), vec![]).await;
    let boot = addr(&a.0).await;
    let b = start(dirs[1].path(), vec![boot.clone()]).await;
    let c = start(dirs[2].path(), vec![boot]).await;
    let (bn, cn) = (b.0.clone(), c.0.clone());
    for (from, to) in [(&cn, &bn), (&bn, &cn)] {
        let target = to.account();
        eventually(
            "a route through the DHT",
            || async move { from.lookup(target).await.ok() },
        )
        .await;
    }
    Trio { _dirs: dirs, a, b, c }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_reaches_b_through_the_dht_and_revoke_is_seen_by_both() {
    let Trio {
        a,
        b: (b, mut b_ev),
        c: (c, mut c_ev),
        ..
    } = trio().await;
    assert_eq!(c.lookup(b.account()).await.unwrap(), b.peer_id());
    // Only A was given to B and C.
    assert!(a.0.status().await.unwrap().peers >= 2);

    let sent = c
        .send(Recipient::Account(b.account()), b"hello bob".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(sent.conversation, Conversation::Peer(b.account()));
    let got = expect_about(&mut b_ev, "message at B", Kind::Message, sent.mid).await;
    match got {
        Event::Message {
            from,
            body,
            conversation,
            ..
        } => {
            assert_eq!(from, c.account());
            assert_eq!(body, b"hello bob");
            assert_eq!(conversation, Conversation::Peer(c.account()));
        }
        other => panic!("{other:?}"),
    }
    expect_about(&mut c_ev, "delivered at C", Kind::Delivered, sent.mid).await;
    let stored = c.entry(sent.mid).await.unwrap();
    assert!(matches!(stored, Some(Entry::Message(m)) if m.state == tim_node::storage::State::Delivered));
    // Both histories show it.
    for (node, peer) in [(&b, c.account()), (&c, b.account())] {
        let page = node.history(&Conversation::Peer(peer), None, 10).await.unwrap();
        assert_eq!(page.entries.iter().map(Entry::id).collect::<Vec<_>>(), vec![sent.mid]);
    }

    let ack = c.revoke(sent.mid).await.unwrap();
    assert_eq!(
        (ack.mid, ack.action, ack.conversation.clone()),
        (sent.mid, Action::Revoke, Conversation::Peer(b.account()))
    );
    expect_about(&mut c_ev, "revoked at C", Kind::Revoked, sent.mid).await;
    let ev = expect_about(&mut b_ev, "revoked at B", Kind::Revoked, sent.mid).await;
    assert!(matches!(ev, Event::Revoked { by, .. } if by == c.account()));
    for node in [&b, &c] {
        assert!(is_tombstone(&entry(node, sent.mid).await, Action::Revoke));
    }
    // Revoking twice: already tombstoned.
    assert_eq!(c.revoke(sent.mid).await.unwrap_err().code(), Code::Tombstoned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burn_is_seen_by_both_and_permissions_hold() {
    let Trio {
        b: (b, mut b_ev),
        c: (c, mut c_ev),
        ..
    } = trio().await;
    let sent = c
        .send(Recipient::Account(b.account()), b"burn me".to_vec(), None)
        .await
        .unwrap();
    expect_about(&mut b_ev, "message at B", Kind::Message, sent.mid).await;

    // Permission cases: the receiver revokes, the sender burns, an unknown id.
    assert_eq!(b.revoke(sent.mid).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(c.burn(sent.mid).await.unwrap_err().code(), Code::PermissionDenied);
    let unknown = MessageId::from_bytes([7; 32]);
    assert_eq!(b.burn(unknown).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(c.revoke(unknown).await.unwrap_err().code(), Code::NotFound);
    // Nothing changed on either side.
    for node in [&b, &c] {
        assert!(matches!(entry(node, sent.mid).await, Some(Entry::Message(_))));
    }

    let ack = b.burn(sent.mid).await.unwrap();
    assert_eq!(ack.action, Action::Burn);
    assert_eq!(ack.conversation, Conversation::Peer(c.account()));
    expect_about(&mut b_ev, "burned at B", Kind::Burned, sent.mid).await;
    expect_event(
        &mut c_ev,
        "burned at C",
        |e| matches!(e, Event::Burned { mid, by, .. } if *mid == sent.mid && *by == b.account()),
    )
    .await;
    for node in [&b, &c] {
        assert!(is_tombstone(&entry(node, sent.mid).await, Action::Burn));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_of_three_message_and_revoke_reach_all_and_room_burn_is_refused() {
    let Trio {
        a: (a, mut a_ev),
        b: (b, mut b_ev),
        c: (c, mut c_ev),
        ..
    } = trio().await;
    let room = RoomId::new("general").unwrap();
    for n in [&a, &b, &c] {
        n.join(room.clone()).await.unwrap();
    }
    // Not a member: refused.
    let other = RoomId::new("elsewhere").unwrap();
    assert_eq!(
        a.send(Recipient::Room(other), b"x".to_vec(), None)
            .await
            .unwrap_err()
            .code(),
        Code::BadParameters
    );
    // Wait until A (the hub) sees both others in the room.
    wait_room_peers(&a, &room, 2).await;

    let sent = c
        .send(Recipient::Room(room.clone()), b"hi all".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(sent.conversation, Conversation::Room(room.clone()));
    for ev in [&mut a_ev, &mut b_ev] {
        let e = expect_event(
            ev,
            "room message",
            |e| matches!(e, Event::Message { mid, .. } if *mid == sent.mid),
        )
        .await;
        assert!(matches!(e, Event::Message { conversation: Conversation::Room(ref r), .. } if *r == room));
    }
    // Rooms have no burn: 4104, even for a member who received it.
    assert_eq!(b.burn(sent.mid).await.unwrap_err().code(), Code::BadParameters);
    assert_eq!(a.revoke(sent.mid).await.unwrap_err().code(), Code::PermissionDenied);

    c.revoke(sent.mid).await.unwrap();
    for ev in [&mut a_ev, &mut b_ev, &mut c_ev] {
        expect_event(
            ev,
            "room revoke",
            |e| matches!(e, Event::Revoked { mid, .. } if *mid == sent.mid),
        )
        .await;
    }
    for n in [&a, &b, &c] {
        assert!(is_tombstone(&entry(n, sent.mid).await, Action::Revoke));
        let page = n.history(&Conversation::Room(room.clone()), None, 10).await.unwrap();
        assert!(matches!(&page.entries[..], [Entry::Tombstone(_)]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_revoke_changes_nothing_and_early_revoke_wins() {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let alice_key = with_account(dirs[0].path(), 11);
    let bob_key = with_account(dirs[1].path(), 12);
    let (alice, mut a_ev) = start(dirs[0].path(), vec![]).await;
    let boot = addr(&alice).await;
    let (bob, mut b_ev) = start(dirs[1].path(), vec![boot.clone()]).await;
    let (mallory, mut m_ev) = start(dirs[2].path(), vec![boot]).await;
    routed(&mallory, &bob).await;

    // A real message from alice to bob.
    let sent = alice
        .send(Recipient::Account(bob.account()), b"keep me".to_vec(), None)
        .await
        .unwrap();
    expect_about(&mut b_ev, "message at bob", Kind::Message, sent.mid).await;
    let header = match entry(&bob, sent.mid).await {
        Some(Entry::Message(m)) => m.message.header,
        other => panic!("{other:?}"),
    };

    // Mallory revokes alice's message in her own name and again claiming to be alice (neither
    // validly signed by alice); both relayed to bob and to alice.
    let mallory_key = AccountKey::generate();
    let wrong_signer = Control {
        action: Action::Revoke,
        target: header.clone(),
        by: mallory_key.account_id(),
        at: 1,
        signature: [0; 64],
    };
    let mut claims_alice = wrong_signer.clone();
    claims_alice.by = alice.account();
    claims_alice.signature = [1; 64];
    let forged_before = [bob.metrics().forged_rejected, alice.metrics().forged_rejected];
    for forged in [wrong_signer, claims_alice] {
        let frame = encode(&Envelope::Control(forged)).unwrap();
        mallory
            .relay(Recipient::Account(bob.account()), frame.clone())
            .await
            .unwrap();
        mallory.relay(Recipient::Account(alice.account()), frame).await.unwrap();
    }
    // Each victim answers a forgery only once it has checked (and counted) it, and mallory sees
    // each refusal with the victim's code: four refusals mean both victims processed both.
    let mut refusals = Vec::new();
    while refusals.len() < 4 {
        let e = expect_event(
            &mut m_ev,
            "the victims' refusals at mallory",
            |e| matches!(e, Event::DeliveryFailed { mid, .. } if *mid == sent.mid),
        )
        .await;
        if let Event::DeliveryFailed { to, code, .. } = e {
            assert!(
                matches!(code, Code::InvalidSignature | Code::PermissionDenied),
                "a forgery refused with {code:?}"
            );
            refusals.push(to);
        }
    }
    for victim in [bob.account(), alice.account()] {
        assert_eq!(refusals.iter().filter(|to| **to == victim).count(), 2, "{refusals:?}");
    }
    let forged_after = [bob.metrics().forged_rejected, alice.metrics().forged_rejected];
    for (before, after) in forged_before.iter().zip(forged_after) {
        assert!(
            after >= before + 2,
            "forgeries counted: {forged_before:?} -> {forged_after:?}"
        );
    }
    assert!(
        matches!(entry(&bob, sent.mid).await, Some(Entry::Message(_))),
        "forged revoke applied at bob"
    );
    assert!(
        matches!(entry(&alice, sent.mid).await, Some(Entry::Message(_))),
        "forged revoke applied at alice"
    );

    // A revoke that reaches bob before its message: bob tombstones the id, then refuses the
    // message and never shows it.
    let early = direct(&alice_key, &bob_key, b"never shown", 5);
    let early_mid = early.id();
    mallory
        .relay(
            Recipient::Account(bob.account()),
            encode(&Envelope::Control(revoke(&alice_key, &early))).unwrap(),
        )
        .await
        .unwrap();
    expect_about(&mut b_ev, "early revoke at bob", Kind::Revoked, early_mid).await;
    mallory
        .relay(
            Recipient::Account(bob.account()),
            encode(&Envelope::Message(early)).unwrap(),
        )
        .await
        .unwrap();
    // Bob refuses the late copy as tombstoned. Mallory is not told (a tombstoned target is a
    // delivery done), so a normal message after it on the same path marks it processed.
    let marker = mallory
        .send(Recipient::Account(bob.account()), b"after".to_vec(), None)
        .await
        .unwrap();
    loop {
        let e = expect_event(&mut b_ev, "the marker message", |e| matches!(e, Event::Message { .. })).await;
        match e {
            Event::Message { mid, .. } if mid == early_mid => panic!("a revoked message was shown"),
            Event::Message { mid, .. } if mid == marker.mid => break,
            _ => {}
        }
    }
    assert!(is_tombstone(&entry(&bob, early_mid).await, Action::Revoke));
    // Alice's own events never showed a forged revoke: she had processed the forgeries before
    // this message was sent, so its delivery comes after any event they caused.
    let after = alice
        .send(Recipient::Account(bob.account()), b"after the forgeries".to_vec(), None)
        .await
        .unwrap();
    loop {
        match expect_event(&mut a_ev, "the delivery after the forgeries", |_| true).await {
            Event::Revoked { mid, .. } if mid == sent.mid => panic!("alice showed a forged revoke"),
            Event::Delivered { mid, .. } if mid == after.mid => break,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burn_after_reading_burns_on_both_sides() {
    let Trio {
        b: (b, mut b_ev),
        c: (c, mut c_ev),
        ..
    } = trio().await;
    let sent = c
        .send(Recipient::Account(b.account()), b"self-destructs".to_vec(), Some(1))
        .await
        .unwrap();
    let e = expect_about(&mut b_ev, "message at B", Kind::Message, sent.mid).await;
    assert!(matches!(
        e,
        Event::Message {
            burn_after_read: Some(1),
            ..
        }
    ));
    // Unread: nothing happens by itself.
    assert!(matches!(entry(&b, sent.mid).await, Some(Entry::Message(_))));
    let opened = b.mark_read(sent.mid).await.unwrap();
    assert_eq!(opened.body, b"self-destructs");
    assert!(opened.burn_at.is_some());
    expect_about(&mut b_ev, "burned at B", Kind::Burned, sent.mid).await;
    expect_about(&mut c_ev, "burned at C", Kind::Burned, sent.mid).await;
    for n in [&b, &c] {
        assert!(is_tombstone(&entry(n, sent.mid).await, Action::Burn));
    }
}

/// The burn-after-read timer is persisted: a node restarted after the read burns on time, checked
/// with tokio's paused clock.
#[tokio::test(start_paused = true)]
async fn burn_timer_survives_restart_with_paused_time() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let bob_key = with_account(dir.path(), 21);
    let alice_key = key(22);
    let m = Message::sign(
        &alice_key,
        Recipient::Account(bob_key.account_id()),
        b"tick".to_vec(),
        1,
        Some(30),
    )
    .unwrap();
    let mid = m.id();
    {
        // The read happened in an earlier life of the node: it is only in the store.
        let store = tim_node::storage::Store::open(dir.path().join("db"), Default::default()).unwrap();
        store.put_message(&m, tim_node::storage::State::Received).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        store.mark_read(&mid, now).unwrap();
    }
    let (bob, mut events) = start(dir.path(), vec![]).await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(
        matches!(entry(&bob, mid).await, Some(Entry::Message(_))),
        "burned too early"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    expect_event(
        &mut events,
        "the timed burn",
        |e| matches!(e, Event::Burned { mid: x, .. } if *x == mid),
    )
    .await;
    assert!(is_tombstone(&entry(&bob, mid).await, Action::Burn));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_identity_history_and_tombstones() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev) = start(dirs[0].path(), vec![]).await;
    let boot = addr(&a).await;
    let (b, mut b_ev) = start(dirs[1].path(), vec![boot.clone()]).await;
    let (a2, bacc) = (a.clone(), b.account());
    eventually("a route to b", || {
        let a2 = a2.clone();
        async move { a2.lookup(bacc).await.ok() }
    })
    .await;
    let kept = a
        .send(Recipient::Account(b.account()), b"kept".to_vec(), None)
        .await
        .unwrap();
    let gone = a
        .send(Recipient::Account(b.account()), b"gone".to_vec(), None)
        .await
        .unwrap();
    expect_each_about(&mut b_ev, "messages at B", Kind::Message, &[kept.mid, gone.mid]).await;
    a.revoke(gone.mid).await.unwrap();
    expect_about(&mut b_ev, "revoke at B", Kind::Revoked, gone.mid).await;
    let (account, peer) = (b.account(), b.peer_id());
    b.shutdown().await.unwrap();
    // A stopped node's handles answer NodeStopped, and its events end.
    let err = b.history(&Conversation::Peer(a.account()), None, 10).await.unwrap_err();
    assert_eq!(err.code(), Code::NodeStopped);
    let ended = tokio::time::timeout(WAIT, async { while b_ev.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the event stream ended");

    // shutdown returned only once the store closed: the data dir reopens at once, although a
    // handle is still alive.
    let mut config = Config::loopback(dirs[1].path());
    config.bootstrap = vec![boot];
    let (b2, _) = Node::start(config).await.unwrap();
    drop(b);
    let b = b2;
    assert_eq!((b.account(), b.peer_id()), (account, peer));
    let page = b.history(&Conversation::Peer(a.account()), None, 10).await.unwrap();
    assert_eq!(page.entries.len(), 2);
    // Sent in the same millisecond, they may come in either order: look them up by id.
    let find = |mid| page.entries.iter().find(|e| e.id() == mid);
    assert!(matches!(find(gone.mid), Some(Entry::Tombstone(_))));
    // Stored as it travelled (sealed); the account key opens it.
    let Some(Entry::Message(m)) = find(kept.mid) else {
        panic!("the kept message is gone");
    };
    let opened = b.reader().open(&m.message).unwrap();
    assert_eq!((opened.text.as_slice(), opened.encrypted), (&b"kept"[..], true));
}
