//! `storage`: one node's store filled with many messages; restart time, history pages, RSS and
//! disk, measured in a child process (`storage-open`).
use std::time::{Duration, Instant};

use anyhow::bail;
use tim_node::{protocol::Recipient, Config, Node};

use crate::report::{cpu_time, rss_mb, Row};

/// Storage at scale: fills one node's store with `count` signed direct messages (100 senders, so
/// 100 conversations), then, in a fresh child process (so its RSS is the node's own), times the
/// node's restart and history pages, and reports RSS and disk.
pub(crate) async fn storage(count: usize) -> anyhow::Result<Vec<Row>> {
    use tim_node::{
        protocol::{AccountKey, Message},
        storage::{State, Store},
    };
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("node");
    let (node, _) = Node::start(Config::loopback(&data)).await?;
    let me = node.account();
    node.shutdown().await?;
    drop(node);
    let senders: Vec<AccountKey> = (0..100).map(|_| AccountKey::generate()).collect();
    let started = Instant::now();
    let cpu = cpu_time();
    let samples = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(String, String)>> {
        // History at scale from 100 correspondents: the stranger quotas (100 messages each until
        // answered) would refuse most of it, and they are not what this scenario measures.
        let config = tim_node::storage::Config {
            stranger_messages_each: usize::MAX,
            stranger_messages_total: usize::MAX,
            ..Default::default()
        };
        let store = Store::open(data.join("db"), config)?;
        let base = 1_700_000_000_000u64;
        let mut samples = Vec::new();
        const BATCH: usize = 1_000;
        for start in (0..count).step_by(BATCH) {
            let end = (start + BATCH).min(count);
            // Sign on both cores; signing is setup, the store is what this scenario is about.
            let sign = |range: std::ops::Range<usize>| -> anyhow::Result<Vec<_>> {
                range
                    .map(|i| {
                        let from = &senders[i % senders.len()];
                        let body = format!("stored message {i:0>185}").into_bytes();
                        let nonce = (i as u128).to_be_bytes();
                        Ok(Message::sign_with_nonce(
                            from,
                            Recipient::Account(me),
                            body,
                            base + i as u64,
                            None,
                            nonce,
                        )?)
                    })
                    .collect()
            };
            let mid = (start + end) / 2;
            let (left, right) = std::thread::scope(|s| {
                let right = s.spawn(|| sign(mid..end));
                (sign(start..mid), right.join())
            });
            let mut messages = left?;
            messages.extend(right.map_err(|_| anyhow::anyhow!("signing thread panicked"))??);
            let items: Vec<_> = messages.iter().map(|m| (m, State::Received)).collect();
            for outcome in store.put_messages(&items)? {
                outcome?;
            }
            // Ten sample points spread over the fill, each in another sender's conversation.
            let every = (count / BATCH / 10).max(1);
            if start > 0 && (start / BATCH) % every == 0 {
                let m = &messages[(start / BATCH) % messages.len()];
                samples.push((m.head().from.to_string(), m.id().to_string()));
            }
            if start % 200_000 == 0 && start > 0 {
                println!("  stored {start} messages ({:.0} s)", started.elapsed().as_secs_f64());
            }
        }
        store.flush()?;
        Ok(samples)
    })
    .await??;
    let fill = Row::new(
        &format!("fill: sign (2 cores) + put_messages x{count}"),
        vec![],
        started.elapsed(),
    )
    .with_count(count)
    .with_cpu(cpu_time() - cpu);
    std::fs::write(dir.path().join("samples.json"), serde_json::to_vec(&samples)?)?;
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("storage-open")
        .arg(dir.path())
        .output()?;
    if !out.status.success() {
        bail!("child failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let ms = |k: &str| Duration::from_secs_f64(r[k].as_f64().unwrap_or(0.0) / 1e3);
    let list = |k: &str| -> Vec<Duration> {
        r[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_f64())
                    .map(|v| Duration::from_secs_f64(v / 1e3))
                    .collect()
            })
            .unwrap_or_default()
    };
    println!(
        "child process: rss after restart and the page reads {:.0} MB; database on disk {:.0} MB",
        r["rss_mb"].as_f64().unwrap_or(0.0),
        r["disk_bytes"].as_f64().unwrap_or(0.0) / 1e6
    );
    let newest = list("newest_ms");
    let deep = list("deep_ms");
    let (nw, dw) = (newest.iter().sum(), deep.iter().sum());
    Ok(vec![
        fill,
        Row::new(
            "restart: Node::start until listening",
            vec![ms("restart_ms")],
            ms("restart_ms"),
        ),
        Row::new("history: newest page of 50 (Node::history)", newest, nw),
        Row::new("history: page of 50 deep in a conversation", deep, dw),
    ])
}

/// The child half of `storage`: restart the node on the filled store, read pages, report JSON.
pub(crate) async fn storage_open(dir: &std::path::Path) -> anyhow::Result<()> {
    use tim_node::protocol::{AccountId, MessageId};
    let samples: Vec<(String, String)> = serde_json::from_slice(&std::fs::read(dir.join("samples.json"))?)?;
    let started = Instant::now();
    let (node, _) = Node::start(Config::loopback(dir.join("node"))).await?;
    let restart = started.elapsed();
    let mut newest = Vec::new();
    let mut deep = Vec::new();
    for _ in 0..20 {
        for (from, mid) in &samples {
            let conversation = tim_node::Conversation::Peer(from.parse::<AccountId>()?);
            let t = Instant::now();
            let page = node.history(&conversation, None, 50).await?;
            newest.push(t.elapsed());
            anyhow::ensure!(page.entries.len() == 50, "short page");
            let t = Instant::now();
            let page = node.history(&conversation, Some(mid.parse::<MessageId>()?), 50).await?;
            deep.push(t.elapsed());
            anyhow::ensure!(!page.entries.is_empty(), "empty deep page");
        }
    }
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let disk = node.disk_bytes().await?;
    let report = serde_json::json!({
        "restart_ms": ms(&restart),
        "newest_ms": newest.iter().map(ms).collect::<Vec<_>>(),
        "deep_ms": deep.iter().map(ms).collect::<Vec<_>>(),
        "rss_mb": rss_mb(),
        "disk_bytes": disk,
    });
    node.shutdown().await?;
    println!("{report}");
    Ok(())
}
