//! The seal-key records this node seals other accounts' bodies to: which it takes, from where,
//! and which it keeps across restarts.
//!
//! Two books. Records of accounts this node has reason to trust (ones the local account wrote
//! to, members of a private room it is in, accounts whose route it resolved) are kept in the
//! store, up to 16,384. Records from strangers' direct messages live in memory only, up to 1,024,
//! so a flood of free identities displaces other strangers' records and never a contact's. A
//! record is taken only if it is newer than the one held for its account, its `seq` is not more
//! than a day ahead of the local clock (a record dated far ahead would pin its account's key),
//! and it verifies.

use std::collections::HashMap;

use tim_protocol::{
    seal,
    seal::{SealKeyAnnouncement, SealKeyRecord},
    AccountId, Code, MembershipChange, Recipient, RoomId, RoomState, Via,
};
use tracing::{debug, warn};

use super::{now_ms, Core, Verdict};

/// The most records of trusted accounts kept (in the store too).
const MAX_TRUSTED: usize = 16_384;
/// The most records from strangers kept (in memory).
const MAX_STRANGERS: usize = 1_024;
/// The most announced records of accounts without standing yet held per room.
const MAX_WAITING_PER_ROOM: usize = 32;
/// How far an announcement's `at` may be from the local clock (ms).
const ANNOUNCEMENT_SKEW_MS: u64 = 5 * 60 * 1000;
/// How far ahead of the local clock a record's `seq` may be (ms).
pub(crate) const MAX_SEQ_AHEAD_MS: u64 = 24 * 3600 * 1000;

/// Which book a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// A contact, a private room's member, an account whose route this node resolved.
    Trusted,
    /// The sender of a direct message the local account never wrote to.
    Stranger,
}

/// What taking a record changed in the trusted book, for the store to follow.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// Keep this record for its account.
    pub(crate) keep: Option<SealKeyRecord>,
    /// Forget this account's record (displaced by a newcomer).
    pub(crate) forget: Option<AccountId>,
}

/// The two books (see the module docs).
#[derive(Default)]
pub(crate) struct SealRecords {
    trusted: HashMap<AccountId, SealKeyRecord>,
    strangers: HashMap<AccountId, SealKeyRecord>,
    /// Verified records announced in a room by accounts without standing there yet (an
    /// announcement may overtake the invite or join that gives it), by room; taken when the
    /// account gains standing. Only rooms joined here; the oldest goes first when full.
    waiting: HashMap<RoomId, Vec<SealKeyRecord>>,
}

impl SealRecords {
    /// The newest record held for `account`.
    pub(crate) fn newest(&self, account: &AccountId) -> Option<&SealKeyRecord> {
        match (self.trusted.get(account), self.strangers.get(account)) {
            (Some(t), Some(s)) if s.supersedes(t) => Some(s),
            (Some(t), _) => Some(t),
            (None, s) => s,
        }
    }

    /// Whether `record` would replace what is held for its account.
    pub(crate) fn is_news(&self, record: &SealKeyRecord) -> bool {
        self.newest(&record.account).is_none_or(|held| record.supersedes(held))
    }

    /// Takes a verified `record` into `tier`'s book, if it is news. A stranger's record for an
    /// account already trusted goes to the trusted book: it is that account's own.
    pub(crate) fn take(&mut self, record: SealKeyRecord, tier: Tier) -> Change {
        let mut change = Change::default();
        if !self.is_news(&record) {
            return change;
        }
        let account = record.account;
        if tier == Tier::Trusted || self.trusted.contains_key(&account) {
            self.strangers.remove(&account);
            if self.trusted.len() >= MAX_TRUSTED && !self.trusted.contains_key(&account) {
                change.forget = evict_one(&mut self.trusted);
            }
            self.trusted.insert(account, record.clone());
            change.keep = Some(record);
        } else {
            if self.strangers.len() >= MAX_STRANGERS && !self.strangers.contains_key(&account) {
                evict_one(&mut self.strangers);
            }
            self.strangers.insert(account, record);
        }
        change
    }

    /// Holds a verified record announced in `room` by an account without standing there yet.
    pub(crate) fn wait(&mut self, room: &RoomId, record: SealKeyRecord) {
        let waiting = self.waiting.entry(room.clone()).or_default();
        waiting.retain(|held| held.account != record.account || record.supersedes(held));
        if waiting.iter().any(|held| held.account == record.account) {
            return;
        }
        if waiting.len() >= MAX_WAITING_PER_ROOM {
            waiting.remove(0);
        }
        waiting.push(record);
    }

    /// The records waiting in `room` whose accounts have standing there now.
    pub(crate) fn release(&mut self, room: &RoomId, standing: impl Fn(&AccountId) -> bool) -> Vec<SealKeyRecord> {
        let Some(waiting) = self.waiting.get_mut(room) else {
            return Vec::new();
        };
        let (released, kept): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|r| standing(&r.account));
        *waiting = kept;
        if waiting.is_empty() {
            self.waiting.remove(room);
        }
        released
    }

    /// Drops what waits in a room this node left.
    pub(crate) fn forget_room(&mut self, room: &RoomId) {
        self.waiting.remove(room);
    }

    /// Takes back the trusted records the store kept (they were verified when taken).
    pub(crate) fn restore(&mut self, records: Vec<SealKeyRecord>) {
        for record in records.into_iter().take(MAX_TRUSTED) {
            if self
                .trusted
                .get(&record.account)
                .is_none_or(|held| record.supersedes(held))
            {
                self.trusted.insert(record.account, record);
            }
        }
    }
}

/// Forgets one entry of a full book (the first in the map's randomly keyed order).
fn evict_one(book: &mut HashMap<AccountId, SealKeyRecord>) -> Option<AccountId> {
    let account = book.keys().next().copied()?;
    book.remove(&account);
    Some(account)
}

impl Core {
    /// Learns the seal-key record a stored message's sealed body carries (the message is
    /// verified, so the body is its sender's): from a direct message to the local account, or a
    /// post in a private room it is in; never from an open room, where anyone posts anything.
    pub(crate) fn learn_from_body(&self, from: &AccountId, to: &Recipient, body: &[u8]) {
        let Some(record) = seal::sealer_of(body) else {
            return;
        };
        let tier = match to {
            Recipient::Account(account) if *account == self.account => {
                if self.store.is_known(from) {
                    Tier::Trusted
                } else {
                    Tier::Stranger
                }
            }
            Recipient::Room(room) => {
                let member = self
                    .founded()
                    .get(room)
                    .map(tim_protocol::Membership::state)
                    .is_some_and(|state| state.private && state.is_member(from));
                if !member {
                    return;
                }
                Tier::Trusted
            }
            Recipient::Account(_) => return,
        };
        if record.account != *from || !self.reader.is_news(&record) || seal::check(body).is_err() {
            return;
        }
        if let Err(e) = record.verify() {
            debug!(%from, error = %e, "a sealed body carries a seal-key record that does not verify");
            return;
        }
        let change = self.learn_seal_key(record, tier);
        self.keep_seal_keys(&change);
    }

    /// Takes a verified seal-key record into `tier`'s book (see the module docs), in memory; the
    /// change to the trusted book is for [`Core::keep_seal_keys`] to store.
    pub(crate) fn learn_seal_key(&self, record: SealKeyRecord, tier: Tier) -> Change {
        if record.account == self.account || record.seq > now_ms().saturating_add(MAX_SEQ_AHEAD_MS) {
            return Change::default();
        }
        self.reader.take(record, tier)
    }

    /// Keeps a change to the trusted book in the store (logged if it fails: the record is then
    /// only remembered until the node stops).
    pub(crate) fn keep_seal_keys(&self, change: &Change) {
        if let Some(record) = &change.keep {
            let kept = tim_protocol::encode(record)
                .map_err(crate::Error::from)
                .and_then(|bytes| Ok(self.store.set_seal_key(&record.account, Some(&bytes))?));
            if let Err(e) = kept {
                warn!(account = %record.account, error = %e, "could not keep a seal-key record");
            }
        }
        if let Some(account) = &change.forget {
            if let Err(e) = self.store.set_seal_key(account, None) {
                warn!(%account, error = %e, "could not forget a seal-key record");
            }
        }
    }
}

impl Core {
    /// An `Envelope::SealKey` from a room's topic: taken (and forwarded) if the room is a private
    /// founded room joined here, the announcement is fresh and signed by the record's account,
    /// that account has standing there (member, invitee or requester) and the record is valid;
    /// one naming the record held is forwarded too, so a member that just joined hears every
    /// member's key. An account without standing yet has its record held until it gains some.
    pub(crate) fn seal_key_in(&self, announcement: SealKeyAnnouncement, via: &Via) -> crate::Result<Verdict> {
        let SealKeyAnnouncement { room, record, at, .. } = &announcement;
        if *via != Via::Room(room.clone()) {
            return Err(crate::Error::BadParameters(
                "seal keys are announced on their room's topic".into(),
            ));
        }
        if !self.is_member(room) {
            return Ok(Verdict::Ignored(Code::NotFound));
        }
        if at.abs_diff(now_ms()) > ANNOUNCEMENT_SKEW_MS {
            return Ok(Verdict::Ignored(Code::Expired));
        }
        let standing = self
            .founded()
            .get(room)
            .map(tim_protocol::Membership::state)
            .is_some_and(|s| has_standing(s, &record.account));
        let held = self.reader.record_of(&record.account).as_ref() == Some(record);
        if !held && !self.reader.is_news(record) {
            return Ok(Verdict::Duplicate);
        }
        announcement.verify()?;
        if held && standing {
            return Ok(Verdict::Stored);
        }
        if !held {
            record.verify()?;
        }
        if record.seq > now_ms().saturating_add(MAX_SEQ_AHEAD_MS) {
            return Ok(Verdict::Ignored(Code::BadParameters));
        }
        if !standing {
            // Held until its invite or join arrives here; not forwarded (members judge it alike).
            debug!(%room, account = %record.account, "a seal key announced ahead of its account's standing");
            self.reader.wait(room, record.clone());
            return Ok(Verdict::Ignored(Code::PermissionDenied));
        }
        debug!(%room, account = %record.account, "learned an announced seal key");
        let change = self.learn_seal_key(record.clone(), Tier::Trusted);
        self.keep_seal_keys(&change);
        Ok(Verdict::Stored)
    }

    /// Seal keys after a membership `change` in `room`: an account that gained standing takes
    /// the record it announced ahead of it; on a join (anyone's) the local account announces its
    /// own, so the newcomer learns every member's key and the members the newcomer's (a private
    /// room, the local account a member).
    pub(crate) fn announce_on_join(&self, room: &RoomId, change: &MembershipChange, state: &RoomState) {
        for record in self.reader.release(room, |account| has_standing(state, account)) {
            let change = self.learn_seal_key(record, Tier::Trusted);
            self.keep_seal_keys(&change);
        }
        // The account the change is about, if it is a member now: a join, an approval, or an
        // invite that a join held as a request waited for.
        let joined = match change {
            MembershipChange::Joined(account) | MembershipChange::Invited { account, .. } => state.is_member(account),
            _ => false,
        };
        if joined && state.private && state.is_member(&self.account) {
            self.announce_seal_key(room);
        }
    }

    /// Queues the local account's seal-key record for `room`'s topic.
    pub(crate) fn announce_seal_key(&self, room: &RoomId) {
        let Some(record) = self.reader.own_record() else {
            return;
        };
        let announcement = SealKeyAnnouncement::sign(&self.key, room.clone(), record, now_ms());
        match announcement.and_then(|a| tim_protocol::encode(&tim_protocol::Envelope::SealKey(a))) {
            Ok(frame) => {
                let _ = self.room_work.try_send(super::RoomWork::Announce(room.clone(), frame));
            }
            Err(e) => warn!(%room, error = %e, "could not encode a seal-key announcement"),
        }
    }

    /// Announces the local account's seal-key record in every private founded room it is a
    /// member of (after a rotation).
    pub(crate) fn announce_seal_key_everywhere(&self) {
        let rooms: Vec<RoomId> = self
            .founded()
            .iter()
            .filter(|(_, m)| m.state().private && m.state().is_member(&self.account))
            .map(|(room, _)| room.clone())
            .collect();
        for room in rooms {
            self.announce_seal_key(&room);
        }
    }
}

/// Whether `account` may announce a seal key in a room of `state`: a private room's member,
/// invitee or requester.
fn has_standing(state: &RoomState, account: &AccountId) -> bool {
    state.private
        && (state.is_member(account) || state.invited.contains_key(account) || state.requests.contains_key(account))
}

/// The trusted records `store` kept, decoded (one that does not decode is skipped, logged).
pub(crate) fn load_seal_keys(store: &tim_storage::Store) -> crate::Result<Vec<SealKeyRecord>> {
    Ok(store
        .seal_keys()?
        .into_iter()
        .filter_map(|bytes| match tim_protocol::decode::<SealKeyRecord>(&bytes) {
            Ok(record) => Some(record),
            Err(e) => {
                warn!(error = %e, "skipping a kept seal-key record that does not decode");
                None
            }
        })
        .collect())
}

#[cfg(test)]
#[path = "seal_records_tests.rs"]
mod tests;
