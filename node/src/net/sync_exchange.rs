//! Room catch-up over `/tim/sync/1.0.0`: one stream per exchange, the asking member writes a
//! `SyncRequest` frame and closes its side, the serving member answers one `SyncPage` frame and
//! closes. Runs on `libp2p_stream` like direct pipes, so the swarm carries no request-response
//! behaviour (libp2p polls every behaviour's handler on every wake-up of every connection).

use std::{io, sync::Arc, time::Duration};

use futures::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use libp2p_stream::{Control, IncomingStreams};
use tim_protocol::{decode, encode, SyncPage, SyncRequest, MAX_SYNC_PAGE_LEN};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
};
use tracing::debug;

use super::{
    accept::{self, SharedPeerBook},
    budget::Limits,
    deadline::FIRST_FRAME_TIMEOUT,
};
use crate::core::Core;

/// The room sync protocol.
pub(crate) const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/tim/sync/1.0.0");
/// A sync request is a room id and two integers.
const MAX_SYNC_REQUEST_LEN: usize = 256;
/// Most exchanges served at once, in all and for one peer; streams beyond that are dropped (the
/// asker's exchange fails at once and it syncs again later). The per-peer bound keeps one peer
/// that opens streams and never finishes its request from holding every slot until the timeout.
const MAX_SERVING: usize = 64;
const MAX_SERVING_PER_PEER: usize = 8;

/// Reads the whole stream (the peer closes its side after one frame), refusing more than `max`
/// bytes.
async fn read_limited<T: AsyncRead + Unpin>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(max as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame over the size limit"));
    }
    Ok(buf)
}

/// Asks `peer` for the page of `request.room` after `request.after`, within `timeout`. A page with
/// more items than asked for is refused (its size alone is bounded by the frame limit).
pub(crate) async fn fetch(
    mut streams: Control,
    peer: PeerId,
    request: SyncRequest,
    timeout: Duration,
) -> Result<SyncPage, String> {
    let exchange = async {
        let mut stream = streams
            .open_stream(peer, SYNC_PROTOCOL)
            .await
            .map_err(|e| e.to_string())?;
        let frame = encode(&request).map_err(|e| e.to_string())?;
        stream.write_all(&frame).await.map_err(|e| e.to_string())?;
        stream.close().await.map_err(|e| e.to_string())?;
        let page = read_limited(&mut stream, MAX_SYNC_PAGE_LEN)
            .await
            .map_err(|e| e.to_string())?;
        let page = decode::<SyncPage>(&page).map_err(|e| e.to_string())?;
        if page.frames.len() > request.limit as usize {
            return Err(format!(
                "a page of {} items, over the {} asked for",
                page.frames.len(),
                request.limit
            ));
        }
        Ok(page)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no page within {timeout:?}"))?
}

/// Serves inbound sync streams, each in its own task, at most [`MAX_SERVING`] at once (shared by
/// standing when full, see `budget`) and [`MAX_SERVING_PER_PEER`] for one peer, each within `timeout` and
/// its request within [`FIRST_FRAME_TIMEOUT`]. Ends (and aborts what it serves) when aborted.
pub(crate) fn serve_inbound(
    incoming: IncomingStreams,
    core: Arc<Core>,
    inflight: Arc<Semaphore>,
    peers: SharedPeerBook,
    timeout: Duration,
) -> JoinHandle<()> {
    let limits = Limits {
        total: MAX_SERVING,
        per_peer: MAX_SERVING_PER_PEER,
    };
    accept::serve_each(incoming, "sync", limits, peers, move |peer, stream| {
        // A node-wide in-flight permit, taken now: without one the page is empty
        // (`more: false`), so the asker stops and syncs again later.
        let permit = inflight.clone().try_acquire_owned().ok();
        let core = core.clone();
        async move {
            match tokio::time::timeout(timeout, answer(stream, peer, core, permit)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, error = %e, "sync exchange failed"),
                Err(_) => debug!(%peer, "sync exchange timed out"),
            }
        }
    })
}

/// Reads one request (the whole of it within [`FIRST_FRAME_TIMEOUT`]) and writes its page (read
/// from the store on the blocking pool).
async fn answer(
    mut stream: Stream,
    peer: PeerId,
    core: Arc<Core>,
    permit: Option<OwnedSemaphorePermit>,
) -> Result<(), String> {
    let request = tokio::time::timeout(FIRST_FRAME_TIMEOUT, read_limited(&mut stream, MAX_SYNC_REQUEST_LEN))
        .await
        .map_err(|_| "no complete request in time".to_string())?
        .map_err(|e| e.to_string())?;
    let request: SyncRequest = decode(&request).map_err(|e| e.to_string())?;
    let page = match permit {
        Some(permit) => tokio::task::spawn_blocking(move || {
            let page = core.serve_sync(&request, &peer);
            drop(permit);
            page
        })
        .await
        .map_err(|e| e.to_string())?,
        None => SyncPage {
            frames: Vec::new(),
            next: request.after,
            more: false,
        },
    };
    let frame = encode(&page).map_err(|e| e.to_string())?;
    stream.write_all(&frame).await.map_err(|e| e.to_string())?;
    stream.close().await.map_err(|e| e.to_string())
}
