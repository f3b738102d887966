//! Streams between real nodes: live data reaches whoever is online now, 1:1 and in a room,
//! leaves no trace in either store, fails at once with `5105` for a peer that is away, and a
//! forged, stale or blocked frame is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tim_node::{
    protocol::{encode, Code, Envelope, Recipient, RoomId, Stream},
    Conversation, Event, Events,
};

/// Waits for a stream event carrying `data`.
async fn streamed(events: &mut Events, data: &[u8]) -> Event {
    expect_event(
        events,
        "a stream",
        |e| matches!(e, Event::Stream { data: d, .. } if d == data),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reaches_an_online_peer_and_leaves_no_trace_on_disk() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, a_ev) = start(dirs[0].path(), vec![]).await;
    let (b, mut b_ev) = start(dirs[1].path(), vec![addr(&a).await]).await;
    routed(&a, &b).await;
    let marker = b"stream-marker-6f1d2c9e-typing".to_vec();
    a.stream(Recipient::Account(b.account()), marker.clone()).await.unwrap();
    let e = streamed(&mut b_ev, &marker).await;
    assert_eq!(
        e,
        Event::Stream {
            from: a.account(),
            conversation: Conversation::Peer(a.account()),
            data: marker.clone()
        }
    );
    // Nothing in either history, outbox or file.
    assert_eq!(a.metrics().outbox_depth, 0);
    let page = b.history(&Conversation::Peer(a.account()), None, 10).await.unwrap();
    assert!(page.entries.is_empty());
    assert!(b.inbox(None, 10).await.unwrap().items.is_empty());
    stop(a, a_ev).await;
    stop(b, b_ev).await;
    for dir in &dirs {
        assert!(!holds(dir.path(), &marker), "the stream's bytes are on disk");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_to_a_peer_that_is_away_fails_at_once_and_is_never_queued() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev) = start(dirs[0].path(), vec![]).await;
    let (b, b_ev) = start(dirs[1].path(), vec![addr(&a).await]).await;
    routed(&a, &b).await;
    let idb = b.account();
    stop(b, b_ev).await;
    let err = a
        .stream(Recipient::Account(idb), b"are you there".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unreachable);
    assert_eq!(a.metrics().outbox_depth, 0);
    // Limits: too large, to oneself, to a room not joined.
    let big = vec![b'x'; tim_node::protocol::stream::MAX_STREAM_DATA + 1];
    assert_eq!(
        a.stream(Recipient::Account(idb), big).await.unwrap_err().code(),
        Code::TooLarge
    );
    let me = Recipient::Account(a.account());
    assert_eq!(a.stream(me, vec![1]).await.unwrap_err().code(), Code::BadParameters);
    let room = Recipient::Room(RoomId::new("elsewhere").unwrap());
    assert_eq!(a.stream(room, vec![1]).await.unwrap_err().code(), Code::BadParameters);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_stream_reaches_the_members_online() {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev) = start(dirs[0].path(), vec![]).await;
    let boot = addr(&a).await;
    let (b, mut b_ev) = start(dirs[1].path(), vec![boot.clone()]).await;
    let (c, mut c_ev) = start(dirs[2].path(), vec![boot]).await;
    let room = RoomId::new("live").unwrap();
    for n in [&a, &b, &c] {
        n.join(room.clone()).await.unwrap();
    }
    wait_room_peers(&a, &room, 2).await;
    wait_room_peers(&b, &room, 1).await;
    wait_room_peers(&c, &room, 1).await;
    let data = b"cursor at 42".to_vec();
    // Publishing needs a mesh; retry until the frame is out (each try is a new frame).
    eventually("the room stream at b and c", || {
        let (a, room, data) = (a.clone(), room.clone(), data.clone());
        async move { a.stream(Recipient::Room(room), data).await.ok() }
    })
    .await;
    for events in [&mut b_ev, &mut c_ev] {
        let e = streamed(events, &data).await;
        assert!(
            matches!(e, Event::Stream { conversation: Conversation::Room(r), from, .. } if r == room && from == a.account())
        );
    }
    let page = b.history(&Conversation::Room(room.clone()), None, 10).await.unwrap();
    assert!(page.entries.is_empty(), "a room stream is not history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_blocked_streams_are_refused() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let alice = with_account(dirs[0].path(), 51);
    let (a, mut a_ev) = start(dirs[0].path(), vec![]).await;
    let (b, mut b_ev) = start(dirs[1].path(), vec![addr(&a).await]).await;
    routed(&a, &b).await;
    let to_b = Recipient::Account(b.account());
    let relay = |stream: Stream| {
        let a = a.clone();
        let to = to_b.clone();
        async move { a.relay(to, encode(&Envelope::Stream(stream)).unwrap()).await.unwrap() }
    };
    let now = kad::now_ms();
    // Altered after signing.
    let mut forged = Stream::sign(&alice, to_b.clone(), b"real".to_vec(), now)
        .unwrap()
        .into_inner();
    forged.data = b"fake".to_vec();
    relay(forged).await;
    failed_with(&mut a_ev, b.account(), Code::InvalidSignature).await;
    // A minute old: not live any more (a captured frame replayed later).
    let stale = Stream::sign(&alice, to_b.clone(), b"old".to_vec(), now - 60_000)
        .unwrap()
        .into_inner();
    relay(stale).await;
    failed_with(&mut a_ev, b.account(), Code::Expired).await;
    // A fresh one is taken; then B blocks A and the next is refused on both paths.
    a.stream(to_b.clone(), b"fresh".to_vec()).await.unwrap();
    streamed(&mut b_ev, b"fresh").await;
    b.block(a.account()).await.unwrap();
    assert_eq!(
        a.stream(to_b.clone(), b"x".to_vec()).await.unwrap_err().code(),
        Code::Blocked
    );
    let back = Recipient::Account(a.account());
    assert_eq!(b.stream(back, b"x".to_vec()).await.unwrap_err().code(), Code::Blocked);
}
