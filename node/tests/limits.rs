//! A node's deadlines and connection limits against a bare libp2p peer that holds resources
//! without using them: a pipe that never brings a frame, a frame never finished, a sync request
//! never sent, and more connections than one peer may hold. Each is closed or refused by the node,
//! and the node goes on serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{bare::*, *};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{
    swarm::{dial_opts::DialOpts, dial_opts::PeerCondition, SwarmEvent},
    Stream, StreamProtocol,
};
use tim_node::{
    protocol::{
        encode,
        test_util::{direct, key},
        AccountKey, Ack, Envelope, PipeFrame,
    },
    Node,
};

const SYNC: StreamProtocol = StreamProtocol::new("/tim/sync/1.0.0");

/// The node's deadlines (`net/deadline.rs`): a new stream's first complete frame, and a frame
/// from its first byte to its last.
const FIRST_FRAME: Duration = Duration::from_secs(5);
const FRAME: Duration = Duration::from_secs(10);
/// Slack for timers firing a little early relative to this test's clock.
const SLACK: Duration = Duration::from_millis(500);
/// How late after its deadline a close may come on a loaded machine.
const LATE: Duration = Duration::from_secs(3);

/// Reads until the node ends `stream` (end of stream or a reset); returns when, after `since`.
async fn ended(stream: &mut Stream, since: Instant, within: Duration) -> Duration {
    let mut buf = [0u8; 256];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the node still holds the stream after {within:?}"))
}

/// `bytes` with its unsigned-varint length prefix, as pipe frames travel.
fn length_prefixed(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 10);
    let mut n = bytes.len() as u64;
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
    out.extend_from_slice(bytes);
    out
}

async fn raw_stream(node: &Node, protocol: StreamProtocol) -> Stream {
    let (mut control, peer) = bare_peer(node).await;
    tokio::time::timeout(WAIT, control.open_stream(peer, protocol))
        .await
        .expect("stream opened in time")
        .expect("node accepts the protocol")
}

/// Starts a node with a fixed account (so a bare peer can address messages to it).
async fn node_in(dir: &std::path::Path) -> (Node, AccountKey, tim_node::Events) {
    let me = with_account(dir, 60);
    let (node, events) = start(dir, vec![]).await;
    (node, me, events)
}

/// The node still answers pipes: a fresh peer's valid message is acknowledged.
async fn still_serves(node: &Node, me: &AccountKey, seq: u64) {
    let (mut control, peer) = bare_peer(node).await;
    let mut pipe = open(&mut control, peer).await;
    let m = direct(&key(61), me, b"still here", seq);
    futures::SinkExt::send(&mut pipe, request(1, &m)).await.unwrap();
    let acks = answers(&mut pipe, &[1]).await;
    assert!(matches!(acks[&1], Ack::Stored), "{acks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipe_that_brings_no_frame_is_closed_at_the_first_frame_deadline() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (node, me, _events) = node_in(dir.path()).await;
    let opened = Instant::now();
    let mut pipe = raw_stream(&node, DIRECT).await;
    let took = ended(&mut pipe, opened, FIRST_FRAME + LATE).await;
    eprintln!("silent pipe closed after {took:?}");
    assert!(took + SLACK >= FIRST_FRAME, "closed before its deadline: {took:?}");
    still_serves(&node, &me, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_left_unfinished_is_closed_at_the_frame_deadline() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (node, me, _events) = node_in(dir.path()).await;
    let mut pipe = raw_stream(&node, DIRECT).await;
    // A first frame in time, answered: the first-frame deadline is met.
    let first = direct(&key(62), &me, b"first", 2_000);
    let frame = encode(&PipeFrame::Request {
        id: 1,
        envelope: encode(&Envelope::Message(first)).unwrap(),
    })
    .unwrap();
    pipe.write_all(&length_prefixed(&frame)).await.unwrap();
    pipe.flush().await.unwrap();
    let mut answer = [0u8; 64];
    let n = tokio::time::timeout(WAIT, pipe.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0, "the first frame was answered");
    // Then the start of a 200-byte frame, and nothing more.
    let started = Instant::now();
    let mut partial = length_prefixed(&[7u8; 200]);
    partial.truncate(20);
    pipe.write_all(&partial).await.unwrap();
    pipe.flush().await.unwrap();
    // The idle limit is a minute away (the sender's 60 s plus grace): only the frame deadline
    // can end the pipe this soon.
    let took = ended(&mut pipe, started, FRAME + LATE).await;
    eprintln!("unfinished frame: pipe closed after {took:?}");
    assert!(took + SLACK >= FRAME, "closed before its deadline: {took:?}");
    still_serves(&node, &me, 2_001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_exchange_without_a_request_is_closed_at_the_first_frame_deadline() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (node, me, _events) = node_in(dir.path()).await;
    let opened = Instant::now();
    let mut sync = raw_stream(&node, SYNC).await;
    // Half a request, never ended.
    sync.write_all(&[1, 2, 3]).await.unwrap();
    sync.flush().await.unwrap();
    let took = ended(&mut sync, opened, FIRST_FRAME + LATE).await;
    eprintln!("silent sync exchange closed after {took:?}");
    assert!(took + SLACK >= FIRST_FRAME, "closed before its deadline: {took:?}");
    still_serves(&node, &me, 3_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_gets_at_most_its_share_of_connections() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let me = with_account(dir.path(), 60);
    let config = config(dir.path(), vec![]);
    let per_peer = config.max_established_per_peer as usize;
    let (node, _events) = Node::start(config).await.unwrap();
    let target = addr(&node).await;
    let mut swarm = bare_swarm();
    let attempts = per_peer + 3;
    for _ in 0..attempts {
        swarm
            .dial(
                DialOpts::peer_id(node.peer_id())
                    .condition(PeerCondition::Always)
                    .addresses(vec![target.clone()])
                    .build(),
            )
            .unwrap();
    }
    // Every dial resolves (established, or refused), and the node closes what is over the
    // limit; then exactly the share stays open.
    let (mut outcomes, mut open) = (0usize, 0usize);
    let settled = tokio::time::timeout(WAIT, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => {
                    outcomes += 1;
                    open += 1;
                }
                SwarmEvent::OutgoingConnectionError { .. } => outcomes += 1,
                SwarmEvent::ConnectionClosed { .. } => open -= 1,
                _ => {}
            }
            if outcomes == attempts && open == per_peer {
                return;
            }
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "after {outcomes} of {attempts} dials, {open} connections open (share {per_peer})"
    );
    let status = node.status().await.unwrap();
    let mine = status
        .connections
        .iter()
        .filter(|c| c.peer == *swarm.local_peer_id())
        .count();
    assert!(mine <= per_peer, "the node holds {mine} connections to one peer");
    still_serves(&node, &me, 4_000).await;
}

/// A room member that serves room sync dishonestly: whatever is asked, an empty page that claims
/// to advance the log and to have more.
#[derive(libp2p::swarm::NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct EndlessMember {
    gossipsub: libp2p::gossipsub::Behaviour,
    streams: libp2p_stream::Behaviour,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_always_has_more_gets_one_syncs_page_limit() {
    use libp2p::gossipsub;
    use tim_node::protocol::{decode, RoomId, SyncPage, SyncRequest};

    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let me = with_account(dir.path(), 60);
    let mut config = config(dir.path(), vec![]);
    // Only the sync on meeting the member runs during the test, not the periodic one.
    config.room_sync_interval = Duration::from_secs(3600);
    let (node, _events) = Node::start(config).await.unwrap();
    let room = RoomId::new("endless").unwrap();
    node.join(room.clone()).await.unwrap();

    let mut mallory = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| EndlessMember {
            gossipsub: gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Anonymous,
                tim_node::gossipsub_config_builder().build().unwrap(),
            )
            .unwrap(),
            streams: libp2p_stream::Behaviour::new(),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    mallory
        .behaviour_mut()
        .gossipsub
        .subscribe(&gossipsub::IdentTopic::new(format!("tim/room/{room}")))
        .unwrap();
    let mut incoming = mallory.behaviour().streams.new_control().accept(SYNC).unwrap();
    mallory.dial(addr(&node).await).unwrap();
    tokio::spawn(async move {
        loop {
            mallory.select_next_some().await;
        }
    });

    // Serves every exchange; reports each request's cursor.
    let (asked_tx, mut asked) = tokio::sync::mpsc::unbounded_channel::<u64>();
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            let mut request = Vec::new();
            if (&mut stream).take(257).read_to_end(&mut request).await.is_err() {
                continue;
            }
            let Ok(request) = decode::<SyncRequest>(&request) else {
                continue;
            };
            let _ = asked_tx.send(request.after);
            let page = SyncPage {
                frames: Vec::new(),
                next: request.after + 1,
                more: true,
            };
            let _ = stream.write_all(&encode(&page).unwrap()).await;
            let _ = stream.close().await;
        }
    });

    // The node follows the claimed progress for one sync's page limit, then stops asking.
    const PAGE_LIMIT: usize = 64;
    let mut cursors = Vec::new();
    while cursors.len() < PAGE_LIMIT {
        let after = tokio::time::timeout(WAIT, asked.recv())
            .await
            .expect("the node asked for the next page in time")
            .expect("server running");
        cursors.push(after);
    }
    assert!(
        cursors.windows(2).all(|w| w[1] == w[0] + 1),
        "pages asked in order: {cursors:?}"
    );
    // Absence can only be shown by waiting: many times one exchange's round trip here.
    let more = tokio::time::timeout(Duration::from_secs(3), asked.recv()).await;
    assert!(more.is_err(), "a page asked beyond the limit: {more:?}");
    still_serves(&node, &me, 5_000).await;
}
