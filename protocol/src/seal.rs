//! Sealed bodies: end-to-end encryption of a message body to the accounts that may read it.
//!
//! A sealed body is what travels, and what the header's `body_len` and `body_hash` cover, so no
//! header, tombstone, receipt, log or index anywhere holds anything derived from the plaintext.
//! Layout: [`SEALED_MAGIC`], then bincode of `(sealer, commit, wraps, ciphertext)`:
//! - `sealer`: the sender's current [`SealKeyRecord`], if it publishes one, so every reader learns
//!   the key to seal its answers to;
//! - a fresh random 32-byte body key `k`, used once;
//! - `ciphertext` = ChaCha20Poly1305(`k`, nonce 0, plaintext, aad = `context`);
//! - one wrap per reader: `k` under ChaCha20Poly1305 with the sender's *wrap key* for that reader
//!   and a random nonce, aad = `context`, behind a hint salted with `commit` (a reader finds its
//!   wrap; nobody else learns whose it is, and nobody can plant wraps that shadow a reader's). A
//!   wrap key is exported from an HPKE (RFC 9180) base-mode setup, DHKEM(X25519, HKDF-SHA256) /
//!   HKDF-SHA256 / export-only, to the reader's seal key ([`Reader`]: its newest published
//!   record's key, else its derived key), `info` = [`tag::SEAL`], exporter context
//!   [`tag::SEAL_WRAP`]; each wrap carries the setup's `enc`, so any body opens alone;
//! - `commit` = SHA-256([`tag::SEAL_COMMIT`] || `k`), so every reader opens the same plaintext
//!   (ChaCha20Poly1305 alone does not commit to its key);
//! - `context` = bincode of `(from, to, commit)`: a body lifted into another sender's or another
//!   conversation's message does not open.
//!
//! A sender reuses its setup to a reader for up to [`MAX_WRAP_USES`] bodies and a reader
//! remembers the setups it opened ([`SealKeys`]), so the X25519 work is paid once per pair and a
//! body costs symmetric cryptography only. The sender is always one of the readers, so its own
//! copy opens after a restart.
//!
//! Version 1 bodies ([`SEALED_MAGIC_V1`]: no `sealer`, hints over the reader's account only,
//! wraps to derived keys) still open; nothing seals them any more.

use std::collections::HashMap;

use bincode::{Decode, Encode};
use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    ChaCha20Poly1305, Key, Nonce,
};
use hpke::{
    aead::ExportOnlyAead, kdf::HkdfSha256, kem::X25519HkdfSha256, Deserializable, Kem, OpModeR, OpModeS, Serializable,
};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub use crate::seal_key::{Keyring, Reader, SealKeyAnnouncement, SealKeyRecord, SealSecret, MAX_SEAL_SECRETS};
use crate::{codec::raw, tag, AccountId, Error, Recipient, Result, MAX_BODY_LEN};

/// The first bytes of every sealed body. A body without them (or [`SEALED_MAGIC_V1`]'s) is a
/// plain one (open rooms, peers that do not seal). Text never starts with a NUL byte.
pub const SEALED_MAGIC: [u8; 4] = [0x00, b't', b'e', 0x02];

/// The first bytes of a version 1 sealed body (see the module docs).
pub const SEALED_MAGIC_V1: [u8; 4] = [0x00, b't', b'e', 0x01];

/// The most readers one body is sealed to (each wrap costs 100 bytes).
pub const MAX_READERS: usize = 512;

/// The most bodies a sender wraps with one setup to a reader before it makes a new one (random
/// 96-bit nonces stay far from colliding).
pub const MAX_WRAP_USES: u32 = 1 << 20;

/// The most wraps hinted at one reader that opening tries. Hints are salted per body, so an
/// honest body has a second wrap hinted at a reader with odds of about 512 in 2^64.
const MAX_WRAPS_TRIED: usize = 2;

/// Setups a [`SealKeys`] remembers on each side before it forgets them all.
const MAX_CACHED_SETUPS: usize = 4096;

/// What sealing adds to a plaintext of any length for `readers` readers, in bytes.
pub const fn sealed_overhead(readers: usize) -> usize {
    SEALED_MAGIC.len() + SEALER_LEN + 32 + 8 + readers * WRAP_LEN + 8 + TAG_LEN
}

/// A present `sealer`: the option's tag, account, key, seq and signature.
const SEALER_LEN: usize = 1 + 32 + 32 + 8 + 64;

const TAG_LEN: usize = 16;
const WRAP_LEN: usize = 8 + 32 + 12 + 32 + TAG_LEN;

type Enc = <X25519HkdfSha256 as Kem>::EncappedKey;
type PublicKey = <X25519HkdfSha256 as Kem>::PublicKey;
type PrivateKey = <X25519HkdfSha256 as Kem>::PrivateKey;

#[derive(Encode, Decode)]
struct Sealed {
    sealer: Option<SealKeyRecord>,
    commit: [u8; 32],
    wraps: Vec<Wrap>,
    ciphertext: Vec<u8>,
}

/// A version 1 body.
#[derive(Encode, Decode)]
struct SealedV1 {
    commit: [u8; 32],
    wraps: Vec<Wrap>,
    ciphertext: Vec<u8>,
}

/// Which layout a body has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The body key sealed to one reader.
#[derive(Encode, Decode)]
struct Wrap {
    /// Which wraps a reader tries: the first 8 bytes of
    /// SHA-256([`tag::SEAL_HINT`] || commit || reader's account id || reader's seal key)
    /// (version 1: without the key).
    hint: [u8; 8],
    /// The HPKE setup's encapsulated key.
    enc: [u8; 32],
    /// The wrap's random nonce.
    nonce: [u8; 12],
    /// The body key under the wrap key (32 bytes and the tag).
    key: [u8; 32 + TAG_LEN],
}

/// A sender's setup to one reader.
struct SendingSetup {
    enc: [u8; 32],
    wrap_key: [u8; 32],
    uses: u32,
}

/// The HPKE setups one account reuses: those it made as a sender (by reader key) and those it
/// opened as a reader (by `enc`). Bounded; forgetting costs only a new setup.
#[derive(Default)]
pub struct SealKeys {
    sending: HashMap<[u8; 32], SendingSetup>,
    /// By the reader key's public half and `enc`: one `enc` yields a different wrap key under
    /// each of a reader's secrets.
    opening: HashMap<([u8; 32], [u8; 32]), [u8; 32]>,
}

impl std::fmt::Debug for SealKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SealKeys({} sending, {} opening)",
            self.sending.len(),
            self.opening.len()
        )
    }
}

impl SealKeys {
    /// Forgets every setup: later bodies use new ones (a step towards forward secrecy, once
    /// readers' keys rotate too).
    pub fn rotate(&mut self) {
        self.sending.clear();
        self.opening.clear();
    }

    /// The wrap key and `enc` for sealing to the seal key `reader`, making a new setup when there
    /// is none or it was used [`MAX_WRAP_USES`] times; `None` if `reader` is no key a body can be
    /// sealed to (nobody could open its wrap).
    fn for_reader(&mut self, reader: &[u8; 32]) -> Option<([u8; 32], [u8; 32])> {
        if let Some(setup) = self.sending.get_mut(reader) {
            if setup.uses < MAX_WRAP_USES {
                setup.uses += 1;
                return Some((setup.enc, setup.wrap_key));
            }
        }
        if !crate::seal_key::is_sealable_key(reader) {
            return None;
        }
        let public = PublicKey::from_bytes(reader).ok()?;
        let (enc, context) = hpke::setup_sender::<ExportOnlyAead, HkdfSha256, X25519HkdfSha256, _>(
            &OpModeS::Base,
            &public,
            tag::SEAL,
            &mut rand::rngs::OsRng,
        )
        .ok()?;
        let mut wrap_key = [0; 32];
        context.export(tag::SEAL_WRAP, &mut wrap_key).ok()?;
        let enc: [u8; 32] = enc.to_bytes().into();
        if self.sending.len() >= MAX_CACHED_SETUPS && !self.sending.contains_key(reader) {
            evict_one(&mut self.sending);
        }
        self.sending.insert(*reader, SendingSetup { enc, wrap_key, uses: 1 });
        Some((enc, wrap_key))
    }

    /// The wrap key of the setup `enc` made to `reader`.
    fn opened(&self, reader: &[u8; 32], enc: &[u8; 32]) -> Option<[u8; 32]> {
        self.opening.get(&(*reader, *enc)).copied()
    }

    fn remember(&mut self, reader: [u8; 32], enc: [u8; 32], wrap_key: [u8; 32]) {
        let key = (reader, enc);
        if self.opening.len() >= MAX_CACHED_SETUPS && !self.opening.contains_key(&key) {
            evict_one(&mut self.opening);
        }
        self.opening.insert(key, wrap_key);
    }
}

/// Forgets one entry of a full cache: the first in the map's order, which its random hasher
/// keys make unpredictable, so a flood of new setups displaces others' one at a time instead of
/// wiping them all.
fn evict_one<K: Clone + Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if let Some(key) = map.keys().next().cloned() {
        map.remove(&key);
    }
}

/// Whether `body` is in the sealed form, of either version (it may still fail to parse or open).
pub fn is_sealed(body: &[u8]) -> bool {
    body.starts_with(&SEALED_MAGIC) || body.starts_with(&SEALED_MAGIC_V1)
}

/// The hint of `reader`'s wrap in a body committing to `commit`.
fn hint(version: Version, commit: &[u8; 32], reader: &Reader) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(tag::SEAL_HINT);
    h.update(commit);
    h.update(reader.account.as_bytes());
    if version == Version::V2 {
        h.update(reader.key);
    }
    let digest: [u8; 32] = h.finalize().into();
    let mut out = [0; 8];
    out.copy_from_slice(&digest[..8]);
    out
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

fn aead_seal(key: &[u8; 32], nonce: &[u8; 12], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(Nonce::from_slice(nonce), Payload { msg, aad })
        .map_err(|_| malformed("does not encrypt"))
}

fn aead_open(key: &[u8], nonce: &[u8; 12], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(Nonce::from_slice(nonce), Payload { msg, aad })
        .ok()
}

/// Seals `plaintext` from `sender`'s account in the conversation `to` for `readers` (an account
/// listed twice is sealed to once, the first time; the sender is added with its newest key if
/// absent; a key no body can be sealed to is skipped, since nobody could open its wrap), reusing
/// `sender`'s setups in `keys`, and carrying `sender`'s record. Fails on more than
/// [`MAX_READERS`] readers or a result over [`MAX_BODY_LEN`].
pub fn seal(
    sender: &Keyring,
    to: &Recipient,
    readers: &[Reader],
    plaintext: &[u8],
    keys: &mut SealKeys,
) -> Result<Vec<u8>> {
    let from = sender.account();
    let mut all: Vec<Reader> = Vec::with_capacity(readers.len() + 1);
    for reader in sender.own_reader().iter().chain(readers) {
        if !all.iter().any(|r| r.account == reader.account) {
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
    let ciphertext = aead_seal(&body_key, &[0; 12], plaintext, &context)?;
    let mut wraps = Vec::with_capacity(all.len());
    for reader in &all {
        let Some((enc, wrap_key)) = keys.for_reader(&reader.key) else {
            continue;
        };
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let key = aead_seal(&wrap_key, &nonce, &body_key, &context)?
            .try_into()
            .map_err(|_| malformed("a wrapped key has an unexpected length"))?;
        wraps.push(Wrap {
            hint: hint(Version::V2, &commit, reader),
            enc,
            nonce,
            key,
        });
    }
    let mut out = SEALED_MAGIC.to_vec();
    out.extend_from_slice(&raw(&Sealed {
        sealer: sender.record().cloned(),
        commit,
        wraps,
        ciphertext,
    }));
    Ok(out)
}

fn parse(body: &[u8]) -> Result<(Version, Sealed)> {
    let (version, rest) = match (body.strip_prefix(&SEALED_MAGIC), body.strip_prefix(&SEALED_MAGIC_V1)) {
        (Some(rest), _) => (Version::V2, rest),
        (None, Some(rest)) => (Version::V1, rest),
        (None, None) => return Err(malformed("no sealed-body prefix")),
    };
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
    let decoded = match version {
        Version::V2 => bincode::decode_from_slice(rest, config),
        Version::V1 => bincode::decode_from_slice(rest, config).map(|(v1, used): (SealedV1, usize)| {
            let SealedV1 {
                commit,
                wraps,
                ciphertext,
            } = v1;
            let sealed = Sealed {
                sealer: None,
                commit,
                wraps,
                ciphertext,
            };
            (sealed, used)
        }),
    };
    let (sealed, used): (Sealed, usize) = decoded.map_err(|e| malformed(&e.to_string()))?;
    if used != rest.len() {
        return Err(malformed("trailing bytes"));
    }
    if sealed.wraps.is_empty() || sealed.wraps.len() > MAX_READERS {
        return Err(malformed("no readers, or too many"));
    }
    if sealed.ciphertext.len() < TAG_LEN {
        return Err(malformed("ciphertext shorter than its tag"));
    }
    if sealed
        .sealer
        .as_ref()
        .is_some_and(|r| !crate::seal_key::is_sealable_key(&r.key))
    {
        return Err(malformed("the sealer's record names no key a body can be sealed to"));
    }
    Ok((version, sealed))
}

/// Checks that `body` is a well-formed sealed body (what a node that is not a reader, or has not
/// opened it yet, can check).
pub fn check(body: &[u8]) -> Result<()> {
    parse(body).map(|_| ())
}

/// The seal-key record a sealed body carries, as it travelled (unverified: check it is for the
/// message's sender and [`SealKeyRecord::verify`] it before sealing to its key). Reads only the
/// front of the body.
pub fn sealer_of(body: &[u8]) -> Option<SealKeyRecord> {
    let rest = body.strip_prefix(&SEALED_MAGIC)?;
    let config = bincode::config::standard()
        .with_fixed_int_encoding()
        .with_limit::<MAX_BODY_LEN>();
    let (sealer, _): (Option<SealKeyRecord>, usize) = bincode::decode_from_slice(rest, config).ok()?;
    sealer
}

/// Whether `body` carries a wrap hinted at `reader` (for tests and diagnostics: a hint is no
/// proof the wrap opens).
pub fn is_sealed_to(body: &[u8], reader: &Reader) -> bool {
    parse(body).is_ok_and(|(version, sealed)| {
        let me = hint(version, &sealed.commit, reader);
        sealed.wraps.iter().any(|w| w.hint == me)
    })
}

/// The wrap key of `enc`'s setup for `secret`: remembered in `keys`, or opened with HPKE.
fn wrap_key_of(secret: &SealSecret, enc: &[u8; 32], keys: &SealKeys) -> Option<[u8; 32]> {
    if let Some(key) = keys.opened(&secret.public(), enc) {
        return Some(key);
    }
    let secret = PrivateKey::from_bytes(secret.private()).ok()?;
    let encapped = Enc::from_bytes(enc).ok()?;
    let context = hpke::setup_receiver::<ExportOnlyAead, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &secret,
        &encapped,
        tag::SEAL,
    )
    .ok()?;
    let mut wrap_key = [0; 32];
    context.export(tag::SEAL_WRAP, &mut wrap_key).ok()?;
    Some(wrap_key)
}

/// Opens a sealed body with `reader`'s keyring, from `from` in the conversation `to` (the
/// message header's fields), remembering the setups it opens in `keys`.
/// [`Error::Undecryptable`] if it is not sealed to one of the keyring's keys, was made for
/// another sender or conversation, or was tampered with; [`Error::Malformed`] if it does not
/// parse.
pub fn open(reader: &Keyring, from: &AccountId, to: &Recipient, body: &[u8], keys: &mut SealKeys) -> Result<Vec<u8>> {
    let (version, sealed) = parse(body)?;
    let account = reader.account();
    // Version 1 sealed to derived keys only, which the keyring holds last.
    let secrets = match version {
        Version::V2 => reader.secrets(),
        Version::V1 => reader.secrets().last().map(std::slice::from_ref).unwrap_or_default(),
    };
    let hints: Vec<([u8; 8], &SealSecret)> = secrets
        .iter()
        .map(|secret| {
            let me = Reader {
                account,
                key: secret.public(),
            };
            (hint(version, &sealed.commit, &me), secret)
        })
        .collect();
    let context = raw(&(from, to, &sealed.commit));
    // One wrap per reader is sealed; trying two bounds the X25519 work a crafted body with many
    // wraps hinted at this account can cost.
    let hinted = sealed
        .wraps
        .iter()
        .filter_map(|w| hints.iter().find(|(h, _)| *h == w.hint).map(|(_, secret)| (w, *secret)));
    for (wrap, secret) in hinted.take(MAX_WRAPS_TRIED) {
        let Some(wrap_key) = wrap_key_of(secret, &wrap.enc, keys) else {
            continue;
        };
        let Some(body_key) = aead_open(&wrap_key, &wrap.nonce, &wrap.key, &context) else {
            continue;
        };
        // Remembered only once a wrap opened with it: junk setups cost a lookup, not a slot.
        keys.remember(secret.public(), wrap.enc, wrap_key);
        if body_key.len() != 32 || commit_of(&body_key) != sealed.commit {
            return Err(Error::Undecryptable("the body key does not match its commitment"));
        }
        return aead_open(&body_key, &[0; 12], &sealed.ciphertext, &context)
            .ok_or(Error::Undecryptable("the ciphertext does not authenticate"));
    }
    Err(Error::Undecryptable("not sealed to this account"))
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
