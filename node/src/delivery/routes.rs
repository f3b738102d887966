//! The route cache of direct delivery: which peer serves an account (from verified route
//! records, until their signed expiry), and the peer that last served each account.

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;
use tim_protocol::AccountId;

/// Most accounts kept in either map; past it, expired routes go first, then everything.
const MAX_ROUTES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct CachedRoute {
    peer: PeerId,
    /// The route record's signed expiry, ms since the epoch.
    expires_at: u64,
}

#[derive(Debug, Default)]
pub(crate) struct RouteCache {
    routes: HashMap<AccountId, CachedRoute>,
    /// Kept after the route goes stale, so a reconnect of that peer retries its deliveries at once.
    last_peer: HashMap<AccountId, PeerId>,
}

impl RouteCache {
    /// The peer serving `account`, if its route has not expired at `unix_ms`.
    pub(crate) fn fresh(&self, account: &AccountId, unix_ms: u64) -> Option<PeerId> {
        self.routes
            .get(account)
            .filter(|r| r.expires_at > unix_ms)
            .map(|r| r.peer)
    }

    pub(crate) fn insert(&mut self, account: AccountId, peer: PeerId, expires_at: u64, unix_ms: u64) {
        if self.routes.len() >= MAX_ROUTES {
            self.routes.retain(|_, r| r.expires_at > unix_ms);
            if self.routes.len() >= MAX_ROUTES {
                self.routes.clear();
            }
        }
        if self.last_peer.len() >= MAX_ROUTES {
            self.last_peer.clear();
        }
        self.routes.insert(account, CachedRoute { peer, expires_at });
        self.last_peer.insert(account, peer);
    }

    /// Drops the route of `account` if it points at `peer` (a request to it failed).
    pub(crate) fn forget_if(&mut self, account: &AccountId, peer: &PeerId) {
        if self.routes.get(account).is_some_and(|r| r.peer == *peer) {
            self.routes.remove(account);
        }
    }

    /// The accounts `peer` served last.
    pub(crate) fn served_by(&self, peer: &PeerId) -> HashSet<AccountId> {
        self.last_peer
            .iter()
            .filter(|(_, p)| *p == peer)
            .map(|(a, _)| *a)
            .collect()
    }
}
