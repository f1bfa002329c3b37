//! A component that cannot start makes `ControlPlane::start` fail with its log, not hang.

use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::PathBuf;

use hexagone_testbed::{BIN_ENV, ControlPlane, Error};

use crate::util;

#[tokio::test]
async fn broken_apiserver_fails_start_with_its_log_tail() -> anyhow::Result<()> {
    let _serial = util::serial().await;
    let real = PathBuf::from(std::env::var_os(BIN_ENV).ok_or_else(|| {
        anyhow::anyhow!("{BIN_ENV} is not set: run tests/scripts/controlplane.sh")
    })?);
    let bin = tempfile::tempdir()?;
    for entry in std::fs::read_dir(&real)? {
        let entry = entry?;
        if entry.file_name() != "kube-apiserver" {
            symlink(entry.path(), bin.path().join(entry.file_name()))?;
        }
    }
    let fake = bin.path().join("kube-apiserver");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'refusing to serve: injected failure' >&2\nexit 3\n",
    )?;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;

    let started = ControlPlane::start_from(bin.path()).await;
    match started {
        Err(Error::Exited {
            component,
            tail,
            log,
            ..
        }) => {
            assert_eq!(component, "kube-apiserver");
            assert!(tail.contains("injected failure"), "tail: {tail}");
            assert!(
                log.is_file(),
                "a failed start keeps its logs at {}",
                log.display()
            );
            let dir = log.parent().and_then(|p| p.parent()).map(PathBuf::from);
            if let Some(dir) = dir.filter(|d| d.starts_with(std::env::temp_dir())) {
                std::fs::remove_dir_all(dir)?;
            }
        }
        Err(other) => anyhow::bail!("expected kube-apiserver to exit, got: {other}"),
        Ok(plane) => anyhow::bail!("a fake kube-apiserver started a control plane: {plane:?}"),
    }
    Ok(())
}
