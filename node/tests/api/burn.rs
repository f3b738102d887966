//! Burn after reading through the API ("tap to view"): a received burn-after-reading message is
//! sealed, its body left out of the receiver's history, `message` event and client output, until
//! the read call hands the body out and starts the timer; then history shows it until the burn.
//! The sender's copy keeps its body throughout.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::support::{client, expect, expect_frame, is, spawn, ws, Api, WAIT};

/// The body: a string that appears nowhere else, so its absence from raw JSON means something.
const MARKER: &str = "sealed-marker-5c81e0a7";
/// Seconds after reading at which the receiver burns it.
const BURN_SECS: u64 = 2;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The first (newest) entry of a history answer.
fn newest(raw: &str) -> Value {
    let h: Value = serde_json::from_str(raw).unwrap();
    h["messages"][0].clone()
}

/// The sender's history shows its own body, unsealed.
async fn sender_sees_body(api: &Api<'_>, peer: &str, mid: &str) {
    let (s, raw) = api.get_text(&format!("/v1/conversations/{peer}/messages")).await;
    assert_eq!(s, 200, "{raw}");
    let m = newest(&raw);
    assert_eq!(
        (m["mid"].as_str(), m["body"].as_str()),
        (Some(mid), Some(MARKER)),
        "{raw}"
    );
    assert!(m.get("sealed").is_none(), "{raw}");
}

/// Runs a client command off the async workers (it waits for a child process).
async fn run_client(dir: std::path::PathBuf, args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        client(&dir, &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burn_after_reading_is_sealed_until_the_receiver_reads_it() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(dir_a.path(), None);
    let b = spawn(dir_b.path(), Some(&a.listen));
    let http = reqwest::Client::new();
    let api_a = Api {
        p: &a,
        http: http.clone(),
    };
    let api_b = Api { p: &b, http };
    let (mut ws_a, mut ws_b) = (ws(&a).await, ws(&b).await);

    let (s, sent) = api_a
        .post(
            "/v1/messages",
            json!({"to": b.account, "body": MARKER, "burn_after_read": BURN_SECS}),
        )
        .await;
    assert_eq!(s, 200, "{sent}");
    let mid = sent["mid"].as_str().unwrap().to_string();

    // The sender's own event carries the body; the receiver's is sealed, the body nowhere in it.
    let (ev, _) = expect_frame(&mut ws_a, "own message at A", |v| is(v, "message", &mid)).await;
    assert_eq!(ev["body"], MARKER, "{ev}");
    let (ev, raw) = expect_frame(&mut ws_b, "message at B", |v| is(v, "message", &mid)).await;
    assert!(!raw.contains(MARKER), "{raw}");
    assert_eq!(
        (ev["sealed"].as_bool(), ev["burn_after_read"].as_u64()),
        (Some(true), Some(BURN_SECS))
    );
    assert!(ev.get("body").is_none(), "{raw}");

    // The receiver's history: sealed, unread, no timer.
    let history_b = format!("/v1/conversations/{}/messages", a.account);
    let (s, raw) = api_b.get_text(&history_b).await;
    assert_eq!(s, 200, "{raw}");
    assert!(!raw.contains(MARKER), "{raw}");
    let m = newest(&raw);
    assert_eq!(
        (m["mid"].as_str(), m["state"].as_str()),
        (Some(mid.as_str()), Some("received"))
    );
    assert_eq!(m["sealed"], true, "{raw}");
    for absent in ["body", "read_at", "burn_at"] {
        assert!(m.get(absent).is_none(), "{absent} in {raw}");
    }
    // So does the client command, in both forms.
    let dir = dir_b.path().to_path_buf();
    for extra in [None, Some("--json")] {
        let mut args = vec!["history".to_string(), "--with".into(), a.account.clone()];
        args.extend(extra.map(String::from));
        let (ok, out, err) = run_client(dir.clone(), args).await;
        assert!(ok, "{err}");
        assert!(!out.contains(MARKER) && out.contains("sealed"), "{out}");
    }
    sender_sees_body(&api_a, &b.account, &mid).await;

    // Reading hands out the body and starts the timer.
    let before_read = now_ms();
    let (s, r) = api_b.post(&format!("/v1/messages/{mid}/read"), json!({})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["ok"].as_bool(), r["mid"].as_str(), r["body"].as_str()),
        (Some(true), Some(mid.as_str()), Some(MARKER))
    );
    let read_at = r["read_at"].as_u64().unwrap();
    let burn_at = r["burn_at"].as_u64().unwrap();
    assert!(read_at >= before_read, "{r}");
    assert_eq!(burn_at, read_at + BURN_SECS * 1000, "{r}");

    // Read, the message shows its body in history, with the times; and in the client's read,
    // which answers the first read time again.
    let (_, raw) = api_b.get_text(&history_b).await;
    let m = newest(&raw);
    assert_eq!(m["body"], MARKER, "{raw}");
    assert!(m.get("sealed").is_none(), "{raw}");
    assert_eq!(
        (m["read_at"].as_u64(), m["burn_at"].as_u64()),
        (Some(read_at), Some(burn_at))
    );
    let (ok, out, err) = run_client(dir, vec!["read".into(), mid.clone()]).await;
    assert!(ok, "{err}");
    assert!(out.contains(MARKER) && out.contains(&burn_at.to_string()), "{out}");
    sender_sees_body(&api_a, &b.account, &mid).await;

    // Burned once the deadline has passed: poll B's history.
    let burned_at = tokio::time::timeout(WAIT, async {
        loop {
            let (_, raw) = api_b.get_text(&history_b).await;
            if newest(&raw)["state"] == "burned" {
                assert!(!raw.contains(MARKER), "{raw}");
                return now_ms();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("burned at B");
    // The node turns the wall-clock deadline into a monotonic instant; allow it a few ms.
    assert!(burned_at + 20 >= burn_at, "burned {} ms early", burn_at - burned_at);
    expect(&mut ws_b, "burned at B", |v| is(v, "burned", &mid)).await;
    expect(&mut ws_a, "burned at A", |v| is(v, "burned", &mid)).await;
    let (s, r) = api_b.post(&format!("/v1/messages/{mid}/read"), json!({})).await;
    assert_eq!((s, r["error"]["code"].as_u64()), (410, Some(4111)), "{r}");
}
