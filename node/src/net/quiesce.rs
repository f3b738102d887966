//! Waiting, at shutdown, for every task that holds one of the loop's in-flight permits.

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

/// Waits until all `permits` of `inflight` are free, reading and dropping whatever arrives on
/// `reports` and `events` meanwhile: a task may hold its permit while it waits for room in one of
/// those channels, which the stopping loop no longer reads, and would otherwise wait forever.
pub(super) async fn wait_until_idle<R, E>(
    inflight: &Arc<Semaphore>,
    permits: u32,
    reports: &mut mpsc::Receiver<R>,
    events: &mut mpsc::Receiver<E>,
) {
    let all = inflight.acquire_many(permits);
    tokio::pin!(all);
    let (mut reports_open, mut events_open) = (true, true);
    loop {
        tokio::select! {
            _ = &mut all => return,
            report = reports.recv(), if reports_open => reports_open = report.is_some(),
            event = events.recv(), if events_open => events_open = event.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    /// More tasks than the report channel holds, each keeping its permit until its report is
    /// sent: waiting for the permits alone would never end.
    #[tokio::test]
    async fn tasks_blocked_on_a_full_report_channel_still_let_shutdown_finish() {
        const TASKS: u32 = 8;
        let inflight = Arc::new(Semaphore::new(TASKS as usize));
        let (reports_tx, mut reports_rx) = mpsc::channel::<u32>(1);
        let (_events_tx, mut events_rx) = mpsc::channel::<()>(1);
        for i in 0..TASKS {
            let permit = inflight.clone().try_acquire_owned().unwrap();
            let reports = reports_tx.clone();
            tokio::spawn(async move {
                let _ = reports.send(i).await;
                drop(permit);
            });
        }
        tokio::time::timeout(
            Duration::from_secs(10),
            wait_until_idle(&inflight, TASKS, &mut reports_rx, &mut events_rx),
        )
        .await
        .expect("shutdown waited forever for tasks stuck on a full channel");
        assert_eq!(inflight.available_permits(), TASKS as usize);
    }
}
