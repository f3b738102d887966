//! Deletion receipts: every replica that applies a revoke or burn tells its signer, with a signed
//! receipt, and the signer's node shows which replicas confirmed, also for replicas that were
//! offline, across a restart, and never on the word of a forger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tim_node::{
    protocol::{encode, AccountId, Code, Envelope, MessageId, Receipt, Recipient, RoomId},
    Deletion, Event, Events, Node, Sent,
};

/// Waits for `deletion_confirmed` of `mid` by `by`.
async fn confirmed_by(events: &mut Events, mid: MessageId, by: AccountId) {
    expect_event(
        events,
        "a deletion receipt",
        |e| matches!(e, Event::DeletionConfirmed { mid: m, by: b, .. } if *m == mid && *b == by),
    )
    .await;
}

fn accounts(d: &Deletion) -> Vec<AccountId> {
    d.confirmed.iter().map(|c| c.account).collect()
}

/// Sends `body` from `from` to `to` and waits until `to` stored it.
async fn received(from: &Node, to: &Node, to_events: &mut Events, body: &[u8]) -> Sent {
    let sent = from
        .send(Recipient::Account(to.account()), body.to_vec(), None)
        .await
        .unwrap();
    expect_about(to_events, "the message at its recipient", Kind::Message, sent.mid).await;
    sent
}

/// Waits until `node`'s deletion of `mid` has `n` confirmations.
async fn confirmations(node: &Node, mid: MessageId, n: usize) -> Deletion {
    eventually("confirmations", || async move {
        node.deletion(mid).await.ok().filter(|d| d.confirmed.len() >= n)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_revoke_is_confirmed_by_the_recipient_and_survives_a_restart() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, mut a_ev) = start(dirs[0].path(), vec![]).await;
    let boot = addr(&a).await;
    let (b, mut b_ev) = start(dirs[1].path(), vec![boot]).await;
    routed(&a, &b).await;

    let sent = received(&a, &b, &mut b_ev, b"take it back").await;
    // Nothing deleted yet: no deletion to report.
    assert_eq!(a.deletion(sent.mid).await.unwrap_err().code(), Code::NotFound);
    a.revoke(sent.mid).await.unwrap();
    confirmed_by(&mut a_ev, sent.mid, b.account()).await;

    let d = a.deletion(sent.mid).await.unwrap();
    assert_eq!(d.action, tim_node::protocol::Action::Revoke);
    assert_eq!(d.expected, Some(vec![b.account()]));
    assert_eq!(accounts(&d), vec![b.account()]);
    assert_eq!(d.pending, Some(vec![]));
    assert_eq!(a.metrics().receipts_confirmed, 1);
    assert_eq!(b.metrics().receipts_sent, 1);
    // B did not make this deletion: it has nothing to report.
    assert_eq!(b.deletion(sent.mid).await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(a.confirmed_counts(vec![sent.mid]).await.unwrap(), vec![1]);

    // The receipt is on A's disk: a restart keeps it.
    stop(a, a_ev).await;
    let a_dir = dirs[0].path().to_path_buf();
    let (a, _a_ev) = restart(|| config(&a_dir, vec![])).await;
    let d = a.deletion(sent.mid).await.unwrap();
    assert_eq!(accounts(&d), vec![b.account()]);
    let receipt_at = d.confirmed[0].at;
    assert!(receipt_at >= sent.sent_at, "the receipt's time is when B applied it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_while_the_recipient_is_away_is_confirmed_when_it_returns() {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = start(dirs[0].path(), vec![]).await;
    let boot = addr(&hub.0).await;
    let (a, mut a_ev) = start(dirs[1].path(), vec![boot.clone()]).await;
    let (b, mut b_ev) = start(dirs[2].path(), vec![boot.clone()]).await;
    routed(&a, &b).await;
    let sent = received(&a, &b, &mut b_ev, b"before B leaves").await;
    let b_account = b.account();
    stop(b, b_ev).await;

    a.revoke(sent.mid).await.unwrap();
    let d = a.deletion(sent.mid).await.unwrap();
    assert!(d.confirmed.is_empty());
    assert_eq!(d.pending, Some(vec![b_account]));

    let b_dir = dirs[2].path().to_path_buf();
    let (_b, _b_ev) = restart(|| config(&b_dir, vec![boot.clone()])).await;
    confirmed_by(&mut a_ev, sent.mid, b_account).await;
    let d = a.deletion(sent.mid).await.unwrap();
    assert_eq!(accounts(&d), vec![b_account]);
    assert_eq!(d.pending, Some(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burn_is_confirmed_by_the_senders_node() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev) = start(dirs[0].path(), vec![]).await;
    let (b, mut b_ev) = start(dirs[1].path(), vec![addr(&a).await]).await;
    routed(&a, &b).await;
    let sent = received(&a, &b, &mut b_ev, b"burn me").await;
    b.burn(sent.mid).await.unwrap();
    confirmed_by(&mut b_ev, sent.mid, a.account()).await;
    let d = b.deletion(sent.mid).await.unwrap();
    assert_eq!(d.action, tim_node::protocol::Action::Burn);
    assert_eq!(d.expected, Some(vec![a.account()]));
    assert_eq!(accounts(&d), vec![a.account()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_revoke_is_confirmed_by_each_member_including_those_that_return() {
    init_tracing();
    let room = RoomId::new("receipts").unwrap();
    // The revoker and five other members; two of them are away when the message and its revoke
    // go out.
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let (revoker, mut revoker_ev) = start(dirs[0].path(), vec![]).await;
    let boot = addr(&revoker).await;
    let mut members = Vec::new();
    for dir in &dirs[1..] {
        let (node, events) = start(dir.path(), vec![boot.clone()]).await;
        node.join(room.clone()).await.unwrap();
        members.push((node, events));
    }
    revoker.join(room.clone()).await.unwrap();
    let away: Vec<(Node, Events)> = members.drain(3..).collect();
    let away_accounts: Vec<AccountId> = away.iter().map(|(n, _)| n.account()).collect();
    for (node, events) in away {
        stop(node, events).await;
    }
    wait_room_peers(&revoker, &room, 3).await;

    let sent = revoker
        .send(Recipient::Room(room.clone()), b"wrong room".to_vec(), None)
        .await
        .unwrap();
    for (node, events) in &mut members {
        let _ = node;
        expect_about(events, "the room message", Kind::Message, sent.mid).await;
    }
    revoker.revoke(sent.mid).await.unwrap();
    let d = confirmations(&revoker, sent.mid, 3).await;
    let online: Vec<AccountId> = members.iter().map(|(n, _)| n.account()).collect();
    let mut got = accounts(&d);
    got.sort();
    let mut want = online.clone();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(d.expected, None, "an open room has no fixed membership");
    assert_eq!(d.pending, None);

    // The two that were away catch up by room sync, apply the tombstone and confirm.
    for dir in &dirs[4..] {
        let dir = dir.path().to_path_buf();
        let b = boot.clone();
        members.push(restart(|| config(&dir, vec![b.clone()])).await);
    }
    for account in &away_accounts {
        confirmed_by(&mut revoker_ev, sent.mid, *account).await;
    }
    let d = confirmations(&revoker, sent.mid, 5).await;
    assert_eq!(d.confirmed.len(), 5);
    for account in away_accounts.iter().chain(&online) {
        assert!(accounts(&d).contains(account), "{account} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_misdirected_receipts_are_refused_and_counted() {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, mut a_ev) = start(dirs[0].path(), vec![]).await;
    let boot = addr(&a).await;
    let b_key = with_account(dirs[1].path(), 42);
    let (b, mut b_ev) = start(dirs[1].path(), vec![boot.clone()]).await;
    let mallory_key = with_account(dirs[2].path(), 43);
    let (mallory, mut mallory_ev) = start(dirs[2].path(), vec![boot]).await;
    routed(&a, &b).await;
    routed(&mallory, &a).await;

    // A revokes a message to B; B's genuine receipt arrives.
    let sent = received(&a, &b, &mut b_ev, b"x").await;
    a.revoke(sent.mid).await.unwrap();
    confirmed_by(&mut a_ev, sent.mid, b.account()).await;
    // A message A did not delete.
    let kept = a
        .send(Recipient::Account(b.account()), b"kept".to_vec(), None)
        .await
        .unwrap();

    let frame = |r: Receipt| encode(&Envelope::Receipt(r)).unwrap();
    let signed = |key, target, to| Receipt::sign(key, target, to, sent.sent_at + 1).unwrap().into_inner();
    let mut bad_signature = signed(&b_key, sent.mid, a.account());
    bad_signature.at += 1;
    let cases = [
        // Mallory holds no replica of a direct message between A and B.
        (signed(&mallory_key, sent.mid, a.account()), Code::PermissionDenied),
        // B's receipt, altered after signing.
        (bad_signature, Code::InvalidSignature),
        // A receipt for a message A never deleted.
        (signed(&b_key, kept.mid, a.account()), Code::PermissionDenied),
        // A receipt addressed to Mallory, delivered to A.
        (signed(&b_key, sent.mid, mallory.account()), Code::PermissionDenied),
    ];
    let before = a.metrics().receipts_refused;
    for (receipt, code) in cases {
        let target = receipt.target;
        mallory
            .relay(Recipient::Account(a.account()), frame(receipt))
            .await
            .unwrap();
        let failed = expect_event(
            &mut mallory_ev,
            "the refusal",
            |e| matches!(e, Event::DeliveryFailed { mid, .. } if *mid == target),
        )
        .await;
        assert!(
            matches!(failed, Event::DeliveryFailed { code: c, .. } if c == code),
            "{failed:?}, expected {code}"
        );
    }
    assert_eq!(a.metrics().receipts_refused, before + 4);
    let d = a.deletion(sent.mid).await.unwrap();
    assert_eq!(accounts(&d), vec![b.account()], "only B's genuine receipt counts");
    assert_eq!(a.confirmed_counts(vec![kept.mid]).await.unwrap(), vec![0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_receipts_off_applies_the_revoke_and_sends_none() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev) = start(dirs[0].path(), vec![]).await;
    let mut quiet = config(dirs[1].path(), vec![addr(&a).await]);
    quiet.deletion_receipts = false;
    let (b, mut b_ev) = Node::start(quiet).await.unwrap();
    routed(&a, &b).await;
    let sent = received(&a, &b, &mut b_ev, b"x").await;
    a.revoke(sent.mid).await.unwrap();
    expect_about(&mut b_ev, "the revoke at B", Kind::Revoked, sent.mid).await;
    // A receipt is queued in the tombstone's own write: had B made one, it would count by now.
    assert_eq!(b.metrics().receipts_sent, 0);
    assert!(is_tombstone(
        &entry(&b, sent.mid).await,
        tim_node::protocol::Action::Revoke
    ));
    let d = a.deletion(sent.mid).await.unwrap();
    assert_eq!(d.pending, Some(vec![b.account()]));
}
