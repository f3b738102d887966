//! tim's stream protocols spoken by a bare libp2p peer to a tim node. Direct pipes
//! (`/tim/direct/2.0.0`): answers name their requests, forgeries are refused and stored nowhere,
//! and a peer that breaks the framing loses its pipe but not the node. Room sync
//! (`/tim/sync/1.0.0`): one page per exchange, only of joined rooms, never for a bad request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use asynchronous_codec::Bytes;
use common::{bare::*, *};
use futures::{SinkExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tim_node::{
    protocol::{
        decode, encode,
        test_util::{direct, key},
        Ack, Code, Envelope, Message, MessageId, PipeFrame, Recipient, RoomId, SyncPage, SyncRequest, Wire,
    },
    Events, Node,
};

const SYNC: StreamProtocol = StreamProtocol::new("/tim/sync/1.0.0");

/// Waits until the node has closed the pipe (end of stream or an error).
async fn closed(pipe: &mut Pipe) {
    tokio::time::timeout(WAIT, async {
        loop {
            match pipe.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the node closed the pipe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_peer_gets_answers_by_id_and_forgeries_change_nothing() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let me = with_account(dir.path(), 40);
    let (node, mut events) = start(dir.path(), vec![]).await;
    let (mut control, peer) = bare_peer(&node).await;
    let mut pipe = open(&mut control, peer).await;
    let alice = key(41);
    let good: Vec<Message> = (0..3)
        .map(|i| direct(&alice, &me, format!("hi {i}").as_bytes(), 1_000 + i))
        .collect();
    let mut altered = direct(&alice, &me, b"original", 2_000);
    altered.body = b"altered".to_vec();
    let mut bad_sig = direct(&alice, &me, b"signed", 2_001);
    bad_sig.header.signature[5] ^= 1;
    // Five requests in one flush, with ids of the peer's choosing; a repeat of the first after.
    let batch = [
        (70, &good[0]),
        (71, &altered),
        (72, &good[1]),
        (73, &bad_sig),
        (74, &good[2]),
    ];
    for (id, m) in batch {
        pipe.feed(request(id, m)).await.unwrap();
    }
    pipe.flush().await.unwrap();
    let got = answers(&mut pipe, &[70, 71, 72, 73, 74]).await;
    for id in [70, 72, 74] {
        assert_eq!(got[&id], Ack::Stored, "request {id}");
    }
    let refused = |id: u64| match got[&id] {
        Ack::Refused { code } => Code::from_number(code),
        other => panic!("forgery {id} accepted: {other:?}"),
    };
    assert_eq!(refused(71), Some(Code::BodyMismatch));
    assert_eq!(refused(73), Some(Code::InvalidSignature));
    pipe.send(request(75, &good[0])).await.unwrap();
    assert_eq!(answers(&mut pipe, &[75]).await[&75], Ack::Duplicate);
    let ids: Vec<MessageId> = good.iter().map(Message::id).collect();
    expect_each_about(&mut events, "the three messages", Kind::Message, &ids).await;
    for m in &good {
        assert!(entry(&node, m.id()).await.is_some());
    }
    for m in [&altered, &bad_sig] {
        assert!(entry(&node, m.id()).await.is_none(), "a forgery was stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_breaking_the_framing_loses_its_pipe_not_the_node() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let me = with_account(dir.path(), 43);
    let (node, _events) = start(dir.path(), vec![]).await;
    let (mut control, peer) = bare_peer(&node).await;
    let alice = key(42);

    // Not a pipe frame at all.
    let mut pipe = open(&mut control, peer).await;
    pipe.send(Bytes::from_static(b"\x01garbage")).await.unwrap();
    closed(&mut pipe).await;

    // An answer where the node expects requests.
    let mut pipe = open(&mut control, peer).await;
    let answer = encode(&PipeFrame::Answer {
        id: 1,
        ack: Ack::Stored,
    })
    .unwrap();
    pipe.send(Bytes::from(answer)).await.unwrap();
    closed(&mut pipe).await;

    // A length prefix over the limit: the node stops reading before buffering it.
    let pipe = open(&mut control, peer).await;
    let mut raw = unsigned_varint::encode::usize_buffer();
    let prefix = unsigned_varint::encode::usize(PipeFrame::MAX_LEN + 1, &mut raw);
    let mut io = pipe.into_inner();
    futures::AsyncWriteExt::write_all(&mut io, prefix).await.unwrap();
    futures::AsyncWriteExt::flush(&mut io).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, futures::AsyncReadExt::read_to_end(&mut io, &mut rest)).await;
    assert!(read.is_ok(), "the node kept an oversized frame's pipe open");
    assert!(rest.is_empty(), "the node answered an oversized frame");

    // The node still serves a well-behaved pipe.
    let mut pipe = open(&mut control, peer).await;
    let m = direct(&alice, &me, b"still here", 3_000);
    pipe.send(request(9, &m)).await.unwrap();
    assert_eq!(answers(&mut pipe, &[9]).await[&9], Ack::Stored);
    assert!(entry(&node, m.id()).await.is_some());
}

async fn open_sync(control: &mut libp2p_stream::Control, peer: PeerId) -> Stream {
    tokio::time::timeout(WAIT, control.open_stream(peer, SYNC))
        .await
        .expect("sync stream opened in time")
        .expect("node accepts sync streams")
}

/// One sync exchange: writes `request` and closes, then reads what the node answers until it
/// closes (empty when it answered nothing, or dropped the stream).
async fn sync_exchange(control: &mut libp2p_stream::Control, peer: PeerId, request: &[u8]) -> Vec<u8> {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let mut stream = open_sync(control, peer).await;
    if stream.write_all(request).await.is_err() || stream.close().await.is_err() {
        return Vec::new();
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the node kept a sync stream open");
    answer
}

/// A node in room `name` that has posted `posts` messages there ("post 0", "post 1", ...).
async fn node_with_posts(dir: &std::path::Path, name: &str, posts: usize) -> (Node, Events, RoomId, Vec<MessageId>) {
    let (node, events) = start(dir, vec![]).await;
    let room = RoomId::new(name).unwrap();
    node.join(room.clone()).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..posts {
        let body = format!("post {i}").into_bytes();
        sent.push(node.send(Recipient::Room(room.clone()), body, None).await.unwrap().mid);
    }
    (node, events, room, sent)
}

fn sync_request(room: &RoomId, after: u64) -> Vec<u8> {
    encode(&SyncRequest {
        room: room.clone(),
        after,
        limit: 256,
        member: None,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_peer_syncs_a_room_page_and_bad_requests_get_nothing() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (node, _events, room, sent) = node_with_posts(dir.path(), "synced", 3).await;
    node.revoke(sent[1]).await.unwrap();
    let (mut control, peer) = bare_peer(&node).await;

    // The whole log from the start: the two live posts and the revoke, never the revoked body.
    let page: SyncPage = decode(&sync_exchange(&mut control, peer, &sync_request(&room, 0)).await).unwrap();
    assert!(!page.more);
    let mut posts = Vec::new();
    let mut revoked = Vec::new();
    for frame in &page.frames {
        match decode::<Envelope>(frame).unwrap() {
            Envelope::Message(m) => posts.push(m.id()),
            Envelope::Control(c) => revoked.push(c.target.id()),
            Envelope::Receipt(r) => panic!("a sync page carried a receipt for {}", r.target),
            Envelope::Contact(c) => panic!("a sync page carried a contact operation of {}", c.from),
            Envelope::Stream(s) => panic!("a sync page carried a stream of {}", s.from),
            Envelope::Presence(p) => panic!("a sync page carried a presence of {}", p.from),
            other => panic!("an open room's sync page carried {other:?}"),
        }
    }
    assert_eq!(posts, vec![sent[0], sent[2]]);
    assert_eq!(revoked, vec![sent[1]]);
    // From its end: nothing new.
    let rest: SyncPage = decode(&sync_exchange(&mut control, peer, &sync_request(&room, page.next)).await).unwrap();
    assert!(rest.frames.is_empty() && !rest.more);
    // A room the node has not joined: an empty page.
    let other = RoomId::new("elsewhere").unwrap();
    let none: SyncPage = decode(&sync_exchange(&mut control, peer, &sync_request(&other, 0)).await).unwrap();
    assert!(none.frames.is_empty() && !none.more);

    // Garbage, a request with trailing bytes, and one over the size limit: no answer at all.
    assert!(sync_exchange(&mut control, peer, b"\x01garbage").await.is_empty());
    let mut trailing = sync_request(&room, 0);
    trailing.push(0);
    assert!(sync_exchange(&mut control, peer, &trailing).await.is_empty());
    assert!(sync_exchange(&mut control, peer, &[1; 4096]).await.is_empty());

    // The node still serves a good request.
    let again: SyncPage = decode(&sync_exchange(&mut control, peer, &sync_request(&room, 0)).await).unwrap();
    assert_eq!(again.frames.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_holding_sync_streams_open_gets_only_its_share() {
    use futures::{AsyncReadExt, AsyncWriteExt};
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (node, _events, room, _) = node_with_posts(dir.path(), "held", 1).await;
    let (mut control, peer) = bare_peer(&node).await;
    // Sixteen requests written and not yet finished (the node reads a request to the end of its
    // stream), so the node holds every exchange it took until we close them. (libp2p-stream
    // itself drops an inbound stream that arrives while the node's acceptor is still taking the
    // one before, which looks the same to us as a refusal; sixteen leave room for that.)
    let request = sync_request(&room, 0);
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut stream = open_sync(&mut control, peer).await;
        let written = stream.write_all(&request).await.is_ok() && stream.flush().await.is_ok();
        held.push((stream, written));
    }
    // Finished together: eight are served, those over the per-peer limit got nothing.
    let mut pages = 0;
    for (mut stream, written) in held {
        if !written || stream.close().await.is_err() {
            continue;
        }
        let mut answer = Vec::new();
        let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the node kept a sync stream open");
        if !answer.is_empty() {
            let page: SyncPage = decode(&answer).unwrap();
            assert_eq!(page.frames.len(), 1);
            pages += 1;
        }
    }
    assert_eq!(pages, 8, "one peer is served at most 8 exchanges at once");
    // With its exchanges done, the peer is served again.
    let again: SyncPage = decode(&sync_exchange(&mut control, peer, &request).await).unwrap();
    assert_eq!(again.frames.len(), 1);
}

/// A stranger (an account this node never wrote to) gets its share of stored messages and then
/// `5104 overloaded` answers, which tell its node to keep the message and retry; a stranger's
/// tombstones for messages never sent here are capped the same way and never enter history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_held_to_its_share() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let me = with_account(dir.path(), 50);
    let mut c = config(dir.path(), vec![]);
    c.stranger_messages_each = 2;
    c.pending_tombstones_each = 2;
    let (node, _events) = Node::start(c).await.unwrap();
    let (mut control, peer) = bare_peer(&node).await;
    let mut pipe = open(&mut control, peer).await;
    let stranger = key(51);
    let messages: Vec<Message> = (0..3)
        .map(|i| direct(&stranger, &me, format!("unsolicited {i}").as_bytes(), 1_000 + i))
        .collect();
    for (i, m) in messages.iter().enumerate() {
        pipe.send(request(i as u64, m)).await.unwrap();
    }
    let got = answers(&mut pipe, &[0, 1, 2]).await;
    assert_eq!(got[&0], Ack::Stored);
    assert_eq!(got[&1], Ack::Stored);
    assert_eq!(
        got[&2],
        Ack::Refused {
            code: Code::Overloaded.number()
        }
    );
    assert!(node.entry(messages[2].id()).await.unwrap().is_none());

    let never_sent: Vec<Message> = (0..3)
        .map(|i| direct(&stranger, &me, b"never sent", 2_000 + i))
        .collect();
    for (i, m) in never_sent.iter().enumerate() {
        let revoke = tim_node::protocol::test_util::revoke(&stranger, m);
        pipe.send(request_frame(
            10 + i as u64,
            encode(&Envelope::Control(revoke)).unwrap(),
        ))
        .await
        .unwrap();
    }
    let got = answers(&mut pipe, &[10, 11, 12]).await;
    assert_eq!(got[&10], Ack::Stored);
    assert_eq!(got[&11], Ack::Stored);
    assert_eq!(
        got[&12],
        Ack::Refused {
            code: Code::Overloaded.number()
        }
    );
    let history = node
        .history(&tim_node::Conversation::Peer(stranger.account_id()), None, 50)
        .await
        .unwrap();
    assert_eq!(history.entries.len(), 2, "only the two stored messages, no markers");
}
