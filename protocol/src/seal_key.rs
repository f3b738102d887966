//! Seal keys: the X25519 keys bodies are sealed to, published in records signed by the account
//! key, and the keyring an account opens bodies with.
//!
//! An account's *derived* seal key is the Montgomery form of its ed25519 key: anyone can seal to
//! it knowing only the account id, and its secret is the account key itself. An account also
//! publishes random seal keys of its own in [`SealKeyRecord`]s (every sealed body it sends
//! carries its current one), so the key that opens its bodies is not the key that signs for it,
//! and can be replaced and, later, deleted. A sender seals to the newest valid record it holds for
//! a reader, else to the reader's derived key.

use bincode::{Decode, Encode};
use hpke::{kem::X25519HkdfSha256, Deserializable, Kem, Serializable};

use crate::{codec::raw, tag, AccountId, AccountKey, Error, Result};

/// The most secrets a [`Keyring`] holds (the newest ones; the derived key always): about five
/// years of weekly keys. Opening computes one hint per secret held.
pub const MAX_SEAL_SECRETS: usize = 256;

/// A signed statement "bodies for `account` may be sealed to `key`", superseding the account's
/// records with a lower `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SealKeyRecord {
    /// The account.
    pub account: AccountId,
    /// The X25519 public key.
    pub key: [u8; 32],
    /// The publisher's sequence number, higher is newer: tim nodes use the key's creation time
    /// (ms since the epoch).
    pub seq: u64,
    /// ed25519 signature by `account` over `tag::SEAL_KEY || bincode((account, key, seq))`.
    pub signature: [u8; 64],
}

impl SealKeyRecord {
    /// Signs a record of `secret`'s public key for `key`'s account.
    pub fn sign(key: &AccountKey, secret: &SealSecret, seq: u64) -> Self {
        let account = key.account_id();
        let public = secret.public();
        let signature = key.sign_tagged(tag::SEAL_KEY, &raw(&(&account, &public, seq)));
        SealKeyRecord {
            account,
            key: public,
            seq,
            signature,
        }
    }

    /// Verifies the signature (`4118`) and that `key` is an X25519 key a body can be sealed to
    /// (`4113`: not on the curve, not canonical, or of small order).
    pub fn verify(&self) -> Result<()> {
        self.account.verify_tagged(
            "seal key record",
            tag::SEAL_KEY,
            &raw(&(&self.account, &self.key, self.seq)),
            &self.signature,
        )?;
        if !is_sealable_key(&self.key) {
            return Err(Error::Malformed {
                what: "seal key record",
                detail: "not a key a body can be sealed to".into(),
            });
        }
        Ok(())
    }

    /// Whether this record replaces `other`, both valid records for the same account: the higher
    /// `seq` wins; an identical one does not replace.
    pub fn supersedes(&self, other: &SealKeyRecord) -> bool {
        self.seq > other.seq
    }
}

/// An account's seal-key record announced to a private room's members, signed by the account
/// (so nobody else can make a new announcement out of a captured record).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SealKeyAnnouncement {
    /// The room it is announced in.
    pub room: crate::RoomId,
    /// The record (of `signature`'s signer).
    pub record: SealKeyRecord,
    /// When it was announced (ms since the epoch).
    pub at: u64,
    /// ed25519 signature by `record.account` over
    /// `tag::SEAL_ANNOUNCE || bincode((room, record, at))`.
    pub signature: [u8; 64],
}

impl SealKeyAnnouncement {
    /// Signs an announcement of `key`'s own `record` in `room` at `at`.
    pub fn sign(key: &AccountKey, room: crate::RoomId, record: SealKeyRecord, at: u64) -> Result<Self> {
        if record.account != key.account_id() {
            return Err(Error::BadParameters(
                "an account announces only its own seal key".into(),
            ));
        }
        let signature = key.sign_tagged(tag::SEAL_ANNOUNCE, &raw(&(&room, &record, at)));
        Ok(SealKeyAnnouncement {
            room,
            record,
            at,
            signature,
        })
    }

    /// Verifies the announcement's signature (`4118`); the record itself is checked with
    /// [`SealKeyRecord::verify`].
    pub fn verify(&self) -> Result<()> {
        self.record.account.verify_tagged(
            "seal key announcement",
            tag::SEAL_ANNOUNCE,
            &raw(&(&self.room, &self.record, self.at)),
            &self.signature,
        )
    }
}

/// Whether `key` is the canonical encoding of an X25519 point on the curve (not its twist) and
/// of large order: sealing to anything else fails or yields a shared secret others know.
pub(crate) fn is_sealable_key(key: &[u8; 32]) -> bool {
    let point = curve25519_dalek::montgomery::MontgomeryPoint(*key);
    match point.to_edwards(0) {
        Some(edwards) => !edwards.is_small_order() && edwards.to_montgomery().to_bytes() == *key,
        None => false,
    }
}

/// An X25519 secret a body can be opened with. Keep it secret.
#[derive(Clone)]
pub struct SealSecret {
    private: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for SealSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealSecret({})", hex::encode(self.public))
    }
}

impl SealSecret {
    /// A new random secret.
    pub fn generate() -> Self {
        let (private, public) = X25519HkdfSha256::gen_keypair(&mut rand::rngs::OsRng);
        SealSecret {
            private: private.to_bytes().into(),
            public: public.to_bytes().into(),
        }
    }

    /// The secret from its 32 bytes (as a node keeps it in its data dir).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let private = <X25519HkdfSha256 as Kem>::PrivateKey::from_bytes(bytes).map_err(|_| Error::Malformed {
            what: "seal secret",
            detail: "not an X25519 secret".into(),
        })?;
        let public = X25519HkdfSha256::sk_to_pk(&private);
        Ok(SealSecret {
            private: *bytes,
            public: public.to_bytes().into(),
        })
    }

    /// The account's derived secret (see the module docs).
    pub fn derived(key: &AccountKey) -> Result<Self> {
        Self::from_bytes(&key.x25519_secret())
    }

    /// Its 32 bytes. Keep them secret.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.private
    }

    /// The public key bodies are sealed to.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    pub(crate) fn private(&self) -> &[u8; 32] {
        &self.private
    }
}

/// One reader a body is sealed to: its account and the seal key used for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader {
    /// The reader's account.
    pub account: AccountId,
    /// The X25519 key its wrap is sealed to.
    pub key: [u8; 32],
}

impl Reader {
    /// `account` with its derived key; `None` if no body can be sealed to it.
    pub fn derived(account: &AccountId) -> Option<Reader> {
        account
            .x25519_public()
            .ok()
            .map(|key| Reader { account: *account, key })
    }

    /// The reader a verified record names.
    pub fn of(record: &SealKeyRecord) -> Reader {
        Reader {
            account: record.account,
            key: record.key,
        }
    }
}

/// What one account seals and opens bodies with: its secrets, newest first and the derived one
/// last, and the signed record of the newest published one (which it seals its own copy to and
/// sends in every body it seals).
#[derive(Debug, Clone)]
pub struct Keyring {
    account: AccountId,
    secrets: Vec<SealSecret>,
    record: Option<SealKeyRecord>,
}

impl Keyring {
    /// A keyring with the account's derived key only (an account that publishes no keys).
    pub fn derived(key: &AccountKey) -> Result<Self> {
        Ok(Keyring {
            account: key.account_id(),
            secrets: vec![SealSecret::derived(key)?],
            record: None,
        })
    }

    /// A keyring with `published` secrets and their `seq`s (any order; at most
    /// [`MAX_SEAL_SECRETS`] newest are kept) and the derived key; signs the record of the newest.
    pub fn new(key: &AccountKey, published: &[(u64, SealSecret)]) -> Result<Self> {
        let mut sorted: Vec<&(u64, SealSecret)> = published.iter().collect();
        sorted.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        sorted.truncate(MAX_SEAL_SECRETS - 1);
        let record = sorted
            .first()
            .map(|(seq, secret)| SealKeyRecord::sign(key, secret, *seq));
        let mut secrets: Vec<SealSecret> = sorted.into_iter().map(|(_, s)| s.clone()).collect();
        secrets.push(SealSecret::derived(key)?);
        Ok(Keyring {
            account: key.account_id(),
            secrets,
            record,
        })
    }

    /// The account.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// The record of the newest published key, if the account publishes any.
    pub fn record(&self) -> Option<&SealKeyRecord> {
        self.record.as_ref()
    }

    /// The account as a reader of what it seals itself: its newest key.
    pub(crate) fn own_reader(&self) -> Option<Reader> {
        let secret = self.secrets.first()?;
        Some(Reader {
            account: self.account,
            key: secret.public,
        })
    }

    /// The secrets, newest first, the derived one last.
    pub(crate) fn secrets(&self) -> &[SealSecret] {
        &self.secrets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{test_util::key, Code};

    /// The code of `r`'s error, `None` if it is fine.
    fn code(r: Result<()>) -> Option<Code> {
        r.err().map(|e| e.code())
    }

    #[test]
    fn a_record_verifies_and_every_signed_field_is_covered() {
        let alice = key(1);
        let record = SealKeyRecord::sign(&alice, &SealSecret::generate(), 7);
        assert_eq!(code(record.verify()), None);
        let mut later = record.clone();
        later.seq = 8;
        assert_eq!(code(later.verify()), Some(Code::InvalidSignature));
        let mut other = record.clone();
        other.key = SealSecret::generate().public();
        assert_eq!(code(other.verify()), Some(Code::InvalidSignature));
        let mut stolen = record.clone();
        stolen.account = key(2).account_id();
        assert_eq!(code(stolen.verify()), Some(Code::InvalidSignature));
    }

    #[test]
    fn a_record_of_a_key_no_body_can_be_sealed_to_is_refused() {
        let alice = key(1);
        // The identity, a point of order 8, and 2^255 - 19 + 1 (a non-canonical 1).
        let mut order8 = [0u8; 32];
        order8[..8].copy_from_slice(&[0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae]);
        order8[8..16].copy_from_slice(&[0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a]);
        order8[16..24].copy_from_slice(&[0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd]);
        order8[24..].copy_from_slice(&[0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00]);
        let mut non_canonical = [0xff; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        for bad in [[0u8; 32], order8, non_canonical] {
            assert!(!is_sealable_key(&bad), "{}", hex::encode(bad));
            let account = alice.account_id();
            let signature = alice.sign_tagged(tag::SEAL_KEY, &raw(&(&account, &bad, 1u64)));
            let record = SealKeyRecord {
                account,
                key: bad,
                seq: 1,
                signature,
            };
            assert_eq!(code(record.verify()), Some(Code::Malformed), "{}", hex::encode(bad));
        }
        assert!(is_sealable_key(&SealSecret::generate().public()));
        assert!(is_sealable_key(
            &SealSecret::derived(&alice).unwrap_or_else(|e| panic!("{e}")).public()
        ));
    }

    #[test]
    fn the_newest_secret_is_published_and_the_derived_one_kept_last() {
        let alice = key(1);
        let (old, new) = (SealSecret::generate(), SealSecret::generate());
        let ring = Keyring::new(&alice, &[(5, new.clone()), (1, old.clone())]).unwrap_or_else(|e| panic!("{e}"));
        let record = ring.record().cloned().unwrap_or_else(|| panic!("no record"));
        assert_eq!((record.key, record.seq), (new.public(), 5));
        assert_eq!(code(record.verify()), None);
        let publics: Vec<[u8; 32]> = ring.secrets().iter().map(SealSecret::public).collect();
        let derived = SealSecret::derived(&alice).unwrap_or_else(|e| panic!("{e}")).public();
        assert_eq!(publics, vec![new.public(), old.public(), derived]);
        assert!(record.supersedes(&SealKeyRecord::sign(&alice, &old, 1)));
        assert!(!record.supersedes(&record.clone()));
        // The derived public key is the one anyone computes from the account id.
        assert_eq!(Reader::derived(&alice.account_id()).map(|r| r.key), Some(derived));
        let restored = SealSecret::from_bytes(&new.to_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(restored.public(), new.public());
    }
}
