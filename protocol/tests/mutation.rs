//! Mutation tests for every decoder a peer can reach (issue 15, hostile peers): valid frames of
//! each network type, mutated deterministically (bit flips, byte sets, truncation, extension,
//! length and tag fields set to huge values, splices of two frames), at least 100,000 cases per
//! decoder. Every case must end in a typed error or in a value that re-encodes to exactly the same
//! bytes within the type's limit; never a panic, and never a single allocation larger than the
//! type's frame limit (recorded per thread by a tracking global allocator).
//!
//! `TIM_MUTATION_CASES` sets the number of random cases per decoder (default 100,000). A failing
//! case names its decoder and case number and prints its bytes in hex.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{cell::Cell, collections::BTreeMap, panic, sync::Once, time::Instant};

use tim_protocol::{
    decode, encode,
    test_util::{burn, key, mutation_cases, revoke, Rng},
    AccountKey, Ack, Code, Envelope, Message, PipeFrame, Recipient, RoomId, RouteRecord, SyncPage, SyncRequest, Wire,
    MAX_FRAME_LEN, MAX_ROUTE_ADDRS, MAX_SYNC_PAGE_LEN,
};
use tracking_allocator::{AllocationGroupId, AllocationRegistry, AllocationTracker, Allocator};

#[global_allocator]
static GLOBAL: Allocator<std::alloc::System> = Allocator::system();

thread_local! {
    /// The largest single allocation (bytes requested) on this thread since the last reset. Per
    /// thread, so the tests of this binary, which run in parallel, never see each other's.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// Records the size of every allocation into [`LARGEST`]. Reallocations reach it too: the
/// tracking allocator implements `realloc` as a fresh allocation of the new size.
struct LargestAllocation;

impl AllocationTracker for LargestAllocation {
    fn allocated(&self, _addr: usize, object_size: usize, _wrapped_size: usize, _group: AllocationGroupId) {
        // `try_with`: an allocation while the thread's locals are torn down must not panic here.
        let _ = LARGEST.try_with(|l| l.set(l.get().max(object_size)));
    }

    fn deallocated(&self, _: usize, _: usize, _: usize, _: AllocationGroupId, _: AllocationGroupId) {}
}

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    static TRACKING: Once = Once::new();
    TRACKING.call_once(|| {
        AllocationRegistry::set_global_tracker(LargestAllocation).expect("the only tracker of this binary");
        AllocationRegistry::enable_tracking();
    });
    LARGEST.with(|l| l.set(0));
    let result = f();
    (result, LARGEST.with(Cell::get))
}

/// The send time of the fixture messages (ms).
const SENT_AT: u64 = 1_700_000_000_000;

// Random cases per decoder (`mutation_cases`), on top of the systematic huge-length cases.

/// Values a hostile peer writes into a length or count field: the integer limits, the frame
/// limits and just past them, and `usize::MAX / 24 + 1`, which overflows `count * size_of::<Vec<u8>>()`.
fn huge_values(remaining: usize) -> Vec<u64> {
    vec![
        u64::MAX,
        u64::MAX - 7,
        1 << 63,
        i64::MAX as u64,
        u32::MAX as u64,
        1 << 32,
        (usize::MAX / 24 + 1) as u64,
        MAX_FRAME_LEN as u64,
        MAX_FRAME_LEN as u64 + 1,
        PipeFrame::MAX_LEN as u64 + 1,
        MAX_SYNC_PAGE_LEN as u64,
        MAX_SYNC_PAGE_LEN as u64 + 1,
        2_000_000,
        remaining as u64 + 1,
        remaining as u64 * 2 + 1,
    ]
}

/// Offsets where a `u64` length or count may sit: in a valid fixed-int bincode encoding every
/// length prefix counts bytes or items that follow it, so it is at most the number of bytes left.
/// Over-approximates (a zero run in a timestamp qualifies too), which only adds cases.
fn length_candidates(bytes: &[u8]) -> Vec<usize> {
    (0..bytes.len().saturating_sub(7))
        .filter(|&p| {
            let v = u64::from_le_bytes(bytes[p..p + 8].try_into().expect("8 bytes"));
            v <= (bytes.len() - p - 8) as u64
        })
        .collect()
}

/// Offsets where a `u32` enum tag may sit (value below 4: every enum here has at most 3 variants).
fn tag_candidates(bytes: &[u8]) -> Vec<usize> {
    (0..bytes.len().saturating_sub(3))
        .filter(|&p| u32::from_le_bytes(bytes[p..p + 4].try_into().expect("4 bytes")) < 4)
        .collect()
}

/// One mutation of `input`, chosen by `rng`; `corpus` holds frames of every type to splice with.
fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    match rng.below(9) {
        // Flip 1 to 8 random bits.
        0 if !out.is_empty() => {
            for _ in 0..=rng.below(8) {
                let at = rng.below(out.len());
                out[at] ^= 1 << rng.below(8);
            }
        }
        // Set a byte to a random or a boundary value.
        1 if !out.is_empty() => {
            let at = rng.below(out.len());
            out[at] = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff, rng.byte()][rng.below(8)];
        }
        // Truncate anywhere, the empty frame included.
        2 => out.truncate(rng.below(out.len() + 1)),
        // Extend: random bytes at the end, or a copy of a chunk of the frame inserted in it.
        3 => {
            if rng.below(2) == 0 || out.is_empty() {
                for _ in 0..=rng.below(64) {
                    out.push(rng.byte());
                }
            } else {
                let from = rng.below(out.len());
                let to = from + rng.below(out.len() - from) + 1;
                let chunk = out[from..to].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, chunk);
            }
        }
        // A plausible length or count field set huge.
        4 | 5 => {
            let candidates = length_candidates(&out);
            if let Some(&at) = candidates.get(rng.below(candidates.len().max(1))) {
                let values = huge_values(out.len() - at - 8);
                let v = values[rng.below(values.len())];
                out[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        // A plausible enum tag (or any small u32) set to an unknown or huge value.
        6 => {
            let candidates = tag_candidates(&out);
            if let Some(&at) = candidates.get(rng.below(candidates.len().max(1))) {
                let v = [3u32, 4, 255, 1 << 31, u32::MAX][rng.below(5)];
                out[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        // Splice: a prefix of this frame and a suffix of another (of any type).
        7 | 8 => {
            let other = &corpus[rng.below(corpus.len())];
            let head = rng.below(out.len() + 1);
            let tail = rng.below(other.len() + 1);
            out.truncate(head);
            out.extend_from_slice(&other[tail..]);
        }
        // A flip or set on an empty frame: leave it empty (still a case).
        _ => {}
    }
    out
}

/// The cases for one decoder: every length candidate of every seed set to every huge value
/// (systematic), then `mutation_cases()` random cases of 1 to 3 stacked mutations of a random seed.
fn corpus_cases(seeds: &[Vec<u8>], corpus: &[Vec<u8>], seed: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for s in seeds {
        for at in length_candidates(s) {
            for v in huge_values(s.len() - at - 8) {
                let mut case = s.clone();
                case[at..at + 8].copy_from_slice(&v.to_le_bytes());
                out.push(case);
            }
        }
    }
    let mut rng = Rng(seed);
    for _ in 0..mutation_cases() {
        let mut case = seeds[rng.below(seeds.len())].clone();
        let stacked = [1, 1, 1, 1, 1, 1, 2, 2, 2, 3][rng.below(10)];
        for _ in 0..stacked {
            case = mutate(&mut rng, &case, corpus);
        }
        out.push(case);
    }
    out
}

/// What one decoder's run saw, printed at the end (`--nocapture`) and checked for coverage.
#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    decoded: usize,
    refused: BTreeMap<&'static str, usize>,
    largest: usize,
}

/// Decodes every case as `T` and checks the contract; `check` runs on what decoded (what the node
/// does next: nested decodes, verification) and must not panic.
fn run<T: Wire>(name: &str, seeds: &[Vec<u8>], corpus: &[Vec<u8>], seed: u64, check: impl Fn(T)) -> Tally {
    for s in seeds {
        assert!(decode::<T>(s).is_ok(), "{name}: a seed that does not decode");
    }
    let started = Instant::now();
    let mut tally = Tally::default();
    for (i, case) in corpus_cases(seeds, corpus, seed).into_iter().enumerate() {
        let outcome = panic::catch_unwind(|| largest_allocation(|| decode::<T>(&case)));
        let Ok((result, largest)) = outcome else {
            panic!("{name} case {i}: decode panicked on {}", hex::encode(&case));
        };
        assert!(
            largest <= T::MAX_LEN,
            "{name} case {i}: a {largest}-byte allocation, over the {}-byte limit, decoding {}",
            T::MAX_LEN,
            hex::encode(&case)
        );
        tally.cases += 1;
        tally.largest = tally.largest.max(largest);
        match result {
            Ok(value) => {
                // The encoding is canonical: what decodes re-encodes to the same bytes, and so
                // within the limit (encode refuses anything over it).
                let again = encode(&value);
                assert_eq!(
                    again.as_deref().ok(),
                    Some(&case[..]),
                    "{name} case {i}: decoded but does not re-encode to {}",
                    hex::encode(&case)
                );
                if panic::catch_unwind(panic::AssertUnwindSafe(|| check(value))).is_err() {
                    panic!(
                        "{name} case {i}: checking the decoded value panicked on {}",
                        hex::encode(&case)
                    );
                }
                tally.decoded += 1;
            }
            Err(e) => {
                let code = e.code();
                assert!(
                    matches!(code, Code::Malformed | Code::TooLarge | Code::UnsupportedVersion),
                    "{name} case {i}: decode refused with {code:?} ({e})"
                );
                *tally.refused.entry(code.name()).or_default() += 1;
            }
        }
    }
    eprintln!("{name}: {tally:?} in {:.2?}", started.elapsed());
    // Each assertion above must have had something to check: mutants that decode and mutants
    // that are refused, for too large as well as malformed.
    assert!(tally.cases > mutation_cases(), "{name}: fewer cases than asked");
    assert!(tally.decoded > 0, "{name}: no mutant decoded");
    assert!(
        tally.refused.get("malformed").is_some_and(|&n| n > 0),
        "{name}: nothing malformed"
    );
    // Pipe frames check that a claimed length is present before its limit, so a claim past the
    // input is truncation (malformed) there, whatever its size.
    assert!(
        name == "pipe frame" || tally.refused.get("too_large").is_some_and(|&n| n > 0),
        "{name}: nothing too large"
    );
    tally
}

/// Decodes an envelope nested in a pipe frame or sync page, as the node does, and checks it
/// stays within the envelope's own allocation limit.
fn nested_envelope(frame: &[u8]) -> Option<Envelope> {
    let (result, largest) = largest_allocation(|| decode::<Envelope>(frame));
    assert!(
        largest <= Envelope::MAX_LEN,
        "nested envelope: a {largest}-byte allocation decoding {}",
        hex::encode(frame)
    );
    result.ok()
}

/// A deterministic signed message (the `test_util` message fixtures draw a random nonce, which
/// would make the seed frames, and so the cases, differ between runs).
fn message(from: &AccountKey, to: Recipient, body: &[u8], burn_after_read: Option<u32>, nonce: u8) -> Message {
    Message::sign_with_nonce(from, to, body.to_vec(), SENT_AT, burn_after_read, [nonce; 16])
        .expect("a fixture within the limits")
        .into_inner()
}

/// Envelopes of every shape: direct, room, burn-after-read, empty and larger bodies, revokes
/// and a burn.
fn envelopes() -> Vec<Envelope> {
    let (alice, bob) = (key(1), key(2));
    let to_bob = Recipient::Account(bob.account_id());
    let room = Recipient::Room(RoomId::new("general").expect("a room id"));
    let direct = message(&alice, to_bob.clone(), b"hello bob", None, 1);
    let in_room = message(&alice, room.clone(), b"hello room", None, 2);
    let burner = message(&alice, to_bob.clone(), b"burn me after reading", Some(30), 3);
    let founded = room_op(
        &alice,
        tim_protocol::RoomAction::Create {
            name: "team".into(),
            private: true,
            nonce: ROOM_NONCE,
        },
        11,
    );
    vec![
        Envelope::Message(direct.clone()),
        Envelope::Message(in_room.clone()),
        Envelope::Message(burner.clone()),
        Envelope::Message(message(&alice, to_bob, b"", None, 4)),
        Envelope::Message(message(&bob, room, &[b'x'; 2048], None, 5)),
        Envelope::Control(revoke(&alice, &direct)),
        Envelope::Control(burn(&bob, &burner)),
        Envelope::Control(revoke(&alice, &in_room)),
        Envelope::Receipt(
            tim_protocol::Receipt::sign(&bob, direct.id(), alice.account_id(), 7)
                .expect("a receipt to another account")
                .into_inner(),
        ),
        Envelope::Contact(
            tim_protocol::ContactOp::sign(
                &alice,
                bob.account_id(),
                tim_protocol::ContactAction::Request {
                    note: "hi, it's alice".into(),
                },
                8,
            )
            .expect("a contact request")
            .into_inner(),
        ),
        Envelope::Contact(
            tim_protocol::ContactOp::sign(&bob, alice.account_id(), tim_protocol::ContactAction::Accept, 9)
                .expect("an accept")
                .into_inner(),
        ),
        Envelope::Stream(stream(&alice, Recipient::Account(bob.account_id()), b"typing")),
        Envelope::Presence(
            tim_protocol::Presence::sign(
                &alice,
                bob.account_id(),
                tim_protocol::Availability::Away,
                "lunch".into(),
                11,
            )
            .expect("a presence notice"),
        ),
        Envelope::Room(founded.clone()),
        Envelope::Room(room_op(&alice, tim_protocol::RoomAction::Kick(bob.account_id()), 13)),
        Envelope::Invite {
            create: founded.clone(),
            invite: room_op(&alice, tim_protocol::RoomAction::Invite(bob.account_id()), 12),
        },
        Envelope::SealKey(
            tim_protocol::seal::SealKeyAnnouncement::sign(
                &bob,
                founded.room.clone(),
                tim_protocol::seal::SealKeyRecord::sign(
                    &bob,
                    &tim_protocol::seal::SealSecret::from_bytes(&[5; 32]).expect("a fixture secret"),
                    14,
                ),
                15,
            )
            .expect("bob's own record"),
        ),
    ]
}

/// The nonce of the founded room of the fixtures.
const ROOM_NONCE: [u8; 16] = [3; 16];

/// `by`'s operation in alice's (key 1) fixture room.
fn room_op(by: &AccountKey, action: tim_protocol::RoomAction, at: u64) -> tim_protocol::RoomOp {
    let room = tim_protocol::room::founded_room_id(&key(1).account_id(), "team", true, &ROOM_NONCE);
    tim_protocol::RoomOp::sign(by, room, action, at)
        .expect("a room operation within the limits")
        .into_inner()
}

/// A deterministic stream frame (fixed nonce and time, like the message fixtures).
fn stream(from: &AccountKey, to: Recipient, data: &[u8]) -> tim_protocol::Stream {
    tim_protocol::Stream::sign_with_nonce(from, to, data.to_vec(), 10, [7; 16])
        .expect("a stream within the limits")
        .into_inner()
}

fn frames<T: Wire>(values: &[T]) -> Vec<Vec<u8>> {
    values
        .iter()
        .map(|v| encode(v).expect("a fixture within the limits"))
        .collect()
}

fn pipe_frames() -> Vec<PipeFrame> {
    let mut out: Vec<PipeFrame> = frames(&envelopes())
        .into_iter()
        .take(4)
        .enumerate()
        .map(|(i, envelope)| PipeFrame::Request {
            id: i as u64 + 1,
            envelope,
        })
        .collect();
    out.push(PipeFrame::Request {
        id: 9,
        envelope: vec![],
    });
    for (id, ack) in [
        (1, Ack::Stored),
        (2, Ack::Duplicate),
        (u64::MAX, Ack::Refused { code: 4118 }),
    ] {
        out.push(PipeFrame::Answer { id, ack });
    }
    out
}

fn sync_requests() -> Vec<SyncRequest> {
    ["general", "a", &"z".repeat(64)]
        .into_iter()
        .zip([(0, 256), (41, 1), (u64::MAX, u32::MAX)])
        .map(|(room, (after, limit))| SyncRequest {
            room: RoomId::new(room).expect("a room id"),
            after,
            limit,
            member: (after == 41).then(|| {
                tim_protocol::room::MemberProof::sign(&key(1), &RoomId::new(room).expect("a room id"), b"peer", 5)
            }),
        })
        .collect()
}

fn sync_pages() -> Vec<SyncPage> {
    let envelopes = frames(&envelopes());
    vec![
        SyncPage {
            frames: vec![],
            next: 0,
            more: false,
        },
        SyncPage {
            frames: vec![envelopes[1].clone(), envelopes[7].clone()],
            next: 17,
            more: true,
        },
        SyncPage {
            frames: envelopes.iter().take(3).cloned().collect(),
            next: u64::MAX,
            more: false,
        },
    ]
}

fn route_records() -> Vec<RouteRecord> {
    let peer = vec![
        0x00, 0x24, 0x08, 0x01, 0x12, 0x20, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    ];
    let addr = |port: u8| vec![0x04, 127, 0, 0, 1, 0x06, 0x10, port];
    [
        vec![],
        vec![addr(1)],
        (0..3).map(addr).collect(),
        (0..MAX_ROUTE_ADDRS as u8).map(addr).collect(),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, addrs)| {
        let account = key(3 + i as u8);
        // Half of them carry a seal-key record.
        let seal_key = (i % 2 == 1).then(|| {
            let secret = tim_protocol::seal::SealSecret::from_bytes(&[i as u8 + 1; 32]).expect("a fixture secret");
            tim_protocol::seal::SealKeyRecord::sign(&account, &secret, SENT_AT)
        });
        RouteRecord::sign(
            &account,
            peer.clone(),
            addrs,
            SENT_AT + i as u64,
            SENT_AT + 60_000,
            seal_key,
        )
        .expect("a fixture record")
    })
    .collect()
}

/// Every seed frame of every type: what the splices take their tails from.
fn corpus() -> Vec<Vec<u8>> {
    let mut all = frames(&envelopes());
    all.extend(frames(&pipe_frames()));
    all.extend(frames(&sync_requests()));
    all.extend(frames(&sync_pages()));
    all.extend(frames(&route_records()));
    all
}

#[test]
fn the_tracker_sees_a_large_allocation() {
    // The allocation bound is only worth something if the tracker reports what it should.
    let (v, largest) = largest_allocation(|| std::hint::black_box(vec![1u8; 1 << 20]));
    assert_eq!(v.len(), 1 << 20);
    assert!(largest >= 1 << 20, "tracker saw only {largest} bytes");
    let (_, nothing) = largest_allocation(|| std::hint::black_box(3 + 4));
    assert_eq!(nothing, 0);
}

#[test]
fn length_candidates_include_the_real_length_fields() {
    // The huge-length mutation aims at the length prefixes of docs/protocol.md's layouts; check
    // that it finds each of them (offsets count the version byte).
    let envelopes = frames(&envelopes());
    let direct = &envelopes[0];
    let body_len_at = direct.len() - b"hello bob".len() - 8;
    assert!(length_candidates(direct).contains(&body_len_at));
    // Envelope tag (4), header version (1), recipient tag (4): the room id's length.
    assert!(length_candidates(&envelopes[1]).contains(&(1 + 4 + 1 + 4)));
    // Request tag (4), id (8): the envelope's length.
    let request = &frames(&pipe_frames())[0];
    assert!(length_candidates(request).contains(&(1 + 4 + 8)));
    // The page's frame count, then the first frame's length.
    let page = &frames(&sync_pages())[1];
    assert!(length_candidates(page).contains(&1));
    assert!(length_candidates(page).contains(&(1 + 8)));
    // A route record: the account (32), then the peer id's length.
    let record = &frames(&route_records())[2];
    assert!(length_candidates(record).contains(&(1 + 32)));
}

#[test]
fn pipe_frame_length_claim_allocates_within_the_pipe_limit() {
    // Regression (found by `mutated_pipe_frames`): a 30-byte request frame whose envelope length
    // says 2,000,000 made the decoder allocate 2,000,000 bytes before finding the input short,
    // because pipe frames were decoded under the 2 MiB sync-page budget.
    let mut frame = encode(&PipeFrame::Request {
        id: 7,
        envelope: vec![],
    })
    .unwrap();
    let len_at = 1 + 4 + 8;
    frame[len_at..len_at + 8].copy_from_slice(&2_000_000u64.to_le_bytes());
    let (result, largest) = largest_allocation(|| decode::<PipeFrame>(&frame));
    assert!(largest <= PipeFrame::MAX_LEN, "a {largest}-byte allocation");
    assert!(matches!(
        result.map_err(|e| e.code()),
        Err(Code::Malformed | Code::TooLarge)
    ));
}

#[test]
fn a_short_pipe_frame_claiming_a_large_envelope_allocates_nothing_of_that_size() {
    // A 21-byte request frame (version, tag, id, length) whose envelope length claims more bytes
    // than the frame holds is refused before anything of the claimed size is allocated.
    for claimed in [60_000, PipeFrame::MAX_LEN as u64, 2 * 1024 * 1024, u64::MAX] {
        let mut frame = vec![1u8];
        frame.extend_from_slice(&0u32.to_le_bytes());
        frame.extend_from_slice(&7u64.to_le_bytes());
        frame.extend_from_slice(&claimed.to_le_bytes());
        assert_eq!(frame.len(), 21);
        refused_without_allocating::<PipeFrame>(&frame, claimed);
    }
}

/// `bytes`, whose length field claims `claimed` bytes that are not there, is refused as
/// malformed or too large, and decoding it never allocated 1 KiB at once.
fn refused_without_allocating<T: Wire + std::fmt::Debug>(bytes: &[u8], claimed: u64) {
    let (result, largest) = largest_allocation(|| decode::<T>(bytes));
    assert!(
        matches!(
            result.as_ref().map_err(|e| e.code()),
            Err(Code::Malformed | Code::TooLarge)
        ),
        "{} claiming {claimed}: {result:?}",
        T::NAME
    );
    assert!(
        largest < 1024,
        "a {}-byte {} claiming {claimed} bytes allocated {largest} at once",
        bytes.len(),
        T::NAME
    );
}

#[test]
fn a_short_envelope_claiming_a_large_body_allocates_nothing_of_that_size() {
    // A message envelope whose body length (its last field) claims more bytes than follow.
    let me = key(1);
    let empty = encode(&Envelope::Message(tim_protocol::test_util::direct(&me, &me, b"", 1))).unwrap();
    let (head, len) = empty.split_at(empty.len() - 8);
    assert_eq!(
        len,
        &[0u8; 8][..],
        "an empty body's length is the envelope's last 8 bytes"
    );
    for claimed in [1_000u64, 60_000, MAX_FRAME_LEN as u64, u64::MAX] {
        let mut envelope = head.to_vec();
        envelope.extend_from_slice(&claimed.to_le_bytes());
        refused_without_allocating::<Envelope>(&envelope, claimed);
    }
}

#[test]
fn mutated_envelopes() {
    let seeds = frames(&envelopes());
    run::<Envelope>("envelope", &seeds, &corpus(), 0x5eed_0001, |envelope| {
        // What a receiver does next: verification must refuse or accept, never panic.
        let _ = match envelope {
            Envelope::Message(m) => m.verify().map(|_| ()),
            Envelope::Control(c) => c.verify().map(|_| ()),
            Envelope::Receipt(r) => r.verify().map(|_| ()),
            Envelope::Contact(c) => c.verify().map(|_| ()),
            Envelope::Stream(s) => s.verify().map(|_| ()),
            Envelope::Presence(p) => p.verify().map(|_| ()),
            Envelope::Room(op) => op.verify().map(|_| ()),
            Envelope::Invite { create, invite } => create.verify().and(invite.verify()).map(|_| ()),
            Envelope::SealKey(a) => a.verify().and(a.record.verify()),
        };
    });
}

#[test]
fn mutated_pipe_frames() {
    let seeds = frames(&pipe_frames());
    run::<PipeFrame>("pipe frame", &seeds, &corpus(), 0x5eed_0002, |frame| {
        if let PipeFrame::Request { envelope, .. } = frame {
            let _ = nested_envelope(&envelope);
        }
    });
}

#[test]
fn mutated_sync_requests() {
    let seeds = frames(&sync_requests());
    run::<SyncRequest>("sync request", &seeds, &corpus(), 0x5eed_0003, |request| {
        // A decoded request names a valid room: RoomId's decoder checks it.
        assert!(RoomId::new(request.room.as_str()).is_ok());
    });
}

#[test]
fn mutated_sync_pages() {
    let seeds = frames(&sync_pages());
    run::<SyncPage>("sync page", &seeds, &corpus(), 0x5eed_0004, |page| {
        for frame in &page.frames {
            let _ = nested_envelope(frame);
        }
    });
}

#[test]
fn mutated_route_records() {
    let seeds = frames(&route_records());
    run::<RouteRecord>("route record", &seeds, &corpus(), 0x5eed_0005, |record| {
        let _ = record.verify(SENT_AT);
    });
}
