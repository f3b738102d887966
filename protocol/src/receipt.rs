//! Deletion receipts: a replica's signed statement that it applied the tombstone of a message, so
//! the account that revoked or burned it can see, and prove, where the deletion took effect.

use bincode::{Decode, Encode};

use crate::{codec::raw, tag, AccountId, AccountKey, Error, MessageId, Result, Verified};

/// What a bad receipt signature is reported as (`Error::InvalidSignature`).
const RECEIPT_WHAT: &str = "deletion receipt";

/// A signed deletion receipt.
///
/// Signed payload: `tag::RECEIPT || bincode((target, to, by, at))`. It says: "the replica of
/// account `by` holds a tombstone for `target` since `at`; any body it held is destroyed and any
/// later copy is refused". `to` is the account whose revoke or burn it confirms (the control
/// message's signer), so a receipt made for one account is refused by every other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Receipt {
    /// The destroyed message's id.
    pub target: MessageId,
    /// The signer of the revoke or burn this receipt answers.
    pub to: AccountId,
    /// The replica's account, which signs.
    pub by: AccountId,
    /// When the replica applied the tombstone, ms since the Unix epoch by its clock.
    pub at: u64,
    /// ed25519 signature by `by`.
    pub signature: [u8; 64],
}

impl Receipt {
    /// Signs `key`'s receipt for the tombstone of `target` made by `to`, applied at `at`. A receipt
    /// to oneself is refused (4104): the revoker's own copy is not a replica it needs told about.
    pub fn sign(key: &AccountKey, target: MessageId, to: AccountId, at: u64) -> Result<Verified<Receipt>> {
        let by = key.account_id();
        if by == to {
            return Err(Error::BadParameters("a receipt is for another account".into()));
        }
        let signature = key.sign_tagged(tag::RECEIPT, &raw(&(&target, &to, &by, at)));
        Ok(Verified::new(
            Receipt {
                target,
                to,
                by,
                at,
                signature,
            },
            target,
        ))
    }

    /// Verifies the signature (4118) and that the receipt is not to its own signer (4104). The
    /// proof carries the target id. Whether the receipt is one its receiver asked for is
    /// [`crate::policy::check_receipt`]'s question.
    pub fn verify(self) -> Result<Verified<Receipt>> {
        if self.by == self.to {
            return Err(Error::BadParameters("a receipt is for another account".into()));
        }
        self.by.verify_tagged(
            RECEIPT_WHAT,
            tag::RECEIPT,
            &raw(&(&self.target, &self.to, &self.by, self.at)),
            &self.signature,
        )?;
        let id = self.target;
        Ok(Verified::new(self, id))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::{test_util::key, Code};

    fn code<T: std::fmt::Debug>(r: Result<T>) -> Code {
        r.expect_err("expected an error").code()
    }

    #[test]
    fn a_signed_receipt_verifies_and_any_change_breaks_it() {
        let (alice, bob) = (key(1), key(2));
        let target = MessageId::from_bytes([7; 32]);
        let receipt = Receipt::sign(&bob, target, alice.account_id(), 1_000)
            .unwrap()
            .into_inner();
        assert_eq!(receipt.clone().verify().unwrap().id(), target);

        let mut other_target = receipt.clone();
        other_target.target = MessageId::from_bytes([8; 32]);
        assert_eq!(code(other_target.verify()), Code::InvalidSignature);
        let mut other_to = receipt.clone();
        other_to.to = key(3).account_id();
        assert_eq!(code(other_to.verify()), Code::InvalidSignature);
        let mut other_at = receipt.clone();
        other_at.at += 1;
        assert_eq!(code(other_at.verify()), Code::InvalidSignature);
        let mut other_by = receipt.clone();
        other_by.by = key(3).account_id();
        assert_eq!(code(other_by.verify()), Code::InvalidSignature);
    }

    #[test]
    fn a_receipt_to_oneself_is_refused() {
        let alice = key(1);
        let target = MessageId::from_bytes([7; 32]);
        assert_eq!(
            code(Receipt::sign(&alice, target, alice.account_id(), 1)),
            Code::BadParameters
        );
        let mut receipt = Receipt::sign(&key(2), target, alice.account_id(), 1)
            .unwrap()
            .into_inner();
        receipt.to = receipt.by;
        assert_eq!(code(receipt.verify()), Code::BadParameters);
    }

    #[test]
    fn a_control_signature_never_verifies_as_a_receipt() {
        // Same signer, same bytes after the tag: only the tag differs, so the signature fails.
        let bob = key(2);
        let target = MessageId::from_bytes([7; 32]);
        let payload = raw(&(&target, &key(1).account_id(), &bob.account_id(), 5u64));
        let signature = bob.sign_tagged(tag::REVOKE, &payload);
        let forged = Receipt {
            target,
            to: key(1).account_id(),
            by: bob.account_id(),
            at: 5,
            signature,
        };
        assert_eq!(code(forged.verify()), Code::InvalidSignature);
    }
}
