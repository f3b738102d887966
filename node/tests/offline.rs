//! Nothing lost while offline: the persistent outbox, room catch-up by sync, and deletion that
//! converges on every replica. Each test asserts the final state on every node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use common::*;
use futures::SinkExt;
use tim_node::{
    protocol::{
        encode,
        test_util::{direct, key},
        Ack, Action, Envelope, MessageId, Recipient, RoomId,
    },
    storage::Entry,
    Conversation, Event, Events, Multiaddr, Node,
};

/// Collects the mids of `message` events until one for each of `until` was seen (those
/// included). Events come out in the order the node emitted them, so once a marker that was sent
/// after something else has arrived, every event that something caused is in the result.
async fn message_events_until(events: &mut Events, what: &str, until: &[MessageId]) -> Vec<MessageId> {
    let mut seen = Vec::new();
    while !until.iter().all(|m| seen.contains(m)) {
        if let Event::Message { mid, .. } = expect_event(events, what, |e| matches!(e, Event::Message { .. })).await {
            seen.push(mid);
        }
    }
    seen
}

/// Sends a direct message from `from` to `to` and waits until `to_events` shows it; returns the
/// mids of every message event `to` emitted up to it. The marker travels the path a late copy
/// from `from` would take, after anything `from` sent before.
async fn marker_from(from: &Node, to: &Node, to_events: &mut Events) -> Vec<MessageId> {
    let marker = from
        .send(Recipient::Account(to.account()), b"marker".to_vec(), None)
        .await
        .unwrap();
    message_events_until(to_events, "the marker message", &[marker.mid]).await
}

/// The room history of a node as (mid, state) pairs, where state is the body or the tombstone.
async fn room_state(node: &Node, room: &RoomId) -> BTreeMap<MessageId, String> {
    let page = node
        .history(&Conversation::Room(room.clone()), None, 500)
        .await
        .unwrap();
    page.entries
        .iter()
        .map(|e| {
            let state = match e {
                Entry::Message(m) => String::from_utf8_lossy(&m.message.body).into_owned(),
                Entry::Tombstone(t) => format!("{:?}", t.action()),
            };
            (e.id(), state)
        })
        .collect()
}

/// A hub; A and B bootstrapped from it, A able to route to B; then B stopped.
struct AwayPair {
    _dirs: Vec<tempfile::TempDir>,
    boot: Multiaddr,
    _hub: (Node, Events),
    a: Node,
    a_ev: Events,
    b_account: tim_node::protocol::AccountId,
}

async fn a_with_b_away() -> AwayPair {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = start(dirs[0].path(), vec![]).await;
    let boot = addr(&hub.0).await;
    let (a, a_ev) = start(dirs[1].path(), vec![boot.clone()]).await;
    let (b, b_ev) = start(dirs[2].path(), vec![boot.clone()]).await;
    routed(&a, &b).await;
    let b_account = b.account();
    stop(b, b_ev).await;
    AwayPair {
        _dirs: dirs,
        boot,
        _hub: hub,
        a,
        a_ev,
        b_account,
    }
}

/// Scenario 1: A sends to B while B is stopped; B starts; B receives it once; A sees `delivered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_to_a_stopped_node_arrives_once_when_it_returns() {
    init_tracing();
    let AwayPair {
        _dirs: dirs,
        boot,
        _hub,
        a,
        mut a_ev,
        b_account,
    } = a_with_b_away().await;

    let sent = a
        .send(Recipient::Account(b_account), b"while you were away".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(a.metrics().outbox_depth, 1);
    let b_dir = dirs[2].path().to_path_buf();
    let (b, mut b_ev) = restart(|| config(&b_dir, vec![boot.clone()])).await;
    expect_about(&mut a_ev, "delivered at A", Kind::Delivered, sent.mid).await;
    assert!(matches!(entry(&b, sent.mid).await, Some(Entry::Message(_))));
    let page = b.history(&Conversation::Peer(a.account()), None, 10).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(a.metrics().outbox_depth, 0);
    assert_eq!(b.metrics().messages_in, 1);
    // Exactly one message event at B (the outbox does not send it again): counted up to a later
    // message from A, on the same path.
    let seen = marker_from(&a, &b, &mut b_ev).await;
    assert_eq!(seen.iter().filter(|m| **m == sent.mid).count(), 1, "{seen:?}");
    assert_eq!(b.metrics().messages_in, 2);
}

/// Scenario 2: A sends to B and revokes it while B is stopped; B starts; B never emits a `message` event
/// for it and shows it revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_revoked_while_recipient_was_away_is_never_shown() {
    init_tracing();
    let AwayPair {
        _dirs: dirs,
        boot,
        _hub,
        a,
        b_account,
        ..
    } = a_with_b_away().await;

    let sent = a
        .send(Recipient::Account(b_account), b"regret".to_vec(), None)
        .await
        .unwrap();
    a.revoke(sent.mid).await.unwrap();
    // The unsent message left the outbox with its revoke; only the revoke waits.
    assert_eq!(a.metrics().outbox_depth, 1);

    let b_dir = dirs[2].path().to_path_buf();
    let (b, mut b_ev) = restart(|| config(&b_dir, vec![boot.clone()])).await;
    let ev = expect_event(&mut b_ev, "the revoke at B", |e| {
        matches!(e, Event::Revoked { .. } | Event::Message { .. })
    })
    .await;
    assert!(
        matches!(ev, Event::Revoked { mid, .. } if mid == sent.mid),
        "B showed {ev:?} first"
    );
    assert!(is_tombstone(&entry(&b, sent.mid).await, Action::Revoke));
    let a2 = a.clone();
    eventually("A's outbox drains", || {
        let a2 = a2.clone();
        async move { (a2.metrics().outbox_depth == 0).then_some(()) }
    })
    .await;
    let seen = marker_from(&a, &b, &mut b_ev).await;
    assert!(!seen.contains(&sent.mid), "{seen:?}");
}

/// Scenario 3: A room of four; D is stopped; C posts, then revokes; D starts; D shows the message as
/// revoked and never emitted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_member_that_was_away_sees_only_the_revoke() {
    init_tracing();
    let room = RoomId::new("four").unwrap();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev) = start(dirs[0].path(), vec![]).await;
    let boot = addr(&a).await;
    let (b, mut b_ev) = start(dirs[1].path(), vec![boot.clone()]).await;
    let (c, _c_ev) = start(dirs[2].path(), vec![boot.clone()]).await;
    let (d, d_ev) = start(dirs[3].path(), vec![boot.clone()]).await;
    for n in [&a, &b, &c, &d] {
        n.join(room.clone()).await.unwrap();
    }
    stop(d, d_ev).await;

    wait_room_peers(&a, &room, 2).await;
    let sent = c
        .send(Recipient::Room(room.clone()), b"oops, wrong room".to_vec(), None)
        .await
        .unwrap();
    expect_about(&mut b_ev, "message at B", Kind::Message, sent.mid).await;
    c.revoke(sent.mid).await.unwrap();
    expect_about(&mut b_ev, "revoke at B", Kind::Revoked, sent.mid).await;
    // Every member D can sync from holds the tombstone, so none serves the message.
    let (a2, mid) = (a.clone(), sent.mid);
    eventually("the revoke at A", || {
        let a2 = a2.clone();
        async move { is_tombstone(&a2.entry(mid).await.ok()?, Action::Revoke).then_some(()) }
    })
    .await;

    let d_dir = dirs[3].path().to_path_buf();
    let (d, mut d_ev) = restart(|| config(&d_dir, vec![boot.clone()])).await;
    let ev = expect_event(
        &mut d_ev,
        "the revoke at D",
        |e| matches!(e, Event::Revoked { mid, .. } | Event::Message { mid, .. } if *mid == sent.mid),
    )
    .await;
    assert!(matches!(ev, Event::Revoked { .. }), "D showed {ev:?}");
    let state = room_state(&d, &room).await;
    assert_eq!(state.get(&sent.mid).map(String::as_str), Some("Revoke"));
    // A later post by C, by gossip or by sync: D's events up to it never show the message.
    let after = c
        .send(Recipient::Room(room.clone()), b"after the revoke".to_vec(), None)
        .await
        .unwrap();
    let seen = message_events_until(&mut d_ev, "the later post at D", &[after.mid]).await;
    assert!(!seen.contains(&sent.mid), "{seen:?}");
}

/// Scenario 4: Two halves of a five-node mesh are cut apart by stopping the bridge; messages and a revoke
/// happen on both sides; the bridge returns; all five converge to the same room history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_halves_converge_when_the_bridge_returns() {
    init_tracing();
    let room = RoomId::new("split").unwrap();
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let (bridge, bridge_ev) = start(dirs[0].path(), vec![]).await;
    let bridge_addr = addr(&bridge).await;
    let mut nodes = Vec::new();
    for dir in &dirs[1..] {
        nodes.push(start(dir.path(), vec![bridge_addr.clone()]).await);
    }
    // Halves {1, 2} and {3, 4} never talk to each other directly: only through the bridge.
    let peer = |i: usize| nodes[i].0.peer_id();
    for (i, j) in [(0, 2), (0, 3), (1, 2), (1, 3)] {
        nodes[i].0.block_peer(peer(j)).await.unwrap();
        nodes[j].0.block_peer(peer(i)).await.unwrap();
    }
    bridge.join(room.clone()).await.unwrap();
    for (n, _) in &nodes {
        n.join(room.clone()).await.unwrap();
    }
    wait_room_peers(&bridge, &room, 4).await;
    let before = nodes[0]
        .0
        .send(Recipient::Room(room.clone()), b"before the split".to_vec(), None)
        .await
        .unwrap();
    for (n, _) in &nodes[1..] {
        let (n, mid) = (n.clone(), before.mid);
        eventually("the first message everywhere", || {
            let n = n.clone();
            async move { n.entry(mid).await.ok().flatten().map(|_| ()) }
        })
        .await;
    }
    let mut listen: Vec<Multiaddr> = bridge.status().await.unwrap().listen_addrs;
    for a in &mut listen {
        a.pop(); // the /p2p suffix: the bridge listens on the same address again
    }
    stop(bridge, bridge_ev).await;

    // Side 1: two messages and a revoke of the first. Side 2: one message.
    let (s1, s2) = (&nodes[1].0, &nodes[2].0);
    let m1 = s1
        .send(Recipient::Room(room.clone()), b"m1 (revoked)".to_vec(), None)
        .await
        .unwrap();
    let m2 = s1
        .send(Recipient::Room(room.clone()), b"m2".to_vec(), None)
        .await
        .unwrap();
    s1.revoke(m1.mid).await.unwrap();
    let m3 = s2
        .send(Recipient::Room(room.clone()), b"m3".to_vec(), None)
        .await
        .unwrap();

    // The bridge returns on its old address and dials everyone it knew.
    let bridge_dir: PathBuf = dirs[0].path().to_path_buf();
    let mut node_addrs = Vec::new();
    for (n, _) in &nodes {
        node_addrs.push(addr(n).await);
    }
    let (bridge, _bridge_ev) = restart(|| {
        let mut c = config(&bridge_dir, node_addrs.clone());
        c.listen = listen.clone();
        c
    })
    .await;

    let mut expected = BTreeMap::new();
    expected.insert(before.mid, "before the split".to_string());
    expected.insert(m1.mid, "Revoke".to_string());
    expected.insert(m2.mid, "m2".to_string());
    expected.insert(m3.mid, "m3".to_string());
    let all: Vec<Node> = std::iter::once(bridge.clone())
        .chain(nodes.iter().map(|(n, _)| n.clone()))
        .collect();
    for (i, n) in all.iter().enumerate() {
        let (n, room, expected) = (n.clone(), room.clone(), expected.clone());
        eventually(&format!("node {i} converges"), || {
            let (n, room, expected) = (n.clone(), room.clone(), expected.clone());
            async move { (room_state(&n, &room).await == expected).then_some(()) }
        })
        .await;
    }
}

/// Scenario 5: A node is killed (SIGKILL) right after acknowledging messages; on restart every acknowledged
/// message and tombstone is there.
#[test]
fn sigkill_after_acks_loses_nothing() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let spawn = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tim-node"))
            .args(["run", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let api = lines
            .by_ref()
            .find_map(|l| l.strip_prefix("api").map(|a| a.trim().to_string()));
        // Keep draining stdout, as a terminal would.
        std::thread::spawn(move || lines.for_each(drop));
        (child, api.expect("the node printed its API address"))
    };
    let token = || {
        std::fs::read_to_string(dir.path().join("api-token"))
            .unwrap()
            .trim()
            .to_string()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut child, api) = spawn();
    let http = reqwest::Client::new();
    // Nobody serves this account: everything stays in the outbox.
    let to = tim_node::protocol::AccountKey::generate().account_id().to_string();
    let (acked, revoked) = rt.block_on(async {
        let (mut acked, mut revoked) = (Vec::new(), Vec::new());
        for i in 0..30 {
            let r: serde_json::Value = http
                .post(format!("{api}/v1/messages"))
                .bearer_auth(token())
                .json(&serde_json::json!({"to": to, "body": format!("m{i}")}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mid = r["mid"].as_str().unwrap().to_string();
            if i % 5 == 0 {
                let s = http
                    .post(format!("{api}/v1/messages/{mid}/revoke"))
                    .bearer_auth(token())
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(s.as_u16(), 200);
                revoked.push(mid.clone());
            }
            acked.push(mid);
        }
        (acked, revoked)
    });
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    let (mut child, api) = spawn();
    rt.block_on(async {
        let h: serde_json::Value = http
            .get(format!("{api}/v1/conversations/{to}/messages?limit=100"))
            .bearer_auth(token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let states: BTreeMap<String, String> = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["mid"].as_str().unwrap().to_string(),
                    m["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for mid in &acked {
            let want = if revoked.contains(mid) { "revoked" } else { "sent" };
            assert_eq!(states.get(mid).map(String::as_str), Some(want), "{mid}");
        }
    });
    child.kill().unwrap();
    let _ = child.wait();
}

/// Scenario 6: The same message arriving by gossip, by sync and by retry is stored and shown once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_by_gossip_sync_and_retry_are_shown_once() {
    init_tracing();
    let room = RoomId::new("dups").unwrap();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let b_key = with_account(dirs[1].path(), 31);
    let (a, _a_ev) = start(dirs[0].path(), vec![]).await;
    let (b, mut b_ev) = start(dirs[1].path(), vec![addr(&a).await]).await;
    routed(&a, &b).await;
    a.join(room.clone()).await.unwrap();
    b.join(room.clone()).await.unwrap();
    wait_room_peers(&a, &room, 1).await;

    // Room: by gossip, then by sync (B re-syncs every second).
    let r = a
        .send(Recipient::Room(room.clone()), b"room once".to_vec(), None)
        .await
        .unwrap();
    // Direct: by the outbox, then the same frame again as a retry would send it.
    let d = a
        .send(Recipient::Account(b.account()), b"direct once".to_vec(), None)
        .await
        .unwrap();
    let frame = match a.entry(d.mid).await.unwrap() {
        Some(Entry::Message(m)) => encode(&Envelope::Message(m.message)).unwrap(),
        other => panic!("{other:?}"),
    };
    let synced_before = b.metrics().sync_pages_applied;
    let mut seen = message_events_until(&mut b_ev, "both messages at B", &[r.mid, d.mid]).await;
    // The retries, on a pipe of our own so that B's answers prove it processed them.
    let (mut control, peer) = bare::bare_peer(&b).await;
    let mut pipe = bare::open(&mut control, peer).await;
    for id in [1, 2] {
        pipe.send(bare::request_frame(id, frame.clone())).await.unwrap();
    }
    let acks = bare::answers(&mut pipe, &[1, 2]).await;
    assert_eq!((acks[&1], acks[&2]), (Ack::Duplicate, Ack::Duplicate));
    // A sync page's events come before the count of applied pages moves.
    let b2 = b.clone();
    eventually("B re-syncs the room", || {
        let b2 = b2.clone();
        async move { (b2.metrics().sync_pages_applied > synced_before + 1).then_some(()) }
    })
    .await;
    // Everything that could show a copy is done: a new message after it collects what it did.
    let marker = direct(&key(32), &b_key, b"marker", 1);
    pipe.send(bare::request(3, &marker)).await.unwrap();
    assert_eq!(bare::answers(&mut pipe, &[3]).await[&3], Ack::Stored);
    seen.extend(message_events_until(&mut b_ev, "the marker at B", &[marker.id()]).await);
    assert_eq!(
        seen.iter().filter(|m| **m == r.mid).count(),
        1,
        "room message shown {seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|m| **m == d.mid).count(),
        1,
        "direct message shown {seen:?}"
    );
    assert_eq!(b.metrics().messages_in, 3, "the two and the marker");
    assert_eq!(room_state(&b, &room).await.len(), 1);
    assert_eq!(
        b.history(&Conversation::Peer(a.account()), None, 10)
            .await
            .unwrap()
            .entries
            .len(),
        1
    );
}

/// Entries past the outbox retention are dropped with an event, and the outbox drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_entries_past_retention_are_dropped_with_an_event() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), vec![]);
    c.outbox_retention = Duration::ZERO;
    let (a, mut a_ev) = Node::start(c).await.unwrap();
    let nobody = tim_node::protocol::AccountKey::generate().account_id();
    let sent = a
        .send(Recipient::Account(nobody), b"into the void".to_vec(), None)
        .await
        .unwrap();
    let ev = expect_event(
        &mut a_ev,
        "the expiry",
        |e| matches!(e, Event::DeliveryFailed { mid, .. } if *mid == sent.mid),
    )
    .await;
    assert!(
        matches!(
            ev,
            Event::DeliveryFailed {
                code: tim_node::protocol::Code::Expired,
                ..
            }
        ),
        "{ev:?}"
    );
    let a2 = a.clone();
    eventually("the outbox drains", || {
        let a2 = a2.clone();
        async move { (a2.metrics().outbox_depth == 0).then_some(()) }
    })
    .await;
    // The message itself stays in history as sent (only its delivery was given up).
    assert!(matches!(entry(&a, sent.mid).await, Some(Entry::Message(m)) if m.state == tim_node::storage::State::Sent));
}
