//! Causal links between a founded room's operations (docs/protocol.md, "Causal links"): which
//! operations of an account still count once the founder removed or demoted it.
//!
//! Each operation names its signer's previous one (`prev`), so an account's operations form a
//! chain. The founder's `Kick(x)` or `Demote(x)` is a **pin**: its `seen` names the heads of
//! `x`'s chain as the founder held it, and an operation of `x` ordered before the pin is void
//! unless the chain from one of them reaches it. A pin whose chain is not whole here (an operation
//! on it not held yet) voids nothing until it is: a member that has not seen what the founder
//! saw must not void what the founder kept.

use std::collections::{HashMap, HashSet};

use super::{membership::order, RoomAction, RoomOp};
use crate::{AccountId, MessageId, Verified};

/// The pins of a set of operations, by the account they pin. A function of the set alone.
#[derive(Debug, Clone, Default)]
pub(super) struct Pins {
    by_account: HashMap<AccountId, Vec<Pin>>,
}

/// One pin: its place in the order, and the operations of its account it stands by (`None`
/// while its chain is not whole: it voids nothing).
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
        for op in ops.iter().filter(|op| is_pin(op, founder)) {
            let (RoomAction::Kick(account) | RoomAction::Demote(account)) = &op.action else {
                continue;
            };
            // Every head's chain, whole, or the pin voids nothing yet.
            let stood_by = op.seen.iter().try_fold(HashSet::new(), |mut all, head| {
                all.extend(chain(&held, account, Some(*head))?);
                Some(all)
            });
            pins.by_account.entry(*account).or_default().push(Pin {
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

/// `account`'s operations from `start` back through `prev` to its first, or `None` if one on the
/// way is not held (or not `account`'s).
fn chain(
    held: &HashMap<MessageId, &RoomOp>,
    account: &AccountId,
    start: Option<MessageId>,
) -> Option<HashSet<MessageId>> {
    let mut chain = HashSet::new();
    let mut next = start;
    while let Some(id) = next {
        let op = held.get(&id).filter(|op| op.by == *account)?;
        if !chain.insert(id) {
            // Ids are digests of what names them, so a cycle cannot be signed; stop all the same.
            break;
        }
        next = op.prev;
    }
    Some(chain)
}

/// Of one account's operations (id → `prev`), those whose chain is whole: every `prev` back to
/// the first is among them.
pub(super) fn whole_chains(own: &HashMap<MessageId, Option<MessageId>>) -> HashSet<MessageId> {
    let mut whole: HashSet<MessageId> = HashSet::new();
    let mut broken: HashSet<MessageId> = HashSet::new();
    for start in own.keys() {
        let mut path = HashSet::new();
        let mut next = Some(*start);
        let ok = loop {
            let Some(id) = next else { break true };
            if whole.contains(&id) {
                break true;
            }
            if broken.contains(&id) || !path.insert(id) {
                break false;
            }
            let Some(prev) = own.get(&id) else { break false };
            next = *prev;
        };
        if ok {
            whole.extend(path);
        } else {
            broken.extend(path);
        }
    }
    whole
}

/// Whether `op` is a pin: the founder's removal or demotion of an account.
pub(super) fn is_pin(op: &RoomOp, founder: &AccountId) -> bool {
    op.by == *founder && matches!(op.action, RoomAction::Kick(_) | RoomAction::Demote(_))
}
