//! Streams (tim odType 5): live data for whoever is online now (typing indicators, presence of a
//! cursor, live values). Signed, so a receiver knows who sent it; never stored, never queued,
//! never in a history; refused when not fresh, so a captured one cannot be replayed later.

use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::{codec::raw, tag, AccountId, AccountKey, Error, MessageId, Recipient, Result, Verified, Via};

/// What a bad stream signature is reported as (`Error::InvalidSignature`).
const STREAM_WHAT: &str = "stream";

/// The most data one stream frame carries, in bytes.
pub const MAX_STREAM_DATA: usize = 4 * 1024;

/// How far a stream's signed time may lie from the receiver's clock, either way: a stream is
/// live data, so an older one is refused (`4121`) rather than shown late or replayed.
pub const STREAM_FRESHNESS_MS: u64 = 30_000;

/// A signed stream frame.
///
/// Signed payload: `tag::STREAM || bincode((from, to, at, nonce, data))`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Stream {
    /// The sender, who signs.
    pub from: AccountId,
    /// An account (delivered over a pipe) or a room (published on its topic).
    pub to: Recipient,
    /// When it was sent, ms since the Unix epoch by the sender's clock.
    pub at: u64,
    /// Random, so two equal frames sent in the same millisecond differ.
    pub nonce: [u8; 16],
    /// The data, opaque to the protocol; at most [`MAX_STREAM_DATA`] bytes.
    pub data: Vec<u8>,
    /// ed25519 signature by `from`.
    pub signature: [u8; 64],
}

fn check_fields(from: &AccountId, to: &Recipient, data: &[u8]) -> Result<()> {
    if data.len() > MAX_STREAM_DATA {
        return Err(Error::TooLarge {
            what: "stream data",
            len: data.len(),
            max: MAX_STREAM_DATA,
        });
    }
    if *to == Recipient::Account(*from) {
        return Err(Error::BadParameters("a stream is for another account or a room".into()));
    }
    Ok(())
}

impl Stream {
    /// Signs `data` for `to` at `at` as `key`'s account, with a random nonce.
    pub fn sign(key: &AccountKey, to: Recipient, data: Vec<u8>, at: u64) -> Result<Verified<Stream>> {
        Self::sign_with_nonce(key, to, data, at, rand::random())
    }

    /// [`Stream::sign`] with the given nonce (deterministic, for tests and benches).
    pub fn sign_with_nonce(
        key: &AccountKey,
        to: Recipient,
        data: Vec<u8>,
        at: u64,
        nonce: [u8; 16],
    ) -> Result<Verified<Stream>> {
        let from = key.account_id();
        check_fields(&from, &to, &data)?;
        let signature = key.sign_tagged(tag::STREAM, &raw(&(&from, &to, at, &nonce, &data)));
        let stream = Stream {
            from,
            to,
            at,
            nonce,
            data,
            signature,
        };
        let id = stream.id();
        Ok(Verified::new(stream, id))
    }

    /// The frame's id: SHA-256 of the signed bytes.
    pub fn id(&self) -> MessageId {
        let mut h = Sha256::new();
        h.update(tag::STREAM);
        h.update(raw(&(&self.from, &self.to, self.at, &self.nonce, &self.data)));
        MessageId::from_bytes(h.finalize().into())
    }

    /// Verifies the fields (4114, 4104) and the signature (4118).
    pub fn verify(self) -> Result<Verified<Stream>> {
        check_fields(&self.from, &self.to, &self.data)?;
        self.from.verify_tagged(
            STREAM_WHAT,
            tag::STREAM,
            &raw(&(&self.from, &self.to, self.at, &self.nonce, &self.data)),
            &self.signature,
        )?;
        let id = self.id();
        Ok(Verified::new(self, id))
    }
}

/// Whether `local` may take a verified stream that arrived `via` a path at `now`: one for an
/// account only on a pipe and only for `local` (4104, 4105), one for a room only on that room's
/// topic (4104), and only while fresh (4121 when older, 4104 when in the future).
pub fn check_stream(stream: &Stream, local: &AccountId, via: &Via, now: u64) -> Result<()> {
    match (&stream.to, via) {
        (Recipient::Account(to), Via::Direct) if to == local => {}
        (Recipient::Account(_), Via::Direct) => return Err(Error::PermissionDenied("a stream for another account")),
        (Recipient::Room(room), Via::Room(on)) if room == on => {}
        _ => return Err(Error::BadParameters("a stream arrived on the wrong path".into())),
    }
    if stream.at > now.saturating_add(STREAM_FRESHNESS_MS) {
        return Err(Error::BadParameters("the stream lies in the future".into()));
    }
    if now.saturating_sub(stream.at) > STREAM_FRESHNESS_MS {
        return Err(Error::Expired("the stream is no longer live".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{test_util::key, Code, RoomId};

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn a_signed_stream_verifies_and_any_change_breaks_it() {
        let (alice, bob) = (key(1), key(2));
        let s = Stream::sign(&alice, Recipient::Account(bob.account_id()), b"typing".to_vec(), NOW)
            .unwrap()
            .into_inner();
        assert_eq!(s.clone().verify().unwrap().id(), s.id());
        let mut other = s.clone();
        other.data = b"not typing".to_vec();
        assert_eq!(other.verify().unwrap_err().code(), Code::InvalidSignature);
        let mut other = s.clone();
        other.at += 1;
        assert_eq!(other.verify().unwrap_err().code(), Code::InvalidSignature);
        let mut other = s;
        other.to = Recipient::Account(key(3).account_id());
        assert_eq!(other.verify().unwrap_err().code(), Code::InvalidSignature);
    }

    #[test]
    fn only_fresh_streams_on_their_own_path_are_taken() {
        let (alice, bob) = (key(1), key(2));
        let lobby = RoomId::new("lobby").unwrap();
        let direct = Stream::sign(&alice, Recipient::Account(bob.account_id()), vec![1], NOW)
            .unwrap()
            .into_inner();
        let local = bob.account_id();
        assert!(check_stream(&direct, &local, &Via::Direct, NOW).is_ok());
        let code = |r: Result<()>| r.unwrap_err().code();
        assert_eq!(
            code(check_stream(&direct, &key(3).account_id(), &Via::Direct, NOW)),
            Code::PermissionDenied
        );
        assert_eq!(
            code(check_stream(&direct, &local, &Via::Room(lobby.clone()), NOW)),
            Code::BadParameters
        );
        assert_eq!(
            code(check_stream(&direct, &local, &Via::Direct, NOW + 30_001)),
            Code::Expired
        );
        assert!(check_stream(&direct, &local, &Via::Direct, NOW + 30_000).is_ok());
        assert_eq!(
            code(check_stream(&direct, &local, &Via::Direct, NOW - 30_001)),
            Code::BadParameters
        );
        let room = Stream::sign(&alice, Recipient::Room(lobby.clone()), vec![1], NOW)
            .unwrap()
            .into_inner();
        assert!(check_stream(&room, &local, &Via::Room(lobby), NOW).is_ok());
        assert_eq!(
            code(check_stream(
                &room,
                &local,
                &Via::Room(RoomId::new("other").unwrap()),
                NOW
            )),
            Code::BadParameters
        );
        assert_eq!(
            code(check_stream(&room, &local, &Via::Direct, NOW)),
            Code::BadParameters
        );
    }

    #[test]
    fn data_is_bounded_and_nobody_streams_to_themselves() {
        let alice = key(1);
        let to = Recipient::Account(key(2).account_id());
        let big = vec![0; MAX_STREAM_DATA + 1];
        assert_eq!(Stream::sign(&alice, to, big, NOW).unwrap_err().code(), Code::TooLarge);
        let me = Recipient::Account(alice.account_id());
        assert_eq!(
            Stream::sign(&alice, me, vec![], NOW).unwrap_err().code(),
            Code::BadParameters
        );
    }
}
