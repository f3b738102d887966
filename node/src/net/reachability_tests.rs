use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

use super::{Reachability, ReachabilityState, RelayAction, RelaySettings, MAX_BACKOFF};

fn settings() -> RelaySettings {
    RelaySettings {
        wanted: 2,
        undecided_after: Duration::from_secs(30),
    }
}

fn addr(n: u8) -> Multiaddr {
    format!("/ip4/203.0.113.{n}/tcp/4001").parse().unwrap()
}

fn drain(state: &mut ReachabilityState) -> Vec<RelayAction> {
    std::iter::from_fn(|| state.poll()).collect()
}

fn reserves(actions: &[RelayAction]) -> Vec<PeerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            RelayAction::Reserve { relay, .. } => Some(*relay),
            _ => None,
        })
        .collect()
}

#[test]
fn unknown_until_a_probe_fails_and_then_reserves_on_the_wanted_number_of_relays() {
    let t0 = Instant::now();
    let mut s = ReachabilityState::new(settings(), t0);
    let relays: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
    for (i, r) in relays.iter().enumerate() {
        s.relay_offered(*r, addr(i as u8 + 1), false, t0);
    }
    assert_eq!(s.reachability(t0), Reachability::Unknown);
    assert!(drain(&mut s).is_empty(), "nothing is reserved before a verdict");
    s.probe_failed(t0);
    assert_eq!(s.reachability(t0), Reachability::Private);
    let actions = drain(&mut s);
    assert_eq!(actions[0], RelayAction::Republish, "the verdict changed");
    assert_eq!(reserves(&actions), relays[..2].to_vec(), "the two oldest candidates");
    assert!(s.relays().is_empty(), "none accepted yet");
    s.reservation_accepted(relays[0], t0);
    assert_eq!(drain(&mut s), vec![RelayAction::Republish]);
    assert_eq!(s.relays(), vec![relays[0]]);
    assert_eq!(s.relays_in_use().len(), 2, "the second is still asked for");
    assert!(!s.slots.contains_key(&relays[2]));
}

#[test]
fn undecided_for_long_acts_as_private() {
    let t0 = Instant::now();
    let mut s = ReachabilityState::new(settings(), t0);
    let r = PeerId::random();
    s.relay_offered(r, addr(1), false, t0);
    s.tick(t0 + Duration::from_secs(29));
    assert!(drain(&mut s).is_empty());
    s.tick(t0 + Duration::from_secs(30));
    assert_eq!(s.reachability(t0 + Duration::from_secs(30)), Reachability::Private);
    assert_eq!(reserves(&drain(&mut s)), vec![r]);
}

#[test]
fn bootstrap_peers_are_asked_first() {
    let t0 = Instant::now();
    let mut s = ReachabilityState::new(settings(), t0);
    s.probe_failed(t0);
    drain(&mut s);
    let stranger = PeerId::random();
    let bootstrap = PeerId::random();
    let other = PeerId::random();
    s.relay_offered(stranger, addr(1), false, t0);
    // The stranger was the only one: it got a slot at once.
    assert_eq!(reserves(&drain(&mut s)), vec![stranger]);
    s.relay_offered(bootstrap, addr(2), true, t0);
    s.relay_offered(other, addr(3), false, t0);
    assert_eq!(
        reserves(&drain(&mut s)),
        vec![bootstrap],
        "the bootstrap peer before the other"
    );
}

#[test]
fn a_lost_relay_is_replaced_and_backed_off_with_doubling_waits() {
    let t0 = Instant::now();
    let mut s = ReachabilityState::new(
        RelaySettings {
            wanted: 1,
            ..settings()
        },
        t0,
    );
    let (a, b) = (PeerId::random(), PeerId::random());
    s.relay_offered(a, addr(1), true, t0);
    s.relay_offered(b, addr(2), false, t0);
    s.probe_failed(t0);
    assert_eq!(reserves(&drain(&mut s)), vec![a]);
    s.reservation_accepted(a, t0);
    drain(&mut s);
    // The relay drops the reservation: the other candidate takes over, and the route changes.
    s.reservation_ended(a, t0);
    let actions = drain(&mut s);
    assert!(actions.contains(&RelayAction::Republish));
    assert_eq!(reserves(&actions), vec![b]);
    s.reservation_ended(b, t0);
    // Both are backed off now: nothing to ask until the first back-off ends.
    assert!(reserves(&drain(&mut s)).is_empty());
    s.tick(t0 + Duration::from_secs(5));
    assert_eq!(reserves(&drain(&mut s)), vec![a], "a's first back-off is over");
    s.reservation_ended(a, t0 + Duration::from_secs(5));
    assert_eq!(
        reserves(&drain(&mut s)),
        vec![b],
        "b's first back-off is over; a waits 10 s now"
    );
    // The back-off never grows past its ceiling.
    let mut now = t0 + Duration::from_secs(10);
    for _ in 0..20 {
        s.reservation_ended(b, now);
        drain(&mut s);
        now += MAX_BACKOFF;
        s.tick(now);
        drain(&mut s);
    }
    s.reservation_ended(a, now);
    s.reservation_ended(b, now);
    drain(&mut s);
    s.tick(now + MAX_BACKOFF);
    assert_eq!(reserves(&drain(&mut s)).len(), 1);
}

#[test]
fn a_disconnected_candidate_is_not_asked_and_a_lost_connection_ends_the_slot() {
    let t0 = Instant::now();
    let mut s = ReachabilityState::new(settings(), t0);
    let r = PeerId::random();
    s.relay_offered(r, addr(1), false, t0);
    s.disconnected(&r, t0);
    s.probe_failed(t0);
    assert!(reserves(&drain(&mut s)).is_empty());
    s.relay_offered(r, addr(1), false, t0);
    assert_eq!(reserves(&drain(&mut s)), vec![r]);
    s.reservation_accepted(r, t0);
    drain(&mut s);
    s.disconnected(&r, t0);
    assert_eq!(drain(&mut s), vec![RelayAction::Republish]);
    assert!(s.relays().is_empty());
}

#[test]
fn becoming_public_releases_every_relay() {
    let t0 = Instant::now();
    let mut s = ReachabilityState::new(settings(), t0);
    let (a, b) = (PeerId::random(), PeerId::random());
    s.relay_offered(a, addr(1), false, t0);
    s.relay_offered(b, addr(2), false, t0);
    s.probe_failed(t0);
    drain(&mut s);
    s.reservation_accepted(a, t0);
    drain(&mut s);
    s.address_confirmed(addr(9), t0);
    assert_eq!(s.reachability(t0), Reachability::Public);
    let actions = drain(&mut s);
    assert_eq!(actions[0], RelayAction::Republish);
    let mut released: Vec<PeerId> = actions
        .iter()
        .filter_map(|a| match a {
            RelayAction::Release { relay } => Some(*relay),
            _ => None,
        })
        .collect();
    released.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(released, expected);
    assert!(s.relays().is_empty());
    // A late acceptance after the release is released again.
    s.reservation_accepted(a, t0);
    assert_eq!(drain(&mut s), vec![RelayAction::Release { relay: a }]);
    // The address expires: private again, relays are sought again.
    s.address_expired(&addr(9), t0);
    assert_eq!(s.reachability(t0), Reachability::Private);
    assert_eq!(reserves(&drain(&mut s)).len(), 2);
}

#[test]
fn candidates_are_bounded_and_keep_the_preferred_and_those_in_use() {
    let t0 = Instant::now();
    let mut s = ReachabilityState::new(
        RelaySettings {
            wanted: 1,
            ..settings()
        },
        t0,
    );
    let bootstrap = PeerId::random();
    s.relay_offered(bootstrap, addr(1), true, t0);
    for i in 0..500u32 {
        s.relay_offered(PeerId::random(), addr((i % 250) as u8), false, t0);
    }
    assert!(s.candidates.len() <= super::MAX_CANDIDATES);
    assert!(s.candidates.contains_key(&bootstrap));
    s.probe_failed(t0);
    assert_eq!(reserves(&drain(&mut s)), vec![bootstrap]);
}
