//! Reading a database file whole, from disk (retrying while a writer is still copying it in), and
//! the stamp that tells when it was replaced (a bundled file built into the program never is).

use std::path::Path;
use std::time::SystemTime;

use super::GeoError;
use super::bundled::built_in;

/// Identity of a file's contents as the file system reports it, to notice a replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    device: u64,
}

pub(super) fn stamp(path: &Path) -> Result<Stamp, GeoError> {
    if let Some(file) = built_in(path) {
        // Built into the program: never replaced.
        return Ok(Stamp {
            len: file.len,
            modified: None,
            inode: 0,
            device: 0,
        });
    }
    let meta = std::fs::metadata(path).map_err(|source| GeoError::Read {
        path: path.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    let (inode, device) = {
        use std::os::unix::fs::MetadataExt;
        (meta.ino(), meta.dev())
    };
    #[cfg(not(unix))]
    let (inode, device) = (0, 0);
    Ok(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
        device,
    })
}

/// Reads a whole file, retrying while it changes underneath (a writer still copying it in).
pub(super) fn read_stable(path: &Path) -> Result<(Stamp, Vec<u8>), GeoError> {
    const ATTEMPTS: u32 = 5;
    for _ in 0..ATTEMPTS {
        let before = stamp(path)?;
        let bytes = std::fs::read(path).map_err(|source| GeoError::Read {
            path: path.to_owned(),
            source,
        })?;
        let after = stamp(path)?;
        if before == after && bytes.len() as u64 == after.len {
            return Ok((after, bytes));
        }
    }
    Err(GeoError::Unstable {
        path: path.to_owned(),
        attempts: ATTEMPTS,
    })
}
