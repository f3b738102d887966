//! Tests of the seal-key books and of what a node learns from bodies, routes and
//! announcements.

use super::*;
use tim_protocol::{seal::SealSecret, test_util::key, AccountKey};

fn record(k: &AccountKey, seq: u64) -> SealKeyRecord {
    SealKeyRecord::sign(k, &SealSecret::generate(), seq)
}

#[test]
fn a_flood_of_strangers_never_displaces_a_trusted_record() {
    let mut book = SealRecords::default();
    let contact = key(1);
    let kept = record(&contact, 5);
    assert_eq!(book.take(kept.clone(), Tier::Trusted).keep, Some(kept.clone()));
    for _ in 0..MAX_STRANGERS + 10 {
        let change = book.take(record(&AccountKey::generate(), 1), Tier::Stranger);
        assert_eq!(
            change,
            Change::default(),
            "strangers' records are not kept in the store"
        );
    }
    assert_eq!(book.strangers.len(), MAX_STRANGERS);
    assert_eq!(book.newest(&contact.account_id()), Some(&kept));
}

#[test]
fn only_newer_records_replace_and_a_trusted_accounts_record_stays_trusted() {
    let mut book = SealRecords::default();
    let bob = key(2);
    let (old, new) = (record(&bob, 1), record(&bob, 2));
    book.take(new.clone(), Tier::Trusted);
    assert_eq!(book.take(old, Tier::Trusted), Change::default());
    assert_eq!(book.newest(&bob.account_id()), Some(&new));
    // A newer record of Bob's arriving on a stranger's path is still Bob's: kept as trusted.
    let newer = record(&bob, 3);
    assert_eq!(book.take(newer.clone(), Tier::Stranger).keep, Some(newer.clone()));
    assert!(book.strangers.is_empty());
    // A stranger's record, then the same account trusted: the stranger entry goes.
    let carol = key(3);
    book.take(record(&carol, 1), Tier::Stranger);
    let trusted = record(&carol, 2);
    book.take(trusted.clone(), Tier::Trusted);
    assert_eq!(book.newest(&carol.account_id()), Some(&trusted));
    assert!(!book.strangers.contains_key(&carol.account_id()));
}

#[test]
fn a_strangers_record_is_promoted_when_a_trusted_path_brings_it_again() {
    let mut book = SealRecords::default();
    let dave = record(&key(6), 1);
    assert_eq!(book.take(dave.clone(), Tier::Stranger), Change::default());
    assert!(!book.would_change(&dave, Tier::Stranger));
    assert!(book.would_change(&dave, Tier::Trusted));
    assert_eq!(book.take(dave.clone(), Tier::Trusted).keep, Some(dave.clone()));
    assert_eq!(book.trusted(&dave.account), Some(&dave));
    assert!(!book.would_change(&dave, Tier::Trusted));
}

#[test]
fn a_full_trusted_book_forgets_one_record_and_says_which() {
    let mut book = SealRecords::default();
    for _ in 0..MAX_TRUSTED {
        book.take(record(&AccountKey::generate(), 1), Tier::Trusted);
    }
    let change = book.take(record(&key(4), 1), Tier::Trusted);
    let forgot = change.forget.unwrap_or_else(|| panic!("nothing forgotten"));
    assert!(book.newest(&forgot).is_none());
    assert_eq!(book.trusted.len(), MAX_TRUSTED);
}

mod learning {
    use super::*;
    use tim_protocol::{
        seal::{is_sealed_to, Keyring, Reader, SealSecret},
        test_util::key,
        AccountKey, RoomId,
    };
    use tim_storage::Store;

    fn publishing(k: &AccountKey, seq: u64) -> Keyring {
        Keyring::new(k, &[(seq, SealSecret::generate())]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A sealed body from `ring`'s account to `to`, sealed to `readers` with derived keys.
    fn body_from(ring: &Keyring, to: &Recipient, readers: &[AccountId]) -> Vec<u8> {
        let readers: Vec<Reader> = readers.iter().filter_map(Reader::derived).collect();
        seal::seal(ring, to, &readers, b"hello", &mut Default::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_reader_is_sealed_to_with_the_newest_record_its_own_verified_bodies_carry() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (alice, bob) = (key(1), key(2));
        let core = crate::core::test_core::core(dir.path(), alice.clone(), publishing(&alice, 1), &[]);
        let to_alice = Recipient::Account(alice.account_id());
        let to_bob = Recipient::Account(bob.account_id());
        let bob_derived = Reader::derived(&bob.account_id()).unwrap_or_else(|| panic!("no key"));
        let first = core.outgoing_body(&to_bob, b"hi").unwrap_or_else(|e| panic!("{e}"));
        assert!(is_sealed_to(&first, &bob_derived), "no record yet: the derived key");

        let bobs = publishing(&bob, 1);
        let record = bobs.record().cloned().unwrap_or_else(|| panic!("no record"));
        let answer = body_from(&bobs, &to_alice, &[alice.account_id()]);
        // Mallory relaying Bob's body as hers, or Bob's body in an open room: not learned.
        core.learn_from_body(&key(5).account_id(), &to_alice, &answer);
        let lobby = Recipient::Room(RoomId::new("lobby").unwrap_or_else(|e| panic!("{e}")));
        core.learn_from_body(&bob.account_id(), &lobby, &answer);
        assert_eq!(core.reader.record_of(&bob.account_id()), None);
        core.learn_from_body(&bob.account_id(), &to_alice, &answer);
        assert_eq!(core.reader.record_of(&bob.account_id()), Some(record.clone()));
        let second = core.outgoing_body(&to_bob, b"again").unwrap_or_else(|e| panic!("{e}"));
        assert!(is_sealed_to(&second, &Reader::of(&record)));
        assert!(!is_sealed_to(&second, &bob_derived));

        // An older record, one dated more than a day ahead, and a forged one replace nothing.
        let older = body_from(&publishing(&bob, 0), &to_alice, &[alice.account_id()]);
        let ahead = body_from(
            &publishing(&bob, now_ms() + MAX_SEQ_AHEAD_MS + 60_000),
            &to_alice,
            &[alice.account_id()],
        );
        for body in [older, ahead, forged_sealer(&bob)] {
            core.learn_from_body(&bob.account_id(), &to_alice, &body);
            assert_eq!(core.reader.record_of(&bob.account_id()), Some(record.clone()));
        }
    }

    /// A body from Bob whose sealer field is a record of his with a swapped key.
    fn forged_sealer(bob: &AccountKey) -> Vec<u8> {
        let mut forged = SealKeyRecord::sign(bob, &SealSecret::generate(), 9);
        forged.key = SealSecret::generate().public();
        let ring = Keyring::derived(bob).unwrap_or_else(|e| panic!("{e}"));
        let to = Recipient::Account(bob.account_id());
        let body = seal::seal(&ring, &to, &[], b"x", &mut Default::default()).unwrap_or_else(|e| panic!("{e}"));
        let config = bincode::config::standard().with_fixed_int_encoding();
        let mut out = seal::SEALED_MAGIC.to_vec();
        out.extend(bincode::encode_to_vec(Some(&forged), config).unwrap_or_else(|e| panic!("{e}")));
        // The derived-only ring wrote `None` (one byte) there.
        out.extend_from_slice(&body[seal::SEALED_MAGIC.len() + 1..]);
        assert!(seal::sealer_of(&out).is_some());
        out
    }

    #[test]
    fn trusted_records_are_kept_across_restarts_and_strangers_are_not() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let alice = key(1);
        let (contact, stranger) = (publishing(&key(2), 1), publishing(&key(3), 1));
        let (contacts, strangers) = (
            contact.record().cloned().unwrap_or_else(|| panic!("no record")),
            stranger.record().cloned().unwrap_or_else(|| panic!("no record")),
        );
        {
            let core = crate::core::test_core::core(dir.path(), alice.clone(), publishing(&alice, 1), &[]);
            for (record, tier) in [(contacts.clone(), Tier::Trusted), (strangers.clone(), Tier::Stranger)] {
                let change = core.learn_seal_key(record, tier);
                core.keep_seal_keys(&change);
            }
            assert_eq!(core.reader.record_of(&strangers.account), Some(strangers.clone()));
        }
        let store = Store::open(dir.path(), tim_storage::Config::default()).unwrap_or_else(|e| panic!("{e}"));
        let kept = load_seal_keys(&store).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kept, vec![contacts]);
    }

    #[test]
    fn a_running_node_rotates_when_due_and_still_opens_what_was_sealed_before() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let alice = key(1);
        let week = std::time::Duration::from_secs(7 * 24 * 3600);
        let start = now_ms();
        let ring = crate::keys::load_seal_keys(dir.path(), &alice, start, week).unwrap_or_else(|e| panic!("{e}"));
        let core = crate::core::test_core::core(dir.path(), alice.clone(), ring, &[]);
        let first = core.reader.own_record().unwrap_or_else(|| panic!("no record"));
        let to = Recipient::Account(key(2).account_id());
        let body = core.outgoing_body(&to, b"before").unwrap_or_else(|e| panic!("{e}"));
        let message = tim_protocol::Message::sign(&alice, to.clone(), body, 1, None)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_inner();
        assert!(!core.seal_key_due(start + 1000));
        core.rotate_seal_key(start + 1000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(core.reader.own_record().as_ref(), Some(&first));
        let later = start + week.as_millis() as u64;
        assert!(core.seal_key_due(later));
        core.rotate_seal_key(later).unwrap_or_else(|e| panic!("{e}"));
        let second = core.reader.own_record().unwrap_or_else(|| panic!("no record"));
        assert!(second.supersedes(&first));
        let opened = core.reader.open(&message).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opened.text, b"before");
        // The new key is what its own copies are sealed to now, and it was kept on disk.
        let next = core.outgoing_body(&to, b"after").unwrap_or_else(|e| panic!("{e}"));
        assert!(is_sealed_to(&next, &Reader::of(&second)));
        let reloaded = crate::keys::load_seal_keys(dir.path(), &alice, later, week).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reloaded.record().map(|r| r.key), Some(second.key));
    }
}
