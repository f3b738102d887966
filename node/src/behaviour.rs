//! The composed libp2p behaviour and the direct-delivery codec, under tim's own protocol names so
//! tim nodes form their own DHT and mesh.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{
    allow_block_list, gossipsub, identify, kad, ping, request_response, swarm::NetworkBehaviour, StreamProtocol,
};
use tim_protocol::{decode, encode, Ack, SyncPage, SyncRequest, MAX_FRAME_LEN, MAX_SYNC_PAGE_LEN};

/// Kademlia protocol name: tim nodes only talk DHT with tim nodes.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/tim/kad/1.0.0");
/// Direct (1:1) delivery protocol name.
pub(crate) const DIRECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/tim/direct/1.0.0");
/// Room sync protocol name.
pub(crate) const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/tim/sync/1.0.0");
/// Identify protocol version string.
pub(crate) const IDENTIFY_PROTOCOL: &str = "/tim/id/1.0.0";
/// Gossipsub protocol id prefix.
pub(crate) const GOSSIP_PREFIX: &str = "/tim/meshsub";
/// An ack frame is a handful of bytes; refuse anything longer.
const MAX_ACK_LEN: usize = 64;
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
    /// Direct messages and control messages, each answered with an `Ack`.
    pub(crate) direct: request_response::Behaviour<DirectCodec>,
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

/// Request: one `Envelope` frame (the stream's end delimits it). Response: one `Ack` frame.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirectCodec;

async fn read_limited<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(max as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame over the size limit"));
    }
    Ok(buf)
}

#[async_trait::async_trait]
impl request_response::Codec for DirectCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Ack;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        // Decoding and verification happen off the swarm task; here only the size is enforced.
        read_limited(io, MAX_FRAME_LEN).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Ack> {
        decode(&read_limited(io, MAX_ACK_LEN).await?).map_err(invalid)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Ack,
    ) -> io::Result<()> {
        io.write_all(&encode(&res).map_err(invalid)?).await?;
        io.close().await
    }
}
