use super::*;
use crate::{test_util::key, Code, RoomId};

fn room() -> Recipient {
    Recipient::Room(RoomId::new("r.test").unwrap_or_else(|e| panic!("{e}")))
}

/// Each call with no setups to reuse.
fn seal(sender: &AccountKey, to: &Recipient, readers: &[AccountId], plaintext: &[u8]) -> Result<Vec<u8>> {
    super::seal(sender, to, readers, plaintext, &mut SealKeys::default())
}

fn open(reader: &AccountKey, from: &AccountId, to: &Recipient, body: &[u8]) -> Result<Vec<u8>> {
    super::open(reader, from, to, body, &mut SealKeys::default())
}

fn encs(body: &[u8]) -> Vec<[u8; 32]> {
    parse(body)
        .unwrap_or_else(|e| panic!("{e}"))
        .wraps
        .iter()
        .map(|w| w.enc)
        .collect()
}

#[test]
fn setups_are_reused_across_bodies_until_rotated_and_remembered_by_readers() {
    let (alice, bob) = (key(1), key(2));
    let to = Recipient::Account(bob.account_id());
    let (mut sending, mut opening) = (SealKeys::default(), SealKeys::default());
    let one = super::seal(&alice, &to, &[bob.account_id()], b"one", &mut sending).unwrap_or_else(|e| panic!("{e}"));
    let two = super::seal(&alice, &to, &[bob.account_id()], b"two", &mut sending).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(encs(&one), encs(&two), "one setup per reader serves both bodies");
    for (body, text) in [(&one, &b"one"[..]), (&two, &b"two"[..])] {
        let opened = super::open(&bob, &alice.account_id(), &to, body, &mut opening).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opened, text);
    }
    // Bob's setup only: Alice's wrap to herself is not his to open.
    assert_eq!(opening.opening.len(), 1);
    // A remembered setup does not open a body lifted into another conversation.
    assert_eq!(
        code(super::open(&bob, &alice.account_id(), &room(), &one, &mut opening)),
        Code::Undecryptable
    );
    sending.rotate();
    let three = super::seal(&alice, &to, &[bob.account_id()], b"three", &mut sending).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        encs(&three).iter().all(|e| !encs(&one).contains(e)),
        "rotation makes new setups"
    );
    assert_eq!(
        super::open(&bob, &alice.account_id(), &to, &three, &mut opening).unwrap_or_else(|e| panic!("{e}")),
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
    let body = seal(&alice, &to, &readers, b"pin 4821").unwrap_or_else(|e| panic!("{e}"));
    assert!(is_sealed(&body));
    assert!(!body.windows(8).any(|w| w == b"pin 4821"));
    for reader in [&alice, &bob, &carol] {
        let opened = open(reader, &alice.account_id(), &to, &body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opened, b"pin 4821");
    }
    assert_eq!(code(open(&eve, &alice.account_id(), &to, &body)), Code::Undecryptable);
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
    let (mut a, b) = (
        parse(&one).unwrap_or_else(|e| panic!("{e}")),
        parse(&two).unwrap_or_else(|e| panic!("{e}")),
    );
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
    let sealed = parse(&body).unwrap_or_else(|e| panic!("{e}"));
    let bobs = hint(&sealed.commit, &bob.account_id());
    assert_eq!(sealed.wraps.iter().filter(|w| w.hint == bobs).count(), 1);
    assert!(
        sealed
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
    let body = seal(&alice, &to, &[weak, bob.account_id()], b"hi").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parse(&body).unwrap_or_else(|e| panic!("{e}")).wraps.len(), 2);
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
        let mut sealed = parse(&body).unwrap_or_else(|e| panic!("{e}"));
        let hint = hint(&sealed.commit, &bob.account_id());
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
        keys.remember(enc, [1; 32]);
    }
    assert_eq!(keys.opening.len(), MAX_CACHED_SETUPS);
    // Remembering a held setup again evicts nothing.
    let held = *keys.opening.keys().next().unwrap_or_else(|| panic!("empty"));
    keys.remember(held, [2; 32]);
    assert_eq!(keys.opening.len(), MAX_CACHED_SETUPS);
    assert_eq!(keys.opened(&held), Some([2; 32]));
}

#[test]
fn reader_count_and_size_are_bounded() {
    let alice = key(1);
    let many: Vec<AccountId> = (0..=MAX_READERS).map(|_| AccountKey::generate().account_id()).collect();
    assert_eq!(code(seal(&alice, &room(), &many, b"x")), Code::TooLarge);
    let big = vec![b'a'; MAX_BODY_LEN];
    assert_eq!(code(seal(&alice, &room(), &[], &big)), Code::TooLarge);
    let fits = vec![b'a'; MAX_BODY_LEN - sealed_overhead(1)];
    let body = seal(&alice, &room(), &[], &fits).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body.len(), MAX_BODY_LEN);
}
