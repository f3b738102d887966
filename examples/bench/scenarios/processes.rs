//! `processes`: a network of real `tim-node` processes on loopback (the release binary beside
//! this example: `cargo build --release -p tim-node` first). Each node bootstraps from one random
//! earlier node; after the network idled, the scenario reads every node's connections and RSS,
//! then has a room of random members (none chosen for being connected) find each other, deliver
//! messages and their revokes, and a late member find the room and catch up.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::{report::Row, STEP};

/// One `tim-node run` process and how to reach its API.
struct Proc {
    child: Child,
    api: String,
    token: String,
    http: reqwest::Client,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {v}");
        }
        Ok(v)
    }

    async fn status(&self) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, "/v1/status", None).await
    }

    /// Whether the node sees at least one peer subscribed to `room`.
    async fn has_room_peer(&self, room: &str) -> anyhow::Result<bool> {
        let s = self.status().await?;
        Ok(s["rooms"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["room"] == room && r["peers"].as_u64().unwrap_or(0) >= 1))
    }

    /// A line of the process's `/proc/<pid>/status` in MB (`VmRSS`, `RssAnon`, `RssFile`).
    fn status_mb(&self, field: &str) -> f64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("tim-node"))
        .context("no target dir")?;
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build --release -p tim-node` first",
            bin.display()
        );
    }
    Ok(bin)
}

async fn start(bin: &Path, dir: &Path, bootstrap: Option<&str>) -> anyhow::Result<Proc> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Command::new(bin);
    cmd.args([
        "run",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(dir)
    .env("RUST_LOG", "warn")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(dir.join("log"))?);
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let child = cmd.spawn()?;
    // The node writes these files once it listens; one may exist a moment before it is written.
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).map(|s| s.trim().to_string());
    let deadline = Instant::now() + STEP;
    let (api, token) = loop {
        if let (Ok(api), Ok(token)) = (read("api-addr"), read("api-token")) {
            if !api.is_empty() && !token.is_empty() {
                break (api, token);
            }
        }
        if Instant::now() > deadline {
            bail!("{} did not start", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Ok(Proc {
        child,
        api,
        token,
        http: reqwest::Client::new(),
    })
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        v.get(((v.len().saturating_sub(1)) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    (at(0.5), at(0.99), at(1.0))
}

/// Polls `check` every 50 ms until it is true; the time it took, or an error after `limit`.
async fn time_until<F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let start = Instant::now();
    loop {
        if check().await.unwrap_or(false) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn room_states(p: &Proc, room: &str) -> anyhow::Result<Vec<(String, String)>> {
    let v = p
        .call(
            reqwest::Method::GET,
            &format!("/v1/rooms/{room}/messages?limit=500"),
            None,
        )
        .await?;
    Ok(v["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["mid"].as_str().unwrap_or("").to_string(),
                m["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

pub(crate) async fn processes(nodes: usize, members: usize, count: usize, idle: Duration) -> anyhow::Result<Vec<Row>> {
    use rand::seq::SliceRandom;
    let bin = binary()?;
    let dir = tempfile::tempdir()?;
    let mut procs: Vec<Proc> = Vec::with_capacity(nodes);
    let mut boots: Vec<String> = Vec::with_capacity(nodes);
    let started = Instant::now();
    for i in 0..nodes {
        let boot = boots.choose(&mut rand::thread_rng()).cloned();
        let p = start(&bin, &dir.path().join(i.to_string()), boot.as_deref()).await?;
        let s = p.status().await?;
        let addr = s["listen_addrs"][0].as_str().context("no listen address")?.to_string();
        boots.push(addr);
        procs.push(p);
    }
    println!(
        "started {nodes} processes in {:.1} s; idling {idle:?}",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(idle).await;
    let mut conns = Vec::new();
    let (mut rss, mut anon, mut file) = (Vec::new(), Vec::new(), Vec::new());
    for p in &procs {
        conns.push(p.status().await?["peers"].as_u64().unwrap_or(0) as f64);
        rss.push(p.status_mb("VmRSS"));
        anon.push(p.status_mb("RssAnon"));
        file.push(p.status_mb("RssFile"));
    }
    let (c50, c99, cmax) = stats(conns);
    let (r50, r99, rmax) = stats(rss);
    println!("connected peers per node: p50 {c50:.0}, p99 {c99:.0}, max {cmax:.0}");
    println!("idle RSS per node: p50 {r50:.1} MB, p99 {r99:.1} MB, max {rmax:.1} MB");
    // File-backed pages (the binary's code, mapped libraries) are shared by every process.
    let ((a50, _, amax), (f50, _, fmax)) = (stats(anon), stats(file));
    println!("  of which anonymous: p50 {a50:.1} MB, max {amax:.1} MB; file-backed (shared): p50 {f50:.1} MB, max {fmax:.1} MB");

    // A room of random members; the last one joins only after the others exchanged messages.
    let mut order: Vec<usize> = (0..nodes).collect();
    order.shuffle(&mut rand::thread_rng());
    let chosen: Vec<usize> = order.into_iter().take(members + 1).collect();
    let (late, members_idx) = (chosen[members], &chosen[..members]);
    let room = "bench-network";
    let mut find = Vec::new();
    let joined = Instant::now();
    for &i in members_idx {
        procs[i]
            .call(reqwest::Method::POST, &format!("/v1/rooms/{room}/join"), None)
            .await?;
    }
    for &i in members_idx {
        let p = &procs[i];
        let t = time_until(STEP, || async { p.has_room_peer(room).await })
            .await
            .context("a member did not find the room")?;
        // From the joins to this member's first room peer (members are polled one after the
        // other, so this is an upper bound for the later ones).
        let _ = t;
        find.push(joined.elapsed());
    }
    let find_wall = joined.elapsed();
    let sender = &procs[members_idx[0]];
    let mut mids = Vec::new();
    let sent = Instant::now();
    for k in 0..count {
        let v = sender
            .call(
                reqwest::Method::POST,
                "/v1/messages",
                Some(json!({"room": room, "body": format!("network message {k}")})),
            )
            .await?;
        mids.push(v["mid"].as_str().unwrap_or("").to_string());
    }
    let all_with = |states: Vec<(String, String)>, state: Option<&str>| {
        mids.iter().all(|m| {
            states
                .iter()
                .any(|(id, s)| id == m && state.is_none_or(|want| s == want))
        })
    };
    let mut delivered = Vec::new();
    for &i in members_idx {
        let p = &procs[i];
        delivered.push(
            match time_until(STEP * 2, || async { Ok(all_with(room_states(p, room).await?, None)) }).await {
                Ok(t) => t,
                Err(e) => {
                    // Say how far each member got, and how it sees the room, before giving up.
                    for &j in members_idx {
                        let held = room_states(&procs[j], room).await.map(|s| s.len()).unwrap_or(0);
                        let status = procs[j].status().await.unwrap_or(Value::Null);
                        let room_peers = status["rooms"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|r| r["room"] == room)
                            .map(|r| r["peers"].clone())
                            .unwrap_or(Value::Null);
                        println!(
                            "member {j}: {held} of {count} messages, {room_peers} room peers, {} peers",
                            status["peers"]
                        );
                    }
                    return Err(e.context("a member missed messages"));
                }
            },
        );
    }
    let delivered_wall = sent.elapsed();
    let revoked_at = Instant::now();
    for m in &mids {
        sender
            .call(reqwest::Method::POST, &format!("/v1/messages/{m}/revoke"), None)
            .await?;
    }
    let mut revoked = Vec::new();
    for &i in members_idx {
        let p = &procs[i];
        revoked.push(
            time_until(STEP * 2, || async {
                Ok(all_with(room_states(p, room).await?, Some("revoked")))
            })
            .await
            .context("a member missed revokes")?,
        );
    }
    let revoked_wall = revoked_at.elapsed();
    // The late member: finds the room and catches up on every message, revoked.
    let late_p = &procs[late];
    let late_start = Instant::now();
    late_p
        .call(reqwest::Method::POST, &format!("/v1/rooms/{room}/join"), None)
        .await?;
    let late_found = time_until(STEP, || async { late_p.has_room_peer(room).await })
        .await
        .context("the late member did not find the room")?;
    let late_caught_up = time_until(STEP * 2, || async {
        Ok(all_with(room_states(late_p, room).await?, Some("revoked")))
    })
    .await
    .context("the late member did not catch up")?;
    let late_wall = late_start.elapsed();
    Ok(vec![
        Row::new(
            &format!("{members} members find the room (join → a room peer)"),
            find,
            find_wall,
        ),
        Row::new(
            &format!("{count} messages → every member stored all (per member)"),
            delivered,
            delivered_wall,
        ),
        Row::new(
            &format!("{count} revokes → every member tombstoned all (per member)"),
            revoked,
            revoked_wall,
        ),
        Row::new("late member: join → a room peer", vec![late_found], late_wall),
        Row::new(
            "late member: join → caught up, all revoked",
            vec![late_caught_up],
            late_wall,
        ),
    ])
}
