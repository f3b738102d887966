//! API errors: `{"error": {"code", "name", "message", and the request's mid, to or room}}` with a
//! fitting HTTP status, so a client can always tell which request failed and why.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Map, Value};
use tim_protocol::Code;

/// An error answer of the API.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: Code,
    message: String,
    /// What the request was about: `mid`, `to` or `room`, as the client sent it.
    context: Option<(&'static str, String)>,
}

impl ApiError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            context: None,
        }
    }

    /// Names what the failed request was about.
    pub(crate) fn about(mut self, field: &'static str, value: impl Into<String>) -> Self {
        self.context = Some((field, value.into()));
        self
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

/// The HTTP status of a code.
pub(crate) fn status_of(code: Code) -> StatusCode {
    match code {
        Code::Unauthorized => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied | Code::Expired | Code::HostNotAllowed | Code::Blocked => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Tombstoned | Code::RoomCancelled => StatusCode::GONE,
        Code::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Code::AlreadyExists | Code::Repeated => StatusCode::CONFLICT,
        Code::StorageFailure => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Overloaded | Code::Unreachable | Code::NodeStopped => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("code".into(), json!(self.code.number()));
        body.insert("name".into(), json!(self.code.name()));
        body.insert("message".into(), json!(self.message));
        if let Some((field, value)) = self.context {
            body.insert(field.into(), Value::String(value));
        }
        (status_of(self.code), Json(json!({ "error": body }))).into_response()
    }
}
