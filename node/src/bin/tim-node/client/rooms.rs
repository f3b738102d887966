//! Client commands about rooms: join and leave any room; found a room and run it (invite,
//! approve, kick, managers, cancel); show a founded room's members and roles.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::Client;

/// What `rooms` does.
#[derive(Subcommand)]
pub(crate) enum RoomCmd {
    /// Join a room (a founded room: take an invitation, or ask its managers).
    Join { room: String },
    /// Leave a room.
    Leave { room: String },
    /// Found a room with you as founder; prints its id.
    Create {
        /// Its name.
        name: String,
        /// Members join only by invitation or approval, and only members post.
        #[arg(long)]
        private: bool,
    },
    /// Show a founded room: founder, managers, members, invitations and requests.
    Show { room: String },
    /// Invite an account (founder or manager).
    Invite { room: String, account: String },
    /// Admit an account that asked to join (founder or manager).
    Approve { room: String, account: String },
    /// Remove a member, or withdraw an invitation or a request (founder or manager).
    Kick { room: String, account: String },
    /// Make a member a manager (founder).
    Promote { room: String, account: String },
    /// Make a manager a plain member (founder).
    Demote { room: String, account: String },
    /// Cancel the room for good (founder).
    Cancel { room: String },
}

/// A founded room, one role per line.
fn show(v: &Value) -> String {
    let list = |key: &str| -> String {
        let items: Vec<&str> = v[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if items.is_empty() {
            "(none)".into()
        } else {
            items.join(", ")
        }
    };
    let kind = if v["private"].as_bool() == Some(true) {
        "private"
    } else {
        "open"
    };
    let cancelled = if v["cancelled"].as_bool() == Some(true) {
        " (cancelled)"
    } else {
        ""
    };
    format!(
        "#{} \"{}\" {kind}{cancelled}\nfounder:  {}\nmanagers: {}\nmembers:  {}\ninvited:  {}\nrequests: {}",
        v["room"].as_str().unwrap_or("?"),
        v["name"].as_str().unwrap_or(""),
        v["founder"].as_str().unwrap_or("?"),
        list("managers"),
        list("members"),
        list("invited"),
        list("requests"),
    )
}

/// Runs `cmd`; returns the answer and its human form.
pub(crate) async fn run(client: &Client, cmd: RoomCmd) -> anyhow::Result<(Value, String)> {
    let with_account = |account: &str| Some(json!({ "account": account }));
    let (method, path, body, done) = match &cmd {
        RoomCmd::Join { room } => (
            Method::POST,
            format!("/v1/rooms/{room}/join"),
            None,
            format!("join {room}: ok"),
        ),
        RoomCmd::Leave { room } => (
            Method::POST,
            format!("/v1/rooms/{room}/leave"),
            None,
            format!("leave {room}: ok"),
        ),
        RoomCmd::Create { name, private } => (
            Method::POST,
            "/v1/rooms".into(),
            Some(json!({ "name": name, "private": private })),
            String::new(),
        ),
        RoomCmd::Show { room } => (Method::GET, format!("/v1/rooms/{room}"), None, String::new()),
        RoomCmd::Invite { room, account } => (
            Method::POST,
            format!("/v1/rooms/{room}/invite"),
            with_account(account),
            format!("invited {account} to {room}"),
        ),
        RoomCmd::Approve { room, account } => (
            Method::POST,
            format!("/v1/rooms/{room}/approve"),
            with_account(account),
            format!("approved {account} in {room}"),
        ),
        RoomCmd::Kick { room, account } => (
            Method::POST,
            format!("/v1/rooms/{room}/kick"),
            with_account(account),
            format!("removed {account} from {room}"),
        ),
        RoomCmd::Promote { room, account } => (
            Method::POST,
            format!("/v1/rooms/{room}/managers"),
            with_account(account),
            format!("{account} manages {room}"),
        ),
        RoomCmd::Demote { room, account } => (
            Method::DELETE,
            format!("/v1/rooms/{room}/managers/{account}"),
            None,
            format!("{account} no longer manages {room}"),
        ),
        RoomCmd::Cancel { room } => (
            Method::POST,
            format!("/v1/rooms/{room}/cancel"),
            None,
            format!("cancelled {room}"),
        ),
    };
    let v = client.call(method, &path, body).await?;
    let human = match cmd {
        RoomCmd::Create { .. } => format!("created {}", v["room"].as_str().unwrap_or("?")),
        RoomCmd::Show { .. } => show(&v),
        _ => done,
    };
    Ok((v, human))
}
