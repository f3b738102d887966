//! Criterion bench for a founded room's membership fold: what one more operation costs a member
//! holding `n` of them, in date order, dated back (judged in its place, everything after folded
//! again), as the founder's removal (its links walked, then folded again), and a rebuild from
//! storage. docs/performance.md records the results.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tim_protocol::{AccountKey, Membership, RoomAction, RoomOp};

/// An open room of `n` joins after its founder's `Create`, one every ms from t = 1,000.
fn room(n: usize) -> (AccountKey, Membership, Vec<AccountKey>) {
    let founder = AccountKey::from_secret_bytes(&[1; 32]);
    let create = RoomOp::found(&founder, "bench".into(), false, 1_000).unwrap();
    let id = create.room.clone();
    let mut membership = Membership::new(create).unwrap();
    let members: Vec<AccountKey> = (0..n).map(|_| AccountKey::generate()).collect();
    for (i, member) in members.iter().enumerate() {
        let op = RoomOp::sign(member, id.clone(), RoomAction::Join, 1_001 + i as u64).unwrap();
        membership.apply(op).unwrap();
    }
    (founder, membership, members)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("room");
    for n in [1_000usize, 4_000] {
        let (founder, membership, members) = room(n);
        let id = membership.state().room.clone();
        let end = 1_001 + n as u64;
        let newcomer = AccountKey::generate();
        let in_order = RoomOp::sign(&newcomer, id.clone(), RoomAction::Join, end + 10).unwrap();
        let dated_back = RoomOp::sign(&newcomer, id.clone(), RoomAction::Join, 1_001 + n as u64 / 2).unwrap();
        let victim = &members[n / 2];
        let links = membership.links_for(&founder.account_id(), &RoomAction::Kick(victim.account_id()));
        let removal = RoomOp::sign_linked(
            &founder,
            id.clone(),
            RoomAction::Kick(victim.account_id()),
            end + 10,
            links,
        )
        .unwrap();
        let ops = membership.ops().to_vec();
        let one = |op: &tim_protocol::Verified<RoomOp>| {
            let op = op.clone();
            let membership = membership.clone();
            move |b: &mut criterion::Bencher<'_>| {
                b.iter_batched(
                    || (membership.clone(), op.clone()),
                    // The membership is returned, so its drop is not timed.
                    |(mut m, op)| {
                        black_box(m.apply(op).unwrap());
                        m
                    },
                    BatchSize::LargeInput,
                )
            }
        };
        g.bench_function(format!("apply_in_order_{n}"), one(&in_order));
        g.bench_function(format!("apply_dated_back_{n}"), one(&dated_back));
        g.bench_function(format!("apply_founders_removal_{n}"), one(&removal));
        g.bench_function(format!("rebuild_{n}"), |b| {
            b.iter_batched(
                || ops.clone(),
                |ops| black_box(Membership::rebuild(ops).unwrap()),
                BatchSize::LargeInput,
            )
        });
        // The same room after its founder removed every tenth member.
        let mut pruned = membership.clone();
        for (i, member) in members.iter().enumerate().step_by(10) {
            let action = RoomAction::Kick(member.account_id());
            let links = pruned.links_for(&founder.account_id(), &action);
            let op = RoomOp::sign_linked(&founder, id.clone(), action, end + 100 + i as u64, links).unwrap();
            pruned.apply(op).unwrap();
        }
        let pruned_ops = pruned.ops().to_vec();
        g.bench_function(format!("rebuild_{n}_after_{}_removals", n.div_ceil(10)), |b| {
            b.iter_batched(
                || pruned_ops.clone(),
                |ops| black_box(Membership::rebuild(ops).unwrap()),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
