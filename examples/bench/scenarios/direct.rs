//! `direct`: 1:1 send-to-ack latency and throughput, against a bare request-response echo, with
//! end-to-end encryption on (the default) and off (`Config::seal_direct = false`) in the same run.
use std::time::{Duration, Instant};

use anyhow::Context;
use tim_node::{protocol::Recipient, Event, Events, Node};

use crate::{
    baselines::BareEcho,
    report::{cpu_time, rss_mb, Row},
    scenarios::tim_nodes_with,
    STEP,
};

/// Rounds the latency samples are taken in, bare echo and tim alternating, so both see the same
/// moments of this shared machine.
const DIRECT_ROUNDS: usize = 10;

/// Two tim nodes that have talked once, so the sender is no stranger at the receiver (whose
/// stranger quota, 100 messages until answered, would otherwise refuse most of the run).
async fn pair(dir: &std::path::Path, seal: bool) -> anyhow::Result<(Node, Events, Node)> {
    let mut nodes = tim_nodes_with(2, dir, |c| c.seal_direct = seal).await?;
    let (b, _) = nodes.pop().context("two nodes")?;
    let (a, a_ev) = nodes.pop().context("two nodes")?;
    tokio::time::timeout(STEP, async {
        while a.lookup(b.account()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    b.send(Recipient::Account(a.account()), b"hello".to_vec(), None).await?;
    Ok((a, a_ev, b))
}

/// One send from `a` to `b` until its delivery ack.
async fn trip(a: &Node, a_ev: &mut Events, b: &Node, body: &[u8]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let sent = a.send(Recipient::Account(b.account()), body.to_vec(), None).await?;
    tokio::time::timeout(STEP, async {
        while let Some(e) = a_ev.next().await {
            if matches!(e, Event::Delivered { mid, .. } if mid == sent.mid) {
                return;
            }
        }
    })
    .await?;
    Ok(t.elapsed())
}

/// Latency samples with the wall and CPU time they took.
#[derive(Default)]
struct Samples {
    samples: Vec<Duration>,
    wall: Duration,
    cpu: Duration,
}

impl Samples {
    async fn take<F: AsyncFnMut() -> anyhow::Result<Duration>>(&mut self, n: usize, mut one: F) -> anyhow::Result<()> {
        let (t, cpu) = (Instant::now(), cpu_time());
        for _ in 0..n {
            self.samples.push(one().await?);
        }
        self.wall += t.elapsed();
        self.cpu += cpu_time() - cpu;
        Ok(())
    }

    fn row(self, name: &str) -> Row {
        Row::new(name, self.samples, self.wall).with_cpu(self.cpu)
    }
}

pub(crate) async fn direct(count: usize) -> anyhow::Result<Vec<Row>> {
    let (sealed_dir, plain_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (a, mut a_ev, b) = pair(sealed_dir.path(), true).await?;
    let (c, mut c_ev, d) = pair(plain_dir.path(), false).await?;
    let mut echo = BareEcho::start(400).await?;
    let body = vec![b'x'; 200];
    // Warm all up (connections, pipes, caches), then alternate rounds.
    for _ in 0..20 {
        echo.round_trip().await?;
        trip(&a, &mut a_ev, &b, &body).await?;
        trip(&c, &mut c_ev, &d, &body).await?;
    }
    let per_round = count.div_ceil(DIRECT_ROUNDS);
    let (mut bare, mut sealed, mut plain) = (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..DIRECT_ROUNDS {
        bare.take(per_round, async || echo.round_trip().await).await?;
        sealed
            .take(per_round, async || trip(&a, &mut a_ev, &b, &body).await)
            .await?;
        plain
            .take(per_round, async || trip(&c, &mut c_ev, &d, &body).await)
            .await?;
    }
    drop((c, c_ev, d));
    let bare = bare.row("bare libp2p request-response echo");
    let tim = sealed.row("tim 1:1 send until the delivery ack (200 B, encrypted)");
    let plain = plain.row("tim 1:1 send until the delivery ack (200 B, plain)");
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
    let p50 = |r: &Row| r.quantile(0.5).as_secs_f64().max(1e-9);
    println!(
        "p50 ratio tim / bare: {:.2}x (plain: {:.2}x); encrypted / plain: {:.2}x; throughput share: {:.1} %",
        p50(&tim) / p50(&bare),
        p50(&plain) / p50(&bare),
        p50(&tim) / p50(&plain),
        100.0 * tim_rate.rate() / bare_rate.rate().max(1e-9)
    );
    Ok(vec![bare, bare_rate, tim, plain, tim_rate])
}
