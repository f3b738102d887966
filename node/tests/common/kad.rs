//! A bare Kademlia peer speaking tim's DHT protocol to a node: it puts records to the node and
//! reads them back, and sees exactly what the node answered (stored, or the request reset).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::{
    kad::{self, store::MemoryStore},
    noise,
    swarm::SwarmEvent,
    tcp, yamux, PeerId, StreamProtocol, Swarm,
};
use tim_node::{
    protocol::{encode, AccountKey, RouteRecord},
    Node,
};

use super::{addr, WAIT};

pub const KAD: StreamProtocol = StreamProtocol::new("/tim/kad/3.0.0");

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The DHT key of an account's route record.
pub fn route_key(key: &AccountKey) -> kad::RecordKey {
    kad::RecordKey::new(&format!("/tim/route/{}", key.account_id()))
}

/// `key`'s route record naming `peer`, as a Kademlia record.
pub fn route(key: &AccountKey, peer: PeerId, seq: u64, expires_at: u64) -> kad::Record {
    let r = RouteRecord::sign(key, peer.to_bytes(), vec![], seq, expires_at, None).unwrap();
    kad::Record::new(route_key(key), encode(&r).unwrap())
}

pub struct KadPeer {
    swarm: Swarm<kad::Behaviour<MemoryStore>>,
    node: PeerId,
}

impl KadPeer {
    /// A Kademlia client connected to `node`.
    pub async fn connect(node: &Node) -> KadPeer {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .unwrap()
            .with_behaviour(|key| {
                let id = key.public().to_peer_id();
                let mut config = kad::Config::new(KAD);
                config.set_query_timeout(Duration::from_secs(10));
                kad::Behaviour::with_config(id, MemoryStore::new(id), config)
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm.behaviour_mut().set_mode(Some(kad::Mode::Client));
        let node_id = node.peer_id();
        swarm.behaviour_mut().add_address(&node_id, addr(node).await);
        swarm.dial(node_id).unwrap();
        tokio::time::timeout(WAIT, async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == node_id => return,
                    SwarmEvent::OutgoingConnectionError { error, .. } => panic!("could not connect: {error}"),
                    _ => {}
                }
            }
        })
        .await
        .expect("connected in time");
        KadPeer { swarm, node: node_id }
    }

    /// Drives the swarm until each of the queries `ids` reports its last step; returns every
    /// result of each, in the order of `ids`.
    async fn finish_all(&mut self, ids: &[kad::QueryId]) -> Vec<Vec<kad::QueryResult>> {
        let mut results: Vec<Vec<kad::QueryResult>> = ids.iter().map(|_| Vec::new()).collect();
        let mut left = ids.len();
        tokio::time::timeout(WAIT, async {
            while left > 0 {
                if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                    id: got, result, step, ..
                }) = self.swarm.select_next_some().await
                {
                    if let Some(i) = ids.iter().position(|id| *id == got) {
                        results[i].push(result);
                        if step.last {
                            left -= 1;
                        }
                    }
                }
            }
        })
        .await
        .expect("queries finished in time");
        results
    }

    async fn finish(&mut self, id: kad::QueryId) -> Vec<kad::QueryResult> {
        self.finish_all(&[id]).await.pop().unwrap_or_default()
    }

    /// Asks the node to store each record, all at once; returns for each whether the node
    /// answered that it stored it. A node that refuses a record never answers the request
    /// (libp2p-kad closes it), so a refusal shows as the put failing at the query timeout.
    pub async fn put_all(&mut self, records: Vec<kad::Record>) -> Vec<bool> {
        let node = self.node;
        let ids: Vec<_> = records
            .into_iter()
            .map(|r| {
                self.swarm
                    .behaviour_mut()
                    .put_record_to(r, std::iter::once(node), kad::Quorum::All)
            })
            .collect();
        let results = self.finish_all(&ids).await;
        results
            .iter()
            .map(|r| matches!(r.last(), Some(kad::QueryResult::PutRecord(Ok(_)))))
            .collect()
    }

    /// Asks the node to store `record`; returns whether the node answered that it stored it.
    pub async fn put(&mut self, record: kad::Record) -> bool {
        self.put_all(vec![record]).await[0]
    }

    /// The records the node serves under `key`.
    pub async fn get(&mut self, key: kad::RecordKey) -> Vec<kad::Record> {
        let id = self.swarm.behaviour_mut().get_record(key);
        let results = self.finish(id).await;
        results
            .into_iter()
            .filter_map(|r| match r {
                kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(found))) => Some(found.record),
                _ => None,
            })
            .collect()
    }
}
