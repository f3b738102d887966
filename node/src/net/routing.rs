//! Account routing over Kademlia: publishing this account's signed route record, looking up
//! another account's, and checking the records other nodes ask this one to keep.

use libp2p::{kad, multiaddr::Protocol, Multiaddr, PeerId};
use tim_protocol::{decode, encode, AccountId, RouteRecord};
use tracing::{debug, info, warn};

use super::event_loop::EventLoop;
use crate::{
    core::{bump, now_ms},
    Error, Result,
};

/// The DHT key of an account's route record.
fn route_key(account: &AccountId) -> kad::RecordKey {
    kad::RecordKey::new(&format!("/tim/route/{account}"))
}

/// A verified route record: the peer serving the account, until when, and its addresses.
struct Route {
    peer: PeerId,
    expires_at: u64,
    addrs: Vec<Multiaddr>,
}

/// Verifies a route record found for `account`.
fn check_route(record: &kad::Record, account: &AccountId) -> Result<Route> {
    let route: RouteRecord = decode(&record.value)?;
    if route.account != *account || record.key != route_key(account) {
        return Err(Error::BadParameters("route record for another account".into()));
    }
    route.verify(now_ms())?;
    let peer = PeerId::from_bytes(&route.peer).map_err(|e| Error::BadParameters(e.to_string()))?;
    let addrs = route
        .addrs
        .into_iter()
        .filter_map(|a| Multiaddr::try_from(a).ok())
        .collect();
    Ok(Route {
        peer,
        expires_at: route.expires_at,
        addrs,
    })
}

impl EventLoop {
    /// Starts a route lookup for `account`, unless one is running.
    pub(super) fn start_lookup(&mut self, account: AccountId) {
        if self.lookups.values().any(|a| *a == account) {
            return;
        }
        let id = self.swarm.behaviour_mut().kad.get_record(route_key(&account));
        self.lookups.insert(id, account);
    }

    pub(super) fn publish_route(&mut self) {
        let me = self.core.peer_id;
        let addrs: Vec<Vec<u8>> = self
            .swarm
            .listeners()
            .chain(self.swarm.external_addresses())
            .filter(|a| !a.iter().any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())))
            .take(tim_protocol::MAX_ROUTE_ADDRS)
            .map(|a| a.to_vec())
            .collect();
        let expires_at = now_ms().saturating_add(self.route_ttl.as_millis() as u64);
        let record = match RouteRecord::sign(&self.core.key, me.to_bytes(), addrs, expires_at).and_then(|r| encode(&r))
        {
            Ok(value) => kad::Record {
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
        if let Err(e) = self.swarm.behaviour_mut().kad.put_record(record, kad::Quorum::One) {
            warn!(error = %e, "could not store route record");
        }
    }

    fn route_found(&mut self, account: AccountId, route: Route) {
        for addr in route.addrs {
            self.swarm.add_peer_address(route.peer, addr);
        }
        for waiter in self.lookup_waiters.remove(&account).unwrap_or_default() {
            let _ = waiter.send(Ok(route.peer));
        }
        let now = self.now();
        self.deliveries.route_found(account, route.peer, route.expires_at, now);
    }

    fn route_failed(&mut self, account: AccountId) {
        debug!(%account, "no route found");
        for waiter in self.lookup_waiters.remove(&account).unwrap_or_default() {
            let _ = waiter.send(Err(Error::Unreachable(account)));
        }
        let now = self.now();
        self.deliveries.route_failed(account, now);
    }

    pub(super) fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed { id, result, step, .. } => match result {
                kad::QueryResult::GetRecord(result) => {
                    let Some(account) = self.lookups.get(&id).copied() else {
                        return;
                    };
                    if let Ok(kad::GetRecordOk::FoundRecord(found)) = &result {
                        match check_route(&found.record, &account) {
                            Ok(route) => {
                                self.lookups.remove(&id);
                                if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                                    query.finish();
                                }
                                self.route_found(account, route);
                                return;
                            }
                            Err(e) => {
                                bump(&self.core.counters.forged_rejected);
                                warn!(%account, error = %e, "ignored an invalid route record");
                            }
                        }
                    }
                    if step.last || result.is_err() {
                        self.lookups.remove(&id);
                        self.route_failed(account);
                    }
                }
                kad::QueryResult::PutRecord(Ok(_)) => {
                    if !self.route_published {
                        info!("route record published");
                    }
                    self.route_published = true;
                }
                kad::QueryResult::PutRecord(Err(e)) => {
                    debug!(error = %e, "route record not yet replicated; will retry");
                }
                kad::QueryResult::Bootstrap(Ok(_)) if step.last && !self.route_published => {
                    self.publish_route();
                }
                _ => {}
            },
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        record: Some(record),
                        source,
                        ..
                    },
            } => self.on_put_record(source, record),
            _ => {}
        }
    }

    /// Stores a route record another node asks us to keep, only if it verifies. A fresh record
    /// means its account is reachable: retry what waits for it.
    fn on_put_record(&mut self, source: PeerId, record: kad::Record) {
        let account = std::str::from_utf8(record.key.as_ref())
            .ok()
            .and_then(|k| k.strip_prefix("/tim/route/"))
            .and_then(|a| a.parse::<AccountId>().ok());
        let checked = account
            .ok_or_else(|| Error::BadParameters("not a route key".into()))
            .and_then(|a| check_route(&record, &a).map(|route| (a, route)));
        match checked {
            Ok((account, route)) => {
                use kad::store::RecordStore;
                if let Err(e) = self.swarm.behaviour_mut().kad.store_mut().put(record) {
                    warn!(error = %e, "could not keep route record");
                }
                if self.deliveries.is_retrying(&account) {
                    self.route_found(account, route);
                    let now = self.now();
                    self.deliveries.retry_account_now(account, now);
                }
            }
            Err(e) => {
                bump(&self.core.counters.forged_rejected);
                warn!(%source, error = %e, "refused an invalid route record");
            }
        }
    }
}
