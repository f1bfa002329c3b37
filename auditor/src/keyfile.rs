//! Private key files: written once with mode 0600, read only when the file itself (opened
//! without following a symbolic link, then checked on the open descriptor) is a regular file
//! owned by the current user and readable by nobody else.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::keys::{KeyError, SignerKey};

/// Why a private key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The path is a symbolic link.
    #[error("private key file {path} is a symbolic link; give the path of the key file itself")]
    Symlink {
        /// The file.
        path: PathBuf,
    },
    /// Not a regular file.
    #[error("private key file {path} is not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Readable or writable by group or others.
    #[error(
        "private key file {path} has mode {mode:04o}; it must be readable by its owner only (chmod 600 {path})"
    )]
    InsecureMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Owned by another user.
    #[error(
        "private key file {path} belongs to user {owner}, not to the user running this ({uid}); whoever owns it can change it"
    )]
    WrongOwner {
        /// The file.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// Our effective uid.
        uid: u32,
    },
    /// The content is not a private key.
    #[error("private key file {path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with the key.
        source: KeyError,
    },
    /// Reading or writing failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Loads a private key file. The file is opened with `O_NOFOLLOW`, and its type, mode and
/// owner are checked on the open descriptor, so the checked file is the file read.
pub fn load(path: &Path) -> Result<SignerKey, KeyFileError> {
    let text = read_private(path)?;
    SignerKey::parse_private(&text).map_err(|source| KeyFileError::Key {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a private key file's text under the rules of [`load`] (any key type).
pub fn read_private(path: &Path) -> Result<String, KeyFileError> {
    let at = || path.to_path_buf();
    let io = |source| KeyFileError::Io {
        action: "reading key file",
        path: at(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => KeyFileError::Symlink { path: at() },
            _ => io(e),
        })?;
    let meta = file.metadata().map_err(io)?;
    check_open(
        path,
        meta.file_type().is_file(),
        meta.permissions().mode(),
        meta.uid(),
        nix::unistd::geteuid().as_raw(),
    )?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io)?;
    Ok(text)
}

/// The rules on the open file: a regular file, no access for group or others, owned by `uid`.
fn check_open(
    path: &Path,
    is_file: bool,
    mode: u32,
    owner: u32,
    uid: u32,
) -> Result<(), KeyFileError> {
    let path = path.to_path_buf();
    if !is_file {
        return Err(KeyFileError::NotAFile { path });
    }
    let mode = mode & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::InsecureMode { path, mode });
    }
    if owner != uid {
        return Err(KeyFileError::WrongOwner { path, owner, uid });
    }
    Ok(())
}

/// Writes the private key to a new file created with mode 0600 (never overwrites, never
/// follows a symbolic link).
pub fn save(key: &SignerKey, path: &Path) -> Result<(), KeyFileError> {
    save_private(&key.to_private_string(), path)
}

/// Writes a private key string as [`save`] does.
pub fn save_private(text: &str, path: &Path) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        action: "writing key file",
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    writeln!(f, "{text}").map_err(io)?;
    f.sync_all().map_err(io)
}

/// `key install`: copies a private file delivered by a Kubernetes Secret volume (a symbolic
/// link into kubelet's data directory, owned by root, group-readable through the pod's
/// `fsGroup`) to `to`, a file of the running user's own with mode 0600 that [`read_private`]
/// accepts. `check` must accept the content (a private key, a tokens file) or nothing is
/// written. An existing `to` with the same content is left as it is (a pod restarted on the
/// same volume); one with other content is refused. Returns the content.
pub fn install<E: std::fmt::Display>(
    from: &Path,
    to: &Path,
    check: impl FnOnce(&str) -> Result<(), E>,
) -> Result<String, KeyFileError> {
    let io = |action, path: &Path, source| KeyFileError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(from).map_err(|e| io("reading", from, e))?;
    let text = text.trim().to_owned();
    check(&text).map_err(|e| {
        io(
            "installing",
            from,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        )
    })?;
    match read_private(to) {
        Ok(existing) if existing.trim() == text => Ok(text),
        Ok(_) => Err(io(
            "installing as",
            to,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it already holds other content; remove it first",
            ),
        )),
        Err(KeyFileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            save_private(&text, to)?;
            Ok(text)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loading `path` gives the key, or an error whose message contains `want`.
    fn check(path: &Path, want: Result<&SignerKey, &str>) {
        match (load(path), want) {
            (Ok(k), Ok(w)) => assert_eq!(k.verifier(), w.verifier()),
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e} should mention {w}"),
            (got, want) => panic!("load({}) = {got:?}, wanted {want:?}", path.display()),
        }
    }

    #[test]
    fn private_key_files_must_be_0600_and_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let k = SignerKey::generate("log").unwrap();
        save(&k, &path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        check(&path, Ok(&k));
        assert!(
            matches!(save(&k, &path), Err(KeyFileError::Io { .. })),
            "never overwrites"
        );
        for mode in [0o644, 0o640, 0o604, 0o660, 0o601] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            check(&path, Err(&format!("has mode {mode:04o}")));
        }
    }

    #[test]
    fn symbolic_links_and_other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let k = SignerKey::generate("log").unwrap();
        save(&k, &path).unwrap();
        // A link to a good key file: whoever controls the link chooses the key.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        check(&link, Err("is a symbolic link"));
        check(dir.path(), Err("is not a regular file"));
        let garbage = dir.path().join("g");
        std::fs::write(&garbage, "not a key").unwrap();
        std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
        check(&garbage, Err("PRIVATE+KEY+"));
    }

    #[test]
    fn a_key_from_a_secret_volume_is_installed_as_our_own_0600_file() {
        let dir = tempfile::tempdir().unwrap();
        // kubelet's layout: `key` -> `..data/key`, the file group-readable.
        let data = dir.path().join("..data");
        std::fs::create_dir(&data).unwrap();
        let k = SignerKey::generate("log").unwrap();
        std::fs::write(data.join("key"), k.to_private_string()).unwrap();
        std::fs::set_permissions(data.join("key"), std::fs::Permissions::from_mode(0o440)).unwrap();
        let secret = dir.path().join("key");
        std::os::unix::fs::symlink(data.join("key"), &secret).unwrap();
        check(&secret, Err("is a symbolic link"));
        let key = |t: &str| SignerKey::parse_private(t).map(|_| ());
        let to = dir.path().join("installed");
        install(&secret, &to, key).unwrap();
        check(&to, Ok(&k));
        // Again (a restarted pod): the same key stays; another key is refused, nothing changed.
        install(&secret, &to, key).unwrap();
        let other = dir.path().join("other");
        std::fs::write(
            &other,
            SignerKey::generate("log").unwrap().to_private_string(),
        )
        .unwrap();
        let e = install(&other, &to, key).unwrap_err().to_string();
        assert!(e.contains("already holds other content"), "{e}");
        check(&to, Ok(&k));
        // Not a key: refused, nothing written.
        std::fs::write(&other, "password=hunter2").unwrap();
        let fresh = dir.path().join("fresh");
        let e = install(&other, &fresh, key).unwrap_err().to_string();
        assert!(e.contains("installing"), "{e}");
        assert!(!fresh.exists());
    }

    #[test]
    fn a_key_file_owned_by_someone_else_is_refused() {
        let p = Path::new("k");
        assert!(check_open(p, true, 0o100600, 1000, 1000).is_ok());
        let e = check_open(p, true, 0o100600, 0, 1000).unwrap_err();
        assert!(
            e.to_string()
                .contains("belongs to user 0, not to the user running this (1000)")
        );
        // On a real file, when this runs as root (who reads any file whatever its mode).
        let me = nix::unistd::geteuid();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        save(&SignerKey::generate("log").unwrap(), &path).unwrap();
        match std::os::unix::fs::chown(&path, Some(65534), None) {
            Ok(()) => check(&path, Err("belongs to user 65534")),
            // Only root may give a file away; then nobody else's 0600 file is readable anyway.
            Err(e) => {
                assert!(!me.is_root(), "root could not chown: {e}");
                assert_eq!(e.raw_os_error(), Some(nix::libc::EPERM));
            }
        }
    }
}
