//! The API's routes about other accounts: blocking.

use axum::{
    extract::{Path, State},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};
use tim_protocol::Code;

use super::{
    error::ApiError,
    routes::{parse_account, AppState},
};

/// The routes of this file, to merge under the auth layer.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/blocks", get(blocks))
        .route("/v1/blocks/{account}", post(block).delete(unblock))
}

async fn blocks(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let blocks = st.node.blocks().await?;
    Ok(Json(json!({ "blocks": blocks })))
}

async fn block(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let account = parse_account(&raw)?;
    let dropped = st
        .node
        .block(account)
        .await
        .map_err(|e| ApiError::from(e).about("account", raw))?;
    Ok(Json(json!({"ok": true, "account": account, "dropped": dropped})))
}

async fn unblock(State(st): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let account = parse_account(&raw)?;
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
