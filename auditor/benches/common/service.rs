//! What the benchmarks that post to `hexagone-auditor serve` share: the service started on
//! loopback with a token of its own, writers posting JSON arrays until each is acknowledged,
//! and the service stopped with its final checkpoint checked.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A running `serve` and what its writers need to reach it.
pub struct Service {
    child: Child,
    out: BufReader<ChildStdout>,
    pub addr: String,
    pub token: String,
    /// The signing key's verifier key (C2SP note form), for `verify --trust`.
    #[allow(dead_code)] // the benchmarks that verify what they wrote read it
    pub key_pub: std::path::PathBuf,
    /// Its log (standard error).
    log: std::path::PathBuf,
}

/// Starts `program serve` on an ephemeral loopback port with a fresh signing key and a token
/// file under `dir` (files named after `name`), on database `db`, with the extra `args`
/// (policy, places, limits); returns once it listens.
pub fn start(program: &Path, dir: &Path, name: &str, db: &str, args: &[OsString]) -> Service {
    let key = dir.join(format!("{name}.serve.key"));
    let signer = hexagone_auditor::keys::SignerKey::generate("bench.hexagone/serve").unwrap();
    hexagone_auditor::keyfile::save(&signer, &key).unwrap();
    let key_pub = dir.join(format!("{name}.serve.key.pub"));
    std::fs::write(&key_pub, signer.verifier().to_string()).unwrap();
    let tokens = dir.join(format!("{name}.tokens"));
    let token = hexagone_auditor::serve::tokens::add(&tokens, "bench").unwrap();
    let log = dir.join(format!("{name}.serve.log"));
    let mut child = Command::new(program)
        .args(["serve", "--db", db, "--key"])
        .arg(&key)
        .arg("--tokens")
        .arg(&tokens)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        // Its log at its default level (a line per request), as a service writes it, into a
        // file rather than the benchmark's output.
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("serve listening on ")
        .unwrap_or_else(|| {
            panic!(
                "serve did not start: {first:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
        .to_string();
    Service {
        child,
        out,
        addr,
        token,
        key_pub,
        log,
    }
}

/// What the writers met besides acknowledgements.
#[derive(Debug, Default, Clone, Copy)]
pub struct Retries {
    /// Answers 503 (the service's queue or in-flight bytes full): retried after 10 ms.
    pub busy: usize,
    /// Connections closed without an answer (past `--max-connections-per-client`, all writers
    /// coming from one address): retried after 10 ms.
    pub closed: usize,
}

/// `clients` writers post `bodies` (writer `c` takes bodies `c`, `c + clients`, …), each
/// waiting for its request's acknowledgement (the entries durable under a signed checkpoint)
/// before sending the next; the time from the first request to the last acknowledgement.
/// Any answer other than 200, 503 or a closed connection fails the benchmark.
pub fn post_all(service: &Service, bodies: &[String], clients: usize) -> (Duration, Retries) {
    let (busy, closed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let t = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            let (busy, closed) = (&busy, &closed);
            s.spawn(move || {
                for body in bodies.iter().skip(c).step_by(clients) {
                    loop {
                        match post(&service.addr, &service.token, body) {
                            Some(200) => break,
                            Some(503) => busy.fetch_add(1, Ordering::Relaxed),
                            None => closed.fetch_add(1, Ordering::Relaxed),
                            Some(code) => panic!("serve answered {code}"),
                        };
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            });
        }
    });
    let retries = Retries {
        busy: busy.into_inner(),
        closed: closed.into_inner(),
    };
    (t.elapsed(), retries)
}

/// One `POST /v1/observations` on a connection of its own; the status, or `None` when the
/// service closed the connection without answering.
fn post(addr: &str, token: &str, body: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "POST /v1/observations HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.split(' ').nth(1).and_then(|c| c.parse().ok())
}

/// Stops the service (SIGTERM) and checks that it exited cleanly with a final checkpoint of
/// `size` entries.
pub fn stop(mut service: Service, size: usize) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(service.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut rest = String::new();
    service.out.read_to_string(&mut rest).unwrap();
    let exited = service.child.wait().unwrap();
    let log = std::fs::read_to_string(&service.log).unwrap_or_default();
    let _ = std::fs::remove_file(&service.log);
    assert!(exited.success(), "{rest}\n{log}");
    assert!(
        rest.contains(&format!("final checkpoint, size {size}")),
        "{rest}\n{log}"
    );
}

/// `lines` as request bodies, JSON arrays of `per_request` observations.
pub fn bodies(lines: impl Iterator<Item = impl AsRef<str>>, per_request: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut body = String::new();
    let mut count = 0;
    for line in lines {
        body.push(if count == 0 { '[' } else { ',' });
        body.push_str(line.as_ref());
        count += 1;
        if count == per_request {
            body.push(']');
            out.push(std::mem::take(&mut body));
            count = 0;
        }
    }
    if count > 0 {
        body.push(']');
        out.push(body);
    }
    out
}
