//! Route records: "account X is reachable at peer P until T", signed by the account key, as
//! published in the DHT, and which of two records for one account wins.

use bincode::{Decode, Encode};

use crate::{codec::raw, seal::SealKeyRecord, tag, AccountId, AccountKey, Error, Result};

/// A signed statement that an account is served by a libp2p peer, valid until `expires_at`. Of two
/// valid records for one account the one with the higher `seq` is the account's current route
/// ([`RouteRecord::supersedes`]).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct RouteRecord {
    /// The account.
    pub account: AccountId,
    /// The serving peer's libp2p `PeerId`, in its binary multihash form.
    pub peer: Vec<u8>,
    /// The peer's listen addresses (binary multiaddrs), so a lookup can dial at once.
    pub addrs: Vec<Vec<u8>>,
    /// The publisher's sequence number: higher is newer. tim nodes use their wall clock in ms at
    /// signing, so a restarted node needs no persisted counter to supersede its last record.
    pub seq: u64,
    /// Milliseconds since the Unix epoch after which the record is void.
    pub expires_at: u64,
    /// The account's newest seal-key record, so whoever resolves the route can seal to it.
    pub seal_key: Option<SealKeyRecord>,
    /// ed25519 signature by `account` over
    /// `tag::ROUTE || bincode((account, peer, addrs, seq, expires_at, seal_key))`.
    pub signature: [u8; 64],
}

/// The longest peer id we accept in a record (multihash of an inlined key is 38 bytes).
const MAX_PEER_LEN: usize = 128;
/// Most addresses in a record.
pub const MAX_ROUTE_ADDRS: usize = 16;
/// Longest address in a record.
const MAX_ADDR_LEN: usize = 256;

impl RouteRecord {
    /// Signs a record for `key`'s account, carrying `seal_key` (which must be the account's).
    pub fn sign(
        key: &AccountKey,
        peer: Vec<u8>,
        addrs: Vec<Vec<u8>>,
        seq: u64,
        expires_at: u64,
        seal_key: Option<SealKeyRecord>,
    ) -> Result<Self> {
        let account = key.account_id();
        check_shape(&peer, &addrs)?;
        if seal_key.as_ref().is_some_and(|r| r.account != account) {
            return Err(Error::BadParameters(
                "route record carries another account's seal key".into(),
            ));
        }
        let signature = key.sign_tagged(tag::ROUTE, &raw(&(&account, &peer, &addrs, seq, expires_at, &seal_key)));
        Ok(RouteRecord {
            account,
            peer,
            addrs,
            seq,
            expires_at,
            seal_key,
            signature,
        })
    }

    /// Verifies the signature, that the record is not expired at `now` (ms since the epoch), and
    /// that the seal-key record it carries is the account's and valid.
    pub fn verify(&self, now: u64) -> Result<()> {
        check_shape(&self.peer, &self.addrs)?;
        self.account.verify_tagged(
            "route record",
            tag::ROUTE,
            &raw(&(
                &self.account,
                &self.peer,
                &self.addrs,
                self.seq,
                self.expires_at,
                &self.seal_key,
            )),
            &self.signature,
        )?;
        if self.expires_at <= now {
            return Err(Error::Expired("route record".into()));
        }
        if let Some(seal_key) = &self.seal_key {
            if seal_key.account != self.account {
                return Err(Error::BadParameters(
                    "route record carries another account's seal key".into(),
                ));
            }
            seal_key.verify()?;
        }
        Ok(())
    }

    /// Whether this record replaces `other`, both valid records for the same account: the higher
    /// `seq` wins, then the later `expires_at`. An identical record does not replace, so storing
    /// the same record twice changes nothing.
    pub fn supersedes(&self, other: &RouteRecord) -> bool {
        (self.seq, self.expires_at) > (other.seq, other.expires_at)
    }
}

fn check_shape(peer: &[u8], addrs: &[Vec<u8>]) -> Result<()> {
    if peer.is_empty() || peer.len() > MAX_PEER_LEN {
        return Err(Error::BadParameters("route record peer id has a bad length".into()));
    }
    if addrs.len() > MAX_ROUTE_ADDRS || addrs.iter().any(|a| a.is_empty() || a.len() > MAX_ADDR_LEN) {
        return Err(Error::BadParameters(
            "route record has too many or bad addresses".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::key;

    fn record(seq: u64, expires_at: u64) -> RouteRecord {
        RouteRecord::sign(&key(1), vec![1; 38], vec![], seq, expires_at, None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn higher_seq_wins_even_with_an_earlier_expiry() {
        let (old, new) = (record(1, 9_000), record(2, 5_000));
        assert!(new.supersedes(&old));
        assert!(!old.supersedes(&new));
    }

    #[test]
    fn equal_seq_later_expiry_wins_and_identical_never_replaces() {
        let (short, long) = (record(7, 5_000), record(7, 9_000));
        assert!(long.supersedes(&short));
        assert!(!short.supersedes(&long));
        assert!(!long.supersedes(&long.clone()));
    }

    #[test]
    fn the_seal_key_is_signed_and_must_be_the_accounts_and_valid() {
        use crate::seal::{SealKeyRecord, SealSecret};
        let (alice, bob) = (key(1), key(2));
        let own = SealKeyRecord::sign(&alice, &SealSecret::generate(), 3);
        let signed = |seal_key| RouteRecord::sign(&alice, vec![1; 38], vec![], 1, 9_000, seal_key);
        let r = signed(Some(own.clone())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.verify(0).map_err(|e| e.code()), Ok(()));
        // Stripped or swapped for another of Alice's records: the route signature fails.
        for swapped in [None, Some(SealKeyRecord::sign(&alice, &SealSecret::generate(), 2))] {
            let mut changed = r.clone();
            changed.seal_key = swapped;
            assert_eq!(
                changed.verify(0).map_err(|e| e.code()),
                Err(crate::Code::InvalidSignature)
            );
        }
        // Bob's record in Alice's route: refused when signing, and when verifying.
        let bobs = SealKeyRecord::sign(&bob, &SealSecret::generate(), 3);
        assert_eq!(
            signed(Some(bobs)).map(|_| ()).map_err(|e| e.code()),
            Err(crate::Code::BadParameters)
        );
        // A forged seal-key record under a valid route signature: refused.
        let mut forged = own;
        forged.seq = 4;
        let r = signed(Some(forged)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.verify(0).map_err(|e| e.code()), Err(crate::Code::InvalidSignature));
    }

    #[test]
    fn seq_is_signed() {
        let mut r = record(1, 9_000);
        r.seq = 2;
        assert_eq!(r.verify(0).map_err(|e| e.code()), Err(crate::Code::InvalidSignature));
    }
}
