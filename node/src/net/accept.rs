//! Serves the inbound streams of one protocol (direct pipes, room sync), each in its own task,
//! within a total and a per-peer limit; a stream over a limit is dropped (its peer sees it fail).

use std::{collections::HashMap, future::Future};

use futures::StreamExt;
use libp2p::{PeerId, Stream};
use libp2p_stream::IncomingStreams;
use tokio::task::{JoinHandle, JoinSet};
use tracing::debug;

/// How many streams of one protocol are served at once.
pub(crate) struct Limits {
    pub(crate) total: usize,
    pub(crate) per_peer: usize,
}

/// Serves every stream of `incoming` with `serve` (called when the stream is taken, its future
/// run in a task of its own), within `limits`. Ends (and aborts what it serves) when aborted.
pub(crate) fn serve_each<F, Fut>(
    mut incoming: IncomingStreams,
    what: &'static str,
    limits: Limits,
    serve: F,
) -> JoinHandle<()>
where
    F: Fn(PeerId, Stream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut serving: JoinSet<PeerId> = JoinSet::new();
        let mut per_peer: HashMap<PeerId, usize> = HashMap::new();
        loop {
            tokio::select! {
                Some(ended) = serving.join_next(), if !serving.is_empty() => {
                    if let Ok(peer) = ended {
                        if let Some(n) = per_peer.get_mut(&peer) {
                            *n -= 1;
                            if *n == 0 {
                                per_peer.remove(&peer);
                            }
                        }
                    }
                }
                next = incoming.next() => {
                    let Some((peer, stream)) = next else { break };
                    let count = per_peer.get(&peer).copied().unwrap_or(0);
                    if count >= limits.per_peer || serving.len() >= limits.total {
                        debug!(%peer, what, "refused an inbound stream over the limit");
                        continue;
                    }
                    per_peer.insert(peer, count + 1);
                    let work = serve(peer, stream);
                    serving.spawn(async move {
                        work.await;
                        peer
                    });
                }
            }
        }
    })
}
