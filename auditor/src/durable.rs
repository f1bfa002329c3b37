//! Small files replaced whole and durably (the witness's state, the key holder's record of the
//! last head signed): the new contents go to a temporary file created fresh beside the file
//! (mode 0600, never through a symbolic link: one planted there is unlinked, not followed),
//! synced, renamed over the file, and the directory synced, so a crash leaves the old contents
//! or the new ones, never a torn file.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Replaces `path` with `contents` through the temporary file `tmp` (in the same directory).
/// The error names the step that failed.
pub fn replace(
    path: &Path,
    tmp: &Path,
    contents: &[u8],
) -> Result<(), (&'static str, std::io::Error)> {
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(("removing a stale", e)),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(tmp)
        .map_err(|e| ("creating a new", e))?;
    if let Err(e) = f.write_all(contents).and_then(|()| f.sync_all()) {
        let _ = std::fs::remove_file(tmp);
        return Err(("writing", e));
    }
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(("renaming over", e));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ("syncing the directory of", e))
}
