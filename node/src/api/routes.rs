//! The API's routes and its bearer-token layer; the host check and the security headers
//! (`guard`) wrap every route.

use std::{collections::HashMap, str::FromStr, sync::Arc};

use axum::body::Bytes;
use axum::{
    extract::{
        rejection::{BytesRejection, QueryRejection},
        ws::{Message as WsMessage, WebSocket, WebSocketUpgrade},
        DefaultBodyLimit, Path, Query, Request, State,
    },
    http::{
        header::{AUTHORIZATION, CONTENT_TYPE},
        StatusCode,
    },
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tim_protocol::{AccountId, Code, MessageId, Recipient, RoomId, MAX_BODY_LEN};
use tim_storage::Entry;
use tracing::debug;

use super::{
    error::ApiError,
    guard::{self, HostAllowlist},
    inbox, json, people, rooms, streams,
};
use crate::{Conversation, Node};

/// Largest request body: a 64 KiB message body as JSON, with room for escaping.
const MAX_REQUEST_BYTES: usize = 6 * MAX_BODY_LEN + 4096;
/// Default and largest history page.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

#[derive(Clone)]
pub(super) struct AppState {
    pub(super) node: Node,
    /// SHA-256 of the token: comparing digests leaks nothing about the token through timing.
    token_digest: [u8; 32],
}

/// The API router for `node`, guarded by `token`; it answers only requests whose `Host` is in
/// `hosts` (see [`HostAllowlist`]).
pub fn router(node: Node, token: String, hosts: HostAllowlist) -> Router {
    let state = AppState {
        node,
        token_digest: Sha256::digest(token.as_bytes()).into(),
    };
    let api = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/messages", post(send))
        .route("/v1/messages/{mid}/revoke", post(revoke))
        .route("/v1/messages/{mid}/burn", post(burn))
        .route("/v1/messages/{mid}/read", post(read))
        .route("/v1/messages/{mid}/deletion", get(deletion))
        .route("/v1/conversations/{account}/messages", get(direct_history))
        .route("/v1/rooms/{room}/messages", get(room_history))
        .route("/v1/rooms/{room}/join", post(join))
        .route("/v1/rooms/{room}/leave", post(leave))
        .route("/v1/events", get(events))
        .merge(people::routes())
        .merge(rooms::routes())
        .merge(inbox::routes())
        .merge(streams::routes())
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/", get(page))
        .route("/page.js", get(page_script))
        .route("/page.css", get(page_style))
        .route(
            "/metrics",
            get(metrics).route_layer(middleware::from_fn_with_state(state.clone(), auth)),
        )
        .merge(api)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        // Before auth and every handler, so a refused host learns nothing, not even a 401.
        .layer(middleware::from_fn_with_state(Arc::new(hosts), guard::check_host))
        // Outermost: refusals and errors get the headers too.
        .layer(middleware::map_response(guard::security_headers))
        .with_state(state)
}

/// The web page: HTML, script and style compiled into the binary (the script and style are
/// files because the CSP allows nothing inline). Served without a token; every API call it makes
/// carries one.
async fn page() -> Html<&'static str> {
    Html(include_str!("page/index.html"))
}

async fn page_script() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("page/page.js"),
    )
}

async fn page_style() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("page/page.css"),
    )
}

/// Counters in Prometheus text format.
async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let status = st.node.status().await?;
    let m = st.node.metrics();
    let disk = st.node.disk_bytes().await?;
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, value: u64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    };
    put("tim_peers", "gauge", "Connected peers.", status.peers as u64);
    put("tim_rooms", "gauge", "Joined rooms.", status.rooms.len() as u64);
    put(
        "tim_messages_in_total",
        "counter",
        "Messages received and stored.",
        m.messages_in,
    );
    put(
        "tim_messages_out_total",
        "counter",
        "Messages sent by this account.",
        m.messages_out,
    );
    put(
        "tim_revokes_applied_total",
        "counter",
        "Revokes applied.",
        m.revokes_applied,
    );
    put("tim_burns_applied_total", "counter", "Burns applied.", m.burns_applied);
    put(
        "tim_forged_rejected_total",
        "counter",
        "Forged control messages and route records refused.",
        m.forged_rejected,
    );
    put(
        "tim_invalid_rejected_total",
        "counter",
        "Other invalid inbound items refused.",
        m.invalid_rejected,
    );
    put(
        "tim_ignored_total",
        "counter",
        "Valid inbound items not taken (tombstoned, too old, blocked, not for this node now).",
        m.ignored,
    );
    put(
        "tim_delivery_failures_total",
        "counter",
        "Deliveries given up.",
        m.delivery_failures,
    );
    put(
        "tim_sync_pages_applied_total",
        "counter",
        "Room sync pages applied.",
        m.sync_pages_applied,
    );
    put(
        "tim_relay_reservations_served_total",
        "counter",
        "Relay reservations granted to other nodes.",
        m.relay_reservations_served,
    );
    put(
        "tim_relay_circuits_served_total",
        "counter",
        "Circuits relayed for other nodes.",
        m.relay_circuits_served,
    );
    put(
        "tim_holes_punched_total",
        "counter",
        "Relayed connections upgraded to direct ones.",
        m.holes_punched,
    );
    put(
        "tim_receipts_sent_total",
        "counter",
        "Deletion receipts queued for the accounts whose revokes and burns this node applied.",
        m.receipts_sent,
    );
    put(
        "tim_receipts_confirmed_total",
        "counter",
        "Deletion receipts kept for this account's revokes and burns.",
        m.receipts_confirmed,
    );
    put(
        "tim_receipts_refused_total",
        "counter",
        "Deletion receipts refused (forged, misdirected or over a bound).",
        m.receipts_refused,
    );
    put(
        "tim_outbox_depth",
        "gauge",
        "Undelivered outbox entries.",
        m.outbox_depth,
    );
    put(
        "tim_storage_bytes",
        "gauge",
        "Bytes used by the database directory.",
        disk,
    );
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(Code::NotFound, "no such endpoint")
}

/// Every request needs `Authorization: Bearer <token>`; the WebSocket also takes `?token=`
/// (browsers cannot set headers there).
async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let query = (req.uri().path() == "/v1/events")
        .then(|| req.uri().query())
        .flatten()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")))
        .map(str::to_owned);
    let presented = header.or(query);
    let ok = presented.is_some_and(|t| <[u8; 32]>::from(Sha256::digest(t.trim().as_bytes())) == st.token_digest);
    if !ok {
        return ApiError::new(
            Code::Unauthorized,
            "missing or wrong API token (Authorization: Bearer <token>)",
        )
        .into_response();
    }
    next.run(req).await
}

fn parse_mid(raw: &str) -> Result<MessageId, ApiError> {
    MessageId::from_str(raw).map_err(|e| ApiError::new(Code::Malformed, e.to_string()).about("mid", raw))
}

pub(super) fn parse_account(raw: &str) -> Result<AccountId, ApiError> {
    AccountId::from_str(raw).map_err(|e| ApiError::new(Code::UnknownAccount, e.to_string()).about("to", raw))
}

pub(super) fn parse_room(raw: &str) -> Result<RoomId, ApiError> {
    RoomId::from_str(raw).map_err(|e| ApiError::new(Code::BadParameters, e.to_string()).about("room", raw))
}

/// A JSON request body, whatever its `Content-Type` says: `curl -d` sends
/// `application/x-www-form-urlencoded`. The content type keeps no one out here: the bearer token
/// does (a page of another site cannot add an `Authorization` header without a CORS preflight,
/// which this API never grants, and the origin check refuses it besides).
pub(super) fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Code::TooLarge
        } else {
            Code::Malformed
        };
        ApiError::new(code, rejection.body_text())
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::new(Code::Malformed, format!("malformed JSON body: {e}")))
}

async fn status(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let s = st.node.status().await?;
    Ok(Json(json!({
        "account": s.account,
        "peer_id": s.peer_id.to_string(),
        "listen_addrs": s.listen_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "peers": s.peers,
        "rooms": s.rooms.iter().map(|r| {
            let mut m = json!({"room": r.room, "peers": r.peers});
            if let Some(name) = &r.name {
                m["name"] = json!(name);
            }
            m
        }).collect::<Vec<_>>(),
        "reachability": s.reachability.as_str(),
        "external_addrs": s.external_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "relays": s.relays.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "seal_key": st.node.reader().own_record().map(|r| json!({"key": hex::encode(r.key), "seq": r.seq})),
        "connections": s.connections.iter().map(|c| json!({
            "peer": c.peer.to_string(),
            "addr": c.addr.to_string(),
            "relayed": c.relayed,
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    to: Option<String>,
    room: Option<String>,
    body: String,
    burn_after_read: Option<u32>,
}

async fn send(State(st): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let req: SendRequest = json_body(body)?;
    let (to, about) = recipient_of(&req.to, &req.room)?;
    let sent = st
        .node
        .send(to, req.body.into_bytes(), req.burn_after_read)
        .await
        .map_err(|e| ApiError::from(e).about(about.0, about.1))?;
    Ok(Json(json!({
        "mid": sent.mid,
        "conversation": json::conversation(&sent.conversation),
        "sent_at": sent.sent_at,
    })))
}

async fn control(st: AppState, raw: String, burn: bool) -> Result<Json<Value>, ApiError> {
    let mid = parse_mid(&raw)?;
    let result = if burn {
        st.node.burn(mid).await
    } else {
        st.node.revoke(mid).await
    };
    let ack = result.map_err(|e| ApiError::from(e).about("mid", raw))?;
    let mut body = json::conversation(&ack.conversation);
    body.insert("ok".into(), json!(true));
    body.insert("mid".into(), json!(ack.mid));
    body.insert("kind".into(), json!(ack.action.as_str()));
    Ok(Json(Value::Object(body)))
}

async fn revoke(State(st): State<AppState>, Path(mid): Path<String>) -> Result<Json<Value>, ApiError> {
    control(st, mid, false).await
}

async fn burn(State(st): State<AppState>, Path(mid): Path<String>) -> Result<Json<Value>, ApiError> {
    control(st, mid, true).await
}

/// Opens a message: the only answer that carries the body of a sealed (received, unread
/// burn-after-reading) message, because it also starts the burn timer.
async fn read(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let mid = parse_mid(&raw)?;
    let opened = st
        .node
        .mark_read(mid)
        .await
        .map_err(|e| ApiError::from(e).about("mid", raw))?;
    Ok(Json(json!({
        "ok": true,
        "mid": mid,
        "body": json::text(&opened.body),
        "encrypted": opened.encrypted,
        "read_at": opened.read_at,
        "burn_at": opened.burn_at,
    })))
}

/// Which replicas confirmed a revoke or burn of the local account.
async fn deletion(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let mid = parse_mid(&raw)?;
    let deletion = st
        .node
        .deletion(mid)
        .await
        .map_err(|e| ApiError::from(e).about("mid", raw))?;
    Ok(Json(json::deletion(&deletion)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    limit: Option<usize>,
    before: Option<String>,
}

async fn history(
    st: AppState,
    conv: Conversation,
    about: (&'static str, String),
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(Code::BadParameters, e.body_text()).about(about.0, about.1.clone()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(
            ApiError::new(Code::BadParameters, format!("limit must be 1 to {MAX_LIMIT}")).about(about.0, about.1),
        );
    }
    let before = q.before.as_deref().map(parse_mid).transpose()?;
    let page = st
        .node
        .history(&conv, before, limit)
        .await
        .map_err(|e| ApiError::from(e).about(about.0, about.1.clone()))?;
    let reader = st.node.reader();
    // This account's own deletions carry how many replicas confirmed them.
    let confirmed = confirmed_of(&st.node, page.entries.iter())
        .await
        .map_err(|e| e.about(about.0, about.1))?;
    Ok(Json(json!({
        "messages": page
            .entries
            .iter()
            .map(|e| json::entry(e, &reader, confirmed.get(&e.id()).copied()))
            .collect::<Vec<_>>(),
        "next": page.next,
    })))
}

/// How many replicas confirmed each of the local account's own deletions among `entries`.
pub(super) async fn confirmed_of(
    node: &Node,
    entries: impl Iterator<Item = &Entry>,
) -> Result<HashMap<MessageId, (usize, Option<usize>)>, ApiError> {
    let local = node.account();
    let own: Vec<(MessageId, Option<usize>)> = entries
        .filter_map(|e| match e {
            Entry::Tombstone(t) if t.by() == local => {
                Some((t.target(), node.expected_replicas(t.header()).map(|e| e.len())))
            }
            _ => None,
        })
        .collect();
    if own.is_empty() {
        return Ok(HashMap::new());
    }
    let counts = node.confirmed_counts(own.iter().map(|(mid, _)| *mid).collect()).await?;
    Ok(own
        .into_iter()
        .zip(counts)
        .map(|((mid, expected), confirmed)| (mid, (confirmed, expected)))
        .collect())
}

/// The recipient of a request naming exactly one of `to` and `room`, with the field to name in
/// an error.
pub(super) fn recipient_of(
    to: &Option<String>,
    room: &Option<String>,
) -> Result<(Recipient, (&'static str, String)), ApiError> {
    match (to, room) {
        (Some(to), None) => Ok((Recipient::Account(parse_account(to)?), ("to", to.clone()))),
        (None, Some(room)) => Ok((Recipient::Room(parse_room(room)?), ("room", room.clone()))),
        _ => Err(ApiError::new(
            Code::BadParameters,
            "give exactly one of `to` and `room`",
        )),
    }
}

async fn direct_history(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let account = parse_account(&raw)?;
    history(st, Conversation::Peer(account), ("to", raw), q).await
}

async fn room_history(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let room = parse_room(&raw)?;
    history(st, Conversation::Room(room), ("room", raw), q).await
}

async fn join(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let room = parse_room(&raw)?;
    st.node
        .join(room.clone())
        .await
        .map_err(|e| ApiError::from(e).about("room", raw))?;
    Ok(Json(json!({"ok": true, "room": room})))
}

async fn leave(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let room = parse_room(&raw)?;
    st.node
        .leave(room.clone())
        .await
        .map_err(|e| ApiError::from(e).about("room", raw))?;
    Ok(Json(json!({"ok": true, "room": room})))
}

async fn events(State(st): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let events = st.node.subscribe();
    let local = st.node.account();
    ws.on_upgrade(move |socket| forward_events(socket, events, local))
}

/// Sends every node event as a JSON text frame, as `local` sees it, until the client goes away.
async fn forward_events(mut socket: WebSocket, mut events: crate::Events, local: AccountId) {
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                let frame = json::event(&event, &local).to_string();
                if socket.send(WsMessage::Text(frame.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    debug!("event socket closed");
}
