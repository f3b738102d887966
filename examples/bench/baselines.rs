//! The bare baselines tim is measured against in the same run: a rust-libp2p request-response
//! echo and a gossipsub room on the same transport (TCP + noise + yamux), and an ed25519 verify
//! loop.
use std::{
    io,
    time::{Duration, Instant},
};

use anyhow::bail;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{
    gossipsub, noise,
    request_response::{self, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, StreamProtocol, Swarm,
};

use crate::{
    report::{cpu_time, Row},
    STEP,
};

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
pub(crate) struct BareEcho {
    client: Swarm<EchoBehaviour>,
    server_id: libp2p::PeerId,
    server: tokio::task::JoinHandle<()>,
    payload: Vec<u8>,
}

impl BareEcho {
    pub(crate) async fn start(size: usize) -> anyhow::Result<BareEcho> {
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

    pub(crate) async fn round_trip(&mut self) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let payload = self.payload.clone();
        self.client.behaviour_mut().send_request(&self.server_id, payload);
        self.responses(1).await?;
        Ok(t.elapsed())
    }

    /// Keeps 64 requests in flight until `count` are answered.
    pub(crate) async fn throughput(&mut self, count: usize) -> anyhow::Result<Row> {
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

/// The node's own gossipsub settings, without the application validation it adds.
fn gossip() -> Gossip {
    let config = tim_node::gossipsub_config_builder()
        .build()
        .unwrap_or_else(|_| unreachable!("static gossipsub config"));
    Gossip {
        gossipsub: gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)
            .unwrap_or_else(|_| unreachable!("anonymous authenticity matches the validation mode")),
    }
}

/// Bare gossipsub with tim's settings (`tim_node::gossipsub_config_builder`) and no application
/// validation: a publisher's hub and `members` subscribers, each driven by its own task. Members
/// connect to the hub (as tim's bootstrap); with `full_mesh` every member also connects to every
/// other member: the connection graph tim's nodes end up with once Kademlia has introduced them,
/// so both mesh over the same graph.
pub(crate) struct BareRoom {
    hub: Swarm<Gossip>,
    topic: gossipsub::IdentTopic,
    members: usize,
    received: tokio::sync::mpsc::UnboundedReceiver<(usize, Vec<u8>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sent: usize,
    /// The connection graph's name, for the row's label.
    pub(crate) graph: &'static str,
}

impl BareRoom {
    pub(crate) async fn start(members: usize, full_mesh: bool) -> anyhow::Result<BareRoom> {
        let topic = gossipsub::IdentTopic::new("bench");
        let make = || -> anyhow::Result<Swarm<Gossip>> { tcp_swarm(gossip) };
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
    pub(crate) async fn publish(&mut self) -> anyhow::Result<Duration> {
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

/// Bare gossipsub over libp2p's memory transport (Noise and yamux, as tim's
/// `Transport::Memory`) with tim's settings and no application validation, on a given connection
/// graph: `nodes` swarms, each driven by its own task, `members` of them subscribed, `publisher`
/// publishing on command.
pub(crate) struct BareNetwork {
    publish: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    received: tokio::sync::mpsc::UnboundedReceiver<(usize, Vec<u8>, Instant)>,
    members: usize,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sent: usize,
}

fn memory_gossip_swarm() -> anyhow::Result<Swarm<Gossip>> {
    use libp2p::core::{transport::MemoryTransport, upgrade, Transport};
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                MemoryTransport::default()
                    .upgrade(upgrade::Version::V1)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()),
            )
        })?
        .with_behaviour(|_| gossip())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build())
}

impl BareNetwork {
    /// Starts the swarms, dials every edge `(i, j)` from `j` to `i`, and waits until every member
    /// sees a subscribed peer and the mesh had a few heartbeats to form.
    pub(crate) async fn start(
        nodes: usize,
        edges: &[(usize, usize)],
        members: &[usize],
        publisher: usize,
    ) -> anyhow::Result<BareNetwork> {
        let topic = gossipsub::IdentTopic::new("simulation");
        let mut swarms = Vec::with_capacity(nodes);
        let mut addrs = Vec::with_capacity(nodes);
        for _ in 0..nodes {
            let mut s = memory_gossip_swarm()?;
            s.listen_on("/memory/0".parse()?)?;
            let addr = loop {
                if let SwarmEvent::NewListenAddr { address, .. } = s.select_next_some().await {
                    break address.with(libp2p::multiaddr::Protocol::P2p(*s.local_peer_id()));
                }
            };
            addrs.push(addr);
            swarms.push(s);
        }
        for &i in members {
            if let Some(s) = swarms.get_mut(i) {
                s.behaviour_mut().gossipsub.subscribe(&topic)?;
            }
        }
        for &(i, j) in edges {
            if let (Some(addr), Some(s)) = (addrs.get(i).cloned(), swarms.get_mut(j)) {
                s.dial(addr)?;
            }
        }
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        let (publish, mut publish_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let is_member: std::collections::HashSet<usize> = members.iter().copied().collect();
        let mut tasks = Vec::with_capacity(nodes);
        for (i, mut s) in swarms.into_iter().enumerate() {
            let (tx, ready_tx, topic) = (tx.clone(), ready_tx.clone(), topic.clone());
            let member = is_member.contains(&i);
            let mut commands = if i == publisher {
                Some(std::mem::replace(
                    &mut publish_rx,
                    tokio::sync::mpsc::unbounded_channel().1,
                ))
            } else {
                None
            };
            tasks.push(tokio::spawn(async move {
                let mut told = !member;
                loop {
                    tokio::select! {
                        e = s.select_next_some() => match e {
                            SwarmEvent::Behaviour(GossipEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => {
                                let _ = tx.send((i, message.data, Instant::now()));
                            }
                            SwarmEvent::Behaviour(GossipEvent::Gossipsub(gossipsub::Event::Subscribed { .. })) if !told => {
                                told = true;
                                let _ = ready_tx.send(i);
                            }
                            _ => {}
                        },
                        Some(data) = async { match commands.as_mut() { Some(c) => c.recv().await, None => None } } => {
                            if let Err(e) = s.behaviour_mut().gossipsub.publish(topic.clone(), data) {
                                eprintln!("bare publish failed: {e}");
                            }
                        }
                    }
                }
            }));
        }
        let until = Instant::now() + Duration::from_secs(120);
        let mut found = 0;
        while found < members.len() {
            match tokio::time::timeout_at(until.into(), ready.recv()).await {
                Ok(Some(_)) => found += 1,
                _ => bail!("{} bare members saw no subscribed peer", members.len() - found),
            }
        }
        // A few heartbeats for the mesh to form.
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(BareNetwork {
            publish,
            received,
            members: members.len(),
            tasks,
            sent: 0,
        })
    }

    /// Publishes one message; the time until the last other member received it.
    pub(crate) async fn publish(&mut self) -> anyhow::Result<Duration> {
        let data = format!("simulated message {}", self.sent).into_bytes();
        self.sent += 1;
        let t = Instant::now();
        self.publish.send(data.clone())?;
        let mut got = std::collections::HashSet::new();
        let mut last = t;
        let deadline = tokio::time::Instant::now() + STEP;
        while got.len() + 1 < self.members {
            match tokio::time::timeout_at(deadline, self.received.recv()).await {
                Ok(Some((i, d, at))) if d == data => {
                    if got.insert(i) {
                        last = last.max(at);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => bail!("bare nodes stopped"),
                Err(_) => bail!("bare gossip reached {} of {} members", got.len(), self.members - 1),
            }
        }
        Ok(last - t)
    }
}

impl Drop for BareNetwork {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// `count` signed 200 B payloads verified one after the other with bare ed25519 (`verify_strict`,
/// as tim): the physical limit of the signature check on this CPU.
pub(crate) fn bare_verify(count: usize) -> anyhow::Result<Row> {
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
