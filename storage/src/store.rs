//! The RocksDB store: atomic message and tombstone writes, history pages, and the shredder that
//! physically removes destroyed bodies from disk.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Condvar, Mutex, MutexGuard, Weak,
    },
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rocksdb::{
    BlockBasedOptions, BottommostLevelCompaction, ColumnFamily, ColumnFamilyDescriptor, CompactOptions,
    DBCompressionType, FlushOptions, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};
use tim_protocol::{
    decode, encode, AccountId, Control, Envelope, Message, MessageId, Recipient, RoomId, Verified, Wire,
};
use tracing::{debug, warn};

use crate::{
    keys::{history_key, id_of_history_key, outbox_key, room_log_key},
    Cf, Conversation, Entry, Error, OutKind, Outgoing, Result, State, StoredMessage, Tombstone,
};

/// The largest history page.
pub const MAX_PAGE: usize = 500;

/// Index value: the entry is a message.
const IDX_MESSAGE: u8 = 0;
/// Index value: the entry is a tombstone marker.
const IDX_TOMBSTONE: u8 = 1;

/// Meta key: the last room-log sequence number.
const META_SEQ: &[u8] = b"seq";
/// Room-log value kind: a message.
const LOG_MESSAGE: u8 = 0;
/// Room-log value kind: a tombstone.
const LOG_TOMBSTONE: u8 = 1;

/// Meta key prefix: a joined room.
const META_ROOM: &[u8] = b"room/";
/// Meta key prefix: a burn-after-read deadline (`deadline u64 BE || mid`).
const META_BURN: &[u8] = b"burn/";

/// At this many pending shreds or more, a shred pass compacts a whole family once instead of key
/// by key, whatever its size (see `shred_whole`).
const SHRED_WHOLE_CF_AT: usize = 64;
/// Target SST file size of the families other than messages (RocksDB's default).
const OTHER_FILE_SIZE: u64 = 64 << 20;

/// Store settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// fsync the write-ahead log on every write. Default `false`: an acknowledged write survives a
    /// process crash (the WAL is written before the call returns) but not a power loss.
    pub sync_writes: bool,
    /// Target SST file size of the message family. Default 4 MiB: small, so destroying a body
    /// rewrites little.
    pub message_file_size: u64,
    /// RocksDB block cache for reads, in bytes. Default 32 MiB.
    pub block_cache_bytes: usize,
    /// Most open files RocksDB keeps. Default 256.
    pub max_open_files: i32,
    /// Most undelivered outbox entries for one recipient. Default 10,000.
    pub outbox_per_recipient: usize,
    /// Most undelivered outbox entries in total. Default 100,000.
    pub outbox_total: usize,
    /// How long the shredder lets destroyed bodies gather before one pass removes them all from
    /// disk. Default 1 s: a burst of revokes costs one flush and compaction, not one each. The
    /// bodies are unreadable from the moment of the tombstone; this bounds only how long their
    /// bytes may linger in files.
    pub shred_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sync_writes: false,
            message_file_size: 4 << 20,
            block_cache_bytes: 32 << 20,
            max_open_files: 256,
            outbox_per_recipient: 10_000,
            outbox_total: 100_000,
            shred_delay: Duration::from_secs(1),
        }
    }
}

/// What `put_message` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Newly stored.
    Stored,
    /// Already stored; nothing changed.
    Duplicate,
}

/// What `apply_tombstone` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TombstoneOutcome {
    /// Newly applied. `had_body` tells whether a stored message was destroyed (otherwise the
    /// tombstone is "pending": the message, if it ever arrives, is refused).
    Applied {
        /// Whether a stored message body was destroyed.
        had_body: bool,
    },
    /// The id was already tombstoned; the first tombstone stands.
    Duplicate,
}

/// A page of history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The entries, newest first.
    pub entries: Vec<Entry>,
    /// Pass as `before` for the next (older) page; `None` at the start of the conversation.
    pub next: Option<MessageId>,
}

/// A page of a room's arrival log, as served to a member catching up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogPage {
    /// Encoded envelopes (messages, then later their tombstones if any), oldest first.
    pub frames: Vec<Vec<u8>>,
    /// The sequence number to ask after next time.
    pub next: u64,
    /// Whether more entries follow.
    pub more: bool,
}

#[derive(Default)]
struct OutboxCounts {
    per: HashMap<AccountId, usize>,
    total: usize,
}

impl OutboxCounts {
    fn add(&mut self, to: AccountId) {
        *self.per.entry(to).or_default() += 1;
        self.total += 1;
    }
    fn remove(&mut self, to: &AccountId) {
        if let Some(n) = self.per.get_mut(to) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per.remove(to);
            }
            self.total = self.total.saturating_sub(1);
        }
    }
}

struct Shred {
    pending: BTreeSet<MessageId>,
    /// When the oldest pending id was added.
    since: Option<std::time::Instant>,
    stop: bool,
}

struct Inner {
    db: DB,
    write_opts: WriteOptions,
    /// Serialises check-then-write sections, so a body is never written after its tombstone.
    /// Guards the outbox counts and the room-log sequence too.
    write_lock: Mutex<OutboxCounts>,
    /// The last room-log sequence number handed out.
    seq: AtomicU64,
    outbox_per_recipient: usize,
    outbox_total: usize,
    /// Ids whose bodies were deleted but may still sit in a WAL or SST file.
    shred: Mutex<Shred>,
    shred_cv: Condvar,
    shred_delay: Duration,
    /// Held for a whole shred pass, so `shred_now` returns only after any pass in flight.
    shred_pass: Mutex<()>,
    /// Target SST file size of the message family (`Config::message_file_size`).
    message_file_size: u64,
}

/// A node's message store. Cheap to share behind an `Arc`; all methods take `&self` and block
/// (call them from `spawn_blocking` or a storage thread in async code).
pub struct Store {
    inner: Arc<Inner>,
    shredder: Option<JoinHandle<()>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves no half-done state behind (RocksDB batches
    // are atomic), so a poisoned lock is safe to keep using.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Opens (or creates) the store in `path`.
    pub fn open(path: impl AsRef<Path>, config: Config) -> Result<Store> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_open_files(config.max_open_files);
        opts.set_keep_log_file_num(4);
        opts.set_max_background_jobs(2);
        let cache = rocksdb::Cache::new_lru_cache(config.block_cache_bytes);
        let cfs = Cf::ALL.iter().map(|cf| {
            let mut o = Options::default();
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            match cf {
                Cf::Messages => {
                    o.set_compression_type(DBCompressionType::Lz4);
                    o.set_target_file_size_base(config.message_file_size);
                }
                Cf::History | Cf::Tombstones => {
                    table.set_bloom_filter(10.0, false);
                }
                _ => {}
            }
            o.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(cf.name(), o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(config.sync_writes);
        let seq = match db.get_cf(cf_handle(&db, Cf::Meta), META_SEQ)? {
            Some(v) => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| corrupt(Cf::Meta, META_SEQ, "bad sequence number"))?,
            ),
            None => 0,
        };
        let mut counts = OutboxCounts::default();
        for item in db.iterator_cf(cf_handle(&db, Cf::Outbox), rocksdb::IteratorMode::Start) {
            let (key, value) = item?;
            let out: Outgoing = decode_value(Cf::Outbox, &key, &value)?;
            counts.add(out.to);
        }
        let inner = Arc::new(Inner {
            db,
            write_opts,
            write_lock: Mutex::new(counts),
            seq: AtomicU64::new(seq),
            outbox_per_recipient: config.outbox_per_recipient,
            outbox_total: config.outbox_total,
            shred: Mutex::new(Shred {
                pending: BTreeSet::new(),
                since: None,
                stop: false,
            }),
            shred_delay: config.shred_delay,
            shred_cv: Condvar::new(),
            shred_pass: Mutex::new(()),
            message_file_size: config.message_file_size,
        });
        let weak = Arc::downgrade(&inner);
        let shredder = std::thread::Builder::new()
            .name("tim-shredder".into())
            .spawn(move || shredder_loop(weak))
            .map_err(|_| Error::BadParameters("could not start the shredder thread"))?;
        Ok(Store {
            inner,
            shredder: Some(shredder),
        })
    }

    /// Stores a verified message with its state. Idempotent: storing the same message again is a
    /// [`PutOutcome::Duplicate`] and changes nothing. Refused with [`Error::Tombstoned`] (and
    /// nothing written) if its id was revoked or burned.
    pub fn put_message(&self, message: &Verified<Message>, state: State) -> Result<PutOutcome> {
        let mut results = self.write_messages(&[(message, state, None)])?;
        results.pop().unwrap_or(Err(Error::BadParameters("empty batch")))
    }

    /// Stores a message this node sends (state `sent`) and queues `outgoing` in the outbox, in
    /// one atomic batch. Refused with [`Error::OutboxFull`] when the outbox limits are reached.
    pub fn put_outgoing(&self, message: &Verified<Message>, outgoing: Outgoing) -> Result<PutOutcome> {
        let mut results = self.write_messages(&[(message, State::Sent, Some(outgoing))])?;
        results.pop().unwrap_or(Err(Error::BadParameters("empty batch")))
    }

    /// Stores many verified messages in one atomic `WriteBatch`; one outcome per input, in order.
    pub fn put_messages(&self, messages: &[(&Verified<Message>, State)]) -> Result<Vec<Result<PutOutcome>>> {
        let items: Vec<_> = messages.iter().map(|(m, s)| (*m, *s, None)).collect();
        self.write_messages(&items)
    }

    fn write_messages(
        &self,
        messages: &[(&Verified<Message>, State, Option<Outgoing>)],
    ) -> Result<Vec<Result<PutOutcome>>> {
        let db = &self.inner.db;
        let (cf_msg, cf_idx, cf_tomb) = (self.cf(Cf::Messages), self.cf(Cf::History), self.cf(Cf::Tombstones));
        let now = now_ms();
        let mut counts = lock(&self.inner.write_lock);
        let keys: Vec<[u8; 32]> = messages.iter().map(|(m, _, _)| *m.id().as_bytes()).collect();
        let tombs = db.batched_multi_get_cf(cf_tomb, &keys, false);
        let existing = db.batched_multi_get_cf(cf_msg, &keys, false);
        let mut batch = WriteBatch::default();
        let mut seen = HashSet::with_capacity(messages.len());
        let mut out = Vec::with_capacity(messages.len());
        let mut queued = Vec::new();
        let mut seq = self.inner.seq.load(Ordering::Relaxed);
        for (((message, state, outgoing), tomb), existing) in messages.iter().zip(tombs).zip(existing) {
            let id = message.id();
            if tomb?.is_some() {
                out.push(Err(Error::Tombstoned(id)));
                continue;
            }
            if existing?.is_some() || !seen.insert(id) {
                out.push(Ok(PutOutcome::Duplicate));
                continue;
            }
            if let Some(o) = outgoing {
                let mine = counts.per.get(&o.to).copied().unwrap_or(0);
                if mine >= self.inner.outbox_per_recipient || counts.total >= self.inner.outbox_total {
                    out.push(Err(Error::OutboxFull(o.to)));
                    continue;
                }
                batch.put_cf(self.cf(Cf::Outbox), outbox_key(&id, o.kind), encode(o)?);
                queued.push(o.to);
            }
            let record = StoredMessage {
                state: *state,
                stored_at: now,
                read_at: None,
                message: message.get().clone(),
            };
            batch.put_cf(cf_msg, id.as_bytes(), encode(&record)?);
            batch.put_cf(cf_idx, history_key(message.head(), &id), [IDX_MESSAGE]);
            if let Recipient::Room(room) = &message.head().to {
                seq += 1;
                self.log_append(&mut batch, room, seq, &id, LOG_MESSAGE);
            }
            out.push(Ok(PutOutcome::Stored));
        }
        if !batch.is_empty() {
            db.write_opt(batch, &self.inner.write_opts)?;
            self.inner.seq.store(seq, Ordering::Relaxed);
            for to in queued {
                counts.add(to);
            }
        }
        Ok(out)
    }

    fn log_append(&self, batch: &mut WriteBatch, room: &RoomId, seq: u64, id: &MessageId, kind: u8) {
        let mut value = [0u8; 33];
        value[..32].copy_from_slice(id.as_bytes());
        value[32] = kind;
        batch.put_cf(self.cf(Cf::RoomLog), room_log_key(room, seq), value);
        batch.put_cf(self.cf(Cf::Meta), META_SEQ, seq.to_be_bytes());
    }

    /// Records a verified revoke or burn in one atomic batch: the tombstone, the deletion of the
    /// body, the history entry turned into a marker, and the removal of any queued outgoing copy
    /// of the message (it is never sent). Works when the target was never stored. The body's
    /// bytes are then shredded from disk by the background shredder (see [`Store::shred_now`]).
    pub fn apply_tombstone(&self, control: &Verified<Control>) -> Result<TombstoneOutcome> {
        self.write_tombstone(control, None)
    }

    /// [`Store::apply_tombstone`], and queues the control message in the outbox in the same batch.
    pub fn apply_tombstone_outgoing(
        &self,
        control: &Verified<Control>,
        outgoing: Outgoing,
    ) -> Result<TombstoneOutcome> {
        self.write_tombstone(control, Some(outgoing))
    }

    fn write_tombstone(&self, control: &Verified<Control>, outgoing: Option<Outgoing>) -> Result<TombstoneOutcome> {
        let db = &self.inner.db;
        let id = control.id();
        let (cf_msg, cf_idx, cf_tomb, cf_out) = (
            self.cf(Cf::Messages),
            self.cf(Cf::History),
            self.cf(Cf::Tombstones),
            self.cf(Cf::Outbox),
        );
        let mut destroyed_queued = false;
        let outcome = {
            let mut counts = lock(&self.inner.write_lock);
            let stored: Option<StoredMessage> = self.message(&id)?;
            // A held message is never tombstoned (every write of either holds this lock, and a
            // tombstone deletes its message in the same batch), so only a target not held needs
            // the tombstone lookup.
            if stored.is_none() && db.get_pinned_cf(cf_tomb, id.as_bytes())?.is_some() {
                return Ok(TombstoneOutcome::Duplicate);
            }
            let had_body = stored.is_some();
            let queued_key = outbox_key(&id, OutKind::Message);
            // Only direct messages wait in the outbox; a room message never does.
            let queued: Option<Outgoing> = match &control.target.header.to {
                Recipient::Room(_) => None,
                Recipient::Account(_) => match db.get_pinned_cf(cf_out, queued_key)? {
                    Some(v) => Some(decode_value(Cf::Outbox, &queued_key, &v)?),
                    None => None,
                },
            };
            let tombstone = Tombstone {
                applied_at: now_ms(),
                control: control.get().clone(),
            };
            let mut batch = WriteBatch::default();
            batch.put_cf(cf_tomb, id.as_bytes(), encode(&tombstone)?);
            batch.delete_cf(cf_msg, id.as_bytes());
            batch.put_cf(cf_idx, history_key(&control.target.header, &id), [IDX_TOMBSTONE]);
            if let Some(key) = stored.as_ref().and_then(burn_key) {
                batch.delete_cf(self.cf(Cf::Meta), key);
            }
            if queued.is_some() {
                batch.delete_cf(cf_out, queued_key);
            }
            if let Some(o) = &outgoing {
                batch.put_cf(cf_out, outbox_key(&id, o.kind), encode(o)?);
            }
            let mut seq = self.inner.seq.load(Ordering::Relaxed);
            if let Recipient::Room(room) = &control.target.header.to {
                seq += 1;
                self.log_append(&mut batch, room, seq, &id, LOG_TOMBSTONE);
            }
            db.write_opt(batch, &self.inner.write_opts)?;
            self.inner.seq.store(seq, Ordering::Relaxed);
            if let Some(q) = &queued {
                counts.remove(&q.to);
                destroyed_queued = true;
            }
            if let Some(o) = &outgoing {
                counts.add(o.to);
            }
            TombstoneOutcome::Applied { had_body }
        };
        if outcome == (TombstoneOutcome::Applied { had_body: true }) || destroyed_queued {
            let mut shred = lock(&self.inner.shred);
            shred.pending.insert(id);
            // Only the first pending body sets the deadline; the shredder already sleeps until
            // it otherwise, so waking it for every tombstone would only cost a context switch.
            if shred.since.is_none() {
                shred.since = Some(std::time::Instant::now());
                self.inner.shred_cv.notify_one();
            }
        }
        debug!(%id, action = control.action.as_str(), ?outcome, "tombstone applied");
        Ok(outcome)
    }

    /// Every outbox entry, with the id of the message it is about.
    pub fn outbox(&self) -> Result<Vec<(MessageId, Outgoing)>> {
        let mut out = Vec::new();
        for item in self
            .inner
            .db
            .iterator_cf(self.cf(Cf::Outbox), rocksdb::IteratorMode::Start)
        {
            let (key, value) = item?;
            let id: [u8; 32] = key
                .get(..32)
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| corrupt(Cf::Outbox, &key, "short key"))?;
            out.push((MessageId::from_bytes(id), decode_value(Cf::Outbox, &key, &value)?));
        }
        Ok(out)
    }

    /// Removes an outbox entry. With `delivered`, a queued message also moves to
    /// [`State::Delivered`], in the same batch. Returns whether the entry existed.
    pub fn outbox_done(&self, id: &MessageId, kind: OutKind, delivered: bool) -> Result<bool> {
        let mut done = self.outbox_done_many(&[(*id, kind, delivered)])?;
        Ok(done.pop().unwrap_or(false))
    }

    /// [`Store::outbox_done`] for many entries in one atomic batch (acknowledgements arriving
    /// together cost one write). Returns, per input, whether the entry existed.
    pub fn outbox_done_many(&self, items: &[(MessageId, OutKind, bool)]) -> Result<Vec<bool>> {
        let db = &self.inner.db;
        let mut counts = lock(&self.inner.write_lock);
        let mut batch = WriteBatch::default();
        let mut existed = Vec::with_capacity(items.len());
        let mut recipients = Vec::new();
        let mut seen = HashSet::with_capacity(items.len());
        for (id, kind, delivered) in items {
            let key = outbox_key(id, *kind);
            let value = match db.get_pinned_cf(self.cf(Cf::Outbox), key)? {
                Some(value) if seen.insert(key) => value,
                _ => {
                    existed.push(false);
                    continue;
                }
            };
            let entry: Outgoing = decode_value(Cf::Outbox, &key, &value)?;
            batch.delete_cf(self.cf(Cf::Outbox), key);
            if *delivered && *kind == OutKind::Message {
                if let Some(mut record) = self.message(id)? {
                    record.state = State::Delivered;
                    batch.put_cf(self.cf(Cf::Messages), id.as_bytes(), encode(&record)?);
                }
            }
            recipients.push(entry.to);
            existed.push(true);
        }
        if !recipients.is_empty() {
            db.write_opt(batch, &self.inner.write_opts)?;
        }
        for to in &recipients {
            counts.remove(to);
        }
        Ok(existed)
    }

    /// How many entries the outbox holds.
    pub fn outbox_len(&self) -> usize {
        lock(&self.inner.write_lock).total
    }

    /// Up to `limit` entries (at most `max_bytes` of frames) of `room`'s arrival log after
    /// sequence number `after`, as envelopes ready to send: a message that has since been
    /// tombstoned is never served (its tombstone follows in the log instead). With `after == 0`
    /// the page starts at the `window`-th newest entry, so a newcomer gets bounded history.
    pub fn room_log(
        &self,
        room: &RoomId,
        after: u64,
        limit: usize,
        max_bytes: usize,
        window: usize,
    ) -> Result<LogPage> {
        let prefix = Conversation::Room(room.clone()).prefix();
        let mut after = after;
        if after == 0 && window > 0 {
            let mut ro = ReadOptions::default();
            ro.set_iterate_lower_bound(prefix.clone());
            let mut it = self.inner.db.raw_iterator_cf_opt(self.cf(Cf::RoomLog), ro);
            it.seek_for_prev(room_log_key(room, u64::MAX));
            let mut n = 0;
            while let Some(key) = it.key() {
                if !key.starts_with(&prefix) {
                    break;
                }
                n += 1;
                if n > window {
                    after = seq_of(key).unwrap_or(0);
                    break;
                }
                it.prev();
            }
            it.status()?;
        }
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(prefix.clone());
        let mut it = self.inner.db.raw_iterator_cf_opt(self.cf(Cf::RoomLog), ro);
        it.seek(room_log_key(room, after.saturating_add(1)));
        let mut page = LogPage {
            next: after,
            ..LogPage::default()
        };
        let mut bytes = 0;
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if !key.starts_with(&prefix) {
                break;
            }
            if page.frames.len() >= limit || bytes >= max_bytes {
                page.more = true;
                break;
            }
            let seq = seq_of(key).ok_or_else(|| corrupt(Cf::RoomLog, key, "short key"))?;
            let id: [u8; 32] = value
                .get(..32)
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| corrupt(Cf::RoomLog, key, "short value"))?;
            let id = MessageId::from_bytes(id);
            let frame = match value.get(32) {
                Some(&LOG_MESSAGE) => match self.message(&id)? {
                    Some(m) => Some(encode(&Envelope::Message(m.message))?),
                    None => None, // tombstoned since: its tombstone is served instead
                },
                Some(&LOG_TOMBSTONE) => match self.tombstone(&id)? {
                    Some(t) => Some(encode(&Envelope::Control(t.control))?),
                    None => None,
                },
                _ => return Err(corrupt(Cf::RoomLog, key, "bad kind")),
            };
            if let Some(frame) = frame {
                bytes += frame.len();
                page.frames.push(frame);
            }
            page.next = seq;
            it.next();
        }
        it.status()?;
        Ok(page)
    }

    /// The last log sequence number synced from `peer` for `room` (0 if never).
    pub fn sync_cursor(&self, room: &RoomId, peer: &[u8]) -> Result<u64> {
        let key = sync_key(room, peer);
        match self.inner.db.get_pinned_cf(self.cf(Cf::Sync), &key)? {
            Some(v) => Ok(u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| corrupt(Cf::Sync, &key, "bad cursor"))?,
            )),
            None => Ok(0),
        }
    }

    /// Records the last log sequence number synced from `peer` for `room`.
    pub fn set_sync_cursor(&self, room: &RoomId, peer: &[u8], seq: u64) -> Result<()> {
        let key = sync_key(room, peer);
        Ok(self
            .inner
            .db
            .put_cf_opt(self.cf(Cf::Sync), key, seq.to_be_bytes(), &self.inner.write_opts)?)
    }

    /// Changes the state of a stored message (e.g. `Sent` to `Delivered`). Returns `false` if the
    /// message is not stored (never was, or tombstoned).
    pub fn set_state(&self, id: &MessageId, state: State) -> Result<bool> {
        self.update_message(id, |m| m.state = state)
    }

    /// Marks a stored message read at `read_at` (ms since the epoch), once; the first read time
    /// stands. If the message carries `burn_after_read`, its burn deadline is recorded in the same
    /// batch, so the timer survives a restart (see [`Store::burn_deadlines`]). Returns the record
    /// as now stored, or `None` if it is not stored.
    pub fn mark_read(&self, id: &MessageId, read_at: u64) -> Result<Option<StoredMessage>> {
        let (cf_msg, cf_meta) = (self.cf(Cf::Messages), self.cf(Cf::Meta));
        let _guard = lock(&self.inner.write_lock);
        let Some(mut record) = self.message(id)? else {
            return Ok(None);
        };
        if record.read_at.is_some() {
            return Ok(Some(record));
        }
        record.read_at = Some(read_at);
        let mut batch = WriteBatch::default();
        batch.put_cf(cf_msg, id.as_bytes(), encode(&record)?);
        if let Some(key) = burn_key(&record) {
            batch.put_cf(cf_meta, key, []);
        }
        self.inner.db.write_opt(batch, &self.inner.write_opts)?;
        Ok(Some(record))
    }

    /// Every pending burn-after-read deadline (ms since the epoch) with its message id, soonest
    /// first. An entry disappears when the message is tombstoned.
    pub fn burn_deadlines(&self) -> Result<Vec<(u64, MessageId)>> {
        let mut out = Vec::new();
        for (key, _) in self.meta_scan(META_BURN)? {
            let rest = &key[META_BURN.len()..];
            let parsed = rest
                .get(..8)
                .and_then(|d| <[u8; 8]>::try_from(d).ok())
                .zip(rest.get(8..).and_then(|m| <[u8; 32]>::try_from(m).ok()));
            match parsed {
                Some((deadline, mid)) => out.push((u64::from_be_bytes(deadline), MessageId::from_bytes(mid))),
                None => return Err(corrupt(Cf::Meta, &key, "bad burn timer key")),
            }
        }
        Ok(out)
    }

    /// Records that this node joined (`true`) or left (`false`) a room.
    pub fn set_room(&self, room: &tim_protocol::RoomId, joined: bool) -> Result<()> {
        let mut key = META_ROOM.to_vec();
        key.extend_from_slice(room.as_str().as_bytes());
        let cf = self.cf(Cf::Meta);
        if joined {
            self.inner.db.put_cf_opt(cf, key, [], &self.inner.write_opts)?;
        } else {
            self.inner.db.delete_cf_opt(cf, key, &self.inner.write_opts)?;
        }
        Ok(())
    }

    /// The rooms this node has joined.
    pub fn rooms(&self) -> Result<Vec<tim_protocol::RoomId>> {
        self.meta_scan(META_ROOM)?
            .into_iter()
            .map(|(key, _)| {
                let name = std::str::from_utf8(&key[META_ROOM.len()..]).ok();
                name.and_then(|n| tim_protocol::RoomId::new(n).ok())
                    .ok_or_else(|| corrupt(Cf::Meta, &key, "bad room id"))
            })
            .collect()
    }

    fn meta_scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut read_opts = ReadOptions::default();
        read_opts.set_iterate_lower_bound(prefix.to_vec());
        let mut it = self.inner.db.raw_iterator_cf_opt(self.cf(Cf::Meta), read_opts);
        it.seek(prefix);
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    fn update_message(&self, id: &MessageId, change: impl FnOnce(&mut StoredMessage)) -> Result<bool> {
        let cf_msg = self.cf(Cf::Messages);
        let _guard = lock(&self.inner.write_lock);
        let Some(mut record) = self.message(id)? else {
            return Ok(false);
        };
        change(&mut record);
        self.inner
            .db
            .put_cf_opt(cf_msg, id.as_bytes(), encode(&record)?, &self.inner.write_opts)?;
        Ok(true)
    }

    /// The stored message with this id, if any.
    pub fn message(&self, id: &MessageId) -> Result<Option<StoredMessage>> {
        self.read(Cf::Messages, id)
    }

    /// The tombstone of this id, if any.
    pub fn tombstone(&self, id: &MessageId) -> Result<Option<Tombstone>> {
        self.read(Cf::Tombstones, id)
    }

    /// For each id, whether this store already holds it, as a message or as a tombstone (one
    /// batched lookup per column family): what a catch-up page need not verify again.
    pub fn known_many(&self, ids: &[MessageId]) -> Result<Vec<bool>> {
        let db = &self.inner.db;
        let keys: Vec<&[u8; 32]> = ids.iter().map(MessageId::as_bytes).collect();
        let tombs = db.batched_multi_get_cf(self.cf(Cf::Tombstones), &keys, false);
        let stored = db.batched_multi_get_cf(self.cf(Cf::Messages), &keys, false);
        tombs
            .into_iter()
            .zip(stored)
            .map(|(t, m)| Ok(t?.is_some() || m?.is_some()))
            .collect()
    }

    /// Whether this id is tombstoned (a point lookup; nothing is decoded).
    pub fn is_tombstoned(&self, id: &MessageId) -> Result<bool> {
        Ok(self
            .inner
            .db
            .get_pinned_cf(self.cf(Cf::Tombstones), id.as_bytes())?
            .is_some())
    }

    /// The message or tombstone with this id, if any.
    pub fn entry(&self, id: &MessageId) -> Result<Option<Entry>> {
        if let Some(t) = self.tombstone(id)? {
            return Ok(Some(Entry::Tombstone(t)));
        }
        Ok(self.message(id)?.map(Entry::Message))
    }

    fn read<T: Wire>(&self, cf: Cf, id: &MessageId) -> Result<Option<T>> {
        match self.inner.db.get_pinned_cf(self.cf(cf), id.as_bytes())? {
            Some(bytes) => decode_value(cf, id.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) entries of a conversation, newest first, strictly
    /// older than `before` if given. Revoked and burned messages appear as tombstone markers.
    pub fn history(&self, conversation: &Conversation, before: Option<&MessageId>, limit: usize) -> Result<Page> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::BadParameters("history limit must be between 1 and 500"));
        }
        let prefix = conversation.prefix();
        let start = match before {
            Some(id) => {
                let entry = self.entry(id)?.ok_or(Error::NotFound(*id))?;
                if Conversation::of(entry.header()) != *conversation {
                    return Err(Error::NotFound(*id));
                }
                history_key(entry.header(), id)
            }
            None => {
                let mut k = prefix.clone();
                k.extend_from_slice(&[0xff; 40]);
                k
            }
        };
        let mut read_opts = ReadOptions::default();
        read_opts.set_iterate_lower_bound(prefix.clone());
        let mut it = self.inner.db.raw_iterator_cf_opt(self.cf(Cf::History), read_opts);
        it.seek_for_prev(&start);
        let mut found: Vec<(MessageId, u8)> = Vec::with_capacity(limit);
        let mut more = false;
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if !key.starts_with(&prefix) {
                break;
            }
            if before.is_some() && key == start.as_slice() {
                it.prev();
                continue;
            }
            if found.len() == limit {
                more = true;
                break;
            }
            let id = id_of_history_key(key).ok_or_else(|| corrupt(Cf::History, key, "short key"))?;
            let kind = *value.first().ok_or_else(|| corrupt(Cf::History, key, "empty value"))?;
            found.push((id, kind));
            it.prev();
        }
        it.status()?;
        let (cf_msg, cf_tomb) = (self.cf(Cf::Messages), self.cf(Cf::Tombstones));
        let lookups = found.iter().map(|(id, kind)| {
            (
                if *kind == IDX_TOMBSTONE { cf_tomb } else { cf_msg },
                id.as_bytes().to_vec(),
            )
        });
        let values = self.inner.db.multi_get_cf(lookups);
        let mut entries = Vec::with_capacity(found.len());
        for ((id, kind), value) in found.iter().zip(values) {
            let Some(bytes) = value? else {
                // A concurrent tombstone moved it between our scan and this read; skip it here,
                // the next page load shows the marker.
                continue;
            };
            entries.push(if *kind == IDX_TOMBSTONE {
                Entry::Tombstone(decode_value(Cf::Tombstones, id.as_bytes(), &bytes)?)
            } else {
                Entry::Message(decode_value(Cf::Messages, id.as_bytes(), &bytes)?)
            });
        }
        let next = if more { found.last().map(|(id, _)| *id) } else { None };
        Ok(Page { entries, next })
    }

    /// Destroys, now, every body deleted by a tombstone that the shredder has not yet removed from
    /// disk: flushes every family (so no write-ahead log holds the body any more) and compacts
    /// the affected keys down through the bottommost level. Returns when no file under the
    /// database directory holds those bodies.
    pub fn shred_now(&self) -> Result<()> {
        self.inner.shred_pass()
    }

    /// How many destroyed bodies are waiting for the shredder.
    pub fn pending_shreds(&self) -> usize {
        lock(&self.inner.shred).pending.len()
    }

    /// Bytes used by the files under the database directory.
    pub fn disk_bytes(&self) -> u64 {
        fn walk(dir: &Path) -> u64 {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok())
                        .map(|e| match e.metadata() {
                            Ok(m) if m.is_dir() => walk(&e.path()),
                            Ok(m) => m.len(),
                            Err(_) => 0,
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(self.inner.db.path())
    }

    /// Flushes memtables and the WAL to disk.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_all()
    }

    fn cf(&self, cf: Cf) -> &ColumnFamily {
        self.inner.cf(cf)
    }

    /// Writes raw bytes under a key, bypassing every check. Only for tests of corrupt data.
    #[doc(hidden)]
    pub fn raw_put_for_tests(&self, cf: Cf, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.inner.db.put_cf(self.cf(cf), key, value)?)
    }
}

fn cf_handle(db: &DB, cf: Cf) -> &ColumnFamily {
    match db.cf_handle(cf.name()) {
        Some(handle) => handle,
        // Every family in Cf::ALL is created by `open`, so the handle always exists.
        None => unreachable!("column family {} is created at open", cf.name()),
    }
}

fn seq_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

fn sync_key(room: &RoomId, peer: &[u8]) -> Vec<u8> {
    let mut k = Conversation::Room(room.clone()).prefix();
    k.extend_from_slice(peer);
    k
}

impl Inner {
    fn cf(&self, cf: Cf) -> &ColumnFamily {
        cf_handle(&self.db, cf)
    }

    fn flush_all(&self) -> Result<()> {
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        let cfs: Vec<&ColumnFamily> = Cf::ALL.iter().map(|cf| self.cf(*cf)).collect();
        self.db.flush_cfs_opt(&cfs, &fo)?;
        self.db.flush_wal(true)?;
        Ok(())
    }

    fn shred_pass(&self) -> Result<()> {
        let _pass = lock(&self.shred_pass);
        let ids: Vec<MessageId> = {
            let mut shred = lock(&self.shred);
            shred.since = None;
            std::mem::take(&mut shred.pending).into_iter().collect()
        };
        if ids.is_empty() {
            return Ok(());
        }
        let result = self.shred(&ids);
        if result.is_err() {
            // Keep them for the next pass.
            let mut shred = lock(&self.shred);
            shred.since.get_or_insert_with(std::time::Instant::now);
            shred.pending.extend(ids);
        }
        result
    }

    fn shred(&self, ids: &[MessageId]) -> Result<()> {
        let started = std::time::Instant::now();
        self.flush_all()?;
        let mut co = CompactOptions::default();
        co.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        let families = [(Cf::Messages, self.message_file_size), (Cf::Outbox, OTHER_FILE_SIZE)];
        let mut whole_families = 0;
        for (cf, file_size) in families {
            let handle = self.cf(cf);
            let live = self
                .db
                .property_int_value_cf(handle, "rocksdb.live-sst-files-size")?
                .unwrap_or(u64::MAX);
            if shred_whole(ids.len(), live, file_size) {
                whole_families += 1;
                self.db.compact_range_cf_opt(handle, None::<&[u8]>, None::<&[u8]>, &co);
                continue;
            }
            for id in ids {
                let (lo, hi) = match cf {
                    Cf::Outbox => (
                        outbox_key(id, OutKind::Message).to_vec(),
                        outbox_key(id, OutKind::Control).to_vec(),
                    ),
                    _ => (id.as_bytes().to_vec(), id.as_bytes().to_vec()),
                };
                self.db.compact_range_cf_opt(handle, Some(lo), Some(hi), &co);
            }
        }
        debug!(
            count = ids.len(),
            whole_families,
            ms = started.elapsed().as_millis() as u64,
            "shredded destroyed bodies"
        );
        Ok(())
    }
}

/// Whether a shred pass over `ids` should compact a whole family (of `live` bytes in SST files,
/// `file_size` per file) once rather than key by key. Compacting one key rewrites at least the
/// file that holds it, so key by key costs about `ids × min(live, file_size)` and the whole family
/// `live`: a small family (one file, as in most nodes) is always compacted whole, once, however
/// many bodies died; a large one key by key while few did.
fn shred_whole(ids: usize, live: u64, file_size: u64) -> bool {
    ids >= SHRED_WHOLE_CF_AT || live <= (ids as u64).saturating_mul(file_size.max(1))
}

impl Drop for Store {
    fn drop(&mut self) {
        lock(&self.inner.shred).stop = true;
        self.inner.shred_cv.notify_all();
        if let Some(handle) = self.shredder.take() {
            let _ = handle.join();
        }
        if let Err(e) = self.inner.shred_pass() {
            warn!(error = %e, "final shred failed; bodies are deleted but may remain on disk");
        }
    }
}

fn shredder_loop(inner: Weak<Inner>) {
    loop {
        {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let mut shred = lock(&strong.shred);
            // Sleep until the oldest pending body is `shred_delay` old (or we stop).
            loop {
                if shred.stop {
                    break;
                }
                let wait = match shred.since {
                    None => Duration::from_secs(1),
                    Some(since) => match strong.shred_delay.checked_sub(since.elapsed()) {
                        Some(left) if !left.is_zero() => left,
                        _ => break,
                    },
                };
                shred = match strong.shred_cv.wait_timeout(shred, wait) {
                    Ok((guard, _)) => guard,
                    Err(p) => p.into_inner().0,
                };
            }
            if shred.stop {
                return;
            }
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if let Err(e) = strong.shred_pass() {
            warn!(error = %e, "shred pass failed; will retry");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The meta key of a read message's burn-after-read deadline, if it has one.
fn burn_key(record: &StoredMessage) -> Option<Vec<u8>> {
    let secs = record.message.head().burn_after_read?;
    let deadline = record.read_at?.saturating_add(u64::from(secs) * 1000);
    let mut key = META_BURN.to_vec();
    key.extend_from_slice(&deadline.to_be_bytes());
    key.extend_from_slice(record.id().as_bytes());
    Some(key)
}

fn decode_value<T: Wire>(cf: Cf, key: &[u8], bytes: &[u8]) -> Result<T> {
    decode(bytes).map_err(|source| Error::Corrupt {
        what: cf.name(),
        key: hex_key(key),
        source,
    })
}

fn corrupt(cf: Cf, key: &[u8], detail: &str) -> Error {
    Error::Corrupt {
        what: cf.name(),
        key: hex_key(key),
        source: tim_protocol::Error::Malformed {
            what: "index entry",
            detail: detail.into(),
        },
    }
}

fn hex_key(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shred_pass_compacts_small_families_whole_and_large_ones_key_by_key() {
        const MB: u64 = 1 << 20;
        // One file or less: once, whole, for any number of bodies.
        assert!(shred_whole(1, 3 * MB, 4 * MB));
        assert!(shred_whole(50, 3 * MB, 4 * MB));
        assert!(shred_whole(1, 0, 4 * MB));
        // Large: key by key while that rewrites less than the whole family.
        assert!(!shred_whole(1, 400 * MB, 4 * MB));
        assert!(!shred_whole(50, 400 * MB, 4 * MB));
        assert!(shred_whole(100, 400 * MB, 4 * MB));
        assert!(shred_whole(SHRED_WHOLE_CF_AT, 10_000 * MB, 4 * MB));
        // Size unknown: key by key, unless there are many.
        assert!(!shred_whole(3, u64::MAX, 4 * MB));
        assert!(shred_whole(SHRED_WHOLE_CF_AT, u64::MAX, 4 * MB));
    }
}
