//! Deletion receipts in the store: a replica queues its receipt in the tombstone's own batch, within
//! a budget of its own; the revoker keeps one receipt per replica and message, bounded, across
//! restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tim_protocol::{
    encode,
    test_util::{direct, key, revoke, room_message},
    Envelope, MessageId, Receipt,
};
use tim_storage::{Config, OutKind, Outgoing, ReceiptOutcome, State, Store, TombstoneOutcome};

fn open(dir: &Path, config: Config) -> Store {
    Store::open(dir, config).unwrap()
}

fn receipt_out(to: tim_protocol::AccountId, receipt: &Receipt) -> Outgoing {
    Outgoing {
        to,
        kind: OutKind::Receipt,
        frame: encode(&Envelope::Receipt(receipt.clone())).unwrap(),
        queued_at: 1,
    }
}

/// `replica` stores room message `body` of `by`, then applies `by`'s revoke of it with its own
/// receipt: the message's id, the outcome and whether the receipt was queued.
fn revoke_held_with_receipt(
    store: &Store,
    by: &tim_protocol::AccountKey,
    replica: &tim_protocol::AccountKey,
    body: &[u8],
    sent_at: u64,
) -> (MessageId, TombstoneOutcome, bool) {
    let m = room_message(by, "r", body, sent_at).verify().unwrap();
    store.put_message(&m, State::Received).unwrap();
    let control = revoke(by, &m).verify().unwrap();
    let receipt = Receipt::sign(replica, m.id(), by.account_id(), sent_at + 1).unwrap();
    let (outcome, queued) = store
        .apply_tombstone_with_receipt(&control, receipt_out(by.account_id(), &receipt))
        .unwrap();
    (m.id(), outcome, queued)
}

#[test]
fn a_receipt_is_queued_with_its_tombstone_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (key(1), key(2));
    let store = open(dir.path(), Config::default());
    let m = direct(&alice, &bob, b"to be revoked", 1_000).verify().unwrap();
    store.put_message(&m, State::Received).unwrap();
    let control = revoke(&alice, &m).verify().unwrap();
    let receipt = Receipt::sign(&bob, m.id(), alice.account_id(), 2_000).unwrap();
    let (outcome, queued) = store
        .apply_tombstone_with_receipt(&control, receipt_out(alice.account_id(), &receipt))
        .unwrap();
    assert_eq!(outcome, TombstoneOutcome::Applied { had_body: true });
    assert!(queued);
    assert_eq!(store.outbox_receipts(), 1);
    assert_eq!(store.outbox_len(), 0, "a receipt takes none of the messages' budget");
    drop(store);

    let store = open(dir.path(), Config::default());
    let outbox = store.outbox().unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].0, m.id());
    assert_eq!(outbox[0].1.kind, OutKind::Receipt);
    assert_eq!(store.outbox_receipts(), 1);
    assert!(store.outbox_done(&m.id(), OutKind::Receipt, true).unwrap());
    assert_eq!(store.outbox_receipts(), 0);
    // A second copy of the revoke is a duplicate and queues nothing.
    let (again, queued) = store
        .apply_tombstone_with_receipt(&control, receipt_out(alice.account_id(), &receipt))
        .unwrap();
    assert_eq!(again, TombstoneOutcome::Duplicate);
    assert!(!queued);
    assert!(store.outbox().unwrap().is_empty());
}

#[test]
fn a_full_receipt_budget_still_applies_the_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (key(1), key(2));
    let config = Config {
        outbox_receipts: 2,
        ..Config::default()
    };
    let store = open(dir.path(), config);
    for i in 0..3u64 {
        let (mid, outcome, queued) =
            revoke_held_with_receipt(&store, &alice, &bob, format!("m{i}").as_bytes(), 1_000 + i);
        assert_eq!(outcome, TombstoneOutcome::Applied { had_body: true });
        assert_eq!(queued, i < 2, "receipt {i}");
        assert!(store.message(&mid).unwrap().is_none(), "the body is gone either way");
    }
    assert_eq!(store.outbox_receipts(), 2);
}

#[test]
fn one_revoker_that_never_takes_its_receipts_fills_only_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let (greedy, honest, me) = (key(1), key(2), key(3));
    let config = Config {
        outbox_receipts_each: 2,
        outbox_receipts: 10,
        ..Config::default()
    };
    let store = open(dir.path(), config.clone());
    let apply = |by: &tim_protocol::AccountKey, i: u64| {
        revoke_held_with_receipt(&store, by, &me, format!("m{i}").as_bytes(), 1_000 + i).2
    };
    let queued: Vec<bool> = (0..4).map(|i| apply(&greedy, i)).collect();
    assert_eq!(queued, vec![true, true, false, false]);
    assert!(apply(&honest, 10), "another revoker still gets its receipt");
    drop(store);
    // The shares are counted again from disk.
    let store = open(dir.path(), config);
    assert_eq!(store.outbox_receipts(), 3);
    let (_, _, queued) = revoke_held_with_receipt(&store, &greedy, &me, b"after restart", 5_000);
    assert!(!queued);
}

#[test]
fn a_receipt_does_not_exempt_a_strangers_pending_tombstone_from_its_quota() {
    let dir = tempfile::tempdir().unwrap();
    let (me, stranger) = (key(1), key(2));
    let config = Config {
        pending_tombstones_each: 2,
        ..Config::default()
    };
    let store = open(dir.path(), config);
    let mut refused = 0;
    for i in 0..4u64 {
        // Targets this node never held.
        let m = direct(&stranger, &me, format!("never sent {i}").as_bytes(), 1_000 + i);
        let control = revoke(&stranger, &m).verify().unwrap();
        let receipt = Receipt::sign(&me, m.id(), stranger.account_id(), 2_000).unwrap();
        match store.apply_tombstone_with_receipt(&control, receipt_out(stranger.account_id(), &receipt)) {
            Ok((TombstoneOutcome::Applied { had_body: false }, true)) => {}
            Err(e) => {
                assert_eq!(e.code(), tim_protocol::Code::Overloaded);
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(refused, 2);
    assert_eq!(store.outbox_receipts(), 2);
}

#[test]
fn the_revoker_keeps_one_receipt_per_replica_within_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let alice = key(1);
    let config = Config {
        receipts_per_message: 3,
        ..Config::default()
    };
    let store = open(dir.path(), config.clone());
    let target = MessageId::from_bytes([9; 32]);
    let from = |seed: u8, at: u64| Receipt::sign(&key(seed), target, alice.account_id(), at).unwrap();
    assert_eq!(store.put_receipt(&from(2, 10)).unwrap(), ReceiptOutcome::Stored);
    assert_eq!(store.put_receipt(&from(2, 11)).unwrap(), ReceiptOutcome::Duplicate);
    assert_eq!(store.put_receipt(&from(3, 12)).unwrap(), ReceiptOutcome::Stored);
    assert_eq!(store.put_receipt(&from(4, 13)).unwrap(), ReceiptOutcome::Stored);
    assert_eq!(store.put_receipt(&from(5, 14)).unwrap(), ReceiptOutcome::Full);
    // Another message's receipts are counted apart.
    let other = Receipt::sign(&key(2), MessageId::from_bytes([10; 32]), alice.account_id(), 1).unwrap();
    assert_eq!(store.put_receipt(&other).unwrap(), ReceiptOutcome::Stored);
    drop(store);

    let store = open(dir.path(), config);
    let kept = store.receipts(&target).unwrap();
    assert_eq!(kept.len(), 3);
    assert_eq!(store.receipt_count(&target).unwrap(), 3);
    let first_of_2 = kept.iter().find(|r| r.by == key(2).account_id()).unwrap();
    assert_eq!(first_of_2.at, 10, "the first receipt of a replica stands");
    for r in &kept {
        assert!(r.clone().verify().is_ok(), "kept receipts stay verifiable");
    }
}
