//! `hexagone-auditor witness serve`: the witness's routes (`POST <prefix>/add-checkpoint`, and
//! `GET <prefix>/latest?origin=…` for the last checkpoint it cosigned,
//! axum on hyper) with its state in a file, checked and persisted under one lock before each
//! answer (so two requests cannot roll the state back), and the client a log uses to ask for
//! cosignatures (hyper). Both sides are bounded: the server in connections, header time,
//! request time and size; the client in connect time, exchange time and answer size, so a
//! stalled witness cannot hold a log's acknowledgements forever.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

use super::{AddCheckpoint, Witness, WitnessError, WitnessState};

/// Largest request accepted, in bytes.
pub const MAX_REQUEST: usize = 128 * 1024;
/// Largest answer a log reads from a witness, in bytes (a cosignature line is about 100).
pub const MAX_ANSWER: usize = 64 * 1024;
/// Time a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time one connection may last, request and answer included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; further ones wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections served at once from one client address (`crate::listen::client_of`): a witness
/// hears from a few logs, so one source may hold an eighth of the slots.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = MAX_CONNECTIONS / 8;
/// Time a log waits for a witness to accept its connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a log waits for a witness's whole answer once connected.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

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
    /// The witness answered something that is not a bounded HTTP response.
    #[error("witness {url} answered badly: {why}")]
    BadResponse {
        /// The witness.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The witness did not answer in time.
    #[error("witness {url} did not {what} within {limit:?}")]
    Timeout {
        /// The witness.
        url: String,
        /// What it did not do.
        what: &'static str,
        /// The bound.
        limit: Duration,
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

/// Writes the state durably: a new file, synced, renamed over the old one
/// ([`crate::durable::replace`]).
fn save_state(path: &Path, state: &WitnessState) -> Result<(), ServeError> {
    crate::durable::replace(
        path,
        &path.with_extension("tmp"),
        state.to_text().as_bytes(),
    )
    .map_err(|(action, source)| ServeError::Io {
        what: format!("{action} {}", path.display()),
        source,
    })
}

/// What the route shares.
struct WitnessService {
    witness: Witness,
    state: Mutex<WitnessState>,
    path: PathBuf,
}

/// The witness's routes: `POST <any prefix>/add-checkpoint`, bodies up to [`MAX_REQUEST`].
fn router(service: Arc<WitnessService>) -> Router {
    Router::new()
        .fallback(route)
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .with_state(service)
}

async fn route(
    State(service): State<Arc<WitnessService>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    if method == Method::GET && uri.path().ends_with("/latest") {
        return serve_latest(&service, uri.query().unwrap_or_default()).await;
    }
    if method != Method::POST || !uri.path().ends_with("/add-checkpoint") {
        return text(
            StatusCode::NOT_FOUND,
            "only POST …/add-checkpoint and GET …/latest?origin=ORIGIN\n".into(),
        );
    }
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(StatusCode::BAD_REQUEST, "body is not UTF-8\n".into());
    };
    answer(&service, body).await
}

/// `GET …/latest?origin=ORIGIN`: the last checkpoint of that log this witness cosigned, with
/// its cosignature (a signed note anyone can check), or 404. What a verifier holds a bundle
/// to, so that one cut back to an older checkpoint is caught (`verify --fresh-from`).
async fn serve_latest(service: &WitnessService, query: &str) -> Response {
    let origin = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "origin")
        .map(|(_, v)| v.into_owned());
    let Some(origin) = origin else {
        return text(StatusCode::BAD_REQUEST, "give ?origin=ORIGIN\n".into());
    };
    match service.state.lock().await.cosigned.get(&origin) {
        Some(note) => text(StatusCode::OK, note.clone()),
        None => text(
            StatusCode::NOT_FOUND,
            format!("no checkpoint of {origin:?} cosigned here\n"),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// Checks, persists, then answers: all under the state lock.
async fn answer(service: &WitnessService, body: &str) -> Response {
    let status =
        |code: u16| StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let req = match AddCheckpoint::parse(body) {
        Ok(r) => r,
        Err(e) => return text(status(e.status()), format!("{e}\n")),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut guard = service.state.lock().await;
    let mut next = guard.clone();
    match service.witness.add_checkpoint(&mut next, &req, now) {
        Ok(line) => match save_state(&service.path, &next) {
            Ok(()) => {
                *guard = next;
                text(StatusCode::OK, line)
            }
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        Err(WitnessError::Conflict { last, .. }) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{last}\n"),
        )
            .into_response(),
        Err(e) => text(status(e.status()), format!("{e}\n")),
    }
}

/// Serves `witness` on `listener` until the task is dropped. A failed accept (no file
/// descriptor left, a connection reset before it was accepted) is logged and retried after a
/// pause, never the end of the witness; each connection is bounded by [`HEADER_TIMEOUT`] and
/// [`CONNECTION_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are served at once.
pub async fn serve(
    listener: TcpListener,
    witness: Witness,
    state_path: PathBuf,
) -> Result<(), ServeError> {
    let service = Arc::new(WitnessService {
        witness,
        state: Mutex::new(load_state(&state_path)?),
        path: state_path,
    });
    let limits = crate::listen::Limits {
        max_connections: MAX_CONNECTIONS,
        per_client: MAX_CONNECTIONS_PER_CLIENT,
        header: HEADER_TIMEOUT,
        connection: CONNECTION_TIMEOUT,
        keep_alive: false,
    };
    crate::listen::serve(listener, router(service), limits, std::future::pending()).await;
    Ok(())
}

/// How long and how much a log waits for a witness.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// Until the connection is accepted.
    pub connect: Duration,
    /// For the whole answer once connected.
    pub exchange: Duration,
    /// Largest answer read, in bytes.
    pub answer: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            connect: CONNECT_TIMEOUT,
            exchange: EXCHANGE_TIMEOUT,
            answer: MAX_ANSWER,
        }
    }
}

/// Sends an `add-checkpoint` request to the witness at `url` (`http://host:port[/prefix]`);
/// returns the status and the body. Bounded by [`ClientLimits::default`].
pub async fn add_checkpoint(url: &str, req: &AddCheckpoint) -> Result<(u16, String), ServeError> {
    add_checkpoint_within(url, req, ClientLimits::default()).await
}

/// [`add_checkpoint`] within the given limits.
pub async fn add_checkpoint_within(
    url: &str,
    req: &AddCheckpoint,
    limits: ClientLimits,
) -> Result<(u16, String), ServeError> {
    exchange(url, "/add-checkpoint", Some(req.to_text()), limits).await
}

/// The last checkpoint of the log `origin` the witness at `url` cosigned (`GET …/latest`),
/// with its cosignature; `None` when it cosigned none. Bounded by [`ClientLimits::default`].
pub async fn latest(url: &str, origin: &str) -> Result<Option<String>, ServeError> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("origin", origin)
        .finish();
    let (status, body) = exchange(
        url,
        &format!("/latest?{query}"),
        None,
        ClientLimits::default(),
    )
    .await?;
    match status {
        200 => Ok(Some(body)),
        404 => Ok(None),
        _ => Err(ServeError::BadResponse {
            url: url.to_string(),
            why: format!("status {status}: {}", body.trim()),
        }),
    }
}

/// One bounded HTTP/1 exchange with the witness at `url`: a POST of `body` or a GET, to the
/// witness's prefix followed by `target`.
async fn exchange(
    url: &str,
    target: &str,
    body: Option<String>,
    limits: ClientLimits,
) -> Result<(u16, String), ServeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ServeError::BadUrl(url.to_string()))?;
    let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(ServeError::BadUrl(url.to_string()));
    }
    let prefix = prefix.trim_end_matches('/');
    let target = if prefix.is_empty() {
        target.to_string()
    } else {
        format!("/{prefix}{target}")
    };
    let timeout = |what, limit| ServeError::Timeout {
        url: url.to_string(),
        what,
        limit,
    };
    let bad = |why: String| ServeError::BadResponse {
        url: url.to_string(),
        why,
    };
    let stream = tokio::time::timeout(limits.connect, TcpStream::connect(host))
        .await
        .map_err(|_| timeout("accept the connection", limits.connect))?
        .map_err(io(format!("connecting to witness {url}")))?;
    let request = match body {
        Some(body) => axum::http::Request::post(&target)
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::HOST, host)
            .body(Full::new(Bytes::from(body))),
        None => axum::http::Request::get(&target)
            .header(header::HOST, host)
            .body(Full::new(Bytes::new())),
    }
    .map_err(|_| ServeError::BadUrl(url.to_string()))?;
    let exchange = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| bad(format!("HTTP handshake: {e}")))?;
        let driver = tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| bad(format!("sending the request: {e}")))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), limits.answer)
            .collect()
            .await
            .map_err(|e| {
                bad(format!(
                    "reading the answer (at most {} bytes): {e}",
                    limits.answer
                ))
            })?
            .to_bytes();
        driver.abort();
        Ok::<_, ServeError>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(limits.exchange, exchange)
        .await
        .map_err(|_| timeout("answer", limits.exchange))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn request() -> AddCheckpoint {
        AddCheckpoint {
            old: 0,
            proof: Vec::new(),
            note: "example.test/log\n1\nAAAA\n\n— example.test/log AAAA\n".into(),
        }
    }

    /// A "witness" that accepts connections and never answers: the log gives up in bounded
    /// time with an error that says so, rather than waiting for ever.
    const QUICK: ClientLimits = ClientLimits {
        connect: Duration::from_secs(5),
        exchange: Duration::from_millis(300),
        answer: MAX_ANSWER,
    };

    #[tokio::test]
    async fn a_stalled_witness_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (s, _) = listener.accept().await.unwrap();
                held.push(s);
            }
        });
        let started = std::time::Instant::now();
        let err = add_checkpoint_within(&format!("http://{addr}"), &request(), QUICK)
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(err, ServeError::Timeout { what: "answer", .. }),
            "{err}"
        );
    }

    /// A witness that streams an endless answer: the log stops reading at MAX_ANSWER.
    #[tokio::test]
    async fn an_endless_answer_is_cut_at_the_bound() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
                .await;
            let chunk = vec![b'a'; 65536];
            while s.write_all(&chunk).await.is_ok() {}
        });
        let limits = ClientLimits {
            exchange: Duration::from_secs(60),
            ..QUICK
        };
        let err = add_checkpoint_within(&format!("http://{addr}"), &request(), limits)
            .await
            .unwrap_err();
        assert!(matches!(err, ServeError::BadResponse { .. }), "{err}");
        assert!(err.to_string().contains("at most"), "{err}");
    }

    /// Idle connections (a slow client, or a flood of them) do not stop the witness answering
    /// a real request, and a request for another path is refused, not served.
    #[tokio::test]
    async fn idle_connections_do_not_stall_the_witness() {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let signer = crate::ledger::cosignature::WitnessSigner::generate("witness.test/w").unwrap();
        let witness = Witness::new(signer, Vec::new());
        tokio::spawn(serve(listener, witness, dir.path().join("state")));
        let mut idle = Vec::new();
        for _ in 0..20 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let (status, body) = add_checkpoint_within(&format!("http://{addr}/w"), &request(), QUICK)
            .await
            .unwrap();
        // No log key is configured: the witness refuses the checkpoint, and says why.
        assert!((400..500).contains(&status), "{status} {body}");
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = vec![0u8; 256];
        let n = s.read(&mut answer).await.unwrap();
        assert!(
            answer[..n].starts_with(b"HTTP/1.1 404"),
            "{:?}",
            String::from_utf8_lossy(&answer[..n])
        );
    }

    /// A link planted where the state's temporary file goes is not written through.
    #[test]
    fn a_link_planted_as_the_temporary_state_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let state = dir.path().join("w.state");
        std::os::unix::fs::symlink(&target, state.with_extension("tmp")).unwrap();
        save_state(&state, &WitnessState::default()).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        assert_eq!(load_state(&state).unwrap(), WitnessState::default());
    }
}
