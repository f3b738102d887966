//! The shredder: removing destroyed bodies from every file on disk, not only hiding them. A
//! tombstone queues its id (in memory, and in the meta family in the tombstone's own batch, so a
//! crash loses nothing: `Store::open` shreds what a previous run left pending); a background
//! thread waits `Config::shred_delay` after the first queued id, then one pass flushes every
//! family (so no write-ahead log holds a body) and compacts the bodies' keys through the
//! bottommost level.
//!
//! Peers choose how often bodies die, so the shredder paces itself: after a pass it rests at
//! least `PASS_REST_FACTOR` times as long as the pass took. Whatever peers send, compaction takes
//! at most 1 / (1 + `PASS_REST_FACTOR`) of the time; under a flood bodies wait longer in files
//! (never readable: the tombstone deleted them at once), and one pass takes them all.

use std::{
    collections::BTreeSet,
    sync::{Arc, Weak},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rocksdb::{BottommostLevelCompaction, CompactOptions, WriteBatch};
use tim_protocol::MessageId;
use tracing::{debug, warn};

use super::{lock, meta::shred_key, Inner, Store};
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
/// After a pass, the shredder rests at least this many times as long as the pass took.
const PASS_REST_FACTOR: u32 = 4;

/// The shredder's queue.
#[derive(Default)]
pub(super) struct Shred {
    /// Ids whose bodies were deleted but may still sit in a file.
    pending: BTreeSet<MessageId>,
    /// When the oldest pending id was added.
    since: Option<Instant>,
    /// The shredder's next pass is not before this (see `PASS_REST_FACTOR`).
    rest_until: Option<Instant>,
    /// Set when the store closes; the shredder thread then returns.
    stop: bool,
}

impl Shred {
    /// Queues ids found pending at start, due at once.
    pub(super) fn with_pending(ids: Vec<MessageId>) -> Shred {
        let since = (!ids.is_empty()).then(Instant::now);
        Shred {
            pending: ids.into_iter().collect(),
            since,
            ..Shred::default()
        }
    }
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
        let started = Instant::now();
        let result = self.shred(&ids).and_then(|()| self.forget_shredded(&ids));
        let mut shred = lock(&self.shred);
        shred.rest_until = Some(Instant::now() + started.elapsed() * PASS_REST_FACTOR);
        if result.is_err() {
            // Keep them for the next pass.
            shred.since.get_or_insert_with(Instant::now);
            shred.pending.extend(ids);
        }
        result
    }

    /// Deletes the persisted queue entries of bodies a pass has removed from every file.
    fn forget_shredded(&self, ids: &[MessageId]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for id in ids {
            batch.delete_cf(self.cf(Cf::Meta), shred_key(id));
        }
        Ok(self.db.write_opt(batch, &self.write_opts)?)
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
/// pending body was queued (`since`), the delay, and the end of its rest after the last pass;
/// `None` when a pass is due.
fn time_to_pass(
    since: Option<Instant>,
    delay: Duration,
    rest_until: Option<Instant>,
    now: Instant,
) -> Option<Duration> {
    let since = since?;
    let due = (since + delay).max(rest_until.unwrap_or(since));
    match due.checked_duration_since(now) {
        Some(left) if !left.is_zero() => Some(left),
        _ => None,
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
                let wait = match (
                    shred.since,
                    time_to_pass(shred.since, strong.shred_delay, shred.rest_until, Instant::now()),
                ) {
                    (None, _) => IDLE_WAIT,
                    (Some(_), Some(wait)) => wait,
                    (Some(_), None) => break,
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
        // Nothing pending: no pass, whatever the time (the loop then sleeps IDLE_WAIT).
        assert_eq!(time_to_pass(None, delay, None, t0), None);
        // Pending since t0: sleep out the rest of the delay, counted from t0 whatever the time
        // of the wake-up, and pass once it is over.
        assert_eq!(time_to_pass(Some(t0), delay, None, t0), Some(delay));
        assert_eq!(
            time_to_pass(Some(t0), delay, None, t0 + Duration::from_millis(100)),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            time_to_pass(Some(t0), delay, None, t0 + delay - Duration::from_nanos(1)),
            Some(Duration::from_nanos(1))
        );
        assert_eq!(time_to_pass(Some(t0), delay, None, t0 + delay), None);
        assert_eq!(time_to_pass(Some(t0), delay, None, t0 + delay * 5), None);
        // No delay: every pending body is due at once.
        assert_eq!(time_to_pass(Some(t0), Duration::ZERO, None, t0), None);
    }

    #[test]
    fn after_a_long_pass_the_shredder_rests_whatever_is_queued() {
        let delay = Duration::from_millis(300);
        let t0 = Instant::now();
        // A pass of 2 s ended at t0: it rests 4 x 2 s, however early bodies were queued.
        let rest_until = Some(t0 + Duration::from_secs(2) * PASS_REST_FACTOR);
        assert_eq!(
            time_to_pass(Some(t0), delay, rest_until, t0 + delay),
            Some(Duration::from_secs(8) - delay)
        );
        assert_eq!(
            time_to_pass(Some(t0), delay, rest_until, t0 + Duration::from_secs(7)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            time_to_pass(Some(t0), delay, rest_until, t0 + Duration::from_secs(8)),
            None
        );
        // A rest already over never delays the shred delay's deadline.
        let over = Some(t0);
        assert_eq!(time_to_pass(Some(t0), delay, over, t0), Some(delay));
        // Bodies queued after the rest ended still wait out their delay.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(time_to_pass(Some(later), delay, rest_until, later), Some(delay));
    }

    #[test]
    fn compaction_takes_at_most_a_fifth_of_the_time_under_a_flood() {
        // A fake clock: every pass takes `pass` and bodies are always pending (a flood).
        let delay = Duration::from_millis(100);
        let pass = Duration::from_millis(700);
        let t0 = Instant::now();
        let (mut now, mut busy, mut rest_until) = (t0, Duration::ZERO, None);
        while now < t0 + Duration::from_secs(600) {
            let since = Some(now);
            now += time_to_pass(since, delay, rest_until, now).unwrap_or_default();
            now += pass;
            busy += pass;
            rest_until = Some(now + pass * PASS_REST_FACTOR);
        }
        let share = busy.as_secs_f64() / (now - t0).as_secs_f64();
        assert!(share <= 1.0 / (1.0 + f64::from(PASS_REST_FACTOR)) + 0.01, "{share}");
    }
}
