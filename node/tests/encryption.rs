//! End-to-end encryption across real nodes: what a bare libp2p peer on a private room's topic gets
//! (ciphertext only) and what members make of its posts (refused); a kicked member cannot open
//! what is sent after the kick; a member back from offline opens what it missed; and after a
//! revoke or a burn no file of either data dir holds the plaintext or its SHA-256.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use libp2p::gossipsub;
use sha2::{Digest, Sha256};
use tim_node::{
    protocol::{decode, seal, AccountKey, Code, Envelope, Message, MessageId, Recipient, RoomId},
    storage::Entry,
    Event, Events, Node,
};

async fn start_as(dir: &std::path::Path, seed: u8, bootstrap: Vec<tim_node::Multiaddr>) -> (Node, Events, AccountKey) {
    let key = with_account(dir, seed);
    let (node, events) = Node::start(config(dir, bootstrap)).await.unwrap();
    (node, events, key)
}

/// Creates a private room at `founder` and admits each of `members` by invitation.
async fn private_room(founder: &Node, members: &mut [(Node, Events, AccountKey)]) -> RoomId {
    let room = founder.create_room("sealed".into(), true).await.unwrap().room;
    for (n, _, _) in members.iter() {
        routed(founder, n).await;
        founder.invite(room.clone(), n.account()).await.unwrap();
    }
    for (n, ev, _) in members.iter_mut() {
        expect_event(ev, "the invitation", |e| matches!(e, Event::RoomInvite { .. })).await;
        n.join(room.clone()).await.unwrap();
    }
    let want = members.len() + 1;
    let f = founder.clone();
    let r = room.clone();
    eventually("every member admitted at the founder", || {
        let ok = f.room(&r).ok().is_some_and(|s| s.members.len() == want);
        async move { ok.then_some(()) }
    })
    .await;
    room
}

/// Waits for the message event about `mid` and returns its body and whether it was sealed.
async fn received(events: &mut Events, what: &str, mid: MessageId) -> (Vec<u8>, bool) {
    match expect_about(events, what, Kind::Message, mid).await {
        Event::Message { body, encrypted, .. } => (body, encrypted),
        other => panic!("{what}: {other:?}"),
    }
}

/// The message `mid` as `node` stores it (as it travelled).
async fn stored(node: &Node, mid: MessageId) -> Message {
    match entry(node, mid).await {
        Some(Entry::Message(s)) => s.message,
        other => panic!("expected the message {mid}, got {other:?}"),
    }
}

/// The message `mid` once `node` stores it.
async fn stored_soon(node: &Node, what: &str, mid: MessageId) -> Message {
    let n = node.clone();
    eventually(what, || {
        let n = n.clone();
        async move {
            match n.entry(mid).await.ok().flatten() {
                Some(Entry::Message(s)) => Some(s.message),
                _ => None,
            }
        }
    })
    .await
}

#[derive(libp2p::swarm::NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Bare {
    gossipsub: gossipsub::Behaviour,
}

/// A bare libp2p peer subscribed to `room`'s topic, connected to `node`: what it hears comes out
/// of the first channel, frames sent into the second are published (retried until the topic
/// has a peer).
async fn bare_subscriber(
    node: &Node,
    room: &RoomId,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
) {
    let topic = gossipsub::IdentTopic::new(format!("tim/room/{room}"));
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| Bare {
            gossipsub: gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Anonymous,
                tim_node::gossipsub_config_builder().build().unwrap(),
            )
            .unwrap(),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    swarm.dial(addr(node).await).unwrap();
    let (heard_tx, heard) = tokio::sync::mpsc::unbounded_channel();
    let (publish, mut to_publish) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let mut waiting: Vec<Vec<u8>> = Vec::new();
        let mut retry = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                event = swarm.select_next_some() => {
                    if let libp2p::swarm::SwarmEvent::Behaviour(BareEvent::Gossipsub(gossipsub::Event::Message { message, .. })) = event {
                        let _ = heard_tx.send(message.data);
                    }
                }
                frame = to_publish.recv() => match frame {
                    Some(frame) => waiting.push(frame),
                    None => return,
                },
                _ = retry.tick() => {
                    waiting.retain(|frame| swarm.behaviour_mut().gossipsub.publish(topic.clone(), frame.clone()).is_err());
                }
            }
        }
    });
    (heard, publish)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_peer_on_a_private_rooms_topic_hears_only_ciphertext_and_its_posts_are_refused() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev, a_key) = start_as(dirs[0].path(), 81, vec![]).await;
    let boot = addr(&a).await;
    let mut members = vec![start_as(dirs[1].path(), 82, vec![boot]).await];
    let room = private_room(&a, &mut members).await;
    let (b, b_ev, b_key) = &mut members[0];
    let (mut heard, publish) = bare_subscriber(&a, &room).await;
    wait_room_peers(&a, &room, 2).await;

    let secret = b"pin 4821 for the team only";
    let sent = a
        .send(Recipient::Room(room.clone()), secret.to_vec(), None)
        .await
        .unwrap();
    let (body, encrypted) = received(b_ev, "the post at B", sent.mid).await;
    assert_eq!((body.as_slice(), encrypted), (&secret[..], true));

    // What the bare peer heard: the post, sealed; nothing it holds opens it.
    let data = tokio::time::timeout(WAIT, async {
        loop {
            let data = heard.recv().await.expect("the bare peer stopped");
            if let Ok(Envelope::Message(m)) = decode::<Envelope>(&data) {
                if m.id() == sent.mid {
                    return (data, m);
                }
            }
        }
    })
    .await
    .expect("the bare peer never heard the post");
    let (frame, message) = data;
    assert!(seal::is_sealed(&message.body), "a private room's post travels sealed");
    assert!(
        !frame.windows(secret.len()).any(|w| w == secret),
        "the plaintext travelled"
    );
    let plaintext_hash: [u8; 32] = Sha256::digest(secret).into();
    assert!(
        !frame.windows(32).any(|w| w == plaintext_hash),
        "the plaintext's hash travelled"
    );
    let h = message.head();
    let outsider = AccountKey::generate();
    let outsiders = seal::Keyring::derived(&outsider).unwrap();
    assert_eq!(
        seal::open(&outsiders, &h.from, &h.to, &message.body, &mut Default::default())
            .unwrap_err()
            .code(),
        Code::Undecryptable
    );
    assert_eq!(b.reader().open(&message).unwrap().text, secret);

    // The bare peer's posts: a stranger's, sealed to the members, is refused by A; so is a
    // member's (whose key the bare peer holds here) in clear.
    let stranger = AccountKey::generate();
    let to = Recipient::Room(room.clone());
    let readers: Vec<seal::Reader> = [a.account(), b.account()]
        .iter()
        .filter_map(seal::Reader::derived)
        .collect();
    let strangers = seal::Keyring::derived(&stranger).unwrap();
    for (what, key, body) in [
        (
            "a stranger's sealed post",
            &stranger,
            seal::seal(&strangers, &to, &readers, b"let me in", &mut Default::default()).unwrap(),
        ),
        ("a member's post in clear", &*b_key, b"readable by all".to_vec()),
    ] {
        let before = a.metrics().invalid_rejected;
        let (mid, frame) = signed_post(key, &room, body);
        publish.send(frame).unwrap();
        refused(&a, before, mid, what).await;
    }
    drop((a_key, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_member_cannot_open_later_posts_and_a_member_back_from_offline_opens_what_it_missed() {
    init_tracing();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev, _) = start_as(dirs[0].path(), 91, vec![]).await;
    let boot = addr(&a).await;
    let mut members = Vec::new();
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        members.push(start_as(dir.path(), 91 + i as u8, vec![boot.clone()]).await);
    }
    let room = private_room(&a, &mut members).await;
    wait_room_peers(&a, &room, 1).await;
    let to = Recipient::Room(room.clone());

    let before = a.send(to.clone(), b"before the kick".to_vec(), None).await.unwrap();
    for (_, ev, _) in members.iter_mut() {
        let (body, encrypted) = received(ev, "the first post", before.mid).await;
        assert_eq!((body.as_slice(), encrypted), (&b"before the kick"[..], true));
    }

    // D goes offline; A kicks C, then posts.
    let (d, d_ev, d_key) = members.pop().unwrap();
    let d_account = d.account();
    stop(d, d_ev).await;
    let (c, _c_ev, _) = members.pop().unwrap();
    a.kick(room.clone(), c.account()).await.unwrap();
    let c_account = c.account();
    for (who, n) in [("A", &a), ("C", &c)] {
        let (n, r) = (n.clone(), room.clone());
        eventually(&format!("C removed at {who}"), || {
            let ok = n.room(&r).ok().is_some_and(|s| !s.is_member(&c_account));
            async move { ok.then_some(()) }
        })
        .await;
    }
    let after = a.send(to.clone(), b"after the kick".to_vec(), None).await.unwrap();
    let (b, b_ev, _) = &mut members[0];
    let (body, _) = received(b_ev, "the later post at B", after.mid).await;
    assert_eq!(body, b"after the kick");

    // C's keys open the post from before the kick and not the one after.
    for (mid, opens) in [(before.mid, true), (after.mid, false)] {
        let m = stored(&a, mid).await;
        let result = c.reader().open(&m);
        assert_eq!(result.is_ok(), opens, "C opens {mid}: {result:?}");
        if !opens {
            assert_eq!(result.unwrap_err().code(), Code::Undecryptable);
        }
    }
    assert!(
        entry(&c, after.mid).await.is_none(),
        "a removed member's node keeps nothing new"
    );

    // D returns, catches up on the room and opens what it missed.
    let (d, _d_ev) = restart(|| config(dirs[3].path(), vec![boot.clone()])).await;
    assert_eq!(d.account(), d_account);
    let m = stored_soon(&d, "D caught up on the later post", after.mid).await;
    let opened = d.reader().open(&m).unwrap();
    assert_eq!(
        (opened.text.as_slice(), opened.encrypted),
        (&b"after the kick"[..], true)
    );
    drop((b, c, d_key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_revoke_or_a_burn_no_file_holds_the_plaintext_or_its_hash() {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, mut a_ev, _) = start_as(dirs[0].path(), 101, vec![]).await;
    let boot = addr(&a).await;
    let mut members = vec![start_as(dirs[1].path(), 102, vec![boot.clone()]).await];
    // A node that sends in clear: what the scan finds when a body is stored as it is.
    let plain_dir = dirs[2].path();
    with_account(plain_dir, 103);
    let mut plain_config = config(plain_dir, vec![boot.clone()]);
    plain_config.seal_direct = false;
    let (plain, _plain_ev) = Node::start(plain_config).await.unwrap();

    let room = private_room(&a, &mut members).await;
    wait_room_peers(&a, &room, 1).await;
    let (b, b_ev, _) = &mut members[0];
    routed(&plain, b).await;
    let bodies: [&[u8]; 4] = [
        b"pin 4821, revoked by its sender",
        b"pin 4822, burned by its reader",
        b"pin 4823, revoked in the room",
        b"pin 4824, sent in clear",
    ];
    let revoked = a
        .send(Recipient::Account(b.account()), bodies[0].to_vec(), None)
        .await
        .unwrap();
    let burned = a
        .send(Recipient::Account(b.account()), bodies[1].to_vec(), Some(60))
        .await
        .unwrap();
    let in_room = a
        .send(Recipient::Room(room.clone()), bodies[2].to_vec(), None)
        .await
        .unwrap();
    let clear = plain
        .send(Recipient::Account(b.account()), bodies[3].to_vec(), None)
        .await
        .unwrap();
    // They arrive in any order.
    let mut got = std::collections::HashMap::new();
    while got.len() < 4 {
        if let Event::Message {
            mid, body, encrypted, ..
        } = expect_event(b_ev, "the messages at B", |e| matches!(e, Event::Message { .. })).await
        {
            got.insert(mid, (body, encrypted));
        }
    }
    assert_eq!(got[&revoked.mid], (bodies[0].to_vec(), true));
    assert_eq!(got[&in_room.mid], (bodies[2].to_vec(), true));
    assert_eq!(got[&clear.mid], (bodies[3].to_vec(), false));
    assert!(got.contains_key(&burned.mid));
    let opened = b.mark_read(burned.mid).await.unwrap();
    assert_eq!((opened.body.as_slice(), opened.encrypted), (bodies[1], true));

    a.revoke(revoked.mid).await.unwrap();
    a.revoke(in_room.mid).await.unwrap();
    b.burn(burned.mid).await.unwrap();
    expect_each_about(b_ev, "the revokes at B", Kind::Revoked, &[revoked.mid, in_room.mid]).await;
    expect_about(&mut a_ev, "the burn at A", Kind::Burned, burned.mid).await;
    let (b, b_ev, _) = members.pop().unwrap();
    stop(a, a_ev).await;
    stop(b, b_ev).await;

    let (a_dir, b_dir) = (dirs[0].path(), dirs[1].path());
    for body in &bodies[..3] {
        let hash: [u8; 32] = Sha256::digest(body).into();
        for (who, dir) in [("A", a_dir), ("B", b_dir)] {
            let text = String::from_utf8_lossy(body);
            assert!(!holds(dir, body), "{who}'s data dir holds {text:?}");
            assert!(!holds(dir, &hash), "{who}'s data dir holds the SHA-256 of {text:?}");
            assert!(
                !holds(dir, hex(&hash).as_bytes()),
                "{who}'s data dir holds the hex SHA-256 of {text:?}"
            );
        }
    }
    // The scan finds a body stored as it travelled in clear.
    assert!(holds(b_dir, bodies[3]), "the scan did not find the plain body at B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_bodies_are_sealed_to_the_published_key_a_reader_sent_and_open_after_it_rotates() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, mut a_ev, _) = start_as(dirs[0].path(), 111, vec![]).await;
    let boot = addr(&a).await;
    let (b, mut b_ev, b_key) = start_as(dirs[1].path(), 112, vec![boot.clone()]).await;
    let (to_a, to_b) = (Recipient::Account(a.account()), Recipient::Account(b.account()));
    let b_derived = seal::Reader::derived(&b.account()).unwrap();
    let b_record = b.reader().own_record().expect("B publishes a seal key");
    b_record.verify().unwrap();

    // A resolves B's route record, which carries B's seal key, before B ever wrote to A.
    assert_eq!(a.reader().record_of(&b.account()), None);
    routed(&a, &b).await;
    assert_eq!(a.reader().record_of(&b.account()), Some(b_record.clone()));
    let first = a.send(to_b.clone(), b"first".to_vec(), None).await.unwrap();
    let (body, encrypted) = received(&mut b_ev, "the first message at B", first.mid).await;
    assert_eq!((body.as_slice(), encrypted), (&b"first"[..], true));
    let first_body = stored(&b, first.mid).await;
    assert!(seal::is_sealed_to(&first_body.body, &seal::Reader::of(&b_record)));
    assert!(!seal::is_sealed_to(&first_body.body, &b_derived));
    // The account key alone does not open what is sealed to B's published key.
    let account_only = seal::Keyring::derived(&b_key).unwrap();
    let h = first_body.head();
    let opened = seal::open(&account_only, &h.from, &h.to, &first_body.body, &mut Default::default());
    assert_eq!(opened.unwrap_err().code(), Code::Undecryptable);

    // B restarts due for a new key: it publishes a new record and still opens its history.
    stop(b, b_ev).await;
    let b_dir = dirs[1].path().to_path_buf();
    let (b, mut b_ev) = restart(|| {
        let mut c = config(&b_dir, vec![boot.clone()]);
        c.seal_key_rotation = Duration::ZERO;
        c
    })
    .await;
    let rotated = b.reader().own_record().expect("B publishes a seal key");
    assert!(rotated.supersedes(&b_record) && rotated.key != b_record.key);
    let opened = b.reader().open(&stored(&b, first.mid).await).unwrap();
    assert_eq!((opened.text.as_slice(), opened.encrypted), (&b"first"[..], true));

    // B writes to A: its body carries the new record, and A seals to that key from then on.
    routed(&b, &a).await;
    let answer = b.send(to_a, b"rotated".to_vec(), None).await.unwrap();
    received(&mut a_ev, "B's message after rotating", answer.mid).await;
    assert_eq!(a.reader().record_of(&b.account()), Some(rotated.clone()));
    assert_eq!(
        seal::sealer_of(&stored(&a, answer.mid).await.body),
        Some(rotated.clone())
    );
    let second = a.send(to_b, b"second".to_vec(), None).await.unwrap();
    let (body, encrypted) = received(&mut b_ev, "the second message at B", second.mid).await;
    assert_eq!((body.as_slice(), encrypted), (&b"second"[..], true));
    let second_body = stored_soon(&b, "the second message stored", second.mid).await.body;
    assert!(seal::is_sealed_to(&second_body, &seal::Reader::of(&rotated)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_rooms_posts_are_sealed_to_the_keys_its_quiet_members_announced() {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev, _) = start_as(dirs[0].path(), 121, vec![]).await;
    let boot = addr(&a).await;
    let mut members = Vec::new();
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        members.push(start_as(dir.path(), 121 + i as u8, vec![boot.clone()]).await);
    }
    let room = private_room(&a, &mut members).await;
    let (b, c) = (members[0].0.clone(), members[1].0.clone());
    wait_room_peers(&b, &room, 1).await;
    // B and C never wrote to each other, never resolved each other's routes and have not posted:
    // each learns the other's key from the announcements members make when someone joins.
    for (learner, other) in [(&b, &c), (&c, &b)] {
        let record = other.reader().own_record().expect("a published seal key");
        let (learner, account) = (learner.clone(), other.account());
        eventually("a member learned another's announced key", || {
            let held = learner.reader().record_of(&account);
            let want = record.clone();
            async move { (held == Some(want)).then_some(()) }
        })
        .await;
    }
    // B seals to the members it knows: wait until it knows C is one.
    let (b2, r, c_account) = (b.clone(), room.clone(), c.account());
    eventually("B knows C is a member", || {
        let ok = b2.room(&r).ok().is_some_and(|s| s.is_member(&c_account));
        async move { ok.then_some(()) }
    })
    .await;
    let sent = b
        .send(Recipient::Room(room.clone()), b"for the quiet ones".to_vec(), None)
        .await
        .unwrap();
    let body = stored(&b, sent.mid).await.body;
    let c_record = c.reader().own_record().unwrap();
    assert!(seal::is_sealed_to(&body, &seal::Reader::of(&c_record)));
    assert!(!seal::is_sealed_to(
        &body,
        &seal::Reader::derived(&c.account()).unwrap()
    ));
    let (text, encrypted) = received(&mut members[1].1, "B's post at C", sent.mid).await;
    assert_eq!((text.as_slice(), encrypted), (&b"for the quiet ones"[..], true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_makes_a_new_seal_key_when_due_and_its_route_record_carries_it() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev, _) = start_as(dirs[0].path(), 131, vec![]).await;
    let boot = addr(&a).await;
    with_account(dirs[1].path(), 132);
    let mut b_config = config(dirs[1].path(), vec![boot]);
    b_config.seal_key_rotation = Duration::from_secs(3);
    b_config.route_refresh = Duration::from_secs(1);
    let (b, _b_ev) = Node::start(b_config).await.unwrap();
    let first = b.reader().own_record().expect("B publishes a seal key");
    let b2 = b.clone();
    eventually("B made a new seal key while running", || {
        let newer = b2.reader().own_record().is_some_and(|r| r.supersedes(&first));
        async move { newer.then_some(()) }
    })
    .await;
    // A resolves B's route and finds B's current key in it.
    let account = b.account();
    eventually("A resolved B's route with its current seal key", || {
        let (a, b, first) = (a.clone(), b.clone(), first.clone());
        async move {
            a.lookup(account).await.ok()?;
            let current = b.reader().own_record()?;
            (a.reader().record_of(&account) == Some(current.clone()) && current.supersedes(&first)).then_some(())
        }
    })
    .await;
}
