//! The names writers give data stores and object classes: a plain, normalised alphabet, and
//! the stores reserved to the auditor's own collectors, compared after normalisation so that
//! a name that only looks like one (`Kubernetes`, `kube-rnetes`, `kuberne7es/x`) is refused
//! too. Reports print these names as they are: two names that read alike must be one name.

use crate::ledger::entry::EntryError;

/// The longest store or class name a writer may give (an object store's notification makes
/// `<store>/<endpoint>/bucket-sha256:<64 hex>`).
pub const MAX_NAME: usize = 256;

/// The store the auditor's own Kubernetes collector records volumes and snapshots under.
pub const KUBERNETES_STORE: &str = "kubernetes";

/// The stores only the auditor's own collectors record under, as they are written.
pub const RESERVED_STORES: &[&str] = &[KUBERNETES_STORE, "k8s"];

/// Bytes of a plain name: lowercase ASCII letters, digits and `.`, `_`, `-`, `/`, `:`.
fn plain(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b)
}

/// A name read the way a person reads it: lowercase, separators left out, digits that look
/// like letters read as those letters. Two names with the same skeleton look alike.
fn skeleton(name: &str) -> String {
    name.chars()
        .flat_map(char::to_lowercase)
        .filter(|c| !matches!(c, '.' | '_' | '-' | ':' | ' '))
        .map(|c| match c {
            '0' => 'o',
            '1' | '|' => 'l',
            '3' => 'e',
            '5' => 's',
            '7' => 't',
            other => other,
        })
        .collect()
}

/// The reserved store `store` reads as (its first `/`-separated part, by `skeleton`), if
/// any.
pub fn reserved_store(store: &str) -> Option<&'static str> {
    let first = skeleton(store.split('/').next().unwrap_or(store));
    RESERVED_STORES
        .iter()
        .copied()
        .find(|r| skeleton(r) == first)
}

/// Checks that `name` (the field `field`: `store` or `class`) is a plain name: 1 to
/// [`MAX_NAME`] bytes of `plain` characters, starting with a letter or a digit, with no
/// empty `/`-separated part.
pub fn check_plain(field: &'static str, name: &str) -> Result<(), EntryError> {
    let problem = |why: String| {
        Err(EntryError::Field {
            field,
            problem: format!(
                "{name:?} is not a plain name: {why}; use 1 to {MAX_NAME} lowercase ASCII letters, digits, `.`, `_`, `-`, `/` or `:`, starting with a letter or a digit"
            ),
        })
    };
    if name.is_empty() {
        return problem("it is empty".into());
    }
    if name.len() > MAX_NAME {
        return problem(format!("it has {} bytes", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii() || !plain(*c as u8)) {
        return problem(format!("{c:?} is not one of them"));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return problem(format!("it starts with {:?}", &name[..1]));
    }
    if name.split('/').any(str::is_empty) {
        return problem("it has an empty part between slashes".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(store: &str, want: Result<Option<&str>, &str>) {
        let got = check_plain("store", store).map(|()| reserved_store(store));
        match (&got, want) {
            (Ok(r), Ok(w)) => assert_eq!(r.as_deref(), w, "{store:?}"),
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{store:?}: {e}"),
            _ => panic!("{store:?}: {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn plain_names_and_reserved_look_alikes() {
        check("minio/documents", Ok(None));
        check("seaweedfs/seaweed-de/bucket-sha256:00ff", Ok(None));
        check("postgres/portal", Ok(None));
        check("kubernetes", Ok(Some("kubernetes")));
        check("kubernetes/volumes", Ok(Some("kubernetes")));
        check("kube-rnetes", Ok(Some("kubernetes")));
        check("kube.r_n:etes", Ok(Some("kubernetes")));
        check("kuberne7e5", Ok(Some("kubernetes")));
        check("k8s", Ok(Some("k8s")));
        check("kubernetesx", Ok(None));
        check("Kubernetes", Err("'K' is not one of them"));
        check("kubernetes ", Err("' ' is not one of them"));
        check("kubern\u{0435}tes", Err("'\u{0435}' is not one of them"));
        check("kubernetes\u{200b}", Err("is not one of them"));
        check("", Err("it is empty"));
        check("/kubernetes", Err("it starts with \"/\""));
        check("minio//docs", Err("empty part"));
        check("minio/", Err("empty part"));
        check(&"a".repeat(MAX_NAME + 1), Err("bytes"));
        // Even where the alphabet is not checked first, case and look-alikes are read alike.
        assert_eq!(reserved_store("KUBERNETES"), Some("kubernetes"));
        assert_eq!(reserved_store("Kubernete5/x"), Some("kubernetes"));
    }
}
