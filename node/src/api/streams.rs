//! `POST /v1/streams`: live data to an account or a room, never stored.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    routing::post,
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    error::ApiError,
    routes::{json_body, recipient_of, AppState},
};

/// The routes of this file, to merge under the auth layer.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/streams", post(stream))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamRequest {
    to: Option<String>,
    room: Option<String>,
    data: String,
}

async fn stream(State(st): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let req: StreamRequest = json_body(body)?;
    let (to, about) = recipient_of(&req.to, &req.room)?;
    st.node
        .stream(to, req.data.into_bytes())
        .await
        .map_err(|e| ApiError::from(e).about(about.0, about.1.clone()))?;
    Ok(Json(json!({"ok": true, about.0: about.1})))
}
