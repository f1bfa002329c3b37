//! One bounded HTTP/1 listener for `serve` and `witness serve` (hyper under an axum router):
//! at most `max_connections` connections at once (the next wait in the kernel's listen queue),
//! request headers within `header`, each connection closed after `connection` whatever it is
//! doing, and an accept error (no descriptor left, a reset before accept) logged and retried
//! after a pause, never the end of the service. A client that trickles headers or a body, or
//! never reads its answer, holds one slot for a bounded time. One client (an IPv4 address, an
//! IPv6 /64 prefix) holds at most `per_client` slots: a connection beyond is closed as soon as
//! accepted, so one source cannot take every slot from the others.

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
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let clients = Clients::default();
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (stream, held) = tokio::select! {
            a = listener.accept() => match a {
                Ok((stream, peer)) => match clients.admit(peer.ip(), limits.per_client) {
                    Some(held) => (stream, held),
                    // Closed at once; its slot goes back with the permit.
                    None => continue,
                },
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header)
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
        .acquire_many(u32::try_from(limits.max_connections).unwrap_or(u32::MAX))
        .await;
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

    #[test]
    fn a_client_holds_at_most_its_cap_and_gets_slots_back() {
        let clients = Clients::default();
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let b: IpAddr = "192.0.2.8".parse().unwrap();
        let held: Vec<Held> = (0..3).map(|_| clients.admit(a, 3).unwrap()).collect();
        assert!(clients.admit(a, 3).is_none());
        assert!(clients.admit(b, 3).is_some());
        drop(held);
        assert!(clients.admit(a, 3).is_some());
        assert!(clients.0.lock().unwrap().get(&b).is_none());
    }
}
