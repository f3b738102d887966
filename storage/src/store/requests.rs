//! Message requests: under `inbound = "contacts"`, a direct message from an account the local
//! account has not admitted is held apart from every history, in the meta family as
//! `request/<from><sent_at BE><mid>` beside its record in `messages` (so a revoke or burn still
//! finds and destroys it). Admitting the account moves its held messages into the history;
//! rejecting destroys them like a burned body (deleted, then shredded from every file).

use rocksdb::WriteBatch;
use tim_protocol::{encode, AccountId, Message, MessageId, Verified};

use super::{
    corrupt, decode_value,
    inbox::{is_unread, InboxChanges},
    lock,
    messages::IDX_MESSAGE,
    meta::{scan, shred_key},
    now_ms, PutOutcome, Store,
};
use crate::{keys::history_key, Cf, Conversation, Error, Result, State, StoredMessage};

/// Meta key prefix: a held message request.
const REQUEST: &[u8] = b"request/";

/// The most messages held from one account that was not admitted; more are refused (`5104`) and
/// stay in the sender's outbox.
pub const MAX_REQUESTS_EACH: usize = 3;
/// The most held messages in all; more are refused (`5104`).
pub const MAX_REQUESTS_TOTAL: usize = 1_000;

fn requests_of(account: &AccountId) -> Vec<u8> {
    let mut key = REQUEST.to_vec();
    key.extend_from_slice(account.as_bytes());
    key
}

/// The meta key of a held request message.
pub(super) fn request_key(record: &StoredMessage) -> Vec<u8> {
    let mut key = requests_of(&record.message.head().from);
    key.extend_from_slice(&record.message.head().sent_at.to_be_bytes());
    key.extend_from_slice(record.id().as_bytes());
    key
}

fn id_of_request_key(key: &[u8]) -> Result<MessageId> {
    key.get(key.len().saturating_sub(32)..)
        .filter(|_| key.len() == REQUEST.len() + 32 + 8 + 32)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(MessageId::from_bytes)
        .ok_or_else(|| corrupt(Cf::Meta, key, "bad request key"))
}

impl Store {
    /// Holds a received direct message as a request: stored (so a tombstone finds it), but in no
    /// history and no inbox. Refused with [`Error::Tombstoned`] for a tombstoned id, and with
    /// [`Error::TooMany`] (`5104`) past [`MAX_REQUESTS_EACH`] from its sender or
    /// [`MAX_REQUESTS_TOTAL`] in all.
    pub fn put_request(&self, message: &Verified<Message>) -> Result<PutOutcome> {
        let db = &self.inner.db;
        let id = message.id();
        let _guard = lock(&self.inner.write_lock);
        if db.get_pinned_cf(self.cf(Cf::Tombstones), id.as_bytes())?.is_some() {
            return Err(Error::Tombstoned(id));
        }
        if db.get_pinned_cf(self.cf(Cf::Messages), id.as_bytes())?.is_some() {
            return Ok(PutOutcome::Duplicate);
        }
        let from = message.head().from;
        if scan(db, self.cf(Cf::Meta), &requests_of(&from))?.len() >= MAX_REQUESTS_EACH {
            return Err(Error::TooMany("message requests from this account"));
        }
        if scan(db, self.cf(Cf::Meta), REQUEST)?.len() >= MAX_REQUESTS_TOTAL {
            return Err(Error::TooMany("message requests"));
        }
        let record = StoredMessage {
            state: State::Received,
            stored_at: now_ms(),
            read_at: None,
            message: message.get().clone(),
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(Cf::Messages), id.as_bytes(), encode(&record)?);
        batch.put_cf(self.cf(Cf::Meta), request_key(&record), []);
        db.write_opt(batch, &self.inner.write_opts)?;
        Ok(PutOutcome::Stored)
    }

    /// Whether `record` is held as a request.
    pub(super) fn is_request(&self, record: &StoredMessage) -> Result<bool> {
        Ok(self
            .inner
            .db
            .get_pinned_cf(self.cf(Cf::Meta), request_key(record))?
            .is_some())
    }

    /// Every held request message, by sender (in id order), oldest first.
    pub fn requests(&self) -> Result<Vec<(AccountId, Vec<StoredMessage>)>> {
        let mut out: Vec<(AccountId, Vec<StoredMessage>)> = Vec::new();
        for (key, _) in scan(&self.inner.db, self.cf(Cf::Meta), REQUEST)? {
            let Some(record) = self.message(&id_of_request_key(&key)?)? else {
                continue;
            };
            let from = record.message.head().from;
            match out.last_mut() {
                Some((account, list)) if *account == from => list.push(record),
                _ => out.push((from, vec![record])),
            }
        }
        Ok(out)
    }

    /// The held request messages of `account`, with their keys.
    fn held_from(&self, account: &AccountId) -> Result<Vec<(Vec<u8>, StoredMessage)>> {
        let mut out = Vec::new();
        for (key, _) in scan(&self.inner.db, self.cf(Cf::Meta), &requests_of(account))? {
            let id = id_of_request_key(&key)?;
            if let Some(v) = self.inner.db.get_pinned_cf(self.cf(Cf::Messages), id.as_bytes())? {
                out.push((key, decode_value(Cf::Messages, id.as_bytes(), &v)?));
            }
        }
        Ok(out)
    }

    /// Moves every held request message of `account` into its history (and the inbox, unread
    /// while not read), in one batch. Returns how many moved.
    pub fn admit_requests(&self, account: &AccountId) -> Result<usize> {
        let _guard = lock(&self.inner.write_lock);
        let held = self.held_from(account)?;
        let mut batch = WriteBatch::default();
        let mut inbox = InboxChanges::default();
        for (key, record) in &held {
            let head = record.message.head();
            batch.put_cf(self.cf(Cf::History), history_key(head, &record.id()), [IDX_MESSAGE]);
            inbox.touch(&Conversation::of(head), head.sent_at, i64::from(is_unread(record)));
            batch.delete_cf(self.cf(Cf::Meta), key);
        }
        self.write_inbox(&mut batch, inbox)?;
        if !batch.is_empty() {
            self.inner.db.write_opt(batch, &self.inner.write_opts)?;
        }
        Ok(held.len())
    }

    /// Destroys every held request message of `account`: deleted in one batch, then shredded from
    /// every file like a burned body. Returns how many.
    pub fn reject_requests(&self, account: &AccountId) -> Result<usize> {
        let ids = {
            let _guard = lock(&self.inner.write_lock);
            let held = self.held_from(account)?;
            let mut batch = WriteBatch::default();
            for (key, record) in &held {
                let id = record.id();
                batch.delete_cf(self.cf(Cf::Messages), id.as_bytes());
                batch.delete_cf(self.cf(Cf::Meta), key);
                batch.put_cf(self.cf(Cf::Meta), shred_key(&id), []);
            }
            if !batch.is_empty() {
                self.inner.db.write_opt(batch, &self.inner.write_opts)?;
            }
            held.iter().map(|(_, r)| r.id()).collect::<Vec<_>>()
        };
        for id in &ids {
            self.inner.queue_shred(*id);
        }
        Ok(ids.len())
    }
}
