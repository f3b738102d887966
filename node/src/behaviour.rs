//! The composed libp2p behaviour and the room-sync codec, under tim's own protocol names so tim
//! nodes form their own DHT and mesh (direct delivery's pipes are in `pipe`).

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{
    allow_block_list, gossipsub, identify, kad, ping, request_response, swarm::NetworkBehaviour, StreamProtocol,
};
use tim_protocol::{decode, encode, SyncPage, SyncRequest, MAX_SYNC_PAGE_LEN};

/// Kademlia protocol name: tim nodes only talk DHT with tim nodes.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/tim/kad/1.0.0");
/// Room sync protocol name.
pub(crate) const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/tim/sync/1.0.0");
/// Identify protocol version string.
pub(crate) const IDENTIFY_PROTOCOL: &str = "/tim/id/1.0.0";
/// Gossipsub protocol id prefix.
pub(crate) const GOSSIP_PREFIX: &str = "/tim/meshsub";
/// A sync request is a room id and two integers.
const MAX_SYNC_REQUEST_LEN: usize = 256;

/// Everything a tim node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Peers this node refuses to talk to (operator blocks, test partitions).
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Tells peers our listen addresses and protocols; feeds Kademlia's routing table.
    pub(crate) identify: identify::Behaviour,
    /// Keeps connections alive and measures round trips.
    pub(crate) ping: ping::Behaviour,
    /// Account routing: signed route records, and peer discovery.
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Room traffic; every message is validated by the application before it is forwarded.
    pub(crate) gossipsub: gossipsub::Behaviour,
    /// Direct messages and control messages: streams handed to `pipe`'s tasks.
    pub(crate) direct: libp2p_stream::Behaviour,
    /// Room catch-up: pages of a member's room log.
    pub(crate) sync: request_response::Behaviour<SyncCodec>,
}

/// Request: one `SyncRequest` frame. Response: one `SyncPage` frame.
#[derive(Debug, Clone, Default)]
pub(crate) struct SyncCodec;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[async_trait::async_trait]
impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncPage;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncRequest> {
        decode(&read_limited(io, MAX_SYNC_REQUEST_LEN).await?).map_err(invalid)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncPage> {
        decode(&read_limited(io, MAX_SYNC_PAGE_LEN).await?).map_err(invalid)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncRequest,
    ) -> io::Result<()> {
        io.write_all(&encode(&req).map_err(invalid)?).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SyncPage,
    ) -> io::Result<()> {
        io.write_all(&encode(&res).map_err(invalid)?).await?;
        io.close().await
    }
}

async fn read_limited<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(max as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame over the size limit"));
    }
    Ok(buf)
}
