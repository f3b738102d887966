//! The API's routes about founded rooms: create one, look at it, and the founder's and managers'
//! operations (invite, approve, kick, managers, cancel). Joining and leaving any room are in
//! `routes` (`/v1/rooms/{room}/join`, `/leave`).

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    routing::{delete, get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tim_protocol::{AccountId, RoomAction, RoomId, RoomState};

use super::{
    error::ApiError,
    routes::{json_body, parse_account, parse_room, AppState},
};

/// The routes of this file, to merge under the auth layer.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/rooms", post(create))
        .route("/v1/rooms/{room}", get(room))
        .route("/v1/rooms/{room}/invite", post(invite))
        .route("/v1/rooms/{room}/approve", post(approve))
        .route("/v1/rooms/{room}/kick", post(kick))
        .route("/v1/rooms/{room}/managers", post(promote))
        .route("/v1/rooms/{room}/managers/{account}", delete(demote))
        .route("/v1/rooms/{room}/cancel", post(cancel))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// The name the founder gives the room (the id is derived, never chosen).
    room: Option<String>,
    name: Option<String>,
    #[serde(default)]
    private: bool,
}

/// The JSON shape of a founded room.
fn room_json(s: &RoomState) -> Value {
    let mut managers: Vec<&AccountId> = vec![&s.founder];
    managers.extend(s.managers.iter());
    json!({
        "room": s.room,
        "name": s.name,
        "private": s.private,
        "founder": s.founder,
        "managers": managers,
        "members": s.members.keys().collect::<Vec<_>>(),
        "invited": s.invited.keys().collect::<Vec<_>>(),
        "requests": s.requests.keys().collect::<Vec<_>>(),
        "cancelled": s.cancelled.is_some(),
        "created_at": s.created_at,
    })
}

async fn create(State(st): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let req: CreateBody = json_body(body)?;
    let name = req.name.or(req.room).unwrap_or_default();
    let state = st.node.create_room(name, req.private).await?;
    Ok(Json(
        json!({"room": state.room, "private": state.private, "founder": state.founder, "name": state.name}),
    ))
}

async fn room(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let room = parse_room(&raw)?;
    let state = st.node.room(&room).map_err(|e| ApiError::from(e).about("room", raw))?;
    Ok(Json(room_json(&state)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    account: String,
}

/// The room in the path and the account in the body.
fn room_and_account(raw: &str, body: Result<Bytes, BytesRejection>) -> Result<(RoomId, AccountId), ApiError> {
    let room = parse_room(raw)?;
    let req: AccountBody = json_body(body).map_err(|e| e.about("room", raw))?;
    let account = parse_account(&req.account).map_err(|e| e.about("account", req.account.clone()))?;
    Ok((room, account))
}

/// Answers `{ok, room, account}` after `done`, or the error about the room.
async fn answer(
    st: &AppState,
    room: RoomId,
    account: Option<AccountId>,
    done: crate::Result<()>,
) -> Result<Json<Value>, ApiError> {
    done.map_err(|e| ApiError::from(e).about("room", room.to_string()))?;
    let mut m = json!({"ok": true, "room": room});
    if let Some(account) = account {
        m["account"] = json!(account);
    }
    if let Ok(state) = st.node.room(&room) {
        m["state"] = room_json(&state);
    }
    Ok(Json(m))
}

/// The operation `action` makes of the account in the body, in the room in the path.
async fn on_account(
    st: AppState,
    raw: String,
    body: Result<Bytes, BytesRejection>,
    action: fn(AccountId) -> RoomAction,
) -> Result<Json<Value>, ApiError> {
    let (room, account) = room_and_account(&raw, body)?;
    let done = st.node.room_action(room.clone(), action(account)).await;
    answer(&st, room, Some(account), done).await
}

async fn invite(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    on_account(st, raw, body, RoomAction::Invite).await
}

async fn approve(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    on_account(st, raw, body, RoomAction::Approve).await
}

async fn kick(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    on_account(st, raw, body, RoomAction::Kick).await
}

async fn promote(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    on_account(st, raw, body, RoomAction::Promote).await
}

async fn demote(
    State(st): State<AppState>,
    Path((raw_room, raw_account)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let room = parse_room(&raw_room)?;
    let account = parse_account(&raw_account).map_err(|e| e.about("account", raw_account.clone()))?;
    let done = st.node.demote(room.clone(), account).await;
    answer(&st, room, Some(account), done).await
}

async fn cancel(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let room = parse_room(&raw)?;
    let done = st.node.cancel_room(room.clone()).await;
    answer(&st, room, None, done).await
}
