//! The shredder: removing destroyed bodies from every file on disk, not only hiding them. A
//! tombstone queues its id; a background thread waits `Config::shred_delay` after the first
//! queued id, then one pass flushes every family (so no write-ahead log holds a body) and
//! compacts the bodies' keys through the bottommost level.

use std::{
    collections::BTreeSet,
    sync::{Arc, Weak},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rocksdb::{BottommostLevelCompaction, CompactOptions};
use tim_protocol::MessageId;
use tracing::{debug, warn};

use super::{lock, Inner, Store};
use crate::{keys::outbox_key, Cf, Error, OutKind, Result};

/// At this many pending shreds or more, a shred pass compacts a whole family once instead of key
/// by key, whatever its size (see `shred_whole`).
const SHRED_WHOLE_CF_AT: usize = 64;
/// Target SST file size of the families other than messages (RocksDB's default).
const OTHER_FILE_SIZE: u64 = 64 << 20;
/// How long the idle shredder sleeps before it looks again (a queued id wakes it sooner).
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How long the shredder waits after a failed pass before it tries again.
const RETRY_WAIT: Duration = Duration::from_secs(1);

/// The shredder's queue.
#[derive(Default)]
pub(super) struct Shred {
    /// Ids whose bodies were deleted but may still sit in a file.
    pending: BTreeSet<MessageId>,
    /// When the oldest pending id was added.
    since: Option<Instant>,
    /// Set when the store closes; the shredder thread then returns.
    stop: bool,
}

impl Store {
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
}

impl Inner {
    /// Queues the body of `id`, just deleted, for the next shred pass.
    pub(super) fn queue_shred(&self, id: MessageId) {
        let mut shred = lock(&self.shred);
        shred.pending.insert(id);
        // Only the first pending body sets the deadline; the shredder already sleeps until
        // it otherwise, so waking it for every tombstone would only cost a context switch.
        if shred.since.is_none() {
            shred.since = Some(Instant::now());
            self.shred_cv.notify_one();
        }
    }

    /// Shreds every pending body. On failure the ids stay pending for the next pass.
    pub(super) fn shred_pass(&self) -> Result<()> {
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
            shred.since.get_or_insert_with(Instant::now);
            shred.pending.extend(ids);
        }
        result
    }

    fn shred(&self, ids: &[MessageId]) -> Result<()> {
        let started = Instant::now();
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

/// How long the shredder still sleeps at `now` before its next pass, given when the oldest
/// pending body was queued (`since`) and the delay; `None` when a pass is due.
fn time_to_pass(since: Option<Instant>, delay: Duration, now: Instant) -> Option<Duration> {
    match since {
        None => Some(IDLE_WAIT),
        Some(since) => match delay.checked_sub(now.saturating_duration_since(since)) {
            Some(left) if !left.is_zero() => Some(left),
            _ => None,
        },
    }
}

/// Starts the shredder thread. It holds only a weak reference, so it never keeps the store open.
pub(super) fn spawn_shredder(inner: Weak<Inner>) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tim-shredder".into())
        .spawn(move || shredder_loop(inner))
        .map_err(|_| Error::BadParameters("could not start the shredder thread"))
}

/// Tells the shredder thread to stop and waits for it to return.
pub(super) fn stop_shredder(inner: &Arc<Inner>, shredder: Option<JoinHandle<()>>) {
    lock(&inner.shred).stop = true;
    inner.shred_cv.notify_all();
    if let Some(handle) = shredder {
        let _ = handle.join();
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
                let Some(wait) = time_to_pass(shred.since, strong.shred_delay, Instant::now()) else {
                    break;
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
            std::thread::sleep(RETRY_WAIT);
        }
    }
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

    #[test]
    fn the_shredder_sleeps_until_the_oldest_body_is_shred_delay_old() {
        let delay = Duration::from_millis(300);
        let t0 = Instant::now();
        // Nothing pending: idle wait, whatever the time.
        assert_eq!(time_to_pass(None, delay, t0), Some(IDLE_WAIT));
        assert_eq!(time_to_pass(None, delay, t0 + delay * 10), Some(IDLE_WAIT));
        // Pending since t0: sleep out the rest of the delay, counted from t0 whatever the time
        // of the wake-up, and pass once it is over.
        assert_eq!(time_to_pass(Some(t0), delay, t0), Some(delay));
        assert_eq!(
            time_to_pass(Some(t0), delay, t0 + Duration::from_millis(100)),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            time_to_pass(Some(t0), delay, t0 + delay - Duration::from_nanos(1)),
            Some(Duration::from_nanos(1))
        );
        assert_eq!(time_to_pass(Some(t0), delay, t0 + delay), None);
        assert_eq!(time_to_pass(Some(t0), delay, t0 + delay * 5), None);
        // No delay: every pending body is due at once.
        assert_eq!(time_to_pass(Some(t0), Duration::ZERO, t0), None);
    }
}
