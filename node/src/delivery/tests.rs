//! The delivery state machine under a fake clock: retention, backoff ceiling, relay caps,
//! cancel-on-revoke, pipe failover, timeouts and outcome batching.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use tim_storage::OutKind;

const TIMEOUT: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_secs(60);
const RETRY_MAX: Duration = Duration::from_secs(8);
const RETENTION: Duration = Duration::from_secs(3600);
const START_MS: u64 = 1_700_000_000_000;

fn account(seed: u8) -> AccountId {
    tim_protocol::test_util::key(seed).account_id()
}

fn mid(n: u8) -> MessageId {
    MessageId::from_bytes([n; 32])
}

/// A fake clock: both readings advance together.
struct Clock {
    start: Instant,
    elapsed: Duration,
}

impl Clock {
    fn new() -> Self {
        Clock {
            start: Instant::now(),
            elapsed: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        Now {
            instant: self.start + self.elapsed,
            unix_ms: START_MS + self.elapsed.as_millis() as u64,
        }
    }

    fn advance(&mut self, d: Duration) -> Now {
        self.elapsed += d;
        self.now()
    }
}

fn machine(max_relays: usize) -> Deliveries {
    Deliveries::new(Settings {
        local: account(0),
        request_timeout: TIMEOUT,
        pipe_idle: IDLE,
        retry_max: RETRY_MAX,
        retention: RETENTION,
        max_relays,
    })
}

fn delivery(to: AccountId, n: u8, kind: DeliveryKind, queued_at: u64) -> Delivery {
    Delivery::new(to, mid(n), vec![n], kind, queued_at)
}

fn outputs(d: &mut Deliveries) -> Vec<Output> {
    std::iter::from_fn(|| d.poll()).collect()
}

/// The ids of the requests sent, in order.
fn sent(outs: &[Output]) -> Vec<(PeerId, u64, u64)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::SendOnPipe {
                peer, generation, id, ..
            } => Some((*peer, *generation, *id)),
            _ => None,
        })
        .collect()
}

/// The frames of the requests sent, in order.
fn frames_sent(outs: &[Output]) -> Vec<Vec<u8>> {
    outs.iter()
        .filter_map(|o| match o {
            Output::SendOnPipe { frame, .. } => Some(frame.clone()),
            _ => None,
        })
        .collect()
}

fn failures(outs: &[Output]) -> Vec<(MessageId, Code)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Failed { mid, code, .. } => Some((*mid, *code)),
            _ => None,
        })
        .collect()
}

fn written(outs: &[Output]) -> Vec<DeliveryOutcome> {
    outs.iter()
        .filter_map(|o| match o {
            Output::WriteOutcomes(batch) => Some(batch.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Runs every timeout up to `until` from the clock's current reading, in order, collecting the
/// outputs; what `on_output` returns (answers, closes) is fed back in.
fn run_until(d: &mut Deliveries, clock: &mut Clock, until: Duration) -> Vec<Output> {
    let end = clock.start + until;
    let mut all = Vec::new();
    while let Some(at) = d.poll_timeout() {
        if at > end {
            break;
        }
        let step = at.saturating_duration_since(clock.start + clock.elapsed);
        let now = clock.advance(step);
        d.handle_timeout(now);
        all.extend(outputs(d));
    }
    clock.elapsed = until.max(clock.elapsed);
    all
}

#[test]
fn a_routed_delivery_opens_one_pipe_and_is_recorded_on_its_answer() {
    let (mut d, clock, bob, peer) = (machine(10), Clock::new(), account(2), PeerId::random());
    let now = clock.now();
    d.route_found(bob, peer, START_MS + 60_000, now);
    d.deliver(delivery(bob, 1, DeliveryKind::Message, START_MS), now);
    d.deliver(delivery(bob, 2, DeliveryKind::Message, START_MS), now);
    let outs = outputs(&mut d);
    assert_eq!(outs[0], Output::OpenPipe { peer, generation: 1 });
    assert_eq!(sent(&outs), vec![(peer, 1, 0), (peer, 1, 1)], "both on the one pipe");
    d.answer(0, Ack::Stored, false, now);
    d.answer(1, Ack::Stored, true, now);
    let outs = outputs(&mut d);
    assert_eq!(
        written(&outs),
        vec![DeliveryOutcome {
            mid: mid(1),
            kind: OutKind::Message,
            to: bob,
            delivered: true
        }],
        "only the answer the pipe had not recorded itself"
    );
}

#[test]
fn without_a_route_it_waits_for_a_lookup_and_retries_when_none_is_found() {
    let (mut d, mut clock, bob, peer) = (machine(10), Clock::new(), account(2), PeerId::random());
    d.deliver(delivery(bob, 1, DeliveryKind::Message, START_MS), clock.now());
    assert_eq!(outputs(&mut d), vec![Output::LookUpRoute(bob)]);
    d.route_failed(bob, clock.now());
    assert!(outputs(&mut d).is_empty());
    let first = d.poll_timeout().unwrap();
    assert_eq!(
        first - clock.now().instant,
        RETRY_BASE,
        "first retry after the base delay"
    );
    let outs = run_until(&mut d, &mut clock, RETRY_BASE);
    assert_eq!(outs, vec![Output::LookUpRoute(bob)], "looked up again");
    d.route_found(bob, peer, START_MS + 60_000, clock.now());
    assert_eq!(sent(&outputs(&mut d)).len(), 1, "sent once the route is found");
}

#[test]
fn backoff_doubles_up_to_its_ceiling() {
    let (mut d, mut clock, bob) = (machine(10), Clock::new(), account(2));
    d.deliver(delivery(bob, 1, DeliveryKind::Message, START_MS), clock.now());
    outputs(&mut d);
    let mut waits = Vec::new();
    for _ in 0..8 {
        d.route_failed(bob, clock.now());
        let at = d.poll_timeout().unwrap();
        waits.push(at - clock.now().instant);
        let now = clock.advance(at - clock.now().instant);
        d.handle_timeout(now);
        assert_eq!(outputs(&mut d), vec![Output::LookUpRoute(bob)]);
    }
    let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, vec![500, 1000, 2000, 4000, 8000, 8000, 8000, 8000]);
}

#[test]
fn an_entry_older_than_the_retention_is_given_up_as_expired() {
    let (mut d, mut clock, bob) = (machine(10), Clock::new(), account(2));
    // Queued (say, before a restart) almost a whole retention ago.
    let queued_at = START_MS - RETENTION.as_millis() as u64 + 5_000;
    d.resume(delivery(bob, 1, DeliveryKind::Message, queued_at), clock.now());
    let mut outs = Vec::new();
    for _ in 0..20 {
        let until = clock.elapsed + RETRY_MAX;
        outs.extend(run_until(&mut d, &mut clock, until));
        d.route_failed(bob, clock.now());
        outs.extend(outputs(&mut d));
        if !failures(&outs).is_empty() {
            break;
        }
    }
    assert_eq!(failures(&outs), vec![(mid(1), Code::Expired)]);
    assert!(clock.now().unix_ms - queued_at > RETENTION.as_millis() as u64);
    assert!(
        clock.now().unix_ms - queued_at <= RETENTION.as_millis() as u64 + RETRY_MAX.as_millis() as u64,
        "given up at the first failure past the retention"
    );
    assert_eq!(
        written(&outs),
        vec![DeliveryOutcome {
            mid: mid(1),
            kind: OutKind::Message,
            to: bob,
            delivered: false
        }],
        "its outbox entry is closed as not delivered"
    );
    assert!(
        d.poll_timeout().is_none() || !d.is_retrying(&bob),
        "nothing left to retry"
    );
}

#[test]
fn relays_are_capped_and_a_refused_relay_does_not_free_a_slot() {
    let (mut d, clock, bob, peer) = (machine(2), Clock::new(), account(2), PeerId::random());
    let now = clock.now();
    d.route_found(bob, peer, START_MS + 60_000, now);
    for n in 1..=4 {
        d.deliver(delivery(bob, n, DeliveryKind::Relay, START_MS), now);
    }
    let outs = outputs(&mut d);
    assert_eq!(sent(&outs).len(), 2, "two relays at once");
    assert_eq!(
        failures(&outs),
        vec![(mid(3), Code::Overloaded), (mid(4), Code::Overloaded)]
    );
    assert!(written(&outs).is_empty(), "relays are not in the outbox");
    // Still two pending: a fifth is refused too.
    d.deliver(delivery(bob, 5, DeliveryKind::Relay, START_MS), now);
    assert_eq!(failures(&outputs(&mut d)), vec![(mid(5), Code::Overloaded)]);
    // One answered: one slot free, exactly.
    d.answer(0, Ack::Stored, false, now);
    d.deliver(delivery(bob, 6, DeliveryKind::Relay, START_MS), now);
    d.deliver(delivery(bob, 7, DeliveryKind::Relay, START_MS), now);
    let outs = outputs(&mut d);
    assert_eq!(sent(&outs).len(), 1);
    assert_eq!(failures(&outs), vec![(mid(7), Code::Overloaded)]);
    // Outbox deliveries are never capped by the relay limit.
    d.deliver(delivery(bob, 8, DeliveryKind::Message, START_MS), now);
    assert_eq!(sent(&outputs(&mut d)).len(), 1);
}

#[test]
fn a_revoke_cancels_queued_copies_and_an_in_flight_copy_is_never_retried() {
    let (mut d, mut clock, bob, carol, peer) = (machine(10), Clock::new(), account(2), account(3), PeerId::random());
    // One in flight to bob, one waiting for a route to carol, one waiting to be retried.
    d.route_found(bob, peer, START_MS + 60_000, clock.now());
    d.deliver(delivery(bob, 1, DeliveryKind::Message, START_MS), clock.now());
    d.deliver(delivery(carol, 1, DeliveryKind::Message, START_MS), clock.now());
    d.deliver(delivery(carol, 2, DeliveryKind::Message, START_MS), clock.now());
    d.route_failed(carol, clock.now());
    d.deliver(delivery(carol, 1, DeliveryKind::Message, START_MS), clock.now());
    // The revoke of message 1 itself travels as a control delivery and is not cancelled.
    d.deliver(delivery(carol, 1, DeliveryKind::Control, START_MS), clock.now());
    outputs(&mut d);
    d.cancel(mid(1));
    assert!(d.is_retrying(&carol), "message 2 still waits");
    // The in-flight copy's pipe breaks: it is not retried.
    d.pipe_closed(peer, 1, "test", clock.now());
    assert!(!d.is_retrying(&bob));
    // Carol's route appears: only message 2's retry and the control are sent.
    let peer_c = PeerId::random();
    d.route_found(carol, peer_c, START_MS + 60_000, clock.now());
    let outs = outputs(&mut d);
    let frames = frames_sent(&outs);
    assert_eq!(frames, vec![vec![1]], "the control (frame [1]) waiting for the route");
    let outs = run_until(&mut d, &mut clock, Duration::from_secs(1));
    let frames = frames_sent(&outs);
    assert_eq!(
        frames,
        vec![vec![2]],
        "then message 2 at its retry time; message 1 never again"
    );
}

#[test]
fn blocking_an_account_forgets_every_delivery_to_it_and_no_other() {
    let (mut d, mut clock, bob, carol, peer) = (machine(10), Clock::new(), account(2), account(3), PeerId::random());
    // To bob: one in flight, one waiting for its retry. To carol: one waiting for its retry.
    d.route_found(bob, peer, START_MS + 60_000, clock.now());
    d.deliver(delivery(bob, 1, DeliveryKind::Message, START_MS), clock.now());
    d.deliver(delivery(carol, 3, DeliveryKind::Message, START_MS), clock.now());
    d.route_failed(carol, clock.now());
    outputs(&mut d);
    d.pipe_closed(peer, 1, "test", clock.now());
    d.deliver(delivery(bob, 2, DeliveryKind::Receipt, START_MS), clock.now());
    outputs(&mut d);
    assert!(d.is_retrying(&bob));
    d.cancel_account(&bob);
    assert!(!d.is_retrying(&bob), "nothing to bob waits any more");
    assert!(d.is_retrying(&carol), "carol's delivery is untouched");
    d.route_found(bob, peer, START_MS + 60_000, clock.now());
    d.route_found(carol, PeerId::random(), START_MS + 60_000, clock.now());
    let outs = run_until(&mut d, &mut clock, Duration::from_secs(30));
    assert_eq!(frames_sent(&outs), vec![vec![3]], "only carol's message is sent again");
}

#[test]
fn a_stream_gets_one_attempt_and_its_outcome_is_reported_once() {
    let (mut d, clock, bob, peer) = (machine(10), Clock::new(), account(2), PeerId::random());
    let done = |outs: &[Output]| -> Vec<(MessageId, Option<Code>)> {
        outs.iter()
            .filter_map(|o| match o {
                Output::StreamDone { mid, refused } => Some((*mid, *refused)),
                _ => None,
            })
            .collect()
    };
    // No route: unreachable at once, never retried, nothing written, no failure event.
    d.deliver(delivery(bob, 1, DeliveryKind::Stream, START_MS), clock.now());
    outputs(&mut d);
    d.route_failed(bob, clock.now());
    let outs = outputs(&mut d);
    assert_eq!(done(&outs), vec![(mid(1), Some(Code::Unreachable))]);
    assert!(failures(&outs).is_empty() && written(&outs).is_empty());
    assert!(!d.is_retrying(&bob));
    // Taken: done without a code. Refused as overloaded: that code, not retried.
    d.route_found(bob, peer, START_MS + 60_000, clock.now());
    d.deliver(delivery(bob, 2, DeliveryKind::Stream, START_MS), clock.now());
    d.deliver(delivery(bob, 3, DeliveryKind::Stream, START_MS), clock.now());
    outputs(&mut d);
    d.answer(0, Ack::Stored, false, clock.now());
    d.answer(1, Ack::Refused { code: 5104 }, false, clock.now());
    let outs = outputs(&mut d);
    assert_eq!(done(&outs), vec![(mid(2), None), (mid(3), Some(Code::Overloaded))]);
    assert!(written(&outs).is_empty());
    assert!(!d.is_retrying(&bob));
    // A broken pipe ends a stream in flight as unreachable.
    d.deliver(delivery(bob, 4, DeliveryKind::Stream, START_MS), clock.now());
    outputs(&mut d);
    d.pipe_closed(peer, 1, "test", clock.now());
    assert_eq!(done(&outputs(&mut d)), vec![(mid(4), Some(Code::Unreachable))]);
    // Relays were never counted.
    for n in 10..20 {
        d.deliver(delivery(bob, n, DeliveryKind::Relay, START_MS), clock.now());
    }
    assert!(failures(&outputs(&mut d)).is_empty(), "all ten relay slots are free");
}

#[test]
fn a_broken_pipe_fails_over_to_a_new_pipe_and_its_late_close_changes_nothing() {
    let (mut d, mut clock, bob, peer) = (machine(10), Clock::new(), account(2), PeerId::random());
    d.route_found(bob, peer, START_MS + 3_600_000, clock.now());
    d.deliver(delivery(bob, 1, DeliveryKind::Message, START_MS), clock.now());
    d.deliver(delivery(bob, 2, DeliveryKind::Control, START_MS), clock.now());
    assert_eq!(sent(&outputs(&mut d)), vec![(peer, 1, 0), (peer, 1, 1)]);
    d.pipe_closed(peer, 1, "connection reset", clock.now());
    // The route pointed at the failed peer: it is forgotten, so the retry looks it up again.
    let outs = run_until(&mut d, &mut clock, RETRY_BASE);
    assert_eq!(outs, vec![Output::LookUpRoute(bob), Output::LookUpRoute(bob)]);
    d.route_found(bob, peer, START_MS + 3_600_000, clock.now());
    let outs = outputs(&mut d);
    assert_eq!(outs[0], Output::OpenPipe { peer, generation: 2 });
    assert_eq!(
        sent(&outs),
        vec![(peer, 2, 2), (peer, 2, 3)],
        "both again, on the new pipe"
    );
    // A late close of the old pipe and a late answer to an old request change nothing.
    d.pipe_closed(peer, 1, "late", clock.now());
    d.answer(0, Ack::Stored, false, clock.now());
    assert!(outputs(&mut d).is_empty());
    d.answer(2, Ack::Stored, false, clock.now());
    d.answer(3, Ack::Duplicate, false, clock.now());
    let outs = outputs(&mut d);
    assert_eq!(written(&outs).len(), 1, "one batch in writing at a time");
    d.outcomes_written();
    assert_eq!(written(&outputs(&mut d)).len(), 1, "then the next");
    d.outcomes_written();
    assert!(outputs(&mut d).is_empty() && !d.is_writing());
}

#[test]
fn a_stalled_request_closes_its_pipe_and_is_retried() {
    let (mut d, mut clock, bob, peer) = (machine(10), Clock::new(), account(2), PeerId::random());
    d.route_found(bob, peer, START_MS + 3_600_000, clock.now());
    d.deliver(delivery(bob, 1, DeliveryKind::Message, START_MS), clock.now());
    outputs(&mut d);
    let outs = run_until(&mut d, &mut clock, TIMEOUT);
    assert_eq!(outs, vec![Output::ClosePipe { peer, generation: 1 }]);
    assert!(d.is_retrying(&bob));
}

#[test]
fn an_idle_pipe_is_closed_after_the_idle_time() {
    let (mut d, mut clock, bob, peer) = (machine(10), Clock::new(), account(2), PeerId::random());
    d.route_found(bob, peer, START_MS + 3_600_000, clock.now());
    d.deliver(delivery(bob, 1, DeliveryKind::Message, START_MS), clock.now());
    outputs(&mut d);
    d.answer(0, Ack::Stored, true, clock.now());
    let outs = run_until(&mut d, &mut clock, IDLE - Duration::from_secs(1));
    assert!(outs.is_empty(), "kept while not idle long enough: {outs:?}");
    let outs = run_until(&mut d, &mut clock, IDLE + Duration::from_secs(2));
    assert_eq!(outs, vec![Output::ClosePipe { peer, generation: 1 }]);
    assert!(d.poll_timeout().is_none(), "nothing left to wake up for");
    // The next delivery opens a new pipe.
    d.deliver(delivery(bob, 2, DeliveryKind::Message, START_MS), clock.now());
    assert_eq!(outputs(&mut d)[0], Output::OpenPipe { peer, generation: 2 });
}

#[test]
fn a_reconnecting_peer_gets_its_deliveries_retried_at_once() {
    let (mut d, mut clock, bob, peer) = (machine(10), Clock::new(), account(2), PeerId::random());
    d.route_found(bob, peer, START_MS + 3_600_000, clock.now());
    d.deliver(delivery(bob, 1, DeliveryKind::Message, START_MS), clock.now());
    outputs(&mut d);
    d.pipe_closed(peer, 1, "gone", clock.now());
    for _ in 0..4 {
        let at = d.poll_timeout().unwrap();
        let now = clock.advance(at - clock.now().instant);
        d.handle_timeout(now);
        outputs(&mut d);
        d.route_failed(bob, now);
    }
    let wait = d.poll_timeout().unwrap() - clock.now().instant;
    assert!(wait >= Duration::from_secs(4), "backed off by now: {wait:?}");
    d.peer_connected(peer, clock.now());
    assert_eq!(d.poll_timeout(), Some(clock.now().instant), "due at once");
}

#[test]
fn refusals_conclude_retry_or_give_up_by_code() {
    let (mut d, clock, bob, peer) = (machine(10), Clock::new(), account(2), PeerId::random());
    let now = clock.now();
    d.route_found(bob, peer, START_MS + 60_000, now);
    for n in 0..3 {
        d.deliver(delivery(bob, n, DeliveryKind::Message, START_MS), now);
    }
    outputs(&mut d);
    d.answer(
        0,
        Ack::Refused {
            code: Code::Tombstoned.number(),
        },
        false,
        now,
    );
    d.answer(
        1,
        Ack::Refused {
            code: Code::Overloaded.number(),
        },
        false,
        now,
    );
    d.answer(
        2,
        Ack::Refused {
            code: Code::InvalidSignature.number(),
        },
        false,
        now,
    );
    let outs = outputs(&mut d);
    assert_eq!(failures(&outs), vec![(mid(2), Code::InvalidSignature)]);
    let w = written(&outs);
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].mid, w[0].delivered),
        (mid(0), false),
        "tombstoned: closed, not delivered"
    );
    assert!(d.is_retrying(&bob), "overloaded: retried");
}

#[test]
fn a_delivery_to_oneself_is_done_at_once() {
    let (mut d, clock) = (machine(10), Clock::new());
    d.deliver(delivery(account(0), 1, DeliveryKind::Message, START_MS), clock.now());
    let outs = outputs(&mut d);
    assert_eq!(written(&outs).len(), 1);
    assert!(written(&outs)[0].delivered);
}
