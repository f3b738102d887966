//! Scoring with tim's own gossipsub behaviour on loopback: a peer whose room messages the
//! application rejects ends with a negative score, then below the graylist threshold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    gossipsub::{self, MessageAcceptance},
    noise,
    swarm::SwarmEvent,
    tcp, yamux, Multiaddr, Swarm,
};
use tim_protocol::RoomId;

use super::*;
use crate::net::rooms;

fn swarm(behaviour: gossipsub::Behaviour) -> Swarm<gossipsub::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

#[test]
fn the_room_topic_params_and_thresholds_are_valid() {
    assert!(params().validate().is_ok());
    assert!(thresholds().validate().is_ok());
    assert!(room_topic_params().validate().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_room_messages_lower_the_senders_score_to_the_graylist() {
    let room = RoomId::new("scored").unwrap();
    let mut node = swarm(gossipsub().unwrap());
    rooms::join(node.behaviour_mut(), &room).unwrap();
    // The sender: tim's gossipsub settings, no validation or scoring of its own.
    let mut mallory = swarm(
        gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Anonymous,
            gossipsub_config_builder().build().unwrap(),
        )
        .unwrap(),
    );
    mallory.behaviour_mut().subscribe(&rooms::topic(&room)).unwrap();
    node.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr: Multiaddr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = node.select_next_some().await {
            break address;
        }
    };
    mallory.dial(addr).unwrap();
    let mallory_id = *mallory.local_peer_id();

    let (mut sent, mut rejected) = (0u32, 0u32);
    let mut publish = tokio::time::interval(Duration::from_millis(100));
    let scored = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            tokio::select! {
                event = node.select_next_some() => {
                    if let SwarmEvent::Behaviour(gossipsub::Event::Message { propagation_source, message_id, .. }) = event {
                        // What the node's event loop answers for an invalid item (`rooms::check_gossip`).
                        node.behaviour_mut().report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Reject,
                        );
                        rejected += 1;
                    }
                }
                _ = mallory.select_next_some() => {}
                _ = publish.tick() => {
                    let junk = format!("not a signed message {sent}").into_bytes();
                    if mallory.behaviour_mut().publish(rooms::topic(&room), junk).is_ok() {
                        sent += 1;
                    }
                }
            }
            let score = node.behaviour().peer_score(&mallory_id);
            if rejected >= 3 && score.is_some_and(|s| s < GRAYLIST_THRESHOLD) {
                return score;
            }
        }
    })
    .await
    .expect("the sender's score fell below the graylist threshold in time");
    let score = scored.unwrap();
    assert!(
        score < GRAYLIST_THRESHOLD,
        "a negative score, below the graylist: {score}"
    );
}
