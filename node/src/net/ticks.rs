//! The event loop's periodic work on one timer. The loop's select polls every timer it holds on
//! each wake-up, and an idle node's loop wakes many times a second (every connection's traffic
//! wakes the swarm); one deadline for all periodic work costs one timer poll a wake-up instead of
//! one per period. No I/O: the loop passes the time in.

use std::time::{Duration, Instant};

/// A piece of periodic work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Tick {
    /// Republish the route record.
    RouteRefresh,
    /// Catch up every joined room.
    RoomSync,
    /// Re-decide reachability.
    Reachability,
    /// Send presence to contacts.
    Presence,
    /// Connection management and room discovery.
    Net,
}

/// When each piece of periodic work is next due. A piece that fell behind (the loop was busy)
/// runs once, then waits a whole period again, as `MissedTickBehavior::Delay`.
#[derive(Debug)]
pub(super) struct Ticks {
    due: Vec<(Tick, Instant, Duration)>,
}

/// The periods and first delays of the periodic work.
#[derive(Debug, Clone, Copy)]
pub(super) struct Periods {
    pub(super) route_refresh: Duration,
    pub(super) room_sync: Duration,
    pub(super) reachability: Duration,
    pub(super) presence: Duration,
    pub(super) net: Duration,
}

impl Ticks {
    /// Reachability is decided at once; presence and the net tick come one net period after
    /// start (routes and connections need a moment); the others one period after start.
    pub(super) fn new(now: Instant, p: Periods) -> Ticks {
        Ticks {
            due: vec![
                (Tick::RouteRefresh, now + p.route_refresh, p.route_refresh),
                (Tick::RoomSync, now + p.room_sync, p.room_sync),
                (Tick::Reachability, now, p.reachability),
                (Tick::Presence, now + p.net, p.presence),
                (Tick::Net, now + p.net, p.net),
            ],
        }
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Instant> {
        self.due.iter().map(|(_, at, _)| *at).min()
    }

    /// Every piece due at `now`, each rescheduled a period from `now`.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<Tick> {
        let mut fired = Vec::new();
        for (tick, at, period) in &mut self.due {
            if *at <= now {
                fired.push(*tick);
                *at = now + (*period).max(Duration::from_millis(1));
            }
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn periods() -> Periods {
        Periods {
            route_refresh: Duration::from_secs(600),
            room_sync: Duration::from_secs(30),
            reachability: Duration::from_secs(5),
            presence: Duration::from_secs(60),
            net: Duration::from_secs(1),
        }
    }

    #[test]
    fn each_piece_comes_at_its_own_period_on_one_deadline() {
        let t0 = Instant::now();
        let mut ticks = Ticks::new(t0, periods());
        assert_eq!(ticks.next(), Some(t0));
        assert_eq!(ticks.take_due(t0), vec![Tick::Reachability]);
        assert_eq!(ticks.next(), Some(t0 + Duration::from_secs(1)));
        assert!(ticks.take_due(t0 + Duration::from_millis(999)).is_empty());
        let s = |n| t0 + Duration::from_secs(n);
        assert_eq!(ticks.take_due(s(1)), vec![Tick::Presence, Tick::Net]);
        let mut counts = std::collections::HashMap::new();
        for second in 2..=600 {
            for tick in ticks.take_due(s(second)) {
                *counts.entry(tick).or_insert(0) += 1;
            }
        }
        // Over seconds 2..=600: the net tick each second, reachability every 5 s (from 0),
        // room sync every 30 s, presence every 60 s (from 1), the route refresh at 600 s.
        assert_eq!(counts.get(&Tick::Net), Some(&599));
        assert_eq!(counts.get(&Tick::Reachability), Some(&120));
        assert_eq!(counts.get(&Tick::RoomSync), Some(&20));
        assert_eq!(counts.get(&Tick::Presence), Some(&9));
        assert_eq!(counts.get(&Tick::RouteRefresh), Some(&1));
    }

    #[test]
    fn a_late_loop_runs_a_missed_piece_once_then_waits_a_whole_period() {
        let t0 = Instant::now();
        let mut ticks = Ticks::new(t0, periods());
        ticks.take_due(t0);
        // The loop was stuck for 12 s: reachability (due at 5 and 10) runs once.
        let late = t0 + Duration::from_secs(12);
        let fired = ticks.take_due(late);
        assert_eq!(fired.iter().filter(|t| **t == Tick::Reachability).count(), 1);
        assert!(ticks
            .take_due(late + Duration::from_millis(4_999))
            .iter()
            .all(|t| *t != Tick::Reachability));
        assert!(ticks
            .take_due(late + Duration::from_secs(5))
            .contains(&Tick::Reachability));
    }

    #[test]
    fn a_zero_period_never_fires_twice_at_one_instant() {
        let t0 = Instant::now();
        let mut ticks = Ticks::new(
            t0,
            Periods {
                room_sync: Duration::ZERO,
                ..periods()
            },
        );
        assert!(ticks.take_due(t0).contains(&Tick::RoomSync));
        assert!(!ticks.take_due(t0).contains(&Tick::RoomSync));
    }
}
