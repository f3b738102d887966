//! Presence: the local account's availability, sent signed to each contact (at start, when it
//! changes, every [`PRESENCE_INTERVAL`], and `offline` when the node stops cleanly), and what
//! contacts last said. Invisible sends nothing. Nothing of it is stored.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tim_protocol::{encode, presence::check_presence, AccountId, Availability, ContactState, Envelope, Presence, Via};
use tracing::warn;

use super::{bump, now_ms, Core, Verdict};
use crate::{
    delivery::{Delivery, DeliveryKind},
    Error, Event, Result,
};

/// How often a node tells its contacts it is still there.
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(60);
/// A contact not heard from for this long shows `offline` (three intervals: one lost notice
/// does not make anyone look gone).
pub const PRESENCE_TIMEOUT: Duration = Duration::from_secs(180);

/// What the local account shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyPresence {
    /// Availability while running; `None` is invisible (nothing is sent).
    pub status: Option<Availability>,
    /// The text.
    pub text: String,
}

impl Default for MyPresence {
    fn default() -> Self {
        MyPresence {
            status: Some(Availability::Online),
            text: String::new(),
        }
    }
}

/// What a contact last said, and when it was heard (ms since the epoch, local clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactPresence {
    /// Its availability (`offline` once not heard from for [`PRESENCE_TIMEOUT`]).
    pub status: Availability,
    /// Its text.
    pub text: String,
    /// When it was last heard from.
    pub last_seen: u64,
}

/// The local account's presence and what contacts said.
#[derive(Default)]
pub(crate) struct PresenceBook {
    mine: Mutex<Mine>,
    /// One entry per contact heard from (only contacts are taken), with the signed time of the
    /// notice it came from.
    seen: Mutex<HashMap<AccountId, (u64, ContactPresence)>>,
}

/// What the local account shows, and the signed time of its newest notice. Notices are signed
/// under this lock with strictly increasing times, so a notice of an older state never carries a
/// later time than the notice of a newer one (receivers keep the newest by time).
#[derive(Default)]
struct Mine {
    shown: MyPresence,
    last_at: u64,
}

impl Core {
    fn mine(&self) -> std::sync::MutexGuard<'_, Mine> {
        self.presence
            .mine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets what the local account shows; returns the notices to send now.
    pub(crate) fn set_presence(&self, mine: MyPresence) -> Result<Vec<Delivery>> {
        if mine.text.len() > tim_protocol::presence::MAX_PRESENCE_TEXT {
            return Err(tim_protocol::Error::TooLarge {
                what: "presence text",
                len: mine.text.len(),
                max: tim_protocol::presence::MAX_PRESENCE_TEXT,
            }
            .into());
        }
        let contacts = self.presence_contacts()?;
        let mut held = self.mine();
        held.shown = mine;
        self.notices_locked(&mut held, &contacts, None)
    }

    /// What the local account shows.
    pub(crate) fn my_presence(&self) -> MyPresence {
        self.mine().shown.clone()
    }

    /// The contacts (not blocked) presence notices go to.
    fn presence_contacts(&self) -> Result<Vec<AccountId>> {
        Ok(self
            .store
            .contacts()?
            .into_iter()
            .filter(|(account, record)| record.state == ContactState::Contact && !self.is_blocked(account))
            .map(|(account, _)| account)
            .collect())
    }

    /// The notices of `held` (or of `status` instead) for `to`, signed under its lock.
    fn notices_locked(&self, held: &mut Mine, to: &[AccountId], status: Option<Availability>) -> Result<Vec<Delivery>> {
        let Some(shown) = held.shown.status else {
            return Ok(Vec::new());
        };
        let status = status.unwrap_or(shown);
        let text = held.shown.text.clone();
        to.iter()
            .map(|account| self.notice(held, *account, status, text.clone()))
            .collect()
    }

    /// One signed notice per contact (not blocked) of the local account's presence, or of
    /// `status` instead (the `offline` notice at stop); none while invisible.
    pub(crate) fn presence_notices(&self, status: Option<Availability>) -> Result<Vec<Delivery>> {
        let contacts = self.presence_contacts()?;
        let mut held = self.mine();
        self.notices_locked(&mut held, &contacts, status)
    }

    /// The local account's presence for `account` alone (a new contact hears it at once, not at
    /// the next interval); none while invisible.
    pub(crate) fn presence_for(&self, account: AccountId) -> Result<Option<Delivery>> {
        let mut held = self.mine();
        Ok(self.notices_locked(&mut held, &[account], None)?.pop())
    }

    /// The signed notice of `status` and `text` for `account`, as a one-attempt delivery, dated
    /// after every notice signed before it.
    fn notice(&self, held: &mut Mine, account: AccountId, status: Availability, text: String) -> Result<Delivery> {
        let now = now_ms().max(held.last_at.saturating_add(1));
        held.last_at = now;
        let notice = Presence::sign(&self.key, account, status, text, now)?;
        let frame = encode(&Envelope::Presence(notice))?;
        // Nothing answers a presence by id: any unique id does.
        let mid = tim_protocol::MessageId::from_bytes(rand::random());
        Ok(Delivery::new(account, mid, frame, DeliveryKind::Stream, now))
    }

    /// A presence notice that arrived `via` a path: taken only from a contact.
    pub(super) fn presence_in(&self, notice: Presence, via: &Via) -> Result<Verdict> {
        let notice = notice.verify().inspect_err(|e| {
            bump(&self.counters.forged_rejected);
            warn!(error = %e, "refused a forged presence notice");
        })?;
        let now = now_ms();
        check_presence(&notice, &self.account, via, now)?;
        let is_contact = self
            .store
            .contact(&notice.from)?
            .is_some_and(|r| r.state == ContactState::Contact);
        if !is_contact {
            return Err(Error::Protocol(tim_protocol::Error::PermissionDenied(
                "presence from an account that is not a contact",
            )));
        }
        let notice = notice.into_inner();
        let seen = ContactPresence {
            status: notice.status,
            text: notice.text.clone(),
            last_seen: now,
        };
        if let Ok(mut book) = self.presence.seen.lock() {
            match book.get_mut(&notice.from) {
                // An older notice that arrived late (notices travel on separate pipe requests):
                // it shows the contact is there, but does not undo what a newer one said.
                Some((held_at, held)) if *held_at > notice.at => {
                    held.last_seen = now;
                    return Ok(Verdict::Duplicate);
                }
                _ => {
                    book.insert(notice.from, (notice.at, seen));
                }
            }
        }
        self.emit(Event::Presence {
            account: notice.from,
            status: notice.status,
            text: notice.text,
            last_seen: now,
        });
        Ok(Verdict::Stored)
    }

    /// What `account` last said, `offline` once not heard from for [`PRESENCE_TIMEOUT`]; `None`
    /// if never heard from in this run.
    pub(crate) fn presence_of(&self, account: &AccountId) -> Option<ContactPresence> {
        let (_, seen) = self.presence.seen.lock().ok()?.get(account).cloned()?;
        let timeout = u64::try_from(PRESENCE_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        if now_ms().saturating_sub(seen.last_seen) > timeout {
            return Some(ContactPresence {
                status: Availability::Offline,
                ..seen
            });
        }
        Some(seen)
    }
}
