//! `catchup` and `ingest`: a member returns after missing messages (and revokes of some), and
//! converges through room sync; against a bare ed25519 verify loop.
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tim_node::{
    protocol::{Recipient, RoomId},
    Config, Event, Node,
};

use crate::{
    baselines::bare_verify,
    report::{cpu_time, Row},
    scenarios::wait_room_peers,
};

/// A member misses `count` room messages and `revokes` revokes of them while stopped, then
/// returns: the time from its restart until it stored every surviving message and applied every
/// tombstone (verified exactly as gossip), checking it never showed a revoked message.
pub(crate) async fn catchup(count: usize, revokes: usize) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let room = RoomId::new("catchup")?;
    let mut a_config = Config::loopback(dir.path().join("a"));
    a_config.sync_window = 2 * (count + revokes) + 100;
    let (a, _a_events) = Node::start(a_config).await?;
    let boot = a.status().await?.listen_addrs;
    let mut c_config = Config::loopback(dir.path().join("c"));
    c_config.bootstrap = boot;
    c_config.event_capacity = count + revokes + 1_000;
    // The room's window of a stranger's messages would evict the oldest beyond 10,000; not what
    // this scenario measures.
    c_config.room_stranger_messages = usize::MAX;
    let (c, _) = Node::start(c_config.clone()).await?;
    a.join(room.clone()).await?;
    c.join(room.clone()).await?;
    wait_room_peers(&a, &room, 1).await?;
    c.shutdown().await?;
    drop(c);
    // While C is away: `count` messages, every (count / revokes)-th of them revoked.
    let started = Instant::now();
    let mut revoked = std::collections::HashSet::new();
    let every = count.checked_div(revokes).unwrap_or(usize::MAX).max(1);
    for k in 0..count {
        let sent = a
            .send(
                Recipient::Room(room.clone()),
                format!("missed message {k:0>190}").into_bytes(),
                None,
            )
            .await?;
        if revoked.len() < revokes && k % every == 0 {
            revoked.insert(sent.mid);
        }
    }
    for mid in &revoked {
        a.revoke(*mid).await?;
    }
    println!(
        "A sent {count} messages and revoked {} in {:.2} s while C was stopped",
        revoked.len(),
        started.elapsed().as_secs_f64()
    );
    // C returns.
    let started = Instant::now();
    let cpu = cpu_time();
    let (c, mut c_events) = Node::start(c_config).await?;
    let want = (count - revoked.len()) as u64;
    let shown = tokio::spawn(async move {
        let mut shown = std::collections::HashSet::new();
        while let Some(e) = c_events.next().await {
            if let Event::Message { mid, .. } = e {
                shown.insert(mid);
            }
        }
        shown
    });
    tokio::time::timeout(Duration::from_secs(600), async {
        loop {
            let m = c.metrics();
            if m.messages_in >= want && m.revokes_applied >= revoked.len() as u64 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .context("C did not converge")?;
    let wall = started.elapsed();
    let cpu = cpu_time() - cpu;
    let pages = c.metrics().sync_pages_applied;
    c.shutdown().await?;
    drop(c);
    let shown = shown.await?;
    let leaked = shown.intersection(&revoked).count();
    println!(
        "C converged in {:.3} s over {pages} sync pages; revoked messages it showed: {leaked}",
        wall.as_secs_f64()
    );
    if leaked > 0 || shown.len() as u64 != want {
        bail!(
            "C showed {} messages ({leaked} of them revoked), expected {want}",
            shown.len()
        );
    }
    let mut rows = vec![Row::new(
        &format!("tim catch-up: {count} missed, {} revoked", revoked.len()),
        vec![wall],
        wall,
    )
    .with_count(count)
    .with_cpu(cpu)];
    rows.push(bare_verify(count)?);
    Ok(rows)
}
