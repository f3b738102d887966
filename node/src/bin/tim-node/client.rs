//! Client commands: talk to a running node's local API (address and token from its data dir, or
//! flags). Human-readable output by default, `--json` for scripts; failures exit non-zero with
//! the error's code and message.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::{json, Value};
use tim_node::api::{ADDR_FILE, TOKEN_FILE};

use crate::token;

mod format;
mod people;
mod rooms;

use format::{deletion_report, line};
use rooms::RoomCmd;

pub(crate) use people::ContactCmd;

/// Where the node is.
#[derive(Args, Clone)]
pub(crate) struct Conn {
    /// The node's data dir (holds `api-addr` and `api-token`).
    #[arg(long, default_value = "tim-data", global = true)]
    data_dir: PathBuf,
    /// API address: `host:port` as given to `run --api`, or a URL such as
    /// `http://127.0.0.1:7117` (default: from the data dir).
    #[arg(long, global = true)]
    api: Option<String>,
    /// Read the API token from this file (default: $TIM_TOKEN, else DATA_DIR/api-token).
    #[arg(long, global = true, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Deprecated: the token on the command line is visible to every local user in `ps`; use
    /// --token-file or TIM_TOKEN.
    #[arg(long, global = true)]
    token: Option<String>,
    /// Print raw JSON.
    #[arg(long, global = true)]
    json: bool,
}

/// The client commands.
#[derive(Subcommand)]
pub(crate) enum ClientCmd {
    /// Send a message to an account or a room.
    Send {
        #[command(flatten)]
        conn: Conn,
        /// Recipient account id.
        #[arg(long, conflicts_with = "room", required_unless_present = "room")]
        to: Option<String>,
        /// Room id.
        #[arg(long)]
        room: Option<String>,
        /// Burn this many seconds after the recipient reads it (direct only).
        #[arg(long)]
        burn_after_read: Option<u32>,
        /// The text.
        body: String,
    },
    /// Revoke a message you sent.
    Revoke {
        #[command(flatten)]
        conn: Conn,
        mid: String,
    },
    /// Burn a direct message you received.
    Burn {
        #[command(flatten)]
        conn: Conn,
        mid: String,
    },
    /// Show which replicas confirmed, with signed receipts, a revoke or burn you made.
    Deletion {
        #[command(flatten)]
        conn: Conn,
        mid: String,
    },
    /// Open a message: print its body and mark it read (starts its burn-after-reading timer; a
    /// sealed message's body is shown only this way).
    Read {
        #[command(flatten)]
        conn: Conn,
        mid: String,
    },
    /// Show a conversation's history, newest first.
    History {
        #[command(flatten)]
        conn: Conn,
        /// The other account.
        #[arg(long, conflicts_with = "room", required_unless_present = "room")]
        with: Option<String>,
        /// Or a room.
        #[arg(long)]
        room: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Older than this message id.
        #[arg(long)]
        before: Option<String>,
    },
    /// Join or leave rooms; found a room and run it (invite, approve, kick, managers, cancel).
    Rooms {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: RoomCmd,
    },
    /// List conversations, most recently active first, with their unread counts.
    Conversations {
        #[command(flatten)]
        conn: Conn,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// List contacts and requests, or request, accept, reject or remove one.
    Contacts {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: Option<ContactCmd>,
    },
    /// Show your display name, or set it (sent, signed, to your contacts; "" clears it).
    Profile {
        #[command(flatten)]
        conn: Conn,
        name: Option<String>,
    },
    /// Show or set what your contacts see: online, away, busy or invisible, with a text.
    Presence {
        #[command(flatten)]
        conn: Conn,
        status: Option<String>,
        /// A short text (at most 140 bytes).
        #[arg(long, default_value = "")]
        text: String,
    },
    /// Show or set who may message you: `anyone`, or `contacts` (others' messages are held as
    /// requests).
    Inbound {
        #[command(flatten)]
        conn: Conn,
        setting: Option<String>,
    },
    /// List the messages held as requests, or accept or reject an account's.
    Requests {
        #[command(flatten)]
        conn: Conn,
        /// `accept` or `reject`, with an account.
        action: Option<String>,
        account: Option<String>,
    },
    /// Block an account: nothing of it is stored here, nothing of yours goes to it.
    Block {
        #[command(flatten)]
        conn: Conn,
        account: String,
    },
    /// Lift a block.
    Unblock {
        #[command(flatten)]
        conn: Conn,
        account: String,
    },
    /// List blocked accounts.
    Blocks {
        #[command(flatten)]
        conn: Conn,
    },
    /// Show the node's status.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Follow the node's events until Ctrl-C.
    Watch {
        #[command(flatten)]
        conn: Conn,
    },
}

struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    fn new(conn: &Conn) -> anyhow::Result<Self> {
        let read = |file: &str| {
            let path = conn.data_dir.join(file);
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .with_context(|| {
                    format!(
                        "reading {} (is the node running? or pass --api and --token-file)",
                        path.display()
                    )
                })
        };
        let base = match &conn.api {
            Some(a) => base_url(a)?,
            None => base_url(&read(ADDR_FILE)?)?,
        };
        let token = if let Some(t) = &conn.token {
            eprintln!(
                "warning: --token is visible to other local users (ps, /proc); use --token-file PATH or {}",
                token::ENV
            );
            t.clone()
        } else {
            match token::supplied(conn.token_file.as_deref())? {
                Some(s) => s.token,
                None => read(TOKEN_FILE)?,
            }
        };
        Ok(Client {
            base,
            token,
            http: reqwest::Client::new(),
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("connecting to {}", self.base))?;
        let ok = resp.status().is_success();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !ok {
            let e = &value["error"];
            bail!(
                "error {} {}: {}",
                e["code"],
                e["name"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("?")
            );
        }
        Ok(value)
    }
}

/// The API's base URL from `--api` or the data dir's `api-addr`: a `host:port` (what `run --api`
/// takes) gets `http://`; an `http` or `https` URL is kept as it is, without a trailing `/`.
fn base_url(api: &str) -> anyhow::Result<String> {
    let api = api.trim().trim_end_matches('/');
    let wrong = || anyhow!("--api {api:?}: give host:port (as to `run --api`) or a URL such as http://127.0.0.1:7117");
    if let Some((scheme, rest)) = api.split_once("://") {
        if !matches!(scheme, "http" | "https") || rest.is_empty() {
            return Err(wrong());
        }
        return Ok(api.to_string());
    }
    if let Ok(addr) = api.parse::<std::net::SocketAddr>() {
        return Ok(format!("http://{addr}"));
    }
    // A host name: `localhost:7117`.
    match api.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && port.parse::<u16>().is_ok() && !host.contains(['/', ':', '[', ']', '@']) =>
        {
            Ok(format!("http://{api}"))
        }
        _ => Err(wrong()),
    }
}

impl ClientCmd {
    fn conn(&self) -> &Conn {
        match self {
            ClientCmd::Send { conn, .. }
            | ClientCmd::Revoke { conn, .. }
            | ClientCmd::Burn { conn, .. }
            | ClientCmd::Deletion { conn, .. }
            | ClientCmd::Read { conn, .. }
            | ClientCmd::History { conn, .. }
            | ClientCmd::Rooms { conn, .. }
            | ClientCmd::Conversations { conn, .. }
            | ClientCmd::Contacts { conn, .. }
            | ClientCmd::Profile { conn, .. }
            | ClientCmd::Presence { conn, .. }
            | ClientCmd::Inbound { conn, .. }
            | ClientCmd::Requests { conn, .. }
            | ClientCmd::Block { conn, .. }
            | ClientCmd::Unblock { conn, .. }
            | ClientCmd::Blocks { conn }
            | ClientCmd::Status { conn }
            | ClientCmd::Watch { conn } => conn,
        }
    }
}

pub(crate) async fn run(cmd: ClientCmd, ctrl_c: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    use reqwest::Method;
    let conn = cmd.conn().clone();
    let client = Client::new(&conn)?;
    let print = |v: &Value, human: String| {
        if conn.json {
            println!("{v}");
        } else {
            println!("{human}");
        }
    };
    match cmd {
        ClientCmd::Send {
            to,
            room,
            burn_after_read,
            body,
            ..
        } => {
            let mut req = json!({ "body": body });
            if let Some(to) = to {
                req["to"] = json!(to);
            }
            if let Some(room) = room {
                req["room"] = json!(room);
            }
            if let Some(s) = burn_after_read {
                req["burn_after_read"] = json!(s);
            }
            let v = client.call(Method::POST, "/v1/messages", Some(req)).await?;
            print(&v, format!("sent {}", v["mid"].as_str().unwrap_or("")));
        }
        ClientCmd::Revoke { mid, .. } => {
            let v = client
                .call(Method::POST, &format!("/v1/messages/{mid}/revoke"), None)
                .await?;
            print(&v, format!("revoked {mid}"));
        }
        ClientCmd::Burn { mid, .. } => {
            let v = client
                .call(Method::POST, &format!("/v1/messages/{mid}/burn"), None)
                .await?;
            print(&v, format!("burned {mid}"));
        }
        ClientCmd::Deletion { mid, .. } => {
            let v = client
                .call(Method::GET, &format!("/v1/messages/{mid}/deletion"), None)
                .await?;
            print(&v, deletion_report(&v));
        }
        ClientCmd::Read { mid, .. } => {
            let v = client
                .call(Method::POST, &format!("/v1/messages/{mid}/read"), None)
                .await?;
            let note = v["burn_at"]
                .as_u64()
                .map(|t| format!(" (burns at {t})"))
                .unwrap_or_default();
            print(&v, format!("read {mid}{note}: {}", v["body"].as_str().unwrap_or("")));
        }
        ClientCmd::History {
            with,
            room,
            limit,
            before,
            ..
        } => {
            let mut path = match (with, room) {
                (Some(a), _) => format!("/v1/conversations/{a}/messages?limit={limit}"),
                (None, Some(r)) => format!("/v1/rooms/{r}/messages?limit={limit}"),
                (None, None) => bail!("give --with ACCOUNT or --room ROOM"),
            };
            if let Some(b) = before {
                path.push_str(&format!("&before={b}"));
            }
            let v = client.call(Method::GET, &path, None).await?;
            let lines: Vec<String> = v["messages"].as_array().into_iter().flatten().map(line).collect();
            print(
                &v,
                if lines.is_empty() {
                    "(no messages)".into()
                } else {
                    lines.join("\n")
                },
            );
        }
        ClientCmd::Rooms { cmd, .. } => {
            let (v, human) = rooms::run(&client, cmd).await?;
            print(&v, human);
        }
        ClientCmd::Conversations { limit, .. } => {
            let (v, human) = people::conversations(&client, limit).await?;
            print(&v, human);
        }
        ClientCmd::Contacts { cmd, .. } => {
            let (v, human) = people::contacts(&client, cmd).await?;
            print(&v, human);
        }
        ClientCmd::Profile { name, .. } => {
            let v = match name {
                Some(name) => {
                    client
                        .call(Method::PUT, "/v1/profile", Some(json!({ "name": name })))
                        .await?
                }
                None => client.call(Method::GET, "/v1/profile", None).await?,
            };
            print(&v, format!("name: {}", v["name"].as_str().unwrap_or("(none)")));
        }
        ClientCmd::Presence { status, text, .. } => {
            let (v, human) = people::presence(&client, status, text).await?;
            print(&v, human);
        }
        ClientCmd::Inbound { setting, .. } => {
            let (v, human) = people::inbound(&client, setting).await?;
            print(&v, human);
        }
        ClientCmd::Requests { action, account, .. } => {
            let (v, human) = people::requests(&client, action, account).await?;
            print(&v, human);
        }
        ClientCmd::Block { account, .. } => {
            let (v, human) = people::blocks(&client, Some((&account, true))).await?;
            print(&v, human);
        }
        ClientCmd::Unblock { account, .. } => {
            let (v, human) = people::blocks(&client, Some((&account, false))).await?;
            print(&v, human);
        }
        ClientCmd::Blocks { .. } => {
            let (v, human) = people::blocks(&client, None).await?;
            print(&v, human);
        }
        ClientCmd::Status { .. } => {
            let v = client.call(Method::GET, "/v1/status", None).await?;
            let rooms: Vec<String> = v["rooms"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| format!("{} ({} peers)", r["room"].as_str().unwrap_or(""), r["peers"]))
                .collect();
            let addrs: Vec<&str> = v["listen_addrs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let relays: Vec<&str> = v["relays"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let connections = v["connections"].as_array().map_or(0, Vec::len);
            let relayed = v["connections"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["relayed"].as_bool() == Some(true))
                .count();
            let reach = match (v["reachability"].as_str().unwrap_or("unknown"), relays.is_empty()) {
                (r, true) => r.to_string(),
                (r, false) => format!("{r}, through relays {}", relays.join(", ")),
            };
            print(
                &v,
                format!(
                    "account  {}\npeer_id  {}\nreach    {}\npeers    {} ({} connections, {} relayed)\nrooms    {}\nlisten   {}",
                    v["account"].as_str().unwrap_or(""),
                    v["peer_id"].as_str().unwrap_or(""),
                    reach,
                    v["peers"],
                    connections,
                    relayed,
                    if rooms.is_empty() { "-".into() } else { rooms.join(", ") },
                    addrs.join("\n         ")
                ),
            );
        }
        ClientCmd::Watch { .. } => {
            let url = format!(
                "{}/v1/events?token={}",
                client.base.replacen("http", "ws", 1),
                client.token
            );
            let (mut ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .map_err(|e| anyhow!("connecting: {e}"))?;
            tokio::pin!(ctrl_c);
            loop {
                tokio::select! {
                    _ = &mut ctrl_c => break,
                    frame = ws.next() => match frame {
                        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                            let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                            print(&v, line(&v));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => bail!("event stream: {e}"),
                        None => break,
                    },
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::base_url;

    #[test]
    fn api_takes_what_run_takes_or_a_url() {
        let ok = |a: &str| base_url(a).unwrap_or_else(|e| panic!("{a}: {e}"));
        assert_eq!(ok("127.0.0.1:7117"), "http://127.0.0.1:7117");
        assert_eq!(ok("[::1]:7117"), "http://[::1]:7117");
        assert_eq!(ok("localhost:7117"), "http://localhost:7117");
        assert_eq!(ok("http://127.0.0.1:7117"), "http://127.0.0.1:7117");
        assert_eq!(ok("http://127.0.0.1:7117/"), "http://127.0.0.1:7117");
        assert_eq!(ok("https://tim.example:443"), "https://tim.example:443");
        // The data dir's api-addr, as `run` writes it.
        assert_eq!(ok("http://127.0.0.1:40123\n"), "http://127.0.0.1:40123");
        for bad in [
            "",
            "7117",
            "127.0.0.1",
            "127.0.0.1:port",
            "ftp://127.0.0.1:7117",
            "http://",
            "::1:7117",
        ] {
            assert!(base_url(bad).is_err(), "{bad:?} accepted");
        }
    }
}
