//! Batch verification of ed25519 signatures whose verdict is, item by item, exactly
//! `verify_strict`'s (the single check every other path uses), plus [`verify_messages`], the
//! batched form of [`Message::verify`].
//!
//! # Why a plain batch is not enough
//! `verify_strict` (ed25519-dalek 2.2) accepts `(R, s)` by public key `A` on `M` iff `s < ℓ`,
//! `R` decodes, neither `R` nor `A` has small order, and the canonical encoding of
//! `[s]B - [k]A` (with `k = SHA-512(R || A || M) mod ℓ`) is byte for byte `R`. That is the
//! cofactorless equation `D = R + [k]A - [s]B = 0`, exactly, torsion included.
//!
//! `ed25519_dalek::verify_batch` checks `Σ zᵢ·Dᵢ = 0` with 128-bit coefficients `zᵢ` drawn from
//! a transcript of the inputs. Every point is `P + T` with `P` in the prime-order group and `T`
//! in the 8-torsion, so the sum splits in two: `Σ zᵢ·Pᵢ = 0`, which (as `P ≠ 0` has order ℓ
//! and the `zᵢ` are unpredictable) fails for any bad `Pᵢ` except with probability 2⁻¹²⁸; and
//! `Σ zᵢ·Tᵢ = 0` in ℤ/8, which a signer can satisfy with a nonzero `Tᵢ`: a torsion point of
//! order 2 on `R` vanishes whenever `zᵢ` is even (half the time; the signer grinds the nonce
//! until it is), and two items with `T` and `-T` cancel. It also never looks at how `R` is
//! encoded, nor at small order. So a plain batch accepts signatures `verify_strict` refuses.
//!
//! # The design
//! An item goes into a batch only when every way a batch can disagree is ruled out first:
//! - the key decodes, has no small order and is torsion-free (checked once per distinct key:
//!   a sync page has few senders);
//! - `s < ℓ`;
//! - `R` decodes, is encoded canonically, has no small order and is torsion-free.
//!
//! Every other item is checked alone by `verify_strict`, so its verdict is `verify_strict`'s by
//! construction (it rejects all of them except, possibly, ones with a mixed-order key).
//!
//! For a batched item, `R`, `A` and `B` lie in the prime-order group, so `Dᵢ` does too and has
//! no torsion part to cancel; the batch hashes the same `R || A || M` bytes into the same `k`;
//! and since `R` is canonical, `R = [s]B - [k]A` as points is the same as `verify_strict`'s byte
//! comparison. So a batch of items that all pass `verify_strict` always passes, and a batch
//! with a failing item passes with probability at most 2⁻¹²⁸ (the bound of any batch
//! verification). When a batch fails, each of its items is checked alone, so a refusal is
//! always `verify_strict`'s own.
//!
//! # The cost (docs/performance.md, "Batch verification (issue 14)")
//! Testing that `R` is torsion-free takes a full scalar multiplication `[ℓ]R`, about what a
//! whole `verify_strict` costs; no cheaper test exists with this curve library (a torsion
//! component is only seen through a multiple of ℓ, and a random linear combination cannot
//! separate the items' components in ℤ/8). This exact batch therefore runs at parity
//! with one-by-one `verify_strict` (0.91× to 1.05× in the runs recorded); it is here, measured
//! and tested, so the choice stays exactness.

use std::collections::HashMap;

use curve25519_dalek::{
    edwards::{CompressedEdwardsY, EdwardsPoint},
    scalar::Scalar,
};
use ed25519_dalek::{Signature, VerifyingKey};

use crate::{codec::raw, tag, Error, Message, Result, Verified};

/// One signature to check: the exact bytes signed (domain tag included), the signer's public
/// key as carried (it may not even be a point) and the 64-byte signature.
#[derive(Debug, Clone, Copy)]
pub struct SignedBytes<'a> {
    /// What was signed, for the error (`Error::InvalidSignature(what)`).
    pub what: &'static str,
    /// The signer's public key bytes.
    pub key: &'a [u8; 32],
    /// The signed bytes: `tag || payload`.
    pub bytes: &'a [u8],
    /// The signature, `R || s`.
    pub signature: &'a [u8; 64],
}

/// The single check: ed25519 `verify_strict` (RFC 8032 with canonical `s`, no small-order `R`
/// or key, cofactorless). Every verdict of [`verify_batch`] equals this function's.
pub fn verify_one(item: &SignedBytes<'_>) -> Result<()> {
    let key = VerifyingKey::from_bytes(item.key).map_err(|_| Error::InvalidSignature(item.what))?;
    key.verify_strict(item.bytes, &Signature::from_bytes(item.signature))
        .map_err(|_| Error::InvalidSignature(item.what))
}

/// Verifies every item, batching the ones a batch is exact for (see the module docs); the
/// result at index `i` is exactly `verify_one(&items[i])` (up to the 2⁻¹²⁸ soundness bound of
/// batch verification, for an accepted forgery).
pub fn verify_batch(items: &[SignedBytes<'_>]) -> Vec<Result<()>> {
    let mut results: Vec<Option<Result<()>>> = vec![None; items.len()];
    // Per distinct key: the decoded key if it may be batched (torsion-free, not small order).
    let mut keys: HashMap<[u8; 32], Option<VerifyingKey>> = HashMap::new();
    let mut batched: Vec<(usize, VerifyingKey)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = *keys.entry(*item.key).or_insert_with(|| batchable_key(item.key));
        match key {
            Some(key) if batchable_signature(item.signature) => batched.push((i, key)),
            _ => results[i] = Some(verify_one(item)),
        }
    }
    if batch_holds(items, &batched) {
        for (i, _) in &batched {
            results[*i] = Some(Ok(()));
        }
    } else {
        // At least one culprit: each item alone, so every refusal is verify_strict's.
        for (i, _) in &batched {
            results[*i] = Some(verify_one(&items[*i]));
        }
    }
    items
        .iter()
        .zip(results)
        .map(|(item, result)| result.unwrap_or_else(|| verify_one(item)))
        .collect()
}

/// [`Message::verify`] for many messages: the same checks in the same order (body, header
/// fields, then the signature, batched), so each result is exactly what `verify` returns.
pub fn verify_messages(messages: Vec<Message>) -> Vec<Result<Verified<Message>>> {
    let checked: Vec<Result<Vec<u8>>> = messages
        .iter()
        .map(|m| {
            m.check_unsigned()?;
            let mut signed = tag::MESSAGE.to_vec();
            signed.extend_from_slice(&raw(m.head()));
            Ok(signed)
        })
        .collect();
    let items: Vec<SignedBytes<'_>> = messages
        .iter()
        .zip(&checked)
        .filter_map(|(m, signed)| {
            Some(SignedBytes {
                what: crate::message::HEADER_WHAT,
                key: m.head().from.as_bytes(),
                bytes: signed.as_ref().ok()?,
                signature: &m.header.signature,
            })
        })
        .collect();
    let mut verdicts = verify_batch(&items).into_iter();
    let mut out = Vec::with_capacity(messages.len());
    for (m, signed) in messages.into_iter().zip(checked) {
        // One verdict per message whose unsigned checks passed, in order.
        let verdict = match signed {
            Err(e) => Err(e),
            Ok(_) => verdicts
                .next()
                .unwrap_or(Err(Error::InvalidSignature(crate::message::HEADER_WHAT))),
        };
        out.push(verdict.map(|()| {
            let id = m.id();
            Verified::new(m, id)
        }));
    }
    out
}

/// `true` if the batch equation holds for all of `batched` (vacuously for none).
fn batch_holds(items: &[SignedBytes<'_>], batched: &[(usize, VerifyingKey)]) -> bool {
    if batched.is_empty() {
        return true;
    }
    let messages: Vec<&[u8]> = batched.iter().map(|(i, _)| items[*i].bytes).collect();
    let signatures: Vec<Signature> = batched
        .iter()
        .map(|(i, _)| Signature::from_bytes(items[*i].signature))
        .collect();
    let keys: Vec<VerifyingKey> = batched.iter().map(|(_, key)| *key).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

/// The key, if it is a point that is torsion-free and not of small order (so not the identity
/// either); `None` sends its items to the single check.
fn batchable_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    let key = VerifyingKey::from_bytes(bytes).ok()?;
    let point = EdwardsPoint::from(key);
    (!point.is_small_order() && is_torsion_free(&point)).then_some(key)
}

/// `true` if the signature's own parts leave a batch nothing to disagree on: `s < ℓ` (what
/// `verify_strict` requires; the batch would refuse the whole batch instead), and `R` canonical,
/// not of small order and torsion-free.
fn batchable_signature(signature: &[u8; 64]) -> bool {
    let (r, s) = signature.split_at(32);
    let (Ok(r), Ok(s)) = (<[u8; 32]>::try_from(r), <[u8; 32]>::try_from(s)) else {
        return false;
    };
    if bool::from(Scalar::from_canonical_bytes(s).is_none()) || !is_canonical_y(&r) {
        return false;
    }
    let Some(point) = CompressedEdwardsY(r).decompress() else {
        return false;
    };
    !point.is_small_order() && is_torsion_free(&point)
}

/// `true` if the encoded y (the low 255 bits) is below p = 2²⁵⁵ - 19. With that, decoding then
/// re-encoding gives the same bytes, except for x = 0 with the sign bit set, which only y = ±1
/// decode to: small-order points, refused separately. `verify_strict` compares its re-encoded
/// result with `R`'s bytes, so it refuses every other encoding of `R`; the batch only sees the
/// point, so those must not reach it. (Every such encoding that decodes is, in fact, of a point
/// the small-order or torsion check refuses: tests/batch.rs checks all of them. This check makes
/// the argument local at the cost of a few byte comparisons.)
fn is_canonical_y(encoded: &[u8; 32]) -> bool {
    // p in little-endian: ed ff .. ff 7f. y >= p only if every byte from 1 to 30 is ff, the top
    // byte (sign bit cleared) is 7f and byte 0 is at least ed.
    let at_least_p = encoded[31] & 0x7f == 0x7f && encoded[1..31].iter().all(|b| *b == 0xff) && encoded[0] >= 0xed;
    !at_least_p
}

/// `true` if `[ℓ]P` is the identity, i.e. `P` has no torsion component, tested as
/// `[ℓ - 1]P = -P` (`-1` is the canonical scalar ℓ - 1). Variable time: every input here is
/// public. The cost of one scalar multiplication.
fn is_torsion_free(point: &EdwardsPoint) -> bool {
    EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-Scalar::ONE), point, &Scalar::ZERO) == -point
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};

    use super::*;

    #[test]
    fn torsion_test_matches_the_constant_time_one() {
        let prime = ED25519_BASEPOINT_POINT * Scalar::from(12345u64);
        for (i, torsion) in EIGHT_TORSION.iter().enumerate() {
            let mixed = prime + torsion;
            assert_eq!(is_torsion_free(&mixed), mixed.is_torsion_free(), "torsion {i}");
            assert_eq!(is_torsion_free(&mixed), i == 0, "torsion {i}");
            assert_eq!(is_torsion_free(torsion), torsion.is_torsion_free(), "small order {i}");
        }
    }

    #[test]
    fn canonical_y_is_exactly_the_round_trip() {
        // Every y at or above p (both sign bits), and neighbours below p.
        let mut candidates = Vec::new();
        for low in 0xe0..=0xffu8 {
            for top in [0x7f, 0xff] {
                let mut bytes = [0xff; 32];
                bytes[0] = low;
                bytes[31] = top;
                candidates.push(bytes);
            }
        }
        for torsion in EIGHT_TORSION {
            candidates.push(torsion.compress().to_bytes());
        }
        for bytes in candidates {
            let Some(point) = CompressedEdwardsY(bytes).decompress() else {
                continue;
            };
            let round_trip = point.compress().to_bytes() == bytes;
            if !point.is_small_order() {
                assert_eq!(is_canonical_y(&bytes), round_trip, "{}", hex::encode(bytes));
            }
        }
    }
}
