//! The event loop's side of direct delivery: it carries out what the delivery state machine
//! asks (open pipes, queue requests, close pipes, look up routes, write outcomes, report
//! failures) and feeds it what the pipes report; and the periodic presence notices it sends.

use super::{
    event_loop::{EventLoop, TaskReport},
    pipe::{Pipe, PipeEvent},
};
use tim_protocol::Code;

use tracing::debug;

use crate::{core::bump, delivery::Output, Error, Event};

impl EventLoop {
    /// Carries out every pending output of the delivery state machine, in order.
    pub(super) fn carry_out_deliveries(&mut self) {
        while let Some(output) = self.deliveries.poll() {
            match output {
                Output::OpenPipe { peer, generation } => {
                    // This node chose this peer (it serves the route of an account it delivers
                    // to): the peer's own streams are favoured from now on.
                    self.mark_known(peer);
                    let pipe = Pipe::open(
                        self.streams.clone(),
                        self.core.clone(),
                        peer,
                        generation,
                        self.pipe_tx.clone(),
                        self.request_timeout,
                    );
                    // Replacing a pipe drops (and so aborts) the older one.
                    self.pipes.insert(peer, pipe);
                }
                Output::SendOnPipe {
                    peer,
                    generation,
                    id,
                    frame,
                    outcome,
                } => match self.pipes.get(&peer).filter(|p| p.generation == generation) {
                    Some(pipe) => pipe.send(id, frame, outcome),
                    None => {
                        // The state machine opens a pipe before it sends on it, so this is only
                        // a pipe that ended in between: fail its requests like any ended pipe.
                        let now = self.now();
                        self.deliveries.pipe_closed(peer, generation, "pipe gone", now);
                    }
                },
                Output::ClosePipe { peer, generation } => {
                    if self.pipes.get(&peer).is_some_and(|p| p.generation == generation) {
                        self.pipes.remove(&peer);
                    }
                }
                Output::LookUpRoute(account) => self.start_lookup(account),
                Output::WriteOutcomes(batch) => {
                    let (core, reports) = (self.core.clone(), self.reports_tx.clone());
                    tokio::task::spawn_blocking(move || {
                        core.record_outcomes(&batch);
                        let _ = reports.blocking_send(TaskReport::OutcomesWritten);
                    });
                }
                Output::StreamDone { mid, refused } => {
                    if let Some((to, reply)) = self.pending_streams.remove(&mid) {
                        let result = match refused {
                            None => Ok(()),
                            Some(Code::Unreachable) => Err(Error::Unreachable(to)),
                            Some(Code::Blocked) => Err(Error::Blocked(to)),
                            Some(code) => Err(Error::Refused(code)),
                        };
                        let _ = reply.send(result);
                    }
                }
                Output::Failed { mid, to, code } => {
                    bump(&self.core.counters.delivery_failures);
                    self.core.emit(Event::DeliveryFailed { mid, to, code });
                }
            }
        }
    }

    /// Tells every contact the local account is still there (on the blocking pool: it reads the
    /// contacts); the notices come back through the replies channel, one attempt each.
    pub(super) fn send_presence(&self) {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || match core.presence_notices(None) {
            Ok(notices) => {
                for notice in notices {
                    if core.replies_out.try_send(notice).is_err() {
                        break;
                    }
                }
            }
            Err(e) => debug!(error = %e, "presence notices not sent"),
        });
    }

    pub(super) fn on_pipe(&mut self, event: PipeEvent) {
        let now = self.now();
        match event {
            PipeEvent::Answer { id, ack, recorded } => self.deliveries.answer(id, ack, recorded, now),
            PipeEvent::Closed {
                peer,
                generation,
                reason,
            } => {
                if self.pipes.get(&peer).is_some_and(|p| p.generation == generation) {
                    self.pipes.remove(&peer);
                }
                self.deliveries.pipe_closed(peer, generation, &reason, now);
            }
        }
    }
}
