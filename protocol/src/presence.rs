//! Presence: an account tells its contacts whether it is online, away, busy or gone offline,
//! with a short text. Signed, sent to each contact directly, never stored or queued; refused
//! when not fresh, like a stream, so a captured one cannot be replayed later.

use bincode::{Decode, Encode};

use crate::{codec::raw, stream::STREAM_FRESHNESS_MS, tag, AccountId, AccountKey, Error, Result, Verified, Via};

/// What a bad presence signature is reported as (`Error::InvalidSignature`).
const PRESENCE_WHAT: &str = "presence";

/// The longest status text, in bytes (UTF-8).
pub const MAX_PRESENCE_TEXT: usize = 140;

/// An account's availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Availability {
    /// Online.
    Online,
    /// Online, but away.
    Away,
    /// Online, but busy.
    Busy,
    /// Gone offline (sent by a node stopping cleanly).
    Offline,
}

impl Availability {
    /// `online`, `away`, `busy` or `offline`.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Online => "online",
            Availability::Away => "away",
            Availability::Busy => "busy",
            Availability::Offline => "offline",
        }
    }

    /// The availability named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Availability> {
        match name {
            "online" => Some(Availability::Online),
            "away" => Some(Availability::Away),
            "busy" => Some(Availability::Busy),
            "offline" => Some(Availability::Offline),
            _ => None,
        }
    }
}

/// A signed presence notice for one contact.
///
/// Signed payload: `tag::PRESENCE || bincode((from, to, status, text, at))`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Presence {
    /// The account whose presence this is; it signs.
    pub from: AccountId,
    /// The contact it is for.
    pub to: AccountId,
    /// Availability.
    pub status: Availability,
    /// A short text, at most [`MAX_PRESENCE_TEXT`] bytes.
    pub text: String,
    /// When, ms since the Unix epoch by the signer's clock.
    pub at: u64,
    /// ed25519 signature by `from`.
    pub signature: [u8; 64],
}

fn check_fields(from: &AccountId, to: &AccountId, text: &str) -> Result<()> {
    if from == to {
        return Err(Error::BadParameters("presence is for another account".into()));
    }
    if text.len() > MAX_PRESENCE_TEXT {
        return Err(Error::TooLarge {
            what: "presence text",
            len: text.len(),
            max: MAX_PRESENCE_TEXT,
        });
    }
    Ok(())
}

impl Presence {
    /// Signs `key`'s presence for `to`.
    pub fn sign(key: &AccountKey, to: AccountId, status: Availability, text: String, at: u64) -> Result<Presence> {
        let from = key.account_id();
        check_fields(&from, &to, &text)?;
        let signature = key.sign_tagged(tag::PRESENCE, &raw(&(&from, &to, status, &text, at)));
        Ok(Presence {
            from,
            to,
            status,
            text,
            at,
            signature,
        })
    }

    /// Verifies the fields (4104, 4114) and the signature (4118).
    pub fn verify(self) -> Result<Verified<Presence>> {
        check_fields(&self.from, &self.to, &self.text)?;
        let payload = raw(&(&self.from, &self.to, self.status, &self.text, self.at));
        self.from
            .verify_tagged(PRESENCE_WHAT, tag::PRESENCE, &payload, &self.signature)?;
        let id = crate::MessageId::from_bytes(sha(&payload));
        Ok(Verified::new(self, id))
    }
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(tag::PRESENCE);
    h.update(bytes);
    h.finalize().into()
}

/// Whether `local` may take a verified presence that arrived `via` a path at `now`: on a pipe
/// (4104), for `local` (4105), fresh (4121 older than 30 s, 4104 more than 30 s ahead). Whether
/// its signer is a contact is the node's question.
pub fn check_presence(p: &Presence, local: &AccountId, via: &Via, now: u64) -> Result<()> {
    if *via != Via::Direct {
        return Err(Error::BadParameters("presence arrives only on direct paths".into()));
    }
    if p.to != *local {
        return Err(Error::PermissionDenied("presence for another account"));
    }
    if p.at > now.saturating_add(STREAM_FRESHNESS_MS) {
        return Err(Error::BadParameters("the presence lies in the future".into()));
    }
    if now.saturating_sub(p.at) > STREAM_FRESHNESS_MS {
        return Err(Error::Expired("the presence is no longer current".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{test_util::key, Code};

    #[test]
    fn a_signed_presence_verifies_only_unchanged_fresh_and_for_its_receiver() {
        let (alice, bob) = (key(1), key(2));
        let now = 1_700_000_000_000;
        let p = Presence::sign(&alice, bob.account_id(), Availability::Away, "lunch".into(), now).unwrap();
        assert!(p.clone().verify().is_ok());
        let mut other = p.clone();
        other.status = Availability::Online;
        assert_eq!(other.verify().unwrap_err().code(), Code::InvalidSignature);
        let mut other = p.clone();
        other.text = "back".into();
        assert_eq!(other.verify().unwrap_err().code(), Code::InvalidSignature);
        let local = bob.account_id();
        assert!(check_presence(&p, &local, &Via::Direct, now).is_ok());
        let code = |r: Result<()>| r.unwrap_err().code();
        assert_eq!(
            code(check_presence(&p, &key(3).account_id(), &Via::Direct, now)),
            Code::PermissionDenied
        );
        assert_eq!(
            code(check_presence(&p, &local, &Via::Direct, now + 30_001)),
            Code::Expired
        );
        let room = Via::Room(crate::RoomId::new("r").unwrap());
        assert_eq!(code(check_presence(&p, &local, &room, now)), Code::BadParameters);
        let long = "x".repeat(MAX_PRESENCE_TEXT + 1);
        assert_eq!(
            Presence::sign(&alice, local, Availability::Busy, long, now)
                .unwrap_err()
                .code(),
            Code::TooLarge
        );
    }
}
