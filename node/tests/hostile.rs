//! Hostile peers against a node's network budgets: many free identities holding direct pipes open
//! without ever writing must not keep an honest peer's 1:1 message out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{bare::*, *};
use futures::{FutureExt, StreamExt};
use tim_node::{protocol::Recipient, Event, Node};

/// Fresh identities in the attack, and the silent pipes each opens (the measured attack: 300 × 4,
/// over the node's 1,024 inbound pipes).
const ATTACKERS: usize = 300;
const PIPES_EACH: usize = 4;
/// How long the honest message may take to arrive once the budget is full: the first-frame
/// deadline (5 s) frees the silent pipes, and the sender retries at most every second.
const ARRIVES_WITHIN: Duration = Duration::from_secs(12);

/// Whether the node still holds `stream` open: a stream it dropped reads as ended or reset.
fn held(stream: &mut libp2p::Stream) -> bool {
    let mut byte = [0u8; 1];
    futures::AsyncReadExt::read(stream, &mut byte).now_or_never().is_none()
}

/// A fresh identity connected to `victim`: it dials and waits for the connection (again when
/// refused, as a patient attacker would: the node limits handshakes in progress), then drives its
/// swarm in a task.
async fn attacker(victim: &Node) -> (libp2p_stream::Control, libp2p::PeerId) {
    use libp2p::swarm::SwarmEvent;
    let target = addr(victim).await;
    loop {
        let mut swarm = bare_swarm();
        let control = swarm.behaviour().new_control();
        swarm.dial(target.clone()).unwrap();
        let connected = tokio::time::timeout(WAIT, async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { .. } => return true,
                    SwarmEvent::OutgoingConnectionError { .. } => return false,
                    _ => {}
                }
            }
        })
        .await
        .unwrap_or(false);
        if connected {
            tokio::spawn(async move {
                loop {
                    swarm.select_next_some().await;
                }
            });
            return (control, victim.peer_id());
        }
    }
}

/// Opens `PIPES_EACH` direct pipes from each of `ATTACKERS` fresh identities and never writes on
/// them, re-opening the ones the node dropped (over a limit, or while its acceptor was busy) until
/// the count held stops growing; returns them so they stay open as long as the caller holds them.
async fn silent_pipes(victim: &Node) -> Vec<(libp2p_stream::Control, libp2p::PeerId, Vec<libp2p::Stream>)> {
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let (control, peer) = attacker(victim).await;
        attackers.push((control, peer, Vec::new()));
    }
    let mut best = 0;
    for round in 0..10 {
        attackers = futures::future::join_all(attackers.into_iter().map(
            |(mut control, peer, mut streams)| async move {
                streams.retain_mut(held);
                while streams.len() < PIPES_EACH {
                    match tokio::time::timeout(WAIT, control.open_stream(peer, DIRECT)).await {
                        Ok(Ok(s)) => streams.push(s),
                        _ => break,
                    }
                }
                (control, peer, streams)
            },
        ))
        .await;
        // The attacker's own pace: let the node take or drop what was opened, then count.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n: usize = attackers
            .iter_mut()
            .map(|(_, _, s)| s.iter_mut().map(held).filter(|h| *h).count())
            .sum();
        eprintln!("attack round {round}: {n} silent pipes held by {ATTACKERS} identities");
        if n <= best {
            break;
        }
        best = n;
    }
    assert!(
        best >= 1024,
        "the attack filled only {best} of the node's 1,024 inbound pipes"
    );
    attackers
}

/// Waits (with a deadline) until `node` reports each of `bodies` as arrived; returns how long
/// after the call each one came, in the order of `bodies`.
async fn arrive(events: &mut tim_node::Events, bodies: &[&[u8]], within: Duration) -> Vec<Duration> {
    let start = Instant::now();
    let mut at = vec![None; bodies.len()];
    let got = tokio::time::timeout(within, async {
        while at.iter().any(Option::is_none) {
            match events.next().await {
                Some(Event::Message { body, .. }) => {
                    if let Some(i) = bodies.iter().position(|b| *b == body.as_slice()) {
                        at[i].get_or_insert(start.elapsed());
                    }
                }
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    })
    .await;
    assert!(got.is_ok(), "not every message arrived within {within:?}: {at:?}");
    at.into_iter().flatten().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_pipes_from_many_identities_do_not_block_an_honest_message() {
    init_tracing();
    let (dv, dh, dk) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // The connection manager would close the attackers' idle connections (they are strangers,
    // over `max_connections`) and so their pipes: raised here so that this test measures the
    // pipe budget on its own, as the last line of defence.
    let mut config = config(dv.path(), vec![]);
    config.max_connections = 4096;
    config.target_connections = 4096;
    let (victim, mut victim_events) = Node::start(config).await.unwrap();
    let bootstrap = vec![addr(&victim).await];
    // A stranger: the victim has never talked to it.
    let (stranger, _se) = start(dh.path(), bootstrap.clone()).await;
    // A known peer: the victim delivered to it before the attack.
    let (known, mut known_events) = start(dk.path(), bootstrap).await;
    routed(&stranger, &victim).await;
    routed(&known, &victim).await;
    routed(&victim, &known).await;
    victim
        .send(Recipient::Account(known.account()), b"before".to_vec(), None)
        .await
        .unwrap();
    arrive(&mut known_events, &[b"before"], WAIT).await;

    let attack = silent_pipes(&victim).await;

    known
        .send(
            Recipient::Account(victim.account()),
            b"from a known peer".to_vec(),
            None,
        )
        .await
        .unwrap();
    stranger
        .send(Recipient::Account(victim.account()), b"from a stranger".to_vec(), None)
        .await
        .unwrap();
    let took = arrive(
        &mut victim_events,
        &[b"from a known peer", b"from a stranger"],
        ARRIVES_WITHIN,
    )
    .await;
    eprintln!("arrived after {took:?} (known peer, stranger)");
    drop(attack);
}
