//! Fixtures the storage tests share.
#![allow(dead_code, clippy::unwrap_used)]

use tim_protocol::{encode, AccountKey, Envelope, Message};
use tim_storage::{OutKind, Outgoing};

/// The outbox entry of `m` for `to`, of kind `kind`.
pub(crate) fn outgoing(to: &AccountKey, m: &Message, kind: OutKind) -> Outgoing {
    Outgoing {
        to: to.account_id(),
        kind,
        frame: encode(&Envelope::Message(m.clone())).unwrap(),
        queued_at: 1,
    }
}
