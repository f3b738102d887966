//! Identities and ids: account keys, account ids, room ids, message ids, and their text forms.
//!
//! Text forms (stable, used in the API, logs and CLI):
//! - [`AccountId`]: the 32-byte ed25519 public key as 64 lowercase hex digits.
//! - [`MessageId`]: the 32-byte digest as 64 lowercase hex digits.
//! - [`RoomId`]: itself, 1 to 64 characters from `a-z 0-9 . _ -`.

use std::{fmt, str::FromStr};

use bincode::{de::Decoder, error::DecodeError, Decode, Encode};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::{Error, Result};

/// The longest room id, in bytes.
pub const MAX_ROOM_ID_LEN: usize = 64;

fn parse_hex32(what: &'static str, s: &str) -> Result<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(Error::Malformed {
            what,
            detail: "expected 64 lowercase hex digits".into(),
        });
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| Error::Malformed {
        what,
        detail: e.to_string(),
    })?;
    Ok(out)
}

macro_rules! string_serde {
    ($ty:ty, $expecting:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// An account's signing key (ed25519). The account is the key: whoever holds it speaks for the
/// account. Kept apart from a node's libp2p key, so one node may host several accounts and one
/// account may live on several devices.
#[derive(Clone)]
pub struct AccountKey(SigningKey);

impl AccountKey {
    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        AccountKey(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The key from its 32-byte secret seed (as stored in a node's data dir).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        AccountKey(SigningKey::from_bytes(secret))
    }

    /// The 32-byte secret seed. Keep it secret.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public account id.
    pub fn account_id(&self) -> AccountId {
        AccountId(self.0.verifying_key().to_bytes())
    }

    /// The account's X25519 secret for opening sealed bodies: the scalar half of SHA-512 of its
    /// ed25519 seed, unclamped (X25519 clamps it on use, as it clamped the signing scalar), so
    /// [`AccountId::x25519_public`] is its public half (RFC 7748's birational map).
    pub(crate) fn x25519_secret(&self) -> [u8; 32] {
        self.0.to_scalar_bytes()
    }

    /// Signs `tag || payload`. Only crate code chooses the tags.
    pub(crate) fn sign_tagged(&self, tag: &[u8], payload: &[u8]) -> [u8; 64] {
        let mut bytes = Vec::with_capacity(tag.len() + payload.len());
        bytes.extend_from_slice(tag);
        bytes.extend_from_slice(payload);
        self.0.sign(&bytes).to_bytes()
    }
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountKey({})", self.account_id())
    }
}

/// An account: its ed25519 public key. Text form: 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct AccountId([u8; 32]);

impl AccountId {
    /// The account id from the raw public key bytes; fails if they are not a valid ed25519 point.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self> {
        VerifyingKey::from_bytes(&bytes).map_err(|_| Error::Malformed {
            what: "account id",
            detail: "not an ed25519 public key".into(),
        })?;
        Ok(AccountId(bytes))
    }

    /// The raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The account's X25519 public key, to seal bodies to: the Montgomery form of its ed25519
    /// key. Fails for bytes that are no ed25519 point, or a small-order one (no secret opens it).
    pub(crate) fn x25519_public(&self) -> Result<[u8; 32]> {
        let bad = || Error::Malformed {
            what: "account id",
            detail: "not a key a body can be sealed to".into(),
        };
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| bad())?;
        if key.is_weak() {
            return Err(bad());
        }
        Ok(key.to_montgomery().to_bytes())
    }

    /// Whether bodies can be sealed to this account: its bytes are an ed25519 point of large
    /// order. Ids that arrive as the subject of a room operation are checked with it.
    pub(crate) fn is_sealable(&self) -> bool {
        self.x25519_public().is_ok()
    }

    /// Verifies `signature` over `tag || payload` with this account's key (strict RFC 8032
    /// verification: no malleable signatures, no small-order keys).
    pub(crate) fn verify_tagged(
        &self,
        what: &'static str,
        tag: &[u8],
        payload: &[u8],
        signature: &[u8; 64],
    ) -> Result<()> {
        let mut bytes = Vec::with_capacity(tag.len() + payload.len());
        bytes.extend_from_slice(tag);
        bytes.extend_from_slice(payload);
        crate::batch::verify_one(&crate::batch::SignedBytes {
            what,
            key: &self.0,
            bytes: &bytes,
            signature,
        })
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({self})")
    }
}

impl FromStr for AccountId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        AccountId::from_bytes(parse_hex32("account id", s)?)
    }
}

string_serde!(AccountId, "an account id");

/// A message id: SHA-256 of the exact bytes its sender signed (see docs/protocol.md). Text form:
/// 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct MessageId([u8; 32]);

impl MessageId {
    /// The id from raw bytes (e.g. a storage key). Any 32 bytes are a syntactically valid id.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        MessageId(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl FromStr for MessageId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(MessageId(parse_hex32("message id", s)?))
    }
}

string_serde!(MessageId, "a message id");

/// A room (group) id: 1 to 64 characters from `a-z 0-9 . _ -`. It names the gossip topic too.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Encode)]
pub struct RoomId(String);

impl RoomId {
    /// Validates and wraps a room id.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
        if id.is_empty() || id.len() > MAX_ROOM_ID_LEN || !id.bytes().all(ok_char) {
            return Err(Error::BadParameters(format!(
                "room id must be 1 to {MAX_ROOM_ID_LEN} characters from a-z 0-9 . _ -"
            )));
        }
        Ok(RoomId(id))
    }

    /// The room id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<Context> Decode<Context> for RoomId {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let raw = String::decode(decoder)?;
        RoomId::new(raw).map_err(|e| DecodeError::OtherString(e.to_string()))
    }
}
bincode::impl_borrow_decode!(RoomId);

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({})", self.0)
    }
}

impl FromStr for RoomId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RoomId::new(s)
    }
}

string_serde!(RoomId, "a room id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_id_text_round_trip() {
        let id = AccountKey::generate().account_id();
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<AccountId>(), Ok(id));
        assert_eq!(serde_json::to_string(&id).ok(), Some(format!("\"{text}\"")));
    }

    #[test]
    fn account_id_rejects_bad_text() {
        for bad in ["", "xyz", &"A".repeat(64), &"0".repeat(63), &"0".repeat(65)] {
            assert_eq!(
                bad.parse::<AccountId>().map_err(|e| e.code()),
                Err(crate::Code::Malformed)
            );
        }
    }

    #[test]
    fn key_round_trips_through_secret_bytes() {
        let key = AccountKey::generate();
        let again = AccountKey::from_secret_bytes(&key.secret_bytes());
        assert_eq!(key.account_id(), again.account_id());
        assert!(!format!("{key:?}").contains(&hex::encode(key.secret_bytes())));
    }

    #[test]
    fn room_ids() {
        assert!(RoomId::new("general").is_ok());
        assert!(RoomId::new("team.rust_2026-x").is_ok());
        for bad in ["", "Upper", "has space", "ü", &"a".repeat(65)] {
            assert_eq!(RoomId::new(bad).map_err(|e| e.code()), Err(crate::Code::BadParameters));
        }
    }

    #[test]
    fn message_id_text_round_trip() {
        let id = MessageId::from_bytes([0xab; 32]);
        assert_eq!(id.to_string(), "ab".repeat(32));
        assert_eq!(id.to_string().parse::<MessageId>(), Ok(id));
    }
}
