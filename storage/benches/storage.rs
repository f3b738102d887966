//! Criterion benches for the store: verify + put against a bare ed25519 verify (same run), put
//! single and batched, apply_tombstone, and a history page of 50.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use tim_protocol::{AccountKey, Action, Control, Message, Recipient};
use tim_storage::{Config, Conversation, State, Store};

fn fresh(from: &AccountKey, to: &AccountKey, i: u64) -> Message {
    let body = format!("bench message {i} {}", "x".repeat(150)).into_bytes();
    Message::sign(from, Recipient::Account(to.account_id()), body, i, None)
        .unwrap()
        .into_inner()
}

fn bench(c: &mut Criterion) {
    let alice = AccountKey::from_secret_bytes(&[1; 32]);
    let bob = AccountKey::from_secret_bytes(&[2; 32]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::default()).unwrap();
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        n
    };

    let mut g = c.benchmark_group("storage");
    g.throughput(Throughput::Elements(1));

    // The physical limit, in the same run: verifying one message (signature + body hash).
    let one = fresh(&alice, &bob, 0);
    g.bench_function("verify_message", |b| {
        b.iter(|| black_box(one.clone()).verify().unwrap())
    });

    // Verify + store a message never seen before (signing happens in setup, not timed).
    g.bench_function("verify_and_put_message", |b| {
        b.iter_batched(
            || fresh(&alice, &bob, next()),
            |m| store.put_message(&m.verify().unwrap(), State::Received).unwrap(),
            BatchSize::SmallInput,
        )
    });

    g.bench_function("put_message", |b| {
        b.iter_batched(
            || fresh(&alice, &bob, next()).verify().unwrap(),
            |m| store.put_message(&m, State::Received).unwrap(),
            BatchSize::SmallInput,
        )
    });

    // 64 messages arriving together: verified one by one, stored in one WriteBatch.
    g.throughput(Throughput::Elements(64));
    g.bench_function("verify_and_put_batch_of_64", |b| {
        b.iter_batched(
            || (0..64).map(|_| fresh(&alice, &bob, next())).collect::<Vec<_>>(),
            |batch| {
                let verified: Vec<_> = batch.into_iter().map(|m| m.verify().unwrap()).collect();
                let items: Vec<_> = verified.iter().map(|m| (m, State::Received)).collect();
                store.put_messages(&items).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.throughput(Throughput::Elements(1));

    // A revoke of a stored message (the shredder runs in the background meanwhile).
    g.bench_function("apply_tombstone", |b| {
        b.iter_batched(
            || {
                let m = fresh(&alice, &bob, next()).verify().unwrap();
                store.put_message(&m, State::Sent).unwrap();
                Control::sign(&alice, Action::Revoke, m.header.clone(), 1).unwrap()
            },
            |revoke| store.apply_tombstone(&revoke).unwrap(),
            BatchSize::SmallInput,
        )
    });

    let conv = Conversation::direct(alice.account_id(), bob.account_id());
    g.bench_function("history_page_of_50", |b| {
        b.iter(|| store.history(&conv, None, 50).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
