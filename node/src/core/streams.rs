//! Streams: live data for whoever is online now. Signed and checked like everything else, then
//! handed to subscribers as an event and forgotten: nothing of a stream is written to the store.
//! Each sender gets a bounded rate, so a peer cannot make this node spend itself on its frames.

use std::{collections::HashMap, sync::Mutex};

use tim_protocol::{stream::check_stream, AccountId, Recipient, Stream, Via};
use tracing::warn;

use super::{bump, now_ms, Core, Verdict};
use crate::{Conversation, Error, Event, Result};

/// Most stream frames taken from one sender per second; more are refused (`5104`).
pub(crate) const STREAMS_PER_SECOND: u32 = 50;
/// Most distinct senders whose frames are taken in one second (the counts are bounded too).
const SENDERS_PER_SECOND: usize = 4_096;

/// Per-sender counts of stream frames within the current one-second window.
#[derive(Default)]
pub(crate) struct StreamLimiter {
    inner: Mutex<(u64, HashMap<AccountId, u32>)>,
}

impl StreamLimiter {
    /// Counts one frame from `from` at `now_ms`; `false` when over its rate (or too many
    /// senders this second).
    pub(crate) fn admit(&self, from: AccountId, now_ms: u64) -> bool {
        let Ok(mut guard) = self.inner.lock() else { return false };
        let (window, counts) = &mut *guard;
        let second = now_ms / 1000;
        if *window != second {
            *window = second;
            counts.clear();
        }
        if !counts.contains_key(&from) && counts.len() >= SENDERS_PER_SECOND {
            return false;
        }
        let n = counts.entry(from).or_default();
        if *n >= STREAMS_PER_SECOND {
            return false;
        }
        *n += 1;
        true
    }
}

impl Core {
    /// Signs a stream frame of the local account for `to` (an account or a room it joined).
    pub(crate) fn sign_stream(&self, to: Recipient, data: Vec<u8>) -> Result<Stream> {
        match &to {
            Recipient::Account(account) if self.is_blocked(account) => return Err(Error::Blocked(*account)),
            Recipient::Room(room) if !self.is_member(room) => {
                return Err(Error::BadParameters(format!("join room {room} before streaming to it")))
            }
            _ => {}
        }
        Ok(Stream::sign(&self.key, to, data, now_ms())?.into_inner())
    }

    /// A stream frame that arrived `via` a path: verified, checked, rate-limited, reported.
    pub(super) fn stream_in(&self, stream: Stream, via: &Via) -> Result<Verdict> {
        let stream = stream.verify().inspect_err(|e| {
            bump(&self.counters.forged_rejected);
            warn!(error = %e, "refused a forged stream");
        })?;
        let now = now_ms();
        check_stream(&stream, &self.account, via, now)?;
        if !self.stream_limiter.admit(stream.from, now) {
            return Err(Error::Overloaded("stream rate"));
        }
        let conversation = match &stream.to {
            Recipient::Room(room) => Conversation::Room(room.clone()),
            Recipient::Account(_) => Conversation::Peer(stream.from),
        };
        let stream = stream.into_inner();
        self.emit(Event::Stream {
            from: stream.from,
            conversation,
            data: stream.data,
        });
        Ok(Verdict::Stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sender_gets_its_rate_per_second_and_the_next_second_starts_afresh() {
        let limiter = StreamLimiter::default();
        let (a, b) = (
            tim_protocol::test_util::key(1).account_id(),
            tim_protocol::test_util::key(2).account_id(),
        );
        for _ in 0..STREAMS_PER_SECOND {
            assert!(limiter.admit(a, 5_000));
        }
        assert!(!limiter.admit(a, 5_999), "over the rate in the same second");
        assert!(limiter.admit(b, 5_999), "another sender has its own");
        assert!(limiter.admit(a, 6_000), "a new second");
    }
}
