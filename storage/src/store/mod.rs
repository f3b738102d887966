//! The RocksDB store: the [`Store`] handle, its settings, opening and closing, and the helpers
//! every concern shares (column family handles, the write lock, decoding what is read).
//!
//! Each concern adds its own `impl Store` block: `messages` (put, get, history), `tombstones`
//! (revoke and burn), `shred` (removing destroyed bodies from disk), `outbox`, `room_log`
//! (catch-up log and sync cursors), `rooms` (founded rooms' operations and invitations), `meta` (joined rooms, burn-after-read deadlines),
//! `receipts` (deletion receipts for this account's revokes and burns), `blocks` (blocked
//! accounts), `contacts` (contact states), `requests` (messages held from accounts not admitted) and
//! `inbox` (each conversation's newest activity and unread count).

use std::{
    path::Path,
    sync::{atomic::AtomicU64, Arc, Condvar, Mutex, MutexGuard},
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, FlushOptions, Options, WriteOptions, DB,
};
use tim_protocol::{decode, MessageId, Wire};
use tracing::warn;

use crate::{Cf, Error, Result};

mod blocks;
mod contacts;
mod inbox;
mod messages;
mod meta;
mod outbox;
mod quotas;
mod receipts;
mod requests;
mod room_log;
mod room_quota;
mod rooms;
mod shred;
mod tombstones;

pub use blocks::MAX_BLOCKS;
pub use contacts::{ContactOutcome, ContactRecord, MAX_INCOMING_REQUESTS};
pub use inbox::{InboxItem, InboxPage, MAX_INBOX_PAGE};
pub use messages::{Page, PutOutcome, MAX_PAGE};
pub use receipts::ReceiptOutcome;
pub use requests::{MAX_REQUESTS_EACH, MAX_REQUESTS_TOTAL};
pub use room_log::LogPage;
pub use tombstones::TombstoneOutcome;

use outbox::OutboxCounts;
use quotas::Quotas;
use shred::Shred;

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
    /// Most deletion receipts waiting in the outbox, counted apart from the entries above.
    /// Default 10,000; beyond it a tombstone is applied without queuing its receipt.
    pub outbox_receipts: usize,
    /// Most deletion receipts waiting for one account (a room member that revokes a lot and never
    /// takes its receipts fills only this share). Default 1,000.
    pub outbox_receipts_each: usize,
    /// Most deletion receipts kept for one message this node's account revoked or burned (an
    /// open room has no fixed membership); later ones are refused. Default 4,096.
    pub receipts_per_message: usize,
    /// How long the shredder lets destroyed bodies gather before one pass removes them all from
    /// disk. Default 1 s: a burst of revokes costs one flush and compaction, not one each. The
    /// bodies are unreadable from the moment of the tombstone; this bounds only how long their
    /// bytes may linger in files.
    pub shred_delay: Duration,
    /// Most direct messages held from one stranger (an account this node's account never wrote
    /// to); beyond it they are refused with `5104`. Default 100. See `quotas.rs`.
    pub stranger_messages_each: usize,
    /// Most direct messages held from strangers in all; beyond it the oldest is evicted (deleted
    /// and shredded). Default 10,000.
    pub stranger_messages_total: usize,
    /// Most tombstones for messages this node never held, per signer; beyond it refused with
    /// `5104`. Default 100.
    pub pending_tombstones_each: usize,
    /// Most such tombstones in all; beyond it the oldest is evicted. Default 10,000.
    pub pending_tombstones_total: usize,
    /// Most messages held in one room from strangers (accounts this node's account never wrote
    /// to); beyond it the room's oldest such message is evicted (deleted, shredded, and gone from
    /// the room's log). Default 10,000. See `quotas.rs`.
    pub room_stranger_messages: usize,
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
            outbox_receipts: 10_000,
            outbox_receipts_each: 1_000,
            receipts_per_message: 4_096,
            shred_delay: Duration::from_secs(1),
            stranger_messages_each: 100,
            stranger_messages_total: 10_000,
            pending_tombstones_each: 100,
            pending_tombstones_total: 10_000,
            room_stranger_messages: 10_000,
        }
    }
}

/// What the store handle and its shredder thread share.
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
    outbox_receipts: usize,
    outbox_receipts_each: usize,
    receipts_per_message: usize,
    /// Ids whose bodies were deleted but may still sit in a WAL or SST file.
    shred: Mutex<Shred>,
    shred_cv: Condvar,
    shred_delay: Duration,
    /// Held for a whole shred pass, so `shred_now` returns only after any pass in flight.
    shred_pass: Mutex<()>,
    /// Target SST file size of the message family (`Config::message_file_size`).
    message_file_size: u64,
    /// What strangers hold here; locked inside `write_lock`, never alone.
    quotas: Mutex<Quotas>,
}

/// A node's message store. Cheap to share behind an `Arc`; all methods take `&self` and block
/// (call them from `spawn_blocking` or a storage thread in async code).
pub struct Store {
    inner: Arc<Inner>,
    shredder: Option<JoinHandle<()>>,
}

impl Store {
    /// Opens (or creates) the store in `path`.
    /// The directory and every file in it are made owner-only first (see
    /// [`crate::restrict_to_owner`]).
    pub fn open(path: impl AsRef<Path>, config: Config) -> Result<Store> {
        let path = path.as_ref();
        crate::owner_only::restrict_to_owner_logged(path).map_err(Error::DataDir)?;
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
        // Opening rotates RocksDB's log and may write new files with the process umask.
        crate::restrict_to_owner(path).map_err(Error::DataDir)?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(config.sync_writes);
        let seq = room_log::load_seq(&db)?;
        let counts = OutboxCounts::load(&db)?;
        let quotas = Quotas::load(
            &db,
            quotas::Limits {
                stranger_each: config.stranger_messages_each,
                stranger_total: config.stranger_messages_total,
                pending_each: config.pending_tombstones_each,
                pending_total: config.pending_tombstones_total,
                room_total: config.room_stranger_messages,
            },
        )?;
        let unshredded = meta::pending_shreds(&db, cf_handle(&db, Cf::Meta))?;
        let unshredded_count = unshredded.len();
        let inner = Arc::new(Inner {
            db,
            write_opts,
            write_lock: Mutex::new(counts),
            seq: AtomicU64::new(seq),
            outbox_per_recipient: config.outbox_per_recipient,
            outbox_total: config.outbox_total,
            outbox_receipts: config.outbox_receipts,
            outbox_receipts_each: config.outbox_receipts_each,
            receipts_per_message: config.receipts_per_message,
            shred: Mutex::new(Shred::with_pending(unshredded)),
            shred_delay: config.shred_delay,
            shred_cv: Condvar::new(),
            shred_pass: Mutex::new(()),
            message_file_size: config.message_file_size,
            quotas: Mutex::new(quotas),
        });
        // Bodies destroyed by a run that stopped before shredding them (a crash, a kill) leave
        // every file before the store is handed out.
        if unshredded_count > 0 {
            let count = unshredded_count;
            match inner.shred_pass() {
                Ok(()) => tracing::info!(count, "shredded destroyed bodies a previous run left on disk"),
                Err(e) => warn!(count, error = %e, "could not shred bodies left by a previous run; will retry"),
            }
        }
        let shredder = shred::spawn_shredder(Arc::downgrade(&inner))?;
        Ok(Store {
            inner,
            shredder: Some(shredder),
        })
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

    /// Writes raw bytes under a key, bypassing every check. Only for tests of corrupt data.
    #[doc(hidden)]
    pub fn raw_put_for_tests(&self, cf: Cf, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.inner.db.put_cf(self.cf(cf), key, value)?)
    }

    fn cf(&self, cf: Cf) -> &ColumnFamily {
        self.inner.cf(cf)
    }

    /// Reads and decodes the value under `id` in `cf`.
    fn read<T: Wire>(&self, cf: Cf, id: &MessageId) -> Result<Option<T>> {
        match self.inner.db.get_pinned_cf(self.cf(cf), id.as_bytes())? {
            Some(bytes) => decode_value(cf, id.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }
}

impl Drop for Store {
    /// Stops the shredder, then shreds what is still pending, so closing the store leaves no
    /// destroyed body on disk.
    fn drop(&mut self) {
        shred::stop_shredder(&self.inner, self.shredder.take());
        if let Err(e) = self.inner.shred_pass() {
            warn!(error = %e, "final shred failed; bodies are deleted but may remain on disk");
        }
    }
}

impl Inner {
    fn cf(&self, cf: Cf) -> &ColumnFamily {
        cf_handle(&self.db, cf)
    }

    /// Flushes every family and the WAL, waiting until both are on disk.
    fn flush_all(&self) -> Result<()> {
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        let cfs: Vec<&ColumnFamily> = Cf::ALL.iter().map(|cf| self.cf(*cf)).collect();
        self.db.flush_cfs_opt(&cfs, &fo)?;
        self.db.flush_wal(true)?;
        Ok(())
    }
}

fn cf_handle(db: &DB, cf: Cf) -> &ColumnFamily {
    match db.cf_handle(cf.name()) {
        Some(handle) => handle,
        // Every family in Cf::ALL is created by `open`, so the handle always exists.
        None => unreachable!("column family {} is created at open", cf.name()),
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
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

/// Decodes a value read from `cf` under `key`; a value that does not decode is [`Error::Corrupt`].
fn decode_value<T: Wire>(cf: Cf, key: &[u8], bytes: &[u8]) -> Result<T> {
    decode(bytes).map_err(|source| Error::Corrupt {
        what: cf.name(),
        key: hex_key(key),
        source,
    })
}

/// The [`Error::Corrupt`] of a key or index value in `cf` that does not have the expected shape.
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
