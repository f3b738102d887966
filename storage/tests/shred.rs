//! Destroyed bodies leave every file under the database directory: after an explicit pass, by
//! the background shredder, in a burst, from the outbox, and after a crash between the
//! tombstone and the pass. Also: the database is owner-only on disk.
//!
//! Markers are random bytes, not text: the message family is LZ4-compressed, and a text marker
//! sharing runs with its neighbours could be stored as back-references, so that a scan of the raw
//! files would miss a body that is still there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::outgoing;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use tim_protocol::test_util::{burn, direct, key, revoke};
use tim_storage::{Config, Conversation, OutKind, State, Store};

fn open(dir: &Path) -> Store {
    Store::open(dir, Config::default()).unwrap()
}

/// 48 random bytes: no run of them occurs anywhere else in the store.
fn marker() -> Vec<u8> {
    let (a, b): ([u8; 32], [u8; 16]) = (rand::random(), rand::random());
    [a.as_slice(), b.as_slice()].concat()
}

/// The files under `dir` that contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    files_containing_any(dir, std::slice::from_ref(&needle.to_vec()))
}

/// The files under `dir` that contain any of `needles`.
fn files_containing_any(dir: &Path, needles: &[Vec<u8>]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if needles
                    .iter()
                    .any(|n| bytes.windows(n.len()).any(|w| w == n.as_slice()))
                {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

/// Polls (at most 20 s) until no file under `dir` contains `marker`.
fn wait_until_no_file_holds(dir: &Path, markers: &[Vec<u8>], failure: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !files_containing_any(dir, markers).is_empty() {
        assert!(Instant::now() < deadline, "{failure}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn burned_body_is_gone_from_every_file() {
    // A small message family (under one file): the pass compacts it whole, once.
    burned_body_is_gone_from_every_file_with(Config::default());
}

/// Thousands of messages from one account that was never answered: no stranger quota here.
fn unlimited(config: Config) -> Config {
    Config {
        stranger_messages_each: usize::MAX,
        stranger_messages_total: usize::MAX,
        ..config
    }
}

#[test]
fn burned_body_is_gone_from_every_file_of_a_large_family() {
    // Files of 64 KiB under ~1.6 MB of messages: the pass compacts key by key.
    burned_body_is_gone_from_every_file_with(Config {
        message_file_size: 64 << 10,
        ..Config::default()
    });
}

fn burned_body_is_gone_from_every_file_with(config: Config) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("db"), unlimited(config)).unwrap();
    let (a, b) = (key(1), key(2));
    let marker = marker();
    // Surround the marker with enough other data that it shares files with messages that stay.
    let filler = |i: u64, c: &str| direct(&a, &b, format!("filler {i} {}", c.repeat(200)).as_bytes(), i);
    for i in 0..2000u64 {
        store
            .put_message(&filler(i, "x").verify().unwrap(), State::Received)
            .unwrap();
    }
    let m = direct(&a, &b, &marker, 1000).verify().unwrap();
    store.put_message(&m, State::Received).unwrap();
    store.flush().unwrap();
    for i in 2000..4000u64 {
        store
            .put_message(&filler(i, "y").verify().unwrap(), State::Received)
            .unwrap();
    }
    store.flush().unwrap();
    assert!(
        !files_containing(dir.path(), &marker).is_empty(),
        "the marker should be on disk before the burn"
    );
    let burn = burn(&b, &m).verify().unwrap();
    store.apply_tombstone(&burn).unwrap();
    store.shred_now().unwrap();
    assert_eq!(store.pending_shreds(), 0);
    assert_eq!(files_containing(dir.path(), &marker), Vec::<String>::new());
    // The other messages are intact.
    let conversation = Conversation::direct(a.account_id(), b.account_id());
    assert_eq!(store.history(&conversation, None, 500).unwrap().entries.len(), 500);
}

#[test]
fn the_shredder_runs_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (key(1), key(2));
    let marker = marker();
    let m = direct(&a, &b, &marker, 1).verify().unwrap();
    store.put_message(&m, State::Sent).unwrap();
    store.flush().unwrap();
    store.apply_tombstone(&revoke(&a, &m).verify().unwrap()).unwrap();
    wait_until_no_file_holds(
        dir.path(),
        &[marker],
        "the background shredder did not destroy the body",
    );
}

#[test]
fn the_shredder_waits_for_its_delay_then_takes_a_burst_in_one_pass() {
    const BURST: usize = 20;
    let delay = Duration::from_secs(1);
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        shred_delay: delay,
        ..Config::default()
    };
    let store = Store::open(dir.path().join("db"), config).unwrap();
    let (a, b) = (key(1), key(2));
    let markers: Vec<Vec<u8>> = (0..BURST).map(|_| marker()).collect();
    let messages: Vec<_> = markers
        .iter()
        .enumerate()
        .map(|(i, body)| direct(&a, &b, body, i as u64).verify().unwrap())
        .collect();
    for m in &messages {
        store.put_message(m, State::Sent).unwrap();
    }
    store.flush().unwrap();
    assert!(!files_containing_any(dir.path(), &markers).is_empty());
    // The shredder's clock starts at the first tombstone, which is after `started`: no pass can
    // begin before `started + delay`.
    let started = Instant::now();
    for m in &messages {
        store.apply_tombstone(&revoke(&a, m).verify().unwrap()).unwrap();
    }
    // Bodies are unreadable at once...
    assert!(messages.iter().all(|m| store.message(&m.id()).unwrap().is_none()));
    // ...but still on disk and all queued: a pass takes every pending id at once, so a full
    // queue now means the whole burst goes in one pass.
    let pending = store.pending_shreds();
    let on_disk = files_containing_any(dir.path(), &markers);
    let looked_at = started.elapsed();
    assert!(
        looked_at < delay,
        "the burst and the checks took {looked_at:?}, not under the shred delay of {delay:?}: \
         this run cannot tell whether the shredder waited"
    );
    assert_eq!(pending, BURST, "a pass ran before the shred delay was over");
    assert!(
        !on_disk.is_empty(),
        "the bodies left the disk before the shred delay was over"
    );
    // The shredder takes them by itself, and not before the delay.
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.pending_shreds() > 0 {
        assert!(Instant::now() < deadline, "the shredder did not take the burst");
        std::thread::sleep(Duration::from_millis(5));
    }
    let taken = started.elapsed();
    assert!(
        taken >= delay,
        "the shredder took the burst after {taken:?}, before its delay"
    );
    wait_until_no_file_holds(dir.path(), &markers, "the burst was not shredded");
    assert_eq!(store.pending_shreds(), 0);
}

#[test]
fn queued_body_is_shredded_from_the_outbox_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (key(1), key(2));
    let marker = marker();
    let m = direct(&a, &b, &marker, 1).verify().unwrap();
    store.put_outgoing(&m, outgoing(&b, &m, OutKind::Message)).unwrap();
    store.flush().unwrap();
    assert!(!files_containing(dir.path(), &marker).is_empty());
    store.apply_tombstone(&revoke(&a, &m).verify().unwrap()).unwrap();
    store.shred_now().unwrap();
    let hits = files_containing(dir.path(), &marker);
    assert_eq!(hits, Vec::<String>::new());
}

/// Set by `a_crash_after_a_revoke_leaves_no_body_after_restart` for its child: the database
/// directory, and the body (hex) to store, flush and revoke.
const CHILD_DIR_VAR: &str = "TIM_SHRED_CRASH_DIR";
const CHILD_BODY_VAR: &str = "TIM_SHRED_CRASH_BODY";

/// Child half of `a_crash_after_a_revoke_leaves_no_body_after_restart`: stores a body, flushes it
/// into an SST file, revokes it, reports, and waits to be killed. Its shred delay is an hour, so
/// no pass can run before the kill. Run by itself it would prove nothing, so it fails.
#[test]
#[ignore = "only the child process of a_crash_after_a_revoke_leaves_no_body_after_restart"]
fn shred_crash_child() {
    let (Some(dir), Some(body)) = (std::env::var_os(CHILD_DIR_VAR), std::env::var(CHILD_BODY_VAR).ok()) else {
        panic!("shred_crash_child runs only as a child of a_crash_after_a_revoke_leaves_no_body_after_restart");
    };
    let config = Config {
        shred_delay: Duration::from_secs(3600),
        ..Config::default()
    };
    let store = Store::open(Path::new(&dir), config).unwrap();
    let (a, b) = (key(1), key(2));
    let m = direct(&a, &b, &hex_decode(&body), 1).verify().unwrap();
    store.put_message(&m, State::Received).unwrap();
    store.flush().unwrap();
    store.apply_tombstone(&revoke(&a, &m).verify().unwrap()).unwrap();
    assert_eq!(store.pending_shreds(), 1);
    use std::io::Write;
    println!("REVOKED {}", m.id());
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_crash_after_a_revoke_leaves_no_body_after_restart() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let marker = marker();
    let body_hex: String = marker.iter().map(|b| format!("{b:02x}")).collect();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "shred_crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_VAR, &db)
        .env(CHILD_BODY_VAR, &body_hex)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // A child that never reports would block the read below for good: kill it after a minute
    // (then its stdout closes and the test fails on the missing report).
    let pid = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    });
    // The harness prints "test shred_crash_child ... " on the same line before the report.
    let revoked = std::io::BufReader::new(stdout)
        .lines()
        .map_while(|l| l.ok())
        .find_map(|l| l.split_once("REVOKED ").map(|(_, id)| id.trim().to_string()));
    // SIGKILL right after the revoke was acknowledged: no destructor, no final pass.
    child.kill().unwrap();
    child.wait().unwrap();
    let id: tim_protocol::MessageId = revoked.expect("the child revoked the message").parse().unwrap();
    assert!(
        !files_containing(&db, &marker).is_empty(),
        "the killed process should have left the body in a file (else this test shows nothing)"
    );
    // Opening the store finishes the interrupted shredding before it returns.
    let store = open(&db);
    assert_eq!(files_containing(dir.path(), &marker), Vec::<String>::new());
    assert_eq!(store.pending_shreds(), 0);
    assert!(store.message(&id).unwrap().is_none());
    assert!(store.tombstone(&id).unwrap().is_some());
    // The queue entry is gone with the body: a second restart has nothing to shred.
    drop(store);
    let store = open(&db);
    assert_eq!(store.pending_shreds(), 0);
}

#[cfg(unix)]
#[test]
fn the_database_is_owner_only_even_when_it_was_not() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    {
        let store = open(&db);
        let (a, b) = (key(1), key(2));
        store
            .put_message(&direct(&a, &b, b"hello", 1).verify().unwrap(), State::Received)
            .unwrap();
        store.flush().unwrap();
    }
    // Loosen everything, as an older version or a careless copy would have left it.
    let mut loosened = vec![db.clone()];
    loosened.extend(std::fs::read_dir(&db).unwrap().map(|e| e.unwrap().path()));
    for p in &loosened {
        let loose = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(loose)).unwrap();
    }
    assert_eq!(mode(&db), 0o755);
    let _store = open(&db);
    // Everything there now, what the store found and what RocksDB wrote while opening.
    let now: Vec<_> = std::fs::read_dir(&db).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(now.len() > 3);
    assert_eq!(mode(&db), 0o700);
    for p in &now {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(p), want, "{}", p.display());
    }
}
