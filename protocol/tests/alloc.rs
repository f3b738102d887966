//! What decoding a hostile pipe frame costs in memory: a frame whose envelope length prefix claims
//! more bytes than it holds is refused before anything of that size is allocated. Its own test
//! binary, because it counts the allocations of the whole process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tim_protocol::{decode, encode, Error, PipeFrame, Wire};

#[global_allocator]
static ALLOC: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A request frame (version, tag, id) whose envelope length prefix claims `claimed` bytes, with
/// none of them.
fn short_request(claimed: u64) -> Vec<u8> {
    let mut frame = vec![1u8];
    frame.extend_from_slice(&0u32.to_le_bytes());
    frame.extend_from_slice(&7u64.to_le_bytes());
    frame.extend_from_slice(&claimed.to_le_bytes());
    frame
}

#[test]
fn a_short_pipe_frame_claiming_a_large_envelope_allocates_nothing_of_that_size() {
    // The well-formed frame decodes, through the same hand-written decoding.
    let good = encode(&PipeFrame::Request {
        id: 7,
        envelope: b"abc".to_vec(),
    })
    .unwrap();
    assert_eq!(
        decode::<PipeFrame>(&good).unwrap(),
        PipeFrame::Request {
            id: 7,
            envelope: b"abc".to_vec()
        }
    );
    for claimed in [60_000, PipeFrame::MAX_LEN as u64, 2 * 1024 * 1024, u64::MAX] {
        let frame = short_request(claimed);
        assert_eq!(frame.len(), 21);
        let region = Region::new(ALLOC);
        let refused = decode::<PipeFrame>(&frame);
        let allocated = region.change().bytes_allocated;
        assert!(
            matches!(refused, Err(Error::Malformed { .. } | Error::TooLarge { .. })),
            "{claimed}: {refused:?}"
        );
        assert!(
            allocated < 1024,
            "decoding a 21-byte frame claiming {claimed} bytes allocated {allocated}"
        );
    }
}
