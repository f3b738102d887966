//! Sealed bodies: end-to-end encryption of a message body to the accounts that may read it.
//!
//! A sealed body is what travels, and what the header's `body_len` and `body_hash` cover, so no
//! header, tombstone, receipt, log or index anywhere holds anything derived from the plaintext.
//! Layout: [`SEALED_MAGIC`], then bincode of `(commit, wraps, ciphertext)`:
//! - a fresh random 32-byte body key `k`, used once;
//! - `ciphertext` = ChaCha20Poly1305(`k`, nonce 0, plaintext, aad = `context`);
//! - one wrap per reader: HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//!   ChaCha20Poly1305, `info` = [`tag::SEAL`], `aad` = `context`, sealing `k` to the reader's X25519
//!   key (its account key's Montgomery form);
//! - `commit` = SHA-256([`tag::SEAL_COMMIT`] || `k`), so every reader opens the same plaintext
//!   (ChaCha20Poly1305 alone does not commit to its key);
//! - `context` = bincode of `(from, to, commit)`: a body lifted into another sender's or another
//!   conversation's message does not open.
//!
//! The sender is always one of the readers, so its own copy opens after a restart.

use bincode::{Decode, Encode};
use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    ChaCha20Poly1305, Key, Nonce,
};
use hpke::{
    aead::ChaCha20Poly1305 as HpkeChaCha, kdf::HkdfSha256, kem::X25519HkdfSha256, Deserializable, Kem, OpModeR,
    OpModeS, Serializable,
};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{codec::raw, tag, AccountId, AccountKey, Error, Recipient, Result, MAX_BODY_LEN};

/// The first bytes of every sealed body. A body without them is a plain one (open rooms, peers
/// that do not seal). Text never starts with a NUL byte.
pub const SEALED_MAGIC: [u8; 4] = [0x00, b't', b'e', 0x01];

/// The most readers one body is sealed to (each wrap costs 88 bytes and one X25519 exchange).
pub const MAX_READERS: usize = 512;

/// What sealing adds to a plaintext of any length for `readers` readers, in bytes.
pub const fn sealed_overhead(readers: usize) -> usize {
    SEALED_MAGIC.len() + 32 + 8 + readers * WRAP_LEN + 8 + TAG_LEN
}

const TAG_LEN: usize = 16;
const WRAP_LEN: usize = 8 + 32 + 32 + TAG_LEN;

type Enc = <X25519HkdfSha256 as Kem>::EncappedKey;
type PublicKey = <X25519HkdfSha256 as Kem>::PublicKey;
type PrivateKey = <X25519HkdfSha256 as Kem>::PrivateKey;

#[derive(Encode, Decode)]
struct Sealed {
    commit: [u8; 32],
    wraps: Vec<Wrap>,
    ciphertext: Vec<u8>,
}

/// The body key sealed to one reader.
#[derive(Encode, Decode)]
struct Wrap {
    /// The reader's account id's first 8 bytes: which wraps a reader tries.
    hint: [u8; 8],
    /// HPKE's encapsulated key.
    enc: [u8; 32],
    /// HPKE's ciphertext of the body key (32 bytes and the tag).
    key: [u8; 32 + TAG_LEN],
}

/// Whether `body` is in the sealed form (it may still fail to parse or open).
pub fn is_sealed(body: &[u8]) -> bool {
    body.starts_with(&SEALED_MAGIC)
}

fn hint(account: &AccountId) -> [u8; 8] {
    let mut h = [0; 8];
    h.copy_from_slice(&account.as_bytes()[..8]);
    h
}

fn commit_of(key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tag::SEAL_COMMIT);
    h.update(key);
    h.finalize().into()
}

fn malformed(detail: &str) -> Error {
    Error::Malformed {
        what: "sealed body",
        detail: detail.into(),
    }
}

/// Seals `plaintext` from `sender` in the conversation `to` for `readers` (duplicates are sealed
/// once; `sender` is added if absent). Fails on a reader key no body can be sealed to, more than
/// [`MAX_READERS`] readers, or a result over [`MAX_BODY_LEN`].
pub fn seal(sender: &AccountKey, to: &Recipient, readers: &[AccountId], plaintext: &[u8]) -> Result<Vec<u8>> {
    let from = sender.account_id();
    let mut all: Vec<AccountId> = Vec::with_capacity(readers.len() + 1);
    for reader in std::iter::once(&from).chain(readers) {
        if !all.contains(reader) {
            all.push(*reader);
        }
    }
    if all.len() > MAX_READERS {
        return Err(Error::TooLarge {
            what: "readers of a sealed body",
            len: all.len(),
            max: MAX_READERS,
        });
    }
    let len = plaintext.len() + sealed_overhead(all.len());
    if len > MAX_BODY_LEN {
        return Err(Error::TooLarge {
            what: "sealed body",
            len,
            max: MAX_BODY_LEN,
        });
    }
    let mut rng = rand::rngs::OsRng;
    let mut body_key = [0u8; 32];
    rng.fill_bytes(&mut body_key);
    let commit = commit_of(&body_key);
    let context = raw(&(&from, to, &commit));
    let ciphertext = ChaCha20Poly1305::new(Key::from_slice(&body_key))
        .encrypt(
            Nonce::from_slice(&[0; 12]),
            Payload {
                msg: plaintext,
                aad: &context,
            },
        )
        .map_err(|_| malformed("the body does not encrypt"))?;
    let mut wraps = Vec::with_capacity(all.len());
    for reader in &all {
        let public = PublicKey::from_bytes(&reader.x25519_public()?).map_err(|_| malformed("bad reader key"))?;
        let (enc, sealed_key) = hpke::single_shot_seal::<HpkeChaCha, HkdfSha256, X25519HkdfSha256, _>(
            &OpModeS::Base,
            &public,
            tag::SEAL,
            &body_key,
            &context,
            &mut rng,
        )
        .map_err(|_| malformed("the body key does not seal to a reader"))?;
        wraps.push(Wrap {
            hint: hint(reader),
            enc: enc.to_bytes().into(),
            key: sealed_key
                .try_into()
                .map_err(|_| malformed("a sealed body key has an unexpected length"))?,
        });
    }
    let mut out = SEALED_MAGIC.to_vec();
    out.extend_from_slice(&raw(&Sealed {
        commit,
        wraps,
        ciphertext,
    }));
    Ok(out)
}

fn parse(body: &[u8]) -> Result<Sealed> {
    let rest = body
        .strip_prefix(&SEALED_MAGIC)
        .ok_or_else(|| malformed("no sealed-body prefix"))?;
    if body.len() > MAX_BODY_LEN {
        return Err(Error::TooLarge {
            what: "sealed body",
            len: body.len(),
            max: MAX_BODY_LEN,
        });
    }
    // The limit bounds what a length prefix may make bincode allocate.
    let config = bincode::config::standard()
        .with_fixed_int_encoding()
        .with_limit::<MAX_BODY_LEN>();
    let (sealed, used): (Sealed, usize) =
        bincode::decode_from_slice(rest, config).map_err(|e| malformed(&e.to_string()))?;
    if used != rest.len() {
        return Err(malformed("trailing bytes"));
    }
    if sealed.wraps.is_empty() || sealed.wraps.len() > MAX_READERS {
        return Err(malformed("no readers, or too many"));
    }
    if sealed.ciphertext.len() < TAG_LEN {
        return Err(malformed("ciphertext shorter than its tag"));
    }
    Ok(sealed)
}

/// Checks that `body` is a well-formed sealed body (what a node that is not a reader, or has not
/// opened it yet, can check).
pub fn check(body: &[u8]) -> Result<()> {
    parse(body).map(|_| ())
}

/// Opens a sealed body for `reader`, from `from` in the conversation `to` (the message header's
/// fields). [`Error::Undecryptable`] if it is not sealed to `reader`, was made for another
/// sender or conversation, or was tampered with; [`Error::Malformed`] if it does not parse.
pub fn open(reader: &AccountKey, from: &AccountId, to: &Recipient, body: &[u8]) -> Result<Vec<u8>> {
    let sealed = parse(body)?;
    let me = hint(&reader.account_id());
    let secret = PrivateKey::from_bytes(&reader.x25519_secret()).map_err(|_| malformed("bad reader secret"))?;
    let context = raw(&(from, to, &sealed.commit));
    for wrap in sealed.wraps.iter().filter(|w| w.hint == me) {
        let Ok(enc) = Enc::from_bytes(&wrap.enc) else {
            continue;
        };
        let Ok(body_key) = hpke::single_shot_open::<HpkeChaCha, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &secret,
            &enc,
            tag::SEAL,
            &wrap.key,
            &context,
        ) else {
            continue;
        };
        if body_key.len() != 32 || commit_of(&body_key) != sealed.commit {
            return Err(Error::Undecryptable("the body key does not match its commitment"));
        }
        return ChaCha20Poly1305::new(Key::from_slice(&body_key))
            .decrypt(
                Nonce::from_slice(&[0; 12]),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &context,
                },
            )
            .map_err(|_| Error::Undecryptable("the ciphertext does not authenticate"));
    }
    Err(Error::Undecryptable("not sealed to this account"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{test_util::key, Code, RoomId};

    fn room() -> Recipient {
        Recipient::Room(RoomId::new("r.test").unwrap_or_else(|e| panic!("{e}")))
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
}
