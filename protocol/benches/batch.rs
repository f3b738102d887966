//! Criterion bench for catch-up ingest (issue 14): one sync page's signatures checked by the
//! exact batch verifier against a bare `verify_strict` loop over the same items, plus what the
//! exact batch pays for (the torsion check on R) and a plain (inexact) ed25519-dalek batch as
//! the bound a batch could reach without it. docs/performance.md records the results.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use curve25519_dalek::{edwards::CompressedEdwardsY, scalar::Scalar, EdwardsPoint};
use ed25519_dalek::{Signature, VerifyingKey};
use tim_protocol::{
    batch::{verify_batch, verify_messages, SignedBytes},
    tag, test_util, Message,
};

/// A full served sync page (`SYNC_PAGE_ITEMS` in the node).
const PAGE: usize = 256;
/// Distinct senders in the page.
const SENDERS: u8 = 4;

fn bench(c: &mut Criterion) {
    let senders: Vec<_> = (1..=SENDERS).map(test_util::key).collect();
    let page: Vec<Message> = (0..PAGE)
        .map(|i| {
            let body = format!("missed message {i:0>190}");
            test_util::room_message(
                &senders[i % senders.len()],
                "catchup",
                body.as_bytes(),
                1_000 + i as u64,
            )
        })
        .collect();
    // The signed bytes of each header, as the verifiers see them.
    let signed: Vec<Vec<u8>> = page
        .iter()
        .map(|m| {
            let mut bytes = tag::MESSAGE.to_vec();
            bytes.extend_from_slice(
                &bincode::encode_to_vec(m.head(), bincode::config::standard().with_fixed_int_encoding()).unwrap(),
            );
            bytes
        })
        .collect();
    let items: Vec<SignedBytes<'_>> = page
        .iter()
        .zip(&signed)
        .map(|(m, bytes)| SignedBytes {
            what: "message header",
            key: m.head().from.as_bytes(),
            bytes,
            signature: &m.header.signature,
        })
        .collect();
    assert!(
        verify_batch(&items).iter().all(Result::is_ok),
        "the page's signatures verify"
    );

    paired_rounds(&items);

    let mut g = c.benchmark_group("catchup_ingest");
    g.throughput(Throughput::Elements(PAGE as u64));
    g.bench_function("bare_verify_strict_loop_256", |b| {
        b.iter(|| {
            for item in black_box(&items) {
                let key = VerifyingKey::from_bytes(item.key).unwrap();
                key.verify_strict(item.bytes, &Signature::from_bytes(item.signature))
                    .unwrap();
            }
        })
    });
    g.bench_function("exact_batch_256", |b| b.iter(|| verify_batch(black_box(&items))));
    let messages: Vec<&[u8]> = items.iter().map(|item| item.bytes).collect();
    let signatures: Vec<Signature> = items.iter().map(|item| Signature::from_bytes(item.signature)).collect();
    let keys: Vec<VerifyingKey> = items
        .iter()
        .map(|item| VerifyingKey::from_bytes(item.key).unwrap())
        .collect();
    g.bench_function("plain_dalek_batch_256_not_exact", |b| {
        b.iter(|| ed25519_dalek::verify_batch(black_box(&messages), &signatures, &keys).unwrap())
    });
    g.bench_function("message_verify_loop_256", |b| {
        b.iter(|| {
            for m in black_box(&page) {
                m.clone().verify().unwrap();
            }
        })
    });
    g.bench_function("verify_messages_256", |b| {
        b.iter(|| verify_messages(black_box(page.clone())))
    });
    g.finish();

    // The parts of the exact batch's per-item cost, one R at a time.
    let mut g = c.benchmark_group("catchup_parts");
    g.throughput(Throughput::Elements(1));
    let r_bytes = CompressedEdwardsY(items[0].signature[..32].try_into().unwrap());
    let r = r_bytes.decompress().unwrap();
    g.bench_function("r_decompress", |b| b.iter(|| black_box(r_bytes).decompress()));
    g.bench_function("r_small_order", |b| b.iter(|| black_box(r).is_small_order()));
    g.bench_function("r_torsion_free_vartime", |b| {
        b.iter(|| {
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-Scalar::ONE), black_box(&r), &Scalar::ZERO) == -r
        })
    });
    g.bench_function("r_compress", |b| b.iter(|| black_box(r).compress()));
    g.finish();
}

/// The bare loop, the exact batch and the plain batch in 15 alternating rounds of 4 pages each,
/// so the machine's drift (other builds share its 2 cores) hits all three alike: prints each
/// one's median per signature and the ratios of the medians.
fn paired_rounds(items: &[SignedBytes<'_>]) {
    let messages: Vec<&[u8]> = items.iter().map(|item| item.bytes).collect();
    let signatures: Vec<Signature> = items.iter().map(|item| Signature::from_bytes(item.signature)).collect();
    let keys: Vec<VerifyingKey> = items
        .iter()
        .map(|item| VerifyingKey::from_bytes(item.key).unwrap())
        .collect();
    let per_signature = |f: &mut dyn FnMut()| {
        let started = std::time::Instant::now();
        for _ in 0..4 {
            f();
        }
        started.elapsed().as_secs_f64() * 1e6 / (4 * items.len()) as f64
    };
    let (mut bare, mut exact, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..15 {
        bare.push(per_signature(&mut || {
            for item in items {
                let key = VerifyingKey::from_bytes(item.key).unwrap();
                key.verify_strict(item.bytes, &Signature::from_bytes(item.signature))
                    .unwrap();
            }
        }));
        exact.push(per_signature(&mut || {
            assert!(verify_batch(black_box(items)).iter().all(Result::is_ok))
        }));
        plain.push(per_signature(&mut || {
            ed25519_dalek::verify_batch(black_box(&messages), &signatures, &keys).unwrap()
        }));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (bare, exact, plain) = (median(&mut bare), median(&mut exact), median(&mut plain));
    println!(
        "paired rounds, median µs per signature: bare verify_strict loop {bare:.1}, exact batch {exact:.1} \
         ({:.2}x the loop's speed), plain dalek batch (not exact) {plain:.1} ({:.2}x)",
        bare / exact,
        bare / plain
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
