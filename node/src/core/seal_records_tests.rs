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

    /// A core for `key` that founded a private room and invited `invitees` (at `now`).
    fn founder_core(dir: &std::path::Path, founder: &AccountKey, invitees: &[&AccountKey]) -> (Core, RoomId) {
        let now = now_ms();
        let create =
            tim_protocol::RoomOp::found(founder, "team".into(), true, now - 10_000).unwrap_or_else(|e| panic!("{e}"));
        let room = create.room.clone();
        let mut membership = tim_protocol::Membership::new(create).unwrap_or_else(|e| panic!("{e}"));
        for (i, invitee) in invitees.iter().enumerate() {
            let action = tim_protocol::RoomAction::Invite(invitee.account_id());
            let invite = tim_protocol::RoomOp::sign_linked(
                founder,
                room.clone(),
                action.clone(),
                now - 9_000 + i as u64,
                membership.links_for(&founder.account_id(), &action),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            membership.apply(invite).unwrap_or_else(|e| panic!("{e}"));
        }
        let core = crate::core::test_core::core(
            dir,
            founder.clone(),
            publishing(founder, 1),
            std::slice::from_ref(&room),
        );
        core.founded().insert(room.clone(), membership);
        (core, room)
    }

    fn announcement(k: &AccountKey, room: &RoomId, ring: &Keyring, at: u64) -> SealKeyAnnouncement {
        let record = ring.record().cloned().unwrap_or_else(|| panic!("no record"));
        SealKeyAnnouncement::sign(k, room.clone(), record, at).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn announcements_are_taken_from_accounts_with_standing_signed_by_them_and_fresh() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (founder, bob, stranger) = (key(1), key(2), key(3));
        let (core, room) = founder_core(dir.path(), &founder, &[&bob]);
        let via = Via::Room(room.clone());
        let (bobs, strangers) = (publishing(&bob, 1), publishing(&stranger, 1));
        let now = now_ms();
        let verdict = |a: SealKeyAnnouncement| core.seal_key_in(a, &via).map_err(|e| e.code());

        // Off the clock, on another path, or signed by someone else: not taken.
        assert_eq!(
            verdict(announcement(&bob, &room, &bobs, now - ANNOUNCEMENT_SKEW_MS - 1000)),
            Ok(Verdict::Ignored(Code::Expired))
        );
        let direct = core
            .seal_key_in(announcement(&bob, &room, &bobs, now), &Via::Direct)
            .map_err(|e| e.code());
        assert_eq!(direct.err(), Some(Code::BadParameters));
        let mut forged = announcement(&bob, &room, &bobs, now);
        forged.at += 1;
        assert_eq!(verdict(forged), Err(Code::InvalidSignature));
        assert_eq!(core.reader.record_of(&bob.account_id()), None);

        // Bob, invited, is taken and forwarded; again (a newcomer may need it): forwarded.
        assert_eq!(verdict(announcement(&bob, &room, &bobs, now)), Ok(Verdict::Stored));
        assert_eq!(core.reader.record_of(&bob.account_id()).as_ref(), bobs.record());
        assert_eq!(verdict(announcement(&bob, &room, &bobs, now + 1)), Ok(Verdict::Stored));

        // A stranger's is held, not forwarded, and taken once the stranger gains standing.
        assert_eq!(
            verdict(announcement(&stranger, &room, &strangers, now)),
            Ok(Verdict::Ignored(Code::PermissionDenied))
        );
        assert_eq!(core.reader.record_of(&stranger.account_id()), None);
        let state = {
            let mut founded = core.founded();
            let membership = founded.get_mut(&room).unwrap_or_else(|| panic!("no room"));
            let action = tim_protocol::RoomAction::Invite(stranger.account_id());
            let invite = tim_protocol::RoomOp::sign_linked(
                &founder,
                room.clone(),
                action.clone(),
                now - 5_000,
                membership.links_for(&founder.account_id(), &action),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            membership.apply(invite).unwrap_or_else(|e| panic!("{e}"));
            membership.state().clone()
        };
        let invited = MembershipChange::Invited {
            account: stranger.account_id(),
            by: founder.account_id(),
        };
        core.announce_on_join(&room, &invited, &state);
        assert_eq!(
            core.reader.record_of(&stranger.account_id()).as_ref(),
            strangers.record()
        );
    }
}
