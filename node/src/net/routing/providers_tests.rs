//! The provider store's bounds under a fake clock, and the flood it must withstand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;

use super::*;

const TTL: Duration = Duration::from_secs(1800);

fn limits() -> ProviderLimits {
    ProviderLimits {
        per_key: 4,
        per_provider: 2,
        per_ip_per_key: 2,
        total: 8,
        max_ttl: TTL,
    }
}

fn key(n: u8) -> kad::RecordKey {
    kad::RecordKey::new(&[n; PROVIDER_KEY_LEN])
}

fn ip(n: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)))
}

fn record(key: &kad::RecordKey, provider: PeerId, now: Instant) -> ProviderRecord {
    ProviderRecord {
        key: key.clone(),
        provider,
        expires: Some(now + TTL),
        addresses: vec![],
    }
}

fn providers_of(s: &Providers, key: &kad::RecordKey, now: Instant) -> Vec<PeerId> {
    let mut p: Vec<PeerId> = s.providers(key, now).into_iter().map(|r| r.provider).collect();
    p.sort();
    p
}

#[test]
fn only_room_keys_and_unexpired_records_are_taken_and_expiry_is_capped() {
    let now = Instant::now();
    let mut s = Providers::new(PeerId::random(), limits());
    let mut r = record(&kad::RecordKey::new(&"/tim/route/x"), PeerId::random(), now);
    assert_eq!(s.add(r.clone(), ip(1), now), Err(ProviderRefusal::BadKey));
    r.key = key(1);
    r.expires = Some(now);
    assert_eq!(s.add(r.clone(), ip(1), now), Err(ProviderRefusal::Expired));
    // A record asking for a week is kept for `max_ttl`.
    r.expires = Some(now + Duration::from_secs(7 * 24 * 3600));
    s.add(r.clone(), ip(1), now).unwrap();
    assert_eq!(s.providers(&key(1), now)[0].expires, Some(now + TTL));
    assert!(s.providers(&key(1), now + TTL).is_empty());
}

#[test]
fn a_reannouncement_refreshes_in_place() {
    let now = Instant::now();
    let mut s = Providers::new(PeerId::random(), limits());
    let p = PeerId::random();
    s.add(record(&key(1), p, now), ip(1), now).unwrap();
    let later = now + Duration::from_secs(600);
    s.add(record(&key(1), p, later), ip(1), later).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s.providers(&key(1), later)[0].expires, Some(later + TTL));
    // Still there after the first expiry would have passed.
    assert_eq!(providers_of(&s, &key(1), now + TTL), vec![p]);
}

#[test]
fn one_provider_gets_its_share_of_keys_and_one_address_its_share_of_a_key() {
    let now = Instant::now();
    let mut s = Providers::new(PeerId::random(), limits());
    let p = PeerId::random();
    s.add(record(&key(1), p, now), ip(1), now).unwrap();
    s.add(record(&key(2), p, now), ip(1), now).unwrap();
    assert_eq!(
        s.add(record(&key(3), p, now), ip(1), now),
        Err(ProviderRefusal::ProviderFull)
    );
    // A second identity on the same address fills the address's share of key 1...
    s.add(record(&key(1), PeerId::random(), now), ip(1), now).unwrap();
    assert_eq!(
        s.add(record(&key(1), PeerId::random(), now), ip(1), now),
        Err(ProviderRefusal::AddressFull)
    );
    // ...but not of another key, and other addresses (and this machine) still get in.
    s.add(record(&key(2), PeerId::random(), now), ip(1), now).unwrap();
    s.add(record(&key(1), PeerId::random(), now), ip(2), now).unwrap();
    s.add(record(&key(1), PeerId::random(), now), None, now).unwrap();
}

/// The flood of docs/security.md: free identities from many addresses announce for a room whose
/// members announced first. The members keep their places (and keep being served) for as long as
/// they re-announce; the flood gets only the free places, and cannot push a room with fewer
/// records than its share out of a full store either.
#[test]
fn a_flood_of_identities_does_not_crowd_out_a_rooms_members() {
    let now = Instant::now();
    let mut s = Providers::new(PeerId::random(), limits());
    let room = key(1);
    let members: Vec<PeerId> = (0..2).map(|_| PeerId::random()).collect();
    for (i, m) in members.iter().enumerate() {
        s.add(record(&room, *m, now), ip(100 + i as u8), now).unwrap();
    }
    // 1,000 identities on 500 addresses: per key, first come first kept.
    let mut taken = 0;
    for n in 0..1000u32 {
        let flood_ip = Some(IpAddr::V4(Ipv4Addr::new(
            10,
            1,
            (n / 2 / 250) as u8,
            (n / 2 % 250) as u8,
        )));
        if s.add(record(&room, PeerId::random(), now), flood_ip, now).is_ok() {
            taken += 1;
        }
    }
    assert_eq!(taken, 2, "the flood gets only the free places of the key");
    // The members re-announce over the next hour: always refreshed, never refused.
    for step in 1..=6 {
        let t = now + Duration::from_secs(600 * step);
        for (i, m) in members.iter().enumerate() {
            s.add(record(&room, *m, t), ip(100 + i as u8), t).unwrap();
        }
    }
    // By then the flood's records expired (it stopped re-announcing); the members remain.
    let t = now + Duration::from_secs(3600);
    let mut expected = members.clone();
    expected.sort();
    assert_eq!(providers_of(&s, &room, t), expected);

    // A flood over many keys fills the store; a room holding fewer than the flooded keys still
    // gets its members in, at the expense of the key holding the most.
    let mut s = Providers::new(PeerId::random(), limits());
    for k in 10..14u8 {
        for n in 0..2u8 {
            s.add(record(&key(k), PeerId::random(), now), ip(k * 10 + n), now)
                .unwrap();
        }
    }
    assert_eq!(s.len(), 8);
    s.add(record(&room, members[0], now), ip(100), now).unwrap();
    assert_eq!(s.len(), 8);
    assert_eq!(providers_of(&s, &room, now), vec![members[0]]);
    // Keys all hold 2 or fewer now, so the room's second member still gets in; the third record
    // of the room would not (it would hold more than the key it takes from).
    s.add(record(&room, members[1], now), ip(101), now).unwrap();
    assert_eq!(
        s.add(record(&room, PeerId::random(), now), ip(102), now),
        Err(ProviderRefusal::StoreFull)
    );
}

#[test]
fn own_records_always_fit_and_are_served_first() {
    let now = Instant::now();
    let local = PeerId::random();
    let mut s = Providers::new(local, limits());
    for k in 0..4u8 {
        for n in 0..2u8 {
            s.add(record(&key(k), PeerId::random(), now), ip(k * 10 + n), now)
                .unwrap();
        }
    }
    s.add(record(&key(0), local, now), None, now).unwrap();
    assert_eq!(s.len(), 8);
    assert_eq!(s.providers(&key(0), now)[0].provider, local);
    assert_eq!(s.local_records().len(), 1);
}

#[test]
fn a_full_keys_providers_are_served_in_turn() {
    let now = Instant::now();
    let mut l = limits();
    l.per_key = 64;
    l.per_provider = 64;
    l.per_ip_per_key = 64;
    l.total = 64;
    let mut s = Providers::new(PeerId::random(), l);
    for _ in 0..64 {
        s.add(record(&key(1), PeerId::random(), now), ip(1), now).unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.extend(
            s.providers(&key(1), now)
                .into_iter()
                .take(kad::K_VALUE.get())
                .map(|r| r.provider),
        );
    }
    assert_eq!(seen.len(), 64);
}
