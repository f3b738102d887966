//! A bare libp2p peer (TCP + noise + yamux and raw streams only) that speaks tim's direct pipe
//! protocol to a node and reads its answers: a test sees exactly what the node answered to each
//! request, so it knows the node has processed them.

use std::{collections::HashMap, time::Duration};

use asynchronous_codec::{Bytes, Framed};
use futures::StreamExt;
use libp2p::{noise, swarm::SwarmEvent, tcp, yamux, PeerId, Stream, StreamProtocol, Swarm};
use tim_node::{
    protocol::{decode, encode, Ack, Envelope, Message, PipeFrame, Wire},
    Node,
};
use unsigned_varint::codec::UviBytes;

use super::{addr, WAIT};

pub const DIRECT: StreamProtocol = StreamProtocol::new("/tim/direct/2.0.0");

/// One direct pipe: length-prefixed `PipeFrame`s.
pub type Pipe = Framed<Stream, UviBytes<Bytes>>;

/// A bare swarm with a fresh identity: TCP + noise + yamux and raw streams only.
pub fn bare_swarm() -> Swarm<libp2p_stream::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// A bare peer dialing `node`, its swarm driven in a task.
pub async fn bare_peer(node: &Node) -> (libp2p_stream::Control, PeerId) {
    let mut swarm = bare_swarm();
    let control = swarm.behaviour().new_control();
    swarm.dial(addr(node).await).unwrap();
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::OutgoingConnectionError { error, .. } = swarm.select_next_some().await {
                panic!("bare peer could not connect: {error}");
            }
        }
    });
    (control, node.peer_id())
}

/// Opens a direct pipe to `peer`.
pub async fn open(control: &mut libp2p_stream::Control, peer: PeerId) -> Pipe {
    let stream = tokio::time::timeout(WAIT, control.open_stream(peer, DIRECT))
        .await
        .expect("pipe opened in time")
        .expect("node accepts pipes");
    let mut codec = UviBytes::default();
    codec.set_max_len(PipeFrame::MAX_LEN);
    Framed::new(stream, codec)
}

/// A request frame with id `id` carrying `m`.
pub fn request(id: u64, m: &Message) -> Bytes {
    request_frame(id, encode(&Envelope::Message(m.clone())).unwrap())
}

/// A request frame with id `id` carrying an already encoded envelope.
pub fn request_frame(id: u64, envelope: Vec<u8>) -> Bytes {
    Bytes::from(encode(&PipeFrame::Request { id, envelope }).unwrap())
}

/// Reads answers until one for each of `ids` arrived (any order); returns them by id.
pub async fn answers(pipe: &mut Pipe, ids: &[u64]) -> HashMap<u64, Ack> {
    let mut got = HashMap::new();
    tokio::time::timeout(WAIT, async {
        while got.len() < ids.len() {
            let frame = pipe.next().await.expect("pipe open").expect("readable");
            match decode::<PipeFrame>(&frame).unwrap() {
                PipeFrame::Answer { id, ack } => {
                    assert!(ids.contains(&id), "answer for an id never sent: {id}");
                    assert!(got.insert(id, ack).is_none(), "two answers for {id}");
                }
                other => panic!("node sent a request on our pipe: {other:?}"),
            }
        }
    })
    .await
    .expect("answers in time");
    got
}
