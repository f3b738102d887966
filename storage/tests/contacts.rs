//! What strangers with free identities can make the contact and request stores keep: waiting
//! contact requests and held message requests are bounded in all, and a full bound leaves what
//! is already there (and other accounts' contacts) alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tim_protocol::{
    test_util::{direct, key},
    AccountKey, ContactAction, ContactOp, ContactState,
};
use tim_storage::{Config, ContactOutcome, Store, MAX_INCOMING_REQUESTS, MAX_REQUESTS_EACH, MAX_REQUESTS_TOTAL};

fn request_from(stranger: &AccountKey, me: &AccountKey, at: u64) -> ContactOp {
    let note = ContactAction::Request { note: String::new() };
    ContactOp::sign(stranger, me.account_id(), note, at)
        .unwrap()
        .into_inner()
}

#[test]
fn waiting_contact_requests_are_bounded_in_all_and_answers_still_apply() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::default()).unwrap();
    let me = key(1);
    // One account this node asked before the flood: its accept must still land.
    let friend = key(2);
    let ask = ContactAction::Request { note: String::new() };
    store
        .contact_local(&friend.account_id(), &ask, |send, at| {
            ContactOp::sign(&me, friend.account_id(), send, at)
        })
        .unwrap();
    for _ in 0..MAX_INCOMING_REQUESTS {
        let stranger = AccountKey::generate();
        let op = request_from(&stranger, &me, 10).verify().unwrap();
        assert!(matches!(
            store.contact_remote(&op).unwrap(),
            ContactOutcome::Applied { .. }
        ));
    }
    let one_more = request_from(&AccountKey::generate(), &me, 10).verify().unwrap();
    assert_eq!(store.contact_remote(&one_more).unwrap_err().code().number(), 5104);
    let accept = ContactOp::sign(&friend, me.account_id(), ContactAction::Accept, 20).unwrap();
    store.contact_remote(&accept).unwrap();
    assert_eq!(
        store.contact(&friend.account_id()).unwrap().unwrap().state,
        ContactState::Contact
    );
    // The refused request left nothing behind.
    let waiting = store
        .contacts()
        .unwrap()
        .into_iter()
        .filter(|(_, r)| r.state == ContactState::Incoming)
        .count();
    assert_eq!(waiting, MAX_INCOMING_REQUESTS);
}

#[test]
fn held_message_requests_are_bounded_per_sender_and_in_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Config::default()).unwrap();
    let me = key(1);
    let mut held = 0;
    let mut t = 1_000;
    while held < MAX_REQUESTS_TOTAL {
        let stranger = AccountKey::generate();
        for _ in 0..MAX_REQUESTS_EACH.min(MAX_REQUESTS_TOTAL - held) {
            t += 1;
            store
                .put_request(&direct(&stranger, &me, b"hi", t).verify().unwrap())
                .unwrap();
            held += 1;
        }
        if held < MAX_REQUESTS_TOTAL {
            t += 1;
            let extra = direct(&stranger, &me, b"more", t).verify().unwrap();
            assert_eq!(
                store.put_request(&extra).unwrap_err().code().number(),
                5104,
                "per sender"
            );
        }
    }
    let late = direct(&AccountKey::generate(), &me, b"late", t + 1).verify().unwrap();
    assert_eq!(store.put_request(&late).unwrap_err().code().number(), 5104, "in all");
    let total: usize = store.requests().unwrap().iter().map(|(_, m)| m.len()).sum();
    assert_eq!(total, MAX_REQUESTS_TOTAL);
}
