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

/// Most room syncs in flight, and with one peer (so that a few slow or hostile peers cannot hold
/// every slot).
const MAX_SYNCS: usize = 64;
const MAX_SYNCS_PER_PEER: usize = 4;
/// Items asked for per sync page; a page with more is refused (`sync_exchange::fetch`).
const SYNC_PAGE: u32 = 256;
/// Most pages of one exchange: a peer answering `more` for ever is stopped here, and the rest
/// comes at the room's next sync (the cursor is stored with every page). 64 pages of 256 items
/// cover a from-scratch sync of the default `sync_window` (10,000) with room to spare.
pub(super) const MAX_PAGES_PER_SYNC: u32 = 64;
/// Sync pages verified and stored at once, node-wide: each one spreads its signature checks over
/// every core.
pub(super) const MAX_PAGES_APPLYING: usize = 1;

/// A room sync in flight: pages applied so far, and the cursor the last page was asked after.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SyncProgress {
    pages: u32,
    after: u64,
}

/// Whether a sync that just applied a page ending at `next` (with `more` to come) asks for
/// another page, and if not why.
pub(super) fn next_page(progress: SyncProgress, next: u64, more: bool) -> Result<(), &'static str> {
    if !more {
        Err("room synced")
    } else if next <= progress.after {
        Err("the peer's page did not advance its log")
    } else if progress.pages >= MAX_PAGES_PER_SYNC {
        Err("page limit of one sync reached")
    } else {
        Ok(())
    }
}

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
        let key = (room.clone(), peer);
        if self.syncing.len() >= MAX_SYNCS
            || self.syncing.contains_key(&key)
            || self.syncing.keys().filter(|(_, p)| *p == peer).count() >= MAX_SYNCS_PER_PEER
        {
            return;
        }
        self.syncing.insert(key, SyncProgress::default());
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
            Ok((next, more)) => {
                let key = (room, peer);
                let progress = self.syncing.get(&key).copied().unwrap_or_default();
                let (room, peer) = key;
                match next_page(progress, next, more) {
                    Ok(()) => self.request_page(room, peer, next),
                    Err(why) => {
                        debug!(%room, %peer, pages = progress.pages, why, "room sync ends");
                        self.syncing.remove(&(room, peer));
                    }
                }
            }
            Err(e) => {
                warn!(%room, %peer, error = %e, "could not apply a sync page");
                self.syncing.remove(&(room, peer));
            }
        }
    }

    /// Fetches the page of `room` after `after` from `peer` and applies it, in a task of its own.
    fn request_page(&mut self, room: RoomId, peer: PeerId, after: u64) {
        if let Some(progress) = self.syncing.get_mut(&(room.clone(), peer)) {
            progress.pages += 1;
            progress.after = after;
        }
        // A founded room's server wants to know which account asks (a private room is served
        // to its members and invitees only).
        let member = tim_protocol::room::is_founded_id(&room).then(|| {
            tim_protocol::room::MemberProof::sign(
                &self.core.key,
                &room,
                &self.core.peer_id.to_bytes(),
                crate::core::now_ms(),
            )
        });
        let request = SyncRequest {
            room: room.clone(),
            after,
            limit: SYNC_PAGE,
            member,
        };
        let (streams, core, reports) = (self.streams.clone(), self.core.clone(), self.reports_tx.clone());
        let applying = self.sync_applying.clone();
        let timeout = self.request_timeout;
        tokio::spawn(async move {
            let report = match sync_exchange::fetch(streams, peer, request, timeout).await {
                Ok(page) => {
                    let at = room.clone();
                    let permit = applying.acquire_owned().await;
                    let applied = tokio::task::spawn_blocking(move || {
                        let applied = core
                            .apply_sync(&at, &peer.to_bytes(), &page)
                            .map(|()| (page.next, page.more));
                        drop(permit);
                        applied
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pages: u32, after: u64) -> SyncProgress {
        SyncProgress { pages, after }
    }

    #[test]
    fn a_sync_goes_on_only_while_the_peer_advances_within_the_page_limit() {
        assert_eq!(next_page(at(1, 0), 256, true), Ok(()));
        assert_eq!(next_page(at(1, 0), 256, false), Err("room synced"));
        // `more` with a cursor that does not move would ask the same page for ever.
        assert!(next_page(at(2, 256), 256, true).is_err());
        assert!(next_page(at(2, 256), 3, true).is_err());
        // A peer answering `more` for ever is stopped after the page limit.
        assert_eq!(next_page(at(MAX_PAGES_PER_SYNC - 1, 10), 11, true), Ok(()));
        assert!(next_page(at(MAX_PAGES_PER_SYNC, 10), 11, true).is_err());
    }
}
