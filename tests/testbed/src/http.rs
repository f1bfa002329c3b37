//! The one HTTP/1.1 client of the test suites and the demo: one request on a fresh loopback
//! connection (closed after it), the whole answer read within a deadline. Deliberately small:
//! plain HTTP, no redirects, no keep-alive; the bodies are what the programs under test send.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long a request may take, unless said otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// An answer: status, headers (lower-cased, as one text) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The status line and headers, lower-cased.
    pub headers: String,
    /// The body.
    pub body: String,
}

impl Answer {
    /// The body as JSON; panics naming the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn head(addr: &str, method: &str, path: &str, token: Option<&str>, len: usize) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

fn parse(raw: &[u8]) -> std::io::Result<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an HTTP response: {:?}", &text[..text.len().min(200)]),
            )
        })?;
    Ok(Answer {
        status,
        headers: headers.to_ascii_lowercase(),
        body: body.to_owned(),
    })
}

/// Sends one request to `addr` (`host:port`) with an optional bearer token, blocking, within
/// [`DEFAULT_TIMEOUT`]. A server that refuses an oversized body may close before reading it
/// all: the answer it sent is still read.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
    s.set_write_timeout(Some(DEFAULT_TIMEOUT))?;
    s.write_all(head(addr, method, path, token, body.len()).as_bytes())?;
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw)
        && raw.is_empty()
    {
        return Err(e);
    }
    parse(&raw)
}

/// [`request`] on the async runtime, within `timeout`.
pub async fn request_async(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Answer> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(head(addr, method, path, token, body.len()).as_bytes())
            .await?;
        let _ = s.write_all(body).await;
        let mut raw = Vec::new();
        if let Err(e) = s.read_to_end(&mut raw).await
            && raw.is_empty()
        {
            return Err(e);
        }
        Ok(raw)
    };
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{method} {addr}{path}: no answer within {timeout:?}"),
            )
        })??;
    parse(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_with_status_headers_and_body() {
        let a =
            parse(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n{\"x\":1}").unwrap();
        assert_eq!((a.status, a.json()["x"].as_u64()), (503, Some(1)));
        assert!(a.headers.contains("retry-after: 1"));
        assert!(parse(b"garbage").is_err());
    }
}
