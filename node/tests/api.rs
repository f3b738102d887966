//! Real `tim-node` processes driven only through the HTTP API and the WebSocket: DHT routing,
//! revoke, burn, burn after reading, permission errors, a room, and bad requests; `hostile`: what
//! a web page in the user's browser and another local user can and cannot do; `burn`: a
//! burn-after-reading message stays sealed until the receiver reads it; `people`: the inbox,
//! contacts and blocks; `rooms`: founded rooms, their roles and errors; `docs`: every curl example of docs/api.md, run as written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "api/burn.rs"]
mod burn;
#[path = "api/docs.rs"]
mod docs;
#[path = "api/hostile.rs"]
mod hostile;
#[path = "api/people.rs"]
mod people;
#[path = "api/rooms.rs"]
mod rooms;
#[path = "api/support.rs"]
mod support;

use std::{path::Path, process::Command, time::Duration};

use serde_json::{json, Value};

use support::{assert_error, client, expect, is, spawn, ws, Api, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_through_the_api() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = spawn(dirs[0].path(), None);
    let b = spawn(dirs[1].path(), Some(&a.listen));
    let c = spawn(dirs[2].path(), Some(&a.listen));
    let http = reqwest::Client::new();
    let (api_a, api_b, api_c) = (
        Api {
            p: &a,
            http: http.clone(),
        },
        Api {
            p: &b,
            http: http.clone(),
        },
        Api {
            p: &c,
            http: http.clone(),
        },
    );
    let (mut ws_a, mut ws_b, mut ws_c) = (ws(&a).await, ws(&b).await, ws(&c).await);

    // `tim-node id` prints the same account.
    let out = Command::new(env!("CARGO_BIN_EXE_tim-node"))
        .args(["id", "--data-dir"])
        .arg(dirs[1].path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), b.account);

    let (s, status) = api_b.get("/v1/status").await;
    assert_eq!(s, 200);
    assert_eq!(status["account"], b.account.as_str());
    assert!(status["listen_addrs"][0].as_str().unwrap().contains("/p2p/"));

    // 1:1 from C to B, found through the DHT (B and C only know A).
    let (s, sent) = api_c
        .post("/v1/messages", json!({"to": b.account, "body": "hello bob"}))
        .await;
    assert_eq!(s, 200, "{sent}");
    let mid = sent["mid"].as_str().unwrap().to_string();
    assert_eq!(sent["conversation"]["to"], b.account.as_str());
    let got = expect(&mut ws_b, "message at B", |v| is(v, "message", &mid)).await;
    assert_eq!(
        (got["from"].as_str(), got["body"].as_str()),
        (Some(c.account.as_str()), Some("hello bob"))
    );
    expect(&mut ws_c, "delivered at C", |v| is(v, "delivered", &mid)).await;

    // Permission errors name the mid and change nothing.
    let e = assert_error(
        api_b.post(&format!("/v1/messages/{mid}/revoke"), json!({})).await,
        403,
        4105,
        "permission_denied",
    );
    assert_eq!(e["mid"], mid.as_str());
    assert_error(
        api_c.post(&format!("/v1/messages/{mid}/burn"), json!({})).await,
        403,
        4105,
        "permission_denied",
    );
    let unknown = "ab".repeat(32);
    assert_error(
        api_c.post(&format!("/v1/messages/{unknown}/revoke"), json!({})).await,
        404,
        4109,
        "not_found",
    );
    assert_error(
        api_c.post("/v1/messages/not-a-mid/revoke", json!({})).await,
        400,
        4113,
        "malformed",
    );
    let (_, h) = api_b.get(&format!("/v1/conversations/{}/messages", c.account)).await;
    assert_eq!(h["messages"][0]["state"], "received");
    assert_eq!(h["messages"][0]["body"], "hello bob");

    // Revoke by the sender, seen on both WebSockets and in both histories.
    let (s, ack) = api_c.post(&format!("/v1/messages/{mid}/revoke"), json!({})).await;
    assert_eq!(s, 200, "{ack}");
    assert_eq!(ack, json!({"ok": true, "mid": mid, "kind": "revoke", "to": b.account}));
    let ev = expect(&mut ws_b, "revoked at B", |v| is(v, "revoked", &mid)).await;
    assert_eq!(ev["by"], c.account.as_str());
    expect(&mut ws_c, "revoked at C", |v| is(v, "revoked", &mid)).await;
    for (api, peer) in [(&api_b, &c.account), (&api_c, &b.account)] {
        let (_, h) = api.get(&format!("/v1/conversations/{peer}/messages?limit=10")).await;
        assert_eq!(h["messages"][0]["state"], "revoked");
        assert!(h["messages"][0].get("body").is_none(), "{h}");
    }

    // B's node confirms the revoke with a signed receipt: C sees where its deletion took effect.
    let ev = expect(&mut ws_c, "deletion confirmed at C", |v| {
        is(v, "deletion_confirmed", &mid)
    })
    .await;
    assert_eq!(ev["by"], b.account.as_str());
    let (s, d) = api_c.get(&format!("/v1/messages/{mid}/deletion")).await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(
        (&d["kind"], &d["expected"], &d["pending"], &d["confirmed"][0]["account"]),
        (&json!("revoke"), &json!([b.account]), &json!([]), &json!(b.account))
    );
    let (_, h) = api_c
        .get(&format!("/v1/conversations/{}/messages?limit=10", b.account))
        .await;
    assert_eq!(
        (&h["messages"][0]["confirmed"], &h["messages"][0]["expected"]),
        (&json!(1), &json!(1))
    );
    // Only the account that made the deletion has one; an id without a tombstone has none.
    assert_error(
        api_b.get(&format!("/v1/messages/{mid}/deletion")).await,
        403,
        4105,
        "permission_denied",
    );
    assert_error(
        api_c.get(&format!("/v1/messages/{unknown}/deletion")).await,
        404,
        4109,
        "not_found",
    );
    let (_, h) = api_b
        .get(&format!("/v1/conversations/{}/messages?limit=10", c.account))
        .await;
    assert!(h["messages"][0].get("confirmed").is_none(), "{h}");

    // Burn by the receiver.
    let (_, sent) = api_c
        .post("/v1/messages", json!({"to": b.account, "body": "burn me"}))
        .await;
    let mid2 = sent["mid"].as_str().unwrap().to_string();
    expect(&mut ws_b, "message 2 at B", |v| is(v, "message", &mid2)).await;
    let (s, ack) = api_b.post(&format!("/v1/messages/{mid2}/burn"), json!({})).await;
    assert_eq!(
        (s, ack["kind"].as_str(), ack["to"].as_str()),
        (200, Some("burn"), Some(c.account.as_str()))
    );
    expect(&mut ws_c, "burned at C", |v| {
        is(v, "burned", &mid2) && v["by"] == b.account.as_str()
    })
    .await;

    // Burn after reading: 1 second after B marks it read.
    let (_, sent) = api_c
        .post(
            "/v1/messages",
            json!({"to": b.account, "body": "ephemeral", "burn_after_read": 1}),
        )
        .await;
    let mid3 = sent["mid"].as_str().unwrap().to_string();
    let ev = expect(&mut ws_b, "message 3 at B", |v| is(v, "message", &mid3)).await;
    assert_eq!(ev["burn_after_read"], 1);
    let (s, r) = api_b.post(&format!("/v1/messages/{mid3}/read"), json!({})).await;
    assert_eq!(s, 200);
    assert!(r["burn_at"].as_u64().is_some());
    expect(&mut ws_b, "burned 3 at B", |v| is(v, "burned", &mid3)).await;
    expect(&mut ws_c, "burned 3 at C", |v| is(v, "burned", &mid3)).await;

    // A room of three with a revoke; burning a room message is 4104.
    for api in [&api_a, &api_b, &api_c] {
        let (s, j) = api.post("/v1/rooms/lobby/join", json!({})).await;
        assert_eq!((s, j["room"].as_str()), (200, Some("lobby")));
    }
    tokio::time::timeout(WAIT, async {
        loop {
            let (_, st) = api_a.get("/v1/status").await;
            if st["rooms"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["room"] == "lobby" && r["peers"].as_u64() >= Some(2))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("room peers");
    let (s, sent) = api_c
        .post("/v1/messages", json!({"room": "lobby", "body": "hi room"}))
        .await;
    assert_eq!(s, 200, "{sent}");
    let rmid = sent["mid"].as_str().unwrap().to_string();
    for w in [&mut ws_a, &mut ws_b] {
        let ev = expect(w, "room message", |v| is(v, "message", &rmid)).await;
        assert_eq!(ev["room"], "lobby");
    }
    let e = assert_error(
        api_b.post(&format!("/v1/messages/{rmid}/burn"), json!({})).await,
        400,
        4104,
        "bad_parameters",
    );
    assert_eq!(e["mid"], rmid.as_str());
    let (s, ack) = api_c.post(&format!("/v1/messages/{rmid}/revoke"), json!({})).await;
    assert_eq!((s, ack["room"].as_str()), (200, Some("lobby")));
    for w in [&mut ws_a, &mut ws_b] {
        expect(w, "room revoke", |v| is(v, "revoked", &rmid)).await;
    }
    let (_, h) = api_a.get("/v1/rooms/lobby/messages").await;
    assert_eq!(h["messages"][0]["state"], "revoked");

    // Bad requests get a clear error and change nothing.
    let (_, before) = api_c.get(&format!("/v1/conversations/{}/messages", b.account)).await;
    let raw = http
        .post(format!("{}/v1/messages", c.api))
        .bearer_auth(&c.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], 4113);
    let big = "x".repeat(70 * 1024);
    let e = assert_error(
        api_c.post("/v1/messages", json!({"to": b.account, "body": big})).await,
        413,
        4114,
        "too_large",
    );
    assert_eq!(e["to"], b.account.as_str());
    let e = assert_error(
        api_c.post("/v1/messages", json!({"to": "bob", "body": "hi"})).await,
        400,
        4106,
        "unknown_account",
    );
    assert_eq!(e["to"], "bob");
    assert_error(
        api_c.post("/v1/messages", json!({"body": "nowhere"})).await,
        400,
        4104,
        "bad_parameters",
    );
    assert_error(
        api_c
            .get(&format!("/v1/conversations/{}/messages?limit=0", b.account))
            .await,
        400,
        4104,
        "bad_parameters",
    );
    let (_, after) = api_c.get(&format!("/v1/conversations/{}/messages", b.account)).await;
    assert_eq!(before, after);
    // A body sent as `curl -d` sends it (form content type) is read as the JSON it is.
    let raw = http
        .post(format!("{}/v1/messages", c.api))
        .bearer_auth(&c.token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(json!({"to": b.account, "body": "sent like curl -d"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 200);

    // No token, a wrong token, a WebSocket without token: 401.
    let resp = http.get(format!("{}/v1/status", c.api)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], 4401);
    let resp = http
        .get(format!("{}/v1/status", c.api))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let url = format!("{}/v1/events", c.api.replace("http://", "ws://"));
    assert!(tokio_tungstenite::connect_async(url).await.is_err());

    let _ = ws_a.close(None).await;
}

#[test]
fn sigterm_stops_the_node_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let p = spawn(dir.path(), None);
    let pid = p.child.id();
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let mut p = p;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn demo_script_runs_and_every_check_holds() {
    let out = Command::new(env!("CARGO_BIN_EXE_tim-node"))
        .args(["demo", "--script"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("all 12 checks held"), "{stdout}");
    // It cleans up after itself.
    let dir = stdout.lines().next().and_then(|l| l.rsplit(' ').next()).unwrap();
    assert!(!Path::new(dir).exists(), "{dir} left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_is_public_and_metrics_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let p = spawn(dir.path(), None);
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/", p.api)).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("<title>tim</title>"));
    let resp = http.get(format!("{}/metrics", p.api)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = http
        .get(format!("{}/metrics", p.api))
        .bearer_auth(&p.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    for name in [
        "tim_peers 0",
        "tim_messages_out_total 0",
        "tim_forged_rejected_total 0",
        "tim_outbox_depth 0",
        "tim_storage_bytes ",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
}

#[test]
fn client_commands_talk_to_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = spawn(dir.path(), None);
    let peer = tim_node::protocol::AccountKey::generate().account_id().to_string();
    let (ok, out, err) = client(dir.path(), &["status", "--json"]);
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["peers"], 0);
    // `--api` as `run --api` takes it (host:port), or as a URL; from an empty data dir, so the
    // flag is what finds the node.
    let elsewhere = tempfile::tempdir().unwrap();
    let host_port = node.api.trim_start_matches("http://").to_string();
    for api in [host_port.as_str(), node.api.as_str()] {
        let (ok, out, err) = client(
            elsewhere.path(),
            &["status", "--json", "--api", api, "--token", &node.token],
        );
        assert!(ok, "--api {api}: {err}");
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap()["account"],
            status["account"]
        );
    }

    let (ok, out, err) = client(dir.path(), &["send", "--to", &peer, "hello from the cli", "--json"]);
    assert!(ok, "{err}");
    let mid = serde_json::from_str::<Value>(&out).unwrap()["mid"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out, _) = client(dir.path(), &["history", "--with", &peer]);
    assert!(ok);
    assert!(out.contains("hello from the cli") && out.contains(&mid), "{out}");

    let (ok, out, _) = client(dir.path(), &["revoke", &mid]);
    assert!(ok && out.contains("revoked"), "{out}");
    let (ok, out, _) = client(dir.path(), &["history", "--with", &peer, "--json"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["messages"][0]["state"],
        "revoked"
    );
    // The peer is offline (nobody serves that account): its confirmation is pending.
    let (ok, out, err) = client(dir.path(), &["deletion", &mid]);
    assert!(ok, "{err}");
    assert!(
        out.contains("deleted on 0 of 1") && out.contains(&format!("pending     {peer}")),
        "{out}"
    );
    let (ok, out, _) = client(dir.path(), &["history", "--with", &peer]);
    assert!(ok && out.contains("deleted on 0 of 1"), "{out}");

    // Failures exit non-zero with the code and the message.
    let (ok, _, err) = client(dir.path(), &["revoke", &mid]);
    assert!(!ok);
    assert!(err.starts_with("error: error 4111 tombstoned"), "{err}");
    let (ok, _, err) = client(dir.path(), &["burn", "nonsense"]);
    assert!(!ok && err.contains("4113"), "{err}");
    let (ok, out, _) = client(dir.path(), &["rooms", "join", "lobby"]);
    assert!(ok && out.contains("join lobby"), "{out}");
    let (ok, out, _) = client(dir.path(), &["status"]);
    assert!(ok && out.contains("lobby"), "{out}");
}
