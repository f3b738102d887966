//! Contacts: where the local account stands with each other account, in the meta family as
//! `contact/<account>` (value: a [`ContactRecord`]). Every change runs the protocol's state
//! machine (`tim_protocol::contact`) under the store's write lock, so two operations never race;
//! the local account's own operation is queued in the outbox in the same batch as its new state.

use std::sync::MutexGuard;

use bincode::{Decode, Encode};
use rocksdb::WriteBatch;
use tim_protocol::{
    contact::{on_local, on_remote},
    encode, AccountId, ContactAction, ContactOp, ContactState, Verified, Wire,
};

use super::{corrupt, decode_value, lock, meta::visit, now_ms, outbox::OutboxCounts, Store};
use crate::{keys::outbox_key, Cf, Error, OutKind, Outgoing, Result};

/// Meta key prefix: the contact record of an account.
const CONTACT: &[u8] = b"contact/";

/// The most contact requests from other accounts waiting for an answer; beyond it a new request
/// is refused (`5104`). Identities are free, so this bounds what strangers can make a node keep.
pub const MAX_INCOMING_REQUESTS: usize = 1_000;

/// Where the local account stands with one other account.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ContactRecord {
    /// The state.
    pub state: ContactState,
    /// The note of the other account's request, while it waits (state `incoming`).
    pub note: Option<String>,
    /// When the state last changed, ms since the epoch by the local clock.
    pub since: u64,
    /// The signed time of the last operation applied from the other account (older ones are
    /// refused as replays).
    pub remote_at: u64,
    /// The signed time of the last operation the local account made for it (each new one is
    /// later, so the other side applies them in order).
    pub local_at: u64,
    /// The other account's display name, signed by it (kept while there is a state but `none`).
    pub name: Option<String>,
    /// The signed time of the profile that gave `name` (an older one changes nothing).
    pub name_at: u64,
}

impl ContactRecord {
    /// The record of an account the local account never dealt with.
    fn none() -> ContactRecord {
        ContactRecord {
            state: ContactState::None,
            note: None,
            since: 0,
            remote_at: 0,
            local_at: 0,
            name: None,
            name_at: 0,
        }
    }
}

impl Wire for ContactRecord {
    const NAME: &'static str = "contact record";
}

/// What applying another account's contact operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactOutcome {
    /// Applied: the state before and after, and whether the local account should answer with an
    /// accept (the other account asked while already a contact: it lost its state).
    Applied {
        /// The state before.
        before: ContactState,
        /// The state now.
        after: ContactState,
        /// Answer with an accept.
        answer: bool,
    },
    /// Not newer than the last operation applied from this account: nothing changed.
    Duplicate,
}

fn contact_key(account: &AccountId) -> Vec<u8> {
    let mut key = CONTACT.to_vec();
    key.extend_from_slice(account.as_bytes());
    key
}

/// Meta key: the local account's own display name.
const PROFILE: &[u8] = b"profile";

impl Store {
    /// The local account's display name, if it set one.
    pub fn profile(&self) -> Result<Option<String>> {
        match self.inner.db.get_pinned_cf(self.cf(Cf::Meta), PROFILE)? {
            Some(v) => String::from_utf8(v.to_vec())
                .map(Some)
                .map_err(|_| corrupt(Cf::Meta, PROFILE, "a name that is not UTF-8")),
            None => Ok(None),
        }
    }

    /// Sets (or, with an empty name, clears) the local account's display name.
    pub fn set_profile(&self, name: &str) -> Result<()> {
        let cf = self.cf(Cf::Meta);
        if name.is_empty() {
            self.inner.db.delete_cf_opt(cf, PROFILE, &self.inner.write_opts)?;
        } else {
            self.inner
                .db
                .put_cf_opt(cf, PROFILE, name.as_bytes(), &self.inner.write_opts)?;
        }
        Ok(())
    }

    /// The contact record of `account`, if there is one.
    pub fn contact(&self, account: &AccountId) -> Result<Option<ContactRecord>> {
        let key = contact_key(account);
        match self.inner.db.get_pinned_cf(self.cf(Cf::Meta), &key)? {
            Some(v) => Ok(Some(decode_value(Cf::Meta, &key, &v)?)),
            None => Ok(None),
        }
    }

    /// Every account with a state other than `none`, in id order.
    pub fn contacts(&self) -> Result<Vec<(AccountId, ContactRecord)>> {
        let mut out = Vec::new();
        let mut bad = None;
        visit(&self.inner.db, self.cf(Cf::Meta), CONTACT, |key, value| {
            let account = <[u8; 32]>::try_from(&key[CONTACT.len()..])
                .ok()
                .and_then(|b| AccountId::from_bytes(b).ok());
            match (account, decode_value::<ContactRecord>(Cf::Meta, key, value)) {
                (Some(account), Ok(record)) if record.state != ContactState::None => out.push((account, record)),
                (Some(_), Ok(_)) => {}
                _ => bad = Some(key.to_vec()),
            }
        })?;
        match bad {
            Some(key) => Err(corrupt(Cf::Meta, &key, "bad contact record")),
            None => Ok(out),
        }
    }

    /// The local account does `action` for `account`: runs the state machine, has `sign` sign the
    /// operation to send (its action and signed time, always later than the last one), and
    /// writes the new state and the operation's outbox entry in one batch. Returns the new state
    /// and the signed operation. Refused as the state machine refuses (4101, 4109) or when the
    /// outbox for `account` is full (5104); nothing is then written.
    pub fn contact_local(
        &self,
        account: &AccountId,
        action: &ContactAction,
        sign: impl FnOnce(ContactAction, u64) -> tim_protocol::Result<Verified<ContactOp>>,
    ) -> Result<(ContactState, Verified<ContactOp>)> {
        let counts = lock(&self.inner.write_lock);
        let record = self.contact(account)?.unwrap_or_else(ContactRecord::none);
        let (after, send) = on_local(record.state, action)?;
        self.write_local(counts, account, record, after, send, sign)
    }

    /// Queues an accept for `account` without changing its state: the answer to a request from
    /// an account that is a contact already ([`ContactOutcome::Applied::answer`]).
    pub fn contact_answer(
        &self,
        account: &AccountId,
        sign: impl FnOnce(ContactAction, u64) -> tim_protocol::Result<Verified<ContactOp>>,
    ) -> Result<Verified<ContactOp>> {
        let counts = lock(&self.inner.write_lock);
        let record = self.contact(account)?.unwrap_or_else(ContactRecord::none);
        let state = record.state;
        Ok(self
            .write_local(counts, account, record, state, ContactAction::Accept, sign)?
            .1)
    }

    /// Signs `send`, then writes `account`'s record in state `after` and the operation's outbox
    /// entry in one batch, under the write lock the caller took.
    fn write_local(
        &self,
        mut counts: MutexGuard<'_, OutboxCounts>,
        account: &AccountId,
        mut record: ContactRecord,
        after: ContactState,
        send: ContactAction,
        sign: impl FnOnce(ContactAction, u64) -> tim_protocol::Result<Verified<ContactOp>>,
    ) -> Result<(ContactState, Verified<ContactOp>)> {
        if counts.is_full(account, self.inner.outbox_per_recipient, self.inner.outbox_total) {
            return Err(Error::OutboxFull(*account));
        }
        let now = now_ms();
        let op = sign(send, now.max(record.local_at.saturating_add(1)))?;
        let frame = encode(&tim_protocol::Envelope::Contact(op.get().clone()))?;
        let outgoing = Outgoing {
            to: *account,
            kind: OutKind::Contact,
            frame,
            queued_at: now,
        };
        if after != record.state {
            record.since = now;
        }
        record.state = after;
        if after != ContactState::Incoming {
            record.note = None;
        }
        record.local_at = op.at;
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(Cf::Meta), contact_key(account), encode(&record)?);
        batch.put_cf(
            self.cf(Cf::Outbox),
            outbox_key(&op.id(), OutKind::Contact),
            encode(&outgoing)?,
        );
        if after == ContactState::Contact {
            self.write_making_known(batch, *account)?;
        } else {
            self.inner.db.write_opt(batch, &self.inner.write_opts)?;
        }
        counts.add(*account, OutKind::Contact);
        Ok((after, op))
    }

    /// Applies another account's verified operation (addressed to the local account; the caller
    /// checked that): refused as replayed when not newer than the last one applied from it, as
    /// the state machine refuses (4104), or when [`MAX_INCOMING_REQUESTS`] wait already (5104).
    pub fn contact_remote(&self, op: &Verified<ContactOp>) -> Result<ContactOutcome> {
        let _guard = lock(&self.inner.write_lock);
        let from = op.from;
        let mut record = self.contact(&from)?.unwrap_or_else(ContactRecord::none);
        let before = record.state;
        if let ContactAction::Profile { name } = &op.action {
            // Ordered apart from the state's operations, so a profile never makes an accept
            // that was signed before it look old.
            on_remote(before, &op.action)?;
            if op.at <= record.name_at {
                return Ok(ContactOutcome::Duplicate);
            }
            record.name = (!name.is_empty()).then(|| name.clone());
            record.name_at = op.at;
            self.inner.db.put_cf_opt(
                self.cf(Cf::Meta),
                contact_key(&from),
                encode(&record)?,
                &self.inner.write_opts,
            )?;
            return Ok(ContactOutcome::Applied {
                before,
                after: before,
                answer: false,
            });
        }
        if op.at <= record.remote_at {
            return Ok(ContactOutcome::Duplicate);
        }
        let (after, answer) = on_remote(before, &op.action)?;
        if after == ContactState::Incoming && before != ContactState::Incoming {
            let waiting = self
                .contacts()?
                .iter()
                .filter(|(_, r)| r.state == ContactState::Incoming)
                .count();
            if waiting >= MAX_INCOMING_REQUESTS {
                return Err(Error::TooMany("contact requests waiting"));
            }
        }
        if after != before {
            record.since = now_ms();
        }
        record.state = after;
        record.note = match (&op.action, after) {
            (ContactAction::Request { note }, ContactState::Incoming) => Some(note.clone()),
            _ => None,
        };
        record.remote_at = op.at;
        if after == ContactState::None {
            record.name = None;
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(Cf::Meta), contact_key(&from), encode(&record)?);
        if after == ContactState::Contact {
            self.write_making_known(batch, from)?;
        } else {
            self.inner.db.write_opt(batch, &self.inner.write_opts)?;
        }
        Ok(ContactOutcome::Applied { before, after, answer })
    }
}
