//! Direct delivery over pipes: one long-lived stream per peer (`/tim/direct/2.0.0`) carrying
//! length-prefixed [`PipeFrame`]s, requests tagged with ids and answers naming them. A message
//! costs no stream negotiation, and on the receiving side it never passes through the swarm task:
//! the pipe's own task reads it, verifies and stores it, and answers. Store work runs on the
//! blocking pool, or in the pipe's task itself when nothing else does (`core::Inline`), which
//! saves the two thread hand-offs that dominate a lone message's round trip.

use std::{collections::HashMap, sync::Arc, time::Duration};

use asynchronous_codec::{Bytes, BytesMut, Decoder, Framed};
use futures::{stream::FuturesUnordered, AsyncReadExt, AsyncWriteExt, SinkExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use libp2p_stream::{Control, IncomingStreams};
use tim_protocol::{decode, encode, Ack, Code, PipeFrame, Via};
use tokio::{
    sync::{mpsc, Semaphore},
    task::JoinHandle,
    time::Instant,
};
use tracing::debug;

use super::{
    accept::{self, SharedPeerBook},
    budget::Limits,
    deadline::{StreamClock, Timeouts, FRAME_TIMEOUT},
    frame::{self, FrameCodec, MAX_ANSWER_FRAME, MAX_REQUEST_FRAME},
};
use crate::{core::Core, delivery::DeliveryOutcome};

/// The direct-delivery protocol: one long-lived pipe per peer.
pub(crate) const DIRECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/tim/direct/2.0.0");
/// Requests one inbound pipe verifies and stores at once; it stops reading beyond that.
const PIPE_CONCURRENCY: usize = 64;
/// Most inbound pipes from one peer (one per remote node is normal; a spare for a reconnect).
pub(crate) const MAX_PIPES_PER_PEER: usize = 4;
/// Most frames written before one flush.
const MAX_BATCH: usize = 64;
/// Bytes an inbound pipe reads from its stream at a time.
const READ_CHUNK: usize = 8 * 1024;

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

/// This node's side of an outbound pipe: requests written, only answers read.
fn framed(stream: Stream) -> Framed<Stream, FrameCodec> {
    Framed::new(stream, FrameCodec::new(MAX_ANSWER_FRAME, MAX_REQUEST_FRAME))
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

/// Accepts inbound pipes and serves each in its own task, within `limits` (shared by standing
/// when full, see `budget`) and each within `timeouts`. Ends (and aborts every pipe it serves) when aborted.
pub(crate) fn serve_inbound(
    incoming: IncomingStreams,
    core: Arc<Core>,
    inflight: Arc<Semaphore>,
    peers: SharedPeerBook,
    limits: Limits,
    timeouts: Timeouts,
) -> JoinHandle<()> {
    accept::serve_each(incoming, "pipe", limits, peers, move |peer, stream| {
        let (core, inflight) = (core.clone(), inflight.clone());
        async move {
            if let Err(e) = serve(stream, &core, &inflight, timeouts).await {
                debug!(%peer, error = %e, "inbound pipe ended");
            }
        }
    })
}

/// Writes the answer to request `id`, within [`FRAME_TIMEOUT`] (a peer that stops reading its
/// answers loses its pipe).
async fn answer_on(pipe: &mut Stream, id: u64, ack: Ack) -> Result<(), String> {
    let frame = encode(&PipeFrame::Answer { id, ack }).map_err(|e| e.to_string())?;
    let mut out = BytesMut::new();
    asynchronous_codec::Encoder::encode(&mut FrameCodec::new(0, MAX_ANSWER_FRAME), Bytes::from(frame), &mut out)
        .map_err(|e| e.to_string())?;
    let write = async {
        pipe.write_all(&out).await?;
        pipe.flush().await
    };
    match tokio::time::timeout(FRAME_TIMEOUT, write).await {
        Ok(written) => written.map_err(|e| e.to_string()),
        Err(_) => Err("the peer did not read its answer in time".into()),
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Serves one inbound pipe: each request is verified and stored (here if `core::Inline` allows, else
/// on the blocking pool, at most [`PIPE_CONCURRENCY`] at once; always with a node-wide in-flight
/// permit: without one it is answered `5104 overloaded`), and answered as soon as it is done. The
/// pipe is closed when the peer breaks one of `timeouts` (see `deadline::StreamClock`).
async fn serve(
    mut stream: Stream,
    core: &Arc<Core>,
    inflight: &Arc<Semaphore>,
    timeouts: Timeouts,
) -> Result<(), String> {
    let mut codec = FrameCodec::new(MAX_REQUEST_FRAME, 0);
    // What has arrived and not yet been taken as frames: at most one frame and one chunk.
    let mut buffer = BytesMut::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut clock = StreamClock::new(timeouts, now());
    let mut working = FuturesUnordered::new();
    // Whether the peer may still send (it has not closed its side), and whether this node reads.
    let mut open = true;
    let mut was_reading = true;
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    loop {
        // Take every complete frame there is room to work on.
        while working.len() < PIPE_CONCURRENCY {
            let Some(frame) = codec.decode(&mut buffer).map_err(|e| e.to_string())? else {
                break;
            };
            clock.frame_done(now());
            let (id, envelope) = match decode::<PipeFrame>(&frame).map_err(|e| e.to_string())? {
                PipeFrame::Request { id, envelope } => (id, envelope),
                PipeFrame::Answer { .. } => return Err("peer sent an answer on its own pipe".into()),
            };
            let Ok(permit) = inflight.clone().try_acquire_owned() else {
                answer_on(
                    &mut stream,
                    id,
                    Ack::Refused {
                        code: Code::Overloaded.number(),
                    },
                )
                .await?;
                continue;
            };
            if let Some(ack) = core.inline.try_run(|| core.inbound(&envelope, &Via::Direct).ack()) {
                drop(permit);
                answer_on(&mut stream, id, ack).await?;
                clock.activity(now());
                continue;
            }
            let core = core.clone();
            working.push(tokio::task::spawn_blocking(move || {
                let ack = core.inbound(&envelope, &Via::Direct).ack();
                drop(permit);
                (id, ack)
            }));
        }
        let reading = open && working.len() < PIPE_CONCURRENCY;
        if reading && !was_reading {
            clock.resumed(now());
        }
        was_reading = reading;
        if reading {
            clock.buffered(now(), frame::in_frame(&codec, buffer.len()));
        }
        if !open && working.is_empty() {
            if frame::in_frame(&codec, buffer.len()) {
                return Err("the peer closed its side inside a frame".into());
            }
            break;
        }
        let deadline = clock.deadline(reading, !working.is_empty());
        if let Some(at) = deadline {
            timer.as_mut().reset(Instant::from_std(at));
        }
        tokio::select! {
            Some(answer) = working.next(), if !working.is_empty() => {
                let (id, ack): (u64, Ack) = match answer {
                    Ok(answer) => answer,
                    Err(e) => return Err(format!("verification task failed: {e}")),
                };
                answer_on(&mut stream, id, ack).await?;
                clock.activity(now());
            }
            read = stream.read(&mut chunk), if reading => {
                match read.map_err(|e| e.to_string())? {
                    0 => open = false,
                    n => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            _ = &mut timer, if deadline.is_some() => {
                if let Some(broken) = clock.expired(now(), reading, !working.is_empty()) {
                    return Err(broken.to_string());
                }
            }
        }
    }
    let _ = stream.close().await;
    Ok(())
}
