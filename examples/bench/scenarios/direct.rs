//! `direct`: 1:1 send-to-ack latency and throughput, against a bare request-response echo.
use std::time::{Duration, Instant};

use anyhow::Context;
use tim_node::{protocol::Recipient, Event};

use crate::{
    baselines::BareEcho,
    report::{cpu_time, rss_mb, Row},
    scenarios::tim_nodes,
    STEP,
};

/// Rounds the latency samples are taken in, bare echo and tim alternating, so both see the same
/// moments of this shared machine.
const DIRECT_ROUNDS: usize = 10;

pub(crate) async fn direct(count: usize) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let mut nodes = tim_nodes(2, dir.path()).await?;
    let (b, _) = nodes.pop().context("two nodes")?;
    let (a, mut a_ev) = nodes.pop().context("two nodes")?;
    tokio::time::timeout(STEP, async {
        while a.lookup(b.account()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    // B has written to A once, as in any conversation: A is not a stranger at B, whose stranger
    // quota (100 messages until answered) would otherwise refuse most of the run.
    b.send(Recipient::Account(a.account()), b"hello".to_vec(), None).await?;
    let mut echo = BareEcho::start(400).await?;
    let body = vec![b'x'; 200];
    let mut tim_trip = async || -> anyhow::Result<Duration> {
        let t = Instant::now();
        let sent = a.send(Recipient::Account(b.account()), body.clone(), None).await?;
        tokio::time::timeout(STEP, async {
            while let Some(e) = a_ev.next().await {
                if matches!(e, Event::Delivered { mid, .. } if mid == sent.mid) {
                    return;
                }
            }
        })
        .await?;
        Ok(t.elapsed())
    };
    // Warm both up (connections, pipes, caches), then alternate rounds.
    for _ in 0..20 {
        echo.round_trip().await?;
        tim_trip().await?;
    }
    let per_round = count.div_ceil(DIRECT_ROUNDS);
    let (mut bare, mut tim) = (Vec::new(), Vec::new());
    let (mut bare_wall, mut tim_wall) = (Duration::ZERO, Duration::ZERO);
    let (mut bare_cpu, mut tim_cpu) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..DIRECT_ROUNDS {
        let (t, cpu) = (Instant::now(), cpu_time());
        for _ in 0..per_round {
            bare.push(echo.round_trip().await?);
        }
        bare_wall += t.elapsed();
        bare_cpu += cpu_time() - cpu;
        let (t, cpu) = (Instant::now(), cpu_time());
        for _ in 0..per_round {
            tim.push(tim_trip().await?);
        }
        tim_wall += t.elapsed();
        tim_cpu += cpu_time() - cpu;
    }
    let bare = Row::new("bare libp2p request-response echo", bare, bare_wall).with_cpu(bare_cpu);
    let tim = Row::new("tim 1:1 send until the delivery ack (200 B)", tim, tim_wall).with_cpu(tim_cpu);
    let bare_rate = echo.throughput(count).await?;
    // Throughput: send `count` messages back to back, until every delivery ack is in.
    let started = Instant::now();
    let cpu = cpu_time();
    for _ in 0..count {
        a.send(Recipient::Account(b.account()), body.clone(), None).await?;
    }
    // Done when the outbox is empty: every message acknowledged (events may lag at this rate).
    tokio::time::timeout(Duration::from_secs(300), async {
        while a.metrics().outbox_depth > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await?;
    let tim_rate = Row::new("tim direct throughput (sends back to back)", vec![], started.elapsed())
        .with_count(count)
        .with_cpu(cpu_time() - cpu);
    println!(
        "rss of this process with 2 tim nodes and the bare echo: {:.0} MB",
        rss_mb()
    );
    println!(
        "p50 ratio tim / bare: {:.2}x; throughput share: {:.1} %",
        tim.quantile(0.5).as_secs_f64() / bare.quantile(0.5).as_secs_f64().max(1e-9),
        100.0 * tim_rate.rate() / bare_rate.rate().max(1e-9)
    );
    Ok(vec![bare, bare_rate, tim, tim_rate])
}
