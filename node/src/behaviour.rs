//! The composed libp2p behaviour and the direct-delivery codec, under tim's own protocol names so
//! tim nodes form their own DHT and mesh.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{
    gossipsub, identify, kad, ping, request_response, swarm::NetworkBehaviour, StreamProtocol,
};
use tim_protocol::{decode, encode, Ack, MAX_FRAME_LEN};

/// Kademlia protocol name: tim nodes only talk DHT with tim nodes.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/tim/kad/1.0.0");
/// Direct (1:1) delivery protocol name.
pub(crate) const DIRECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/tim/direct/1.0.0");
/// Identify protocol version string.
pub(crate) const IDENTIFY_PROTOCOL: &str = "/tim/id/1.0.0";
/// Gossipsub protocol id prefix.
pub(crate) const GOSSIP_PREFIX: &str = "/tim/meshsub";
/// An ack frame is a handful of bytes; refuse anything longer.
const MAX_ACK_LEN: usize = 64;

/// Everything a tim node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
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
}

/// Request: one `Envelope` frame (the stream's end delimits it). Response: one `Ack` frame.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirectCodec;

async fn read_limited<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(max as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame over the size limit",
        ));
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

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Ack> {
        let bytes = read_limited(io, MAX_ACK_LEN).await?;
        decode(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
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
        let bytes = encode(&res).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        io.write_all(&bytes).await?;
        io.close().await
    }
}
