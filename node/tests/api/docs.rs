//! Docs that run: every `curl` example in docs/api.md, as written, against a live node. Account
//! and message placeholders (`4e2a…`, `5f0c…`) become a real peer's account and the id of the
//! message the send example created; everything else is run as the docs show it.

use std::process::Command;

use serde_json::{json, Value};

use super::support::{expect, spawn, ws, Api};

/// The `curl` lines of the `sh` blocks of docs/api.md, in order.
fn curl_examples() -> Vec<String> {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    let mut in_sh = false;
    let mut out = Vec::new();
    for line in docs.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh" && !in_sh;
            continue;
        }
        if in_sh && line.starts_with("curl ") {
            out.push(line.to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_curl_example_in_the_api_docs_works_as_written() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = spawn(dir_a.path(), None);
    let b = spawn(dir_b.path(), Some(&a.listen));
    let api_b = Api {
        p: &b,
        http: reqwest::Client::new(),
    };
    // B reaches A first, so A's examples find B online (the stream example needs that).
    let mut ws_b = ws(&b).await;
    let (s, sent) = api_b.post("/v1/messages", json!({"to": a.account, "body": "hi"})).await;
    assert_eq!(s, 200, "{sent}");
    let mid = sent["mid"].as_str().unwrap().to_string();
    expect(&mut ws_b, "delivered to A", |v| {
        v["type"] == "delivered" && v["mid"] == mid.as_str()
    })
    .await;

    let examples = curl_examples();
    assert!(examples.len() >= 15, "found only {} curl examples", examples.len());
    let mut last_mid: Option<String> = None;
    for example in &examples {
        let mut line = example.replace("4e2a…", &b.account);
        if line.contains("5f0c…") {
            let mid = last_mid
                .as_deref()
                .unwrap_or_else(|| panic!("no message yet for {example}"));
            line = line.replace("5f0c…", mid);
        }
        assert!(!line.contains('…'), "a placeholder this test does not know: {example}");
        let out = tokio::task::spawn_blocking({
            let (line, api, token) = (line.clone(), a.api.clone(), a.token.clone());
            move || {
                Command::new("sh")
                    .args(["-c", &line])
                    .env("API", api)
                    .env("TOKEN", token)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let body: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{example}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
        assert!(body.get("error").is_none(), "{example}: {body}");
        if let Some(mid) = body["mid"].as_str() {
            last_mid = Some(mid.to_string());
        }
    }
}
