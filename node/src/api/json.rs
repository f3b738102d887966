//! JSON shapes of the API: messages in history, acks, events. A received burn-after-reading
//! message that was not read yet is sealed: history and events leave out its body, which only
//! `POST /v1/messages/{mid}/read` hands out, starting the timer (see [`sealed`]).

use serde_json::{json, Map, Value};
use tim_protocol::{AccountId, Header, Recipient};
use tim_storage::Entry;

use crate::{core::burn_deadline, BodyReader, Conversation, Deletion, Event};

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

/// Whether the API withholds a message's body from the local account `local`: it carries
/// `burn_after_read`, another account sent it, and it has not been read. Showing such a body
/// must start its timer, so the body comes only with the read call; the sender's copy is never
/// sealed.
pub(crate) fn sealed(from: &AccountId, burn_after_read: Option<u32>, read_at: Option<u64>, local: &AccountId) -> bool {
    burn_after_read.is_some() && from != local && read_at.is_none()
}

/// A history entry seen by `reader`'s account: `mid, from, to | room, sent_at, state`, then
/// `body` (opened) and `encrypted` while it exists and is not [`sealed`] (`"sealed": true`
/// instead; `undecryptable: {code, name}` for a sealed body this account cannot open),
/// `read_at` and `burn_at` once read. A
/// marker of `local`'s own revoke or burn carries `confirmed` (`confirmed`: how many replicas sent
/// a receipt) and `expected` (how many must, or null for a room).
pub(crate) fn entry(e: &Entry, reader: &BodyReader, deletion: Option<(usize, Option<usize>)>) -> Value {
    let local = &reader.account();
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
            if sealed(&h.from, h.burn_after_read, s.read_at, local) {
                m.insert("sealed".into(), json!(true));
            } else {
                match reader.open(&s.message) {
                    Ok(body) => {
                        m.insert("body".into(), json!(text(&body.text)));
                        m.insert("encrypted".into(), json!(body.encrypted));
                    }
                    Err(e) => {
                        let code = e.code();
                        m.insert("encrypted".into(), json!(true));
                        m.insert(
                            "undecryptable".into(),
                            json!({"code": code.number(), "name": code.name()}),
                        );
                    }
                }
            }
            if let Some(read_at) = s.read_at {
                m.insert("read_at".into(), json!(read_at));
                if let Some(secs) = h.burn_after_read {
                    m.insert("burn_at".into(), json!(burn_deadline(read_at, secs)));
                }
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
            if t.by() == *local {
                let (confirmed, expected) = deletion.unwrap_or((0, None));
                m.insert("confirmed".into(), json!(confirmed));
                m.insert("expected".into(), json!(expected));
            }
        }
    }
    Value::Object(m)
}

/// `{mid, kind, expected, confirmed: [{account, at}], pending}` of a deletion.
pub(crate) fn deletion(d: &Deletion) -> Value {
    json!({
        "mid": d.mid,
        "kind": d.action.as_str(),
        "expected": d.expected,
        "confirmed": d
            .confirmed
            .iter()
            .map(|c| json!({"account": c.account, "at": c.at}))
            .collect::<Vec<_>>(),
        "pending": d.pending,
    })
}

/// An event frame for the WebSocket as `local` sees it: `{"type": ..., ...}`. A `message` event
/// is emitted when the message is stored, before anyone can have read it, so a received
/// burn-after-reading message is always [`sealed`] here.
pub(crate) fn event(e: &Event, local: &AccountId) -> Value {
    let mut m = Map::new();
    match e {
        Event::Message {
            mid,
            from,
            conversation: conv,
            sent_at,
            body,
            encrypted,
            burn_after_read,
        } => {
            m.insert("type".into(), json!("message"));
            m.insert("mid".into(), json!(mid));
            m.insert("from".into(), json!(from));
            m.extend(conversation(conv));
            m.insert("sent_at".into(), json!(sent_at));
            if sealed(from, *burn_after_read, None, local) {
                m.insert("sealed".into(), json!(true));
            } else {
                m.insert("body".into(), json!(text(body)));
            }
            m.insert("encrypted".into(), json!(encrypted));
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
        Event::Undecryptable {
            mid,
            from,
            conversation: conv,
            code,
        } => {
            m.insert("type".into(), json!("undecryptable"));
            m.insert("mid".into(), json!(mid));
            m.insert("from".into(), json!(from));
            m.extend(conversation(conv));
            m.insert("code".into(), json!(code.number()));
            m.insert("name".into(), json!(code.name()));
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
        Event::DeletionConfirmed { mid, by, at } => {
            m.insert("type".into(), json!("deletion_confirmed"));
            m.insert("mid".into(), json!(mid));
            m.insert("by".into(), json!(by));
            m.insert("at".into(), json!(at));
        }
        Event::ContactRequest { from, note } => {
            m.insert("type".into(), json!("contact_request"));
            m.insert("from".into(), json!(from));
            m.insert("note".into(), json!(note));
        }
        Event::Contact { account, state } => {
            m.insert("type".into(), json!("contact"));
            m.insert("account".into(), json!(account));
            m.insert("state".into(), json!(state.as_str()));
        }
        Event::MessageRequest { mid, from } => {
            m.insert("type".into(), json!("message_request"));
            m.insert("mid".into(), json!(mid));
            m.insert("from".into(), json!(from));
        }
        Event::Presence {
            account,
            status,
            text,
            last_seen,
        } => {
            m.insert("type".into(), json!("presence"));
            m.insert("account".into(), json!(account));
            m.insert("status".into(), json!(status.as_str()));
            m.insert("text".into(), json!(text));
            m.insert("last_seen".into(), json!(last_seen));
        }
        Event::RoomInvite { room, by, name } => {
            m.insert("type".into(), json!("room_invite"));
            m.insert("room".into(), json!(room));
            m.insert("by".into(), json!(by));
            m.insert("name".into(), json!(name));
        }
        Event::RoomJoinRequest { room, account } => {
            m.insert("type".into(), json!("room_join_request"));
            m.insert("room".into(), json!(room));
            m.insert("account".into(), json!(account));
        }
        Event::RoomMember { room, account, change } => {
            m.insert("type".into(), json!("room_member"));
            m.insert("room".into(), json!(room));
            m.insert("account".into(), json!(account));
            m.insert("change".into(), json!(change));
        }
        Event::RoomCancelled { room } => {
            m.insert("type".into(), json!("room_cancelled"));
            m.insert("room".into(), json!(room));
        }
        Event::Profile { account, name } => {
            m.insert("type".into(), json!("profile"));
            m.insert("account".into(), json!(account));
            m.insert("name".into(), json!(name));
        }
        Event::Stream {
            from,
            conversation: conv,
            data,
        } => {
            m.insert("type".into(), json!("stream"));
            m.insert("from".into(), json!(from));
            m.extend(conversation(conv));
            m.insert("data".into(), json!(text(data)));
        }
        Event::PeerConnected { peer } | Event::PeerDisconnected { peer } => {
            m.insert("type".into(), json!("peer"));
            m.insert("peer".into(), json!(peer.to_string()));
            m.insert("connected".into(), json!(matches!(e, Event::PeerConnected { .. })));
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use tim_protocol::{AccountKey, Message};
    use tim_storage::{State, StoredMessage};

    use super::*;

    /// A history entry of a direct message from `from` to `to`, read at `read_at`.
    fn stored(from: &AccountKey, to: AccountId, burn: Option<u32>, read_at: Option<u64>) -> Entry {
        let message = Message::sign(from, Recipient::Account(to), b"secret".to_vec(), 1_000, burn).unwrap();
        Entry::Message(StoredMessage {
            state: State::Received,
            stored_at: 1_000,
            read_at,
            message: message.into_inner(),
        })
    }

    fn entry_of(e: &Entry, local: &AccountKey) -> Value {
        entry(
            e,
            &BodyReader::new(tim_protocol::seal::Keyring::derived(local).unwrap_or_else(|e| panic!("{e}"))),
            None,
        )
    }

    #[test]
    fn an_unread_received_burn_message_is_sealed() {
        let (them, me) = (AccountKey::generate(), AccountKey::generate());
        let me_id = me.account_id();
        let v = entry_of(&stored(&them, me_id, Some(5), None), &me);
        assert_eq!(v["sealed"], true);
        assert!(v.get("body").is_none() && !v.to_string().contains("secret"), "{v}");
        assert_eq!(v["burn_after_read"], 5);
    }

    #[test]
    fn read_own_and_plain_messages_show_their_body() {
        let (them, me) = (AccountKey::generate(), AccountKey::generate());
        let (them_id, me_id) = (them.account_id(), me.account_id());
        // Read: body, read time and deadline.
        let v = entry_of(&stored(&them, me_id, Some(5), Some(2_000)), &me);
        assert_eq!(
            (v["body"].as_str(), v["read_at"].as_u64(), v["burn_at"].as_u64()),
            (Some("secret"), Some(2_000), Some(7_000))
        );
        assert!(v.get("sealed").is_none(), "{v}");
        // The sender's copy, and a message without burn_after_read.
        for v in [
            entry_of(&stored(&me, them_id, Some(5), None), &me),
            entry_of(&stored(&them, me_id, None, None), &me),
        ] {
            assert_eq!(v["body"], "secret", "{v}");
            assert!(v.get("sealed").is_none(), "{v}");
        }
    }

    #[test]
    fn a_received_burn_message_event_is_sealed_and_the_senders_is_not() {
        let (them, me) = (AccountKey::generate().account_id(), AccountKey::generate().account_id());
        let ev = |from: AccountId, to: AccountId| Event::Message {
            mid: tim_protocol::MessageId::from_bytes([7; 32]),
            from,
            conversation: Conversation::Peer(to),
            sent_at: 1,
            body: b"secret".to_vec(),
            encrypted: true,
            burn_after_read: Some(5),
        };
        let v = event(&ev(them, them), &me);
        assert_eq!(v["sealed"], true);
        assert!(!v.to_string().contains("secret"), "{v}");
        let v = event(&ev(me, them), &me);
        assert_eq!(v["body"], "secret");
    }
}
