//! A network bigger than its nodes' connection bound: 30 nodes that may keep 8 peers each, each
//! bootstrapped from one random earlier node. Connections settle at or under the bound; a room of
//! 5 random members, none bootstrapped from another, finds itself through provider records and
//! delivers a message and its revoke to every member; a member joining later finds the room and
//! catches up; a direct message to an account whose node is not connected arrives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use tim_node::{
    protocol::{Action, MessageId, Recipient, RoomId},
    storage::Entry,
    Event, Events, Node, PeerId,
};

const NODES: usize = 30;
const MAX_CONNECTIONS: usize = 8;
const MEMBERS: usize = 5;
/// How long the network may take to settle, or a room to deliver: a ceiling, not a wait. On 2
/// busy cores the first settling takes about 30 to 40 s (every node talks Kademlia with every
/// other while it bootstraps and publishes, which keeps those connections in their grace).
const SETTLE: Duration = Duration::from_secs(120);

/// What one node's event stream said so far.
#[derive(Default)]
struct Seen {
    connected: HashSet<PeerId>,
    messages: HashSet<MessageId>,
    revoked: HashSet<MessageId>,
}

/// Records a node's events in `Seen` for the test to poll.
fn watch(mut events: Events) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = seen.clone();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let mut s = out.lock().unwrap();
            match event {
                Event::PeerConnected { peer } => {
                    s.connected.insert(peer);
                }
                Event::PeerDisconnected { peer } => {
                    s.connected.remove(&peer);
                }
                Event::Message { mid, .. } => {
                    s.messages.insert(mid);
                }
                Event::Revoked { mid, .. } => {
                    s.revoked.insert(mid);
                }
                _ => {}
            }
        }
    });
    seen
}

/// Polls `check` every 100 ms until it holds, failing after `SETTLE`.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    tokio::time::timeout(SETTLE, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

async fn peer_counts(nodes: &[Node]) -> Vec<usize> {
    let mut counts = Vec::new();
    for node in nodes {
        counts.push(node.status().await.unwrap().peers);
    }
    counts
}

/// Waits until every node's peer count is at or under the bound, and prints the counts.
async fn settled(nodes: &[Node], when: &str) {
    let started = std::time::Instant::now();
    tokio::time::timeout(SETTLE, async {
        loop {
            let counts = peer_counts(nodes).await;
            if counts.iter().all(|c| *c <= MAX_CONNECTIONS) {
                println!(
                    "peers per node {when}, settled after {:?}: {counts:?}",
                    started.elapsed()
                );
                return;
            }
            if started.elapsed().as_millis() % 5000 < 200 {
                println!("peers per node {when}, after {:?}: {counts:?}", started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("peer counts settle at or under the bound {when}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_network_finds_its_rooms_and_delivers() {
    init_tracing();
    let mut rng = StdRng::seed_from_u64(14);
    let dirs: Vec<_> = (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Node> = Vec::new();
    let mut seen = Vec::new();
    let mut boot_of: Vec<Option<usize>> = Vec::new();
    let mut addrs: Vec<tim_node::Multiaddr> = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let boot = (i > 0).then(|| rng.gen_range(0..i));
        let mut config = config(dir.path(), boot.map(|b| vec![addrs[b].clone()]).unwrap_or_default());
        config.max_connections = MAX_CONNECTIONS;
        config.target_connections = 6;
        let (node, events) = Node::start(config).await.unwrap();
        addrs.push(addr(&node).await);
        seen.push(watch(events));
        nodes.push(node);
        boot_of.push(boot);
    }

    // Every node's peer count settles at or under the bound.
    settled(&nodes, "once started").await;

    // A room of random members, none bootstrapped from another.
    let members: Vec<usize> = loop {
        let pick: Vec<usize> = (0..NODES)
            .collect::<Vec<_>>()
            .choose_multiple(&mut rng, MEMBERS)
            .copied()
            .collect();
        if pick.iter().all(|m| boot_of[*m].is_none_or(|b| !pick.contains(&b))) {
            break pick;
        }
    };
    let room = RoomId::new("lobby").unwrap();
    let joins = members.iter().map(|m| nodes[*m].join(room.clone()));
    for joined in futures::future::join_all(joins).await {
        joined.unwrap();
    }
    for m in &members {
        wait_room_peers(&nodes[*m], &room, 1).await;
    }
    let from = &nodes[members[0]];
    let sent = from
        .send(Recipient::Room(room.clone()), b"hello room".to_vec(), None)
        .await
        .unwrap();
    until("every member has the message", || {
        members[1..]
            .iter()
            .all(|m| seen[*m].lock().unwrap().messages.contains(&sent.mid))
    })
    .await;
    from.revoke(sent.mid).await.unwrap();
    until("every member has the revoke", || {
        members[1..]
            .iter()
            .all(|m| seen[*m].lock().unwrap().revoked.contains(&sent.mid))
    })
    .await;
    let kept = from
        .send(Recipient::Room(room.clone()), b"still here".to_vec(), None)
        .await
        .unwrap();
    until("every member has the second message", || {
        members[1..]
            .iter()
            .all(|m| seen[*m].lock().unwrap().messages.contains(&kept.mid))
    })
    .await;
    println!(
        "room members {members:?}, peers per node now: {:?}",
        peer_counts(&nodes).await
    );

    // A newcomer, bootstrapped from no member, finds the room and catches up: the kept message
    // and the revoke's tombstone.
    let newcomer = (0..NODES)
        .find(|n| !members.contains(n) && boot_of[*n].is_none_or(|b| !members.contains(&b)))
        .unwrap();
    let late = nodes[newcomer].clone();
    late.join(room.clone()).await.unwrap();
    eventually("the newcomer catches up", || {
        let late = late.clone();
        async move {
            let kept_here = matches!(late.entry(kept.mid).await.ok()?, Some(Entry::Message(_)));
            let revoked_here = is_tombstone(&late.entry(sent.mid).await.ok()?, Action::Revoke);
            (kept_here && revoked_here).then_some(())
        }
    })
    .await;

    // A direct message to an account whose node this one is not connected to.
    let (s, r) = loop {
        let s = rng.gen_range(0..NODES);
        let r = rng.gen_range(0..NODES);
        let r_peer = nodes[r].peer_id();
        if s != r && !seen[s].lock().unwrap().connected.contains(&r_peer) {
            break (s, r);
        }
    };
    let direct = nodes[s]
        .send(Recipient::Account(nodes[r].account()), b"hello stranger".to_vec(), None)
        .await
        .unwrap();
    until("the direct message arrives", || {
        seen[r].lock().unwrap().messages.contains(&direct.mid)
    })
    .await;

    // The bound still holds once the dials of all this have been pruned.
    settled(&nodes, "at the end").await;
}
