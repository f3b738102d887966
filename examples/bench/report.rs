//! Measurements and their output: a `Row` per measurement, percentiles, the table and JSON,
//! and the facts read from `/proc` (machine, RSS, process CPU time, TCP segments sent).
use std::time::Duration;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(crate) struct Row {
    name: String,
    samples: Vec<Duration>,
    wall: Duration,
    /// Items done in `wall` (the samples' count unless set).
    count: usize,
    /// Process CPU time (user + system, all threads) spent in the row's phase, when measured.
    cpu: Option<Duration>,
}

impl Row {
    pub(crate) fn new(name: &str, mut samples: Vec<Duration>, wall: Duration) -> Row {
        samples.sort();
        let count = samples.len();
        Row {
            name: name.into(),
            samples,
            wall,
            count,
            cpu: None,
        }
    }

    pub(crate) fn with_cpu(mut self, cpu: Duration) -> Row {
        self.cpu = Some(cpu);
        self
    }

    pub(crate) fn with_count(mut self, count: usize) -> Row {
        self.count = count;
        self
    }
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        percentile(&self.samples, q)
    }

    pub(crate) fn rate(&self) -> f64 {
        self.count as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        serde_json::json!({
            "name": self.name, "n": self.count,
            "p50_ms": ms(percentile(&self.samples, 0.5)), "p99_ms": ms(percentile(&self.samples, 0.99)),
            "max_ms": ms(percentile(&self.samples, 1.0)),
            "per_sec": self.count as f64 / self.wall.as_secs_f64(),
            "wall_ms": ms(self.wall),
            "cpu_ms": self.cpu.map(ms),
        })
    }
}

pub(crate) fn print_table(rows: &[Row]) {
    let rss = rss_mb();
    println!(
        "{:<48} {:>7} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "measurement", "n", "p50 ms", "p99 ms", "max ms", "per s", "cpu ms"
    );
    for r in rows {
        let j = r.json();
        let cpu = j["cpu_ms"]
            .as_f64()
            .map(|c| format!("{c:.0}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<48} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>10.0} {:>9}",
            r.name,
            j["n"],
            j["p50_ms"].as_f64().unwrap_or(0.0),
            j["p99_ms"].as_f64().unwrap_or(0.0),
            j["max_ms"].as_f64().unwrap_or(0.0),
            j["per_sec"].as_f64().unwrap_or(0.0),
            cpu
        );
    }
    println!("process rss at the end: {rss:.0} MB");
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    format!(
        "{} cores, {cpu}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    )
}

pub(crate) fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// TCP segments sent on this machine so far (`OutSegs` in `/proc/net/snmp`; machine-wide, so
/// read it only while nothing else talks): how many packets a phase cost on loopback.
pub(crate) fn tcp_segments() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "OutSegs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of this process so far (user + system, every thread), from `/proc/self/stat`.
pub(crate) fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start at `state`.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

pub(crate) fn percentile_of(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    percentile(&sorted, q)
}
