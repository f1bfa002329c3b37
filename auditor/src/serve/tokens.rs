//! Bearer tokens of `serve`: the tokens file keeps only each token's SHA-256 with the writer's
//! name (one `NAME sha256:<hex>` line per token), so reading the file does not let anyone
//! write. A presented token is hashed and compared with every stored hash in constant time.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::keyfile::KeyFileError;

/// Why the tokens file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file is not private, not ours, or unreadable.
    #[error(transparent)]
    File(#[from] KeyFileError),
    /// A line is not `NAME sha256:<64 hex>`.
    #[error(
        "{path}: line {line}: expected `NAME sha256:<64 hex digits>` (a writer name, then the SHA-256 of its token)"
    )]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
    },
    /// A writer name is not a plain word.
    #[error("writer name {0:?}: use 1 to 64 letters, digits, `.`, `_` or `-`")]
    Name(String),
    /// Writing the file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The writers allowed to submit, by token hash.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, [u8; 32])>,
}

fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(TokenError::Name(name.to_string()))
    }
}

impl Tokens {
    /// Reads the tokens file, refused unless it is a regular file of mode 0600 owned by us.
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let text = crate::keyfile::read_private(path)?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses a tokens file's text; `path` names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Self, TokenError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = || TokenError::Syntax {
                path: path.to_string(),
                line: i + 1,
            };
            let (name, hash) = line.split_once(' ').ok_or_else(syntax)?;
            check_name(name)?;
            let hash = hash.trim().strip_prefix("sha256:").ok_or_else(syntax)?;
            let mut h = [0u8; 32];
            hex::decode_to_slice(hash, &mut h).map_err(|_| syntax())?;
            entries.push((name.to_string(), h));
        }
        Ok(Self { entries })
    }

    /// How many tokens are allowed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The writer whose token this is: the presented token's hash is compared with every stored
    /// hash, in constant time each, without stopping at a match.
    pub fn writer(&self, token: &str) -> Option<&str> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (name, hash) in &self.entries {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// Makes a new random token for `name`, appends its hash to `path` (created with mode 0600;
/// an existing file must already be private) and returns the token, which is shown once.
pub fn add(path: &Path, name: &str) -> Result<String, TokenError> {
    check_name(name)?;
    if path.exists() || path.is_symlink() {
        Tokens::load(path)?;
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = format!("hxa_{}", hex::encode(secret));
    let write = |source| TokenError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::File::options()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(write)?;
    writeln!(
        f,
        "{name} sha256:{}",
        hex::encode(Sha256::digest(token.as_bytes()))
    )
    .map_err(write)?;
    f.sync_all().map_err(write)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn check(tokens: &Tokens, token: &str, want: Option<&str>) {
        assert_eq!(tokens.writer(token), want, "token {token:?}");
    }

    #[test]
    fn tokens_are_stored_hashed_and_matched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let a = add(&path, "collector-k8s").unwrap();
        let b = add(&path, "backup.pg").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&a) && !text.contains(&b), "{text}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let tokens = Tokens::load(&path).unwrap();
        assert_eq!(tokens.len(), 2);
        check(&tokens, &a, Some("collector-k8s"));
        check(&tokens, &b, Some("backup.pg"));
        check(&tokens, "", None);
        check(&tokens, &a[..a.len() - 1], None);
        assert!(matches!(add(&path, "two words"), Err(TokenError::Name(_))));
    }

    #[test]
    fn a_readable_tokens_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        add(&path, "w").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Tokens::load(&path).unwrap_err().to_string();
        assert!(e.contains("0644"), "{e}");
        assert!(add(&path, "x").is_err(), "nor appended to");
    }

    #[test]
    fn malformed_lines_are_named() {
        for text in ["w", "w sha256:00", "w md5:00", "a b sha256:00"] {
            let e = Tokens::parse("f", text).unwrap_err().to_string();
            assert!(e.contains("line 1") || e.contains("writer name"), "{e}");
        }
        let ok = format!("# comment\n\nw sha256:{}\n", "ab".repeat(32));
        assert_eq!(Tokens::parse("f", &ok).unwrap().len(), 1);
    }
}
