//! When and with whom rooms catch up: on joining (with every connected member), when a member
//! subscribes, and periodically (with one member per room, round robin); each exchange pages
//! through the member's room log from this node's cursor for it.

use libp2p::PeerId;
use tim_protocol::{RoomId, SyncRequest};
use tracing::{debug, warn};

use super::{
    event_loop::{EventLoop, TaskReport},
    rooms::{room_of, topic},
    sync_exchange,
};
use crate::{Error, Result};

/// Most room syncs in flight.
const MAX_SYNCS: usize = 64;
/// Items asked for per sync page.
const SYNC_PAGE: u32 = 256;

impl EventLoop {
    /// The connected peers subscribed to `room`, in a stable order.
    fn room_peers(&self, room: &RoomId) -> Vec<PeerId> {
        let hash = topic(room).hash();
        let mut peers: Vec<PeerId> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&hash))
            .map(|(p, _)| *p)
            .collect();
        peers.sort();
        peers
    }

    /// Syncs `room` with every connected peer subscribed to it (on joining).
    pub(super) fn sync_room(&mut self, room: &RoomId) {
        for peer in self.room_peers(room) {
            self.start_sync(room.clone(), peer);
        }
    }

    /// The periodic safety net: each joined room syncs with one of its connected members, a
    /// different one each time (round robin). Syncing with all of them every interval would make
    /// every member re-send the room's whole traffic to every other member; a member that
    /// (re)connects is synced with at once anyway (its subscription is seen).
    pub(super) fn sync_all(&mut self) {
        let rooms: Vec<RoomId> = self.swarm.behaviour().gossipsub.topics().filter_map(room_of).collect();
        self.sync_turn = self.sync_turn.wrapping_add(1);
        for room in rooms {
            let peers = self.room_peers(&room);
            if !peers.is_empty() {
                let peer = peers[self.sync_turn % peers.len()];
                self.start_sync(room, peer);
            }
        }
    }

    pub(super) fn start_sync(&mut self, room: RoomId, peer: PeerId) {
        if self.syncing.len() >= MAX_SYNCS || !self.syncing.insert((room.clone(), peer)) {
            return;
        }
        let (core, reports) = (self.core.clone(), self.reports_tx.clone());
        tokio::task::spawn_blocking(move || {
            let after = core.store.sync_cursor(&room, &peer.to_bytes()).map_err(Error::from);
            let _ = reports.blocking_send(TaskReport::SyncCursor { room, peer, after });
        });
    }

    pub(super) fn on_sync_cursor(&mut self, room: RoomId, peer: PeerId, after: Result<u64>) {
        match after {
            Ok(after) => self.request_page(room, peer, after),
            Err(e) => {
                warn!(%room, error = %e, "could not read the sync cursor");
                self.syncing.remove(&(room, peer));
            }
        }
    }

    pub(super) fn on_sync_applied(&mut self, room: RoomId, peer: PeerId, next: Result<(u64, bool)>) {
        match next {
            Ok((next, true)) => self.request_page(room, peer, next),
            Ok((_, false)) => {
                debug!(%room, %peer, "room synced");
                self.syncing.remove(&(room, peer));
            }
            Err(e) => {
                warn!(%room, %peer, error = %e, "could not apply a sync page");
                self.syncing.remove(&(room, peer));
            }
        }
    }

    /// Fetches the page of `room` after `after` from `peer` and applies it, in a task of its own.
    fn request_page(&mut self, room: RoomId, peer: PeerId, after: u64) {
        let request = SyncRequest {
            room: room.clone(),
            after,
            limit: SYNC_PAGE,
        };
        let (streams, core, reports) = (self.streams.clone(), self.core.clone(), self.reports_tx.clone());
        let timeout = self.request_timeout;
        tokio::spawn(async move {
            let report = match sync_exchange::fetch(streams, peer, request, timeout).await {
                Ok(page) => {
                    let at = room.clone();
                    let applied = tokio::task::spawn_blocking(move || {
                        core.apply_sync(&at, &peer.to_bytes(), &page)
                            .map(|()| (page.next, page.more))
                    })
                    .await;
                    match applied {
                        Ok(next) => TaskReport::SyncApplied { room, peer, next },
                        Err(e) => TaskReport::SyncFailed {
                            room,
                            peer,
                            reason: format!("applying the page failed: {e}"),
                        },
                    }
                }
                Err(reason) => TaskReport::SyncFailed { room, peer, reason },
            };
            let _ = reports.send(report).await;
        });
    }
}
