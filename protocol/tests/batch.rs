//! Batch verification against `verify_strict`, item by item: random batches mixing valid
//! signatures with every kind of input where a plain batch and the strict single check can
//! disagree (small-order and mixed-order keys and `R`, non-canonical `s` and `R`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use curve25519_dalek::{
    constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION},
    edwards::{CompressedEdwardsY, EdwardsPoint},
    scalar::{clamp_integer, Scalar},
};
use ed25519_dalek::{Signature, VerifyingKey};
use proptest::prelude::*;
use sha2::{Digest, Sha512};
use tim_protocol::{
    batch::{verify_batch, verify_messages, verify_one, SignedBytes},
    test_util, Error, Message,
};

/// The group order ℓ, little-endian.
const ELL: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// A signer whose secret scalar we hold, so we can sign with any `R` (honest or not).
struct Signer {
    secret: Scalar,
    public: EdwardsPoint,
}

fn signer(seed: u8) -> Signer {
    let expanded = Sha512::digest([seed; 32]);
    let secret = Scalar::from_bytes_mod_order(clamp_integer(expanded[..32].try_into().unwrap()));
    let public = EdwardsPoint::mul_base(&secret);
    let dalek = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
    assert_eq!(
        public.compress().to_bytes(),
        dalek.to_bytes(),
        "same key derivation as dalek"
    );
    Signer { secret, public }
}

fn nonce(seed: u64) -> Scalar {
    Scalar::from_hash(Sha512::new().chain_update(seed.to_le_bytes()))
}

fn challenge(r: &[u8; 32], key: &[u8; 32], message: &[u8]) -> Scalar {
    Scalar::from_hash(Sha512::new().chain_update(r).chain_update(key).chain_update(message))
}

/// `R || s` with `s = r + k·secret` for `k` over the given `R` and key bytes: the signature
/// equation holds for the prime-order parts whatever torsion `R` or the key carry.
fn sign_raw(secret: &Scalar, key: &[u8; 32], r: &Scalar, r_point: &EdwardsPoint, message: &[u8]) -> [u8; 64] {
    let r_bytes = r_point.compress().to_bytes();
    let s = r + challenge(&r_bytes, key, message) * secret;
    join(&r_bytes, &s.to_bytes())
}

fn join(r: &[u8; 32], s: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(r);
    out[32..].copy_from_slice(s);
    out
}

/// `s + ℓ` (still below 2²⁵⁶ for any canonical `s`): the classic malleated signature.
fn plus_ell(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(s[i]) + u16::from(ELL[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

/// Every encoding of a small-order point: the eight canonical ones, each with the sign bit
/// flipped, and y + p where y < 19 (the non-canonical y values), with either sign bit.
fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for torsion in EIGHT_TORSION {
        let canonical = torsion.compress().to_bytes();
        out.push(canonical);
        let mut flipped = canonical;
        flipped[31] ^= 0x80;
        out.push(flipped);
        let y = canonical_y(&canonical);
        if y < 19 {
            for sign in [0, 0x80] {
                let mut plus_p = y_plus_p(y);
                plus_p[31] |= sign;
                out.push(plus_p);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// y + p for a small y, little-endian (p = 2²⁵⁵ - 19: ed ff .. ff 7f).
fn y_plus_p(y: u8) -> [u8; 32] {
    let mut out = [0xff; 32];
    out[0] = 0xed + y;
    out[31] = 0x7f;
    out
}

/// The y of a canonical encoding when it is below 256, else 255.
fn canonical_y(bytes: &[u8; 32]) -> u8 {
    let mut y = *bytes;
    y[31] &= 0x7f;
    if y[1..].iter().all(|b| *b == 0) {
        y[0]
    } else {
        255
    }
}

/// Non-canonical encodings (y + p) of points that are not of small order, if any exist.
fn non_canonical_big_points() -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for y in 0..19u8 {
        for sign in [0, 0x80] {
            let mut bytes = y_plus_p(y);
            bytes[31] |= sign;
            if let Some(point) = CompressedEdwardsY(bytes).decompress() {
                if !point.is_small_order() {
                    out.push(bytes);
                }
            }
        }
    }
    out
}

/// One item of a batch, owned.
#[derive(Debug, Clone)]
struct Item {
    key: [u8; 32],
    message: Vec<u8>,
    signature: [u8; 64],
}

/// Builds the item of `kind` from its random parameters.
fn item(kind: u8, pick: u8, other: u8, seed: u64) -> Item {
    let signers = [signer(1), signer(2), signer(3)];
    let who = &signers[usize::from(pick) % signers.len()];
    let key = who.public.compress().to_bytes();
    let message = format!("tim/v1/message\0sync page item {seed}").into_bytes();
    let r = nonce(seed);
    let honest = sign_raw(&who.secret, &key, &r, &EdwardsPoint::mul_base(&r), &message);
    let torsion = EIGHT_TORSION[1 + usize::from(other) % 7];
    let small = small_order_encodings();
    let small_pick = small[usize::from(other) % small.len()];
    let mut out = Item {
        key,
        message,
        signature: honest,
    };
    match kind {
        // Valid (weighted: most of a real page).
        0..=7 => {}
        // Another signer's key.
        8 => {
            out.key = signers[(usize::from(pick) + 1) % signers.len()]
                .public
                .compress()
                .to_bytes()
        }
        // Another message.
        9 => out.message.push(b'!'),
        // s + ℓ: the same point equation, a non-canonical scalar.
        10 => out.signature = join(&honest[..32].try_into().unwrap(), &plus_ell(&honest[32..])),
        // Random high bits in s.
        11 => out.signature[63] |= 0x10 | (other & 0xe0),
        // A small-order key (any encoding), with s = r: for a naive batch D = [k]A, torsion only.
        12 => {
            out.key = small_pick;
            let r_bytes = EdwardsPoint::mul_base(&r).compress().to_bytes();
            out.signature = join(&r_bytes, &r.to_bytes());
        }
        // A small-order R (any encoding), with s = k·secret: D = R, torsion only.
        13 => {
            let k = challenge(&small_pick, &key, &out.message);
            out.signature = join(&small_pick, &(k * who.secret).to_bytes());
        }
        // Mixed-order R: R = rB + T, signed over that R: D = T.
        14 => {
            let mixed = EdwardsPoint::mul_base(&r) + torsion;
            out.signature = sign_raw(&who.secret, &key, &r, &mixed, &out.message);
        }
        // A valid signature with T added to R afterwards.
        15 => {
            let r_point = CompressedEdwardsY(honest[..32].try_into().unwrap())
                .decompress()
                .unwrap();
            out.signature[..32].copy_from_slice(&(r_point + torsion).compress().to_bytes());
        }
        // Mixed-order key A + T, signed over its bytes: D = [k]T; when `other` is odd, the nonce
        // is ground until [k]T = 0, so verify_strict accepts it.
        16 => {
            let mixed_key = (who.public + torsion).compress().to_bytes();
            let mut attempt = seed;
            loop {
                let r = nonce(attempt);
                let signature = sign_raw(&who.secret, &mixed_key, &r, &EdwardsPoint::mul_base(&r), &out.message);
                let k = challenge(&signature[..32].try_into().unwrap(), &mixed_key, &out.message);
                if other % 2 == 0 || (torsion * k) == EdwardsPoint::default() {
                    out.signature = signature;
                    break;
                }
                attempt = attempt.wrapping_add(1);
            }
            out.key = mixed_key;
        }
        // The sign bit of R flipped (-R, or a non-decodable or small-order encoding).
        17 => out.signature[31] ^= 0x80,
        // Random key bytes (often not a point at all).
        18 => {
            out.key = Sha512::digest(seed.to_le_bytes())[..32].try_into().unwrap();
        }
        // A non-canonical encoding of a point that is not of small order, as R or as the key.
        _ => {
            let big = non_canonical_big_points();
            if let Some(bytes) = big.get(usize::from(other) % big.len().max(1)) {
                if pick % 2 == 0 {
                    out.signature[..32].copy_from_slice(bytes);
                } else {
                    out.key = *bytes;
                }
            }
        }
    }
    out
}

fn as_signed(item: &Item) -> SignedBytes<'_> {
    SignedBytes {
        what: "sync item",
        key: &item.key,
        bytes: &item.message,
        signature: &item.signature,
    }
}

/// ed25519-dalek's `verify_strict` on the raw item, independent of this crate.
fn dalek_strict(item: &Item) -> bool {
    VerifyingKey::from_bytes(&item.key)
        .and_then(|key| key.verify_strict(&item.message, &Signature::from_bytes(&item.signature)))
        .is_ok()
}

fn assert_batch_is_strict(items: &[Item]) {
    let signed: Vec<SignedBytes<'_>> = items.iter().map(as_signed).collect();
    let batch = verify_batch(&signed);
    assert_eq!(batch.len(), items.len());
    for (i, (item, verdict)) in items.iter().zip(&batch).enumerate() {
        let single = verify_one(&signed[i]);
        assert_eq!(*verdict, single, "item {i}: {item:?}");
        assert_eq!(
            single.is_ok(),
            dalek_strict(item),
            "item {i}: verify_one is verify_strict"
        );
        if let Err(e) = verdict {
            assert_eq!(*e, Error::InvalidSignature("sync item"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn batch_verdicts_are_verify_strict_verdicts(
        spec in proptest::collection::vec((0u8..20, any::<u8>(), any::<u8>(), any::<u64>()), 1..24)
    ) {
        let items: Vec<Item> = spec.iter().map(|&(kind, pick, other, seed)| item(kind, pick, other, seed)).collect();
        assert_batch_is_strict(&items);
    }

    /// Pages of valid items with at most one bad one: the batch passes or fails as a whole.
    #[test]
    fn mostly_valid_batches(
        seeds in proptest::collection::vec(any::<u64>(), 2..40),
        bad in (8u8..20, any::<u8>(), any::<u8>(), any::<u64>()),
        with_bad: bool,
    ) {
        let mut items: Vec<Item> = seeds.iter().map(|&seed| item(0, seed as u8, 0, seed)).collect();
        if with_bad {
            let (kind, pick, other, seed) = bad;
            items.insert(usize::from(pick) % items.len(), item(kind, pick, other, seed));
        }
        assert_batch_is_strict(&items);
    }

    /// The batched message check returns, message by message, what `Message::verify` does.
    #[test]
    fn verify_messages_is_verify(flaws in proptest::collection::vec(0u8..5, 0..20)) {
        let alice = test_util::key(1);
        let messages: Vec<Message> = flaws
            .iter()
            .enumerate()
            .map(|(i, flaw)| {
                let mut m = test_util::room_message(&alice, "general", format!("item {i}").as_bytes(), 1_000 + i as u64);
                match flaw {
                    1 => m.header.signature[40] ^= 1,
                    2 => m.body.push(b'x'),
                    3 => m.header.header.version = 9,
                    4 => m.header.header.sent_at += 1,
                    _ => {}
                }
                m
            })
            .collect();
        let batched = verify_messages(messages.clone());
        let single: Vec<_> = messages.into_iter().map(Message::verify).collect();
        prop_assert_eq!(batched, single);
    }
}

/// Why the torsion checks exist: ed25519-dalek's own `verify_batch` accepts a signature whose R
/// carries a 2-torsion point about half of the time, while `verify_strict` always refuses it.
#[test]
fn a_plain_batch_accepts_what_verify_strict_refuses() {
    let who = signer(1);
    let key = who.public.compress().to_bytes();
    let two_torsion = EIGHT_TORSION[4];
    assert_eq!(two_torsion + two_torsion, EdwardsPoint::default());
    let message = b"tim/v1/message\0mixed".to_vec();
    let vk = VerifyingKey::from_bytes(&key).unwrap();
    let accepted_by_plain_batch = (0..64u64).find(|seed| {
        let r = nonce(*seed);
        let signature = sign_raw(
            &who.secret,
            &key,
            &r,
            &(EdwardsPoint::mul_base(&r) + two_torsion),
            &message,
        );
        let signature = Signature::from_bytes(&signature);
        assert!(vk.verify_strict(&message, &signature).is_err());
        ed25519_dalek::verify_batch(&[&message], &[signature], &[vk]).is_ok()
    });
    let seed = accepted_by_plain_batch.expect("a plain batch accepts one in about two");
    let r = nonce(seed);
    let forged = Item {
        key,
        message: message.clone(),
        signature: sign_raw(
            &who.secret,
            &key,
            &r,
            &(EdwardsPoint::mul_base(&r) + two_torsion),
            &message,
        ),
    };
    let valid = item(0, 1, 0, 7);
    assert_batch_is_strict(&[forged.clone(), valid.clone(), forged]);
    assert!(verify_batch(&[as_signed(&valid)])[0].is_ok());
    // And the other way: a mixed-order key whose signature verify_strict accepts (the nonce
    // ground so that [k]T = 0) is accepted, through the single check.
    let mixed_key = item(16, 0, 1, 99);
    assert!(dalek_strict(&mixed_key));
    assert_batch_is_strict(&[mixed_key, valid]);
    // The base point is the generator the crafted keys use.
    assert_eq!(EdwardsPoint::mul_base(&Scalar::ONE), ED25519_BASEPOINT_POINT);
}

/// Every non-canonical encoding that decodes is of a point with small order or a torsion
/// component, so the point checks alone would keep it out of a batch; the explicit encoding
/// check is a second lock, and the property test cannot tell it is there. This records why.
#[test]
fn every_non_canonical_encoding_is_refused_by_the_point_checks() {
    let big = non_canonical_big_points();
    assert_eq!(big.len(), 20, "y + p decodes for ten y values, each with either sign");
    for bytes in big.iter().chain(&small_order_encodings()) {
        let point = CompressedEdwardsY(*bytes).decompress().unwrap();
        assert!(
            point.is_small_order() || !point.is_torsion_free(),
            "{}",
            hex::encode(bytes)
        );
    }
}
