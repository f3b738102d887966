//! Control messages: a revoke (by the sender) or a burn (by the recipient of a direct message),
//! each carrying the signed header of its target so any peer can check it without the message.

use bincode::{Decode, Encode};

use crate::{codec::raw, policy, tag, AccountId, AccountKey, MessageId, Result, SignedHeader, Verified};

/// What a control message does to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Action {
    /// The sender withdraws the message for everyone (tim odType 2).
    Revoke,
    /// The recipient destroys a read direct message on both sides (tim odType 3).
    Burn,
}

impl Action {
    fn tag(self) -> &'static [u8] {
        match self {
            Action::Revoke => tag::REVOKE,
            Action::Burn => tag::BURN,
        }
    }

    /// `revoke` or `burn`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Revoke => "revoke",
            Action::Burn => "burn",
        }
    }
}

/// A signed revoke or burn.
///
/// Signed payload: `tag(action) || bincode((target, by, at))`, where the tag is
/// `tag::REVOKE` or `tag::BURN`, so a signature for one never verifies as the other (nor as a
/// message).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Control {
    /// Revoke or burn.
    pub action: Action,
    /// The target's signed header; its digest is the target id.
    pub target: SignedHeader,
    /// Who revokes (must be the target's sender) or burns (must be its recipient).
    pub by: AccountId,
    /// When, milliseconds since the Unix epoch, by the signer's clock.
    pub at: u64,
    /// ed25519 signature by `by`.
    pub signature: [u8; 64],
}

impl Control {
    /// Signs a revoke or burn of `target` by `key`'s account. Refuses what verification would
    /// refuse, so a node never sends a control message its peers must reject.
    pub fn sign(key: &AccountKey, action: Action, target: SignedHeader, at: u64) -> Result<Verified<Control>> {
        let id = target.verify()?;
        Self::sign_checked(key, action, target, id, at)
    }

    /// [`Control::sign`] for a target this node verified before (it only stores verified
    /// messages): the target's signature is not checked again, the rules are.
    pub fn sign_known(key: &AccountKey, action: Action, target: SignedHeader, at: u64) -> Result<Verified<Control>> {
        let id = target.id();
        Self::sign_checked(key, action, target, id, at)
    }

    fn sign_checked(
        key: &AccountKey,
        action: Action,
        target: SignedHeader,
        id: MessageId,
        at: u64,
    ) -> Result<Verified<Control>> {
        let by = key.account_id();
        policy::check_permission(action, &target.header, &by)?;
        let signature = key.sign_tagged(action.tag(), &raw(&(&target, &by, at)));
        Ok(Verified::new(
            Control {
                action,
                target,
                by,
                at,
                signature,
            },
            id,
        ))
    }

    /// Verifies, in this order: the target header's signature (4118), the kind rule (burn only of
    /// direct messages, 4104), the permission rule (revoke only by the sender, burn only by the
    /// recipient, 4105), and this control message's own signature (4118). The proof carries the
    /// target id.
    pub fn verify(self) -> Result<Verified<Control>> {
        self.verify_known(None)
    }

    /// [`Control::verify`] by a node that may already hold the target: when `known` (a header
    /// this node verified before storing it) is exactly the carried target, the target's
    /// signature is not checked again, so a revoke of a message we have costs one signature
    /// check instead of two. Any difference, however small, falls back to the full check.
    pub fn verify_known(self, known: Option<&SignedHeader>) -> Result<Verified<Control>> {
        let id = match known {
            Some(known) if *known == self.target => self.target.id(),
            _ => self.target.verify()?,
        };
        policy::check_permission(self.action, &self.target.header, &self.by)?;
        self.by.verify_tagged(
            self.action.as_str(),
            self.action.tag(),
            &raw(&(&self.target, &self.by, self.at)),
            &self.signature,
        )?;
        Ok(Verified::new(self, id))
    }
}
