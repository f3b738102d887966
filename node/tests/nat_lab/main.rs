//! The NAT lab: real `tim-node` processes behind real NATs. A relay/bootstrap node (`--relay`) on
//! a lab "internet", and two home nodes, each behind its own router doing nftables masquerade
//! (see `netns`). The home nodes find each other through the DHT, exchange 1:1 messages, revoke
//! one, burn one after reading, share a room, and the test reports whether their connection
//! became direct (hole punched) or stayed relayed. It needs root and network namespaces; where
//! they are missing it says so on one line and passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netns;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use netns::{run_in, Lab, RELAY_IPS};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tim-node");

/// A line the test harness does not capture: the lab's verdicts are shown in every run.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A `tim-node run` process in a namespace; killed on drop.
struct LabNode {
    name: &'static str,
    ns: String,
    dir: PathBuf,
    child: Child,
}

impl LabNode {
    /// Starts `tim-node run` in `ns` with data dir `root/<dir>` and log `root/<name>.log`.
    fn start(name: &'static str, dir: &str, ns: &str, root: &Path, args: &[String]) -> LabNode {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(root.join(format!("{name}.log"))).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, BIN, "run", "--api", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .args(args)
            .env("RUST_LOG", "info,tim_node=debug,libp2p=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().unwrap();
        LabNode {
            name,
            ns: ns.to_string(),
            dir,
            child,
        }
    }

    /// A client command's JSON answer.
    fn cli(&self, args: &[&str]) -> Result<Value, String> {
        let dir = self.dir.display().to_string();
        let mut all = args.to_vec();
        all.extend_from_slice(&["--data-dir", &dir, "--json"]);
        let out = run_in(&self.ns, BIN, &all)?;
        serde_json::from_str(out.trim()).map_err(|e| format!("{}: not JSON ({e}): {out}", self.name))
    }

    fn status(&self) -> Result<Value, String> {
        self.cli(&["status"])
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_tail(&self, root: &Path) -> String {
        let text = std::fs::read_to_string(root.join(format!("{}.log", self.name))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for LabNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns `Some`, or fails with `what` and the last error after `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<Option<T>, String>) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    let mut last;
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => last = "not yet".into(),
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(format!("{what}: not within {limit:?} (last: {last})"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The entry for `mid` in a history answer.
fn entry<'a>(history: &'a Value, mid: &str) -> Option<&'a Value> {
    history["messages"].as_array()?.iter().find(|m| m["mid"] == mid)
}

fn text(v: &Value, field: &str) -> Result<String, String> {
    v[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no `{field}` in {v}"))
}

#[test]
fn home_nodes_behind_nats_reach_each_other_through_the_dht_and_a_relay() {
    let lab = match Lab::create() {
        Ok(lab) => lab,
        Err(why) => {
            say(&format!("nat_lab: skipped: {why}"));
            return;
        }
    };
    let root = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let result = scenario(&lab, root.path(), &mut nodes);
    if let Err(e) = result {
        let logs: Vec<String> = nodes
            .iter()
            .map(|n: &LabNode| format!("--- {} log ---\n{}", n.name, n.log_tail(root.path())))
            .collect();
        if std::env::var_os("NAT_LAB_KEEP").is_some() {
            say(&format!("nat_lab: logs kept in {}", root.keep().display()));
        }
        panic!("{e}\n{}", logs.join("\n"));
    }
    // The nodes stop before the namespaces go.
    drop(nodes);
    drop(lab);
}

/// Indexes into the lab's nodes.
const RELAY_A: usize = 0;
const H1: usize = 2;
const H2: usize = 3;

/// The relays this node holds a live reservation on.
fn relays_of(status: &Value) -> Vec<String> {
    status["relays"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect()
}

fn scenario(lab: &Lab, root: &Path, nodes: &mut Vec<LabNode>) -> Result<(), String> {
    let mut bootstrap = vec!["--bootstrap".to_string()];
    let mut relay_peers = Vec::new();
    for (i, ip) in RELAY_IPS.iter().enumerate() {
        let tcp = format!("/ip4/{ip}/tcp/4001");
        let quic = format!("/ip4/{ip}/udp/4001/quic-v1");
        let relay_args = vec![
            "--relay".to_string(),
            "--listen".into(),
            tcp.clone(),
            quic.clone(),
            "--external-addr".into(),
            tcp.clone(),
            quic.clone(),
        ];
        let (name, dir) = if i == 0 {
            ("relay-a", "relay-a")
        } else {
            ("relay-b", "relay-b")
        };
        nodes.push(LabNode::start(name, dir, &lab.inet, root, &relay_args));
        let status = wait_for("a relay's API", Duration::from_secs(60), || Ok(nodes[i].status().ok()))?;
        let peer = text(&status, "peer_id")?;
        bootstrap.push(format!("{tcp}/p2p/{peer}"));
        bootstrap.push(format!("{quic}/p2p/{peer}"));
        relay_peers.push(peer);
    }
    // Each home node holds one reservation, so losing its relay means finding the other.
    let config = root.join("home.toml");
    std::fs::write(&config, "relay_reservations = 1\n").map_err(|e| e.to_string())?;
    let mut home_args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "--listen".to_string(),
        "/ip4/0.0.0.0/tcp/4001".into(),
        "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
    ];
    home_args.extend(bootstrap);
    nodes.push(LabNode::start("h1", "h1", &lab.homes[0], root, &home_args));
    nodes.push(LabNode::start("h2", "h2", &lab.homes[1], root, &home_args));

    // Each home node learns it is private and holds a reservation on one of the relays.
    let mut accounts = Vec::new();
    for home in [&nodes[H1], &nodes[H2]] {
        let status = wait_for(
            &format!("{} private with a relay reservation", home.name),
            Duration::from_secs(120),
            || {
                let s = home.status()?;
                let relays = relays_of(&s);
                let ok = s["reachability"] == "private"
                    && relays.len() == 1
                    && relays.iter().all(|r| relay_peers.contains(r));
                Ok(ok.then_some(s))
            },
        )?;
        accounts.push(text(&status, "account")?);
    }
    say("nat_lab: both home nodes are private and reserved a slot on a relay");
    exchange(&nodes[H1], &nodes[H2], &accounts)?;
    failover(lab, root, nodes, &home_args, &relay_peers, &accounts)
}

/// Messages, revoke, burn after reading and a room between the two home nodes, then whether
/// their connection became direct.
fn exchange(h1: &LabNode, h2: &LabNode, accounts: &[String]) -> Result<(), String> {
    let (a1, a2) = (accounts[0].clone(), accounts[1].clone());

    // A 1:1 message from h1 to h2: h1 finds h2's route record (circuit address) in the DHT.
    let sent = h1.cli(&["send", "--to", &a2, "hello across two NATs"])?;
    let mid1 = text(&sent, "mid")?;
    wait_for("h2 receives h1's message", Duration::from_secs(90), || {
        let history = h2.cli(&["history", "--with", &a1])?;
        Ok(entry(&history, &mid1)
            .filter(|e| e["body"] == "hello across two NATs")
            .map(|_| ()))
    })?;
    // A reply the other way.
    let reply = h2.cli(&["send", "--to", &a1, "hello back"])?;
    let reply_mid = text(&reply, "mid")?;
    wait_for("h1 receives h2's reply", Duration::from_secs(90), || {
        let history = h1.cli(&["history", "--with", &a2])?;
        Ok(entry(&history, &reply_mid).map(|_| ()))
    })?;
    say("nat_lab: 1:1 messages delivered both ways");

    // Revoke: h2 shows the message revoked and its body gone.
    h1.cli(&["revoke", &mid1])?;
    wait_for("h2 shows the message revoked", Duration::from_secs(60), || {
        let history = h2.cli(&["history", "--with", &a1])?;
        Ok(entry(&history, &mid1)
            .filter(|e| e["state"] == "revoked" && e.get("body").is_none())
            .map(|_| ()))
    })?;

    // Burn after reading: h1 opens h2's sealed message; a second later it is burned on both sides.
    let sealed = h2.cli(&["send", "--to", &a1, "--burn-after-read", "1", "read me once"])?;
    let mid2 = text(&sealed, "mid")?;
    wait_for("h1 receives the sealed message", Duration::from_secs(60), || {
        let history = h1.cli(&["history", "--with", &a2])?;
        Ok(entry(&history, &mid2).map(|_| ()))
    })?;
    let opened = h1.cli(&["read", &mid2])?;
    if opened["body"] != "read me once" {
        return Err(format!("h1 read {opened}"));
    }
    for (node, other) in [(h1, &a2), (h2, &a1)] {
        wait_for(
            &format!("{} shows the message burned", node.name),
            Duration::from_secs(60),
            || {
                let history = node.cli(&["history", "--with", other])?;
                Ok(entry(&history, &mid2)
                    .filter(|e| e["state"] == "burned" && e.get("body").is_none())
                    .map(|_| ()))
            },
        )?;
    }
    say("nat_lab: revoke and burn after reading applied on both sides");

    // A room: both join, h1 posts, h2 gets it; h1 revokes it, h2 shows it revoked.
    for home in [h1, h2] {
        home.cli(&["rooms", "join", "natlab"])?;
    }
    wait_for("the room's members see each other", Duration::from_secs(60), || {
        let peers = |s: &Value| {
            s["rooms"]
                .as_array()
                .and_then(|rooms| rooms.iter().find(|r| r["room"] == "natlab"))
                .and_then(|r| r["peers"].as_u64())
                .unwrap_or(0)
        };
        Ok((peers(&h1.status()?) >= 1 && peers(&h2.status()?) >= 1).then_some(()))
    })?;
    let posted = h1.cli(&["send", "--room", "natlab", "hello room"])?;
    let mid3 = text(&posted, "mid")?;
    wait_for("h2 receives the room message", Duration::from_secs(60), || {
        let history = h2.cli(&["history", "--room", "natlab"])?;
        Ok(entry(&history, &mid3).filter(|e| e["body"] == "hello room").map(|_| ()))
    })?;
    h1.cli(&["revoke", &mid3])?;
    wait_for("h2 shows the room message revoked", Duration::from_secs(60), || {
        let history = h2.cli(&["history", "--room", "natlab"])?;
        Ok(entry(&history, &mid3).filter(|e| e["state"] == "revoked").map(|_| ()))
    })?;
    say("nat_lab: room message delivered and revoked");

    // Whether the two homes' connection became direct: give hole punching a moment to finish
    // (it starts when the relayed connection opens), then report what the status says.
    let h2_peer = text(&h2.status()?, "peer_id")?;
    let direct = wait_for("a direct connection", Duration::from_secs(15), || {
        let s = h1.status()?;
        let direct = s["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["peer"] == h2_peer.as_str() && c["relayed"] == false);
        Ok(direct.then_some(()))
    })
    .is_ok();
    let relayed = |s: &Value| {
        s["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["peer"] == h2_peer.as_str() && c["relayed"] == true)
            .count()
    };
    if direct {
        // Once a direct connection exists, the relayed one is closed (it only held a circuit).
        wait_for("the relayed connection closed", Duration::from_secs(20), || {
            Ok((relayed(&h1.status()?) == 0).then_some(()))
        })?;
    }
    let relayed_now = relayed(&h1.status()?);
    say(&format!(
        "nat_lab: the home nodes' connection {} ({relayed_now} relayed connection(s) still open)",
        if direct {
            "became direct (hole punched)"
        } else {
            "stayed relayed (hole punching did not succeed)"
        }
    ));
    Ok(())
}

/// h2's relay stops: h2 reserves on the other relay and republishes its route record; a
/// restarted h1 (no connection to h2 left) finds it through the DHT and reaches it there.
fn failover(
    lab: &Lab,
    root: &Path,
    nodes: &mut [LabNode],
    home_args: &[String],
    relay_peers: &[String],
    accounts: &[String],
) -> Result<(), String> {
    let old = relays_of(&nodes[H2].status()?);
    let lost = old.first().ok_or("h2 holds no relay")?.clone();
    let index = relay_peers.iter().position(|p| *p == lost).ok_or("unknown relay")?;
    let other = relay_peers[1 - index].clone();
    nodes[H1].stop();
    nodes[RELAY_A + index].stop();
    wait_for("h2 moves to the other relay", Duration::from_secs(90), || {
        Ok((relays_of(&nodes[H2].status()?) == [other.clone()]).then_some(()))
    })?;
    say("nat_lab: h2's relay stopped; h2 reserved a slot on the other relay");
    nodes[H1] = LabNode::start("h1-restarted", "h1", &lab.homes[0], root, home_args);
    let h1 = &nodes[H1];
    wait_for("h1 back", Duration::from_secs(60), || Ok(h1.status().ok()))?;
    let sent = h1.cli(&["send", "--to", &accounts[1], "after the relay moved"])?;
    let mid = text(&sent, "mid")?;
    wait_for(
        "h2 receives a message through its new relay",
        Duration::from_secs(90),
        || {
            let history = nodes[H2].cli(&["history", "--with", &accounts[0]])?;
            Ok(entry(&history, &mid).map(|_| ()))
        },
    )?;
    say("nat_lab: a restarted h1 found h2 through the DHT at its new relay and delivered");
    Ok(())
}
