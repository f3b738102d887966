//! Helpers shared by the multi-node tests: start nodes on loopback, wait for events and
//! conditions with timeouts.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod bare;
pub mod kad;

use std::{future::Future, path::Path, time::Duration};

use tim_node::{
    protocol::{AccountId, AccountKey, Action, Code, MessageId, RoomId},
    storage::Entry,
    Config, Event, Events, Multiaddr, Node,
};

pub const WAIT: Duration = Duration::from_secs(30);

/// A room post signed by `key` with this (sealed or plain) body, dated now, encoded for the topic.
pub fn signed_post(key: &AccountKey, room: &RoomId, body: Vec<u8>) -> (MessageId, Vec<u8>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let m = tim_node::protocol::Message::sign(key, tim_node::protocol::Recipient::Room(room.clone()), body, now, None)
        .unwrap()
        .into_inner();
    (
        m.id(),
        tim_node::protocol::encode(&tim_node::protocol::Envelope::Message(m)).unwrap(),
    )
}

/// Waits until `node` refused one more invalid item than `before`, then checks it kept nothing
/// of `mid`.
pub async fn refused(node: &Node, before: u64, mid: MessageId, what: &str) {
    let n = node.clone();
    eventually(what, || {
        let done = n.metrics().invalid_rejected > before;
        async move { done.then_some(()) }
    })
    .await;
    assert!(entry(node, mid).await.is_none(), "{what}: the post was stored");
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Writes a known account key into a data dir, so the test can sign as that account.
pub fn with_account(dir: &Path, seed: u8) -> AccountKey {
    std::fs::create_dir_all(dir).unwrap();
    let key = tim_node::protocol::test_util::key(seed);
    std::fs::write(dir.join("account.key"), hex(&key.secret_bytes())).unwrap();
    key
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A loopback config with fast retries and room sync, for tests.
pub fn config(dir: &Path, bootstrap: Vec<Multiaddr>) -> Config {
    let mut config = Config::loopback(dir);
    config.bootstrap = bootstrap;
    config.retry_max = Duration::from_secs(1);
    config.room_sync_interval = Duration::from_secs(1);
    config
}

pub async fn start(dir: &Path, bootstrap: Vec<Multiaddr>) -> (Node, Events) {
    Node::start(config(dir, bootstrap)).await.unwrap()
}

/// Waits until `from` can route to `to` through the DHT.
pub async fn routed(from: &Node, to: &Node) {
    let target = to.account();
    eventually(
        "a route through the DHT",
        || async move { from.lookup(target).await.ok() },
    )
    .await;
}

/// Stops a node and waits until its data dir can be opened again.
pub async fn stop(node: Node, events: Events) {
    node.shutdown().await.unwrap();
    drop(node);
    drop(events);
}

/// Starts a node again from its data dir (waiting for the previous instance to release it).
pub async fn restart(config_for: impl Fn() -> Config) -> (Node, Events) {
    eventually("the node restarts", || {
        let config = config_for();
        async move { Node::start(config).await.ok() }
    })
    .await
}

pub async fn addr(node: &Node) -> Multiaddr {
    node.status().await.unwrap().listen_addrs[0].clone()
}

/// Waits for the first event matching `pred`, skipping others.
pub async fn expect_event(events: &mut Events, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.next().await {
                Some(e) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("event stream ended while waiting for {what}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls `check` until it returns `Some`, or fails after the timeout.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub async fn entry(node: &Node, mid: MessageId) -> Option<Entry> {
    node.entry(mid).await.unwrap()
}

pub fn is_tombstone(e: &Option<Entry>, action: Action) -> bool {
    matches!(e, Some(Entry::Tombstone(t)) if t.action() == action)
}

/// Waits until `node` sees at least `n` connected peers subscribed to `room`.
pub async fn wait_room_peers(node: &Node, room: &RoomId, n: usize) {
    let (node, room) = (node.clone(), room.clone());
    eventually("room peers", || {
        let (node, room) = (node.clone(), room.clone());
        async move {
            let s = node.status().await.ok()?;
            s.rooms.iter().any(|r| r.room == room && r.peers >= n).then_some(())
        }
    })
    .await;
}

/// The kind of event `expect_about` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Message,
    Revoked,
    Burned,
    Delivered,
}

/// The message an event of `kind` is about, if `e` is one.
fn about(kind: Kind, e: &Event) -> Option<MessageId> {
    match (kind, e) {
        (Kind::Message, Event::Message { mid, .. })
        | (Kind::Revoked, Event::Revoked { mid, .. })
        | (Kind::Burned, Event::Burned { mid, .. })
        | (Kind::Delivered, Event::Delivered { mid, .. }) => Some(*mid),
        _ => None,
    }
}

/// Waits for the first event of `kind` about message `mid`, skipping others.
pub async fn expect_about(events: &mut Events, what: &str, kind: Kind, mid: MessageId) -> Event {
    expect_event(events, what, |e| about(kind, e) == Some(mid)).await
}

/// Waits for an event of `kind` about each of `mids`, in any order (messages sent together may
/// be stored in either order), skipping others.
pub async fn expect_each_about(events: &mut Events, what: &str, kind: Kind, mids: &[MessageId]) {
    let mut left: std::collections::HashSet<MessageId> = mids.iter().copied().collect();
    while !left.is_empty() {
        let e = expect_event(events, what, |e| about(kind, e).is_some_and(|m| left.contains(&m))).await;
        if let Some(m) = about(kind, &e) {
            left.remove(&m);
        }
    }
}

/// Waits for a `delivery_failed` event for `to` with `code`.
pub async fn failed_with(events: &mut Events, to: AccountId, code: Code) {
    expect_event(
        events,
        &format!("delivery_failed {}", code.number()),
        |e| matches!(e, Event::DeliveryFailed { to: t, code: c, .. } if *t == to && *c == code),
    )
    .await;
}

/// Whether any file under `dir` holds `needle`.
pub fn holds(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            holds(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        }
    })
}
