//! `tim-node demo`: three nodes (alice, bob, carol) on loopback in a temp dir, each with its local
//! API and web page; with `--script`, a narrated scenario that checks what every node saw.

use std::{future::Future, time::Duration};

use anyhow::{bail, Context};
use tim_node::{
    api,
    protocol::{MessageId, Recipient, RoomId},
    Config, Event, Events, Node,
};

/// How long one step of the script may take.
const STEP: Duration = Duration::from_secs(30);

struct Member {
    name: &'static str,
    node: Node,
    events: Events,
    url: String,
}

async fn start_member(
    root: &std::path::Path,
    name: &'static str,
    bootstrap: Vec<tim_node::Multiaddr>,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Member> {
    let dir = root.join(name);
    let mut config = Config::loopback(&dir);
    config.bootstrap = bootstrap;
    config.retry_max = Duration::from_secs(2);
    let (node, events) = Node::start(config).await?;
    let token = api::load_or_create_token(&dir)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/?token={token}", listener.local_addr()?);
    let mut stop = shutdown.clone();
    tokio::spawn(api::serve(
        node.clone(),
        token,
        api::HostAllowlist::default(),
        listener,
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    ));
    Ok(Member {
        name,
        node,
        events,
        url,
    })
}

/// Runs the demo; `script` runs the narrated scenario instead of waiting for Ctrl-C.
pub(crate) async fn run(script: bool, shutdown_signal: impl Future<Output = ()>) -> anyhow::Result<()> {
    let root = tempfile::Builder::new().prefix("tim-demo-").tempdir()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let alice = start_member(root.path(), "alice", vec![], &stop_rx).await?;
    let boot = alice.node.status().await?.listen_addrs;
    let bob = start_member(root.path(), "bob", boot.clone(), &stop_rx).await?;
    let carol = start_member(root.path(), "carol", boot, &stop_rx).await?;
    let mut members = [alice, bob, carol];
    println!("tim demo: three nodes on loopback, data in {}", root.path().display());
    for m in &members {
        println!("  {:<6} {}  account {}", m.name, m.url, m.node.account());
    }
    let outcome = if script {
        scenario(&mut members).await
    } else {
        println!("open a page above in a browser; Ctrl-C stops the demo and removes its data");
        shutdown_signal.await;
        Ok(())
    };
    let _ = stop_tx.send(true);
    for m in &members {
        let _ = m.node.shutdown().await;
    }
    drop(members);
    outcome
}

async fn within<T>(what: &str, f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(STEP, f)
        .await
        .with_context(|| format!("timed out: {what}"))?
}

/// Waits for an event on `m` matching `pred`.
async fn saw(m: &mut Member, what: &str, pred: impl Fn(&Event) -> bool) -> anyhow::Result<()> {
    let name = m.name;
    within(what, async {
        while let Some(e) = m.events.next().await {
            if pred(&e) {
                println!("      {name:<6} saw {what}");
                return Ok(());
            }
        }
        bail!("{name}'s node stopped")
    })
    .await
}

fn message(mid: MessageId) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Message { mid: m, .. } if *m == mid)
}
fn revoked(mid: MessageId) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Revoked { mid: m, .. } if *m == mid)
}
fn confirmed_by(mid: MessageId, by: tim_node::protocol::AccountId) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::DeletionConfirmed { mid: m, by: b, .. } if *m == mid && *b == by)
}
fn burned(mid: MessageId) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Burned { mid: m, .. } if *m == mid)
}

async fn scenario(members: &mut [Member; 3]) -> anyhow::Result<()> {
    let [alice, bob, carol] = members;
    let mut checks = 0;
    println!("\n1. bob and carol know only alice's address; they find each other through the DHT");
    for (from, to) in [
        (&alice.node, &bob.node),
        (&carol.node, &bob.node),
        (&bob.node, &carol.node),
    ] {
        let target = to.account();
        within("a route", async {
            while from.lookup(target).await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        })
        .await?;
    }
    checks += 1;
    println!("   ok: every node can route to the others");

    println!("\n2. alice messages bob, then revokes it");
    let sent = alice
        .node
        .send(Recipient::Account(bob.node.account()), b"hi bob!".to_vec(), None)
        .await?;
    saw(bob, "alice's message", message(sent.mid)).await?;
    alice.node.revoke(sent.mid).await?;
    saw(bob, "the revoke (the message is gone from his disk)", revoked(sent.mid)).await?;
    saw(
        alice,
        "bob's signed deletion receipt",
        confirmed_by(sent.mid, bob.node.account()),
    )
    .await?;
    checks += 3;

    println!("\n3. carol sends bob a message that burns 1 s after reading; bob reads it");
    let sent = carol
        .node
        .send(
            Recipient::Account(bob.node.account()),
            b"this will self-destruct".to_vec(),
            Some(1),
        )
        .await?;
    saw(bob, "carol's burn-after-reading message", message(sent.mid)).await?;
    let opened = bob.node.mark_read(sent.mid).await?;
    if opened.body != b"this will self-destruct" || opened.burn_at.is_none() {
        bail!("opening carol's message gave {opened:?}");
    }
    println!("      bob    opened it (the timer starts now)");
    saw(bob, "it burn after reading", burned(sent.mid)).await?;
    saw(carol, "it burned on her side too", burned(sent.mid)).await?;
    checks += 3;

    println!("\n4. everyone joins room `lobby`; carol posts, then revokes");
    let lobby = RoomId::new("lobby")?;
    for m in [&alice.node, &bob.node, &carol.node] {
        m.join(lobby.clone()).await?;
    }
    within("room members", async {
        loop {
            let s = alice.node.status().await?;
            if s.rooms.iter().any(|r| r.room == lobby && r.peers >= 2) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await?;
    let sent = carol
        .node
        .send(Recipient::Room(lobby.clone()), b"hello lobby".to_vec(), None)
        .await?;
    saw(alice, "carol's room message", message(sent.mid)).await?;
    saw(bob, "carol's room message", message(sent.mid)).await?;
    carol.node.revoke(sent.mid).await?;
    saw(alice, "the room revoke", revoked(sent.mid)).await?;
    saw(bob, "the room revoke", revoked(sent.mid)).await?;
    // The two receipts may come in either order.
    let waiting = std::sync::Mutex::new(vec![alice.node.account(), bob.node.account()]);
    let both = |e: &Event| match (e, waiting.lock()) {
        (Event::DeletionConfirmed { mid, by, .. }, Ok(mut left)) if *mid == sent.mid => {
            left.retain(|a| a != by);
            left.is_empty()
        }
        _ => false,
    };
    saw(carol, "alice's and bob's deletion receipts", both).await?;
    checks += 5;

    println!("\nall {checks} checks held");
    Ok(())
}
