//! Account routing over Kademlia: publishing this account's signed route record, looking up
//! another account's (the newest of the valid records found), and reacting to the records other
//! nodes store here.
//!
//! - `store`: [`RouteStore`], what this node keeps for others and the decisions behind it.
//! - `providers`: the bounded provider records of room members (`super::room_discovery`).
//! - `kad`: [`Kad`], Kademlia telling the store which peer (and address) sent each record.
//! - `dials`: [`RouteDials`], the addresses of each route dial, to dial again without one that
//!   reached another node.

mod dials;
mod kad;
mod providers;
mod store;

use libp2p::{
    kad as libp2p_kad,
    multiaddr::Protocol,
    swarm::dial_opts::{DialOpts, PeerCondition},
};
use tim_protocol::{encode, AccountId, RouteRecord};
use tracing::{debug, info, warn};

use self::store::{account_of, check_route, route_key, Route};
pub(crate) use self::{
    dials::RouteDials,
    kad::Kad,
    store::{Limits, RouteStore},
};
use super::event_loop::EventLoop;
use crate::{
    core::{bump, now_ms},
    Error,
};

/// Valid records a lookup waits for (or the end of the query) before it takes the newest.
const LOOKUP_ANSWERS: usize = 3;

/// A route lookup in flight: whose, the newest valid route found so far, and how many valid
/// records came.
pub(super) struct Lookup {
    account: AccountId,
    best: Option<Route>,
    answers: usize,
}

impl EventLoop {
    /// Starts a route lookup for `account`, unless one is running.
    pub(super) fn start_lookup(&mut self, account: AccountId) {
        if self.lookups.values().any(|l| l.account == account) {
            return;
        }
        let id = self.swarm.behaviour_mut().kad.get_record(route_key(&account));
        let lookup = Lookup {
            account,
            best: None,
            answers: 0,
        };
        self.lookups.insert(id, lookup);
    }

    /// Makes a new seal key when the newest is due (off the loop: it writes the secrets file);
    /// every body sealed from then on carries it, and the route record is republished with it.
    pub(super) fn rotate_seal_key(&mut self) {
        let now = now_ms();
        if !self.core.seal_key_due(now) {
            return;
        }
        let (core, reports) = (self.core.clone(), self.reports_tx.clone());
        tokio::spawn(async move {
            match tokio::task::spawn_blocking(move || core.rotate_seal_key(now)).await {
                Ok(Ok(())) => {
                    let _ = reports.send(super::event_loop::TaskReport::SealKeyRotated).await;
                }
                Ok(Err(e)) => warn!(error = %e, "could not make a new seal key"),
                Err(e) => warn!(error = %e, "making a new seal key stopped"),
            }
        });
    }

    pub(super) fn publish_route(&mut self) {
        let me = self.core.peer_id;
        let addrs: Vec<Vec<u8>> = published_addrs(&self.swarm)
            .into_iter()
            .take(tim_protocol::MAX_ROUTE_ADDRS)
            .map(|a| a.to_vec())
            .collect();
        let expires_at = now_ms().saturating_add(self.route_ttl.as_millis() as u64);
        let seq = self.swarm.behaviour_mut().kad.store_mut().next_seq();
        let seal_key = self.core.reader.own_record();
        let signed = RouteRecord::sign(&self.core.key, me.to_bytes(), addrs, seq, expires_at, seal_key);
        let record = match signed.and_then(|r| encode(&r)) {
            Ok(value) => libp2p_kad::Record {
                key: route_key(&self.core.account),
                value,
                publisher: None,
                expires: Some(std::time::Instant::now() + self.route_ttl),
            },
            Err(e) => {
                warn!(error = %e, "could not sign route record");
                return;
            }
        };
        match self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(record, libp2p_kad::Quorum::One)
        {
            Ok(id) => self.route_put = Some(id),
            Err(e) => warn!(error = %e, "could not store route record"),
        }
    }

    fn route_found(&mut self, account: AccountId, route: Route) {
        if let Some(seal_key) = route.seal_key.clone() {
            // Verified with the route. Taken now, so a message sent once the lookup answers is
            // sealed to it; stored off the event loop. Lookups also serve strangers (a deletion
            // receipt for an open room's poster): only an account written to is trusted.
            let tier = if self.core.store.is_known(&account) {
                crate::core::Tier::Trusted
            } else {
                crate::core::Tier::Stranger
            };
            let change = self.core.learn_seal_key(seal_key, tier);
            if change != crate::core::SealKeysChange::default() {
                let core = self.core.clone();
                tokio::task::spawn_blocking(move || core.keep_seal_keys(&change));
            }
        }
        let addrs = super::addrs::dialable(route.addrs);
        debug!(%account, peer = %route.peer, ?addrs, "route found");
        for addr in &addrs {
            self.swarm.add_peer_address(route.peer, addr.clone());
        }
        // Dial the record's addresses now: no behaviour keeps a relay circuit address for a peer
        // it has not met, so a later dial by peer id alone would not try it.
        if !addrs.is_empty() && !self.swarm.is_connected(&route.peer) {
            self.dial_route(route.peer, addrs);
        }
        for waiter in self.lookup_waiters.remove(&account).unwrap_or_default() {
            let _ = waiter.send(Ok(route.peer));
        }
        let now = self.now();
        self.deliveries.route_found(account, route.peer, route.expires_at, now);
    }

    fn dial_route(&mut self, peer: libp2p::PeerId, addrs: Vec<libp2p::Multiaddr>) {
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs.clone())
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) => self.route_dials.started(peer, addrs),
            Err(e) => debug!(%peer, error = %e, "not dialled"),
        }
    }

    /// A dial of `peer` failed. When one of a route's addresses reached another node (or this
    /// one), the dial failed whole; the rest of the addresses are dialled again without it.
    pub(super) fn on_dial_failed(&mut self, peer: libp2p::PeerId, error: &libp2p::swarm::DialError) {
        use libp2p::swarm::DialError;
        let lying = match error {
            DialError::WrongPeerId { address, .. } | DialError::LocalPeerId { address } => address,
            _ => {
                self.route_dials.forget(&peer);
                return;
            }
        };
        match self.route_dials.reached_another_node(&peer, lying) {
            Some(rest) => {
                debug!(%peer, address = %lying, "a route address reached another node; dialling the others");
                let _ = self.swarm.behaviour_mut().kad.remove_address(&peer, lying);
                self.dial_route(peer, rest);
            }
            None => debug!(%peer, address = %lying, "a route address reached another node"),
        }
    }

    fn route_failed(&mut self, account: AccountId) {
        debug!(%account, "no route found");
        for waiter in self.lookup_waiters.remove(&account).unwrap_or_default() {
            let _ = waiter.send(Err(Error::Unreachable(account)));
        }
        let now = self.now();
        self.deliveries.route_failed(account, now);
    }

    /// A lookup's progress: keeps the newest valid record; answers once `LOOKUP_ANSWERS` valid
    /// records came or the query ended.
    fn on_get_record(
        &mut self,
        id: libp2p_kad::QueryId,
        result: Result<libp2p_kad::GetRecordOk, libp2p_kad::GetRecordError>,
        last: bool,
    ) {
        let Some(lookup) = self.lookups.get_mut(&id) else {
            return;
        };
        if let Ok(libp2p_kad::GetRecordOk::FoundRecord(found)) = &result {
            match check_route(&found.record, &lookup.account, now_ms()) {
                Ok(route) => {
                    lookup.answers += 1;
                    if lookup.best.as_ref().is_none_or(|b| newer(&route, b)) {
                        lookup.best = Some(route);
                    }
                }
                Err(e) => {
                    bump(&self.core.counters.forged_rejected);
                    warn!(account = %lookup.account, error = %e, "ignored an invalid route record");
                }
            }
        }
        let enough = lookup.answers >= LOOKUP_ANSWERS;
        if !(enough || last || result.is_err()) {
            return;
        }
        let Some(lookup) = self.lookups.remove(&id) else {
            return;
        };
        if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
            query.finish();
        }
        match lookup.best {
            Some(route) => self.route_found(lookup.account, route),
            None => self.route_failed(lookup.account),
        }
    }

    pub(super) fn on_kad(&mut self, event: libp2p_kad::Event) {
        match event {
            libp2p_kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
                ..
            } => match result {
                libp2p_kad::QueryResult::GetRecord(result) => self.on_get_record(id, result, step.last),
                libp2p_kad::QueryResult::PutRecord(result) => {
                    if self.route_put == Some(id) {
                        self.route_put = None;
                    }
                    match result {
                        Ok(_) => {
                            if !self.route_published {
                                info!("route record published");
                            }
                            self.route_published = true;
                        }
                        Err(e) => debug!(error = %e, "route record not yet replicated; will retry"),
                    }
                }
                libp2p_kad::QueryResult::Bootstrap(Ok(_)) if step.last && !self.route_published => {
                    self.publish_route();
                }
                libp2p_kad::QueryResult::GetProviders(result) => self.on_providers(id, result, step.last),
                libp2p_kad::QueryResult::StartProviding(result) => self.on_announced(id, result, &stats),
                _ => {}
            },
            libp2p_kad::Event::InboundRequest {
                request: libp2p_kad::InboundRequest::PutRecord { .. },
            } => self.on_records_stored(),
            _ => {}
        }
    }

    /// The store kept records other nodes sent (it verified them first). A fresh record means
    /// its account is reachable: retry what waits for it.
    fn on_records_stored(&mut self) {
        use libp2p_kad::store::RecordStore;
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let now = now_ms();
        let fresh: Vec<_> = store
            .take_fresh()
            .into_iter()
            .filter_map(|key| {
                let account = account_of(&key)?;
                let route = check_route(store.get(&key)?.as_ref(), &account, now).ok()?;
                Some((account, route))
            })
            .collect();
        for (account, route) in fresh {
            if self.deliveries.is_retrying(&account) {
                self.route_found(account, route);
                let now = self.now();
                self.deliveries.retry_account_now(account, now);
            }
        }
    }
}

/// The addresses a route record carries, most useful first: confirmed external addresses (peers
/// can dial them), then circuit addresses through the relays this node holds a slot on (anyone
/// can reach it there), then its other listen addresses (reachable on its own network). Each
/// once; unspecified addresses (`0.0.0.0`) never, loopback ones only when there is nothing else
/// (see `addrs`).
fn published_addrs(swarm: &libp2p::Swarm<super::swarm::Behaviour>) -> Vec<libp2p::Multiaddr> {
    use super::relay::is_circuit;
    let me = *swarm.local_peer_id();
    let unspecified = |a: &libp2p::Multiaddr| a.iter().any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified()));
    // Circuit addresses appear both as listen addresses and (ending in this node's id) as
    // external ones: publish each once, without the id (the record names the peer).
    let bare = |a: &libp2p::Multiaddr| {
        let mut a = a.clone();
        if a.iter().last() == Some(Protocol::P2p(me)) {
            a.pop();
        }
        a
    };
    let direct = swarm.external_addresses().filter(|a| !is_circuit(a));
    let circuits = swarm
        .listeners()
        .chain(swarm.external_addresses())
        .filter(|a| is_circuit(a));
    let others = swarm.listeners().filter(|a| !is_circuit(a));
    let mut out: Vec<libp2p::Multiaddr> = Vec::new();
    for addr in direct.chain(circuits).chain(others).map(bare) {
        if !unspecified(&addr) && !out.contains(&addr) {
            out.push(addr);
        }
    }
    super::addrs::dialable(out)
}

/// Whether route `a` is newer than `b` (the same order as `RouteRecord::supersedes`).
fn newer(a: &Route, b: &Route) -> bool {
    (a.seq, a.expires_at) > (b.seq, b.expires_at)
}
