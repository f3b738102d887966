//! The node's store, closed off the async runtime.

use std::ops::Deref;

use tim_storage::Store;
use tokio::sync::oneshot;

/// Owns the node's [`Store`]. Closing a store joins its shredder thread and runs a last shred
/// pass (a flush and compactions: up to seconds), so when the last holder drops it on a runtime
/// worker the close is moved to the blocking pool instead of stalling that worker. `closed`
/// fires once the database is closed and the data dir is free.
pub(crate) struct ClosingStore {
    store: Option<Store>,
    closed: Option<oneshot::Sender<()>>,
}

impl ClosingStore {
    pub(crate) fn new(store: Store, closed: Option<oneshot::Sender<()>>) -> Self {
        ClosingStore {
            store: Some(store),
            closed,
        }
    }
}

impl Deref for ClosingStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        match &self.store {
            Some(store) => store,
            // Taken only in `drop`.
            None => unreachable!("the store is present until the holder drops"),
        }
    }
}

impl Drop for ClosingStore {
    fn drop(&mut self) {
        let (store, closed) = (self.store.take(), self.closed.take());
        let close = move || {
            drop(store);
            if let Some(closed) = closed {
                let _ = closed.send(());
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(close);
            }
            Err(_) => close(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn the_store_closes_on_the_blocking_pool_not_on_the_runtime_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), tim_storage::Config::default()).unwrap();
        let (tx, mut rx) = oneshot::channel();
        let runtime_thread = std::thread::current().id();
        drop(ClosingStore::new(store, Some(tx)));
        // Dropped on this (the runtime's only) thread, but not closed here: that happens on the
        // blocking pool, and this thread learns of it later.
        assert!(matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        rx.await.unwrap();
        assert_eq!(std::thread::current().id(), runtime_thread);
        // Closed: the data dir can be opened again.
        Store::open(dir.path(), tim_storage::Config::default()).unwrap();
    }

    #[test]
    fn outside_a_runtime_the_store_closes_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), tim_storage::Config::default()).unwrap();
        let (tx, mut rx) = oneshot::channel();
        drop(ClosingStore::new(store, Some(tx)));
        assert!(rx.try_recv().is_ok());
    }
}
