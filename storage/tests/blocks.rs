//! Blocked accounts: kept across restarts, and a block drops what the outbox held for the account
//! (and only for it), with the outbox counts following.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use tim_protocol::test_util::{direct, key, revoke};
use tim_storage::{Config, OutKind, Store};

#[test]
fn a_block_drops_the_queue_for_that_account_only_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (me, alice, bob) = (key(1), key(2), key(3));
    {
        let store = Store::open(dir.path(), Config::default()).unwrap();
        for i in 0..3u64 {
            let m = direct(&me, &alice, b"to alice", 1_000 + i).verify().unwrap();
            store
                .put_outgoing(&m, common::outgoing(&alice, m.get(), OutKind::Message))
                .unwrap();
        }
        // A revoke queued for alice goes too.
        let m = direct(&me, &alice, b"revoked", 2_000).verify().unwrap();
        store.put_message(&m, tim_storage::State::Delivered).unwrap();
        let control = revoke(&me, m.get()).verify().unwrap();
        let out = tim_storage::Outgoing {
            to: alice.account_id(),
            kind: OutKind::Control,
            frame: vec![1],
            queued_at: 1,
        };
        store.apply_tombstone_outgoing(&control, out).unwrap();
        let to_bob = direct(&me, &bob, b"to bob", 1_500).verify().unwrap();
        store
            .put_outgoing(&to_bob, common::outgoing(&bob, to_bob.get(), OutKind::Message))
            .unwrap();
        assert_eq!(store.outbox_len(), 5);

        assert_eq!(store.block(&alice.account_id()).unwrap(), 4);
        assert_eq!(store.outbox_len(), 1);
        let left: Vec<_> = store.outbox().unwrap().into_iter().map(|(_, o)| o.to).collect();
        assert_eq!(left, vec![bob.account_id()]);
        // Blocking again drops nothing more and lists alice once.
        assert_eq!(store.block(&alice.account_id()).unwrap(), 0);
        assert_eq!(store.blocks().unwrap(), vec![alice.account_id()]);
    }
    let store = Store::open(dir.path(), Config::default()).unwrap();
    assert_eq!(store.blocks().unwrap(), vec![alice.account_id()]);
    assert_eq!(store.outbox_len(), 1, "the counts rebuilt at open agree");
    assert!(store.unblock(&alice.account_id()).unwrap());
    assert!(!store.unblock(&alice.account_id()).unwrap(), "not blocked any more");
    assert!(store.blocks().unwrap().is_empty());
}
