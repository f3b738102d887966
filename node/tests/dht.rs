//! A node's DHT record store against a bare Kademlia peer on 127.0.0.1: the newest route record
//! per account wins, expired records are never served, one peer cannot fill the store, and a
//! refused record is never acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{kad::*, *};
use libp2p::PeerId;
use tim_node::protocol::{decode, AccountKey, Code, RouteRecord};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_route_record_does_not_replace_a_newer_one() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (node, _events) = start(dir.path(), vec![]).await;
    let mut peer = KadPeer::connect(&node).await;
    let alice = AccountKey::generate();
    let (now_at, then_at) = (PeerId::random(), PeerId::random());
    let expires = now_ms() + 600_000;
    assert!(
        peer.put(route(&alice, now_at, 2, expires)).await,
        "the newer record is stored"
    );
    // Older though it expires later: refused, and the remote is not told it was stored.
    assert!(!peer.put(route(&alice, then_at, 1, expires + 600_000)).await);
    assert_eq!(node.lookup(alice.account_id()).await.unwrap(), now_at);
    let served = peer.get(route_key(&alice)).await;
    let seqs: Vec<u64> = served
        .iter()
        .map(|r| decode::<RouteRecord>(&r.value).unwrap().seq)
        .collect();
    assert_eq!(seqs, vec![2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_record_past_its_signed_expiry_is_not_stored_served_or_used() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (node, _events) = start(dir.path(), vec![]).await;
    let mut peer = KadPeer::connect(&node).await;
    let (gone, soon) = (AccountKey::generate(), AccountKey::generate());
    assert!(!peer.put(route(&gone, PeerId::random(), 1, now_ms() - 1)).await);
    let expires_at = now_ms() + 1_500;
    assert!(peer.put(route(&soon, PeerId::random(), 1, expires_at)).await);
    assert_eq!(peer.get(route_key(&soon)).await.len(), 1);
    // Wait out the signed expiry (a wall-clock deadline, not a guess).
    tokio::time::sleep(Duration::from_millis(expires_at.saturating_sub(now_ms()) + 50)).await;
    assert!(
        peer.get(route_key(&soon)).await.is_empty(),
        "an expired record is not served"
    );
    assert_eq!(
        node.lookup(soon.account_id()).await.unwrap_err().code(),
        Code::Unreachable
    );
    assert_eq!(
        node.lookup(gone.account_id()).await.unwrap_err().code(),
        Code::Unreachable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_peer_is_refused_beyond_its_share_and_honest_routes_still_land() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev) = start(dirs[0].path(), vec![]).await;
    let mut flooder = KadPeer::connect(&a).await;
    let junk = (0..20)
        .map(|_| route(&AccountKey::generate(), PeerId::random(), 1, now_ms() + 3_600_000))
        .collect();
    let stored = flooder.put_all(junk).await;
    // The node's share per sending peer is 8: the rest are refused, and never acknowledged.
    assert_eq!(stored.iter().filter(|s| **s).count(), 8, "{stored:?}");
    // An honest node publishing its route through A is still stored and found.
    let (b, _b_ev) = start(dirs[1].path(), vec![addr(&a).await]).await;
    routed(&a, &b).await;
    assert_eq!(a.lookup(b.account()).await.unwrap(), b.peer_id());
}
