//! Polling with a deadline, the only way the test bed (and its users) wait for anything.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is checked again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A condition that did not hold before its deadline.
#[derive(Debug, thiserror::Error)]
#[error("{what}: still not true after {waited:?}; last check: {last}")]
pub struct Timeout {
    /// What was waited for.
    pub what: String,
    /// How long it was waited for.
    pub waited: Duration,
    /// What the last check said.
    pub last: String,
}

/// Checks `check` every [`POLL_INTERVAL`] until it returns `Ok`, or fails with the last `Err`
/// message once `timeout` has passed. The check always runs at least once.
pub async fn until<T, E, F, Fut>(
    what: impl Into<String>,
    timeout: Duration,
    mut check: F,
) -> Result<T, Timeout>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let start = Instant::now();
    loop {
        let last = match check().await {
            Ok(value) => return Ok(value),
            Err(e) => e.to_string(),
        };
        if start.elapsed() >= timeout {
            return Err(Timeout {
                what: what.into(),
                waited: start.elapsed(),
                last,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A plain-HTTP GET on loopback (etcd and kwok health endpoints), returning status and body.
pub(crate) async fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let addr = format!("127.0.0.1:{port}");
    crate::http::request_async(&addr, "GET", path, None, b"", Duration::from_secs(5))
        .await
        .map(|a| (a.status, a.body))
        .map_err(|e| format!("GET {addr}{path}: {e}"))
}
