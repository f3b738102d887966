//! The inbox: for every conversation with an entry in its history, the `sent_at` of its newest
//! entry and how many received messages in it are unread, plus a recency index so the list of
//! conversations, newest first, is a range scan (see `keys.rs` for the layout).
//!
//! Every write that changes a history or a read mark updates the inbox in its own batch, under
//! the store's write lock, through [`InboxChanges`]: a message stored (newer activity, one more
//! unread if received), read, tombstoned or evicted (one unread fewer if it was unread).

use std::collections::HashMap;

use rocksdb::WriteBatch;

use super::{corrupt, lock, messages::IDX_MESSAGE, Store};
use crate::{Cf, Conversation, Entry, Error, Result, State, StoredMessage};

/// Key tag: a conversation's record.
const RECORD: u8 = 0;
/// Key tag: the recency index.
const RECENT: u8 = 1;

/// The largest page of conversations.
pub const MAX_INBOX_PAGE: usize = 200;

/// One conversation of the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    /// The conversation.
    pub conversation: Conversation,
    /// The `sent_at` of its newest entry (ms since the epoch, by the sender's clock).
    pub updated_at: u64,
    /// Received messages not yet read.
    pub unread: u32,
    /// Its newest entry: a message, or the marker of a revoked or burned one (never a body that
    /// was destroyed).
    pub last: Entry,
}

/// A page of the inbox, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxPage {
    /// The conversations, most recently active first.
    pub items: Vec<InboxItem>,
    /// Pass as `before` for the next page; `None` after the last.
    pub next: Option<Vec<u8>>,
}

/// A conversation's inbox record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Record {
    updated_at: u64,
    unread: u32,
}

impl Record {
    fn encode(self) -> [u8; 12] {
        let mut v = [0u8; 12];
        v[..8].copy_from_slice(&self.updated_at.to_be_bytes());
        v[8..].copy_from_slice(&self.unread.to_be_bytes());
        v
    }

    fn decode(key: &[u8], bytes: &[u8]) -> Result<Record> {
        let bad = || corrupt(Cf::Inbox, key, "bad inbox record");
        let updated: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
        let unread: [u8; 4] = bytes.get(8..12).and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
        Ok(Record {
            updated_at: u64::from_be_bytes(updated),
            unread: u32::from_be_bytes(unread),
        })
    }
}

fn record_key(prefix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + prefix.len());
    k.push(RECORD);
    k.extend_from_slice(prefix);
    k
}

fn recent_key(updated_at: u64, prefix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + prefix.len());
    k.push(RECENT);
    k.extend_from_slice(&updated_at.to_be_bytes());
    k.extend_from_slice(prefix);
    k
}

/// Whether a stored message counts as unread: received and never read.
pub(super) fn is_unread(record: &StoredMessage) -> bool {
    record.state == State::Received && record.read_at.is_none()
}

/// The inbox changes of one batch, by conversation prefix: the newest `sent_at` seen and the
/// change of the unread count. Written with [`Store::write_inbox`] into the same batch.
#[derive(Debug, Default)]
pub(super) struct InboxChanges {
    by_prefix: HashMap<Vec<u8>, (Option<u64>, i64)>,
}

impl InboxChanges {
    /// An entry of `conversation` sent at `sent_at` is in its history now; `unread` changes by
    /// `delta`.
    pub(super) fn touch(&mut self, conversation: &Conversation, sent_at: u64, delta: i64) {
        let e = self.by_prefix.entry(conversation.prefix()).or_default();
        e.0 = Some(e.0.map_or(sent_at, |t| t.max(sent_at)));
        e.1 += delta;
    }

    /// The unread count of `conversation` changes by `delta`; its activity time does not.
    pub(super) fn count(&mut self, conversation: &Conversation, delta: i64) {
        self.by_prefix.entry(conversation.prefix()).or_default().1 += delta;
    }
}

impl Store {
    /// Adds `changes` to `batch`. The caller holds the write lock (so the records read here are
    /// the ones the batch changes).
    pub(super) fn write_inbox(&self, batch: &mut WriteBatch, changes: InboxChanges) -> Result<()> {
        let cf = self.cf(Cf::Inbox);
        for (prefix, (sent_at, delta)) in changes.by_prefix {
            let key = record_key(&prefix);
            let old = match self.inner.db.get_pinned_cf(cf, &key)? {
                Some(v) => Some(Record::decode(&key, &v)?),
                None => None,
            };
            if old.is_none() && sent_at.is_none() {
                // Only a count changed, of a conversation the inbox does not list: nothing to do.
                continue;
            }
            let before = old.unwrap_or_default();
            let unread = (i64::from(before.unread) + delta).clamp(0, i64::from(u32::MAX)) as u32;
            let updated_at = sent_at.map_or(before.updated_at, |t| before.updated_at.max(t));
            if old.is_some() && updated_at != before.updated_at {
                batch.delete_cf(cf, recent_key(before.updated_at, &prefix));
            }
            if old.is_none() || updated_at != before.updated_at {
                batch.put_cf(cf, recent_key(updated_at, &prefix), []);
            }
            batch.put_cf(cf, &key, Record { updated_at, unread }.encode());
        }
        Ok(())
    }

    /// Up to `limit` (1 to [`MAX_INBOX_PAGE`]) conversations, most recently active first, after
    /// the cursor `before` of an earlier page. A conversation whose history became empty (every
    /// entry of it evicted) is left out.
    pub fn inbox(&self, before: Option<&[u8]>, limit: usize) -> Result<InboxPage> {
        if limit == 0 || limit > MAX_INBOX_PAGE {
            return Err(Error::BadParameters("inbox limit must be between 1 and 200"));
        }
        if before.is_some_and(|b| b.first() != Some(&RECENT) || b.len() < 10) {
            return Err(Error::BadParameters("not an inbox cursor"));
        }
        let cf = self.cf(Cf::Inbox);
        let mut read_opts = rocksdb::ReadOptions::default();
        read_opts.set_iterate_lower_bound(vec![RECENT]);
        let mut it = self.inner.db.raw_iterator_cf_opt(cf, read_opts);
        match before {
            Some(cursor) => {
                it.seek_for_prev(cursor);
                if it.key() == Some(cursor) {
                    it.prev();
                }
            }
            None => it.seek_to_last(),
        }
        let mut found = Vec::with_capacity(limit);
        let mut next = None;
        while let Some(key) = it.key() {
            if key.first() != Some(&RECENT) {
                break;
            }
            if found.len() == limit {
                next = found.last().map(|(k, _): &(Vec<u8>, Conversation)| k.clone());
                break;
            }
            let conversation = key
                .get(9..)
                .and_then(Conversation::from_prefix)
                .ok_or_else(|| corrupt(Cf::Inbox, key, "bad recency key"))?;
            found.push((key.to_vec(), conversation));
            it.prev();
        }
        it.status()?;
        let mut items = Vec::with_capacity(found.len());
        for (_, conversation) in found {
            let key = record_key(&conversation.prefix());
            let Some(value) = self.inner.db.get_pinned_cf(cf, &key)? else {
                continue;
            };
            let record = Record::decode(&key, &value)?;
            let Some(last) = self.history(&conversation, None, 1)?.entries.pop() else {
                continue;
            };
            items.push(InboxItem {
                conversation,
                updated_at: record.updated_at,
                unread: record.unread,
                last,
            });
        }
        Ok(InboxPage { items, next })
    }

    /// Marks every unread received message of `conversation` read at `read_at`, except those
    /// that burn after reading (they are opened one by one, which starts their timers). Returns
    /// how many were marked.
    pub fn mark_conversation_read(&self, conversation: &Conversation, read_at: u64) -> Result<usize> {
        let (cf_msg, cf_idx) = (self.cf(Cf::Messages), self.cf(Cf::History));
        let _guard = lock(&self.inner.write_lock);
        let key = record_key(&conversation.prefix());
        let unread = match self.inner.db.get_pinned_cf(self.cf(Cf::Inbox), &key)? {
            Some(v) => Record::decode(&key, &v)?.unread,
            None => return Ok(0),
        };
        let prefix = conversation.prefix();
        let mut read_opts = rocksdb::ReadOptions::default();
        read_opts.set_iterate_lower_bound(prefix.clone());
        let mut it = self.inner.db.raw_iterator_cf_opt(cf_idx, read_opts);
        let mut start = prefix.clone();
        start.extend_from_slice(&[0xff; 40]);
        it.seek_for_prev(&start);
        let mut batch = WriteBatch::default();
        let (mut marked, mut seen_unread) = (0usize, 0u32);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) || seen_unread >= unread {
                break;
            }
            if v.first() == Some(&IDX_MESSAGE) {
                let id = crate::keys::id_of_history_key(k).ok_or_else(|| corrupt(Cf::History, k, "short key"))?;
                if let Some(mut record) = self.message(&id)? {
                    if is_unread(&record) {
                        seen_unread += 1;
                        if record.message.head().burn_after_read.is_none() {
                            record.read_at = Some(read_at);
                            batch.put_cf(cf_msg, id.as_bytes(), tim_protocol::encode(&record)?);
                            marked += 1;
                        }
                    }
                }
            }
            it.prev();
        }
        it.status()?;
        let mut changes = InboxChanges::default();
        changes.count(conversation, -(marked as i64));
        self.write_inbox(&mut batch, changes)?;
        self.inner.db.write_opt(batch, &self.inner.write_opts)?;
        Ok(marked)
    }

    /// The unread count of `conversation` (0 when the inbox does not list it).
    pub fn unread(&self, conversation: &Conversation) -> Result<u32> {
        let key = record_key(&conversation.prefix());
        match self.inner.db.get_pinned_cf(self.cf(Cf::Inbox), &key)? {
            Some(v) => Ok(Record::decode(&key, &v)?.unread),
            None => Ok(0),
        }
    }
}
