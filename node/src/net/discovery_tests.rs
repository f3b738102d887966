//! Room discovery decisions under a fake clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const MIN: Duration = Duration::from_secs(2);
const MAX: Duration = Duration::from_secs(60);
const REPUBLISH: Duration = Duration::from_secs(600);

fn discovery() -> Discovery {
    Discovery::new(
        PeerId::random(),
        Settings {
            republish: REPUBLISH,
            retry_min: MIN,
            retry_max: MAX,
            want: 3,
            low: 2,
        },
    )
}

fn room(name: &str) -> RoomId {
    RoomId::new(name).unwrap()
}

fn drain(d: &mut Discovery) -> Vec<Output> {
    std::iter::from_fn(|| d.poll()).collect()
}

/// The outputs that are announcements (lookups of the joining phase left out).
fn announces(d: &mut Discovery) -> Vec<Output> {
    drain(d)
        .into_iter()
        .filter(|o| !matches!(o, Output::LookUp(_)))
        .collect()
}

fn peers(mesh: usize, members: usize) -> RoomPeers {
    RoomPeers { mesh, members }
}

/// Runs the joining phase of `r` (joined at `t0`) with lookups that find nothing new while the
/// room looks like `seen`: returns the waits between lookups and the time of the last lookup's end.
fn joining_phase(d: &mut Discovery, r: &RoomId, t0: Instant, seen: RoomPeers) -> (Vec<u64>, Instant) {
    let mut now = t0;
    let mut waits = Vec::new();
    for _ in 0..6 {
        d.lookup_done(r, seen, now);
        let mut t = now;
        loop {
            t += Duration::from_secs(1);
            d.tick(t, |_| seen);
            if drain(d).contains(&Output::LookUp(r.clone())) {
                break;
            }
        }
        waits.push((t - now).as_secs());
        now = t;
    }
    (waits, now)
}

#[test]
fn joining_announces_and_looks_up_at_once_and_leaving_stops_announcing() {
    let (mut d, t0, r) = (discovery(), Instant::now(), room("r"));
    d.join(r.clone(), t0);
    assert_eq!(
        drain(&mut d),
        vec![Output::Announce(r.clone()), Output::LookUp(r.clone())]
    );
    // Joining again changes nothing.
    d.join(r.clone(), t0);
    assert!(drain(&mut d).is_empty());
    d.leave(&r);
    assert_eq!(drain(&mut d), vec![Output::StopAnnouncing(r.clone())]);
    // A left room is not announced or looked up any more, and its late answers are ignored.
    d.announced(&r, true, t0);
    d.lookup_done(&r, peers(0, 0), t0);
    d.tick(t0 + REPUBLISH * 2, |_| peers(0, 0));
    assert!(drain(&mut d).is_empty());
    assert!(!d.is_joined(&r));
}

#[test]
fn a_healthy_room_is_announced_and_looked_up_every_republish_interval() {
    let (mut d, t0, r) = (discovery(), Instant::now(), room("r"));
    d.join(r.clone(), t0);
    drain(&mut d);
    d.announced(&r, true, t0);
    // Members joining together miss each other's announcements: even a healthy room keeps
    // looking on the backoff for a while after joining.
    let (waits, t1) = joining_phase(&mut d, &r, t0, peers(2, 2));
    assert_eq!(waits, vec![2, 4, 8, 16, 32, 60]);
    d.lookup_done(&r, peers(2, 2), t1);
    d.tick(t0 + REPUBLISH, |_| peers(2, 2));
    assert_eq!(drain(&mut d), vec![Output::Announce(r.clone())]);
    d.tick(t1 + REPUBLISH - Duration::from_secs(1), |_| peers(2, 2));
    assert!(drain(&mut d).is_empty());
    d.tick(t1 + REPUBLISH, |_| peers(2, 2));
    assert_eq!(drain(&mut d), vec![Output::LookUp(r.clone())]);
    // Nothing more while it runs.
    d.tick(t1 + REPUBLISH * 3, |_| peers(2, 2));
    assert!(drain(&mut d).is_empty());
}

#[test]
fn a_short_mesh_is_looked_up_on_a_backoff_that_resets_when_someone_new_is_found() {
    let (mut d, t0, r) = (discovery(), Instant::now(), room("r"));
    d.join(r.clone(), t0);
    drain(&mut d);
    let mut now = t0;
    // Lookups that find no one: 2 s, 4 s, 8 s, ... up to 60 s.
    let mut waits = Vec::new();
    for _ in 0..7 {
        d.lookup_done(&r, peers(0, 0), now);
        let mut t = now;
        loop {
            t += Duration::from_secs(1);
            d.tick(t, |_| peers(0, 0));
            if drain(&mut d).contains(&Output::LookUp(r.clone())) {
                break;
            }
        }
        waits.push((t - now).as_secs());
        now = t;
    }
    assert_eq!(waits, vec![2, 4, 8, 16, 32, 60, 60]);
    // A lookup that finds a new member brings the short wait back.
    d.found(&r, [PeerId::random()], |_| false, peers(0, 0), now);
    assert_eq!(drain(&mut d).len(), 1);
    d.lookup_done(&r, peers(0, 0), now);
    d.tick(now + MIN, |_| peers(0, 0));
    assert_eq!(drain(&mut d), vec![Output::LookUp(r.clone())]);
}

#[test]
fn a_small_room_whose_members_are_all_known_waits_for_the_republish_interval() {
    let (mut d, t0, r) = (discovery(), Instant::now(), room("r"));
    d.join(r.clone(), t0);
    drain(&mut d);
    d.announced(&r, true, t0);
    // The one other member is connected already: nothing new, though the mesh is short.
    let other = PeerId::random();
    d.found(&r, [other], |p| *p == other, peers(1, 1), t0);
    assert!(drain(&mut d).is_empty());
    let (_, t1) = joining_phase(&mut d, &r, t0, peers(1, 1));
    d.found(&r, [other], |p| *p == other, peers(1, 1), t1);
    d.lookup_done(&r, peers(1, 1), t1);
    d.tick(t1 + REPUBLISH - Duration::from_secs(1), |_| peers(1, 1));
    assert!(!drain(&mut d).contains(&Output::LookUp(r.clone())));
    d.tick(t1 + REPUBLISH, |_| peers(1, 1));
    assert_eq!(drain(&mut d), vec![Output::LookUp(r.clone())]);
}

#[test]
fn a_mesh_that_falls_short_is_looked_up_at_once() {
    let (mut d, t0, r) = (discovery(), Instant::now(), room("r"));
    d.join(r.clone(), t0);
    drain(&mut d);
    d.announced(&r, true, t0);
    d.lookup_done(&r, peers(3, 3), t0);
    d.tick(t0 + Duration::from_secs(1), |_| peers(3, 3));
    assert!(drain(&mut d).is_empty());
    d.tick(t0 + Duration::from_secs(2), |_| peers(1, 1));
    assert_eq!(drain(&mut d), vec![Output::LookUp(r.clone())]);
}

#[test]
fn an_announcement_nobody_took_is_retried_on_the_backoff() {
    let (mut d, t0, r) = (discovery(), Instant::now(), room("r"));
    d.join(r.clone(), t0);
    drain(&mut d);
    d.lookup_done(&r, peers(2, 2), t0);
    d.announced(&r, false, t0);
    d.tick(t0 + MIN, |_| peers(2, 2));
    assert_eq!(announces(&mut d), vec![Output::Announce(r.clone())]);
    d.announced(&r, false, t0 + MIN);
    d.tick(t0 + MIN * 2, |_| peers(2, 2));
    assert!(announces(&mut d).is_empty());
    d.tick(t0 + MIN * 3, |_| peers(2, 2));
    assert_eq!(announces(&mut d), vec![Output::Announce(r.clone())]);
}

#[test]
fn found_members_are_dialled_up_to_the_wanted_size_and_not_again_soon() {
    let (mut d, t0, r) = (discovery(), Instant::now(), room("r"));
    let local = d.local;
    d.join(r.clone(), t0);
    drain(&mut d);
    let connected = PeerId::random();
    let found: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
    let all: Vec<PeerId> = [local, connected].into_iter().chain(found.iter().copied()).collect();
    // One member connected already, want 3: two dials, never to itself or the connected one.
    d.found(&r, all.clone(), |p| *p == connected, peers(1, 1), t0);
    assert_eq!(drain(&mut d), vec![Output::Dial(found[0]), Output::Dial(found[1])]);
    // The next lookup within `retry_max` does not dial them again, but others.
    d.lookup_done(&r, peers(1, 1), t0);
    d.tick(t0 + MIN, |_| peers(1, 1));
    assert_eq!(drain(&mut d), vec![Output::LookUp(r.clone())]);
    d.found(&r, all.clone(), |p| *p == connected, peers(1, 1), t0 + MIN);
    assert_eq!(drain(&mut d), vec![Output::Dial(found[2]), Output::Dial(found[3])]);
    // After `retry_max`, the first ones may be dialled again.
    d.lookup_done(&r, peers(1, 1), t0 + MIN);
    d.tick(t0 + MAX + MIN, |_| peers(1, 1));
    drain(&mut d);
    d.found(&r, all, |p| *p == connected, peers(1, 1), t0 + MAX + MIN);
    assert_eq!(drain(&mut d), vec![Output::Dial(found[0]), Output::Dial(found[1])]);
}

#[test]
fn a_flood_of_providers_costs_at_most_want_dials_per_lookup() {
    let (mut d, t0, r) = (discovery(), Instant::now(), room("r"));
    d.join(r.clone(), t0);
    drain(&mut d);
    let flood: Vec<PeerId> = (0..10_000).map(|_| PeerId::random()).collect();
    d.found(&r, flood.iter().copied(), |_| false, peers(0, 0), t0);
    d.found(&r, flood.iter().copied(), |_| false, peers(0, 0), t0);
    assert_eq!(drain(&mut d).len(), 3);
    assert!(d.dialled.len() <= MAX_DIALLED);
}

#[test]
fn a_room_with_its_wanted_members_still_dials_one_bridge_per_lookup() {
    let (mut d, t0, r) = (discovery(), Instant::now(), room("r"));
    d.join(r.clone(), t0);
    drain(&mut d);
    // Three members connected (want 3): a group that may have found only itself. Of the new
    // members the lookup found, one is dialled, to join the groups.
    let others: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
    d.found(&r, others.iter().copied(), |_| false, peers(3, 3), t0);
    assert_eq!(drain(&mut d), vec![Output::Dial(others[0])]);
    // Not more in the same lookup.
    d.found(&r, others.iter().copied(), |_| false, peers(3, 3), t0);
    assert!(drain(&mut d).is_empty());
}

#[test]
fn a_lookup_has_enough_once_its_dials_fill_the_room_or_bridge_it() {
    let (mut d, t0, r) = (discovery(), Instant::now(), room("r"));
    d.join(r.clone(), t0);
    drain(&mut d);
    // Nothing found yet: the walk goes on.
    assert!(!d.lookup_has_enough(&r, peers(0, 0)));
    // One new member for a room of one (want 3): still short, the walk goes on.
    let first = PeerId::random();
    d.found(&r, [first], |_| false, peers(1, 1), t0);
    assert!(!d.lookup_has_enough(&r, peers(1, 1)));
    // Two more, of which one is dialled: with the one connected, the room has its three.
    let more: Vec<PeerId> = (0..2).map(|_| PeerId::random()).collect();
    d.found(&r, more.iter().copied(), |_| false, peers(1, 1), t0);
    assert!(d.lookup_has_enough(&r, peers(1, 1)));
    assert_eq!(drain(&mut d), vec![Output::Dial(first), Output::Dial(more[0])]);
    // A full room whose lookup found only connected members has no bridge yet: it goes on.
    d.lookup_done(&r, peers(3, 3), t0);
    d.tick(t0 + MIN, |_| peers(3, 3));
    drain(&mut d);
    d.found(&r, more.iter().copied(), |_| true, peers(3, 3), t0 + MIN);
    assert!(!d.lookup_has_enough(&r, peers(3, 3)));
    // Its bridge, once found, ends it; and a lookup that ended has nothing to end.
    d.found(&r, [PeerId::random()], |_| false, peers(3, 3), t0 + MIN);
    assert!(d.lookup_has_enough(&r, peers(3, 3)));
    d.lookup_done(&r, peers(3, 3), t0 + MIN);
    assert!(!d.lookup_has_enough(&r, peers(3, 3)));
}
