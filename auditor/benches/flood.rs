//! Load figures: `hexagone-auditor serve` with its default limits (512 connections, 64 per
//! client, 10 s for headers and body, 4 MiB bodies, 512 MiB in flight) under attack from the
//! network, and the latency of one honest writer meanwhile. Four phases of `HEXAGONE_BENCH_FLOOD_SECONDS` each
//! (default 20), the honest writer posting 10 observations at a time, one request after the
//! other, retrying a `503` after 100 ms:
//!
//! 1. quiet: the baseline, measured in the same run;
//! 2. anyone on the network, without a token, from one address (`127.0.0.1`):
//!    `HEXAGONE_BENCH_FLOOD_SLOW` connections (default 2,000, four times the connection cap)
//!    that trickle header bytes and connect again when closed, and 8 clients sending oversized
//!    requests as fast as answered (a body declared at 1 GiB, one of 8 MiB sent whole, one of
//!    4 MiB that never comes);
//! 3. the same, the slow connections spread over 64 addresses (`127.0.1.1` to `127.0.1.64`,
//!    about 31 each, under the per-client cap of 64): what the per-client cap does not stop;
//! 4. a writer's stolen token: 4 clients posting 4 MiB bodies of valid observations in a
//!    loop, and 4 declaring 4 MiB bodies they send at 1 KiB/s (each holds 200 MiB of the
//!    budget until its 408).
//!
//! The honest writer posts from `127.0.0.2`, another client. Prints per phase the honest
//! writer's requests, `503`s, and latency (median, 99th
//! percentile, worst, each including retries), and the service's peak resident memory so far
//! (`VmHWM`). Run: `cargo bench -p hexagone-auditor --bench flood`. Figures:
//! `docs/threat-model.md`, *Anyone on the network*.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hexagone_auditor::keys::SignerKey;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Observation `i`, in Paris.
fn observation(i: usize) -> String {
    let node = format!(
        r#"{{"name":"n{}","addresses":[{{"type":"ExternalIP","address":"51.15.{}.1"}}]}}"#,
        i % 13,
        i % 200
    );
    let content = hex::encode(hexagone_auditor::ledger::tree::leaf_hash(&i.to_be_bytes()));
    format!(
        r#"{{"store":"minio/documents","class":"document","object":"flood/{i}","content":"{content}","node":{node}}}"#
    )
}

/// An array of observations `from..from + n`.
fn body(from: usize, n: usize) -> String {
    let items: Vec<String> = (from..from + n).map(observation).collect();
    format!("[{}]", items.join(","))
}

/// An array of observations from `from` as large as fits in `limit` bytes.
fn body_upto(from: usize, limit: usize) -> String {
    let mut out = String::from("[");
    for i in from.. {
        let o = observation(i);
        if out.len() + o.len() + 2 > limit {
            break;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&o);
    }
    out.push(']');
    out
}

/// Where the honest writer connects from.
const HONEST: &str = "127.0.0.2";
/// Where the attackers connect from, but for phase 3's slow connections.
const ATTACKER: &str = "127.0.0.1";

/// Connects to `addr` from the loopback address `from` (each `127.x.y.z` stands for a client).
fn connect(addr: &str, from: &str) -> Option<TcpStream> {
    static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    });
    let s = RT.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(format!("{from}:0").parse().ok()?).ok()?;
        let s = socket.connect(addr.parse().ok()?).await.ok()?;
        s.into_std().ok()
    })?;
    s.set_nonblocking(false).ok()?;
    Some(s)
}

/// One request on its own connection from `from`; the status (0 when the connection failed).
fn post(addr: &str, from: &str, token: &str, body: &str) -> u16 {
    let Some(mut s) = connect(addr, from) else {
        return 0;
    };
    let head = format!(
        "POST /v1/observations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() || s.write_all(body.as_bytes()).is_err() {
        return 0;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The service's peak resident memory so far, in MiB.
fn peak_mib(child: &Child) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// What the honest writer saw in one phase.
struct Seen {
    latencies: Vec<Duration>,
    busy: usize,
    failed: usize,
}

/// The honest writer: one request of 10 observations after the other for `seconds`.
fn honest(addr: &str, token: &str, from: usize, seconds: u64) -> Seen {
    let mut seen = Seen {
        latencies: Vec::new(),
        busy: 0,
        failed: 0,
    };
    let end = Instant::now() + Duration::from_secs(seconds);
    let give_up = end + Duration::from_secs(120);
    let mut next = from;
    while Instant::now() < end {
        let payload = body(next, 10);
        let started = Instant::now();
        while Instant::now() < give_up {
            match post(addr, HONEST, token, &payload) {
                200 => break,
                503 => {
                    seen.busy += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                _ => {
                    seen.failed += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        seen.latencies.push(started.elapsed());
        next += 10;
    }
    seen
}

fn print(phase: &str, seen: &mut Seen, child: &Child) {
    seen.latencies.sort();
    let at = |q: f64| seen.latencies[((seen.latencies.len() - 1) as f64 * q) as usize];
    println!(
        "{phase}: honest writer {} requests of 10 observations, {} answered 503 and retried, {} failed and retried; latency median {:.1?}, p99 {:.1?}, worst {:.1?}; serve's peak RSS so far {:.0} MiB",
        seen.latencies.len(),
        seen.busy,
        seen.failed,
        at(0.5),
        at(0.99),
        at(1.0),
        peak_mib(child)
    );
}

/// Connections that trickle header bytes, one byte per connection per second, connecting
/// again when the service closes them, until `stop`; connection `i` from `sources[i % len]`.
fn slow_flood(addr: &str, n: usize, sources: &[String], stop: &AtomicBool) {
    let open = |i: usize| {
        let s = connect(addr, &sources[i % sources.len()])?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    let mut conns: Vec<Option<TcpStream>> = (0..n).map(open).collect();
    let line = b"POST /v1/observations HTTP/1.1\r\nHost: x\r\nX-Padding: ";
    let mut sent = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let byte = [line.get(sent).copied().unwrap_or(b'a')];
        for (i, c) in conns.iter_mut().enumerate() {
            let alive = c.as_mut().is_some_and(|s| match s.write(&byte) {
                Ok(_) => true,
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            });
            if !alive {
                *c = open(i);
            }
        }
        sent += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Requests without a valid token, larger than `--max-body`, as fast as they are answered.
fn oversized(addr: &str, kind: usize, stop: &AtomicBool) {
    let junk = vec![b'x'; 8 << 20];
    while !stop.load(Ordering::Relaxed) {
        let Some(mut s) = connect(addr, ATTACKER) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
        let (declared, sent) = match kind % 3 {
            0 => (1usize << 30, 64 << 10),
            1 => (8 << 20, 8 << 20),
            _ => (4 << 20, 0),
        };
        let head = format!(
            "POST /v1/observations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer hxa_guess{kind}\r\nContent-Length: {declared}\r\n\r\n"
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(&junk[..sent]);
        let mut answer = [0u8; 256];
        let _ = s.read(&mut answer);
    }
}

/// A stolen token: 4 MiB of valid observations in a loop, or a 4 MiB body sent at 1 KiB/s.
fn token_flood(addr: &str, token: &str, kind: usize, stop: &AtomicBool) {
    let full = body_upto(1_000_000 * (kind + 1), 4 << 20);
    while !stop.load(Ordering::Relaxed) {
        if kind.is_multiple_of(2) {
            post(addr, ATTACKER, token, &full);
            continue;
        }
        let Some(mut s) = connect(addr, ATTACKER) else {
            continue;
        };
        let head = format!(
            "POST /v1/observations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
            4 << 20
        );
        let _ = s.write_all(head.as_bytes());
        for _ in 0..15 {
            if stop.load(Ordering::Relaxed) || s.write_all(&[b' '; 1024]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn start(dir: &Path) -> (Child, String, String, String) {
    let key = dir.join("k");
    hexagone_auditor::keyfile::save(&SignerKey::generate("bench.hexagone/flood").unwrap(), &key)
        .unwrap();
    let tokens = dir.join("tokens");
    let honest = hexagone_auditor::serve::tokens::add(&tokens, "honest").unwrap();
    let stolen = hexagone_auditor::serve::tokens::add(&tokens, "stolen").unwrap();
    let policy = format!(
        "{}/../policies/france-standard.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_hexagone-auditor"))
        .args(["serve", "--db"])
        .arg(format!("sqlite:{}", dir.join("flood.sqlite").display()))
        .args(["--key", key.to_str().unwrap(), "--policy", &policy])
        .args(["--tokens", tokens.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("serve listening on ")
        .unwrap()
        .to_string();
    (child, addr, honest, stolen)
}

fn main() {
    let seconds = env("HEXAGONE_BENCH_FLOOD_SECONDS", 20) as u64;
    let slow = env("HEXAGONE_BENCH_FLOOD_SLOW", 2_000);
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, honest_token, stolen) = start(dir.path());
    println!(
        "serve with its default limits (512 connections, 64 per client, 10 s headers and body, 4 MiB bodies, 512 MiB in flight); {seconds} s per phase"
    );
    let mut quiet = honest(&addr, &honest_token, 0, seconds);
    print("quiet (baseline)", &mut quiet, &child);

    let one = vec![ATTACKER.to_string()];
    let many: Vec<String> = (1..=64).map(|i| format!("127.0.1.{i}")).collect();
    for (sources, from) in [(&one, "one address"), (&many, "64 addresses")] {
        let stop = AtomicBool::new(false);
        let mut flooded = std::thread::scope(|s| {
            s.spawn(|| slow_flood(&addr, slow, sources, &stop));
            for kind in 0..8 {
                let (addr, stop) = (&addr, &stop);
                s.spawn(move || oversized(addr, kind, stop));
            }
            // Let the slow connections take the slots first.
            std::thread::sleep(Duration::from_secs(2));
            let seen = honest(&addr, &honest_token, 100_000, seconds);
            stop.store(true, Ordering::Relaxed);
            seen
        });
        print(
            &format!(
                "{slow} slow connections from {from} and 8 oversized-request clients, no token"
            ),
            &mut flooded,
            &child,
        );
    }

    let stop = AtomicBool::new(false);
    let mut stolen_seen = std::thread::scope(|s| {
        for kind in 0..8 {
            let (addr, stolen, stop) = (&addr, &stolen, &stop);
            s.spawn(move || token_flood(addr, stolen, kind, stop));
        }
        std::thread::sleep(Duration::from_secs(2));
        let seen = honest(&addr, &honest_token, 200_000, seconds);
        stop.store(true, Ordering::Relaxed);
        seen
    });
    print(
        "a stolen token: 4 clients posting 4 MiB of observations, 4 trickling 4 MiB bodies",
        &mut stolen_seen,
        &child,
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = child.wait();
}
