//! The key holder's record of the last head it signed, kept beside the signing key and out of
//! the database's reach: whoever can rewrite the database (its owner, a restore from an old
//! backup) can set the head back to an earlier genuine checkpoint, and the sequencer would then
//! take the acknowledged entries past it for rows it never sealed. With this record it refuses
//! any stored head that does not extend the last one it signed, before it drops or signs
//! anything ([`super::Ledger::sequencer`]).
//!
//! The file (`--signed-head`, by default `<key file>.signed-head`) holds one signed checkpoint
//! note. It is written after
//! every commit, before the commit is acknowledged: a new file (mode 0600, created without
//! following links) synced and renamed over the old one, so a crash leaves the old record or
//! the new one, never a torn one. It is read only if it is a regular file owned by the running
//! user that nobody else may write.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Why the record cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SignedHeadError {
    /// The file is unusable (a link, not a regular file, writable by others, someone else's).
    #[error("the signed-head record {path} {why}")]
    Refused {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Reading or writing failed.
    #[error("{action} the signed-head record {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The record of the last head signed with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeadFile {
    path: PathBuf,
}

impl SignedHeadFile {
    /// The record kept beside the key file `key`: `<key>.signed-head`.
    pub fn beside(key: &Path) -> Self {
        let mut path = key.as_os_str().to_owned();
        path.push(".signed-head");
        Self { path: path.into() }
    }

    /// The record at `path`.
    pub fn at(path: PathBuf) -> Self {
        Self { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The note recorded, or `None` when there is no record yet.
    pub fn read(&self) -> Result<Option<String>, SignedHeadError> {
        let io = |source| SignedHeadError::Io {
            action: "reading",
            path: self.path.clone(),
            source,
        };
        let refused = |why: String| SignedHeadError::Refused {
            path: self.path.clone(),
            why,
        };
        let mut file = match File::options()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
                return Err(refused(
                    "is a symbolic link; it must be a file of its own".into(),
                ));
            }
            Err(e) => return Err(io(e)),
        };
        let meta = file.metadata().map_err(io)?;
        if !meta.file_type().is_file() {
            return Err(refused("is not a regular file".into()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(refused(format!(
                "has mode {mode:04o}: others may write it, so it proves nothing (chmod 600 it)"
            )));
        }
        let uid = nix::unistd::geteuid().as_raw();
        if meta.uid() != uid {
            return Err(refused(format!(
                "belongs to user {}, not to the user running this ({uid})",
                meta.uid()
            )));
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io)?;
        Ok(Some(text))
    }

    /// Records `note`: a new file beside it, synced, renamed over the old record, and the
    /// directory synced ([`crate::durable::replace`]).
    pub fn write(&self, note: &str) -> Result<(), SignedHeadError> {
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        crate::durable::replace(&self.path, Path::new(&tmp), note.as_bytes()).map_err(
            |(action, source)| SignedHeadError::Io {
                action,
                path: self.path.clone(),
                source,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_written_replaced_and_read_back_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = SignedHeadFile::beside(&dir.path().join("ledger.key"));
        assert_eq!(f.path(), dir.path().join("ledger.key.signed-head"));
        assert_eq!(f.read().unwrap(), None);
        f.write("first\n").unwrap();
        f.write("second\n").unwrap();
        assert_eq!(f.read().unwrap().as_deref(), Some("second\n"));
        let mode = std::fs::metadata(f.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn a_record_others_may_write_or_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = SignedHeadFile::beside(&dir.path().join("k"));
        f.write("note").unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = f.read().unwrap_err().to_string();
        assert!(e.contains("others may write it"), "{e}");
        std::fs::remove_file(f.path()).unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "note").unwrap();
        std::os::unix::fs::symlink(&target, f.path()).unwrap();
        let e = f.read().unwrap_err().to_string();
        assert!(e.contains("is a symbolic link"), "{e}");
    }
}
