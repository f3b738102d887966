//! What a hostile web page in the user's browser, and another local user, can and cannot do to a
//! running `tim-node`: security headers on every answer, the `Host`/`Origin` check (DNS
//! rebinding, cross-site WebSockets), the warning for a non-loopback API, and tokens that never
//! need the command line.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use serde_json::Value;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue, Error as WsError};

use super::support::{client_with, spawn, spawn_with, Proc, WAIT};

/// A raw HTTP/1.1 answer: status, lowercase header names with their values, body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends one request with exactly the `headers` given (a browser's `Host`, `Origin`, ...) to the
/// API of `p`, so the test controls what reqwest would otherwise fill in.
fn raw(p: &Proc, method: &str, path: &str, headers: &[(&str, &str)]) -> Raw {
    let addr = p.api.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_string(),
    }
}

/// The `host:port` of `p`'s API.
fn authority(p: &Proc) -> &str {
    p.api.trim_start_matches("http://")
}

fn port(p: &Proc) -> &str {
    authority(p).rsplit(':').next().unwrap()
}

fn assert_guarded(what: &str, r: &Raw) {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"));
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "connect-src 'self'",
    ] {
        assert!(csp.contains(part), "{what}: CSP {csp:?} lacks {part}");
    }
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(r.header(name), Some(value), "{what}: {name}");
    }
}

fn assert_refused(what: &str, r: &Raw) {
    assert_eq!(r.status, 403, "{what}: {}", r.body);
    let e = &r.json()["error"];
    assert_eq!(
        (e["code"].as_u64(), e["name"].as_str()),
        (Some(4403), Some("host_not_allowed")),
        "{what}: {e}"
    );
    assert_guarded(what, r);
}

#[test]
fn security_headers_on_the_page_api_answers_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = spawn(dir.path(), None);
    let host = authority(&p).to_string();
    let bearer = format!("Bearer {}", p.token);
    let ok = |path: &str, auth: bool| {
        let mut h = vec![("Host", host.as_str())];
        if auth {
            h.push(("Authorization", bearer.as_str()));
        }
        raw(&p, "GET", path, &h)
    };

    let page = ok("/", false);
    assert_eq!(page.status, 200);
    assert_guarded("page", &page);
    // Nothing inline for the CSP to forbid: the script and style are files.
    assert!(
        page.body.contains(r#"<script src="/page.js"></script>"#),
        "{}",
        page.body
    );
    for inline in ["<script>", "<style", " style=", "onclick=", "onsubmit="] {
        assert!(!page.body.contains(inline), "the page has {inline}");
    }
    for (path, kind) in [("/page.js", "text/javascript"), ("/page.css", "text/css")] {
        let r = ok(path, false);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").is_some_and(|t| t.starts_with(kind)), "{path}");
        assert_guarded(path, &r);
    }

    let status = ok("/v1/status", true);
    assert_eq!(status.status, 200);
    assert_guarded("an API answer", &status);
    let unauthorized = ok("/v1/status", false);
    assert_eq!(unauthorized.status, 401);
    assert_guarded("a 401", &unauthorized);
    let missing = ok("/v1/nothing-here", true);
    assert_eq!(missing.status, 404);
    assert_guarded("a 404", &missing);
    let bad = raw(
        &p,
        "POST",
        "/v1/messages/not-a-mid/revoke",
        &[("Host", &host), ("Authorization", &bearer)],
    );
    assert_eq!(bad.status, 400);
    assert_guarded("a 400", &bad);
    assert_guarded("metrics", &ok("/metrics", true));
}

#[test]
fn foreign_hosts_and_origins_are_refused_loopback_names_work() {
    let dir = tempfile::tempdir().unwrap();
    let p = spawn(dir.path(), None);
    let bearer = format!("Bearer {}", p.token);
    let port = port(&p).to_string();
    let get = |path: &str, host: &str, origin: Option<&str>| {
        let mut h = vec![("Host", host), ("Authorization", bearer.as_str())];
        if let Some(o) = origin {
            h.push(("Origin", o));
        }
        raw(&p, "GET", path, &h)
    };

    for host in [
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("127.0.0.1:{port}"),
        "localhost".to_string(),
    ] {
        let r = get("/v1/status", &host, None);
        assert_eq!(r.status, 200, "Host {host}: {}", r.body);
        assert_eq!(r.json()["account"], p.account.as_str());
    }
    // The page's own calls carry its origin.
    let own = format!("http://127.0.0.1:{port}");
    assert_eq!(get("/v1/status", &format!("127.0.0.1:{port}"), Some(&own)).status, 200);

    // A rebound name gets neither the page nor the API, even with the right token.
    let evil = format!("evil.example:{port}");
    for path in ["/", "/page.js", "/v1/status", "/metrics", "/v1/nothing-here"] {
        assert_refused(&format!("Host {evil} {path}"), &get(path, &evil, None));
    }
    assert_refused("no Host", &raw(&p, "GET", "/v1/status", &[("Authorization", &bearer)]));
    assert_refused(
        "a loopback name under another domain",
        &get("/v1/status", &format!("localhost.evil.example:{port}"), None),
    );
    // A page from another origin, or another local port, cannot call it.
    let host = format!("127.0.0.1:{port}");
    for origin in ["http://evil.example", "http://127.0.0.1:1", "null"] {
        assert_refused(&format!("Origin {origin}"), &get("/v1/status", &host, Some(origin)));
    }
    let r = raw(
        &p,
        "POST",
        "/v1/rooms/lobby/join",
        &[
            ("Host", &host),
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
        ],
    );
    assert_refused("a cross-site POST", &r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_with_a_foreign_host_or_origin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = spawn(dir.path(), None);
    let url = format!("ws://{}/v1/events?token={}", authority(&p), p.token);
    let with = |name: &str, value: &str| {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        req
    };
    let evil_host = format!("evil.example:{}", port(&p));
    for (name, value) in [("host", evil_host.as_str()), ("origin", "http://evil.example")] {
        match tokio_tungstenite::connect_async(with(name, value)).await {
            Err(WsError::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 403, "{name} {value}");
                let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["error"]["code"], 4403, "{body}");
            }
            other => panic!(
                "{name} {value}: upgrade not refused: {:?}",
                other.map(|(_, r)| r.status())
            ),
        }
    }
    // The page's own origin upgrades.
    let own = format!("http://{}", authority(&p));
    let (mut ws, resp) = tokio_tungstenite::connect_async(with("origin", &own)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    let _ = ws.close(None).await;
}

/// Collects `p`'s stderr until a line matches `pred` or the wait ends.
fn stderr_until(p: &Proc, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match p.stderr.recv_timeout(left) {
            Ok(line) => {
                let done = pred(&line);
                seen.push(line);
                if done {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    seen
}

#[test]
fn an_api_beyond_loopback_is_announced_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let p = spawn_with(dir.path(), &["--api", "0.0.0.0:0"], &[]);
    let lines = stderr_until(&p, |l| l.starts_with("warning:"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("warning:") && l.contains("reachable from the network")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("beyond loopback")),
        "{lines:?}"
    );
    // Loopback names still work; a foreign one is still refused.
    let port = port(&p).to_string();
    let bearer = format!("Bearer {}", p.token);
    let at = |host: &str| raw(&p, "GET", "/v1/status", &[("Host", host), ("Authorization", &bearer)]).status;
    let r = raw(
        &p,
        "GET",
        "/v1/status",
        &[("Host", &format!("127.0.0.1:{port}")), ("Authorization", &bearer)],
    );
    assert_eq!(r.status, 200);
    assert_eq!(at(&format!("0.0.0.0:{port}")), 200, "the bind address");
    assert_eq!(at(&format!("evil.example:{port}")), 403);
}

#[test]
fn operators_add_host_names_by_flag_or_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tim.toml");
    std::fs::write(&config, "api_allowed_hosts = [\"tim.example\", \"192.168.7.7\"]\n").unwrap();
    let config = config.to_str().unwrap();
    let from_file = spawn_with(&dir.path().join("a"), &["--config", config], &[]);
    let from_flag = spawn_with(&dir.path().join("b"), &["--api-allowed-hosts", "Tim.Example"], &[]);
    for p in [&from_file, &from_flag] {
        let port = port(p).to_string();
        let bearer = format!("Bearer {}", p.token);
        let at = |host: &str| raw(p, "GET", "/v1/status", &[("Host", host), ("Authorization", &bearer)]).status;
        assert_eq!(at(&format!("tim.example:{port}")), 200);
        assert_eq!(at(&format!("evil.example:{port}")), 403);
    }
    let at = |host: &str| {
        raw(
            &from_file,
            "GET",
            "/v1/status",
            &[
                ("Host", host),
                ("Authorization", &format!("Bearer {}", from_file.token)),
            ],
        )
        .status
    };
    assert_eq!(at("192.168.7.7"), 200);

    // A wrong entry stops the node before it starts.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tim-node"))
        .args([
            "run",
            "--api",
            "127.0.0.1:0",
            "--api-allowed-hosts",
            "http://tim.example",
            "--data-dir",
        ])
        .arg(dir.path().join("c"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("without a port"),
        "{out:?}"
    );
}

#[test]
fn tokens_come_from_a_file_or_the_environment_not_argv() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("token");
    std::fs::write(&file, "file-token-0123456789abcdef\n").unwrap();
    let file = file.to_str().unwrap();
    let env_token = "env-token-0123456789abcdef";

    // The node serves a token from a file or from TIM_TOKEN, and then writes none of its own.
    let by_file = spawn_with(&root.path().join("a"), &["--token-file", file], &[]);
    let by_env = spawn_with(&root.path().join("b"), &[], &[("TIM_TOKEN", env_token)]);
    for (p, token, dir) in [
        (&by_file, "file-token-0123456789abcdef", "a"),
        (&by_env, env_token, "b"),
    ] {
        assert!(!root.path().join(dir).join("api-token").exists());
        let host = authority(p).to_string();
        let at = |t: &str| {
            raw(
                p,
                "GET",
                "/v1/status",
                &[("Host", &host), ("Authorization", &format!("Bearer {t}"))],
            )
            .status
        };
        assert_eq!(at(token), 200, "{dir}");
        assert_eq!(at("wrong"), 401, "{dir}");
    }

    // Client commands take the same sources; --token still works but says why not to use it.
    let elsewhere = tempfile::tempdir().unwrap();
    let api = by_file.api.as_str();
    let run = |args: &[&str], env: &[(&str, &str)]| client_with(elsewhere.path(), args, env);
    let (ok, out, err) = run(&["status", "--json", "--api", api, "--token-file", file], &[]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["account"],
        by_file.account.as_str()
    );
    assert!(!err.contains("warning"), "{err}");
    let (ok, _, err) = run(&["status", "--api", by_env.api.as_str()], &[("TIM_TOKEN", env_token)]);
    assert!(ok && !err.contains("warning"), "{err}");
    let (ok, _, err) = run(&["status", "--api", api, "--token", "file-token-0123456789abcdef"], &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: --token is visible to other local users"),
        "{err}"
    );
    // A token file that is not there is an error, not a fallback.
    let (ok, _, err) = run(&["status", "--api", api, "--token-file", "/nonexistent/token"], &[]);
    assert!(!ok && err.contains("token file"), "{err}");
}

/// The data dir's `api-token` is private to its owner: another local user cannot read it.
#[cfg(unix)]
#[test]
fn the_token_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let _p = spawn(dir.path(), None);
    let mode = std::fs::metadata(dir.path().join("api-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");
}
