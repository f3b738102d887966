//! Founded rooms across real nodes: a founder creates a private room, invites, approves a request,
//! promotes, kicks and cancels; members refuse posts from strangers and from a kicked member, each
//! permission case answers its code, a demoted manager's dated-back operations are void, and the
//! membership survives a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use tim_node::{
    protocol::{encode, AccountKey, Code, Recipient, RoomId},
    Event, Events, Node,
};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

async fn start_as(dir: &std::path::Path, seed: u8, bootstrap: Vec<tim_node::Multiaddr>) -> (Node, Events, AccountKey) {
    let key = with_account(dir, seed);
    let mut config = config(dir, bootstrap);
    config.room_sync_interval = Duration::from_secs(1);
    let (node, events) = Node::start(config).await.unwrap();
    (node, events, key)
}

fn code_of<T: std::fmt::Debug>(r: tim_node::Result<T>) -> Code {
    r.expect_err("expected a refusal").code()
}

/// Waits until `node`'s view of `room` satisfies `check`.
async fn room_state(node: &Node, room: &RoomId, what: &str, check: impl Fn(&tim_node::protocol::RoomState) -> bool) {
    eventually(what, || {
        let ok = node.room(room).ok().filter(|s| check(s)).is_some();
        async move { ok.then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_room_admits_only_its_members() {
    init_tracing();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, mut a_ev, _) = start_as(dirs[0].path(), 41, vec![]).await;
    let boot = addr(&a).await;
    let (b, mut b_ev, b_key) = start_as(dirs[1].path(), 42, vec![boot.clone()]).await;
    let (c, mut c_ev, _) = start_as(dirs[2].path(), 43, vec![boot.clone()]).await;
    let stranger = tim_node::protocol::test_util::key(49);

    let state = a.create_room("team".into(), true).await.unwrap();
    let room = state.room.clone();
    assert!(state.private);
    assert_eq!(state.founder, a.account());
    assert_eq!(
        code_of(a.create_room("team".into(), false).await),
        Code::AlreadyExists,
        "one live room per name and founder"
    );
    // Nobody posts in a room it does not know, nor joins it as an open room.
    assert_eq!(
        code_of(b.send(Recipient::Room(room.clone()), b"x".to_vec(), None).await),
        Code::BadParameters
    );

    // Invite: B hears of it, joins, and every member sees it.
    routed(&a, &b).await;
    assert_eq!(code_of(b.invite(room.clone(), c.account()).await), Code::NotFound);
    a.invite(room.clone(), b.account()).await.unwrap();
    let invite = expect_event(&mut b_ev, "the invitation at B", |e| {
        matches!(e, Event::RoomInvite { .. })
    })
    .await;
    assert!(
        matches!(invite, Event::RoomInvite { ref room, by, ref name } if *room == state.room && by == a.account() && name == "team")
    );
    b.join(room.clone()).await.unwrap();
    room_state(&a, &room, "B a member at A", |s| s.is_member(&b.account())).await;
    room_state(&b, &room, "B a member at B", |s| s.is_member(&b.account())).await;
    expect_event(
        &mut a_ev,
        "B joined, at A",
        |e| matches!(e, Event::RoomMember { account, change: "joined", .. } if *account == b.account()),
    )
    .await;

    // Members post and read.
    wait_room_peers(&a, &room, 1).await;
    let hello = a
        .send(Recipient::Room(room.clone()), b"hello team".to_vec(), None)
        .await
        .unwrap();
    expect_about(&mut b_ev, "A's post at B", Kind::Message, hello.mid).await;
    let reply = b
        .send(Recipient::Room(room.clone()), b"hi".to_vec(), None)
        .await
        .unwrap();
    expect_about(&mut a_ev, "B's post at A", Kind::Message, reply.mid).await;

    // A stranger's post, forwarded into the topic by a member node: refused, not kept.
    let (mid, frame) = signed_post(&stranger, &room, b"let me in".to_vec());
    let before = a.metrics().invalid_rejected;
    b.relay(Recipient::Room(room.clone()), frame).await.unwrap();
    refused(&a, before, mid, "a stranger's post refused by A").await;

    // C asks by id; the founder approves; C then posts.
    c.join(room.clone()).await.unwrap();
    expect_event(
        &mut a_ev,
        "C's request at A",
        |e| matches!(e, Event::RoomJoinRequest { account, .. } if *account == c.account()),
    )
    .await;
    assert!(!a.room(&room).unwrap().is_member(&c.account()));
    assert_eq!(
        code_of(b.approve(room.clone(), c.account()).await),
        Code::PermissionDenied
    );
    a.approve(room.clone(), c.account()).await.unwrap();
    room_state(&c, &room, "C a member at C", |s| s.is_member(&c.account())).await;
    room_state(&b, &room, "C a member at B", |s| s.is_member(&c.account())).await;
    let from_c = c
        .send(Recipient::Room(room.clone()), b"thanks".to_vec(), None)
        .await
        .unwrap();
    expect_about(&mut a_ev, "C's post at A", Kind::Message, from_c.mid).await;
    expect_about(&mut b_ev, "C's post at B", Kind::Message, from_c.mid).await;

    // Permissions: only the founder promotes; a manager invites but removes no manager.
    assert_eq!(
        code_of(b.promote(room.clone(), c.account()).await),
        Code::PermissionDenied
    );
    a.promote(room.clone(), c.account()).await.unwrap();
    assert_eq!(code_of(a.promote(room.clone(), c.account()).await), Code::Repeated);
    room_state(&c, &room, "C a manager at C", |s| s.managers.contains(&c.account())).await;
    room_state(&c, &room, "B a member at C (C caught up)", |s| {
        s.is_member(&b.account())
    })
    .await;
    assert_eq!(code_of(c.kick(room.clone(), a.account()).await), Code::PermissionDenied);
    assert_eq!(code_of(b.cancel_room(room.clone()).await), Code::PermissionDenied);
    assert_eq!(code_of(a.leave(room.clone()).await), Code::BadParameters);

    // C (a manager now) kicks B. B's node stops posting; a post signed by B, dated after the
    // kick and forwarded by another node, is refused by the members.
    c.kick(room.clone(), b.account()).await.unwrap();
    room_state(&a, &room, "B removed at A", |s| !s.is_member(&b.account())).await;
    expect_event(
        &mut b_ev,
        "B's own removal at B",
        |e| matches!(e, Event::RoomMember { account, change: "kicked", .. } if *account == b.account()),
    )
    .await;
    assert!(b
        .send(Recipient::Room(room.clone()), b"still here?".to_vec(), None)
        .await
        .is_err());
    let (mid, frame) = signed_post(&b_key, &room, b"after the kick".to_vec());
    let before = a.metrics().invalid_rejected;
    c.relay(Recipient::Room(room.clone()), frame).await.unwrap();
    refused(&a, before, mid, "a kicked member's later post refused by A").await;
    // B's posts from before the kick stand.
    assert!(entry(&a, reply.mid).await.is_some());
    // And B's node leaves the topic; C's next post reaches A, and B keeps nothing of it.
    let (b2, r2) = (b.clone(), room.clone());
    eventually("B off the room's topic", || {
        let (b, room) = (b2.clone(), r2.clone());
        async move { (!b.status().await.unwrap().rooms.iter().any(|r| r.room == room)).then_some(()) }
    })
    .await;
    let after_kick = c
        .send(Recipient::Room(room.clone()), b"B is gone".to_vec(), None)
        .await
        .unwrap();
    expect_about(&mut a_ev, "C's post after the kick at A", Kind::Message, after_kick.mid).await;
    assert!(
        entry(&b, after_kick.mid).await.is_none(),
        "B kept a post of the room it was removed from"
    );

    // The founder cancels: nothing more is posted or done there.
    a.cancel_room(room.clone()).await.unwrap();
    expect_event(&mut c_ev, "the cancel at C", |e| {
        matches!(e, Event::RoomCancelled { .. })
    })
    .await;
    assert_eq!(
        code_of(a.send(Recipient::Room(room.clone()), b"anyone?".to_vec(), None).await),
        Code::RoomCancelled
    );
    assert_eq!(
        code_of(c.send(Recipient::Room(room.clone()), b"anyone?".to_vec(), None).await),
        Code::RoomCancelled
    );
    assert_eq!(code_of(a.invite(room.clone(), b.account()).await), Code::RoomCancelled);

    // The membership survives a restart.
    let before = a.room(&room).unwrap();
    stop(a, a_ev).await;
    let (a, _a_ev, _) = start_as(dirs[0].path(), 41, vec![]).await;
    assert_eq!(a.room(&room).unwrap(), before);
    drop((b, c, dirs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_founded_room_takes_anyone() {
    init_tracing();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, mut a_ev, _) = start_as(dirs[0].path(), 51, vec![]).await;
    let (b, _b_ev, _) = start_as(dirs[1].path(), 52, vec![addr(&a).await]).await;
    let room = a.create_room("lounge".into(), false).await.unwrap().room;
    b.join(room.clone()).await.unwrap();
    room_state(&a, &room, "B a member at A", |s| s.is_member(&b.account())).await;
    room_state(&b, &room, "the room known at B", |s| s.is_member(&b.account())).await;
    wait_room_peers(&b, &room, 1).await;
    let posted = b
        .send(Recipient::Room(room.clone()), b"hi all".to_vec(), None)
        .await
        .unwrap();
    expect_about(&mut a_ev, "B's post at A", Kind::Message, posted.mid).await;
    assert_eq!(
        a.room(&RoomId::new("lobby").unwrap()).unwrap_err().code(),
        Code::NotFound
    );
    // B leaves (its leave goes to the topic and to the founder): A counts it out.
    b.leave(room.clone()).await.unwrap();
    room_state(&a, &room, "B gone at A", |s| !s.is_member(&b.account())).await;
    assert_eq!(
        code_of(b.send(Recipient::Room(room.clone()), b"x".to_vec(), None).await),
        Code::BadParameters
    );
}

/// One sync exchange of a bare peer with `node`: writes `request`, reads the page.
async fn bare_sync(
    control: &mut libp2p_stream::Control,
    node: libp2p::PeerId,
    request: &tim_node::protocol::SyncRequest,
) -> tim_node::protocol::SyncPage {
    use futures::{AsyncReadExt, AsyncWriteExt};
    const SYNC: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/tim/sync/1.0.0");
    let mut stream = tokio::time::timeout(WAIT, control.open_stream(node, SYNC))
        .await
        .unwrap()
        .unwrap();
    stream.write_all(&encode(request).unwrap()).await.unwrap();
    stream.close().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    tim_node::protocol::decode(&answer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_rooms_history_is_served_to_members_and_invitees_only() {
    use futures::StreamExt;
    use tim_node::protocol::{room::MemberProof, SyncRequest};

    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (a, _a_ev, _) = start_as(dir.path(), 61, vec![]).await;
    let room = a.create_room("quiet".into(), true).await.unwrap().room;
    let open_room = a.create_room("loud".into(), false).await.unwrap().room;
    let (invitee, stranger) = (
        tim_node::protocol::test_util::key(63),
        tim_node::protocol::test_util::key(64),
    );
    a.invite(room.clone(), invitee.account_id()).await.unwrap();
    let a_peer = a.peer_id();
    a.send(Recipient::Room(room.clone()), b"for members".to_vec(), None)
        .await
        .unwrap();

    // A bare peer of its own identity, which signs proofs for the peer id it connects with.
    let mut swarm = common::bare::bare_swarm();
    let me = *swarm.local_peer_id();
    let mut control = swarm.behaviour().new_control();
    swarm.dial(addr(&a).await).unwrap();
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let ask = |proof: Option<MemberProof>, room: &RoomId| SyncRequest {
        room: room.clone(),
        after: 0,
        limit: 256,
        member: proof,
    };
    let proof = |key: &AccountKey, peer: &[u8], at: u64| Some(MemberProof::sign(key, &room, peer, at));

    // Nothing without a proof, with a stranger's, with a proof made for another peer or long ago.
    let me_bytes = me.to_bytes();
    for (what, request) in [
        ("no proof", ask(None, &room)),
        ("a stranger's proof", ask(proof(&stranger, &me_bytes, now_ms()), &room)),
        (
            "a proof for another peer",
            ask(proof(&invitee, &a_peer.to_bytes(), now_ms()), &room),
        ),
        (
            "an old proof",
            ask(proof(&invitee, &me_bytes, now_ms() - 600_000), &room),
        ),
    ] {
        let page = bare_sync(&mut control, a_peer, &request).await;
        assert!(page.frames.is_empty(), "{what}: served {} frames", page.frames.len());
    }
    // An invitee gets the history (it is about to join): the create, the invite, the post.
    let page = bare_sync(&mut control, a_peer, &ask(proof(&invitee, &me_bytes, now_ms()), &room)).await;
    assert_eq!(page.frames.len(), 3, "the invitee's page");
    // An open founded room is served to anyone.
    let page = bare_sync(&mut control, a_peer, &ask(None, &open_room)).await;
    assert!(!page.frames.is_empty(), "the open room's log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_in_a_private_room_of_five_is_confirmed_by_three_then_by_all_five() {
    init_tracing();
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev, _) = start_as(dirs[0].path(), 71, vec![]).await;
    let boot = addr(&a).await;
    let mut members = Vec::new();
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        members.push(start_as(dir.path(), 71 + i as u8, vec![boot.clone()]).await);
    }
    let room = a.create_room("five".into(), true).await.unwrap().room;
    for (n, _, _) in &members {
        routed(&a, n).await;
        a.invite(room.clone(), n.account()).await.unwrap();
    }
    for (n, ev, _) in members.iter_mut() {
        expect_event(ev, "the invitation", |e| matches!(e, Event::RoomInvite { .. })).await;
        n.join(room.clone()).await.unwrap();
    }
    room_state(&a, &room, "five members at A", |s| s.members.len() == 6).await;
    wait_room_peers(&a, &room, 1).await;
    let post = a
        .send(Recipient::Room(room.clone()), b"soon gone".to_vec(), None)
        .await
        .unwrap();
    for (_, ev, _) in members.iter_mut() {
        expect_about(ev, "the post at a member", Kind::Message, post.mid).await;
    }
    let mut expected: Vec<_> = members.iter().map(|(n, _, _)| n.account()).collect();
    expected.sort();

    // Two members go offline; A revokes: three confirm, two are pending.
    let away: Vec<_> = members.drain(3..).map(|(n, ev, _)| (n.account(), n, ev)).collect();
    let mut away_accounts: Vec<_> = away.iter().map(|(a, _, _)| *a).collect();
    away_accounts.sort();
    for (_, n, ev) in away {
        stop(n, ev).await;
    }
    a.revoke(post.mid).await.unwrap();
    let (a2, mid) = (a.clone(), post.mid);
    let d = eventually("three receipts at A", || {
        let a = a2.clone();
        async move { a.deletion(mid).await.ok().filter(|d| d.confirmed.len() == 3) }
    })
    .await;
    assert_eq!(
        d.expected,
        Some(expected.clone()),
        "the room's five members when it was sent"
    );
    assert_eq!(d.pending, Some(away_accounts));

    // They return, catch up on the room and confirm: 5 of 5.
    let mut back = Vec::new();
    for (i, dir) in dirs.iter().enumerate().skip(4) {
        back.push(start_as(dir.path(), 71 + i as u8, vec![boot.clone()]).await);
    }
    let a2 = a.clone();
    let d = eventually("five receipts at A", || {
        let a = a2.clone();
        async move { a.deletion(mid).await.ok().filter(|d| d.confirmed.len() == 5) }
    })
    .await;
    assert_eq!(d.expected, Some(expected));
    assert_eq!(d.pending, Some(vec![]));
    drop((members, back));
}

/// `key`'s room operation, as a frame any member node can relay into the topic.
fn op_frame(key: &AccountKey, room: &RoomId, action: tim_node::protocol::RoomAction, at: u64) -> Vec<u8> {
    let op = tim_node::protocol::RoomOp::sign(key, room.clone(), action, at).unwrap();
    encode(&tim_node::protocol::Envelope::Room(op.into_inner())).unwrap()
}

/// A private room founded by A with members B and C, C a manager (accounts `seed`, +1, +2).
struct Crew {
    dirs: Vec<tempfile::TempDir>,
    a: Node,
    b: Node,
    c: Node,
    c_key: AccountKey,
    room: RoomId,
}

async fn crew(seed: u8) -> Crew {
    init_tracing();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, _a_ev, _) = start_as(dirs[0].path(), seed, vec![]).await;
    let boot = addr(&a).await;
    let (b, mut b_ev, _) = start_as(dirs[1].path(), seed + 1, vec![boot.clone()]).await;
    let (c, mut c_ev, c_key) = start_as(dirs[2].path(), seed + 2, vec![boot.clone()]).await;
    let room = a.create_room("crew".into(), true).await.unwrap().room;
    routed(&a, &b).await;
    routed(&a, &c).await;
    for (node, events) in [(&b, &mut b_ev), (&c, &mut c_ev)] {
        a.invite(room.clone(), node.account()).await.unwrap();
        expect_event(events, "the invitation", |e| matches!(e, Event::RoomInvite { .. })).await;
        node.join(room.clone()).await.unwrap();
        room_state(&a, &room, "a member at A", |s| s.is_member(&node.account())).await;
    }
    a.promote(room.clone(), c.account()).await.unwrap();
    room_state(&c, &room, "C a manager at C", |s| s.managers.contains(&c.account())).await;
    Crew {
        dirs,
        a,
        b,
        c,
        c_key,
        room,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demotion_keeps_what_the_manager_did_before_and_voids_what_it_dates_back() {
    let Crew {
        dirs,
        a,
        b,
        c,
        c_key,
        room,
    } = crew(61).await;
    wait_room_peers(&c, &room, 1).await;
    let (d, e) = (
        tim_node::protocol::test_util::key(64),
        tim_node::protocol::test_util::key(65),
    );

    // While a manager, C invites D, and D (a key only) joins through B's node.
    c.invite(room.clone(), d.account_id()).await.unwrap();
    room_state(&b, &room, "D invited at B", |s| s.invited.contains_key(&d.account_id())).await;
    b.relay(
        Recipient::Room(room.clone()),
        op_frame(&d, &room, tim_node::protocol::RoomAction::Join, now_ms()),
    )
    .await
    .unwrap();
    for node in [&a, &b] {
        room_state(node, &room, "D a member", |s| s.is_member(&d.account_id())).await;
    }
    let while_manager = now_ms();
    eventually("the clock past C's time as a manager", || async {
        (now_ms() > while_manager + 2).then_some(())
    })
    .await;

    // The founder demotes C: what C did before stands everywhere.
    a.demote(room.clone(), c.account()).await.unwrap();
    for node in [&a, &b, &c] {
        room_state(node, &room, "C demoted, D still a member", |s| {
            !s.managers.contains(&c.account()) && s.is_member(&d.account_id())
        })
        .await;
    }

    // C signs an invitation of E dated back to when it managed: every member holds it void.
    let before = (a.metrics().ignored, b.metrics().ignored);
    let invite = tim_node::protocol::RoomAction::Invite(e.account_id());
    c.relay(
        Recipient::Room(room.clone()),
        op_frame(&c_key, &room, invite, while_manager),
    )
    .await
    .unwrap();
    eventually("the dated-back invitation judged at A and B", || {
        let (a, b) = (a.clone(), b.clone());
        async move { (a.metrics().ignored > before.0 && b.metrics().ignored > before.1).then_some(()) }
    })
    .await;
    for node in [&a, &b] {
        let state = node.room(&room).unwrap();
        assert!(!state.invited.contains_key(&e.account_id()), "a void invitation took");
    }
    // So E's join is only a request.
    b.relay(
        Recipient::Room(room.clone()),
        op_frame(&e, &room, tim_node::protocol::RoomAction::Join, now_ms()),
    )
    .await
    .unwrap();
    room_state(&a, &room, "E a requester at A", |s| {
        s.requests.contains_key(&e.account_id())
    })
    .await;
    assert!(!a.room(&room).unwrap().is_member(&e.account_id()));
    drop((a, b, c, dirs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_that_leaves_is_pinned_by_the_founder_and_cannot_date_operations_back() {
    let Crew {
        dirs,
        a,
        b,
        c,
        c_key,
        room,
    } = crew(71).await;
    wait_room_peers(&b, &room, 1).await;
    let e = tim_node::protocol::test_util::key(75);
    let while_manager = now_ms();
    eventually("the clock past C's time as a manager", || async {
        (now_ms() > while_manager + 2).then_some(())
    })
    .await;

    // C leaves; the founder's node pins it.
    c.leave(room.clone()).await.unwrap();
    room_state(&a, &room, "C gone at A", |s| !s.is_member(&c.account())).await;
    // C signs an invitation dated back to when it managed; B's node carries it into the topic.
    let before = a.metrics().ignored;
    let invite = tim_node::protocol::RoomAction::Invite(e.account_id());
    b.relay(
        Recipient::Room(room.clone()),
        op_frame(&c_key, &room, invite, while_manager),
    )
    .await
    .unwrap();
    eventually("the dated-back invitation judged at A", || {
        let a = a.clone();
        async move { (a.metrics().ignored > before).then_some(()) }
    })
    .await;
    assert!(
        !a.room(&room).unwrap().invited.contains_key(&e.account_id()),
        "a void invitation took"
    );
    drop((a, b, c, dirs));
}
