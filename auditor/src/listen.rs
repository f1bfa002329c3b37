//! One bounded HTTP/1 listener for `serve` and `witness serve` (hyper under an axum router):
//! at most `max_connections` connections at once (the next wait in the kernel's listen queue),
//! request headers within `header`, each connection closed after `connection` whatever it is
//! doing, and an accept error (no descriptor left, a reset before accept) logged and retried
//! after a pause, never the end of the service. A client that trickles headers or a body, or
//! never reads its answer, holds one slot for a bounded time. One client (an IPv4 address, an
//! IPv6 /64 prefix) holds at most `per_client` slots: a connection beyond is closed as soon as
//! accepted, so one source cannot take every slot from the others. Slow connections from many
//! sources, each under its cap, could still take every slot: an eighth of the slots
//! ([`reserve`]) is kept for clients holding none, each of which must send its headers within
//! [`RESERVE_HEADER`] there: a connection from a client that holds a slot already is closed at
//! once when only the reserve is left, so a writer not yet connected waits no longer than the
//! reserve takes to turn over, not for the flood's header timeouts.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// The bounds of a listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one client ([`client_of`]); at least 1.
    pub per_client: usize,
    /// Time a client has to send a request's headers (also the idle time allowed between two
    /// requests on a kept-alive connection).
    pub header: Duration,
    /// Time one connection may last, all its requests included.
    pub connection: Duration,
    /// Whether a connection may carry several requests.
    pub keep_alive: bool,
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes; then stops
/// accepting, lets each connection finish the request it is serving (kept-alive connections
/// close after it), and returns once every connection is done (each bounded by
/// `limits.connection`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let kept = reserve(limits.max_connections);
    let slots = Arc::new(Semaphore::new(limits.max_connections - kept));
    let reserved = Arc::new(Semaphore::new(kept));
    let clients = Clients::default();
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // A slot of either kind free, or wait (the next connections wait in the listen queue).
        tokio::select! {
            p = slots.clone().acquire_owned() => drop(p.expect("never closed")),
            p = reserved.clone().acquire_owned() => drop(p.expect("never closed")),
            () = &mut shutdown => break,
        }
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(held) = clients.admit(peer.ip(), limits.per_client) else {
            // Closed at once.
            continue;
        };
        // A shared slot, else one of the reserve if its client holds no other connection;
        // else it is closed at once (its client is served already, and may connect again).
        // A connection on a slot of the reserve sends its headers within RESERVE_HEADER: the
        // reserve turns over quickly when flooding sources take it.
        let (permit, header) = match slots.clone().try_acquire_owned() {
            Ok(p) => (p, limits.header),
            Err(_) if held.first() => match reserved.clone().try_acquire_owned() {
                Ok(p) => (p, limits.header.min(RESERVE_HEADER)),
                Err(_) => continue,
            },
            Err(_) => continue,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header)
                .keep_alive(limits.keep_alive)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let bounded = async {
                tokio::select! {
                    _ = connection.as_mut() => {}
                    () = async { let _ = stopping.wait_for(|s| *s).await; } => {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.as_mut().await;
                    }
                }
            };
            let _ = tokio::time::timeout(limits.connection, bounded).await;
            drop(held);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every slot back: every connection ended (or was cut at its bound).
    let _ = slots
        .acquire_many(u32::try_from(limits.max_connections - kept).unwrap_or(u32::MAX))
        .await;
    let _ = reserved
        .acquire_many(u32::try_from(kept).unwrap_or(u32::MAX))
        .await;
}

/// Time a connection on a slot of the reserve has to send its request headers (at most the
/// listener's own header bound): an honest client sends them at once.
pub const RESERVE_HEADER: Duration = Duration::from_secs(1);

/// The slots of `max_connections` kept for clients that hold no connection: an eighth (none
/// when there is only one slot).
pub fn reserve(max_connections: usize) -> usize {
    if max_connections < 2 {
        0
    } else {
        (max_connections / 8).max(1)
    }
}

/// Who a connection counts against: its IPv4 address (an IPv4-mapped IPv6 address is that
/// IPv4 address), or the /64 prefix of its IPv6 address (the least a site is given, so one
/// client cannot take new slots by changing the low bits).
pub fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & (u128::MAX << 64))),
        },
    }
}

/// Connections open per client.
#[derive(Default, Clone)]
struct Clients(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection counted against its client until dropped.
struct Held {
    clients: Clients,
    client: IpAddr,
    /// Whether its client held no other connection when it was admitted.
    first: bool,
}

impl Held {
    fn first(&self) -> bool {
        self.first
    }
}

impl Clients {
    /// Counts one more connection from `ip`, unless its client already holds `cap`.
    fn admit(&self, ip: IpAddr, cap: usize) -> Option<Held> {
        let client = client_of(ip);
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(client).or_insert(0);
        if *n >= cap.max(1) {
            tracing::debug!("{client} already holds {n} connections: closing its next one");
            return None;
        }
        *n += 1;
        Some(Held {
            clients: self.clone(),
            client,
            first: *n == 1,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_prefix() {
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client_of(a), a);
        assert_eq!(client_of("::ffff:192.0.2.7".parse().unwrap()), a);
        let p: IpAddr = "2001:db8:1:2::".parse().unwrap();
        assert_eq!(
            client_of("2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap()),
            p
        );
        assert_ne!(client_of("2001:db8:1:3::1".parse().unwrap()), p);
    }

    /// Slow connections (they never send a byte) from four loopback addresses, each under its
    /// cap, outnumber the listener's 16 slots, and the header timeout is 30 s: a writer from
    /// another address, connecting after them, is answered within a few seconds (a slot of the
    /// reserve, turned over within [`RESERVE_HEADER`]), not after the flood's header timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_connections_from_many_addresses_leave_a_newcomer_a_slot() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let limits = Limits {
            max_connections: 16,
            per_client: 8,
            header: Duration::from_secs(30),
            connection: Duration::from_secs(60),
            keep_alive: false,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        let connect = |source: u8| async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(std::net::SocketAddr::from(([127, 0, 0, source], 0)))
                .unwrap();
            socket.connect(addr).await.unwrap()
        };
        let mut slow = Vec::new();
        for source in 10..14 {
            for _ in 0..8 {
                slow.push(connect(source).await);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let mut writer = connect(2).await;
        writer
            .write_all(b"GET / HTTP/1.1\r\nhost: auditor\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), writer.read_to_string(&mut answer))
            .await
            .expect("answered within 5 s, not after the slow connections' header timeout")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
        eprintln!("answered in {:?}", started.elapsed());
        drop(slow);
        let _ = stop.send(());
        server.await.unwrap();
    }

    #[test]
    fn a_client_holds_at_most_its_cap_and_gets_slots_back() {
        let clients = Clients::default();
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let b: IpAddr = "192.0.2.8".parse().unwrap();
        let held: Vec<Held> = (0..3).map(|_| clients.admit(a, 3).unwrap()).collect();
        assert_eq!(
            held.iter().map(Held::first).collect::<Vec<_>>(),
            [true, false, false]
        );
        assert!(clients.admit(a, 3).is_none());
        assert!(clients.admit(b, 3).is_some());
        drop(held);
        assert!(clients.admit(a, 3).is_some());
        assert!(clients.0.lock().unwrap().get(&b).is_none());
        assert_eq!(
            (reserve(1), reserve(2), reserve(16), reserve(512)),
            (0, 1, 2, 64)
        );
    }
}
