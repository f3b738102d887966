//! Nodes on the in-process memory transport (`Transport::Memory`, what the `network` simulation
//! runs on) do what nodes on TCP do: find each other through the DHT, deliver and revoke 1:1
//! messages, and share a room.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use libp2p::multiaddr::Protocol;
use tim_node::{
    protocol::{Recipient, RoomId},
    Config, Events, Node, Transport,
};

async fn start_memory(dir: &std::path::Path, bootstrap: Vec<tim_node::Multiaddr>) -> (Node, Events) {
    let mut config = Config::memory(dir);
    assert_eq!(config.transport, Transport::Memory);
    config.bootstrap = bootstrap;
    config.retry_max = Duration::from_secs(1);
    config.room_sync_interval = Duration::from_secs(1);
    Node::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_nodes_route_deliver_revoke_and_share_a_room() {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev) = start_memory(dirs[0].path(), vec![]).await;
    let boot = addr(&a).await;
    assert!(
        boot.iter().any(|p| matches!(p, Protocol::Memory(_))),
        "a memory node listens on a /memory address, not {boot}"
    );
    assert!(!boot.iter().any(|p| matches!(p, Protocol::Tcp(_) | Protocol::Ip4(_))));
    let (b, mut b_ev) = start_memory(dirs[1].path(), vec![boot.clone()]).await;
    let (c, mut c_ev) = start_memory(dirs[2].path(), vec![boot]).await;

    // C was given only A, so it finds B through the DHT.
    routed(&c, &b).await;
    let sent = c
        .send(Recipient::Account(b.account()), b"over memory".to_vec(), None)
        .await
        .unwrap();
    let got = expect_about(&mut b_ev, "the message at B", Kind::Message, sent.mid).await;
    assert!(matches!(got, tim_node::Event::Message { ref body, .. } if body == b"over memory"));
    expect_about(&mut c_ev, "B's acknowledgement", Kind::Delivered, sent.mid).await;
    c.revoke(sent.mid).await.unwrap();
    expect_about(&mut b_ev, "the revoke at B", Kind::Revoked, sent.mid).await;

    let room = RoomId::new("memory-room").unwrap();
    for n in [&a, &b, &c] {
        n.join(room.clone()).await.unwrap();
    }
    wait_room_peers(&a, &room, 2).await;
    let posted = a
        .send(Recipient::Room(room.clone()), b"to the room".to_vec(), None)
        .await
        .unwrap();
    expect_about(&mut b_ev, "the room message at B", Kind::Message, posted.mid).await;
    expect_about(&mut c_ev, "the room message at C", Kind::Message, posted.mid).await;
}
