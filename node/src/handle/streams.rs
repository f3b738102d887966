//! The handle's stream call: live data, delivered to whoever is online now and never stored.

use std::time::Duration;

use tim_protocol::{encode, Envelope, Recipient};

use super::Node;
use crate::{
    command::Command,
    core::now_ms,
    delivery::{Delivery, DeliveryKind},
    Error, Result,
};

/// How long [`Node::stream`] waits for a direct frame's one attempt (route lookup, dial,
/// answer) before calling the account unreachable.
const STREAM_WAIT: Duration = Duration::from_secs(15);

impl Node {
    /// Sends live data (a typing indicator, a live value; at most 4 KiB) to an account or a room
    /// the local account joined. Nothing is stored or queued, on either side. For an account,
    /// returns once its node took the frame; `5105 unreachable` when it is not online now,
    /// `4110` when it blocked the local account (or the local account blocked it). For a room,
    /// returns once the frame is published to the members connected now.
    pub async fn stream(&self, to: Recipient, data: Vec<u8>) -> Result<()> {
        let core = self.core()?;
        let stream = core.sign_stream(to.clone(), data)?;
        drop(core);
        let mid = stream.id();
        let frame = encode(&Envelope::Stream(stream))?;
        match to {
            Recipient::Room(room) => Ok(self.cmd_tx.send(Command::Publish { room, mid, frame }).await?),
            Recipient::Account(account) => {
                let delivery = Delivery::new(account, mid, frame, DeliveryKind::Stream, now_ms());
                let (reply, rx) = tokio::sync::oneshot::channel();
                self.cmd_tx.send(Command::Stream { delivery, reply }).await?;
                match tokio::time::timeout(STREAM_WAIT, rx).await {
                    Ok(outcome) => outcome?,
                    Err(_) => Err(Error::Unreachable(account)),
                }
            }
        }
    }
}
