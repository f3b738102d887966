//! The provider records a node keeps for others: who announced itself as a member of which room
//! (docs/protocol.md, "Room discovery"). Identities are free, so everything is bounded, and the
//! bounds are chosen so that a flood cannot push out a room's real members:
//!
//! - only keys of the room-provider form (32 bytes) are taken, and Kademlia itself only takes a
//!   provider record from the provider's own connection, so one identity is one record per key;
//! - a record is kept until its expiry, at most `max_ttl`; re-announcing refreshes it in place;
//! - at most `per_provider` records from one provider and `per_ip_per_key` providers of one key
//!   from one IP address (loopback and address-less sources, i.e. this machine, are exempt);
//! - at most `per_key` providers per key, first come first kept: a full key refuses newcomers
//!   rather than evicting, so members that announced keep their place for as long as they
//!   re-announce, whatever a flood sends later;
//! - at most `total` records; when full, the soonest-expiring record of the key holding the most
//!   makes room, only for a key holding fewer, so a flood on many keys cannot crowd out a room
//!   with fewer providers than its fair share;
//! - this node's own records always fit.
//!
//! Lookups get at most 20 providers of a key from one node (Kademlia's replication factor); the
//! store hands them out from a rotating start so that every provider of a full key is served in
//! turn.

use std::{
    cell::Cell,
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use libp2p::{
    kad::{self, ProviderRecord},
    PeerId,
};

/// The length of a room-provider key (a SHA-256 digest).
pub(crate) const PROVIDER_KEY_LEN: usize = 32;

/// How much of the store provider records may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProviderLimits {
    /// Providers of one key. Default 64.
    pub(crate) per_key: usize,
    /// Records announced by one provider (one per room it is a member of). Default 16.
    pub(crate) per_provider: usize,
    /// Providers of one key announced from one IP address. Default 8.
    pub(crate) per_ip_per_key: usize,
    /// Records in all. Default 4,096.
    pub(crate) total: usize,
    /// Longest a record is kept after its last announcement. Default 30 minutes.
    pub(crate) max_ttl: Duration,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        ProviderLimits {
            per_key: 64,
            per_provider: 16,
            per_ip_per_key: 8,
            total: 4096,
            max_ttl: super::super::room_discovery::PROVIDER_TTL,
        }
    }
}

/// Why a provider record is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProviderRefusal {
    /// Not a room-provider key.
    BadKey,
    /// Already expired.
    Expired,
    /// The provider has its share of records here.
    ProviderFull,
    /// The key has its share of providers from this IP address.
    AddressFull,
    /// The key has all the providers it may have.
    KeyFull,
    /// The store is full and every other key holds no more records than this one.
    StoreFull,
}

/// One provider of a key.
#[derive(Debug, Clone)]
struct Entry {
    record: ProviderRecord,
    /// The IP address it was announced from, when it counts against `per_ip_per_key`.
    ip: Option<IpAddr>,
}

/// The provider records (see the module doc).
#[derive(Debug)]
pub(crate) struct Providers {
    limits: ProviderLimits,
    local: PeerId,
    keys: HashMap<kad::RecordKey, Vec<Entry>>,
    /// Records per provider (this node's own are not counted).
    per_provider: HashMap<PeerId, usize>,
    total: usize,
    /// Where the next `providers` answer starts, so a full key's providers are served in turn.
    rotation: Cell<usize>,
}

impl Providers {
    pub(crate) fn new(local: PeerId, limits: ProviderLimits) -> Self {
        Providers {
            limits,
            local,
            keys: HashMap::new(),
            per_provider: HashMap::new(),
            total: 0,
            rotation: Cell::new(0),
        }
    }

    /// Records held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.total
    }

    /// Adds or refreshes `record`, announced from `ip` (`None`: this machine or no IP).
    pub(crate) fn add(
        &mut self,
        mut record: ProviderRecord,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), ProviderRefusal> {
        if record.key.as_ref().len() != PROVIDER_KEY_LEN {
            return Err(ProviderRefusal::BadKey);
        }
        let cap = now + self.limits.max_ttl;
        let expires = record.expires.map_or(cap, |e| e.min(cap));
        if expires <= now {
            return Err(ProviderRefusal::Expired);
        }
        record.expires = Some(expires);
        let local = record.provider == self.local;
        let ip = ip.filter(|ip| !local && !ip.is_loopback());
        self.purge_key(&record.key, now);
        if let Some(entries) = self.keys.get_mut(&record.key) {
            if let Some(held) = entries.iter_mut().find(|e| e.record.provider == record.provider) {
                // A re-announcement takes no extra room.
                held.record = record;
                held.ip = ip;
                return Ok(());
            }
        }
        if !local {
            self.check_room(&record, ip, now)?;
        } else if self.total >= self.limits.total {
            if let Some((key, provider)) = self.victim(None, now) {
                self.remove(&key, &provider);
            }
        }
        if !local {
            *self.per_provider.entry(record.provider).or_default() += 1;
        }
        self.total += 1;
        self.keys
            .entry(record.key.clone())
            .or_default()
            .push(Entry { record, ip });
        Ok(())
    }

    /// Whether a new record from another node fits, making room when the store is full.
    fn check_room(&mut self, record: &ProviderRecord, ip: Option<IpAddr>, now: Instant) -> Result<(), ProviderRefusal> {
        let l = self.limits;
        if self.per_provider.get(&record.provider).copied().unwrap_or(0) >= l.per_provider {
            return Err(ProviderRefusal::ProviderFull);
        }
        let entries = self.keys.get(&record.key).map(Vec::as_slice).unwrap_or_default();
        if ip.is_some() && entries.iter().filter(|e| e.ip == ip).count() >= l.per_ip_per_key {
            return Err(ProviderRefusal::AddressFull);
        }
        if entries.len() >= l.per_key {
            return Err(ProviderRefusal::KeyFull);
        }
        if self.total < l.total {
            return Ok(());
        }
        self.purge(now);
        if self.total < l.total {
            return Ok(());
        }
        match self.victim(Some(&record.key), now) {
            Some((key, provider)) => {
                self.remove(&key, &provider);
                Ok(())
            }
            None => Err(ProviderRefusal::StoreFull),
        }
    }

    /// The record to drop to make room for a record under `for_key` (`None`: this node's own,
    /// which may take room from any key): the soonest-expiring record, not this node's, of the
    /// key holding the most, if that key holds more than `for_key`.
    fn victim(&self, for_key: Option<&kad::RecordKey>, _now: Instant) -> Option<(kad::RecordKey, PeerId)> {
        let mine = for_key.map_or(0, |k| self.keys.get(k).map_or(0, Vec::len));
        let (key, entries) = self
            .keys
            .iter()
            .filter(|(_, entries)| entries.iter().any(|e| e.record.provider != self.local))
            .max_by_key(|(_, entries)| entries.len())?;
        if for_key.is_some() && entries.len() <= mine {
            return None;
        }
        let entry = entries
            .iter()
            .filter(|e| e.record.provider != self.local)
            .min_by_key(|e| e.record.expires)?;
        Some((key.clone(), entry.record.provider))
    }

    /// Drops the expired records of `key`.
    fn purge_key(&mut self, key: &kad::RecordKey, now: Instant) {
        let dead: Vec<PeerId> = self
            .keys
            .get(key)
            .into_iter()
            .flatten()
            .filter(|e| e.record.is_expired(now))
            .map(|e| e.record.provider)
            .collect();
        for provider in dead {
            self.remove(key, &provider);
        }
    }

    /// Drops every expired record.
    fn purge(&mut self, now: Instant) {
        let keys: Vec<kad::RecordKey> = self.keys.keys().cloned().collect();
        for key in keys {
            self.purge_key(&key, now);
        }
    }

    /// Removes `provider`'s record for `key`, if held.
    pub(crate) fn remove(&mut self, key: &kad::RecordKey, provider: &PeerId) {
        let Some(entries) = self.keys.get_mut(key) else {
            return;
        };
        let Some(at) = entries.iter().position(|e| e.record.provider == *provider) else {
            return;
        };
        entries.swap_remove(at);
        if entries.is_empty() {
            self.keys.remove(key);
        }
        self.total -= 1;
        if let Some(n) = self.per_provider.get_mut(provider) {
            *n -= 1;
            if *n == 0 {
                self.per_provider.remove(provider);
            }
        }
    }

    /// The unexpired providers of `key`: this node first (if it is one), then the others from a
    /// rotating start.
    pub(crate) fn providers(&self, key: &kad::RecordKey, now: Instant) -> Vec<ProviderRecord> {
        let Some(entries) = self.keys.get(key) else {
            return Vec::new();
        };
        let live: Vec<&Entry> = entries.iter().filter(|e| !e.record.is_expired(now)).collect();
        let (mine, others): (Vec<&Entry>, Vec<&Entry>) =
            live.into_iter().partition(|e| e.record.provider == self.local);
        let start = self.rotation.get();
        self.rotation.set(start.wrapping_add(kad::K_VALUE.get()));
        let n = others.len().max(1);
        let rotated = (0..others.len()).map(|i| others[(start + i) % n]);
        mine.into_iter().chain(rotated).map(|e| e.record.clone()).collect()
    }

    /// This node's own provider records.
    pub(crate) fn local_records(&self) -> Vec<ProviderRecord> {
        self.keys
            .values()
            .flatten()
            .filter(|e| e.record.provider == self.local)
            .map(|e| e.record.clone())
            .collect()
    }
}

#[cfg(test)]
#[path = "providers_tests.rs"]
mod tests;
