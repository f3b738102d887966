//! Criterion benches for the store: put (single and batched), verify + put against a bare
//! ed25519 verify, apply_tombstone, and a history page of 50.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use tim_protocol::{AccountKey, Action, Control, Message, Recipient};
use tim_storage::{Config, Conversation, State, Store};

fn messages(from: &AccountKey, to: &AccountKey, n: usize, start: u64) -> Vec<Message> {
    (0..n)
        .map(|i| {
            let body = format!("bench message {i} {}", "x".repeat(150)).into_bytes();
            Message::sign(from, Recipient::Account(to.account_id()), body, start + i as u64, None)
                .unwrap()
                .into_inner()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let alice = AccountKey::from_secret_bytes(&[1; 32]);
    let bob = AccountKey::from_secret_bytes(&[2; 32]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::default()).unwrap();

    let pool = messages(&alice, &bob, 20_000, 0);
    let mut g = c.benchmark_group("storage");
    g.throughput(Throughput::Elements(1));

    // Bare verify, the physical limit, in the same run.
    let one = pool[0].clone();
    g.bench_function("bare_verify_message", |b| {
        b.iter(|| black_box(one.clone()).verify().unwrap())
    });

    let mut i = 0usize;
    g.bench_function("verify_and_put_message", |b| {
        b.iter_batched(
            || {
                i += 1;
                pool[i % pool.len()].clone()
            },
            |m| {
                let v = m.verify().unwrap();
                let _ = store.put_message(&v, State::Received).unwrap();
            },
            BatchSize::SmallInput,
        )
    });

    let fresh = messages(&alice, &bob, 64 * 200, 1_000_000);
    let verified: Vec<_> = fresh.into_iter().map(|m| m.verify().unwrap()).collect();
    let mut chunks = verified.chunks(64).cycle();
    g.throughput(Throughput::Elements(64));
    g.bench_function("put_messages_batch_of_64", |b| {
        b.iter(|| {
            let chunk = chunks.next().unwrap();
            let items: Vec<_> = chunk.iter().map(|m| (m, State::Received)).collect();
            store.put_messages(&items).unwrap()
        })
    });
    g.throughput(Throughput::Elements(1));

    let targets = messages(&alice, &bob, 5_000, 2_000_000);
    let mut revokes = Vec::new();
    for m in &targets {
        let v = m.clone().verify().unwrap();
        store.put_message(&v, State::Sent).unwrap();
        revokes.push(Control::sign(&alice, Action::Revoke, m.header.clone(), 3_000_000).unwrap());
    }
    let mut r = revokes.iter().cycle();
    g.bench_function("apply_tombstone", |b| {
        b.iter(|| store.apply_tombstone(r.next().unwrap()).unwrap())
    });

    let conv = Conversation::direct(alice.account_id(), bob.account_id());
    g.bench_function("history_page_of_50", |b| {
        b.iter(|| store.history(&conv, None, 50).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
