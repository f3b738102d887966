//! Everything only the swarm task touches: the libp2p swarm and its behaviour, account routing
//! over Kademlia, rooms over gossipsub and their catch-up, and direct delivery over pipes.
//!
//! - `event_loop`: [`EventLoop`], the one task that owns the swarm, and its select loop;
//!   `commands`: the loop's answer to each command and task report, and the burns it fires.
//! - `swarm`: the composed behaviour, protocol names, and how the swarm is built;
//!   `swarm_events`: the loop's answer to each swarm event.
//! - `routing`: route records: publish, look up, and the bounded store of what others ask us to
//!   keep.
//! - `rooms`: room topics, publishing, and gossip checks; `scoring`: gossipsub peer scores.
//! - `room_sync`: when and with whom rooms catch up; `sync_exchange`: the exchange on the wire.
//! - `direct`: carries out the delivery state machine's outputs (`crate::delivery`).
//! - `pipe`: one long-lived stream per peer for direct messages, both directions.
//! - `accept`: serving inbound streams within their budget; `budget`: who gets a slot (a total
//!   and a per-peer limit, known peers first when full); `deadline`: when a silent inbound stream
//!   is closed; `frame`: pipe framing that never reserves more than what arrived.
//! - `connections`: the connection manager, which peers to keep and which to close (high and low
//!   watermarks, protections); `pruning`: the loop's side of it.
//! - `discovery`: when a room member announces itself, looks up the others and whom it dials;
//!   `room_discovery`: the loop's side of it, on Kademlia provider records.
//! - `reachability`: whether peers can dial this node, and which relays it holds slots on;
//!   `relay`: feeding it from AutoNAT, identify and the relay client, and carrying out its
//!   decisions (hole punching and relaying for others run in their libp2p behaviours).
//! - `addrs`: which of a peer's addresses are worth dialling (no loopback from other hosts).
//! - `status_report`: what `Node::status` reports.
//! - `quiesce`: waiting at shutdown for every task holding an in-flight permit.
//! - `ticks`: the loop's periodic work (route refresh, room sync, reachability, presence,
//!   connection management) on one deadline.

mod accept;
mod addrs;
mod budget;
mod commands;
mod connections;
mod deadline;
mod direct;
mod discovery;
mod event_loop;
mod frame;
mod pipe;
mod pruning;
mod quiesce;
mod reachability;
mod relay;
mod room_discovery;
mod room_sync;
mod rooms;
mod routing;
mod scoring;
mod status_report;
mod swarm;
mod swarm_events;
mod sync_exchange;
mod ticks;

pub(crate) use event_loop::EventLoop;
pub use reachability::Reachability;
pub use swarm::gossipsub_config_builder;
