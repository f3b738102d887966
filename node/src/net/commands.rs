//! The loop's answer to each command from a handle and each report from its tasks, and the
//! burn-after-reading deadlines it fires.

use tim_protocol::Action;
use tokio::time::Instant;
use tracing::debug;

use super::{
    event_loop::{instant_of, EventLoop, TaskReport},
    rooms::{self, topic},
};
use crate::{command::Command, Error};

/// Most stream frames waiting for their one attempt's outcome; more are refused (`5104`).
pub(super) const MAX_PENDING_STREAMS: usize = 256;

impl EventLoop {
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::Deliver(delivery) => {
                let now = self.now();
                self.deliveries.deliver(delivery, now);
            }
            Command::Publish { room, mid, frame } => self.publish(&room, mid, frame),
            Command::Join { room, reply } => {
                let result = rooms::join(&mut self.swarm.behaviour_mut().gossipsub, &room);
                let joined = result.is_ok();
                let _ = reply.send(result.map(|_| ()).map_err(|e| Error::Network(e.to_string())));
                self.sync_room(&room);
                if joined {
                    self.discovery.join(room, Instant::now().into_std());
                }
            }
            Command::Leave { room, reply } => {
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&topic(&room));
                self.discovery.leave(&room);
                let _ = reply.send(Ok(()));
            }
            Command::Lookup { account, reply } => {
                if account == self.core.account {
                    let _ = reply.send(Ok(self.core.peer_id));
                } else if let Some(route) = self.deliveries.route(&account, self.now()) {
                    let _ = reply.send(Ok(route));
                } else {
                    self.lookup_waiters.entry(account).or_default().push(reply);
                    self.start_lookup(account);
                }
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::ScheduleBurn { mid, deadline } => {
                self.burns.insert((instant_of(deadline), mid), ());
            }
            Command::Block { peer, blocked } => {
                let list = &mut self.swarm.behaviour_mut().blocked;
                if blocked {
                    list.block_peer(peer);
                } else {
                    list.unblock_peer(peer);
                }
            }
            Command::Cancel { mid } => self.deliveries.cancel(mid),
            Command::CancelAccount { account } => self.deliveries.cancel_account(&account),
            Command::Stream { delivery, reply } => {
                if self.pending_streams.len() >= MAX_PENDING_STREAMS || self.pending_streams.contains_key(&delivery.mid)
                {
                    let _ = reply.send(Err(Error::Overloaded("streams in flight")));
                } else {
                    self.pending_streams.insert(delivery.mid, (delivery.to, reply));
                    let now = self.now();
                    self.deliveries.deliver(delivery, now);
                }
            }
            Command::Shutdown { .. } => {}
        }
    }

    pub(super) fn on_report(&mut self, report: TaskReport) {
        match report {
            TaskReport::Gossip { id, source, acceptance } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id, &source, acceptance);
            }
            TaskReport::Burned { mid, result } => match result {
                Ok(Some(command)) => self.on_command(command),
                Ok(None) => {}
                Err(e) => debug!(%mid, error = %e, "burn after reading did not apply"),
            },
            TaskReport::OutcomesWritten => self.deliveries.outcomes_written(),
            TaskReport::SyncCursor { room, peer, after } => self.on_sync_cursor(room, peer, after),
            TaskReport::SyncFailed { room, peer, reason } => {
                debug!(%room, %peer, %reason, "sync request failed");
                self.syncing.remove(&(room, peer));
            }
            TaskReport::SyncApplied { room, peer, next } => self.on_sync_applied(room, peer, next),
            TaskReport::SealKeyRotated => self.publish_route(),
        }
    }

    pub(super) fn fire_burns(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.burns.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, mid), ()) = entry.remove_entry();
            let (core, reports) = (self.core.clone(), self.reports_tx.clone());
            tokio::task::spawn_blocking(move || {
                let result = core
                    .revoke_or_burn(Action::Burn, mid)
                    .map(|(_, destination, frame)| Command::send_control(mid, destination, frame));
                let _ = reports.blocking_send(TaskReport::Burned { mid, result });
            });
        }
    }
}
