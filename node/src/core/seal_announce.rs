//! Seal-key announcements in private founded rooms (docs/protocol.md, "Sealed bodies"): each
//! member announces its record on the room's topic whenever the room gains a member (and at start
//! and after a rotation), so members that never post are sealed to their published keys too.
//!
//! What a member takes: an announcement signed by the record's account, dated within 5 minutes,
//! later than the last one taken from that account in the room, at most 30 a minute of this
//! node's clock per account and room (so nobody makes members forward at will), from a member.
//! The first one taken from a member is answered with the local account's own, once per room
//! for all heard within 2 s, so two members that missed each other's announcements on a join
//! (a newcomer outside the gossip mesh yet) still meet. Own announcements are asked for here and
//! sent by the event loop on its next net tick, one per room. One from an account that
//! is not a member yet (an announcement may overtake the join that admits it) is held, 32 per
//! room, and taken once it is one.

use std::collections::HashMap;

use tim_protocol::{
    seal::{SealKeyAnnouncement, SealKeyRecord},
    AccountId, Code, RoomId, RoomState, Via,
};
use tracing::{debug, warn};

use super::{now_ms, seal_records::MAX_SEQ_AHEAD_MS, Core, Tier, Verdict};

/// The most records of non-members held per room.
const MAX_WAITING_PER_ROOM: usize = 32;
/// How far an announcement's `at` may be from the local clock (ms).
const ANNOUNCEMENT_SKEW_MS: u64 = 5 * 60 * 1000;
/// The most announcements taken from one account in one room per minute (a member announces on
/// every join, twice when it answers a newcomer).
const MAX_PER_MINUTE: u32 = 30;

/// How long an answer to a newcomer's announcement waits, gathering others, before it goes.
const ANSWER_AFTER_MS: u64 = 2_000;

/// What a node holds about announcements: those it heard, and its own still to send.
#[derive(Default)]
pub(crate) struct Announcements {
    /// Verified records announced by accounts not members yet, by room (rooms joined here; the
    /// oldest goes first when full).
    waiting: HashMap<RoomId, Vec<SealKeyRecord>>,
    /// The announcements taken, by room and current member.
    taken: HashMap<(RoomId, AccountId), Taken>,
    /// Rooms to announce this account's record in, and from when (local ms): one announcement
    /// per room however many reasons gather before the event loop sends it.
    due_own: HashMap<RoomId, u64>,
}

/// The announcements taken from one member in one room.
#[derive(Debug, Clone, Copy)]
struct Taken {
    /// The latest `at` taken.
    last_at: u64,
    /// When the current minute began (local ms) and how many were taken in it.
    minute: u64,
    count: u32,
}

impl Announcements {
    /// Holds a verified record announced in `room` by an account not a member there yet.
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

    /// The records waiting in `room` whose accounts are members now; what is held about
    /// announcements taken from accounts no longer members goes.
    pub(crate) fn release(&mut self, room: &RoomId, member: impl Fn(&AccountId) -> bool) -> Vec<SealKeyRecord> {
        self.taken.retain(|(r, account), _| r != room || member(account));
        let Some(waiting) = self.waiting.get_mut(room) else {
            return Vec::new();
        };
        let (released, kept): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|r| member(&r.account));
        *waiting = kept;
        if waiting.is_empty() {
            self.waiting.remove(room);
        }
        released
    }

    fn allows(taken: Option<&Taken>, at: u64, now: u64) -> bool {
        taken.is_none_or(|t| at > t.last_at && (now >= t.minute.saturating_add(60_000) || t.count < MAX_PER_MINUTE))
    }

    /// Whether an announcement by `account` in `room` made at `at` may be taken at `now` (local
    /// ms; see the module docs).
    pub(crate) fn due(&self, room: &RoomId, account: &AccountId, at: u64, now: u64) -> bool {
        Self::allows(self.taken.get(&(room.clone(), *account)), at, now)
    }

    /// Takes an announcement by `account` in `room` made at `at`, if it may be taken at `now`
    /// (checked and recorded at once, so racing copies cannot both pass): `None` if not,
    /// `Some(first)` with whether it is the first taken from `account` there.
    pub(crate) fn take(&mut self, room: &RoomId, account: &AccountId, at: u64, now: u64) -> Option<bool> {
        let key = (room.clone(), *account);
        if !Self::allows(self.taken.get(&key), at, now) {
            return None;
        }
        let first = !self.taken.contains_key(&key);
        let entry = self.taken.entry(key).or_insert(Taken {
            last_at: at,
            minute: now,
            count: 0,
        });
        if now >= entry.minute.saturating_add(60_000) {
            entry.minute = now;
            entry.count = 0;
        }
        entry.last_at = entry.last_at.max(at);
        entry.count += 1;
        Some(first)
    }

    /// Asks for this account's announcement in `room` from `from` (local ms) on; an earlier ask
    /// stands.
    pub(crate) fn ask(&mut self, room: &RoomId, from: u64) {
        let due = self.due_own.entry(room.clone()).or_insert(from);
        *due = (*due).min(from);
    }

    /// The rooms whose announcement is due at `now`, no longer asked for.
    pub(crate) fn due_own(&mut self, now: u64) -> Vec<RoomId> {
        let due: Vec<RoomId> = self
            .due_own
            .iter()
            .filter(|(_, from)| **from <= now)
            .map(|(room, _)| room.clone())
            .collect();
        for room in &due {
            self.due_own.remove(room);
        }
        due
    }

    /// Drops what is held about a room this node left.
    pub(crate) fn forget_room(&mut self, room: &RoomId) {
        self.waiting.remove(room);
        self.taken.retain(|(r, _), _| r != room);
        self.due_own.remove(room);
    }
}

impl Core {
    fn announcements(&self) -> std::sync::MutexGuard<'_, Announcements> {
        self.announcements
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops what is held about announcements in a room the local account left.
    pub(crate) fn forget_room_announcements(&self, room: &RoomId) {
        self.announcements().forget_room(room);
    }

    /// An `Envelope::SealKey` (see the module docs): `Stored` (gossip forwards it) when taken,
    /// or when it names the record already held (a member that just joined may need it).
    pub(crate) fn seal_key_in(&self, announcement: SealKeyAnnouncement, via: &Via) -> crate::Result<Verdict> {
        let SealKeyAnnouncement { room, record, at, .. } = &announcement;
        let account = record.account;
        if *via != Via::Room(room.clone()) {
            return Err(crate::Error::BadParameters(
                "seal keys are announced on their room's topic".into(),
            ));
        }
        if !self.is_member(room) {
            return Ok(Verdict::Ignored(Code::NotFound));
        }
        let now = now_ms();
        if at.abs_diff(now) > ANNOUNCEMENT_SKEW_MS {
            return Ok(Verdict::Ignored(Code::Expired));
        }
        if record.seq > now.saturating_add(MAX_SEQ_AHEAD_MS) {
            return Ok(Verdict::Ignored(Code::BadParameters));
        }
        let (member, local_member) = match self.founded().get(room).map(tim_protocol::Membership::state) {
            Some(state) if state.private => (state.is_member(&account), state.is_member(&self.account)),
            // Announcements are for private founded rooms only.
            _ => return Ok(Verdict::Ignored(Code::NotFound)),
        };
        if member && !self.announcements().due(room, &account, *at, now) {
            return Ok(Verdict::Duplicate);
        }
        let held = self.reader.record_of(&account).as_ref() == Some(record);
        if !held && !self.reader.would_change(record, Tier::Trusted) {
            return Ok(Verdict::Duplicate);
        }
        announcement.verify()?;
        if !held {
            record.verify()?;
        }
        if !member {
            debug!(%room, %account, "a seal key announced ahead of its account's membership");
            self.announcements().wait(room, record.clone());
            return Ok(Verdict::Ignored(Code::PermissionDenied));
        }
        let Some(first) = self.announcements().take(room, &account, *at, now) else {
            return Ok(Verdict::Duplicate);
        };
        let change = self.learn_seal_key(record.clone(), Tier::Trusted);
        self.keep_seal_keys(&change);
        if first && local_member && account != self.account {
            // Answered once per room for all the newcomers heard in a moment.
            self.announcements().ask(room, now.saturating_add(ANSWER_AFTER_MS));
        }
        Ok(Verdict::Stored)
    }

    /// Seal keys after a membership change in `room` (its state now `state`): the records of
    /// accounts that are members now and announced ahead are taken; and when the room gained a
    /// member (`gained`), the local account announces its own, so a newcomer hears every
    /// member's key and the members the newcomer's.
    pub(crate) fn after_membership_change(&self, room: &RoomId, state: &RoomState, gained: bool) {
        if !state.private {
            return;
        }
        let released = self.announcements().release(room, |account| state.is_member(account));
        for record in released {
            let change = self.learn_seal_key(record, Tier::Trusted);
            self.keep_seal_keys(&change);
        }
        if gained && state.is_member(&self.account) {
            self.announce_seal_key(room);
        }
    }

    /// Asks for the local account's announcement in `room` now (the event loop sends it on its
    /// next net tick, once however often it was asked).
    pub(crate) fn announce_seal_key(&self, room: &RoomId) {
        self.announcements().ask(room, now_ms());
    }

    /// The announcements of the local account's record that are due now: their rooms and
    /// `Envelope::SealKey` frames, for the event loop to publish.
    pub(crate) fn due_announcements(&self) -> Vec<(RoomId, Vec<u8>)> {
        let Some(record) = self.reader.own_record() else {
            return Vec::new();
        };
        let now = now_ms();
        let mut out = Vec::new();
        let due = self.announcements().due_own(now);
        for room in due {
            let announcement = SealKeyAnnouncement::sign(&self.key, room.clone(), record.clone(), now);
            match announcement.and_then(|a| tim_protocol::encode(&tim_protocol::Envelope::SealKey(a))) {
                Ok(frame) => out.push((room, frame)),
                Err(e) => warn!(%room, error = %e, "could not encode a seal-key announcement"),
            }
        }
        out
    }

    /// Announces the local account's seal-key record in every private founded room it is a
    /// member of (at start, and after a rotation).
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

#[cfg(test)]
#[path = "seal_announce_tests.rs"]
mod tests;
