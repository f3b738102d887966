//! The connection manager under a fake clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const GRACE: Duration = Duration::from_secs(10);

fn manager(high: usize, low: usize) -> Connections {
    Connections::new(Settings {
        high,
        low,
        grace: GRACE,
    })
}

/// `n` peers connected one second apart from `t0`.
fn connect(c: &mut Connections, t0: Instant, n: usize) -> Vec<PeerId> {
    (0..n)
        .map(|i| {
            let peer = PeerId::random();
            c.connected(peer, t0 + Duration::from_secs(i as u64));
            peer
        })
        .collect()
}

fn strangers(_: &PeerId) -> Value {
    Value::Stranger
}

#[test]
fn nothing_is_pruned_up_to_the_high_watermark() {
    let t0 = Instant::now();
    let mut c = manager(4, 2);
    connect(&mut c, t0, 4);
    assert!(c.prune(t0 + Duration::from_secs(60), strangers).is_empty());
    assert_eq!(c.len(), 4);
}

#[test]
fn over_the_high_watermark_the_longest_idle_go_down_to_the_low_one() {
    let t0 = Instant::now();
    let mut c = manager(4, 2);
    let peers = connect(&mut c, t0, 6);
    // The oldest peer was active recently: it is kept, the next oldest go.
    c.active(&peers[0], t0 + Duration::from_secs(30));
    let now = t0 + Duration::from_secs(60);
    let mut pruned = c.prune(now, strangers);
    pruned.sort();
    let mut expected = peers[1..5].to_vec();
    expected.sort();
    assert_eq!(pruned, expected);
    assert_eq!(c.len(), 2);
    // Forgotten at once: asking again names nobody.
    assert!(c.prune(now, strangers).is_empty());
    // Their closing connections change nothing.
    c.disconnected(&peers[1], 0);
    assert_eq!(c.len(), 2);
}

#[test]
fn protected_peers_and_peers_in_their_grace_are_never_pruned() {
    let t0 = Instant::now();
    let mut c = manager(2, 1);
    let peers = connect(&mut c, t0, 4);
    assert!(c.protect(peers[0], Reason::Relay));
    c.set_protected(Reason::Mesh, [peers[1]]);
    // peers[3] connected at t0 + 3 s: still in its grace at t0 + 12 s; peers[2] is not.
    let now = t0 + Duration::from_secs(12);
    assert_eq!(c.prune(now, strangers), vec![peers[2]]);
    // Still over, but everything left is protected or in its grace.
    assert!(c.prune(now, strangers).is_empty());
    assert_eq!(c.len(), 3);
    // Once the grace has passed, the unprotected one goes, and only it.
    assert_eq!(c.prune(t0 + Duration::from_secs(20), strangers), vec![peers[3]]);
}

#[test]
fn fresh_peers_that_exchanged_something_give_way_last_and_only_down_to_the_high_watermark() {
    let t0 = Instant::now();
    let mut c = manager(3, 1);
    // A bootstrap meets six peers within a second; four of them have answered.
    let peers = connect(&mut c, t0, 6);
    let now = t0 + Duration::from_secs(6);
    for peer in &peers[..4] {
        c.active(peer, now);
    }
    // Down to the high watermark, not the low one: three of the four that answered go, and
    // never the two still waiting for their first exchange.
    let pruned = c.prune(now, strangers);
    assert_eq!(pruned.len(), 3);
    assert!(pruned.iter().all(|p| peers[..4].contains(p)));
    assert_eq!(c.len(), 3);
    assert!(c.prune(now, strangers).is_empty());
}

#[test]
fn fresh_peers_that_exchanged_something_go_after_older_active_ones_and_strangers_first() {
    let t0 = Instant::now();
    let mut c = manager(2, 1);
    let old = connect(&mut c, t0, 1)[0];
    let now = t0 + Duration::from_secs(30);
    c.active(&old, now - Duration::from_secs(1));
    let fresh: Vec<PeerId> = connect(&mut c, now - Duration::from_secs(2), 2);
    for peer in &fresh {
        c.active(peer, now);
    }
    let useful = fresh[0];
    let value = move |p: &PeerId| if *p == useful { Value::Useful } else { Value::Stranger };
    // Three connected, high 2: the older active peer goes first.
    assert_eq!(c.prune(now, value), vec![old]);
    // One more comes and answers a second later: of the fresh strangers, the one idle longer
    // goes, and the useful one stays although it is idle as long.
    let later = now + Duration::from_secs(1);
    let more = connect(&mut c, later, 1)[0];
    c.active(&more, later);
    assert_eq!(c.prune(later, value), vec![fresh[1]]);
}

#[test]
fn a_peer_active_within_its_grace_is_not_pruned() {
    let t0 = Instant::now();
    let mut c = manager(1, 1);
    let peers = connect(&mut c, t0, 2);
    // A Kademlia exchange with peers[0] 5 s ago: its query may still be running.
    c.active(&peers[0], t0 + Duration::from_secs(55));
    assert_eq!(c.prune(t0 + Duration::from_secs(60), strangers), vec![peers[1]]);
}

#[test]
fn active_peers_give_way_when_idle_ones_do_not_bring_the_node_back_to_its_high_watermark() {
    let t0 = Instant::now();
    let mut c = manager(3, 2);
    let peers = connect(&mut c, t0, 6);
    let now = t0 + Duration::from_secs(60);
    // Every peer but peers[5] asked something within its grace, peers[1] the longest ago.
    for (i, peer) in peers.iter().enumerate().take(5) {
        let ago = if i == 1 { 9 } else { 1 + i as u64 };
        c.active(peer, now - Duration::from_secs(ago));
    }
    // The idle one goes, and then active ones only down to the high watermark, longest idle
    // first: peers[1] (9 s ago) and peers[4] (5 s ago).
    let mut pruned = c.prune(now, strangers);
    pruned.sort();
    let mut expected = vec![peers[5], peers[1], peers[4]];
    expected.sort();
    assert_eq!(pruned, expected);
    assert_eq!(c.len(), 3);
    assert!(c.prune(now, strangers).is_empty());
}

#[test]
fn strangers_go_before_useful_peers_whatever_their_idle_time() {
    let t0 = Instant::now();
    let mut c = manager(2, 2);
    let peers = connect(&mut c, t0, 3);
    // peers[0] is the longest idle but useful (a peer delivered to, or a room member).
    let useful = peers[0];
    let value = move |p: &PeerId| if *p == useful { Value::Useful } else { Value::Stranger };
    assert_eq!(c.prune(t0 + Duration::from_secs(60), value), vec![peers[1]]);
}

#[test]
fn a_reason_set_per_tick_replaces_the_last_one_and_leaves_others() {
    let t0 = Instant::now();
    let mut c = manager(1, 1);
    let peers = connect(&mut c, t0, 3);
    c.protect(peers[0], Reason::Relay);
    c.set_protected(Reason::Pipe, [peers[0], peers[1]]);
    c.set_protected(Reason::Pipe, [peers[2]]);
    assert!(c.is_protected(&peers[0], Reason::Relay));
    assert!(!c.is_protected(&peers[0], Reason::Pipe));
    assert!(!c.is_protected(&peers[1], Reason::Pipe));
    assert!(c.is_protected(&peers[2], Reason::Pipe));
    // peers[1] is the only unprotected one.
    assert_eq!(c.prune(t0 + Duration::from_secs(60), strangers), vec![peers[1]]);
    // Unprotecting the relay makes it prunable.
    c.unprotect(&peers[0], Reason::Relay);
    c.connected(PeerId::random(), t0 + Duration::from_secs(60));
    assert_eq!(c.prune(t0 + Duration::from_secs(61), strangers), vec![peers[0]]);
}

#[test]
fn a_peer_with_several_connections_counts_once_until_its_last_closes() {
    let t0 = Instant::now();
    let mut c = manager(4, 2);
    let peer = PeerId::random();
    c.connected(peer, t0);
    c.connected(peer, t0);
    assert_eq!(c.len(), 1);
    c.disconnected(&peer, 1);
    assert_eq!(c.len(), 1);
    c.disconnected(&peer, 0);
    assert_eq!(c.len(), 0);
}

#[test]
fn explicit_protections_are_bounded() {
    let mut c = manager(4, 2);
    for _ in 0..MAX_PROTECTED {
        assert!(c.protect(PeerId::random(), Reason::Sync));
    }
    assert!(!c.protect(PeerId::random(), Reason::Relay));
}

#[test]
fn watermarks_are_made_consistent() {
    let c = Connections::new(Settings {
        high: 0,
        low: 10,
        grace: GRACE,
    });
    assert_eq!((c.settings.high, c.settings.low), (1, 1));
}
