//! kubectl, built from the same Kubernetes pin as the control plane, run against a test bed
//! with a given kubeconfig and nothing of the person's own kubectl set-up.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

use crate::Error;

/// The binary's name in the bin dir `tests/scripts/controlplane.sh` builds.
pub(crate) const KUBECTL: &str = "kubectl";

/// The kubectl binary of `bin`, or [`Error::MissingBinary`] naming where it was looked for: a
/// bin dir built before kubectl joined the test bed must be rebuilt, not silently worked around.
pub(crate) fn binary(bin: &Path) -> Result<PathBuf, Error> {
    let path = bin.join(KUBECTL);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingBinary { path })
    }
}

/// Runs `binary` with `args` against the cluster of `kubeconfig` and returns how it ended,
/// whatever its exit status (a test may expect kubectl to fail).
///
/// `home` stands in for the person's home directory: kubectl reads `~/.kube/kuberc` (aliases,
/// default flags) and keeps its discovery cache under `~/.kube/cache`, and neither should leak
/// into, or out of, a test.
pub(crate) async fn run<I, S>(
    binary: &Path,
    kubeconfig: &Path,
    home: &Path,
    args: I,
    timeout: Duration,
) -> Result<Output, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    std::fs::create_dir_all(home)
        .map_err(|e| Error::io(format!("creating {}", home.display()), e))?;
    let child = Command::new(binary)
        .args(&args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A kubectl still running at the deadline dies with the dropped future.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Spawn {
            component: KUBECTL,
            binary: binary.to_owned(),
            source,
        })?;
    let shown = || {
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => Err(Error::io(format!("waiting for kubectl {}", shown()), e)),
        Err(_elapsed) => Err(Error::KubectlTimedOut {
            args: shown(),
            waited: timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bin_dir_without_kubectl_names_the_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = binary(dir.path()).unwrap_err();
        match &err {
            Error::MissingBinary { path } => assert_eq!(path, &dir.path().join("kubectl")),
            other => panic!("expected MissingBinary, got {other}"),
        }
        assert!(
            err.to_string().contains("tests/scripts/controlplane.sh"),
            "{err}"
        );

        std::fs::write(dir.path().join("kubectl"), "").unwrap();
        assert_eq!(binary(dir.path()).unwrap(), dir.path().join("kubectl"));
    }
}
