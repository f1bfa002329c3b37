//! Helpers shared by the integration tests: one control plane at a time, polling.

use std::time::Duration;

use hexagone_testbed::ControlPlane;
use tokio::sync::{Mutex, MutexGuard};

/// How long a test waits for the cluster to converge (pods running, objects visible).
pub const CONVERGE: Duration = Duration::from_secs(120);

/// Control planes are heavy on a small machine: the tests of this binary take turns.
/// (Each test has its own runtime; a tokio mutex works across them and is not poisoned by a
/// failed test.)
pub async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// Starts a control plane, with the error (and component log tails) as the failure message.
pub async fn start() -> anyhow::Result<ControlPlane> {
    Ok(ControlPlane::start().await?)
}

/// Polls `check` until it yields a value, for at most [`CONVERGE`].
pub async fn eventually<T, E, F, Fut>(what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    Ok(hexagone_testbed::wait::until(what, CONVERGE, check).await?)
}
