//! Owner-only file modes for a node's data: message bodies, tombstones and keys are nobody
//! else's business on a shared machine. Directories get 0700, files 0600.
//!
//! RocksDB creates its files with the process umask (usually leaving them 0644); a 0700
//! directory already keeps other users out of everything inside, and the `tim-node` binary also
//! sets the umask to 0077 so new files are 0600 too. An embedding application decides its own
//! umask; this module tightens what exists at open.

use std::path::Path;

use tracing::info;

/// Creates `dir` (and its parents) if missing, then makes it and everything under it
/// owner-only: 0700 for directories, 0600 for files (symbolic links are left alone). Returns how
/// many entries were looser and got tightened.
pub fn restrict_to_owner(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    tighten(dir)
}

/// [`restrict_to_owner`], with one log line when an existing dir was looser.
pub fn restrict_to_owner_logged(dir: &Path) -> std::io::Result<usize> {
    let tightened = restrict_to_owner(dir)?;
    if tightened > 0 {
        info!(dir = %dir.display(), tightened, "made the dir owner-only (0700 dirs, 0600 files)");
    }
    Ok(tightened)
}

#[cfg(unix)]
fn tighten(dir: &Path) -> std::io::Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    let mut tightened = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        // Group and other bits go; the owner's bits stay as they are (0755 -> 0700, 0644 -> 0600).
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o700))?;
            tightened += 1;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(tightened)
}

#[cfg(not(unix))]
fn tighten(_dir: &Path) -> std::io::Result<usize> {
    Ok(0)
}
