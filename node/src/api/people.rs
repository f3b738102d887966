//! The API's routes about other accounts: contacts, profile, presence, who may message this
//! account (and the requests it held), and blocking.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, State},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tim_protocol::{AccountId, Availability, Code, ContactAction};

use super::{
    error::ApiError,
    json,
    routes::{json_body, parse_account, AppState},
};

/// The routes of this file, to merge under the auth layer.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/contacts", get(contacts))
        .route("/v1/contacts/{account}", axum::routing::delete(remove))
        .route("/v1/contacts/{account}/request", post(request))
        .route("/v1/contacts/{account}/accept", post(accept))
        .route("/v1/contacts/{account}/reject", post(reject))
        .route("/v1/profile", get(profile).put(set_profile))
        .route("/v1/settings", get(settings).put(set_settings))
        .route("/v1/presence", get(presence).put(set_presence))
        .route("/v1/requests", get(requests))
        .route("/v1/requests/{account}/accept", post(accept_requests))
        .route("/v1/requests/{account}/reject", post(reject_requests))
        .route("/v1/blocks", get(blocks))
        .route("/v1/blocks/{account}", post(block).delete(unblock))
}

async fn contacts(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let contacts: Vec<Value> = st
        .node
        .contacts()
        .await?
        .into_iter()
        .map(|(account, record)| {
            let mut m = json!({
                "account": account,
                "state": record.state.as_str(),
                "since": record.since,
            });
            if let Some(note) = record.note {
                m["note"] = json!(note);
            }
            if let Some(name) = record.name {
                m["name"] = json!(name);
            }
            if let Ok(Some(p)) = st.node.presence_of(&account) {
                m["presence"] = json!({"status": p.status.as_str(), "text": p.text, "last_seen": p.last_seen});
            }
            m
        })
        .collect();
    Ok(Json(json!({ "contacts": contacts })))
}

/// Does `action` for the account in the path; answers `{ok, account, state}`.
async fn contact(st: AppState, raw: String, action: ContactAction) -> Result<Json<Value>, ApiError> {
    let account: AccountId = parse_account(&raw).map_err(|e| e.about("account", raw.clone()))?;
    let state = st
        .node
        .contact(account, action)
        .await
        .map_err(|e| ApiError::from(e).about("account", raw))?;
    Ok(Json(json!({"ok": true, "account": account, "state": state.as_str()})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    note: Option<String>,
}

async fn request(
    State(st): State<AppState>,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    // An empty body is a request without a note.
    let req: RequestBody = match &body {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => RequestBody::default(),
        _ => json_body(body).map_err(|e| e.about("account", raw.clone()))?,
    };
    let note = req.note.unwrap_or_default();
    contact(st, raw, ContactAction::Request { note }).await
}

async fn accept(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    contact(st, raw, ContactAction::Accept).await
}

async fn reject(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    contact(st, raw, ContactAction::Reject).await
}

async fn remove(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    contact(st, raw, ContactAction::Remove).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody {
    name: String,
}

async fn profile(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let name = st.node.profile().await?;
    Ok(Json(json!({ "account": st.node.account(), "name": name })))
}

async fn set_profile(State(st): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let req: ProfileBody = json_body(body)?;
    st.node.set_profile(req.name.clone()).await?;
    let name = (!req.name.is_empty()).then_some(req.name);
    Ok(Json(json!({"ok": true, "name": name})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceBody {
    status: String,
    #[serde(default)]
    text: String,
}

async fn presence(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let mine = st.node.presence()?;
    Ok(Json(json!({
        "status": mine.status.map_or("invisible", |s| s.as_str()),
        "text": mine.text,
    })))
}

async fn set_presence(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let req: PresenceBody = json_body(body)?;
    let status = match req.status.as_str() {
        "invisible" => None,
        "offline" => {
            return Err(ApiError::new(
                Code::BadParameters,
                "a running node is online, away, busy or invisible",
            ))
        }
        other => Some(Availability::parse(other).ok_or_else(|| {
            ApiError::new(
                Code::BadParameters,
                format!("status must be online, away, busy or invisible, not {other:?}"),
            )
        })?),
    };
    st.node
        .set_presence(crate::MyPresence {
            status,
            text: req.text.clone(),
        })
        .await?;
    Ok(Json(json!({"ok": true, "status": req.status, "text": req.text})))
}

async fn settings(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let inbound = st.node.inbound().await?;
    Ok(Json(json!({ "inbound": inbound.as_str() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    inbound: String,
}

async fn set_settings(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let req: SettingsBody = json_body(body)?;
    let inbound = crate::Inbound::parse(&req.inbound).ok_or_else(|| {
        ApiError::new(
            Code::BadParameters,
            format!("inbound must be \"anyone\" or \"contacts\", not {:?}", req.inbound),
        )
    })?;
    st.node.set_inbound(inbound).await?;
    Ok(Json(json!({"ok": true, "inbound": inbound.as_str()})))
}

async fn requests(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let reader = st.node.reader();
    let requests: Vec<Value> = st
        .node
        .requests()
        .await?
        .into_iter()
        .map(|(account, messages)| {
            let messages: Vec<Value> = messages
                .into_iter()
                .map(|m| json::entry(&tim_storage::Entry::Message(m), &reader, None))
                .collect();
            json!({ "account": account, "messages": messages })
        })
        .collect();
    Ok(Json(json!({ "requests": requests })))
}

/// Admits the account: a contact request (which accepts its request if one waits), so its held
/// messages join the history.
async fn accept_requests(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    contact(st, raw, ContactAction::Request { note: String::new() }).await
}

async fn reject_requests(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let account = parse_account(&raw).map_err(|e| e.about("account", raw.clone()))?;
    let destroyed = st
        .node
        .reject_requests(account)
        .await
        .map_err(|e| ApiError::from(e).about("account", raw))?;
    Ok(Json(json!({"ok": true, "account": account, "destroyed": destroyed})))
}

async fn blocks(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let blocks = st.node.blocks().await?;
    Ok(Json(json!({ "blocks": blocks })))
}

async fn block(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let account = parse_account(&raw).map_err(|e| e.about("account", raw.clone()))?;
    let dropped = st
        .node
        .block(account)
        .await
        .map_err(|e| ApiError::from(e).about("account", raw))?;
    Ok(Json(json!({"ok": true, "account": account, "dropped": dropped})))
}

async fn unblock(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let account = parse_account(&raw).map_err(|e| e.about("account", raw.clone()))?;
    let was = st
        .node
        .unblock(account)
        .await
        .map_err(|e| ApiError::from(e).about("account", raw.clone()))?;
    if !was {
        return Err(ApiError::new(Code::NotFound, format!("account {account} is not blocked")).about("account", raw));
    }
    Ok(Json(json!({"ok": true, "account": account})))
}
