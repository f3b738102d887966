//! The store's decisions and bounds under a fixed clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use tim_protocol::{encode, AccountKey};

const NOW: u64 = 1_000_000_000;

fn fixed_clock() -> u64 {
    NOW
}

fn store(limits: Limits) -> RouteStore {
    let mut s = RouteStore::new(PeerId::random(), limits, Arc::default());
    s.clock = fixed_clock;
    s
}

fn small() -> Limits {
    Limits {
        max_records: 4,
        per_source: 2,
        max_ttl: Duration::from_secs(3600),
    }
}

fn record(key: &AccountKey, seq: u64, expires_at: u64) -> kad::Record {
    let route = RouteRecord::sign(key, PeerId::random().to_bytes(), vec![], seq, expires_at, None).unwrap();
    kad::Record::new(route_key(&key.account_id()), encode(&route).unwrap())
}

fn put_from(s: &mut RouteStore, source: PeerId, r: kad::Record) -> kad::store::Result<()> {
    s.set_source(Some(source), None);
    let result = s.put(r);
    s.set_source(None, None);
    result
}

fn seq_of(s: &RouteStore, key: &AccountKey) -> Option<u64> {
    let r = s.get(&route_key(&key.account_id()))?;
    Some(decode::<RouteRecord>(&r.value).unwrap().seq)
}

#[test]
fn an_older_unexpired_record_does_not_replace_a_newer_one() {
    let mut s = store(Limits::default());
    let (alice, peer) = (AccountKey::generate(), PeerId::random());
    put_from(&mut s, peer, record(&alice, 2, NOW + 60_000)).unwrap();
    // Older, though it expires later: refused, and the newer stays.
    assert!(put_from(&mut s, peer, record(&alice, 1, NOW + 600_000)).is_err());
    assert_eq!(seq_of(&s, &alice), Some(2));
    // Newer replaces.
    put_from(&mut s, peer, record(&alice, 3, NOW + 30_000)).unwrap();
    assert_eq!(seq_of(&s, &alice), Some(3));
}

#[test]
fn decide_orders_by_seq_then_expiry_and_keeps_an_identical_record() {
    let (local, peer) = (PeerId::random(), PeerId::random());
    let key = kad::RecordKey::new(&"k");
    let held = Held {
        seq: 5,
        expires_at: 100,
        source: peer,
    };
    let count = HashMap::from([(peer, 1)]);
    let limits = Limits::default();
    let d = |seq, expires_at| {
        let new = Held {
            seq,
            expires_at,
            source: peer,
        };
        decide(&key, new, [(&key, &held)], &count, &limits, local)
    };
    assert_eq!(d(4, 1_000), Decision::Refuse(Refusal::Stale));
    assert_eq!(d(5, 99), Decision::Refuse(Refusal::Stale));
    assert_eq!(d(5, 100), Decision::Unchanged);
    assert_eq!(d(5, 101), Decision::Store);
    assert_eq!(d(6, 1), Decision::Store);
}

#[test]
fn an_expired_record_is_neither_stored_nor_served() {
    let mut s = store(Limits::default());
    let (alice, bob, peer) = (AccountKey::generate(), AccountKey::generate(), PeerId::random());
    assert!(put_from(&mut s, peer, record(&alice, 1, NOW)).is_err());
    assert!(s.get(&route_key(&alice.account_id())).is_none());
    // Stored while valid; once its signed expiry passes it is not served.
    put_from(&mut s, peer, record(&bob, 1, NOW + 1)).unwrap();
    assert!(s.get(&route_key(&bob.account_id())).is_some());
    fn later() -> u64 {
        NOW + 1
    }
    s.clock = later;
    assert!(s.get(&route_key(&bob.account_id())).is_none());
    assert_eq!(s.records().count(), 0);
}

#[test]
fn kad_expiry_is_the_signed_expiry_capped_by_the_max_ttl() {
    let mut s = store(small());
    let (alice, bob, peer) = (AccountKey::generate(), AccountKey::generate(), PeerId::random());
    let before = Instant::now();
    put_from(&mut s, peer, record(&alice, 1, NOW + 60_000)).unwrap();
    put_from(&mut s, peer, record(&bob, 1, NOW + 48 * 3_600_000)).unwrap();
    let expires = |k: &AccountKey| s.get(&route_key(&k.account_id())).unwrap().expires.unwrap();
    let alice_in = expires(&alice).duration_since(before);
    assert!(
        alice_in <= Duration::from_secs(61) && alice_in >= Duration::from_secs(59),
        "{alice_in:?}"
    );
    assert!(expires(&bob).duration_since(before) <= Duration::from_secs(3601));
}

#[test]
fn one_peer_cannot_store_more_than_its_share() {
    let mut s = store(Limits::default());
    let flooder = PeerId::random();
    let results: Vec<_> = (0..20)
        .map(|_| put_from(&mut s, flooder, record(&AccountKey::generate(), 1, NOW + 60_000)).is_ok())
        .collect();
    assert_eq!(results.iter().filter(|ok| **ok).count(), 8);
    assert!(
        results[8..].iter().all(|ok| !ok),
        "every record beyond the share is refused"
    );
    // An honest publisher still gets in.
    let honest = AccountKey::generate();
    put_from(&mut s, PeerId::random(), record(&honest, 1, NOW + 60_000)).unwrap();
    assert_eq!(seq_of(&s, &honest), Some(1));
}

#[test]
fn a_full_store_makes_room_only_for_a_sender_holding_fewer() {
    let mut s = store(small());
    let (heavy, light) = (PeerId::random(), PeerId::random());
    let heavy_keys: Vec<_> = (0..2).map(|_| AccountKey::generate()).collect();
    put_from(&mut s, heavy, record(&heavy_keys[0], 1, NOW + 50_000)).unwrap();
    put_from(&mut s, heavy, record(&heavy_keys[1], 1, NOW + 90_000)).unwrap();
    put_from(&mut s, light, record(&AccountKey::generate(), 1, NOW + 60_000)).unwrap();
    put_from(
        &mut s,
        PeerId::random(),
        record(&AccountKey::generate(), 1, NOW + 60_000),
    )
    .unwrap();
    assert_eq!(s.records().count(), 4);
    // A newcomer evicts the soonest-expiring record of the sender holding most.
    let newcomer = AccountKey::generate();
    put_from(&mut s, PeerId::random(), record(&newcomer, 1, NOW + 60_000)).unwrap();
    assert!(seq_of(&s, &newcomer).is_some());
    assert!(seq_of(&s, &heavy_keys[0]).is_none());
    assert!(seq_of(&s, &heavy_keys[1]).is_some());
    // Now every sender holds one: a sender already holding one cannot push out another's.
    assert!(put_from(&mut s, light, record(&AccountKey::generate(), 1, NOW + 60_000)).is_err());
    assert_eq!(s.records().count(), 4);
}

#[test]
fn a_flood_from_many_fresh_peers_cannot_keep_an_honest_record_out() {
    let mut s = store(small());
    for _ in 0..50 {
        let _ = put_from(
            &mut s,
            PeerId::random(),
            record(&AccountKey::generate(), 1, NOW + 600_000),
        );
    }
    let honest = AccountKey::generate();
    put_from(&mut s, PeerId::random(), record(&honest, 1, NOW + 60_000)).unwrap();
    assert!(seq_of(&s, &honest).is_some());
    assert_eq!(s.records().count(), 4);
}

#[test]
fn own_records_always_fit_and_are_never_evicted() {
    let mut s = store(small());
    let mine = AccountKey::generate();
    for _ in 0..4 {
        put_from(
            &mut s,
            PeerId::random(),
            record(&AccountKey::generate(), 1, NOW + 60_000),
        )
        .unwrap();
    }
    s.put(record(&mine, 1, NOW + 60_000)).unwrap();
    for _ in 0..20 {
        let _ = put_from(
            &mut s,
            PeerId::random(),
            record(&AccountKey::generate(), 1, NOW + 60_000),
        );
    }
    assert!(seq_of(&s, &mine).is_some());
}

#[test]
fn invalid_records_and_provider_records_under_other_keys_are_refused() {
    let mut s = store(Limits::default());
    let (alice, bob) = (AccountKey::generate(), AccountKey::generate());
    let mut wrong_key = record(&alice, 1, NOW + 60_000);
    wrong_key.key = route_key(&bob.account_id());
    assert!(put_from(&mut s, PeerId::random(), wrong_key).is_err());
    let mut forged = record(&alice, 1, NOW + 60_000);
    let last = forged.value.len() - 1;
    forged.value[last] ^= 1;
    assert!(put_from(&mut s, PeerId::random(), forged).is_err());
    let junk = kad::Record::new(kad::RecordKey::new(&"/other"), vec![1, 2, 3]);
    assert!(put_from(&mut s, PeerId::random(), junk).is_err());
    // Provider records only under room-provider keys (32 bytes), never under a route key.
    let provider = ProviderRecord::new(kad::RecordKey::new(&"k"), PeerId::random(), vec![]);
    assert!(s.add_provider(provider).is_err());
    let provider = ProviderRecord::new(route_key(&alice.account_id()), PeerId::random(), vec![]);
    assert!(s.add_provider(provider).is_err());
    assert_eq!(s.records().count(), 0);
    let room = kad::RecordKey::new(&[7u8; 32]);
    let member = PeerId::random();
    s.add_provider(ProviderRecord::new(room.clone(), member, vec![]))
        .unwrap();
    assert_eq!(s.providers(&room)[0].provider, member);
    s.remove_provider(&room, &member);
    assert!(s.providers(&room).is_empty());
}

#[test]
fn own_seq_only_grows() {
    let mut s = store(Limits::default());
    let first = s.next_seq();
    assert_eq!(first, NOW);
    assert_eq!(s.next_seq(), NOW + 1);
}
