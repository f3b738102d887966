//! The data dir's identity files: the libp2p node key and the account key, created on first start
//! with owner-only permissions.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use libp2p::identity::Keypair;
use tim_protocol::AccountKey;

use crate::{Error, Result};

/// File name of the libp2p identity (protobuf encoding).
pub(crate) const NODE_KEY: &str = "node.key";
/// File name of the account key (32-byte seed, hex).
pub(crate) const ACCOUNT_KEY: &str = "account.key";

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

/// Writes a new file readable only by its owner, atomically (temp file, then rename).
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
    fn a_corrupt_key_file_is_a_clear_error() -> Result<()> {
        let dir = tempfile::tempdir()?;
        fs::write(dir.path().join(ACCOUNT_KEY), "not hex")?;
        let err = read_account_key(dir.path()).err();
        assert!(matches!(err, Some(Error::BadParameters(_))));
        Ok(())
    }
}
