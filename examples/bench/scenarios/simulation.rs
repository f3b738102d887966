//! `network`: many tim nodes in this one process over libp2p's memory transport
//! (`tim_node::Transport::Memory`: the same Noise and yamux upgrades as TCP, no sockets), each
//! bootstrapped from a random earlier node, then a room of `members` of them, against bare
//! gossipsub on the very same connection graph in the same run (`baselines::BareNetwork`).
//!
//! Measured: connections and memory per node once the network idled; how long a member takes to
//! find the room; publish → last member stored and revoke → last member tombstoned (p50 / p99)
//! against bare gossipsub's publish → last member received, in alternating rounds; CPU per
//! publication; and how long a member joining late takes to find the room.
use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use tim_node::{
    protocol::{MessageId, Recipient, RoomId},
    Config, Event, Events, Node, PeerId,
};
use tokio::sync::mpsc;

use crate::{
    baselines::BareNetwork,
    report::{cpu_time, percentile_of, rss_mb, Row},
    STEP,
};

/// Publications per round: tim and the baseline alternate round by round, so both see the same
/// moments of this shared machine.
const ROUND: usize = 10;

/// What a member's event task reports: which member saw the message stored or tombstoned, when.
type Seen = (usize, MessageId, bool, Instant);

/// `receipts`: whether members send deletion receipts to the revoker (off by default here: in a
/// room of a thousand, each revoke then brings the revoker a receipt from every member).
pub(crate) async fn network(nodes: usize, members: usize, count: usize, receipts: bool) -> anyhow::Result<Vec<Row>> {
    if nodes < 3 {
        bail!("network needs at least 3 nodes");
    }
    // One node joins late; the others may all be members.
    let members = members.clamp(2, nodes - 1);
    let dir = tempfile::tempdir()?;
    // Quiet enough to measure: 5 ms of CPU a second per node (an idle tim node takes about 2),
    // and never more than half of what the machine's cores can give.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let quiet = (Duration::from_millis(5) * nodes as u32).min(Duration::from_millis(500) * cores);
    let rss_before = rss_mb();
    let started = Instant::now();
    let mut tim: Vec<Node> = Vec::with_capacity(nodes);
    let mut events: Vec<Events> = Vec::with_capacity(nodes);
    let mut boots = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let mut c = Config::memory(dir.path().join(i.to_string()));
        c.deletion_receipts = receipts;
        if let Some(boot) = boots.choose(&mut rand::thread_rng()) {
            c.bootstrap = vec![tim_node::Multiaddr::clone(boot)];
        }
        let (node, ev) = Node::start(c).await?;
        let addr = node
            .status()
            .await?
            .listen_addrs
            .into_iter()
            .next()
            .context("a node without a listen address")?;
        boots.push(addr);
        tim.push(node);
        events.push(ev);
    }
    println!(
        "started {nodes} tim nodes in {:.1} s; letting them settle",
        started.elapsed().as_secs_f64()
    );
    println!(
        "idle after {:.1} s",
        settle(Duration::from_secs(120), quiet).await.as_secs_f64()
    );
    let tim_rss = (rss_mb() - rss_before) / nodes as f64;
    let mut peers = Vec::with_capacity(nodes);
    for n in &tim {
        peers.push(n.status().await?.peers);
    }
    let (c50, c99, cmax) = spread(&peers);
    println!("tim: connected peers per node p50 {c50}, p99 {c99}, max {cmax}; memory per node {tim_rss:.1} MB");
    let tim_idle = idle_cpu().await;
    println!(
        "tim idle: {:.2} ms of CPU per node per second",
        tim_idle.as_secs_f64() * 1e3 / nodes as f64
    );

    // The room: random members, the publisher among them; the late member is not.
    let mut order: Vec<usize> = (0..nodes).collect();
    order.shuffle(&mut rand::thread_rng());
    let late = order[members];
    let member_idx: Vec<usize> = order[..members].to_vec();
    let publisher = member_idx[0];
    let room = RoomId::new("simulation")?;
    // Every member joins at once; each one's time to find the room counts from its own join.
    let joined = Instant::now();
    let mut finding = Vec::with_capacity(members);
    for &i in &member_idx {
        let (node, room) = (tim[i].clone(), room.clone());
        finding.push(tokio::spawn(async move {
            let t = Instant::now();
            node.join(room.clone()).await?;
            while room_peers(&node, &room).await? == 0 {
                if t.elapsed() > STEP * 2 {
                    bail!("a member did not find the room");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok(t.elapsed())
        }));
    }
    let mut find = Vec::with_capacity(members);
    for f in finding {
        find.push(f.await??);
    }
    let find_wall = joined.elapsed();
    println!(
        "every member found the room within {:.1} s; settling",
        find_wall.as_secs_f64()
    );
    settle(Duration::from_secs(120), quiet).await;

    // The graph tim ended up with, rebuilt for bare gossipsub.
    let index: HashMap<PeerId, usize> = tim.iter().enumerate().map(|(i, n)| (n.peer_id(), i)).collect();
    let mut edges = HashSet::new();
    for (i, n) in tim.iter().enumerate() {
        for c in n.status().await?.connections {
            if let Some(&j) = index.get(&c.peer) {
                edges.insert((i.min(j), i.max(j)));
            }
        }
    }
    let edges: Vec<(usize, usize)> = edges.into_iter().collect();
    println!(
        "tim's graph has {} connections; starting bare gossipsub on it",
        edges.len()
    );
    let rss_before_bare = rss_mb();
    let mut bare = BareNetwork::start(nodes, &edges, &member_idx, publisher).await?;
    let bare_rss = (rss_mb() - rss_before_bare) / nodes as f64;
    println!(
        "bare gossipsub on the same {} connections; memory per node {bare_rss:.1} MB",
        edges.len()
    );
    settle(Duration::from_secs(15), quiet).await;
    // What both networks cost while nothing is published: taken off each phase's CPU below, so
    // CPU per publication is the work publications cause.
    let idle = idle_cpu().await;
    println!(
        "both networks idle: {:.0} ms of CPU per second",
        idle.as_secs_f64() * 1e3
    );

    // Every member's events, forwarded with the moment they were seen.
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<Seen>();
    let mut watchers = Vec::new();
    for (i, mut ev) in events.into_iter().enumerate() {
        let tx = seen_tx.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(e) = ev.next().await {
                let sighting = match e {
                    Event::Message { mid, .. } => (i, mid, false, Instant::now()),
                    Event::Revoked { mid, .. } => (i, mid, true, Instant::now()),
                    _ => continue,
                };
                if tx.send(sighting).is_err() {
                    return;
                }
            }
        }));
    }
    let others: HashSet<usize> = member_idx[1..].iter().copied().collect();
    let (mut stored, mut tombstoned, mut bare_samples) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tim_cpu, mut bare_cpu, mut tim_wall, mut bare_wall) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    // The wall time of the messages and of the revokes apart, for their rows' rates.
    let (mut message_wall, mut revoke_wall) = (Duration::ZERO, Duration::ZERO);
    let rounds = count.div_ceil(ROUND).max(1);
    for _ in 0..rounds {
        let (t, cpu) = (Instant::now(), cpu_time());
        for _ in 0..ROUND {
            bare_samples.push(bare.publish().await?);
        }
        bare_wall += t.elapsed();
        bare_cpu += cpu_time() - cpu;
        settle(Duration::from_secs(15), quiet).await;
        let (t, cpu) = (Instant::now(), cpu_time());
        for _ in 0..ROUND {
            let sent_at = Instant::now();
            let sent = tim[publisher]
                .send(Recipient::Room(room.clone()), b"simulated room message".to_vec(), None)
                .await?;
            stored.push(last_seen(&mut seen, &others, sent.mid, false, sent_at).await?);
            message_wall += sent_at.elapsed();
            let revoked_at = Instant::now();
            tim[publisher].revoke(sent.mid).await?;
            tombstoned.push(last_seen(&mut seen, &others, sent.mid, true, revoked_at).await?);
            revoke_wall += revoked_at.elapsed();
        }
        tim_wall += t.elapsed();
        tim_cpu += cpu_time() - cpu;
        settle(Duration::from_secs(15), quiet).await;
    }
    let publications = stored.len();

    // A member joining late.
    let t = Instant::now();
    tim[late].join(room.clone()).await?;
    let late_found = loop {
        if room_peers(&tim[late], &room).await? >= 1 {
            break t.elapsed();
        }
        if t.elapsed() > STEP {
            bail!("the late member did not find the room");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let mut after = Vec::with_capacity(nodes);
    for n in &tim {
        after.push(n.status().await?.peers);
    }
    let (a50, a99, amax) = spread(&after);
    println!("tim after the room: connected peers per node p50 {a50}, p99 {a99}, max {amax}");
    let revoke_p99 = percentile_of(&tombstoned, 0.99);
    let bare_p99 = percentile_of(&bare_samples, 0.99);
    println!(
        "revoke p99 / bare gossipsub p99 on the same graph: {:.2}x",
        revoke_p99.as_secs_f64() / bare_p99.as_secs_f64().max(1e-9)
    );
    let per = |cpu: Duration, wall: Duration, n: usize| {
        (cpu.as_secs_f64() - idle.as_secs_f64() * wall.as_secs_f64()).max(0.0) * 1e3 / n.max(1) as f64
    };
    println!(
        "CPU per publication above idle: bare gossipsub {:.1} ms, tim {:.1} ms (a message and its revoke are two)",
        per(bare_cpu, bare_wall, bare_samples.len()),
        per(tim_cpu, tim_wall, 2 * publications)
    );
    for w in watchers {
        w.abort();
    }
    for n in &tim {
        let _ = n.shutdown().await;
    }
    Ok(vec![
        Row::new(
            &format!("{members} members find the room (join → a room peer)"),
            find,
            find_wall,
        ),
        Row::new(
            &format!("bare gossipsub to the last of {} (same graph)", members - 1),
            bare_samples,
            bare_wall,
        )
        .with_cpu(bare_cpu),
        // The CPU of the tim phase covers each message and its revoke.
        Row::new(
            &format!("tim room message to the last of {} stored", members - 1),
            stored,
            message_wall,
        )
        .with_cpu(tim_cpu),
        Row::new(
            &format!("tim revoke until the last of {} tombstoned", members - 1),
            tombstoned,
            revoke_wall,
        ),
        Row::new("late member: join → a room peer", vec![late_found], late_found),
    ])
}

/// Peers subscribed to `room` as `node` sees them.
async fn room_peers(node: &Node, room: &RoomId) -> anyhow::Result<usize> {
    Ok(node
        .status()
        .await?
        .rooms
        .iter()
        .find(|r| r.room == *room)
        .map_or(0, |r| r.peers))
}

/// Waits until every member of `waiting` reported `mid` (stored, or tombstoned with `revoked`);
/// the time from `since` to the last of them.
async fn last_seen(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    waiting: &HashSet<usize>,
    mid: MessageId,
    revoked: bool,
    since: Instant,
) -> anyhow::Result<Duration> {
    let mut left = waiting.clone();
    let mut last = since;
    let deadline = tokio::time::Instant::now() + STEP;
    while !left.is_empty() {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some((i, m, r, at))) if m == mid && r == revoked => {
                if left.remove(&i) {
                    last = last.max(at);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("the event tasks stopped"),
            Err(_) => bail!(
                "{} of {} members did not see the {}",
                left.len(),
                waiting.len(),
                if revoked { "revoke" } else { "message" }
            ),
        }
    }
    Ok(last - since)
}

/// The process's CPU time per second, over five seconds.
async fn idle_cpu() -> Duration {
    let cpu = cpu_time();
    tokio::time::sleep(Duration::from_secs(5)).await;
    (cpu_time() - cpu) / 5
}

/// p50, p99 and max of `v`.
fn spread(v: &[usize]) -> (usize, usize, usize) {
    let mut v = v.to_vec();
    v.sort_unstable();
    let at = |q: f64| {
        v.get(((v.len().saturating_sub(1)) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    (at(0.5), at(0.99), at(1.0))
}

/// Waits (at most `limit`) until the process is quiet: under `quiet` of CPU over a second (the
/// network's idle cost is part of it, and grows with the nodes), so start-up work (Kademlia
/// bootstrap, route publishing, room discovery and sync) is not measured.
async fn settle(limit: Duration, quiet: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let cpu = cpu_time();
        tokio::time::sleep(Duration::from_secs(1)).await;
        if cpu_time() - cpu <= quiet {
            return started.elapsed();
        }
        if started.elapsed() >= limit {
            println!("(not quiet within {limit:?}: the idle network alone is busier than {quiet:?} a second)");
            return started.elapsed();
        }
    }
}
