//! Criterion benches for the protocol's hot path: sign, verify, encode, decode, and the bare
//! ed25519 verify they are compared with.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::{Signer, SigningKey};
use std::hint::black_box;
use tim_protocol::{decode, encode, seal, AccountKey, Action, Control, Envelope, Message, Recipient};

fn bench(c: &mut Criterion) {
    let alice = AccountKey::from_secret_bytes(&[1; 32]);
    let bob = AccountKey::from_secret_bytes(&[2; 32]);
    let body = vec![b'x'; 200];
    let to = Recipient::Account(bob.account_id());
    let msg = Message::sign(&alice, to.clone(), body.clone(), 1, None)
        .unwrap()
        .into_inner();
    let frame = encode(&Envelope::Message(msg.clone())).unwrap();

    let mut g = c.benchmark_group("protocol");
    g.throughput(Throughput::Elements(1));

    // The physical limit: one ed25519 verify_strict over a payload of a header's size.
    let sk = SigningKey::from_bytes(&[3; 32]);
    let vk = sk.verifying_key();
    let payload = vec![0u8; 180];
    let sig = sk.sign(&payload);
    g.bench_function("bare_ed25519_verify", |b| {
        b.iter(|| vk.verify_strict(black_box(&payload), &sig).unwrap())
    });
    g.bench_function("bare_ed25519_sign", |b| b.iter(|| sk.sign(black_box(&payload))));

    g.bench_function("sign_message_200b", |b| {
        b.iter(|| Message::sign(&alice, to.clone(), black_box(body.clone()), 1, None).unwrap())
    });
    g.bench_function("verify_message_200b", |b| {
        b.iter(|| black_box(msg.clone()).verify().unwrap())
    });
    g.bench_function("encode_message_200b", |b| {
        b.iter(|| encode(&Envelope::Message(black_box(msg.clone()))).unwrap())
    });
    g.bench_function("decode_message_200b", |b| {
        b.iter(|| decode::<Envelope>(black_box(&frame)).unwrap())
    });
    // End-to-end encryption of a direct message: sealed to the recipient and the sender, and
    // opened by the recipient.
    // Cold: a new HPKE setup per reader each time; warm: the setups reused, as a node does.
    // Both publish a seal key, as tim nodes do, and Alice knows Bob's record.
    let (mut sending, mut opening) = (seal::SealKeys::default(), seal::SealKeys::default());
    let alices = seal::Keyring::new(&alice, &[(1, seal::SealSecret::generate())]).unwrap();
    let bobs = seal::Keyring::new(&bob, &[(1, seal::SealSecret::generate())]).unwrap();
    let readers = [seal::Reader::of(bobs.record().unwrap())];
    let sealed = seal::seal(&alices, &to, &readers, &body, &mut sending).unwrap();
    g.bench_function("seal_200b_to_2_readers_cold", |b| {
        b.iter(|| seal::seal(&alices, &to, &readers, black_box(&body), &mut Default::default()).unwrap())
    });
    g.bench_function("seal_200b_to_2_readers_warm", |b| {
        b.iter(|| seal::seal(&alices, &to, &readers, black_box(&body), &mut sending).unwrap())
    });
    g.bench_function("open_200b_cold", |b| {
        b.iter(|| {
            seal::open(
                &bobs,
                &alice.account_id(),
                &to,
                black_box(&sealed),
                &mut Default::default(),
            )
            .unwrap()
        })
    });
    g.bench_function("open_200b_warm", |b| {
        b.iter(|| seal::open(&bobs, &alice.account_id(), &to, black_box(&sealed), &mut opening).unwrap())
    });
    let revoke = Control::sign(&alice, Action::Revoke, msg.header.clone(), 2)
        .unwrap()
        .into_inner();
    g.bench_function("verify_revoke", |b| {
        b.iter(|| black_box(revoke.clone()).verify().unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
