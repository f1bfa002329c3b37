//! `hexagone-auditor witness serve`: the witness over HTTP (`POST <prefix>/add-checkpoint`)
//! with its state in a file, checked and persisted under one lock before each answer (so two
//! requests cannot roll the state back), and the client a log uses to ask for cosignatures.
//!
//! HTTP/1.1 is handled here by hand, one request per connection: the protocol is one POST of
//! a few kilobytes, and a full HTTP stack would be the auditor's only use of one for now.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use super::{AddCheckpoint, Witness, WitnessError, WitnessState};

/// Largest request accepted, in bytes.
const MAX_REQUEST: usize = 128 * 1024;

/// Why serving or asking a witness failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Network or file I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The state file does not parse.
    #[error("witness state {path}: {why}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A witness URL is not `http://host:port/prefix`.
    #[error("witness URL {0:?} is not http://host:port[/prefix]")]
    BadUrl(String),
    /// The witness answered something that is not HTTP.
    #[error("witness {url} answered something that is not an HTTP response")]
    BadResponse {
        /// The witness.
        url: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// Reads the state file (a missing file is the empty state).
pub fn load_state(path: &Path) -> Result<WitnessState, ServeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => WitnessState::parse(&text).map_err(|why| ServeError::State {
            path: path.to_path_buf(),
            why,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(WitnessState::default()),
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}

/// Writes the state durably: a new file, synced, renamed over the old one.
fn save_state(path: &Path, state: &WitnessState) -> Result<(), ServeError> {
    let tmp = path.with_extension("tmp");
    let what = format!("writing {}", tmp.display());
    let mut f = std::fs::File::create(&tmp).map_err(io(what.clone()))?;
    f.write_all(state.to_text().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(what))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming to {}", path.display())))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(format!("syncing {}", dir.display())))?;
    }
    Ok(())
}

/// Serves `witness` on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    witness: Witness,
    state_path: PathBuf,
) -> Result<(), ServeError> {
    let state = Arc::new(Mutex::new(load_state(&state_path)?));
    let witness = Arc::new(witness);
    let state_path = Arc::new(state_path);
    loop {
        let (stream, _) = listener.accept().await.map_err(io("accepting"))?;
        let (state, witness, path) = (state.clone(), witness.clone(), state_path.clone());
        tokio::spawn(async move {
            let _ = handle(stream, &witness, &state, &path).await;
        });
    }
}

async fn handle(
    mut stream: TcpStream,
    witness: &Witness,
    state: &Mutex<WitnessState>,
    path: &Path,
) -> std::io::Result<()> {
    let (status, ctype, body) = match read_request(&mut stream).await? {
        Err(why) => (400, "text/plain", format!("{why}\n")),
        Ok((method, target, body)) => {
            if method != "POST" || !target.ends_with("/add-checkpoint") {
                (404, "text/plain", "only POST …/add-checkpoint\n".into())
            } else {
                answer(witness, state, path, &body).await
            }
        }
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Checks, persists, then answers: all under the state lock.
async fn answer(
    witness: &Witness,
    state: &Mutex<WitnessState>,
    path: &Path,
    body: &str,
) -> (u16, &'static str, String) {
    let req = match AddCheckpoint::parse(body) {
        Ok(r) => r,
        Err(e) => return (e.status(), "text/plain", format!("{e}\n")),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut guard = state.lock().await;
    let mut next = guard.clone();
    match witness.add_checkpoint(&mut next, &req, now) {
        Ok(line) => match save_state(path, &next) {
            Ok(()) => {
                *guard = next;
                (200, "text/plain", line)
            }
            Err(e) => (500, "text/plain", format!("{e}\n")),
        },
        Err(WitnessError::Conflict { last, .. }) => (409, "text/x.tlog.size", format!("{last}\n")),
        Err(e) => (e.status(), "text/plain", format!("{e}\n")),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        _ => "Internal Server Error",
    }
}

/// Reads one request: (method, target, body), or why it is malformed.
async fn read_request(
    stream: &mut TcpStream,
) -> std::io::Result<Result<(String, String, String), String>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST {
            return Ok(Err("request too large".into()));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Err("connection closed in the headers".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let Ok(head) = std::str::from_utf8(&buf[..header_end]) else {
        return Ok(Err("headers are not UTF-8".into()));
    };
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (
        first.next().unwrap_or_default().to_string(),
        first.next().unwrap_or_default().to_string(),
    );
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if length > MAX_REQUEST {
        return Ok(Err("request too large".into()));
    }
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Err("connection closed in the body".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    match String::from_utf8(buf[header_end..header_end + length].to_vec()) {
        Ok(body) => Ok(Ok((method, target, body))),
        Err(_) => Ok(Err("body is not UTF-8".into())),
    }
}

/// Sends an `add-checkpoint` request to the witness at `url` (`http://host:port[/prefix]`);
/// returns the status and the body.
pub async fn add_checkpoint(url: &str, req: &AddCheckpoint) -> Result<(u16, String), ServeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ServeError::BadUrl(url.to_string()))?;
    let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_end_matches('/');
    let target = if prefix.is_empty() {
        "/add-checkpoint".to_string()
    } else {
        format!("/{prefix}/add-checkpoint")
    };
    let body = req.to_text();
    let mut stream = TcpStream::connect(host)
        .await
        .map_err(io(format!("connecting to witness {url}")))?;
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(io(format!("sending to witness {url}")))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(io(format!("reading from witness {url}")))?;
    let text = String::from_utf8_lossy(&response);
    let bad = || ServeError::BadResponse {
        url: url.to_string(),
    };
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_string()))
}
