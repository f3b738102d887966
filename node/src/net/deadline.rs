//! When an inbound stream is closed for silence, as a state machine that is handed the time: a
//! stream must bring its first complete frame soon after it opens, a frame once started must be
//! finished soon, and a pipe with nothing to do is closed after a while. Without these, a peer
//! could hold a slot of the inbound budget for ever by opening streams and never writing.

use std::time::{Duration, Instant};

/// How long a new inbound stream may take to deliver its first complete frame (a pipe's first
/// request, a sync exchange's request). An honest peer writes it at once: its first data travels
/// with the protocol proposal.
pub(crate) const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a frame may take from its first byte to its last, and an answer to be written: the
/// largest pipe frame is about 69 KiB, so this allows for links slower than 10 KiB/s.
pub(crate) const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than the sender's own idle limit an inbound pipe may stay idle: the sender
/// closes an idle pipe itself (`Config::idle_connection_timeout`), so an honest pipe ends from
/// its side, not under a request in flight.
pub(crate) const IDLE_GRACE: Duration = Duration::from_secs(5);

/// The limits of one inbound stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) first_frame: Duration,
    pub(crate) frame: Duration,
    pub(crate) idle: Duration,
}

impl Timeouts {
    /// The limits of inbound pipes, whose senders close them after `sender_idle`.
    pub(crate) fn pipe(sender_idle: Duration) -> Self {
        Timeouts {
            first_frame: FIRST_FRAME_TIMEOUT,
            frame: FRAME_TIMEOUT,
            idle: sender_idle + IDLE_GRACE,
        }
    }
}

/// Which limit a stream broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    FirstFrame,
    Frame,
    Idle,
}

impl std::fmt::Display for Expired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expired::FirstFrame => "no complete frame in time after opening",
            Expired::Frame => "a frame was not finished in time",
            Expired::Idle => "idle too long",
        })
    }
}

/// The clock of one inbound stream.
#[derive(Debug)]
pub(crate) struct StreamClock {
    limits: Timeouts,
    opened: Instant,
    got_frame: bool,
    /// The last complete frame or written answer.
    last_activity: Instant,
    /// When the first byte of the frame being read arrived (or reading resumed).
    frame_started: Option<Instant>,
}

impl StreamClock {
    pub(crate) fn new(limits: Timeouts, now: Instant) -> Self {
        StreamClock {
            limits,
            opened: now,
            got_frame: false,
            last_activity: now,
            frame_started: None,
        }
    }

    /// A complete frame was taken from the buffer.
    pub(crate) fn frame_done(&mut self, now: Instant) {
        self.got_frame = true;
        self.last_activity = now;
        self.frame_started = None;
    }

    /// After taking every complete frame: whether the bytes left are the start of another.
    pub(crate) fn buffered(&mut self, now: Instant, in_frame: bool) {
        if !in_frame {
            self.frame_started = None;
        } else if self.frame_started.is_none() {
            self.frame_started = Some(now);
        }
    }

    /// This node did something for the peer (wrote an answer).
    pub(crate) fn activity(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// This node starts reading again after it stopped (it had enough work from the peer): the
    /// frame being read gets its full time from now.
    pub(crate) fn resumed(&mut self, now: Instant) {
        if self.frame_started.is_some() {
            self.frame_started = Some(now);
        }
        self.last_activity = now;
    }

    /// The next deadline; none while this node is not reading, nor idling while it still works
    /// on the peer's requests (`busy`).
    pub(crate) fn deadline(&self, reading: bool, busy: bool) -> Option<Instant> {
        if !reading {
            return None;
        }
        let first = (!self.got_frame).then(|| self.opened + self.limits.first_frame);
        let other = match self.frame_started {
            Some(started) => Some(started + self.limits.frame),
            None if busy || !self.got_frame => None,
            None => Some(self.last_activity + self.limits.idle),
        };
        match (first, other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The limit broken at `now`, if any (same arguments as [`StreamClock::deadline`]).
    pub(crate) fn expired(&self, now: Instant, reading: bool, busy: bool) -> Option<Expired> {
        self.deadline(reading, busy).filter(|d| *d <= now)?;
        if !self.got_frame && self.opened + self.limits.first_frame <= now {
            Some(Expired::FirstFrame)
        } else if self.frame_started.is_some() {
            Some(Expired::Frame)
        } else {
            Some(Expired::Idle)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn clock() -> (StreamClock, Instant) {
        let t0 = Instant::now();
        (StreamClock::new(Timeouts::pipe(60 * S), t0), t0)
    }

    #[test]
    fn a_silent_stream_is_closed_at_the_first_frame_deadline() {
        let (c, t0) = clock();
        assert_eq!(c.deadline(true, false), Some(t0 + FIRST_FRAME_TIMEOUT));
        assert_eq!(c.expired(t0 + FIRST_FRAME_TIMEOUT - S, true, false), None);
        assert_eq!(
            c.expired(t0 + FIRST_FRAME_TIMEOUT, true, false),
            Some(Expired::FirstFrame)
        );
    }

    #[test]
    fn a_first_frame_trickling_in_still_has_only_the_first_frame_deadline() {
        let (mut c, t0) = clock();
        c.buffered(t0 + S, true);
        assert_eq!(c.deadline(true, false), Some(t0 + FIRST_FRAME_TIMEOUT));
        c.buffered(t0 + 2 * S, true);
        assert_eq!(
            c.expired(t0 + FIRST_FRAME_TIMEOUT, true, false),
            Some(Expired::FirstFrame)
        );
    }

    #[test]
    fn a_started_frame_must_finish_within_the_frame_timeout() {
        let (mut c, t0) = clock();
        c.frame_done(t0 + S);
        c.buffered(t0 + S, false);
        let start = t0 + 30 * S;
        c.buffered(start, true);
        // More bytes of the same frame do not move its deadline.
        c.buffered(start + 5 * S, true);
        assert_eq!(c.deadline(true, false), Some(start + FRAME_TIMEOUT));
        assert_eq!(c.expired(start + FRAME_TIMEOUT, true, false), Some(Expired::Frame));
        // Finishing it ends that deadline; the next frame starts its own.
        c.frame_done(start + 9 * S);
        c.buffered(start + 9 * S, true);
        assert_eq!(c.deadline(true, false), Some(start + 9 * S + FRAME_TIMEOUT));
    }

    #[test]
    fn an_idle_pipe_is_closed_after_the_idle_timeout_unless_work_is_pending() {
        let (mut c, t0) = clock();
        let idle = 60 * S + IDLE_GRACE;
        c.frame_done(t0 + S);
        c.buffered(t0 + S, false);
        assert_eq!(c.deadline(true, true), None, "answers pending: not idle");
        c.activity(t0 + 2 * S);
        assert_eq!(c.deadline(true, false), Some(t0 + 2 * S + idle));
        assert_eq!(c.expired(t0 + 2 * S + idle - S, true, false), None);
        assert_eq!(c.expired(t0 + 2 * S + idle, true, false), Some(Expired::Idle));
    }

    #[test]
    fn no_deadline_while_this_node_is_not_reading_and_a_fresh_one_after() {
        let (mut c, t0) = clock();
        c.frame_done(t0);
        c.buffered(t0, true);
        assert_eq!(c.deadline(false, true), None);
        assert_eq!(c.expired(t0 + 600 * S, false, true), None);
        c.resumed(t0 + 600 * S);
        assert_eq!(c.deadline(true, true), Some(t0 + 600 * S + FRAME_TIMEOUT));
    }
}
