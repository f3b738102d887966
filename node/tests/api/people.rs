//! The inbox, contacts and blocks through the HTTP API, the WebSocket and the CLI of two real
//! `tim-node` processes, with the errors each refusal gives.

use serde_json::{json, Value};

use super::support::{assert_error, client, expect, spawn, ws, Api};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_contacts_and_blocks_through_the_api() {
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
    let (ida, idb) = (a.account.clone(), b.account.clone());

    // Two messages from A: B's inbox lists the conversation with 2 unread, A's with none.
    let mut mids = Vec::new();
    for body in ["first", "second"] {
        let (s, sent) = api_a.post("/v1/messages", json!({"to": idb, "body": body})).await;
        assert_eq!(s, 200, "{sent}");
        let mid = sent["mid"].as_str().unwrap().to_string();
        expect(&mut ws_b, "the message at B", |v| {
            v["type"] == "message" && v["mid"] == mid.as_str()
        })
        .await;
        mids.push(mid);
    }
    let (s, inbox) = api_b.get("/v1/conversations").await;
    assert_eq!(s, 200, "{inbox}");
    let convs = inbox["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 1, "{inbox}");
    assert_eq!(convs[0]["to"], ida.as_str());
    assert_eq!(convs[0]["unread"], 2);
    assert_eq!(convs[0]["last"]["mid"], mids[1].as_str());
    assert_eq!(convs[0]["last"]["body"], "second");
    assert_eq!(inbox["next"], Value::Null);
    let (_, inbox_a) = api_a.get("/v1/conversations").await;
    assert_eq!(inbox_a["conversations"][0]["unread"], 0, "{inbox_a}");
    // The CLI shows the same.
    let (ok, out, err) = client(dir_b.path(), &["conversations"]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("@{ida}  2 unread")), "{out}");
    // Reading the conversation clears the count.
    let (s, read) = api_b.post(&format!("/v1/conversations/{ida}/read"), json!({})).await;
    assert_eq!((s, read["marked"].as_u64()), (200, Some(2)), "{read}");
    let (_, inbox) = api_b.get("/v1/conversations").await;
    assert_eq!(inbox["conversations"][0]["unread"], 0);
    // A revoke: `last` is the marker, without the body.
    let (s, _) = api_a.post(&format!("/v1/messages/{}/revoke", mids[1]), json!({})).await;
    assert_eq!(s, 200);
    expect(&mut ws_b, "the revoke at B", |v| v["type"] == "revoked").await;
    let (_, inbox) = api_b.get("/v1/conversations").await;
    let last = &inbox["conversations"][0]["last"];
    assert_eq!(last["state"], "revoked", "{inbox}");
    assert!(last.get("body").is_none(), "{inbox}");
    // Bad pages.
    assert_error(
        api_b.get("/v1/conversations?limit=0").await,
        400,
        4104,
        "bad_parameters",
    );
    assert_error(
        api_b.get("/v1/conversations?limit=201").await,
        400,
        4104,
        "bad_parameters",
    );
    assert_error(api_b.get("/v1/conversations?before=zz").await, 400, 4113, "malformed");
    assert_error(
        api_b.get("/v1/conversations?before=00ff").await,
        400,
        4104,
        "bad_parameters",
    );

    // A asks B to be a contact; B sees the request and accepts; A hears it.
    let (s, asked) = api_a
        .post(&format!("/v1/contacts/{idb}/request"), json!({"note": "it's a"}))
        .await;
    assert_eq!((s, asked["state"].as_str()), (200, Some("requested")), "{asked}");
    let e = expect(&mut ws_b, "the contact request", |v| v["type"] == "contact_request").await;
    assert_eq!(
        (e["from"].as_str(), e["note"].as_str()),
        (Some(ida.as_str()), Some("it's a"))
    );
    let (_, listed) = api_b.get("/v1/contacts").await;
    assert_eq!(listed["contacts"][0]["account"], ida.as_str(), "{listed}");
    assert_eq!(listed["contacts"][0]["state"], "incoming");
    assert_eq!(listed["contacts"][0]["note"], "it's a");
    let (ok, out, err) = client(dir_b.path(), &["contacts", "accept", &ida]);
    assert!(ok && out.contains("now contact"), "{out}{err}");
    expect(&mut ws_a, "the accept at A", |v| {
        v["type"] == "contact" && v["state"] == "contact"
    })
    .await;
    let (ok, out, _) = client(dir_a.path(), &["contacts"]);
    assert!(ok && out.contains(&format!("{idb}  contact")), "{out}");
    // Refusals.
    assert_error(
        api_b.post(&format!("/v1/contacts/{ida}/accept"), json!({})).await,
        404,
        4109,
        "not_found",
    );
    assert_error(
        api_a.post(&format!("/v1/contacts/{idb}/request"), json!({})).await,
        409,
        4101,
        "already_exists",
    );
    assert_error(
        api_a.post(&format!("/v1/contacts/{ida}/request"), json!({})).await,
        400,
        4104,
        "bad_parameters",
    );
    assert_error(
        api_a.post("/v1/contacts/not-an-account/request", json!({})).await,
        400,
        4106,
        "unknown_account",
    );
    let err = assert_error(
        api_a.post(&format!("/v1/contacts/{idb}/reject"), json!({})).await,
        404,
        4109,
        "not_found",
    );
    assert_eq!(err["account"], idb.as_str());
    // B removes A: both forget.
    let (s, _) = api_b
        .call(reqwest::Method::DELETE, &format!("/v1/contacts/{ida}"), None)
        .await;
    assert_eq!(s, 200);
    expect(&mut ws_a, "the remove at A", |v| {
        v["type"] == "contact" && v["state"] == "none"
    })
    .await;
    let long = "x".repeat(281);
    assert_error(
        api_a
            .post(&format!("/v1/contacts/{idb}/request"), json!({"note": long}))
            .await,
        413,
        4114,
        "too_large",
    );

    // B blocks A: A's next message is refused with 4110, B sends nothing to A.
    let (s, blocked) = api_b.post(&format!("/v1/blocks/{ida}"), json!({})).await;
    assert_eq!((s, blocked["ok"].as_bool()), (200, Some(true)), "{blocked}");
    let (_, list) = api_b.get("/v1/blocks").await;
    assert_eq!(list["blocks"], json!([ida]));
    let (s, sent) = api_a.post("/v1/messages", json!({"to": idb, "body": "hello?"})).await;
    assert_eq!(s, 200);
    let mid = sent["mid"].as_str().unwrap().to_string();
    let failed = expect(&mut ws_a, "the refusal", |v| {
        v["type"] == "delivery_failed" && v["mid"] == mid.as_str()
    })
    .await;
    assert_eq!(
        (failed["code"].as_u64(), failed["name"].as_str()),
        (Some(4110), Some("blocked"))
    );
    let (_, history) = api_b.get(&format!("/v1/conversations/{ida}/messages")).await;
    assert!(
        history["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["mid"] != mid.as_str()),
        "{history}"
    );
    let err = assert_error(
        api_b.post("/v1/messages", json!({"to": ida, "body": "no"})).await,
        403,
        4110,
        "blocked",
    );
    assert_eq!(err["to"], ida.as_str());
    let (ok, out, _) = client(dir_b.path(), &["blocks"]);
    assert!(ok && out.trim() == ida, "{out}");
    let (ok, out, err) = client(dir_b.path(), &["unblock", &ida]);
    assert!(ok, "{out}{err}");
    assert_error(
        api_b
            .call(reqwest::Method::DELETE, &format!("/v1/blocks/{ida}"), None)
            .await,
        404,
        4109,
        "not_found",
    );

    // B takes messages from contacts only: A's next one is held as a request, listed apart, then
    // admitted from the CLI.
    let (ok, out, err) = client(dir_b.path(), &["inbound", "contacts"]);
    assert!(ok && out.contains("inbound: contacts"), "{out}{err}");
    assert_error(
        api_b
            .call(
                reqwest::Method::PUT,
                "/v1/settings",
                Some(json!({"inbound": "friends"})),
            )
            .await,
        400,
        4104,
        "bad_parameters",
    );
    let (s, sent) = api_a.post("/v1/messages", json!({"to": idb, "body": "may I?"})).await;
    assert_eq!(s, 200);
    let mid = sent["mid"].as_str().unwrap().to_string();
    expect(&mut ws_b, "the held request", |v| {
        v["type"] == "message_request" && v["mid"] == mid.as_str()
    })
    .await;
    let (_, held) = api_b.get("/v1/requests").await;
    assert_eq!(held["requests"][0]["account"], ida.as_str(), "{held}");
    assert_eq!(held["requests"][0]["messages"][0]["body"], "may I?");
    let (ok, out, _) = client(dir_b.path(), &["requests"]);
    assert!(ok && out.contains("may I?"), "{out}");
    let (ok, out, err) = client(dir_b.path(), &["requests", "accept", &ida]);
    assert!(ok, "{out}{err}");
    let (_, history) = api_b.get(&format!("/v1/conversations/{ida}/messages")).await;
    assert_eq!(history["messages"][0]["mid"], mid.as_str(), "{history}");
    // Presence from the CLI.
    let (ok, out, err) = client(dir_a.path(), &["presence", "away", "--text", "lunch"]);
    assert!(ok && out.contains("away: lunch"), "{out}{err}");
    assert_error(
        api_a
            .call(reqwest::Method::PUT, "/v1/presence", Some(json!({"status": "gone"})))
            .await,
        400,
        4104,
        "bad_parameters",
    );
}
