//! Helpers of the API tests: a `tim-node run` process, HTTP and WebSocket calls, client runs.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// A running `tim-node run` process; killed on drop.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) api: String,
    /// The token in the data dir's `api-token` (empty if the node serves a supplied one).
    pub(crate) token: String,
    pub(crate) account: String,
    pub(crate) listen: String,
    /// What the process wrote on stderr so far, line by line.
    pub(crate) stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn spawn(dir: &Path, bootstrap: Option<&str>) -> Proc {
    let mut args = vec![];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap", b]);
    }
    spawn_with(dir, &args, &[])
}

/// `tim-node run` on loopback with `dir`, more `args` and `env`; waits for its banner.
pub(crate) fn spawn_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tim-node"));
    cmd.args(["run", "--data-dir"]).arg(dir);
    cmd.args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
    if !args.contains(&"--api") {
        cmd.args(["--api", "127.0.0.1:0"]);
    }
    cmd.args(args).env_remove("TIM_TOKEN").envs(env.iter().copied());
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    let rx = lines(child.stdout.take().unwrap());
    let (mut api, mut account, mut listen) = (None, None, None);
    while api.is_none() {
        let line = rx.recv_timeout(WAIT).expect("tim-node printed its addresses");
        let (key, value) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let value = value.trim().to_string();
        match key {
            "account" => account = Some(value),
            "listen" => listen = listen.or(Some(value)),
            "api" => api = Some(value),
            _ => {}
        }
    }
    let token = std::fs::read_to_string(dir.join("api-token"))
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    Proc {
        child,
        api: api.unwrap(),
        token,
        account: account.unwrap(),
        listen: listen.unwrap(),
        stderr,
    }
}

/// The lines `out` produces, read by a thread.
fn lines(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub(crate) struct Api<'a> {
    pub(crate) p: &'a Proc,
    pub(crate) http: reqwest::Client,
}

impl Api<'_> {
    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.p.api))
            .bearer_auth(&self.p.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
    /// A GET whose answer is kept as the raw text, to check what the bytes on the wire hold.
    pub(crate) async fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.p.api))
            .bearer_auth(&self.p.token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn ws(p: &Proc) -> Ws {
    let url = format!("{}/v1/events?token={}", p.api.replace("http://", "ws://"), p.token);
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Waits for an event frame matching `pred`.
pub(crate) async fn expect(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    expect_frame(ws, what, pred).await.0
}

/// Waits for an event frame matching `pred`; returns it parsed and as the text that arrived.
pub(crate) async fn expect_frame(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> (Value, String) {
    tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if pred(&v) {
                        return (v, t.to_string());
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended waiting for {what}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

pub(crate) fn is(v: &Value, kind: &str, mid: &str) -> bool {
    v["type"] == kind && v["mid"] == mid
}

pub(crate) fn assert_error(got: (u16, Value), status: u16, code: u64, name: &str) -> Value {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert_eq!(got.1["error"]["name"], name, "{}", got.1);
    assert!(got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    got.1["error"].clone()
}

/// Runs a client command against the node in `dir`; returns (exit ok, stdout, stderr).
pub(crate) fn client(dir: &Path, args: &[&str]) -> (bool, String, String) {
    client_with(dir, args, &[])
}

/// [`client`] with more environment variables.
pub(crate) fn client_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tim-node"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("TIM_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
