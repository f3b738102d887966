//! Client commands about conversations and other accounts: the inbox, contacts, presence, who
//! may message you (and the requests held), and blocks.

use anyhow::bail;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::{format::line, Client};

/// What `contacts` does; without one, it lists them.
#[derive(Subcommand)]
pub(crate) enum ContactCmd {
    /// Ask an account to become a contact.
    Request {
        account: String,
        /// A short note shown with the request.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Accept an account's request.
    Accept { account: String },
    /// Decline an account's request.
    Reject { account: String },
    /// End a contact (or withdraw a request) on both sides.
    Remove { account: String },
}

/// `conversations`: one line per conversation, newest first: where, unread count, last entry.
pub(crate) async fn conversations(client: &Client, limit: usize) -> anyhow::Result<(Value, String)> {
    let v = client
        .call(Method::GET, &format!("/v1/conversations?limit={limit}"), None)
        .await?;
    let lines: Vec<String> = v["conversations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let place = match (c["to"].as_str(), c["room"].as_str()) {
                (Some(to), _) => format!("@{to}"),
                (None, Some(room)) => format!("#{room}"),
                _ => "?".into(),
            };
            format!("{place}  {} unread  last: {}", c["unread"], line(&c["last"]))
        })
        .collect();
    let human = if lines.is_empty() {
        "(no conversations)".into()
    } else {
        lines.join("\n")
    };
    Ok((v, human))
}

/// `contacts [request|accept|reject|remove ACCOUNT]`.
pub(crate) async fn contacts(client: &Client, cmd: Option<ContactCmd>) -> anyhow::Result<(Value, String)> {
    let (account, what, body) = match cmd {
        None => {
            let v = client.call(Method::GET, "/v1/contacts", None).await?;
            let lines: Vec<String> = v["contacts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let note = c["note"].as_str().map(|n| format!("  \"{n}\"")).unwrap_or_default();
                    format!(
                        "{}  {}{note}",
                        c["account"].as_str().unwrap_or(""),
                        c["state"].as_str().unwrap_or("")
                    )
                })
                .collect();
            let human = if lines.is_empty() {
                "(no contacts)".into()
            } else {
                lines.join("\n")
            };
            return Ok((v, human));
        }
        Some(ContactCmd::Request { account, note }) => (account, "request", Some(json!({ "note": note }))),
        Some(ContactCmd::Accept { account }) => (account, "accept", None),
        Some(ContactCmd::Reject { account }) => (account, "reject", None),
        Some(ContactCmd::Remove { account }) => (account, "remove", None),
    };
    let v = if what == "remove" {
        client
            .call(Method::DELETE, &format!("/v1/contacts/{account}"), None)
            .await?
    } else {
        client
            .call(Method::POST, &format!("/v1/contacts/{account}/{what}"), body)
            .await?
    };
    let human = format!("{what} {account}: now {}", v["state"].as_str().unwrap_or("?"));
    Ok((v, human))
}

/// `block ACCOUNT`, `unblock ACCOUNT` and `blocks`.
pub(crate) async fn blocks(client: &Client, change: Option<(&str, bool)>) -> anyhow::Result<(Value, String)> {
    match change {
        Some((account, true)) => {
            let v = client
                .call(Method::POST, &format!("/v1/blocks/{account}"), None)
                .await?;
            let human = format!("blocked {account} ({} queued items dropped)", v["dropped"]);
            Ok((v, human))
        }
        Some((account, false)) => {
            let v = client
                .call(Method::DELETE, &format!("/v1/blocks/{account}"), None)
                .await?;
            Ok((v, format!("unblocked {account}")))
        }
        None => {
            let v = client.call(Method::GET, "/v1/blocks", None).await?;
            let list: Vec<&str> = v["blocks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let human = if list.is_empty() {
                "(nobody blocked)".into()
            } else {
                list.join("\n")
            };
            Ok((v, human))
        }
    }
}

/// `presence [STATUS] [--text T]`.
pub(crate) async fn presence(client: &Client, status: Option<String>, text: String) -> anyhow::Result<(Value, String)> {
    let v = match status {
        Some(status) => {
            client
                .call(
                    Method::PUT,
                    "/v1/presence",
                    Some(json!({ "status": status, "text": text })),
                )
                .await?
        }
        None => client.call(Method::GET, "/v1/presence", None).await?,
    };
    let text = v["text"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(|t| format!(": {t}"))
        .unwrap_or_default();
    Ok((v.clone(), format!("{}{text}", v["status"].as_str().unwrap_or("?"))))
}

/// `inbound [anyone|contacts]`.
pub(crate) async fn inbound(client: &Client, setting: Option<String>) -> anyhow::Result<(Value, String)> {
    let v = match setting {
        Some(s) => {
            client
                .call(Method::PUT, "/v1/settings", Some(json!({ "inbound": s })))
                .await?
        }
        None => client.call(Method::GET, "/v1/settings", None).await?,
    };
    Ok((v.clone(), format!("inbound: {}", v["inbound"].as_str().unwrap_or("?"))))
}

/// `requests [accept|reject ACCOUNT]`.
pub(crate) async fn requests(
    client: &Client,
    action: Option<String>,
    account: Option<String>,
) -> anyhow::Result<(Value, String)> {
    match (action.as_deref(), account) {
        (None, _) => {
            let v = client.call(Method::GET, "/v1/requests", None).await?;
            let mut lines = Vec::new();
            for r in v["requests"].as_array().into_iter().flatten() {
                lines.push(format!("from {}:", r["account"].as_str().unwrap_or("")));
                for m in r["messages"].as_array().into_iter().flatten() {
                    lines.push(format!("  {}", line(m)));
                }
            }
            let human = if lines.is_empty() {
                "(no requests)".into()
            } else {
                lines.join("\n")
            };
            Ok((v, human))
        }
        (Some(what @ ("accept" | "reject")), Some(account)) => {
            let v = client
                .call(Method::POST, &format!("/v1/requests/{account}/{what}"), None)
                .await?;
            Ok((v, format!("{what} {account}: ok")))
        }
        _ => bail!("give `requests`, `requests accept ACCOUNT` or `requests reject ACCOUNT`"),
    }
}
