//! Mutation tests for the API's JSON request decoder (issue 15, hostile peers): valid
//! `POST /v1/messages` bodies mutated deterministically (bit flips, byte sets, truncation,
//! extension, numbers set huge, deep nesting, long strings, bad escapes, duplicate keys, splices),
//! at least 100,000 cases, each sent through the real router with `tower::ServiceExt::oneshot`
//! (no socket) to an in-process node. Every case must get a JSON answer: `200` only for a body a
//! plain JSON parse also finds well formed, otherwise a 4xx with one of the request-error codes;
//! never a panic, never a 5xx, and never a single allocation on the serving thread larger than twice
//! the API's request body limit (recorded by a tracking global allocator; see
//! `MAX_REQUEST_ALLOCATION` for why twice).
//!
//! `TIM_MUTATION_CASES` sets the number of random cases (default 100,000). A failing case prints
//! its number and body.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{cell::Cell, collections::BTreeMap, panic::AssertUnwindSafe, sync::Once, time::Instant};

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use futures::FutureExt;
use serde_json::{json, Value};
use tim_node::{
    protocol::{
        test_util::{mutation_cases, Rng},
        AccountId, MAX_BODY_LEN,
    },
    Config, Node,
};
use tower::ServiceExt;
use tracking_allocator::{AllocationGroupId, AllocationRegistry, AllocationTracker, Allocator};

#[global_allocator]
static GLOBAL: Allocator<std::alloc::System> = Allocator::system();

thread_local! {
    /// The largest single allocation (bytes requested) on this thread since the last reset.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// Records the size of every allocation into [`LARGEST`] (reallocations arrive as allocations of
/// the new size).
struct LargestAllocation;

impl AllocationTracker for LargestAllocation {
    fn allocated(&self, _addr: usize, object_size: usize, _wrapped_size: usize, _group: AllocationGroupId) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(object_size)));
    }

    fn deallocated(&self, _: usize, _: usize, _: usize, _: AllocationGroupId, _: AllocationGroupId) {}
}

fn start_tracking() {
    static TRACKING: Once = Once::new();
    TRACKING.call_once(|| {
        AllocationRegistry::set_global_tracker(LargestAllocation).expect("the only tracker of this binary");
        AllocationRegistry::enable_tracking();
    });
}

/// The router's request body limit (`MAX_REQUEST_BYTES` in node/src/api/routes.rs: a 64 KiB body
/// as JSON, with room for escaping).
const MAX_REQUEST_BYTES: usize = 6 * MAX_BODY_LEN + 4096;

/// The largest single allocation serving one request may make: twice the body limit. serde_json
/// unescapes a string into a buffer that grows by doubling, so a body of escapes just under the
/// limit ends in a buffer of up to twice its decoded length (measured: 591,200 bytes for a
/// 296 KB string). Bounded by the limit all the same, which is what matters against a hostile
/// client.
const MAX_REQUEST_ALLOCATION: usize = 2 * MAX_REQUEST_BYTES;

/// Codes a refused request body may carry: bad parameters (neither or both of `to` and `room`, a
/// bad room id, a room not joined), unknown account (an id that does not parse), malformed JSON,
/// too large.
const REQUEST_ERRORS: [u16; 4] = [4104, 4106, 4113, 4114];

/// Where a value or token may start: after `:`, `,` or `[`, or at a quote.
fn value_starts(bytes: &[u8]) -> Vec<usize> {
    (0..bytes.len())
        .filter(|&i| {
            matches!(bytes[i], b'"' | b'0'..=b'9' | b'-') || (i > 0 && matches!(bytes[i - 1], b':' | b',' | b'['))
        })
        .collect()
}

/// One mutation of `input`; `seeds` are the other bodies to splice with.
fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    match rng.below(11) {
        0 if !out.is_empty() => {
            for _ in 0..=rng.below(8) {
                let at = rng.below(out.len());
                out[at] ^= 1 << rng.below(8);
            }
        }
        // A byte set to JSON punctuation, a digit, a control or non-ASCII byte, or anything.
        1 if !out.is_empty() => {
            let at = rng.below(out.len());
            out[at] = *rng.pick(b"{}[]\":,\\0 9eE+-.ntu\x00\x1f\x7f\x80\xc3\xff");
            if rng.below(4) == 0 {
                out[at] = rng.byte();
            }
        }
        2 => out.truncate(rng.below(out.len() + 1)),
        3 => {
            if rng.below(2) == 0 || out.is_empty() {
                for _ in 0..=rng.below(32) {
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
        // A number (or any value) replaced by a huge, negative, fractional or overflowing one.
        4 => {
            let starts = value_starts(&out);
            if !starts.is_empty() {
                let at = *rng.pick(&starts);
                let end = (at + 1..out.len())
                    .find(|&i| matches!(out[i], b',' | b'}' | b']'))
                    .unwrap_or(out.len());
                let huge: &[&str] = &[
                    "4294967296",
                    "18446744073709551616",
                    "-1",
                    "1e309",
                    "0.5",
                    "-0",
                    "99999999999999999999999999999999999999999999",
                    "1E400",
                ];
                out.splice(at..end, rng.pick(huge).bytes());
            }
        }
        // Deep nesting: serde_json must refuse past its recursion limit, not overflow the stack.
        5 => {
            let starts = value_starts(&out);
            if !starts.is_empty() {
                let at = *rng.pick(&starts);
                let depth = *rng.pick(&[2, 127, 129, 1000, 5000]);
                let open = if rng.below(2) == 0 { b"[" } else { b"{" };
                out.splice(at..at, open.repeat(depth));
            }
        }
        // The body string made long: just under and over the body limit, and over the request
        // limit; in plain bytes or as 6-byte escapes that decode to 2 bytes each.
        6 => {
            let n = *rng.pick(&[
                MAX_BODY_LEN,
                MAX_BODY_LEN + 1,
                MAX_REQUEST_BYTES / 6 - 16,
                MAX_REQUEST_BYTES + 1,
            ]);
            let long = if rng.below(2) == 0 {
                "x".repeat(n)
            } else {
                "\\u00e9".repeat(n / 6 + 1)
            };
            let mut value: Value = serde_json::from_slice(&out).unwrap_or_else(|_| json!({}));
            if let Some(m) = value.as_object_mut() {
                m.insert("body".into(), Value::String(String::new()));
            }
            let text = value
                .to_string()
                .replace("\"body\":\"\"", &format!("\"body\":\"{long}\""));
            out = text.into_bytes();
        }
        // A bad escape or a lone surrogate inside a string.
        7 => {
            let quotes: Vec<usize> = (0..out.len()).filter(|&i| out[i] == b'"').collect();
            if !quotes.is_empty() {
                let at = *rng.pick(&quotes) + 1;
                let bad: &[&str] = &["\\ud800", "\\udc00\\ud800", "\\u12", "\\x41", "\\", "\\u0000"];
                out.splice(at..at, rng.pick(bad).bytes());
            }
        }
        // A duplicate, unknown or null field after the opening brace.
        8 => {
            if let Some(at) = out.iter().position(|&b| b == b'{') {
                let extra: &[&str] = &[
                    "\"body\":\"again\",",
                    "\"to\":null,",
                    "\"room\":\"general\",",
                    "\"extra\":1,",
                    "\"burn_after_read\":null,",
                ];
                out.splice(at + 1..at + 1, rng.pick(extra).bytes());
            }
        }
        // Splice: a prefix of this body and a suffix of another.
        _ => {
            let other = rng.pick(seeds);
            let head = rng.below(out.len() + 1);
            let tail = rng.below(other.len() + 1);
            out.truncate(head);
            out.extend_from_slice(&other[tail..]);
        }
    }
    out
}

/// What a plain JSON parse says a `200` body must be: an object of the known fields, a string
/// body within the limit, exactly one of `to` (a valid account id) and `room`, and
/// `burn_after_read` null or a u32.
fn acceptable(body: &[u8]) -> Result<(), String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let m = value.as_object().ok_or("not an object")?;
    if let Some(k) = m
        .keys()
        .find(|k| !["to", "room", "body", "burn_after_read"].contains(&k.as_str()))
    {
        return Err(format!("unknown field {k}"));
    }
    let text = m.get("body").and_then(Value::as_str).ok_or("no string body")?;
    if text.len() > MAX_BODY_LEN {
        return Err("body over the limit".into());
    }
    let field = |k: &str| m.get(k).filter(|v| !v.is_null());
    match (field("to"), field("room")) {
        (Some(to), None) => {
            to.as_str()
                .ok_or("to is not a string")?
                .parse::<AccountId>()
                .map_err(|e| e.to_string())?;
        }
        (None, Some(_)) => {}
        _ => return Err("not exactly one of to and room".into()),
    }
    match m.get("burn_after_read") {
        None | Some(Value::Null) => Ok(()),
        Some(v) => v
            .as_u64()
            .filter(|&s| s <= u32::MAX as u64)
            .map(|_| ())
            .ok_or_else(|| "burn_after_read is not a u32".into()),
    }
}

#[test]
fn mutated_send_requests() {
    // The node runs on its own runtime, so the allocations of its event loop (Kademlia lookups
    // for the accounts that mutated `to` fields name, ...) stay off the thread that serves the
    // requests, whose allocations the bound is about.
    let node_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (node, _events) = node_runtime
        .block_on(Node::start(Config::loopback(dir.path())))
        .unwrap();
    let api_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    api_runtime.block_on(send_requests(node));
}

async fn send_requests(node: Node) {
    let me = node.account().to_string();
    let token = "mutation-test-token".to_string();
    let app = tim_node::api::router(node.clone(), token.clone(), tim_node::api::HostAllowlist::default());

    // Valid bodies: to this node's own account (stored, no delivery), with and without burn after
    // reading, with escapes, and to a room it has not joined (refused after decoding, 4104).
    let seeds: Vec<Vec<u8>> = [
        json!({"to": me, "body": "hello"}),
        json!({"to": me, "body": "burn \"me\"\n\u{e9}\u{1F600}", "burn_after_read": 30}),
        json!({"to": me, "room": null, "body": ""}),
        json!({"room": "general", "body": "hello room"}),
        json!({"room": "a.b_c-9", "body": "x", "burn_after_read": null}),
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .collect();
    for s in &seeds {
        acceptable(s).unwrap();
    }

    start_tracking();
    let started = Instant::now();
    let mut rng = Rng(0x5eed_0a91);
    let (mut ok, mut largest) = (0usize, 0usize);
    let mut refused: BTreeMap<u16, usize> = BTreeMap::new();
    for i in 0..mutation_cases() {
        let mut case = rng.pick(&seeds).clone();
        for _ in 0..*rng.pick(&[1, 1, 1, 1, 1, 1, 2, 2, 2, 3]) {
            case = mutate(&mut rng, &case, &seeds);
        }
        let shown = String::from_utf8_lossy(&case[..case.len().min(300)]).into_owned();
        let request = Request::post("/v1/messages")
            .header(header::HOST, "127.0.0.1")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(case.clone()))
            .unwrap();

        LARGEST.with(|l| l.set(0));
        let answer = AssertUnwindSafe(async {
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            (status, body)
        })
        .catch_unwind()
        .await;
        let request_largest = LARGEST.with(Cell::get);
        let Ok((status, body)) = answer else {
            panic!("case {i}: the API panicked on {shown}");
        };
        assert!(
            request_largest <= MAX_REQUEST_ALLOCATION,
            "case {i}: a {request_largest}-byte allocation, over twice the {MAX_REQUEST_BYTES}-byte request limit, for {shown}"
        );
        largest = largest.max(request_largest);

        let answer: Value =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("case {i}: a non-JSON answer ({e})"));
        if status == StatusCode::OK {
            if let Err(why) = acceptable(&case) {
                panic!("case {i}: 200 for a body that is {why}: {shown}");
            }
            assert!(answer["mid"].is_string(), "case {i}: 200 without a mid");
            ok += 1;
        } else {
            let code = answer["error"]["code"].as_u64().unwrap_or(0) as u16;
            assert!(
                status.is_client_error() && REQUEST_ERRORS.contains(&code),
                "case {i}: {status} {answer} for {shown}"
            );
            *refused.entry(code).or_default() += 1;
        }
    }
    eprintln!(
        "send request: {} cases, {ok} accepted, refused {refused:?}, largest allocation {largest} in {:.2?}",
        mutation_cases(),
        started.elapsed()
    );
    // Every assertion above had something to check.
    assert!(ok > 0, "no mutant was accepted");
    for code in REQUEST_ERRORS {
        assert!(
            refused.get(&code).is_some_and(|&n| n > 0),
            "no mutant refused with {code}"
        );
    }
    node.shutdown().await.unwrap();
}
