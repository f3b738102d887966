//! Rooms on gossipsub: a room's topic, publishing to it, and checking every gossip item in the
//! application before gossipsub forwards it (`Accept`, `Ignore` or `Reject`).

use libp2p::{
    gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash},
    PeerId,
};
use tim_protocol::{MessageId, RoomId, Via};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{
    event_loop::{EventLoop, TaskReport},
    scoring,
};
use crate::core::{Core, RoomWork, Verdict};

/// How long a seal-key announcement that found no mesh peer is retried.
const ANNOUNCE_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The gossipsub topic of a room.
pub(super) fn topic(room: &RoomId) -> IdentTopic {
    IdentTopic::new(format!("tim/room/{room}"))
}

/// Subscribes to a room's topic and scores its peers there (so a `Reject` in the room counts
/// against the peer that sent it). Returns whether the node was not subscribed yet.
pub(super) fn join(gossipsub: &mut gossipsub::Behaviour, room: &RoomId) -> Result<bool, gossipsub::SubscriptionError> {
    let topic = topic(room);
    if let Err(e) = gossipsub.set_topic_params(topic.clone(), scoring::room_topic_params()) {
        warn!(%room, error = e, "room joined without peer scoring");
    }
    gossipsub.subscribe(&topic)
}

/// The room of a topic, if it is a tim room topic.
pub(super) fn room_of(topic: &TopicHash) -> Option<RoomId> {
    topic
        .as_str()
        .strip_prefix("tim/room/")
        .and_then(|r| RoomId::new(r).ok())
}

/// Checks and stores a gossip item. gossipsub hears `Accept` as soon as the item passed every
/// check that needs no write (so it is forwarded while this node stores it); returns the report
/// still to send, if any (the verdict, or the `Accept` if the loop's queue was full then).
fn check_gossip(
    core: &Core,
    data: &[u8],
    room: &RoomId,
    id: &gossipsub::MessageId,
    source: PeerId,
    reports: &mpsc::Sender<TaskReport>,
) -> Option<TaskReport> {
    let report = |acceptance| TaskReport::Gossip {
        id: id.clone(),
        source,
        acceptance,
    };
    let mut reported = false;
    let verdict = core.inbound_reporting_valid(data, &Via::Room(room.clone()), || {
        reported = reports.try_send(report(MessageAcceptance::Accept)).is_ok();
    });
    if reported {
        return None;
    }
    Some(report(match verdict {
        Verdict::Stored => MessageAcceptance::Accept,
        Verdict::Duplicate | Verdict::Ignored(_) => MessageAcceptance::Ignore,
        Verdict::Invalid(_) => MessageAcceptance::Reject,
    }))
}

impl EventLoop {
    /// Room work that inbound work asked for.
    pub(super) fn on_room_work(&mut self, work: RoomWork) {
        match work {
            RoomWork::Sync(room) => self.sync_room(&room),
            RoomWork::Publish(room, mid, frame) => self.publish(&room, mid, frame),
            RoomWork::Unsubscribe(room) => {
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic(&room));
                self.discovery.leave(&room);
            }
        }
    }

    /// Publishes a seal-key announcement; one that finds no mesh peer (a member that just
    /// joined has none yet) is retried on the net tick for a minute.
    fn announce(&mut self, room: RoomId, frame: Vec<u8>) {
        self.unannounced.remove(&room);
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic(&room), frame.clone())
        {
            Ok(_) | Err(gossipsub::PublishError::Duplicate) => debug!(%room, "seal key announced"),
            Err(e) => {
                debug!(%room, error = %e, "seal key not announced yet; retrying");
                let until = std::time::Instant::now() + ANNOUNCE_RETRY_FOR;
                self.unannounced.insert(room, (frame, until));
            }
        }
    }

    /// Publishes the seal-key announcements the core asks for, then retries those no mesh peer
    /// took yet, and drops those past their minute (members then learn the key from posts).
    pub(super) fn announce_seal_keys(&mut self) {
        for (room, frame) in self.core.due_announcements() {
            self.announce(room, frame);
        }
        let now = std::time::Instant::now();
        let due: Vec<(RoomId, Vec<u8>)> = self
            .unannounced
            .iter()
            .filter(|(_, (_, until))| *until > now)
            .map(|(room, (frame, _))| (room.clone(), frame.clone()))
            .collect();
        self.unannounced.retain(|_, (_, until)| *until > now);
        for (room, frame) in due {
            if self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(topic(&room), frame)
                .is_ok()
            {
                self.unannounced.remove(&room);
            }
        }
    }

    pub(super) fn publish(&mut self, room: &RoomId, mid: MessageId, frame: Vec<u8>) {
        match self.swarm.behaviour_mut().gossipsub.publish(topic(room), frame) {
            Ok(_) => debug!(%room, %mid, "published"),
            Err(gossipsub::PublishError::Duplicate) => debug!(%room, %mid, "already published"),
            Err(e) => debug!(%room, %mid, error = %e, "not published now; members catch up by sync"),
        }
    }

    pub(super) fn on_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => self.on_gossip(message_id, propagation_source, message),
            gossipsub::Event::Subscribed { peer_id, topic } => {
                // A member connected or joined: catch up with it.
                let joined = self.swarm.behaviour().gossipsub.topics().any(|t| *t == topic);
                if let (true, Some(room)) = (joined, room_of(&topic)) {
                    self.start_sync(room, peer_id);
                }
            }
            _ => {}
        }
    }

    fn on_gossip(&mut self, id: gossipsub::MessageId, source: PeerId, message: gossipsub::Message) {
        // A peer that forwards room traffic is worth more than an idle one (`connections`).
        self.connections.active(&source, tokio::time::Instant::now().into_std());
        let room = room_of(&message.topic);
        let permit = self.inflight.clone().try_acquire_owned().ok();
        let (Some(room), Some(permit)) = (room.clone(), permit) else {
            let acceptance = if room.is_none() {
                MessageAcceptance::Reject
            } else {
                MessageAcceptance::Ignore
            };
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &source, acceptance);
            return;
        };
        // Checked in a task of its own: in place when the node's inline slot is free (no thread
        // hand-off on the way to the verdict), else on the blocking pool.
        let (core, reports) = (self.core.clone(), self.reports_tx.clone());
        tokio::spawn(async move {
            let data = message.data;
            let report = match core
                .inline
                .try_run(|| check_gossip(&core, &data, &room, &id, source, &reports))
            {
                Some(report) => report,
                None => {
                    let reports = reports.clone();
                    let job = move || check_gossip(&core, &data, &room, &id, source, &reports);
                    match tokio::task::spawn_blocking(job).await {
                        Ok(report) => report,
                        Err(e) => {
                            warn!(error = %e, "gossip check failed");
                            None
                        }
                    }
                }
            };
            if let Some(report) = report {
                let _ = reports.send(report).await;
            }
            drop(permit);
        });
    }
}
