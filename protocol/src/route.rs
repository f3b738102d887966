//! Route records: "account X is reachable at peer P until T", signed by the account key, as
//! published in the DHT, and which of two records for one account wins.

use bincode::{Decode, Encode};

use crate::{codec::raw, tag, AccountId, AccountKey, Error, Result};

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
    /// ed25519 signature by `account` over
    /// `tag::ROUTE || bincode((account, peer, addrs, seq, expires_at))`.
    pub signature: [u8; 64],
}

/// The longest peer id we accept in a record (multihash of an inlined key is 38 bytes).
const MAX_PEER_LEN: usize = 128;
/// Most addresses in a record.
pub const MAX_ROUTE_ADDRS: usize = 16;
/// Longest address in a record.
const MAX_ADDR_LEN: usize = 256;

impl RouteRecord {
    /// Signs a record for `key`'s account.
    pub fn sign(key: &AccountKey, peer: Vec<u8>, addrs: Vec<Vec<u8>>, seq: u64, expires_at: u64) -> Result<Self> {
        let account = key.account_id();
        check_shape(&peer, &addrs)?;
        let signature = key.sign_tagged(tag::ROUTE, &raw(&(&account, &peer, &addrs, seq, expires_at)));
        Ok(RouteRecord {
            account,
            peer,
            addrs,
            seq,
            expires_at,
            signature,
        })
    }

    /// Verifies the signature and that the record is not expired at `now` (ms since the epoch).
    pub fn verify(&self, now: u64) -> Result<()> {
        check_shape(&self.peer, &self.addrs)?;
        self.account.verify_tagged(
            "route record",
            tag::ROUTE,
            &raw(&(&self.account, &self.peer, &self.addrs, self.seq, self.expires_at)),
            &self.signature,
        )?;
        if self.expires_at <= now {
            return Err(Error::Expired("route record".into()));
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
        RouteRecord::sign(&key(1), vec![1; 38], vec![], seq, expires_at).unwrap_or_else(|e| panic!("{e}"))
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
    fn seq_is_signed() {
        let mut r = record(1, 9_000);
        r.seq = 2;
        assert_eq!(r.verify(0).map_err(|e| e.code()), Err(crate::Code::InvalidSignature));
    }
}
