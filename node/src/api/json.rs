//! JSON shapes of the API: messages in history, acks, events.

use serde_json::{json, Map, Value};
use tim_protocol::{Header, Recipient};
use tim_storage::Entry;

use crate::{Conversation, Event};

/// `{"to": account}` or `{"room": room}`.
pub(crate) fn conversation(c: &Conversation) -> Map<String, Value> {
    let mut m = Map::new();
    match c {
        Conversation::Peer(a) => m.insert("to".into(), json!(a)),
        Conversation::Room(r) => m.insert("room".into(), json!(r)),
    };
    m
}

/// `to` or `room` of a header.
fn recipient(h: &Header, m: &mut Map<String, Value>) {
    match &h.to {
        Recipient::Account(a) => m.insert("to".into(), json!(a)),
        Recipient::Room(r) => m.insert("room".into(), json!(r)),
    };
}

/// A body as text (the API speaks UTF-8; other bytes are replaced).
pub(crate) fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// A history entry: `mid, from, to | room, sent_at, state`, and `body` only while it exists.
pub(crate) fn entry(e: &Entry) -> Value {
    let h = e.header();
    let mut m = Map::new();
    m.insert("mid".into(), json!(e.id()));
    m.insert("from".into(), json!(h.from));
    recipient(h, &mut m);
    m.insert("sent_at".into(), json!(h.sent_at));
    if let Some(secs) = h.burn_after_read {
        m.insert("burn_after_read".into(), json!(secs));
    }
    match e {
        Entry::Message(s) => {
            m.insert("state".into(), json!(s.state.as_str()));
            m.insert("body".into(), json!(text(&s.message.body)));
            if let Some(read_at) = s.read_at {
                m.insert("read_at".into(), json!(read_at));
            }
        }
        Entry::Tombstone(t) => {
            let state = match t.action() {
                tim_protocol::Action::Revoke => "revoked",
                tim_protocol::Action::Burn => "burned",
            };
            m.insert("state".into(), json!(state));
            m.insert("by".into(), json!(t.by()));
            m.insert("at".into(), json!(t.at()));
        }
    }
    Value::Object(m)
}

/// An event frame for the WebSocket: `{"type": ..., ...}`.
pub(crate) fn event(e: &Event) -> Value {
    let mut m = Map::new();
    match e {
        Event::Message {
            mid,
            from,
            conversation: conv,
            sent_at,
            body,
            burn_after_read,
        } => {
            m.insert("type".into(), json!("message"));
            m.insert("mid".into(), json!(mid));
            m.insert("from".into(), json!(from));
            m.extend(conversation(conv));
            m.insert("sent_at".into(), json!(sent_at));
            m.insert("body".into(), json!(text(body)));
            if let Some(s) = burn_after_read {
                m.insert("burn_after_read".into(), json!(s));
            }
        }
        Event::Revoked {
            mid,
            by,
            conversation: conv,
        }
        | Event::Burned {
            mid,
            by,
            conversation: conv,
        } => {
            let kind = if matches!(e, Event::Revoked { .. }) {
                "revoked"
            } else {
                "burned"
            };
            m.insert("type".into(), json!(kind));
            m.insert("mid".into(), json!(mid));
            m.insert("by".into(), json!(by));
            m.extend(conversation(conv));
        }
        Event::Delivered { mid, to } => {
            m.insert("type".into(), json!("delivered"));
            m.insert("mid".into(), json!(mid));
            m.insert("to".into(), json!(to));
        }
        Event::DeliveryFailed { mid, to, code } => {
            m.insert("type".into(), json!("delivery_failed"));
            m.insert("mid".into(), json!(mid));
            m.insert("to".into(), json!(to));
            m.insert("code".into(), json!(code.number()));
            m.insert("name".into(), json!(code.name()));
        }
        Event::PeerConnected { peer } | Event::PeerDisconnected { peer } => {
            m.insert("type".into(), json!("peer"));
            m.insert("peer".into(), json!(peer.to_string()));
            m.insert("connected".into(), json!(matches!(e, Event::PeerConnected { .. })));
        }
    }
    Value::Object(m)
}
