//! Embedding tim: two nodes on loopback, a message from one to the other, then a revoke.
//! Run: `cargo run -p tim-node --example embed`
use std::time::Duration;

use tim_node::{protocol::Recipient, Config, Event, Node};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (alice, _) = Node::start(Config::loopback(dir_a.path())).await?;
    let mut config = Config::loopback(dir_b.path());
    config.bootstrap = alice.status().await?.listen_addrs; // bob knows only alice's address
    let (bob, mut bob_events) = Node::start(config).await?;
    println!("alice {}\nbob   {}", alice.account(), bob.account());

    // Wait until alice can find bob's route record in the DHT.
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while alice.lookup(bob.account()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    found.await?;

    let sent = alice
        .send(Recipient::Account(bob.account()), b"hello bob".to_vec(), None)
        .await?;
    println!("alice sent {}", sent.mid);
    while let Some(event) = bob_events.next().await {
        match event {
            Event::Message { mid, body, .. } => {
                println!("bob got {mid}: {}", String::from_utf8_lossy(&body));
                let ack = alice.revoke(mid).await?;
                println!("alice revoked {} ({:?})", ack.mid, ack.conversation);
            }
            Event::Revoked { mid, by, .. } => {
                println!("bob saw {mid} revoked by {by}");
                break;
            }
            _ => {}
        }
    }
    alice.shutdown().await?;
    bob.shutdown().await?;
    Ok(())
}
