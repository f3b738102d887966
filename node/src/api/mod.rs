//! The local HTTP/WebSocket API that apps and the web page use: JSON over HTTP, events over a
//! WebSocket, a bearer token on every request. See docs/api.md.
//!
//! - `error`: the JSON error body and HTTP status of every [`crate::Error`].
//! - `guard`: the security headers on every answer and the `Host`/`Origin` check
//!   ([`HostAllowlist`]).
//! - `json`: the JSON shapes of messages, acks and events.
//! - `routes`: the handlers and the auth layer; `page/`: the web page's files.
//! - `people`: the routes about other accounts (blocking); `rooms`: founded rooms (create,
//!   invite, approve, kick, managers, cancel); `inbox`: the list of conversations;
//!   `streams`: live data.

mod error;
mod guard;
mod inbox;
mod json;
mod people;
mod rooms;
mod routes;
mod streams;

use std::path::Path;

pub use guard::HostAllowlist;
pub use routes::router;

use crate::{keys::write_private, Node, Result};

/// File name of the API token in the data dir.
pub const TOKEN_FILE: &str = "api-token";
/// File name where a running node writes its API base URL, for client commands.
pub const ADDR_FILE: &str = "api-addr";

/// The API token in `dir`, created (32 random bytes as hex, mode 0600) on first start.
pub fn load_or_create_token(dir: &Path) -> Result<String> {
    let path = dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    std::fs::create_dir_all(dir)?;
    let token = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// Serves the API for `node` on `listener` until `shutdown` completes, answering only requests
/// whose `Host` is in `hosts` (build it from the address `listener` is bound to).
pub async fn serve(
    node: Node,
    token: String,
    hosts: HostAllowlist,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(node, token, hosts))
        .with_graceful_shutdown(shutdown)
        .await
}
