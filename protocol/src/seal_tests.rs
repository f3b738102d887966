use super::*;
use crate::{test_util::key, AccountKey, Code, RoomId};

fn room() -> Recipient {
    Recipient::Room(RoomId::new("r.test").unwrap_or_else(|e| panic!("{e}")))
}

/// `k`'s keyring with its derived key only.
fn ring(k: &AccountKey) -> Keyring {
    Keyring::derived(k).unwrap_or_else(|e| panic!("{e}"))
}

/// `ids` as readers with their derived keys.
fn derived(ids: &[AccountId]) -> Vec<Reader> {
    ids.iter().filter_map(Reader::derived).collect()
}

fn derived_one(id: &AccountId) -> Reader {
    Reader::derived(id).unwrap_or_else(|| panic!("{id} has no derived key"))
}

/// A keyring publishing one fresh key at `seq`.
fn published(k: &AccountKey, seq: u64) -> (Keyring, SealSecret) {
    let secret = SealSecret::generate();
    let ring = Keyring::new(k, &[(seq, secret.clone())]).unwrap_or_else(|e| panic!("{e}"));
    (ring, secret)
}

/// Each call with no setups to reuse, everyone on derived keys.
fn seal(sender: &AccountKey, to: &Recipient, readers: &[AccountId], plaintext: &[u8]) -> Result<Vec<u8>> {
    super::seal(
        &ring(sender),
        to,
        &derived(readers),
        plaintext,
        &mut SealKeys::default(),
    )
}

fn open(reader: &AccountKey, from: &AccountId, to: &Recipient, body: &[u8]) -> Result<Vec<u8>> {
    super::open(&ring(reader), from, to, body, &mut SealKeys::default())
}

fn sealed(body: &[u8]) -> Sealed {
    parse(body).unwrap_or_else(|e| panic!("{e}")).1
}

fn encs(body: &[u8]) -> Vec<[u8; 32]> {
    sealed(body).wraps.iter().map(|w| w.enc).collect()
}

#[test]
fn setups_are_reused_across_bodies_until_rotated_and_remembered_by_readers() {
    let (alice, bob) = (key(1), key(2));
    let to = Recipient::Account(bob.account_id());
    let (mut sending, mut opening) = (SealKeys::default(), SealKeys::default());
    let (alices, bobs, bob_reader) = (ring(&alice), ring(&bob), derived(&[bob.account_id()]));
    let one = super::seal(&alices, &to, &bob_reader, b"one", &mut sending).unwrap_or_else(|e| panic!("{e}"));
    let two = super::seal(&alices, &to, &bob_reader, b"two", &mut sending).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(encs(&one), encs(&two), "one setup per reader serves both bodies");
    for (body, text) in [(&one, &b"one"[..]), (&two, &b"two"[..])] {
        let opened = super::open(&bobs, &alice.account_id(), &to, body, &mut opening).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opened, text);
    }
    // Bob's setup only: Alice's wrap to herself is not his to open.
    assert_eq!(opening.opening.len(), 1);
    // A remembered setup does not open a body lifted into another conversation.
    assert_eq!(
        code(super::open(&bobs, &alice.account_id(), &room(), &one, &mut opening)),
        Code::Undecryptable
    );
    sending.rotate();
    let three = super::seal(&alices, &to, &bob_reader, b"three", &mut sending).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        encs(&three).iter().all(|e| !encs(&one).contains(e)),
        "rotation makes new setups"
    );
    assert_eq!(
        super::open(&bobs, &alice.account_id(), &to, &three, &mut opening).unwrap_or_else(|e| panic!("{e}")),
        b"three"
    );
}

fn code<T: std::fmt::Debug>(r: Result<T>) -> Code {
    r.map(|v| panic!("expected an error, got {v:?}"))
        .unwrap_or_else(|e| e.code())
}

#[test]
fn every_reader_and_the_sender_open_and_no_one_else() {
    let (alice, bob, carol, eve) = (key(1), key(2), key(3), key(4));
    let to = room();
    let readers = [bob.account_id(), carol.account_id()];
    let (alices, _) = published(&alice, 1);
    let body = super::seal(&alices, &to, &derived(&readers), b"pin 4821", &mut SealKeys::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(is_sealed(&body));
    assert!(!body.windows(8).any(|w| w == b"pin 4821"));
    let opened = super::open(&alices, &alice.account_id(), &to, &body, &mut SealKeys::default());
    assert_eq!(opened.unwrap_or_else(|e| panic!("{e}")), b"pin 4821");
    for reader in [&bob, &carol] {
        let opened = open(reader, &alice.account_id(), &to, &body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opened, b"pin 4821");
    }
    assert_eq!(code(open(&eve, &alice.account_id(), &to, &body)), Code::Undecryptable);
    // Alice's own wrap is to her published key: her derived key alone does not open it.
    assert_eq!(code(open(&alice, &alice.account_id(), &to, &body)), Code::Undecryptable);
    assert_eq!(body.len(), 8 + sealed_overhead(3), "the overhead formula is exact");
}

#[test]
fn a_body_lifted_into_another_sender_or_conversation_does_not_open() {
    let (alice, bob, mallory) = (key(1), key(2), key(5));
    let to = Recipient::Account(bob.account_id());
    let body = seal(&alice, &to, &[bob.account_id()], b"hi").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code(open(&bob, &mallory.account_id(), &to, &body)), Code::Undecryptable);
    assert_eq!(
        code(open(&bob, &alice.account_id(), &room(), &body)),
        Code::Undecryptable
    );
}

#[test]
fn tampered_truncated_and_plain_bodies_are_typed_errors() {
    let (alice, bob) = (key(1), key(2));
    let to = Recipient::Account(bob.account_id());
    let body = seal(&alice, &to, &[bob.account_id()], b"hello").unwrap_or_else(|e| panic!("{e}"));
    let mut flipped = body.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        code(open(&bob, &alice.account_id(), &to, &flipped)),
        Code::Undecryptable
    );
    for cut in [0, 3, 4, 20, body.len() - 1] {
        assert_eq!(
            code(open(&bob, &alice.account_id(), &to, &body[..cut])),
            Code::Malformed,
            "cut {cut}"
        );
    }
    assert_eq!(
        code(open(&bob, &alice.account_id(), &to, b"plain text")),
        Code::Malformed
    );
    let mut trailing = body.clone();
    trailing.push(0);
    assert_eq!(code(check(&trailing)), Code::Malformed);
    // A huge claimed wrap count is refused without allocating it.
    let mut huge = SEALED_MAGIC.to_vec();
    huge.push(0); // no sealer record
    huge.extend_from_slice(&[0; 32]);
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(code(check(&huge)), Code::Malformed);
}

#[test]
fn wraps_moved_from_another_body_do_not_open() {
    let (alice, bob) = (key(1), key(2));
    let to = Recipient::Account(bob.account_id());
    let one = seal(&alice, &to, &[bob.account_id()], b"one").unwrap_or_else(|e| panic!("{e}"));
    let two = seal(&alice, &to, &[bob.account_id()], b"two").unwrap_or_else(|e| panic!("{e}"));
    let (mut a, b) = (sealed(&one), sealed(&two));
    a.wraps = b.wraps;
    let mut mixed = SEALED_MAGIC.to_vec();
    mixed.extend_from_slice(&raw(&a));
    // The wraps were sealed under the other body's context (commit), so they do not open.
    assert_eq!(code(open(&bob, &alice.account_id(), &to, &mixed)), Code::Undecryptable);
}

/// An ed25519 point of large order whose first 8 bytes are `prefix`'s.
fn id_with_prefix_of(prefix: &AccountId) -> AccountId {
    loop {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        bytes[..8].copy_from_slice(&prefix.as_bytes()[..8]);
        if let Ok(id) = AccountId::from_bytes(bytes) {
            if id.is_sealable() {
                return id;
            }
        }
    }
}

#[test]
fn ids_sharing_a_readers_prefix_do_not_shadow_its_wrap() {
    let (alice, bob) = (key(1), key(2));
    let to = room();
    // Ids any manager could admit without their keys, sorted before Bob's and sharing his
    // first bytes: their wraps must not take the places a reader tries.
    let decoys: Vec<AccountId> = (0..MAX_WRAPS_TRIED + 1)
        .map(|_| id_with_prefix_of(&bob.account_id()))
        .collect();
    let mut readers = decoys.clone();
    readers.push(bob.account_id());
    let body = seal(&alice, &to, &readers, b"for bob").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        open(&bob, &alice.account_id(), &to, &body).unwrap_or_else(|e| panic!("{e}")),
        b"for bob"
    );
    let parsed = sealed(&body);
    let bobs = hint(Version::V2, &parsed.commit, &derived_one(&bob.account_id()));
    assert_eq!(parsed.wraps.iter().filter(|w| w.hint == bobs).count(), 1);
    assert!(
        parsed
            .wraps
            .iter()
            .all(|w| w.hint[..] != bob.account_id().as_bytes()[..8]),
        "a hint names nobody"
    );
}

#[test]
fn readers_no_body_can_be_sealed_to_are_skipped() {
    let (alice, bob) = (key(1), key(2));
    let to = room();
    // The identity point: a valid encoding of small order, whose X25519 key nobody holds.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = AccountId::from_bytes(identity).unwrap_or_else(|e| panic!("{e}"));
    assert!(!weak.is_sealable());
    assert!(Reader::derived(&weak).is_none());
    // A reader named with a key of small order (as an unchecked record could name it).
    let readers = [
        Reader {
            account: weak,
            key: [0; 32],
        },
        derived_one(&bob.account_id()),
    ];
    let body =
        super::seal(&ring(&alice), &to, &readers, b"hi", &mut SealKeys::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sealed(&body).wraps.len(), 2);
    for reader in [&alice, &bob] {
        assert_eq!(
            open(reader, &alice.account_id(), &to, &body).unwrap_or_else(|e| panic!("{e}")),
            b"hi"
        );
    }
}

#[test]
fn opening_tries_at_most_two_wraps_hinted_at_the_reader() {
    let (alice, bob) = (key(1), key(2));
    let to = Recipient::Account(bob.account_id());
    let body = seal(&alice, &to, &[bob.account_id()], b"hi").unwrap_or_else(|e| panic!("{e}"));
    // Junk wraps under Bob's hint, put before his real one, as a crafted body would.
    let with_junk = |junk: usize| {
        let mut sealed = sealed(&body);
        let hint = hint(Version::V2, &sealed.commit, &derived_one(&bob.account_id()));
        let bobs = sealed
            .wraps
            .iter()
            .position(|w| w.hint == hint)
            .unwrap_or_else(|| panic!("no wrap for bob"));
        for _ in 0..junk {
            let fake = Wrap {
                hint,
                enc: sealed.wraps[bobs].enc,
                nonce: [7; 12],
                key: [0; 48],
            };
            sealed.wraps.insert(bobs, fake);
        }
        let mut out = SEALED_MAGIC.to_vec();
        out.extend_from_slice(&raw(&sealed));
        out
    };
    let one = with_junk(MAX_WRAPS_TRIED - 1);
    assert_eq!(
        open(&bob, &alice.account_id(), &to, &one).unwrap_or_else(|e| panic!("{e}")),
        b"hi"
    );
    let many = with_junk(MAX_WRAPS_TRIED);
    assert_eq!(code(open(&bob, &alice.account_id(), &to, &many)), Code::Undecryptable);
}

#[test]
fn a_full_cache_forgets_one_setup_at_a_time() {
    let mut keys = SealKeys::default();
    for i in 0..=MAX_CACHED_SETUPS as u32 {
        let mut enc = [0u8; 32];
        enc[..4].copy_from_slice(&i.to_le_bytes());
        keys.remember([9; 32], enc, [1; 32]);
    }
    assert_eq!(keys.opening.len(), MAX_CACHED_SETUPS);
    // Remembering a held setup again evicts nothing.
    let (reader, held) = *keys.opening.keys().next().unwrap_or_else(|| panic!("empty"));
    keys.remember(reader, held, [2; 32]);
    assert_eq!(keys.opening.len(), MAX_CACHED_SETUPS);
    assert_eq!(keys.opened(&reader, &held), Some([2; 32]));
    // The same `enc` under another of the reader's keys is another setup.
    assert_eq!(keys.opened(&[8; 32], &held), None);
}

#[test]
fn reader_count_and_size_are_bounded() {
    let alice = key(1);
    let many: Vec<AccountId> = (0..=MAX_READERS).map(|_| AccountKey::generate().account_id()).collect();
    assert_eq!(code(seal(&alice, &room(), &many, b"x")), Code::TooLarge);
    let big = vec![b'a'; MAX_BODY_LEN];
    assert_eq!(code(seal(&alice, &room(), &[], &big)), Code::TooLarge);
    let fits = vec![b'a'; MAX_BODY_LEN - sealed_overhead(1)];
    let (alices, _) = published(&alice, 1);
    let body = super::seal(&alices, &room(), &[], &fits, &mut SealKeys::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body.len(), MAX_BODY_LEN);
}

#[test]
fn bodies_seal_to_published_keys_and_open_after_the_reader_rotates() {
    let (alice, bob) = (key(1), key(2));
    let to = Recipient::Account(bob.account_id());
    let (alices, _) = published(&alice, 1);
    let (old, old_secret) = published(&bob, 1);
    let record = old.record().cloned().unwrap_or_else(|| panic!("no record"));
    let mut keys = SealKeys::default();
    let body =
        super::seal(&alices, &to, &[Reader::of(&record)], b"to bob's key", &mut keys).unwrap_or_else(|e| panic!("{e}"));
    assert!(is_sealed_to(&body, &Reader::of(&record)));
    assert!(!is_sealed_to(&body, &derived_one(&bob.account_id())));
    // The body carries Alice's record, for Bob to seal his answers to.
    assert_eq!(sealer_of(&body).as_ref(), alices.record());
    // Bob's account key alone (his derived key) does not open it.
    assert_eq!(code(open(&bob, &alice.account_id(), &to, &body)), Code::Undecryptable);
    // After Bob rotates he still holds the old secret, so the old body opens.
    let new_secret = SealSecret::generate();
    let rotated = Keyring::new(&bob, &[(1, old_secret), (2, new_secret)]).unwrap_or_else(|e| panic!("{e}"));
    let opened = super::open(&rotated, &alice.account_id(), &to, &body, &mut SealKeys::default());
    assert_eq!(opened.unwrap_or_else(|e| panic!("{e}")), b"to bob's key");
    // A keyring that dropped the old secret cannot open it any more (forward secrecy's step).
    let (forgot, _) = published(&bob, 3);
    let gone = super::open(&forgot, &alice.account_id(), &to, &body, &mut SealKeys::default());
    assert_eq!(code(gone), Code::Undecryptable);
    // Derived-key bodies still open with a keyring that publishes keys.
    let plain = seal(&alice, &to, &[bob.account_id()], b"derived").unwrap_or_else(|e| panic!("{e}"));
    let opened = super::open(&rotated, &alice.account_id(), &to, &plain, &mut SealKeys::default());
    assert_eq!(opened.unwrap_or_else(|e| panic!("{e}")), b"derived");
}

#[test]
fn a_version_1_body_still_opens_for_its_readers() {
    // Sealed by the version 1 code, from key(1) to key(2).
    const V1: &str = "007465014f4cb8b2cc2429ec863e013bf6a65ec150ca36bc5d38985a333571907e7bc7b2020000000000000013df113b70ea9f2f2ea864db11d42112cde4e6a9e53d4452eb9b2ffb50bb18948a6c8546a407cd197c1d6d7b79795b3d9010ac2ea7f559ec879785ccd360255d1e70148588f6a8872b85b2d4f6a40a9f305b96fc7fedcb6e9adc8d1fdeb9b746bd454ad1c3fc427da85969a9b1e2b8cd02bc609463e81d9c2c17b2c885543b6518a5bfe908873d8e6823996ce65606c09edd395064b512bb1b9467d5392684e1bbf4cd7a8d9b7ca42b61a02c3fefba62ad7dc2f1ed4d0a43d304dfa867a7b017a60ff94fce04f7ad31000000000000001516fa9ed0cc3dada4fc50f3404fcf8a4fac12b7a265837a6e98d15b68e5fdc7a7b5d1fa2c38b729b1214eed56832911d4";
    let body = hex::decode(V1).unwrap_or_else(|e| panic!("{e}"));
    let (alice, bob, carol) = (key(1), key(2), key(3));
    let to = Recipient::Account(bob.account_id());
    assert!(is_sealed(&body));
    assert_eq!(sealer_of(&body), None);
    for reader in [&alice, &bob] {
        let (ring, _) = published(reader, 9);
        let opened = super::open(&ring, &alice.account_id(), &to, &body, &mut SealKeys::default());
        assert_eq!(
            opened.unwrap_or_else(|e| panic!("{e}")),
            b"sealed before keys were published"
        );
    }
    assert_eq!(code(open(&carol, &alice.account_id(), &to, &body)), Code::Undecryptable);
}

#[test]
fn a_sealer_record_naming_no_sealable_key_makes_the_body_malformed() {
    let (alice, bob) = (key(1), key(2));
    let to = Recipient::Account(bob.account_id());
    let (alices, _) = published(&alice, 1);
    let body = super::seal(
        &alices,
        &to,
        &derived(&[bob.account_id()]),
        b"hi",
        &mut SealKeys::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut parsed = sealed(&body);
    if let Some(record) = parsed.sealer.as_mut() {
        record.key = [0; 32];
    }
    let mut bad = SEALED_MAGIC.to_vec();
    bad.extend_from_slice(&raw(&parsed));
    assert_eq!(code(check(&bad)), Code::Malformed);
}
