//! tim-node: a peer-to-peer instant-messaging node. One node per user or site; nodes form a
//! libp2p mesh where Kademlia routes "where is account X", gossipsub carries rooms, a long-lived
//! stream per peer (a pipe) carries 1:1 messages, and RocksDB keeps the history. Revokes and burns
//! are signed control messages every peer verifies before it tombstones its copy.
//!
//! Embed it with [`Node::start`], which returns a cloneable [`Node`] handle and an [`Events`]
//! stream (see `examples/embed.rs`).
//!
//! # Layout
//! - `config`: [`Config`], every option with its default.
//! - `error`: [`Error`], with the stable codes the local API uses.
//! - `event`: [`Event`] and the local view of a [`Conversation`].
//! - `node`: the [`Node`] handle and [`Node::start`].
//! - `event_loop`: the one task that owns the `Swarm`, driven by commands with oneshot replies.
//! - `core`: shared state and the blocking work (verify, store, tombstone) done off the loop.
//! - `behaviour`: the composed libp2p behaviour and the room-sync codec.
//! - `pipe`: direct delivery over one long-lived stream per peer, served off the swarm task.
//! - `sync`: room catch-up exchanges; `accept`: serving inbound streams within limits.
//! - `keys`: the data dir's key files.
//! - [`api`]: the local HTTP/WebSocket API (axum) that the `tim-node` binary serves.

mod accept;
pub mod api;
mod behaviour;
mod config;
mod core;
mod error;
mod event;
mod event_loop;
mod keys;
mod node;
mod pipe;
mod sync;

pub use crate::config::Config;
pub use crate::core::Metrics;
pub use crate::error::{Error, Result};
pub use crate::event::{Conversation, Event};
pub use crate::event_loop::gossipsub_config_builder;
pub use crate::node::{ControlAck, Events, Node, RoomStatus, Sent, Status};
pub use libp2p::{Multiaddr, PeerId};
pub use tim_protocol as protocol;
pub use tim_storage as storage;

/// The account id of the node whose data dir is `dir`, creating the account key on first use.
pub fn account_of(dir: &std::path::Path) -> Result<protocol::AccountId> {
    std::fs::create_dir_all(dir)?;
    Ok(keys::read_account_key(dir)?.account_id())
}
