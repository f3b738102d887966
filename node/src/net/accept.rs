//! Serves the inbound streams of one protocol (direct pipes, room sync), each in its own task,
//! within the slots `budget::Admission` hands out: a stream refused a slot is dropped (its peer
//! sees it fail), and one that another stream displaces is aborted. A served task that ends
//! in any way, a panic included, frees its slot.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
};

use futures::{Stream, StreamExt};
use libp2p::PeerId;
use tokio::task::{AbortHandle, Id, JoinHandle, JoinSet};
use tracing::{debug, warn};

use super::budget::{Admission, Decision, Limits, PeerBook, Source, Standing};

/// What the accept tasks know of peers, shared with the event loop, which keeps it (the peers it
/// chose to talk to, the sources of connected ones).
pub(crate) type SharedPeerBook = Arc<Mutex<PeerBook>>;

/// Serves every stream of `incoming` with `serve` (called when the stream is taken, its future
/// run in a task of its own), within `limits`, shared as `budget` decides by what `peers` says. Ends (and
/// aborts what it serves) when aborted.
pub(crate) fn serve_each<I, T, F, Fut>(
    mut incoming: I,
    what: &'static str,
    limits: Limits,
    peers: SharedPeerBook,
    serve: F,
) -> JoinHandle<()>
where
    I: Stream<Item = (PeerId, T)> + Unpin + Send + 'static,
    T: Send + 'static,
    F: Fn(PeerId, T) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut admission = Admission::new(limits);
        let mut serving: JoinSet<()> = JoinSet::new();
        // Each served task's slot, and each slot's task (to abort it when displaced).
        let mut slot_of: HashMap<Id, u64> = HashMap::new();
        let mut task_of: HashMap<u64, AbortHandle> = HashMap::new();
        loop {
            tokio::select! {
                Some(ended) = serving.join_next_with_id(), if !serving.is_empty() => {
                    let id = match ended {
                        Ok((id, ())) => id,
                        Err(e) => {
                            if e.is_panic() {
                                warn!(what, "a task serving an inbound stream panicked");
                            }
                            e.id()
                        }
                    };
                    if let Some(slot) = slot_of.remove(&id) {
                        task_of.remove(&slot);
                        admission.release(slot);
                    }
                }
                next = incoming.next() => {
                    let Some((peer, stream)) = next else { break };
                    let standing = match peers.lock() {
                        Ok(book) => book.standing(&peer),
                        Err(_) => Standing::Stranger(Source::Unknown),
                    };
                    match admission.admit(peer, standing) {
                        Decision::Refuse(why) => {
                            debug!(%peer, what, ?why, open = admission.len(), "refused an inbound stream over the limit");
                        }
                        Decision::Admit { slot, evict } => {
                            if let Some(old) = evict {
                                if let Some(task) = task_of.remove(&old) {
                                    slot_of.remove(&task.id());
                                    task.abort();
                                }
                                debug!(%peer, what, ?standing, "a stream displaced a stranger's");
                            }
                            let task = serving.spawn(serve(peer, stream));
                            slot_of.insert(task.id(), slot);
                            task_of.insert(slot, task);
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::channel::mpsc;
    use tokio::sync::mpsc as tmpsc;

    use libp2p::Multiaddr;

    use super::*;

    /// A stream the test hands in: its number, and where its task reports that it runs.
    type Item = (PeerId, (u32, tmpsc::UnboundedSender<u32>));

    fn server(limits: Limits, known: SharedPeerBook) -> (mpsc::UnboundedSender<Item>, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded::<Item>();
        let task = serve_each(
            rx,
            "test",
            limits,
            known,
            |_, (n, running): (u32, tmpsc::UnboundedSender<u32>)| async move {
                assert!(n != 0, "stream 0 panics its task");
                let _ = running.send(n);
                // Held until aborted.
                std::future::pending::<()>().await;
            },
        );
        (tx, task)
    }

    #[tokio::test]
    async fn a_panicking_serve_task_frees_its_peers_slot() {
        let (tx, task) = server(Limits { total: 8, per_peer: 1 }, SharedPeerBook::default());
        let peer = PeerId::random();
        let (running_tx, mut running) = tmpsc::unbounded_channel();
        tx.unbounded_send((peer, (0, running_tx.clone()))).unwrap();
        // Offered again until taken: the panicked task's slot must come free. A generous bound:
        // the panic hook prints a backtrace on this runtime's only thread, and symbolising it in
        // a debug build on a busy machine can take seconds.
        let taken = tokio::time::timeout(Duration::from_secs(60), async {
            for n in 1.. {
                tx.unbounded_send((peer, (n, running_tx.clone()))).unwrap();
                if let Ok(Some(n)) = tokio::time::timeout(Duration::from_millis(20), running.recv()).await {
                    return n;
                }
            }
            unreachable!()
        })
        .await;
        assert!(taken.is_ok(), "the panicked task's slot was never freed");
        task.abort();
    }

    #[tokio::test]
    async fn a_known_peer_displaces_a_stranger_and_the_strangers_task_ends() {
        let known = SharedPeerBook::default();
        let friend = PeerId::random();
        known.lock().unwrap().insert(friend);
        let (tx, task) = server(Limits { total: 1, per_peer: 4 }, known);
        let (running_tx, mut running) = tmpsc::unbounded_channel();
        let (stranger_tx, mut stranger_running) = tmpsc::unbounded_channel();
        tx.unbounded_send((PeerId::random(), (1, stranger_tx))).unwrap();
        assert_eq!(stranger_running.recv().await, Some(1));
        // Full: another stranger is refused, the known peer is served.
        tx.unbounded_send((PeerId::random(), (2, running_tx.clone()))).unwrap();
        tx.unbounded_send((friend, (3, running_tx))).unwrap();
        assert_eq!(running.recv().await, Some(3));
        // The displaced stranger's task was aborted: its sender is gone.
        assert_eq!(stranger_running.recv().await, None);
        task.abort();
    }

    #[tokio::test]
    async fn a_stranger_from_another_address_displaces_a_flood_from_one() {
        let book = SharedPeerBook::default();
        let at = |host: u8| -> Multiaddr { format!("/ip4/192.0.2.{host}/tcp/4001").parse().unwrap() };
        let flood: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let (fifth, newcomer) = (PeerId::random(), PeerId::random());
        {
            let mut book = book.lock().unwrap();
            for peer in flood.iter().chain([&fifth]) {
                book.connected(*peer, &at(1));
            }
            book.connected(newcomer, &at(2));
        }
        let (tx, task) = server(Limits { total: 4, per_peer: 4 }, book);
        let (flood_tx, mut flood_running) = tmpsc::unbounded_channel();
        for (n, peer) in (1..).zip(&flood) {
            tx.unbounded_send((*peer, (n, flood_tx.clone()))).unwrap();
        }
        drop(flood_tx);
        for _ in &flood {
            assert!(flood_running.recv().await.is_some());
        }
        // Full, all from one address: a fifth identity there is refused, a stranger from another
        // address is served in the place of the flood's oldest stream.
        let (late_tx, mut late_running) = tmpsc::unbounded_channel();
        tx.unbounded_send((fifth, (9, late_tx))).unwrap();
        assert_eq!(late_running.recv().await, None, "the flood's fifth identity was served");
        let (newcomer_tx, mut newcomer_running) = tmpsc::unbounded_channel();
        tx.unbounded_send((newcomer, (10, newcomer_tx))).unwrap();
        assert_eq!(newcomer_running.recv().await, Some(10));
        task.abort();
    }
}
