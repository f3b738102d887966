//! Benchmark harness: tim against bare rust-libp2p on the same transport, in the same run.
//!
//! `cargo run --release -p tim-node --example bench -- <scenario> [options]`, scenarios:
//! - `direct [--count 500]`: 1:1 send-to-ack latency and throughput vs a bare request-response echo
//!   (latency taken in alternating rounds of both);
//! - `room [--members 10] [--count 200] [--tim-only|--bare-only]`: fan-out and revoke convergence
//!   vs bare gossipsub as a star and all connected (alternating rounds; `--tim-only` skips the
//!   baselines, `--bare-only` runs only the all-connected one; both for profiling);
//! - `catchup [--count 1000] [--revokes count/20]`: a member that missed messages and revokes
//!   returns; time until it converged;
//! - `ingest [--count 10000]`: messages verified and stored per second by one node (through room
//!   sync) vs a bare ed25519 verify loop;
//! - `storage [--count 1000000]`: history pages, restart time, RSS and disk with that many messages.
//!
//! Prints the machine, a table (p50 / p99 / max, throughput, CPU time of the phase) and writes
//! `bench-<scenario>.json`.
use std::{
    collections::HashMap,
    io,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{
    gossipsub, noise,
    request_response::{self, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, StreamProtocol, Swarm,
};
use sha2::{Digest, Sha256};
use tim_node::{
    protocol::{Recipient, RoomId},
    Config, Event, Events, Node,
};

const STEP: Duration = Duration::from_secs(30);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Row {
    name: String,
    samples: Vec<Duration>,
    wall: Duration,
    /// Items done in `wall` (the samples' count unless set).
    count: usize,
    /// Process CPU time (user + system, all threads) spent in the row's phase, when measured.
    cpu: Option<Duration>,
}

impl Row {
    fn new(name: &str, mut samples: Vec<Duration>, wall: Duration) -> Row {
        samples.sort();
        let count = samples.len();
        Row {
            name: name.into(),
            samples,
            wall,
            count,
            cpu: None,
        }
    }

    fn with_cpu(mut self, cpu: Duration) -> Row {
        self.cpu = Some(cpu);
        self
    }

    fn with_count(mut self, count: usize) -> Row {
        self.count = count;
        self
    }
    fn quantile(&self, q: f64) -> Duration {
        percentile(&self.samples, q)
    }

    fn rate(&self) -> f64 {
        self.count as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        serde_json::json!({
            "name": self.name, "n": self.count,
            "p50_ms": ms(percentile(&self.samples, 0.5)), "p99_ms": ms(percentile(&self.samples, 0.99)),
            "max_ms": ms(percentile(&self.samples, 1.0)),
            "per_sec": self.count as f64 / self.wall.as_secs_f64(),
            "wall_ms": ms(self.wall),
            "cpu_ms": self.cpu.map(ms),
        })
    }
}

fn print_table(rows: &[Row]) {
    let rss = rss_mb();
    println!(
        "{:<48} {:>7} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "measurement", "n", "p50 ms", "p99 ms", "max ms", "per s", "cpu ms"
    );
    for r in rows {
        let j = r.json();
        let cpu = j["cpu_ms"]
            .as_f64()
            .map(|c| format!("{c:.0}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<48} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>10.0} {:>9}",
            r.name,
            j["n"],
            j["p50_ms"].as_f64().unwrap_or(0.0),
            j["p99_ms"].as_f64().unwrap_or(0.0),
            j["max_ms"].as_f64().unwrap_or(0.0),
            j["per_sec"].as_f64().unwrap_or(0.0),
            cpu
        );
    }
    println!("process rss at the end: {rss:.0} MB");
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    format!(
        "{} cores, {cpu}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    )
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// TCP segments sent on this machine so far (`OutSegs` in `/proc/net/snmp`; machine-wide, so
/// read it only while nothing else talks): how many packets a phase cost on loopback.
fn tcp_segments() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "OutSegs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of this process so far (user + system, every thread), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start at `state`.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

// ---------- bare libp2p baselines ----------

#[derive(Clone, Default)]
struct EchoCodec;

/// Reads a whole stream (at most 1 MiB): requests and responses alike.
async fn read_all<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut b = Vec::new();
    io.take(1 << 20).read_to_end(&mut b).await?;
    Ok(b)
}

#[async_trait::async_trait]
impl request_response::Codec for EchoCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;
    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_all(io).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_all(io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&r).await?;
        io.close().await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&r).await?;
        io.close().await
    }
}

fn tcp_swarm<B: NetworkBehaviour>(behaviour: impl FnOnce() -> B) -> anyhow::Result<Swarm<B>> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| behaviour())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

async fn listen<B: NetworkBehaviour>(s: &mut Swarm<B>) -> anyhow::Result<Multiaddr> {
    s.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = s.select_next_some().await {
            return Ok(address.with(libp2p::multiaddr::Protocol::P2p(*s.local_peer_id())));
        }
    }
}

type EchoBehaviour = request_response::Behaviour<EchoCodec>;

/// A bare request-response echo over TCP + noise + yamux: a server task, and a client swarm that
/// the bench task drives itself.
struct BareEcho {
    client: Swarm<EchoBehaviour>,
    server_id: libp2p::PeerId,
    server: tokio::task::JoinHandle<()>,
    payload: Vec<u8>,
}

impl BareEcho {
    async fn start(size: usize) -> anyhow::Result<BareEcho> {
        let rr = || {
            request_response::Behaviour::with_codec(
                EchoCodec,
                [(StreamProtocol::new("/echo/1"), ProtocolSupport::Full)],
                request_response::Config::default(),
            )
        };
        let mut server = tcp_swarm(rr)?;
        let mut client = tcp_swarm(rr)?;
        let addr = listen(&mut server).await?;
        let server_id = *server.local_peer_id();
        let server = tokio::spawn(async move {
            loop {
                if let SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Request { request, channel, .. },
                    ..
                }) = server.select_next_some().await
                {
                    let _ = server.behaviour_mut().send_response(channel, request);
                }
            }
        });
        client.dial(addr)?;
        Ok(BareEcho {
            client,
            server_id,
            server,
            payload: vec![7u8; size],
        })
    }

    /// Waits for `n` responses.
    async fn responses(&mut self, n: usize) -> anyhow::Result<()> {
        let mut done = 0;
        while done < n {
            match self.client.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { .. },
                    ..
                }) => done += 1,
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                    bail!("echo failed: {error}")
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn round_trip(&mut self) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let payload = self.payload.clone();
        self.client.behaviour_mut().send_request(&self.server_id, payload);
        self.responses(1).await?;
        Ok(t.elapsed())
    }

    /// Keeps 64 requests in flight until `count` are answered.
    async fn throughput(&mut self, count: usize) -> anyhow::Result<Row> {
        let started = Instant::now();
        let cpu = cpu_time();
        let (mut sent, mut done) = (0, 0);
        while done < count {
            while sent < count && sent - done < 64 {
                let payload = self.payload.clone();
                self.client.behaviour_mut().send_request(&self.server_id, payload);
                sent += 1;
            }
            self.responses(1).await?;
            done += 1;
        }
        Ok(
            Row::new("bare echo throughput, 64 in flight", vec![], started.elapsed())
                .with_count(count)
                .with_cpu(cpu_time() - cpu),
        )
    }
}

impl Drop for BareEcho {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(NetworkBehaviour)]
struct Gossip {
    gossipsub: gossipsub::Behaviour,
}

/// Bare gossipsub with tim's mesh parameters and no application validation: a publisher's hub
/// and `members` subscribers, each driven by its own task. Members connect to the hub (as tim's
/// bootstrap); with `full_mesh` every member also connects to every other member: the connection
/// graph tim's nodes end up with once Kademlia has introduced them, so both mesh over the same
/// graph.
struct BareRoom {
    hub: Swarm<Gossip>,
    topic: gossipsub::IdentTopic,
    members: usize,
    received: tokio::sync::mpsc::UnboundedReceiver<(usize, Vec<u8>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sent: usize,
    graph: &'static str,
}

impl BareRoom {
    async fn start(members: usize, full_mesh: bool) -> anyhow::Result<BareRoom> {
        let topic = gossipsub::IdentTopic::new("bench");
        let make = || -> anyhow::Result<Swarm<Gossip>> {
            tcp_swarm(|| {
                let config = gossipsub::ConfigBuilder::default()
                    .validation_mode(gossipsub::ValidationMode::Anonymous)
                    .message_id_fn(|m: &gossipsub::Message| gossipsub::MessageId::from(&Sha256::digest(&m.data)[..20]))
                    .heartbeat_interval(Duration::from_millis(500))
                    .build()
                    .unwrap_or_else(|_| unreachable!("static gossipsub config"));
                Gossip {
                    gossipsub: gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)
                        .unwrap_or_else(|_| unreachable!("anonymous authenticity matches the validation mode")),
                }
            })
        };
        let (tx, received) = tokio::sync::mpsc::unbounded_channel::<(usize, Vec<u8>)>();
        let mut hub = make()?;
        let hub_addr = listen(&mut hub).await?;
        hub.behaviour_mut().gossipsub.subscribe(&topic)?;
        let mut tasks = Vec::new();
        let mut member_addrs = Vec::new();
        for i in 0..members {
            let mut s = make()?;
            s.behaviour_mut().gossipsub.subscribe(&topic)?;
            if full_mesh {
                let addr = listen(&mut s).await?;
                for earlier in &member_addrs {
                    s.dial(Multiaddr::clone(earlier))?;
                }
                member_addrs.push(addr);
            }
            s.dial(hub_addr.clone())?;
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    if let SwarmEvent::Behaviour(GossipEvent::Gossipsub(gossipsub::Event::Message {
                        message, ..
                    })) = s.select_next_some().await
                    {
                        let _ = tx.send((i, message.data));
                    }
                }
            }));
        }
        let mut room = BareRoom {
            hub,
            topic,
            members,
            received,
            tasks,
            sent: 0,
            graph: if full_mesh { "all connected" } else { "star" },
        };
        // Wait until the hub knows every member's subscription (slow when many nodes share the
        // process), then let the mesh form (a few heartbeats), driving the hub meanwhile.
        let until = Instant::now() + Duration::from_secs(60);
        let hash = room.topic.hash();
        while Instant::now() < until {
            let subscribed = room
                .hub
                .behaviour()
                .gossipsub
                .all_peers()
                .filter(|(_, topics)| topics.contains(&&hash))
                .count();
            if subscribed >= members {
                break;
            }
            room.drive(Duration::from_millis(100)).await;
        }
        room.drive(Duration::from_secs(3)).await;
        Ok(room)
    }

    /// Drives the hub for `d` (the members drive themselves).
    async fn drive(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            let _ = tokio::time::timeout(Duration::from_millis(20), self.hub.select_next_some()).await;
        }
    }

    /// Publishes one message; the time until the last member received it.
    async fn publish(&mut self) -> anyhow::Result<Duration> {
        let data = format!("message {}", self.sent).into_bytes();
        self.sent += 1;
        let t = Instant::now();
        self.hub
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), data.clone())?;
        let mut got = std::collections::HashSet::new();
        let deadline = Instant::now() + STEP;
        while got.len() < self.members {
            tokio::select! {
                _ = self.hub.select_next_some() => {}
                m = self.received.recv() => match m {
                    Some((i, d)) if d == data => { got.insert(i); }
                    Some(_) => {}
                    None => bail!("members stopped"),
                },
                _ = tokio::time::sleep_until(deadline.into()) => bail!("gossip did not reach every member"),
            }
        }
        Ok(t.elapsed())
    }
}

impl Drop for BareRoom {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

// ---------- tim ----------

async fn tim_nodes(n: usize, dir: &std::path::Path) -> anyhow::Result<Vec<(Node, Events)>> {
    let first = Node::start(Config::loopback(dir.join("0"))).await?;
    let boot = first.0.status().await?.listen_addrs;
    let mut nodes = vec![first];
    for i in 1..n {
        let mut c = Config::loopback(dir.join(i.to_string()));
        c.bootstrap = boot.clone();
        nodes.push(Node::start(c).await?);
    }
    Ok(nodes)
}

/// Rounds the latency samples are taken in, bare echo and tim alternating, so both see the same
/// moments of this shared machine.
const DIRECT_ROUNDS: usize = 10;

async fn direct(count: usize) -> anyhow::Result<Vec<Row>> {
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
enum Phases {
    All,
    TimOnly,
    /// The bare all-connected baseline alone.
    BareOnly,
}

async fn room(members: usize, count: usize, phases: Phases) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let mut nodes = tim_nodes(members + 1, dir.path()).await?;
    let room = RoomId::new("bench")?;
    for (n, _) in &nodes {
        n.join(room.clone()).await?;
    }
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
            &format!("tim room message to the last of {members}"),
            tim.samples,
            tim.wall,
        )
        .with_cpu(tim.cpu),
        Row::new(
            &format!("tim revoke until the last of {members} tombstoned"),
            tim.more,
            tim.wall,
        ),
    ])
}

fn percentile_of(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    percentile(&sorted, q)
}

/// `count` signed 200 B payloads verified one after the other with bare ed25519 (`verify_strict`,
/// as tim): the physical limit of the signature check on this CPU.
fn bare_verify(count: usize) -> anyhow::Result<Row> {
    use ed25519_dalek::{Signer, SigningKey};
    let key = SigningKey::from_bytes(&rand::random());
    let signed: Vec<(Vec<u8>, ed25519_dalek::Signature)> = (0..count)
        .map(|i| {
            let payload = format!("{i:0>200}").into_bytes();
            let sig = key.sign(&payload);
            (payload, sig)
        })
        .collect();
    let public = key.verifying_key();
    let started = Instant::now();
    let cpu = cpu_time();
    for (payload, sig) in &signed {
        public.verify_strict(payload, sig)?;
    }
    Ok(
        Row::new("bare ed25519 verify loop, one core", vec![], started.elapsed())
            .with_count(count)
            .with_cpu(cpu_time() - cpu),
    )
}

/// A member misses `count` room messages and `revokes` revokes of them while stopped, then
/// returns: the time from its restart until it stored every surviving message and applied every
/// tombstone (verified exactly as gossip), checking it never showed a revoked message.
async fn catchup(count: usize, revokes: usize) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let room = RoomId::new("catchup")?;
    let mut a_config = Config::loopback(dir.path().join("a"));
    a_config.sync_window = 2 * (count + revokes) + 100;
    let (a, _a_events) = Node::start(a_config).await?;
    let boot = a.status().await?.listen_addrs;
    let mut c_config = Config::loopback(dir.path().join("c"));
    c_config.bootstrap = boot;
    c_config.event_capacity = count + revokes + 1_000;
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

async fn wait_room_peers(node: &Node, room: &RoomId, peers: usize) -> anyhow::Result<()> {
    tokio::time::timeout(STEP, async {
        loop {
            let s = node.status().await?;
            if s.rooms.iter().any(|r| r.room == *room && r.peers >= peers) {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?
}

/// Storage at scale: fills one node's store with `count` signed direct messages (100 senders, so
/// 100 conversations), then, in a fresh child process (so its RSS is the node's own), times the
/// node's restart and history pages, and reports RSS and disk.
async fn storage(count: usize) -> anyhow::Result<Vec<Row>> {
    use tim_node::{
        protocol::{AccountKey, Message},
        storage::{State, Store},
    };
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("node");
    let (node, _) = Node::start(Config::loopback(&data)).await?;
    let me = node.account();
    node.shutdown().await?;
    drop(node);
    let senders: Vec<AccountKey> = (0..100).map(|_| AccountKey::generate()).collect();
    let started = Instant::now();
    let cpu = cpu_time();
    let samples = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(String, String)>> {
        let store = Store::open(data.join("db"), Default::default())?;
        let base = 1_700_000_000_000u64;
        let mut samples = Vec::new();
        const BATCH: usize = 1_000;
        for start in (0..count).step_by(BATCH) {
            let end = (start + BATCH).min(count);
            // Sign on both cores; signing is setup, the store is what this scenario is about.
            let sign = |range: std::ops::Range<usize>| -> anyhow::Result<Vec<_>> {
                range
                    .map(|i| {
                        let from = &senders[i % senders.len()];
                        let body = format!("stored message {i:0>185}").into_bytes();
                        let nonce = (i as u128).to_be_bytes();
                        Ok(Message::sign_with_nonce(
                            from,
                            Recipient::Account(me),
                            body,
                            base + i as u64,
                            None,
                            nonce,
                        )?)
                    })
                    .collect()
            };
            let mid = (start + end) / 2;
            let (left, right) = std::thread::scope(|s| {
                let right = s.spawn(|| sign(mid..end));
                (sign(start..mid), right.join())
            });
            let mut messages = left?;
            messages.extend(right.map_err(|_| anyhow::anyhow!("signing thread panicked"))??);
            let items: Vec<_> = messages.iter().map(|m| (m, State::Received)).collect();
            for outcome in store.put_messages(&items)? {
                outcome?;
            }
            // Ten sample points spread over the fill, each in another sender's conversation.
            let every = (count / BATCH / 10).max(1);
            if start > 0 && (start / BATCH) % every == 0 {
                let m = &messages[(start / BATCH) % messages.len()];
                samples.push((m.head().from.to_string(), m.id().to_string()));
            }
            if start % 200_000 == 0 && start > 0 {
                println!("  stored {start} messages ({:.0} s)", started.elapsed().as_secs_f64());
            }
        }
        store.flush()?;
        Ok(samples)
    })
    .await??;
    let fill = Row::new(
        &format!("fill: sign (2 cores) + put_messages x{count}"),
        vec![],
        started.elapsed(),
    )
    .with_count(count)
    .with_cpu(cpu_time() - cpu);
    std::fs::write(dir.path().join("samples.json"), serde_json::to_vec(&samples)?)?;
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("storage-open")
        .arg(dir.path())
        .output()?;
    if !out.status.success() {
        bail!("child failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let ms = |k: &str| Duration::from_secs_f64(r[k].as_f64().unwrap_or(0.0) / 1e3);
    let list = |k: &str| -> Vec<Duration> {
        r[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_f64())
                    .map(|v| Duration::from_secs_f64(v / 1e3))
                    .collect()
            })
            .unwrap_or_default()
    };
    println!(
        "child process: rss after restart and the page reads {:.0} MB; database on disk {:.0} MB",
        r["rss_mb"].as_f64().unwrap_or(0.0),
        r["disk_bytes"].as_f64().unwrap_or(0.0) / 1e6
    );
    let newest = list("newest_ms");
    let deep = list("deep_ms");
    let (nw, dw) = (newest.iter().sum(), deep.iter().sum());
    Ok(vec![
        fill,
        Row::new(
            "restart: Node::start until listening",
            vec![ms("restart_ms")],
            ms("restart_ms"),
        ),
        Row::new("history: newest page of 50 (Node::history)", newest, nw),
        Row::new("history: page of 50 deep in a conversation", deep, dw),
    ])
}

/// The child half of `storage`: restart the node on the filled store, read pages, report JSON.
async fn storage_open(dir: &std::path::Path) -> anyhow::Result<()> {
    use tim_node::protocol::{AccountId, MessageId};
    let samples: Vec<(String, String)> = serde_json::from_slice(&std::fs::read(dir.join("samples.json"))?)?;
    let started = Instant::now();
    let (node, _) = Node::start(Config::loopback(dir.join("node"))).await?;
    let restart = started.elapsed();
    let mut newest = Vec::new();
    let mut deep = Vec::new();
    for _ in 0..20 {
        for (from, mid) in &samples {
            let conversation = tim_node::Conversation::Peer(from.parse::<AccountId>()?);
            let t = Instant::now();
            let page = node.history(&conversation, None, 50).await?;
            newest.push(t.elapsed());
            anyhow::ensure!(page.entries.len() == 50, "short page");
            let t = Instant::now();
            let page = node.history(&conversation, Some(mid.parse::<MessageId>()?), 50).await?;
            deep.push(t.elapsed());
            anyhow::ensure!(!page.entries.is_empty(), "empty deep page");
        }
    }
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let disk = node.disk_bytes().await?;
    let report = serde_json::json!({
        "restart_ms": ms(&restart),
        "newest_ms": newest.iter().map(ms).collect::<Vec<_>>(),
        "deep_ms": deep.iter().map(ms).collect::<Vec<_>>(),
        "rss_mb": rss_mb(),
        "disk_bytes": disk,
    });
    node.shutdown().await?;
    println!("{report}");
    Ok(())
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let scenario = args.first().map(String::as_str).unwrap_or("direct");
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        // Logs only when asked for (RUST_LOG), on stderr, so they never skew a quiet run.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    if scenario == "storage-open" {
        let dir = args.get(1).context("storage-open needs a directory")?;
        return storage_open(std::path::Path::new(dir)).await;
    }
    println!("machine: {}", machine());
    let rows = match scenario {
        "direct" => direct(flag("--count", 500)).await?,
        "room" => {
            let phases = if args.iter().any(|a| a == "--tim-only") {
                Phases::TimOnly
            } else if args.iter().any(|a| a == "--bare-only") {
                Phases::BareOnly
            } else {
                Phases::All
            };
            room(flag("--members", 10), flag("--count", 200), phases).await?
        }
        "catchup" => {
            let count = flag("--count", 1_000);
            catchup(count, flag("--revokes", count / 20)).await?
        }
        "ingest" => catchup(flag("--count", 10_000), 0).await?,
        "storage" => storage(flag("--count", 1_000_000)).await?,
        other => bail!("unknown scenario {other}; try direct, room, catchup, ingest or storage"),
    };
    print_table(&rows);
    let mut result: HashMap<&str, serde_json::Value> = HashMap::new();
    result.insert("machine", machine().into());
    result.insert("scenario", scenario.into());
    result.insert("rows", rows.iter().map(Row::json).collect::<Vec<_>>().into());
    let path = format!("bench-{scenario}.json");
    std::fs::write(&path, serde_json::to_string_pretty(&result)?)?;
    println!("wrote {path}");
    Ok(())
}
