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
//! - `handle`: the [`Node`] handle and [`Node::start`].
//! - `command`: what the handle asks of the event loop; `status`: what it reports ([`Status`]).
//! - `core`: shared state and the store work (verify, store, tombstone), done off the swarm task.
//! - `delivery`: direct delivery as an I/O-free state machine (requests, deadlines, retries,
//!   routes, relays, cancel-on-revoke, pipe failover).
//! - `net`: what only the swarm task touches: the event loop, routing, rooms, pipes, sync.
//! - `keys`: the data dir's key files.
//!
//! A request flows API → [`Node`] → `core` (sign and store) → `net` (the event loop, with
//! `delivery` deciding) → peers; inbound items go from `net`'s tasks to `core` and the store.
//! - [`api`]: the local HTTP/WebSocket API (axum) that the `tim-node` binary serves.

pub mod api;
mod command;
mod config;
mod core;
mod delivery;
mod error;
mod event;
mod handle;
mod keys;
mod net;
mod status;

pub use crate::config::{Config, Inbound, RelayLimits, Transport};
pub use crate::core::{
    Body, BodyReader, Confirmation, ContactPresence, Deletion, Metrics, MyPresence, PRESENCE_INTERVAL, PRESENCE_TIMEOUT,
};
pub use crate::error::{Error, Result};
pub use crate::event::{Conversation, Event};
pub use crate::handle::{ControlAck, Events, Node, Opened, Sent};
pub use crate::net::gossipsub_config_builder;
pub use crate::status::{ConnectionStatus, Reachability, RoomStatus, Status};
pub use libp2p::{Multiaddr, PeerId};
pub use tim_protocol as protocol;
pub use tim_storage as storage;

/// The account id of the node whose data dir is `dir`, creating the account key on first use.
pub fn account_of(dir: &std::path::Path) -> Result<protocol::AccountId> {
    std::fs::create_dir_all(dir)?;
    Ok(keys::read_account_key(dir)?.account_id())
}
