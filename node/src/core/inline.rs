//! The node's one slot for short store jobs done in place, in the calling async task.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Lets an async task (a pipe's, or a gossip item's) run a short store job itself instead of
/// handing it to the blocking pool: a lone item's latency is mostly thread hand-offs, not work.
/// One job at a time per node, so at most one runtime worker is ever busy with tim's store work
/// and the swarm and other tasks keep the rest; under load (the slot taken) jobs go to the
/// blocking pool as usual. Off when every write waits for an fsync.
#[derive(Clone)]
pub(crate) struct Inline {
    slot: Arc<Semaphore>,
    enabled: bool,
}

impl Inline {
    pub(crate) fn new(enabled: bool) -> Self {
        Inline {
            slot: Arc::new(Semaphore::new(1)),
            enabled,
        }
    }

    /// The slot, if it is free (and in-place jobs are enabled): hold it while the job runs.
    pub(crate) fn slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if !self.enabled {
            return None;
        }
        self.slot.try_acquire().ok()
    }

    /// Runs `job` here and now if the slot is free; `None` if it must go elsewhere.
    pub(crate) fn try_run<T>(&self, job: impl FnOnce() -> T) -> Option<T> {
        let _slot = self.slot()?;
        Some(job())
    }
}
