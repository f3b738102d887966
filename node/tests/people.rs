//! Contacts and blocking between real nodes: every contact state change seen on both sides,
//! forged and replayed operations refused, and a blocked account that cannot get anything stored
//! and learns `4110 blocked`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tim_node::{
    protocol::{encode, AccountId, Code, ContactAction, ContactOp, ContactState, Envelope, Recipient},
    Event, Events, Node,
};

fn request(note: &str) -> ContactAction {
    ContactAction::Request { note: note.into() }
}

/// Waits until `events` report `account` in `state`.
async fn state_event(events: &mut Events, account: AccountId, state: ContactState) {
    expect_event(
        events,
        &format!("contact {account} {}", state.as_str()),
        |e| matches!(e, Event::Contact { account: a, state: s } if *a == account && *s == state),
    )
    .await;
}

/// `node`'s state with `account` (`none` when it lists nothing).
async fn state_of(node: &Node, account: AccountId) -> ContactState {
    node.contacts()
        .await
        .unwrap()
        .into_iter()
        .find(|(a, _)| *a == account)
        .map_or(ContactState::None, |(_, r)| r.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_accept_remove_and_reject_change_both_sides() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, mut a_ev) = start(dirs[0].path(), vec![]).await;
    let (b, mut b_ev) = start(dirs[1].path(), vec![addr(&a).await]).await;
    routed(&a, &b).await;
    routed(&b, &a).await;
    let (ida, idb) = (a.account(), b.account());

    // A asks; B sees the request with its note.
    assert_eq!(
        a.contact(idb, request("it's alice")).await.unwrap(),
        ContactState::Requested
    );
    let e = expect_event(&mut b_ev, "the request", |e| matches!(e, Event::ContactRequest { .. })).await;
    assert_eq!(
        e,
        Event::ContactRequest {
            from: ida,
            note: "it's alice".into()
        }
    );
    let listed = b.contacts().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, ida);
    assert_eq!(listed[0].1.state, ContactState::Incoming);
    assert_eq!(listed[0].1.note.as_deref(), Some("it's alice"));
    // Asking again while waiting is fine; accepting one's own request is not.
    assert_eq!(
        a.contact(idb, ContactAction::Accept).await.unwrap_err().code(),
        Code::NotFound
    );

    // B accepts: both are contacts.
    assert_eq!(
        b.contact(ida, ContactAction::Accept).await.unwrap(),
        ContactState::Contact
    );
    state_event(&mut a_ev, idb, ContactState::Contact).await;
    assert_eq!(state_of(&a, idb).await, ContactState::Contact);
    assert_eq!(
        a.contact(idb, request("again")).await.unwrap_err().code(),
        Code::AlreadyExists
    );

    // A removes: both sides forget.
    assert_eq!(a.contact(idb, ContactAction::Remove).await.unwrap(), ContactState::None);
    state_event(&mut b_ev, ida, ContactState::None).await;
    assert!(b.contacts().await.unwrap().is_empty());

    // B asks, A rejects: nothing on either side.
    b.contact(ida, request("")).await.unwrap();
    state_event(&mut a_ev, idb, ContactState::Incoming).await;
    assert_eq!(a.contact(idb, ContactAction::Reject).await.unwrap(), ContactState::None);
    state_event(&mut b_ev, ida, ContactState::None).await;
    assert!(a.contacts().await.unwrap().is_empty());
    assert!(b.contacts().await.unwrap().is_empty());

    // Both ask at once: both become contacts, and the state survives a restart.
    a.contact(idb, request("")).await.unwrap();
    b.contact(ida, request("")).await.unwrap();
    state_event(&mut a_ev, idb, ContactState::Contact).await;
    eventually("B a contact too", || {
        let b = b.clone();
        async move { (state_of(&b, ida).await == ContactState::Contact).then_some(()) }
    })
    .await;
    stop(a, a_ev).await;
    let a_dir = dirs[0].path().to_path_buf();
    let (a, _a_ev) = restart(|| config(&a_dir, vec![])).await;
    assert_eq!(state_of(&a, idb).await, ContactState::Contact);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_misdirected_and_replayed_contact_operations_change_nothing() {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // The test signs as A and as C (known keys); C's node relays what the test builds to B.
    let alice = with_account(dirs[0].path(), 41);
    let carol = with_account(dirs[2].path(), 43);
    let (a, _a_ev) = start(dirs[0].path(), vec![]).await;
    let (b, mut b_ev) = start(dirs[1].path(), vec![addr(&a).await]).await;
    let (c, mut c_ev) = start(dirs[2].path(), vec![addr(&a).await]).await;
    routed(&c, &b).await;
    let (ida, idb) = (a.account(), b.account());
    let relay = |op: ContactOp| {
        let c = c.clone();
        async move {
            let frame = encode(&Envelope::Contact(op)).unwrap();
            c.relay(Recipient::Account(idb), frame).await.unwrap();
        }
    };

    // Claims to be from A, signed by C.
    let mut forged = ContactOp::sign(&carol, idb, request("it's alice, honest"), 10)
        .unwrap()
        .into_inner();
    forged.from = ida;
    relay(forged).await;
    failed_with(&mut c_ev, idb, Code::InvalidSignature).await;
    // A's real request, but for C, shown to B.
    let for_c = ContactOp::sign(&alice, c.account(), request("for carol"), 11)
        .unwrap()
        .into_inner();
    relay(for_c).await;
    failed_with(&mut c_ev, idb, Code::PermissionDenied).await;
    assert!(b.contacts().await.unwrap().is_empty());
    assert!(b.metrics().forged_rejected >= 1);

    // A's request, then A's remove, then the request again (a replay): B ends with nothing.
    let first = ContactOp::sign(&alice, idb, request("hi"), 1_000).unwrap().into_inner();
    let withdrawn = ContactOp::sign(&alice, idb, ContactAction::Remove, 2_000)
        .unwrap()
        .into_inner();
    relay(first.clone()).await;
    state_event(&mut b_ev, ida, ContactState::Incoming).await;
    relay(withdrawn).await;
    state_event(&mut b_ev, ida, ContactState::None).await;
    relay(first).await;
    // A later marker operation shows the replay was handled before it (pipes keep order).
    let marker = ContactOp::sign(&alice, idb, request("marker"), 3_000)
        .unwrap()
        .into_inner();
    relay(marker).await;
    let e = expect_event(&mut b_ev, "the marker request", |e| {
        matches!(e, Event::ContactRequest { .. })
    })
    .await;
    assert_eq!(
        e,
        Event::ContactRequest {
            from: ida,
            note: "marker".into()
        },
        "the replayed request was not applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_account_gets_nothing_stored_and_its_node_hears_4110() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, a_ev) = start(dirs[0].path(), vec![]).await;
    let a_addr = addr(&a).await;
    let (b, b_ev) = start(dirs[1].path(), vec![a_addr.clone()]).await;
    routed(&a, &b).await;
    routed(&b, &a).await;
    let (ida, idb) = (a.account(), b.account());
    // Before the block, B's message reaches A.
    let mut a_ev = a_ev;
    let before = b.send(Recipient::Account(ida), b"before".to_vec(), None).await.unwrap();
    expect_about(&mut a_ev, "B's message before the block", Kind::Message, before.mid).await;

    // While B is away, A queues a message to B; then A blocks B: the queue is dropped.
    stop(b, b_ev).await;
    a.send(Recipient::Account(idb), b"queued".to_vec(), None).await.unwrap();
    a.contact(idb, request("")).await.unwrap();
    assert_eq!(a.metrics().outbox_depth, 2);
    assert_eq!(a.block(idb).await.unwrap(), 2);
    assert_eq!(a.metrics().outbox_depth, 0);
    assert_eq!(a.blocks().await.unwrap(), vec![idb]);
    // Nothing new goes to B either.
    let refused = a.send(Recipient::Account(idb), b"no".to_vec(), None).await.unwrap_err();
    assert_eq!(refused.code(), Code::Blocked);
    assert_eq!(a.contact(idb, request("")).await.unwrap_err().code(), Code::Blocked);
    assert_eq!(a.block(ida).await.unwrap_err().code(), Code::BadParameters);

    // B returns and writes: its message and its contact request are refused with 4110, and
    // A stores nothing of them.
    let b_dir = dirs[1].path().to_path_buf();
    let boot = a_addr.clone();
    let (b, mut b_ev) = restart(|| config(&b_dir, vec![boot.clone()])).await;
    routed(&b, &a).await;
    let sent = b.send(Recipient::Account(ida), b"hello?".to_vec(), None).await.unwrap();
    failed_with(&mut b_ev, ida, Code::Blocked).await;
    assert!(
        entry(&a, sent.mid).await.is_none(),
        "nothing of a blocked account is stored"
    );
    b.contact(ida, request("please")).await.unwrap();
    failed_with(&mut b_ev, ida, Code::Blocked).await;
    // A revoke of the message A holds is a control message of the blocked account: refused too,
    // and A's copy is untouched.
    b.revoke(before.mid).await.unwrap();
    failed_with(&mut b_ev, ida, Code::Blocked).await;
    assert!(matches!(
        entry(&a, before.mid).await,
        Some(tim_node::storage::Entry::Message(_))
    ));
    // A's own request stands; B's crossing request, refused, did not make them contacts.
    assert_eq!(state_of(&a, idb).await, ContactState::Requested);

    // The block survives A's restart; lifted, B's next message arrives.
    stop(a, a_ev).await;
    let a_dir = dirs[0].path().to_path_buf();
    let b_addr = addr(&b).await;
    let (a, mut a_ev) = restart(|| config(&a_dir, vec![b_addr.clone()])).await;
    assert_eq!(a.blocks().await.unwrap(), vec![idb]);
    assert!(a.unblock(idb).await.unwrap());
    assert!(!a.unblock(idb).await.unwrap());
    routed(&b, &a).await;
    let sent = b.send(Recipient::Account(ida), b"now?".to_vec(), None).await.unwrap();
    expect_about(
        &mut a_ev,
        "the message after the block is lifted",
        Kind::Message,
        sent.mid,
    )
    .await;
}

/// Three nodes: A and B route to each other, C (whose key, `carol`, the test holds) routes to B.
struct Trio {
    dirs: Vec<tempfile::TempDir>,
    carol: tim_node::protocol::AccountKey,
    a: Node,
    a_ev: Events,
    b: Node,
    b_ev: Events,
    c: Node,
    c_ev: Events,
}

async fn trio(carol_seed: u8) -> Trio {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let carol = with_account(dirs[2].path(), carol_seed);
    let (a, a_ev) = start(dirs[0].path(), vec![]).await;
    let (b, b_ev) = start(dirs[1].path(), vec![addr(&a).await]).await;
    let (c, c_ev) = start(dirs[2].path(), vec![addr(&a).await]).await;
    routed(&a, &b).await;
    routed(&b, &a).await;
    routed(&c, &b).await;
    Trio {
        dirs,
        carol,
        a,
        a_ev,
        b,
        b_ev,
        c,
        c_ev,
    }
}

/// `node`'s record of `account`'s display name.
async fn name_of(node: &Node, account: AccountId) -> Option<String> {
    node.contacts()
        .await
        .unwrap()
        .into_iter()
        .find(|(a, _)| *a == account)
        .and_then(|(_, r)| r.name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_names_reach_contacts_and_never_come_from_strangers() {
    let Trio {
        dirs: _dirs,
        carol,
        a,
        mut a_ev,
        b,
        mut b_ev,
        c,
        mut c_ev,
    } = trio(61).await;
    let (ida, idb) = (a.account(), b.account());

    // A names itself, then asks: B learns the name with the request.
    a.set_profile("Alice".into()).await.unwrap();
    assert_eq!(a.profile().await.unwrap().as_deref(), Some("Alice"));
    a.contact(idb, request("")).await.unwrap();
    expect_event(
        &mut b_ev,
        "A's name",
        |e| matches!(e, Event::Profile { account, name } if *account == ida && name == "Alice"),
    )
    .await;
    assert_eq!(name_of(&b, ida).await.as_deref(), Some("Alice"));
    // B accepts without a name, then sets one: A gets it; a rename replaces it.
    b.contact(ida, ContactAction::Accept).await.unwrap();
    state_event(&mut a_ev, idb, ContactState::Contact).await;
    b.set_profile("Bob".into()).await.unwrap();
    expect_event(
        &mut a_ev,
        "B's name",
        |e| matches!(e, Event::Profile { name, .. } if name == "Bob"),
    )
    .await;
    b.set_profile("Robert".into()).await.unwrap();
    expect_event(
        &mut a_ev,
        "B's new name",
        |e| matches!(e, Event::Profile { name, .. } if name == "Robert"),
    )
    .await;
    assert_eq!(name_of(&a, idb).await.as_deref(), Some("Robert"));
    let long = "x".repeat(65);
    assert_eq!(a.set_profile(long).await.unwrap_err().code(), Code::TooLarge);

    // C, a stranger to B, sends its name anyway: refused, nothing kept.
    let op = ContactOp::sign(
        &carol,
        idb,
        ContactAction::Profile {
            name: "Totally Alice".into(),
        },
        5,
    )
    .unwrap()
    .into_inner();
    c.relay(Recipient::Account(idb), encode(&Envelope::Contact(op)).unwrap())
        .await
        .unwrap();
    failed_with(&mut c_ev, idb, Code::BadParameters).await;
    assert!(b.contacts().await.unwrap().iter().all(|(acct, _)| *acct != c.account()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_contacts_keeps_strangers_out_of_history_until_admitted() {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev) = start(dirs[0].path(), vec![]).await;
    let boot = addr(&a).await;
    let b_config = || {
        let mut c = config(dirs[1].path(), vec![boot.clone()]);
        c.inbound = tim_node::Inbound::Contacts;
        c
    };
    let (b, mut b_ev) = Node::start(b_config()).await.unwrap();
    let (c, _c_ev) = start(dirs[2].path(), vec![boot.clone()]).await;
    routed(&a, &b).await;
    routed(&c, &b).await;
    let (ida, idb) = (a.account(), b.account());
    assert_eq!(b.inbound().await.unwrap(), tim_node::Inbound::Contacts);

    // A, a stranger, writes four times: three are held as requests, the fourth waits in A's
    // outbox (5104), and none is in B's history or inbox.
    let mut sent = Vec::new();
    for i in 0..4 {
        let body = format!("hello {i}").into_bytes();
        sent.push(a.send(Recipient::Account(idb), body, None).await.unwrap().mid);
    }
    for mid in &sent[..3] {
        expect_event(
            &mut b_ev,
            "a held request",
            |e| matches!(e, Event::MessageRequest { mid: m, .. } if m == mid),
        )
        .await;
    }
    let held = b.requests().await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].0, held[0].1.len()), (ida, 3));
    let with_a = tim_node::Conversation::Peer(ida);
    assert!(b.history(&with_a, None, 10).await.unwrap().entries.is_empty());
    assert!(b.inbox(None, 10).await.unwrap().items.is_empty());
    // A revokes one: it leaves the list, and adds no marker to a history.
    a.revoke(sent[0]).await.unwrap();
    expect_about(&mut b_ev, "the revoke", Kind::Revoked, sent[0]).await;
    assert_eq!(b.requests().await.unwrap()[0].1.len(), 2);
    assert!(b.history(&with_a, None, 10).await.unwrap().entries.is_empty());

    // B accepts A: the two held messages join the history, unread, and the fourth arrives too.
    assert_eq!(b.contact(ida, request("")).await.unwrap(), ContactState::Requested);
    assert!(b.requests().await.unwrap().is_empty());
    eventually("all three in B's history", || {
        let b = b.clone();
        let with_a = with_a.clone();
        async move {
            let n = b.history(&with_a, None, 10).await.ok()?.entries.len();
            (n == 3).then_some(())
        }
    })
    .await;
    let inbox = b.inbox(None, 10).await.unwrap();
    assert_eq!(
        inbox.items[0].unread, 3,
        "the two held and the fourth; the revoked one left no marker"
    );

    // C, another stranger, writes once; B rejects: the body is destroyed, on disk too.
    let marker = b"request-marker-93c1a7e0".to_vec();
    let from_c = c.send(Recipient::Account(idb), marker.clone(), None).await.unwrap();
    expect_event(
        &mut b_ev,
        "C's request",
        |e| matches!(e, Event::MessageRequest { mid, .. } if *mid == from_c.mid),
    )
    .await;
    assert_eq!(b.reject_requests(c.account()).await.unwrap(), 1);
    assert!(b.requests().await.unwrap().is_empty());
    assert!(entry(&b, from_c.mid).await.is_none());

    // Back to anyone; the setting outlives a restart whatever the config says.
    b.set_inbound(tim_node::Inbound::Anyone).await.unwrap();
    stop(b, b_ev).await;
    assert!(!holds(dirs[1].path(), &marker), "a rejected request's body is on disk");
    let (b, _b_ev) = restart(b_config).await;
    assert_eq!(b.inbound().await.unwrap(), tim_node::Inbound::Anyone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_contacts_only_and_a_clean_stop_says_offline() {
    let Trio {
        dirs: _dirs,
        carol,
        a,
        mut a_ev,
        b,
        mut b_ev,
        c,
        mut c_ev,
    } = trio(71).await;
    let (ida, idb) = (a.account(), b.account());
    a.contact(idb, request("")).await.unwrap();
    state_event(&mut b_ev, ida, ContactState::Incoming).await;
    b.contact(ida, ContactAction::Accept).await.unwrap();
    state_event(&mut a_ev, idb, ContactState::Contact).await;

    // A goes away with a text: B, a contact, hears it; C, a stranger to A, is never told.
    a.set_presence(tim_node::MyPresence {
        status: Some(tim_node::protocol::Availability::Away),
        text: "lunch".into(),
    })
    .await
    .unwrap();
    expect_event(&mut b_ev, "A away", |e| {
        matches!(e, Event::Presence { account, status: tim_node::protocol::Availability::Away, text, .. } if *account == ida && text == "lunch")
    })
    .await;
    let seen = b.presence_of(&ida).unwrap().unwrap();
    assert_eq!((seen.status.as_str(), seen.text.as_str()), ("away", "lunch"));
    assert!(c.presence_of(&ida).unwrap().is_none());
    assert!(b.presence_of(&c.account()).unwrap().is_none());

    // C, not B's contact, sends B its presence anyway: refused, nothing kept.
    let now = kad::now_ms();
    let notice =
        tim_node::protocol::Presence::sign(&carol, idb, tim_node::protocol::Availability::Online, "hi".into(), now)
            .unwrap();
    c.relay(Recipient::Account(idb), encode(&Envelope::Presence(notice)).unwrap())
        .await
        .unwrap();
    failed_with(&mut c_ev, idb, Code::PermissionDenied).await;
    assert!(b.presence_of(&c.account()).unwrap().is_none());

    // A stops cleanly: B hears "offline" at once.
    stop(a, a_ev).await;
    expect_event(&mut b_ev, "A offline", |e| {
        matches!(e, Event::Presence { account, status: tim_node::protocol::Availability::Offline, .. } if *account == ida)
    })
    .await;
    assert_eq!(b.presence_of(&ida).unwrap().unwrap().status.as_str(), "offline");
}
