//! Founded rooms through the HTTP API, the WebSocket and the CLI of two real `tim-node`
//! processes: create, invite, join, roles, remove, cancel, with the error each refusal gives.

use reqwest::Method;
use serde_json::json;

use super::support::{assert_error, client, expect, spawn, ws, Api};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_room_through_the_api_and_the_cli() {
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

    let (s, created) = api_a.post("/v1/rooms", json!({"name": "crew", "private": true})).await;
    assert_eq!(s, 200, "{created}");
    let room = created["room"].as_str().unwrap().to_string();
    assert!(room.starts_with("r."), "{room}");
    assert_eq!(created["founder"], ida.as_str());
    assert_eq!(created["private"], true);
    assert_error(
        api_a.post("/v1/rooms", json!({"name": "crew"})).await,
        409,
        4101,
        "already_exists",
    );
    assert_error(
        api_a.post("/v1/rooms", json!({"nmae": "x"})).await,
        400,
        4113,
        "malformed",
    );
    assert_error(api_b.get(&format!("/v1/rooms/{room}")).await, 404, 4109, "not_found");
    assert_error(
        api_b
            .post("/v1/messages", json!({"room": room, "body": "let me in"}))
            .await,
        400,
        4104,
        "bad_parameters",
    );

    // The founder invites B (routes through the DHT); B joins on the `room_invite`.
    let (s, v) = api_a
        .post(&format!("/v1/rooms/{room}/invite"), json!({"account": idb}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"]["invited"][0], idb.as_str());
    expect(&mut ws_b, "the invitation at B", |v| {
        v["type"] == "room_invite" && v["room"] == room.as_str() && v["by"] == ida.as_str() && v["name"] == "crew"
    })
    .await;
    let (s, v) = api_b.post(&format!("/v1/rooms/{room}/join"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    expect(&mut ws_a, "B joined, at A", |v| {
        v["type"] == "room_member" && v["account"] == idb.as_str() && v["change"] == "joined"
    })
    .await;
    let (s, v) = api_a.get(&format!("/v1/rooms/{room}")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "crew");
    assert_eq!(v["managers"], json!([ida]));
    assert_eq!(v["members"].as_array().unwrap().len(), 2);

    // Roles: a plain member neither invites, promotes nor cancels; the founder cannot leave.
    assert_error(
        api_b
            .post(&format!("/v1/rooms/{room}/invite"), json!({"account": ida}))
            .await,
        403,
        4105,
        "permission_denied",
    );
    assert_error(
        api_b
            .post(&format!("/v1/rooms/{room}/managers"), json!({"account": idb}))
            .await,
        400,
        4104,
        "bad_parameters",
    );
    assert_error(
        api_b.post(&format!("/v1/rooms/{room}/cancel"), json!({})).await,
        403,
        4105,
        "permission_denied",
    );
    assert_error(
        api_a.post(&format!("/v1/rooms/{room}/leave"), json!({})).await,
        400,
        4104,
        "bad_parameters",
    );
    assert_error(
        api_a
            .post(&format!("/v1/rooms/{room}/approve"), json!({"account": idb}))
            .await,
        409,
        4117,
        "repeated",
    );
    assert_error(
        api_a
            .post(&format!("/v1/rooms/{room}/kick"), json!({"account": "nope"}))
            .await,
        400,
        4106,
        "unknown_account",
    );

    // Promote and demote through the CLI and the API.
    let (ok, out, err) = client(dir_a.path(), &["rooms", "promote", &room, &idb]);
    assert!(ok, "{err}");
    assert!(out.contains("manages"), "{out}");
    let (ok, out, _) = client(dir_a.path(), &["rooms", "show", &room]);
    assert!(ok);
    assert!(
        out.contains("crew") && out.contains("private") && out.contains(&idb),
        "{out}"
    );
    let (s, v) = api_a
        .call(Method::DELETE, &format!("/v1/rooms/{room}/managers/{idb}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"]["managers"], json!([ida]));
    assert_error(
        api_a
            .call(Method::DELETE, &format!("/v1/rooms/{room}/managers/{idb}"), None)
            .await,
        404,
        4109,
        "not_found",
    );

    // Remove B; then cancel: later posts get 410/4108.
    let (s, v) = api_a
        .post(&format!("/v1/rooms/{room}/kick"), json!({"account": idb}))
        .await;
    assert_eq!(s, 200, "{v}");
    expect(&mut ws_b, "B's removal at B", |v| {
        v["type"] == "room_member" && v["account"] == idb.as_str() && v["change"] == "kicked"
    })
    .await;
    let (ok, out, err) = client(dir_a.path(), &["rooms", "cancel", &room]);
    assert!(ok, "{err}");
    assert!(out.contains("cancelled"), "{out}");
    assert_error(
        api_a
            .post("/v1/messages", json!({"room": room, "body": "anyone?"}))
            .await,
        410,
        4108,
        "room_cancelled",
    );
    let (ok, out, _) = client(dir_a.path(), &["rooms", "create", "second", "--private"]);
    assert!(ok && out.starts_with("created r."), "{out}");
}
