//! Polling with a deadline, the only way the test bed (and its users) wait for anything.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

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
    let request = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(
                format!(
                    "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .map_err(|_| format!("GET 127.0.0.1:{port}{path}: no answer within 5s"))?
        .map_err(|e| format!("GET 127.0.0.1:{port}{path}: {e}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET 127.0.0.1:{port}{path}: not an HTTP response: {head:?}"))?;
    Ok((status, body.to_owned()))
}
