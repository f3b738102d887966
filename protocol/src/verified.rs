//! `Verified<T>`: a value that passed this crate's verification, with the message id it is about.

use std::ops::Deref;

use crate::MessageId;

/// Proof that a [`crate::Message`] or [`crate::Control`] passed verification. Only this crate
/// creates one, so code that takes a `Verified<_>` (the store, the node) cannot be handed
/// unchecked input by mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T> {
    value: T,
    id: MessageId,
}

impl<T> Verified<T> {
    pub(crate) fn new(value: T, id: MessageId) -> Self {
        Verified { value, id }
    }

    /// For a message, its id; for a control message, the id of its target.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The verified value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// Gives up the proof and returns the value.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}
