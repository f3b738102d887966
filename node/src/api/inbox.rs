//! The API's inbox: `GET /v1/conversations` (every conversation, newest first, with its newest
//! entry and unread count) and the calls that mark a whole conversation read.

use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tim_protocol::Code;
use tim_storage::MAX_INBOX_PAGE;

use super::{
    error::ApiError,
    json,
    routes::{confirmed_of, parse_account, parse_room, AppState},
};
use crate::Conversation;

/// Default page of conversations.
const DEFAULT_LIMIT: usize = 50;

/// The routes of this file, to merge under the auth layer.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/conversations", get(inbox))
        .route("/v1/conversations/{account}/read", post(read_direct))
        .route("/v1/rooms/{room}/read", post(read_room))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboxQuery {
    limit: Option<usize>,
    before: Option<String>,
}

async fn inbox(
    State(st): State<AppState>,
    q: Result<Query<InboxQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(Code::BadParameters, e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_INBOX_PAGE {
        return Err(ApiError::new(
            Code::BadParameters,
            format!("limit must be 1 to {MAX_INBOX_PAGE}"),
        ));
    }
    let before = match q.before.as_deref() {
        Some(raw) => Some(hex::decode(raw).map_err(|_| ApiError::new(Code::Malformed, "`before` is not a cursor"))?),
        None => None,
    };
    let page = st.node.inbox(before, limit).await?;
    let local = st.node.account();
    let reader = st.node.reader();
    let confirmed = confirmed_of(&st.node, page.items.iter().map(|item| &item.last)).await?;
    let conversations: Vec<Value> = page
        .items
        .iter()
        .map(|item| {
            let mut m = json::conversation(&Conversation::of(item.last.header(), &local));
            m.insert(
                "last".into(),
                json::entry(&item.last, &reader, confirmed.get(&item.last.id()).copied()),
            );
            m.insert("unread".into(), json!(item.unread));
            m.insert("updated_at".into(), json!(item.updated_at));
            Value::Object(m)
        })
        .collect();
    Ok(Json(json!({
        "conversations": conversations,
        "next": page.next.map(hex::encode),
    })))
}

async fn mark_read(st: AppState, conv: Conversation, about: (&'static str, String)) -> Result<Json<Value>, ApiError> {
    let marked = st
        .node
        .mark_conversation_read(&conv)
        .await
        .map_err(|e| ApiError::from(e).about(about.0, about.1))?;
    let mut m = json::conversation(&conv);
    m.insert("ok".into(), json!(true));
    m.insert("marked".into(), json!(marked));
    Ok(Json(Value::Object(m)))
}

async fn read_direct(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let account = parse_account(&raw)?;
    mark_read(st, Conversation::Peer(account), ("to", raw)).await
}

async fn read_room(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let room = parse_room(&raw)?;
    mark_read(st, Conversation::Room(room), ("room", raw)).await
}
