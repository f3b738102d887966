//! `room`: fan-out and revoke convergence in a room, against bare gossipsub as a star and with
//! every member connected to every other.
use std::time::{Duration, Instant};

use tim_node::{
    protocol::{Recipient, RoomId},
    Event, Events, Node,
};

use crate::{
    baselines::BareRoom,
    report::{cpu_time, percentile_of, rss_mb, tcp_segments, Row},
    scenarios::{tim_nodes_with, wait_room_peers},
    STEP,
};

/// Publications per round of a room benchmark: tim and both bare baselines alternate round by
/// round, so all three see the same moments of this shared machine; a round of tim is short
/// enough (well under `shred_delay`) that its deferred shred pass falls in the pause after it.
const ROOM_ROUND: usize = 50;

/// A phase's samples, wall time, CPU and TCP segments, gathered over several rounds.
#[derive(Default)]
struct Phase {
    samples: Vec<Duration>,
    more: Vec<Duration>,
    wall: Duration,
    cpu: Duration,
    segments: u64,
}

impl Phase {
    async fn run<F: AsyncFnMut() -> anyhow::Result<(Duration, Option<Duration>)>>(
        &mut self,
        n: usize,
        mut step: F,
    ) -> anyhow::Result<()> {
        let (t, cpu, segments) = (Instant::now(), cpu_time(), tcp_segments());
        for _ in 0..n {
            let (a, b) = step().await?;
            self.samples.push(a);
            self.more.extend(b);
        }
        self.wall += t.elapsed();
        self.cpu += cpu_time() - cpu;
        self.segments += tcp_segments() - segments;
        Ok(())
    }
}

/// Which phases a room run measures: all of them, or one side alone for profiling it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phases {
    All,
    TimOnly,
    /// The bare all-connected baseline alone.
    BareOnly,
}

/// `receipts`: whether members send deletion receipts to the revoker (`Config::deletion_receipts`).
/// `private`: a private founded room, whose posts are sealed to its members (end-to-end
/// encrypted), instead of an open room.
pub(crate) async fn room(
    members: usize,
    count: usize,
    phases: Phases,
    receipts: bool,
    private: bool,
) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let mut nodes = tim_nodes_with(members + 1, dir.path(), |c| c.deletion_receipts = receipts).await?;
    let room = if private {
        private_room(&mut nodes).await?
    } else {
        let room = RoomId::new("bench")?;
        for (n, _) in &nodes {
            n.join(room.clone()).await?;
        }
        room
    };
    let kind = if private { "private, encrypted" } else { "open" };
    println!("room: {kind}");
    let publisher = nodes[0].0.clone();
    wait_room_peers(&publisher, &room, members).await?;
    let mut star = BareRoom::start(members, false).await?;
    let mut full = BareRoom::start(members, true).await?;
    println!("settled after {:.1} s", settle().await.as_secs_f64());
    let mut connected = 0;
    for (n, _) in &nodes {
        connected += n.status().await?.peers;
    }
    println!(
        "tim nodes are connected to {:.1} peers on average (of {members})",
        connected as f64 / nodes.len() as f64
    );
    let mut tim_step = async || -> anyhow::Result<(Duration, Option<Duration>)> {
        let t = Instant::now();
        let sent = publisher
            .send(Recipient::Room(room.clone()), b"room message".to_vec(), None)
            .await?;
        wait_all(
            &mut nodes[1..],
            |e| matches!(e, Event::Message { mid, .. } if *mid == sent.mid),
        )
        .await?;
        let fanout = t.elapsed();
        let t = Instant::now();
        publisher.revoke(sent.mid).await?;
        wait_all(
            &mut nodes[1..],
            |e| matches!(e, Event::Revoked { mid, .. } if *mid == sent.mid),
        )
        .await?;
        Ok((fanout, Some(t.elapsed())))
    };
    let (mut tim, mut bare_star, mut bare_full) = (Phase::default(), Phase::default(), Phase::default());
    let rounds = count.div_ceil(ROOM_ROUND).max(1);
    let per_round = count.div_ceil(rounds);
    for _ in 0..rounds {
        match phases {
            Phases::TimOnly => {
                tim.run(per_round, &mut tim_step).await?;
                continue;
            }
            Phases::BareOnly => {
                bare_full
                    .run(per_round, async || Ok((full.publish().await?, None)))
                    .await?;
                continue;
            }
            Phases::All => {}
        }
        bare_star
            .run(per_round, async || Ok((star.publish().await?, None)))
            .await?;
        bare_full
            .run(per_round, async || Ok((full.publish().await?, None)))
            .await?;
        tim.run(per_round, &mut tim_step).await?;
        // tim's deferred work (the shred pass `shred_delay` after the revokes, RocksDB flushes)
        // happens here, not during the next round's baselines.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        settle().await;
    }
    println!(
        "rss of this process with {} tim nodes and the baselines: {:.0} MB",
        members + 1,
        rss_mb()
    );
    let per = |p: &Phase, publications: usize| p.segments as f64 / publications.max(1) as f64;
    println!(
        "TCP segments per publication (machine-wide): bare star {:.0}, bare all connected {:.0}, tim {:.0}",
        per(&bare_star, bare_star.samples.len()),
        per(&bare_full, bare_full.samples.len()),
        per(&tim, 2 * tim.samples.len()),
    );
    let bare_row = |p: Phase, graph: &str| {
        Row::new(
            &format!("bare gossipsub to the last of {members} ({graph})"),
            p.samples,
            p.wall,
        )
        .with_cpu(p.cpu)
    };
    let revoke_p99 = percentile_of(&tim.more, 0.99);
    let full_p99 = percentile_of(&bare_full.samples, 0.99);
    println!(
        "revoke p99 / bare all-connected p99: {:.2}x",
        revoke_p99.as_secs_f64() / full_p99.as_secs_f64().max(1e-9)
    );
    Ok(vec![
        bare_row(bare_star, star.graph),
        bare_row(bare_full, full.graph),
        // The CPU of the tim phase covers each message and its revoke.
        Row::new(
            &format!("tim room message to the last of {members} ({kind})"),
            tim.samples,
            tim.wall,
        )
        .with_cpu(tim.cpu),
        Row::new(
            &format!("tim revoke until the last of {members} tombstoned ({kind})"),
            tim.more,
            tim.wall,
        ),
    ])
}

/// A private room founded by the first node, every other node invited and joined.
async fn private_room(nodes: &mut [(Node, Events)]) -> anyhow::Result<RoomId> {
    let founder = nodes[0].0.clone();
    let room = founder.create_room("bench".into(), true).await?.room;
    for (n, _) in &nodes[1..] {
        tokio::time::timeout(STEP, async {
            while founder.lookup(n.account()).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await?;
        founder.invite(room.clone(), n.account()).await?;
    }
    wait_all(&mut nodes[1..], |e| matches!(e, Event::RoomInvite { .. })).await?;
    for (n, _) in &nodes[1..] {
        n.join(room.clone()).await?;
    }
    let want = nodes.len();
    tokio::time::timeout(STEP, async {
        while founder.room(&room).map(|s| s.members.len()).unwrap_or(0) < want {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    Ok(room)
}

/// Waits (at most a minute) until the process is quiet: under 5 % of a core over half a second,
/// so start-up work (Kademlia bootstrap, route publishing, first room syncs) is not measured.
async fn settle() -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let cpu = cpu_time();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if cpu_time() - cpu <= Duration::from_millis(25) {
            break;
        }
    }
    started.elapsed()
}

/// Waits until every node has seen an event matching `pred`.
async fn wait_all(nodes: &mut [(Node, Events)], pred: impl Fn(&Event) -> bool) -> anyhow::Result<()> {
    for (_, events) in nodes.iter_mut() {
        tokio::time::timeout(STEP, async {
            while let Some(e) = events.next().await {
                if pred(&e) {
                    return;
                }
            }
        })
        .await?;
    }
    Ok(())
}
