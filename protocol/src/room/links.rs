//! Causal links between a founded room's operations (docs/protocol.md, "Causal links"): which
//! operations of an account still count once it was removed, demoted or left.
//!
//! Each operation names its signer's previous one (`prev`), so an account's operations form a
//! chain. A **pin** is an operation after which an account's earlier operations count only if
//! they are on a known chain: the founder's `Kick(x)` or `Demote(x)`, whose `seen` names the
//! newest operation of `x` the founder held, and `x`'s own `Leave`, which starts from itself. An
//! operation of `x` ordered before a pin is void unless the pin's chain reaches it. A pin whose
//! start is not held yet voids nothing until it is (sync brings it): a member that has not seen
//! what the founder saw must not void what the founder kept.

use std::collections::{HashMap, HashSet};

use super::{membership::order, RoomAction, RoomOp};
use crate::{AccountId, MessageId, Verified};

/// The pins of a set of operations, by the account they pin. A function of the set alone.
#[derive(Debug, Clone, Default)]
pub(super) struct Pins {
    by_account: HashMap<AccountId, Vec<Pin>>,
}

/// One pin: its place in the order, and the operations of its account it stands by (`None`
/// while its start is not held: it voids nothing).
#[derive(Debug, Clone)]
struct Pin {
    at: (u64, MessageId),
    stood_by: Option<HashSet<MessageId>>,
}

impl Pins {
    /// The pins among `ops`, each with its chain walked through the operations held in `ops`.
    pub(super) fn of(ops: &[Verified<RoomOp>], founder: &AccountId) -> Pins {
        let held: HashMap<MessageId, &RoomOp> = ops.iter().map(|op| (op.id(), op.get())).collect();
        let mut pins = Pins::default();
        for op in ops.iter() {
            let Some((account, start)) = pinned(op, founder) else {
                continue;
            };
            let stood_by = match start {
                Some(id) if !held.contains_key(&id) => None,
                start => {
                    let mut chain = HashSet::new();
                    let mut next = start;
                    // Each step takes a new held operation of `account`, so the walk ends.
                    while let Some(id) = next {
                        match held.get(&id) {
                            Some(earlier) if earlier.by == account && chain.insert(id) => next = earlier.prev,
                            _ => break,
                        }
                    }
                    Some(chain)
                }
            };
            pins.by_account.entry(account).or_default().push(Pin {
                at: order(op),
                stood_by,
            });
        }
        pins
    }

    /// Whether `op` is void: ordered before a pin of its signer that does not stand by it.
    pub(super) fn voids(&self, op: &Verified<RoomOp>) -> bool {
        self.by_account.get(&op.by).is_some_and(|pins| {
            pins.iter()
                .any(|pin| order(op) < pin.at && pin.stood_by.as_ref().is_some_and(|chain| !chain.contains(&op.id())))
        })
    }

    /// Whether `account` has a pin: an operation of its may change what a pin stands by.
    pub(super) fn covers(&self, account: &AccountId) -> bool {
        self.by_account.contains_key(account)
    }
}

/// The account `op` pins and where its chain starts, if `op` is a pin.
fn pinned(op: &Verified<RoomOp>, founder: &AccountId) -> Option<(AccountId, Option<MessageId>)> {
    match &op.action {
        RoomAction::Kick(account) | RoomAction::Demote(account) if op.by == *founder => Some((*account, op.seen)),
        RoomAction::Leave => Some((op.by, Some(op.id()))),
        _ => None,
    }
}

/// Whether `op` is a pin (see the module docs).
pub(super) fn is_pin(op: &Verified<RoomOp>, founder: &AccountId) -> bool {
    pinned(op, founder).is_some()
}
