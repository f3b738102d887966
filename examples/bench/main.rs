//! Benchmark harness: tim against bare rust-libp2p on the same transport, in the same run.
//!
//! `cargo run --release -p tim-node --example bench -- <scenario> [options]`, scenarios:
//! - `direct [--count 500]`: 1:1 send-to-ack latency and throughput vs a bare request-response echo
//!   (latency taken in alternating rounds of the echo, tim encrypted and tim plain);
//! - `room [--members 10] [--count 200] [--tim-only|--bare-only] [--no-receipts]`: fan-out and
//!   revoke convergence vs bare gossipsub as a star and all connected (alternating rounds;
//!   `--tim-only` skips the baselines, `--bare-only` runs only the all-connected one; both for
//!   profiling; `--no-receipts`: members send no deletion receipts; `--private`: a private
//!   founded room, its posts end-to-end encrypted to the members);
//! - `catchup [--count 1000] [--revokes count/20]`: a member that missed messages and revokes
//!   returns; time until it converged;
//! - `ingest [--count 10000]`: messages verified and stored per second by one node (through room
//!   sync) vs a bare ed25519 verify loop;
//! - `storage [--count 1000000]`: history pages, restart time, RSS and disk with that many messages;
//! - `processes [--nodes 100] [--members 10] [--count 20] [--idle-secs 60]`: real `tim-node`
//!   processes (the release binary: `cargo build --release -p tim-node` first), each bootstrapped
//!   from a random earlier one; connections and RSS per node after idling, then a room of random
//!   members: finding each other, messages and revokes to every member, a late member catching up;
//! - `network [--nodes 1000] [--members nodes] [--count 50] [--receipts]`: that many tim nodes in
//!   this process over the memory transport, a room of `members` (one node joins late) against
//!   bare gossipsub on the same connection graph; `--receipts`: members send deletion receipts.
//!
//! Prints the machine, a table (p50 / p99 / max, throughput, CPU time of the phase) and writes
//! `bench-<scenario>.json`.
//!
//! Layout: this file reads the command line and dispatches; `report` holds the rows and their
//! output; `baselines` the bare libp2p and ed25519 baselines; `scenarios/` one module per
//! scenario (`catchup` serves `ingest` too; `storage` also holds the `storage-open` child).
use std::{collections::HashMap, time::Duration};

use anyhow::{bail, Context};

use crate::{
    report::{machine, print_table, Row},
    scenarios::{catchup::catchup, direct::direct, processes, room, simulation, storage},
};

mod baselines;
mod report;
mod scenarios;

/// How long one step of a scenario (a lookup, a delivery, a fan-out) may take before the run
/// fails.
pub(crate) const STEP: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let scenario = args.first().map(String::as_str).unwrap_or("direct");
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        // Logs only when asked for (RUST_LOG), on stderr, so they never skew a quiet run.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    if scenario == "storage-open" {
        let dir = args.get(1).context("storage-open needs a directory")?;
        return storage::storage_open(std::path::Path::new(dir)).await;
    }
    println!("machine: {}", machine());
    let rows = match scenario {
        "direct" => direct(flag("--count", 500)).await?,
        "room" => {
            let phases = if args.iter().any(|a| a == "--tim-only") {
                room::Phases::TimOnly
            } else if args.iter().any(|a| a == "--bare-only") {
                room::Phases::BareOnly
            } else {
                room::Phases::All
            };
            let receipts = !args.iter().any(|a| a == "--no-receipts");
            let private = args.iter().any(|a| a == "--private");
            room::room(flag("--members", 10), flag("--count", 200), phases, receipts, private).await?
        }
        "catchup" => {
            let count = flag("--count", 1_000);
            catchup(count, flag("--revokes", count / 20)).await?
        }
        "ingest" => catchup(flag("--count", 10_000), 0).await?,
        "storage" => storage::storage(flag("--count", 1_000_000)).await?,
        "processes" => {
            processes::processes(
                flag("--nodes", 100),
                flag("--members", 10),
                flag("--count", 20),
                Duration::from_secs(flag("--idle-secs", 60) as u64),
            )
            .await?
        }
        "network" => {
            let nodes = flag("--nodes", 1_000);
            let receipts = args.iter().any(|a| a == "--receipts");
            simulation::network(nodes, flag("--members", nodes), flag("--count", 50), receipts).await?
        }
        other => bail!("unknown scenario {other}; try direct, room, catchup, ingest, storage, processes or network"),
    };
    print_table(&rows);
    let mut result: HashMap<&str, serde_json::Value> = HashMap::new();
    result.insert("machine", machine().into());
    result.insert("scenario", scenario.into());
    result.insert("rows", rows.iter().map(Row::json).collect::<Vec<_>>().into());
    let path = format!("bench-{scenario}.json");
    std::fs::write(&path, serde_json::to_string_pretty(&result)?)?;
    println!("wrote {path}");
    Ok(())
}
