//! How client commands print what the API answers, for people (`--json` prints it raw).

use serde_json::Value;

/// One human-readable line for a history entry or an event.
pub(super) fn line(v: &Value) -> String {
    let who = |k: &str| {
        v[k].as_str()
            .map(|s| format!("{}…", &s[..s.len().min(12)]))
            .unwrap_or_default()
    };
    match v["type"].as_str() {
        Some("contact") => {
            return format!(
                "contact {}: {}",
                v["account"].as_str().unwrap_or(""),
                v["state"].as_str().unwrap_or("")
            )
        }
        Some("contact_request") => {
            return format!(
                "contact request from {}: {}",
                v["from"].as_str().unwrap_or(""),
                v["note"].as_str().unwrap_or("")
            )
        }
        _ => {}
    }
    let place = v["room"]
        .as_str()
        .map(|r| format!("#{r}"))
        .unwrap_or_else(|| format!("@{}", who("to")));
    match v["state"].as_str().or(v["type"].as_str()) {
        Some(s @ ("revoked" | "burned")) => {
            let tally = match (v["confirmed"].as_u64(), v["expected"].as_u64()) {
                (Some(n), Some(of)) => format!(", deleted on {n} of {of}"),
                (Some(n), None) => format!(", deleted on {n}"),
                _ => String::new(),
            };
            format!(
                "{} {place} [{s} by {}{tally}]",
                v["mid"].as_str().unwrap_or(""),
                who("by")
            )
        }
        Some("deletion_confirmed") => format!(
            "{} deletion confirmed by {}",
            v["mid"].as_str().unwrap_or(""),
            who("by")
        ),
        Some("delivered") => format!("{} delivered to {}", v["mid"].as_str().unwrap_or(""), who("to")),
        Some("peer") => format!(
            "peer {} {}",
            v["peer"].as_str().unwrap_or(""),
            if v["connected"] == true {
                "connected"
            } else {
                "disconnected"
            }
        ),
        Some("delivery_failed") => format!(
            "{} delivery failed: {} {}",
            v["mid"].as_str().unwrap_or(""),
            v["code"],
            v["name"].as_str().unwrap_or("")
        ),
        state => format!(
            "{} {place} {} {}: {}",
            v["mid"].as_str().unwrap_or(""),
            who("from"),
            state
                .filter(|s| *s != "message")
                .map(|s| format!("({s})"))
                .unwrap_or_default(),
            body(v),
        ),
    }
}

/// A message's body, or for a sealed one (an unread burn-after-reading message) how to open it:
/// the API withholds that body until `read` starts its timer.
fn body(v: &Value) -> String {
    if v["sealed"] == true {
        return format!(
            "[sealed: `read {}` shows it; it burns {} s later]",
            v["mid"].as_str().unwrap_or(""),
            v["burn_after_read"]
        );
    }
    if v.get("undecryptable").is_some() {
        return "[encrypted for others: cannot be read here]".into();
    }
    v["body"].as_str().unwrap_or("").to_string()
}

/// `revoke of <mid>: deleted on 1 of 1`, then a line per confirming replica and per pending one.
pub(super) fn deletion_report(v: &Value) -> String {
    let confirmed = v["confirmed"].as_array().cloned().unwrap_or_default();
    let of = match v["expected"].as_array() {
        Some(expected) => format!(" of {}", expected.len()),
        None => String::new(),
    };
    let mut out = format!(
        "{} of {}: deleted on {}{of}",
        v["kind"].as_str().unwrap_or(""),
        v["mid"].as_str().unwrap_or(""),
        confirmed.len()
    );
    for c in &confirmed {
        out.push_str(&format!(
            "\n  confirmed by {} at {}",
            c["account"].as_str().unwrap_or(""),
            c["at"]
        ));
    }
    for p in v["pending"].as_array().into_iter().flatten() {
        out.push_str(&format!("\n  pending     {}", p.as_str().unwrap_or("")));
    }
    out
}
