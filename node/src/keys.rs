//! The data dir's identity files: the libp2p node key, the account key and the account's seal
//! secrets, created on first start with owner-only permissions.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use libp2p::identity::Keypair;
use tim_protocol::{
    seal::{Keyring, SealSecret, MAX_SEAL_SECRETS},
    AccountKey,
};

use crate::{Error, Result};

/// File name of the libp2p identity (protobuf encoding).
pub(crate) const NODE_KEY: &str = "node.key";
/// File name of the account key (32-byte seed, hex).
pub(crate) const ACCOUNT_KEY: &str = "account.key";

/// File name of the account's seal secrets: one `<seq> <64 hex digits>` line per key, oldest
/// first (`seq`: ms since the epoch at its making).
pub(crate) const SEAL_KEYS: &str = "seal.keys";

/// Loads the node and account keys from `dir`, creating them (and `dir`) on first start.
/// The data dir is made owner-only first (0700, files 0600), tightening a looser existing one.
pub(crate) fn load_or_create(dir: &Path) -> Result<(Keypair, AccountKey)> {
    tim_storage::restrict_to_owner_logged(dir)?;
    let node_path = dir.join(NODE_KEY);
    let node = match fs::read(&node_path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| Error::BadParameters(format!("{}: {e}", node_path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| Error::BadParameters(format!("encoding node key: {e}")))?;
            write_private(&node_path, &bytes)?;
            key
        }
        Err(e) => return Err(e.into()),
    };
    let account = read_account_key(dir)?;
    Ok((node, account))
}

/// Reads the account key in `dir`, creating it if missing.
pub(crate) fn read_account_key(dir: &Path) -> Result<AccountKey> {
    let path = dir.join(ACCOUNT_KEY);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed)
                .map_err(|e| Error::BadParameters(format!("{}: {e}", path.display())))?;
            Ok(AccountKey::from_secret_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = AccountKey::generate();
            write_private(&path, format!("{}\n", hex::encode(key.secret_bytes())).as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(e.into()),
    }
}

/// The account's keyring from the seal secrets in `dir`. When there is none, or the newest was
/// made `rotation` or longer before `now` (ms since the epoch), it makes a new one first and
/// rewrites the file with the newest [`MAX_SEAL_SECRETS`] - 1 (the derived key is the last).
pub(crate) fn load_seal_keys(
    dir: &Path,
    account: &AccountKey,
    now: u64,
    rotation: std::time::Duration,
) -> Result<Keyring> {
    let path = dir.join(SEAL_KEYS);
    let mut secrets = match fs::read_to_string(&path) {
        Ok(text) => parse_seal_keys(&text).map_err(|e| Error::BadParameters(format!("{}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let newest = secrets.iter().map(|(seq, _)| *seq).max();
    let rotation_ms = u64::try_from(rotation.as_millis()).unwrap_or(u64::MAX);
    if newest.is_none_or(|seq| now.saturating_sub(seq) >= rotation_ms) {
        // Strictly newer than any held, even if the clock went back.
        let seq = newest.map_or(now, |seq| now.max(seq.saturating_add(1)));
        secrets.push((seq, SealSecret::generate()));
        secrets.sort_by_key(|(seq, _)| *seq);
        let keep = secrets.len().saturating_sub(MAX_SEAL_SECRETS - 1);
        secrets.drain(..keep);
        let text: String = secrets
            .iter()
            .map(|(seq, secret)| format!("{seq} {}\n", hex::encode(secret.to_bytes())))
            .collect();
        write_private(&path, text.as_bytes())?;
    }
    Ok(Keyring::new(account, &secrets)?)
}

fn parse_seal_keys(text: &str) -> std::result::Result<Vec<(u64, SealSecret)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |what: &str| format!("line {}: {what}", n + 1);
        let (seq, secret) = line
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("expected `<seq> <hex>`"))?;
        let seq: u64 = seq.parse().map_err(|_| bad("bad seq"))?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(secret.trim(), &mut bytes).map_err(|_| bad("bad secret"))?;
        out.push((seq, SealSecret::from_bytes(&bytes).map_err(|e| bad(&e.to_string()))?));
    }
    Ok(out)
}

/// Writes a new file readable only by its owner, atomically (temp file, then rename), and makes
/// the rename durable (the directory is synced too, so a new seal key survives a power loss).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_and_reloaded() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (n1, a1) = load_or_create(dir.path())?;
        let (n2, a2) = load_or_create(dir.path())?;
        assert_eq!(n1.public().to_peer_id(), n2.public().to_peer_id());
        assert_eq!(a1.account_id(), a2.account_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(ACCOUNT_KEY))?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        Ok(())
    }

    #[test]
    fn seal_keys_are_made_once_kept_and_rotated_when_old() -> Result<()> {
        use std::time::Duration;
        let dir = tempfile::tempdir()?;
        let account = AccountKey::generate();
        let week = Duration::from_secs(7 * 24 * 3600);
        let day = 24 * 3600 * 1000;
        let first = load_seal_keys(dir.path(), &account, 10 * day, week)?;
        let record = first
            .record()
            .cloned()
            .ok_or(Error::BadParameters("no record".into()))?;
        assert_eq!(record.seq, 10 * day);
        assert!(record.verify().is_ok());
        // Six days later: the same key.
        let again = load_seal_keys(dir.path(), &account, 16 * day, week)?;
        assert_eq!(again.record(), Some(&record));
        // Seven days later: a new key, published; the old secret is kept.
        let rotated = load_seal_keys(dir.path(), &account, 17 * day, week)?;
        let new = rotated
            .record()
            .cloned()
            .ok_or(Error::BadParameters("no record".into()))?;
        assert_eq!(new.seq, 17 * day);
        assert_ne!(new.key, record.key);
        let text = fs::read_to_string(dir.path().join(SEAL_KEYS))?;
        assert_eq!(text.lines().count(), 2);
        // A clock gone back still makes a newer seq.
        let back = load_seal_keys(dir.path(), &account, day, Duration::ZERO)?;
        assert_eq!(back.record().map(|r| r.seq), Some(17 * day + 1));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(SEAL_KEYS))?.permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(dir.path().join(SEAL_KEYS), "12 nothex\n")?;
        let err = load_seal_keys(dir.path(), &account, day, week).err();
        assert!(matches!(err, Some(Error::BadParameters(_))));
        Ok(())
    }

    #[test]
    fn a_corrupt_key_file_is_a_clear_error() -> Result<()> {
        let dir = tempfile::tempdir()?;
        fs::write(dir.path().join(ACCOUNT_KEY), "not hex")?;
        let err = read_account_key(dir.path()).err();
        assert!(matches!(err, Some(Error::BadParameters(_))));
        Ok(())
    }
}
