//! Direct delivery over pipes: one long-lived stream per peer (`/tim/direct/2.0.0`) carrying
//! length-prefixed [`PipeFrame`]s, requests tagged with ids and answers naming them. A message
//! costs no stream negotiation, and on the receiving side it never passes through the swarm task:
//! the pipe's own task reads it, verifies and stores it, and answers. Store work runs on the
//! blocking pool, or in the pipe's task itself when nothing else does (`core::Inline`), which
//! saves the two thread hand-offs that dominate a lone message's round trip.

use std::{collections::HashMap, sync::Arc, time::Duration};

use asynchronous_codec::{Bytes, Framed};
use futures::{stream::FuturesUnordered, SinkExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use libp2p_stream::{Control, IncomingStreams};
use tim_protocol::{decode, encode, Ack, Code, PipeFrame, Via, Wire};
use tokio::{
    sync::{mpsc, Semaphore},
    task::JoinHandle,
};
use tracing::debug;
use unsigned_varint::codec::UviBytes;

use super::accept::{self, Limits};
use crate::{core::Core, delivery::DeliveryOutcome};

/// The direct-delivery protocol: one long-lived pipe per peer.
pub(crate) const DIRECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/tim/direct/2.0.0");
/// Requests one inbound pipe verifies and stores at once; it stops reading beyond that.
const PIPE_CONCURRENCY: usize = 64;
/// Most inbound pipes from one peer (one per remote node is normal; a spare for a reconnect).
const MAX_PIPES_PER_PEER: usize = 4;
/// Most inbound pipes served at once.
const MAX_INBOUND_PIPES: usize = 1024;
/// Most frames written before one flush.
const MAX_BATCH: usize = 64;

/// What an outbound pipe reports back to the event loop.
#[derive(Debug)]
pub(crate) enum PipeEvent {
    /// The peer answered request `id`; `recorded` when the pipe already wrote the positive
    /// outcome (outbox entry done, `delivered` emitted).
    Answer { id: u64, ack: Ack, recorded: bool },
    /// The pipe is gone (could not open, closed or broke): its unanswered requests failed.
    Closed {
        peer: PeerId,
        generation: u64,
        reason: String,
    },
}

fn framed(stream: Stream) -> Framed<Stream, UviBytes<Bytes>> {
    let mut codec = UviBytes::default();
    codec.set_max_len(PipeFrame::MAX_LEN);
    Framed::new(stream, codec)
}

/// A request for the pipe's task: its id, the envelope frame, and the outcome to record on a
/// positive answer (none for a relayed frame).
type Request = (u64, Vec<u8>, Option<DeliveryOutcome>);

/// The event loop's side of an outbound pipe: a queue into its task. Its bookkeeping (what is in
/// flight, when it was last used) lives in the delivery state machine.
pub(crate) struct Pipe {
    pub(crate) generation: u64,
    queue: mpsc::UnboundedSender<Request>,
    task: JoinHandle<()>,
}

impl Pipe {
    /// Opens a pipe to `peer` (dialing it if needed) in its own task; answers and the pipe's end
    /// come back through `events`. The queue is unbounded because the event loop bounds what it
    /// sends: every queued request is an outbox entry or a counted relay, both capped.
    pub(crate) fn open(
        mut streams: Control,
        core: Arc<Core>,
        peer: PeerId,
        generation: u64,
        events: mpsc::Sender<PipeEvent>,
        open_timeout: Duration,
    ) -> Self {
        let (queue, mut requests) = mpsc::unbounded_channel::<Request>();
        let task = tokio::spawn(async move {
            let reason = match tokio::time::timeout(open_timeout, streams.open_stream(peer, DIRECT_PROTOCOL)).await {
                Err(_) => "timed out opening the stream".to_string(),
                Ok(Err(e)) => format!("could not open the stream: {e}"),
                Ok(Ok(stream)) => {
                    let (mut sink, mut source) = framed(stream).split();
                    // What each unanswered request finishes, shared by the two halves.
                    let unanswered = std::sync::Mutex::new(HashMap::<u64, DeliveryOutcome>::new());
                    let write = async {
                        while let Some(first) = requests.recv().await {
                            let mut next = Some(first);
                            let mut batch = 0;
                            while let Some((id, envelope, finished)) = next.take() {
                                if let Some(f) = finished {
                                    if let Ok(mut map) = unanswered.lock() {
                                        map.insert(id, f);
                                    }
                                }
                                let frame = encode(&PipeFrame::Request { id, envelope }).map_err(|e| e.to_string())?;
                                sink.feed(Bytes::from(frame)).await.map_err(|e| e.to_string())?;
                                batch += 1;
                                if batch < MAX_BATCH {
                                    next = requests.try_recv().ok();
                                }
                            }
                            sink.flush().await.map_err(|e| e.to_string())?;
                        }
                        let _ = sink.close().await;
                        Ok::<_, String>("closed by this node".to_string())
                    };
                    let read = async {
                        while let Some(frame) = source.next().await {
                            let frame = frame.map_err(|e| e.to_string())?;
                            match decode::<PipeFrame>(&frame).map_err(|e| e.to_string())? {
                                PipeFrame::Answer { id, ack } => {
                                    let entry = unanswered.lock().ok().and_then(|mut map| map.remove(&id));
                                    let recorded = match (ack, entry) {
                                        (Ack::Stored | Ack::Duplicate, Some(f)) => {
                                            core.inline.try_run(|| core.record_outcomes(&[f])).is_some()
                                        }
                                        _ => false,
                                    };
                                    if events.send(PipeEvent::Answer { id, ack, recorded }).await.is_err() {
                                        return Ok("node stopping".to_string());
                                    }
                                }
                                PipeFrame::Request { .. } => return Err("peer sent a request on our pipe".into()),
                            }
                        }
                        Ok::<_, String>("closed by the peer".to_string())
                    };
                    tokio::pin!(write, read);
                    match futures::future::select(write, read).await {
                        futures::future::Either::Left((r, _)) | futures::future::Either::Right((r, _)) => {
                            r.unwrap_or_else(|e| e)
                        }
                    }
                }
            };
            let _ = events
                .send(PipeEvent::Closed {
                    peer,
                    generation,
                    reason,
                })
                .await;
        });
        Pipe {
            generation,
            queue,
            task,
        }
    }

    /// Queues request `id`. If the pipe's task has already ended, its `Closed` event (still on
    /// the way) fails the request like every other it carried.
    pub(crate) fn send(&self, id: u64, envelope: Vec<u8>, outcome: Option<DeliveryOutcome>) {
        let _ = self.queue.send((id, envelope, outcome));
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // Unanswered requests are failed by whoever drops the pipe.
        self.task.abort();
    }
}

/// Accepts inbound pipes and serves each in its own task, within the per-peer and total limits.
/// Ends (and aborts every pipe it serves) when aborted.
pub(crate) fn serve_inbound(incoming: IncomingStreams, core: Arc<Core>, inflight: Arc<Semaphore>) -> JoinHandle<()> {
    let limits = Limits {
        total: MAX_INBOUND_PIPES,
        per_peer: MAX_PIPES_PER_PEER,
    };
    accept::serve_each(incoming, "pipe", limits, move |peer, stream| {
        let (core, inflight) = (core.clone(), inflight.clone());
        async move {
            if let Err(e) = serve(stream, &core, &inflight).await {
                debug!(%peer, error = %e, "inbound pipe ended");
            }
        }
    })
}

/// Writes the answer to request `id`.
async fn answer_on(pipe: &mut Framed<Stream, UviBytes<Bytes>>, id: u64, ack: Ack) -> Result<(), String> {
    let frame = encode(&PipeFrame::Answer { id, ack }).map_err(|e| e.to_string())?;
    pipe.send(Bytes::from(frame)).await.map_err(|e| e.to_string())
}

/// Serves one inbound pipe: each request is verified and stored (here if `core::Inline` allows, else
/// on the blocking pool, at most [`PIPE_CONCURRENCY`] at once; always with a node-wide in-flight
/// permit: without one it is answered `5104 overloaded`), and answered as soon as it is done.
async fn serve(stream: Stream, core: &Arc<Core>, inflight: &Arc<Semaphore>) -> Result<(), String> {
    let mut pipe = framed(stream);
    let mut working = FuturesUnordered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            Some(answer) = working.next(), if !working.is_empty() => {
                let (id, ack): (u64, Ack) = match answer {
                    Ok(answer) => answer,
                    Err(e) => return Err(format!("verification task failed: {e}")),
                };
                answer_on(&mut pipe, id, ack).await?;
            }
            frame = pipe.next(), if reading && working.len() < PIPE_CONCURRENCY => {
                let Some(frame) = frame else {
                    reading = false;
                    continue;
                };
                let frame = frame.map_err(|e| e.to_string())?;
                let (id, envelope) = match decode::<PipeFrame>(&frame).map_err(|e| e.to_string())? {
                    PipeFrame::Request { id, envelope } => (id, envelope),
                    PipeFrame::Answer { .. } => return Err("peer sent an answer on its own pipe".into()),
                };
                let Ok(permit) = inflight.clone().try_acquire_owned() else {
                    answer_on(&mut pipe, id, Ack::Refused { code: Code::Overloaded.number() }).await?;
                    continue;
                };
                if let Some(ack) = core.inline.try_run(|| core.inbound(&envelope, &Via::Direct).ack()) {
                    drop(permit);
                    answer_on(&mut pipe, id, ack).await?;
                    continue;
                }
                let core = core.clone();
                working.push(tokio::task::spawn_blocking(move || {
                    let ack = core.inbound(&envelope, &Via::Direct).ack();
                    drop(permit);
                    (id, ack)
                }));
            }
            else => break,
        }
    }
    let _ = pipe.close().await;
    Ok(())
}
