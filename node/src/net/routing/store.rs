//! The Kademlia record store of a tim node: only valid route records, the newest per account,
//! each kept no longer than its signed expiry, at most `Limits::per_source` from one sending peer
//! and `Limits::max_records` in all. A refused record makes `put` fail, so Kademlia resets the
//! sender's request instead of acknowledging it. Provider records (room members, see
//! `providers`) are kept within their own bounds.

use std::{
    borrow::Cow,
    collections::{HashMap, VecDeque},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use libp2p::{
    kad::{
        self,
        store::{Error as StoreError, RecordStore},
        ProviderRecord,
    },
    Multiaddr, PeerId,
};
use tim_protocol::{decode, AccountId, RouteRecord};
use tracing::debug;

use super::providers::Providers;
use crate::{
    core::{bump, now_ms, Counters},
    Error, Result,
};

/// The prefix of every route key.
const ROUTE_PREFIX: &str = "/tim/route/";
/// Keys of records stored for peers, kept until the event loop looks at them.
const FRESH_CAPACITY: usize = 64;

/// How much the store keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Records in all. Default 2,048.
    pub(crate) max_records: usize,
    /// Records stored on behalf of one sending peer (a node publishes one per account it
    /// serves). Default 8.
    pub(crate) per_source: usize,
    /// Longest a record is kept, whatever its signed expiry. Default 24 hours.
    pub(crate) max_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_records: 2048,
            per_source: 8,
            max_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// The DHT key of an account's route record.
pub(super) fn route_key(account: &AccountId) -> kad::RecordKey {
    kad::RecordKey::new(&format!("{ROUTE_PREFIX}{account}"))
}

/// The account a route key names, if it is one.
pub(super) fn account_of(key: &kad::RecordKey) -> Option<AccountId> {
    std::str::from_utf8(key.as_ref())
        .ok()?
        .strip_prefix(ROUTE_PREFIX)?
        .parse()
        .ok()
}

/// A verified route record: the peer serving the account, until when, and its addresses.
pub(super) struct Route {
    pub(super) peer: PeerId,
    pub(super) seq: u64,
    pub(super) expires_at: u64,
    pub(super) addrs: Vec<Multiaddr>,
    /// The account's seal-key record it carries (verified with the route).
    pub(super) seal_key: Option<tim_protocol::seal::SealKeyRecord>,
}

/// Verifies a route record found for `account` at `now` (ms since the epoch).
pub(super) fn check_route(record: &kad::Record, account: &AccountId, now: u64) -> Result<Route> {
    let route: RouteRecord = decode(&record.value)?;
    if route.account != *account || record.key != route_key(account) {
        return Err(Error::BadParameters("route record for another account".into()));
    }
    route.verify(now)?;
    let peer = PeerId::from_bytes(&route.peer).map_err(|e| Error::BadParameters(e.to_string()))?;
    let addrs = route
        .addrs
        .into_iter()
        .filter_map(|a| Multiaddr::try_from(a).ok())
        .collect();
    Ok(Route {
        peer,
        seq: route.seq,
        expires_at: route.expires_at,
        addrs,
        seal_key: route.seal_key,
    })
}

/// What the store decides about a valid record, knowing what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Store it (replacing an older record for the same account, if any).
    Store,
    /// Store it after evicting this record of another account.
    Evict(kad::RecordKey),
    /// The same record is held already: nothing changes, and the sender is told it is stored.
    Unchanged,
    /// Refuse it.
    Refuse(Refusal),
}

/// Why a valid record is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The store holds a newer record for the account (higher `seq`, or equal with a later
    /// expiry).
    Stale,
    /// The sending peer has its share of the store already.
    SourceFull,
    /// The store is full and every other sender holds no more records than this one.
    StoreFull,
}

/// What the store holds about one record, as far as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) seq: u64,
    pub(crate) expires_at: u64,
    /// The peer that sent it (this node for its own records).
    pub(crate) source: PeerId,
}

/// Decides about a valid record `new` for key `key`, sent by `new.source`. `held` is every
/// unexpired record in the store, `count` the records each source holds, `local` this node.
///
/// The newest record per account wins (higher `seq`, then later expiry). Beyond that the policy
/// is a fair share per sender: a sender holds at most `per_source` records; when the store is
/// full, a record from the sender holding the most records (the soonest-expiring of them) makes
/// room, but only for a sender holding fewer, so a sender can never grow at the expense of an
/// equal or smaller one. This node's own records always fit and are never evicted.
pub(crate) fn decide<'a>(
    key: &kad::RecordKey,
    new: Held,
    held: impl IntoIterator<Item = (&'a kad::RecordKey, &'a Held)>,
    count: &HashMap<PeerId, usize>,
    limits: &Limits,
    local: PeerId,
) -> Decision {
    let mut total = 0;
    let mut victim: Option<(&kad::RecordKey, &Held, usize)> = None;
    let mut existing = None;
    for (k, h) in held {
        total += 1;
        if k == key {
            existing = Some(h);
            continue;
        }
        if h.source == local {
            continue;
        }
        let n = count.get(&h.source).copied().unwrap_or(0);
        let worse = match victim {
            None => true,
            Some((_, v, vn)) => (n, std::cmp::Reverse(h.expires_at)) > (vn, std::cmp::Reverse(v.expires_at)),
        };
        if worse {
            victim = Some((k, h, n));
        }
    }
    let mine = count.get(&new.source).copied().unwrap_or(0);
    if let Some(old) = existing {
        let (new_order, old_order) = ((new.seq, new.expires_at), (old.seq, old.expires_at));
        if new_order == old_order {
            return Decision::Unchanged;
        }
        if new_order < old_order {
            return Decision::Refuse(Refusal::Stale);
        }
        // Replacing takes no extra room; it counts against the new sender's share.
        if old.source != new.source && new.source != local && mine >= limits.per_source {
            return Decision::Refuse(Refusal::SourceFull);
        }
        return Decision::Store;
    }
    if new.source != local && mine >= limits.per_source {
        return Decision::Refuse(Refusal::SourceFull);
    }
    if total < limits.max_records {
        return Decision::Store;
    }
    match victim {
        Some((k, _, n)) if new.source == local || n > mine => Decision::Evict(k.clone()),
        _ => Decision::Refuse(Refusal::StoreFull),
    }
}

/// One stored record and what the store knows about it.
struct Stored {
    record: kad::Record,
    held: Held,
}

/// The record store (see the module doc).
pub(crate) struct RouteStore {
    local: PeerId,
    limits: Limits,
    records: HashMap<kad::RecordKey, Stored>,
    /// Records held per sending peer.
    count: HashMap<PeerId, usize>,
    /// The peer whose request Kademlia is handling now (set by `super::kad::Kad`); `None` for
    /// this node's own puts.
    source: Option<PeerId>,
    /// The IP address of that peer's connection, if it has one.
    source_ip: Option<IpAddr>,
    /// Room members' provider records.
    providers: Providers,
    /// Keys just stored for peers: the event loop checks whether they make a waiting delivery
    /// reachable.
    fresh: VecDeque<kad::RecordKey>,
    /// The last `seq` this node signed, so its own records' `seq` only grows.
    last_seq: u64,
    counters: Arc<Counters>,
    /// Wall clock in ms since the epoch (replaced in tests).
    clock: fn() -> u64,
}

impl RouteStore {
    pub(crate) fn new(local: PeerId, limits: Limits, counters: Arc<Counters>) -> Self {
        RouteStore {
            local,
            limits,
            records: HashMap::new(),
            count: HashMap::new(),
            source: None,
            source_ip: None,
            providers: Providers::new(local, Default::default()),
            fresh: VecDeque::new(),
            last_seq: 0,
            counters,
            clock: now_ms,
        }
    }

    pub(super) fn set_source(&mut self, source: Option<PeerId>, ip: Option<IpAddr>) {
        self.source = source;
        self.source_ip = ip;
    }

    /// The `seq` for this node's next record: its wall clock in ms, or one more than the last if
    /// the clock went back.
    pub(super) fn next_seq(&mut self) -> u64 {
        self.last_seq = (self.clock)().max(self.last_seq.saturating_add(1));
        self.last_seq
    }

    /// Takes the keys stored for peers since the last call.
    pub(super) fn take_fresh(&mut self) -> Vec<kad::RecordKey> {
        self.fresh.drain(..).collect()
    }

    /// Drops the records whose signed expiry has passed.
    fn purge(&mut self, now: u64) {
        let dead: Vec<_> = self
            .records
            .iter()
            .filter(|(_, s)| s.held.expires_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in dead {
            self.remove(&k);
        }
    }

    fn refuse(&self, key: &kad::RecordKey, why: &dyn std::fmt::Display) -> StoreError {
        debug!(source = ?self.source, key = ?String::from_utf8_lossy(key.as_ref()), %why, "route record refused");
        StoreError::MaxRecords
    }
}

impl RecordStore for RouteStore {
    type RecordsIter<'a> = std::vec::IntoIter<Cow<'a, kad::Record>>;
    type ProvidedIter<'a> = std::vec::IntoIter<Cow<'a, ProviderRecord>>;

    fn get(&self, k: &kad::RecordKey) -> Option<Cow<'_, kad::Record>> {
        let stored = self.records.get(k)?;
        (stored.held.expires_at > (self.clock)()).then_some(Cow::Borrowed(&stored.record))
    }

    fn put(&mut self, mut record: kad::Record) -> kad::store::Result<()> {
        let now = (self.clock)();
        let source = self.source.unwrap_or(self.local);
        let route = account_of(&record.key)
            .ok_or_else(|| Error::BadParameters("not a route key".into()))
            .and_then(|account| check_route(&record, &account, now));
        let route = match route {
            Ok(route) => route,
            Err(e) => {
                bump(&self.counters.forged_rejected);
                return Err(self.refuse(&record.key, &e));
            }
        };
        let new = Held {
            seq: route.seq,
            expires_at: route.expires_at,
            source,
        };
        if self.records.len() >= self.limits.max_records {
            self.purge(now);
        }
        let held = self.records.iter().map(|(k, s)| (k, &s.held));
        match decide(&record.key, new, held, &self.count, &self.limits, self.local) {
            Decision::Refuse(why) => return Err(self.refuse(&record.key, &format!("{why:?}"))),
            Decision::Unchanged => return Ok(()),
            Decision::Evict(victim) => self.remove(&victim),
            Decision::Store => {}
        }
        let signed = Instant::now() + Duration::from_millis(route.expires_at.saturating_sub(now));
        let cap = Instant::now() + self.limits.max_ttl;
        record.expires = Some(record.expires.map_or(signed, |e| e.min(signed)).min(cap));
        let key = record.key.clone();
        self.remove(&key);
        *self.count.entry(source).or_default() += 1;
        self.records.insert(key.clone(), Stored { record, held: new });
        if source != self.local {
            if self.fresh.len() >= FRESH_CAPACITY {
                self.fresh.pop_front();
            }
            self.fresh.push_back(key);
        }
        Ok(())
    }

    fn remove(&mut self, k: &kad::RecordKey) {
        if let Some(stored) = self.records.remove(k) {
            if let Some(n) = self.count.get_mut(&stored.held.source) {
                *n -= 1;
                if *n == 0 {
                    self.count.remove(&stored.held.source);
                }
            }
        }
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        let now = (self.clock)();
        let live = self.records.values().filter(|s| s.held.expires_at > now);
        live.map(|s| Cow::Borrowed(&s.record)).collect::<Vec<_>>().into_iter()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> kad::store::Result<()> {
        // Kademlia takes a provider record only from the provider's own connection (or this
        // node's own), so the source is the provider.
        let ip = if record.provider == self.local {
            None
        } else {
            self.source_ip
        };
        let provider = record.provider;
        self.providers.add(record, ip, Instant::now()).map_err(|why| {
            debug!(%provider, ?why, "provider record refused");
            StoreError::MaxProvidedKeys
        })
    }

    fn providers(&self, key: &kad::RecordKey) -> Vec<ProviderRecord> {
        self.providers.providers(key, Instant::now())
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        let own = self.providers.local_records().into_iter().map(Cow::Owned);
        own.collect::<Vec<_>>().into_iter()
    }

    fn remove_provider(&mut self, key: &kad::RecordKey, provider: &PeerId) {
        self.providers.remove(key, provider);
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
