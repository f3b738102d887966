//! The scenarios, one module each, and the tim set-up they share.
use std::time::Duration;

use tim_node::{protocol::RoomId, Config, Events, Node};

use crate::STEP;

pub(crate) mod catchup;
pub(crate) mod direct;
pub(crate) mod processes;
pub(crate) mod room;
pub(crate) mod simulation;
pub(crate) mod storage;

/// Starts `n` tim nodes on loopback under `dir`, every one after the first bootstrapping from it,
/// each config changed by `configure` first.
pub(crate) async fn tim_nodes_with(
    n: usize,
    dir: &std::path::Path,
    configure: impl Fn(&mut Config),
) -> anyhow::Result<Vec<(Node, Events)>> {
    let mut c = Config::loopback(dir.join("0"));
    configure(&mut c);
    let first = Node::start(c).await?;
    let boot = first.0.status().await?.listen_addrs;
    let mut nodes = vec![first];
    for i in 1..n {
        let mut c = Config::loopback(dir.join(i.to_string()));
        c.bootstrap = boot.clone();
        configure(&mut c);
        nodes.push(Node::start(c).await?);
    }
    Ok(nodes)
}

/// Waits (at most `STEP`) until `node` sees at least `peers` peers in `room`.
pub(crate) async fn wait_room_peers(node: &Node, room: &RoomId, peers: usize) -> anyhow::Result<()> {
    tokio::time::timeout(STEP, async {
        loop {
            let s = node.status().await?;
            if s.rooms.iter().any(|r| r.room == *room && r.peers >= peers) {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?
}
