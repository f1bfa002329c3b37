//! One bounded HTTP/1 listener for `serve` and `witness serve` (hyper under an axum router):
//! at most `max_connections` connections at once, request headers within `header`, each
//! connection closed after `connection` whatever it is doing, and an accept error (no
//! descriptor left, a reset before accept) logged and retried after a pause, never the end of
//! the service. One client (an IPv4 address, an IPv6 /64 prefix) holds at most `per_client`
//! slots: a connection beyond is closed as soon as accepted, so one source cannot take every
//! slot from the others.
//!
//! When every slot is taken, a new connection takes the slot of an *idle* one, one waiting
//! for a request's headers: first the oldest that has never sent a request, then the one idle
//! the longest between two requests, which is closed (as nginx reuses its kept-alive
//! connections when it runs out, `ngx_drain_connections` in nginx's
//! `src/core/ngx_connection.c`). A connection serving a request (from its headers to the last
//! byte of its answer) is never closed for another; when every slot serves one, the next
//! connection waits, accepted, for a slot to end or fall idle. So connections that only hold
//! slots without sending requests, from however many addresses, cannot keep an honest client
//! waiting: the listener keeps accepting, and each newcomer displaces one of them.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot, watch};

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
    let slots = Slots::new(limits.max_connections, limits.per_client);
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    'accept: loop {
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A slot: a free one, or an idle connection's; else wait, holding this connection
        // (the next ones wait in the kernel's listen queue), until one ends or falls idle.
        let slot = loop {
            let changed = slots.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match slots.take(peer.ip()) {
                Take::Slot(slot) => break slot,
                // Closed at once.
                Take::ClientFull => continue 'accept,
                Take::Full => {
                    tracing::debug!("every slot serves a request: waiting");
                    tokio::select! {
                        () = changed => {}
                        () = &mut shutdown => break 'accept,
                    }
                }
            }
        };
        let service = Tracked {
            inner: TowerToHyperService::new(app.clone()),
            slots: slots.clone(),
            slot: slot.state.clone(),
        };
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let Slot {
                state: _state,
                mut closed,
                guard,
            } = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header)
                .keep_alive(limits.keep_alive)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let bounded = async {
                tokio::select! {
                    _ = connection.as_mut() => {}
                    // Its slot went to a newer connection while it waited for a request.
                    _ = &mut closed => {}
                    () = async { let _ = stopping.wait_for(|s| *s).await; } => {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.as_mut().await;
                    }
                }
            };
            let _ = tokio::time::timeout(limits.connection, bounded).await;
            drop(guard);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection ended (or was cut at its bound).
    loop {
        let changed = slots.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if slots.is_empty() {
            break;
        }
        changed.await;
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

/// A connection's state, as its slot's claimants see it.
const NEW: usize = 0;
/// Serving a request: from its headers to the last byte of its answer.
const BUSY: usize = 1;
/// Waiting for the next request on a kept-alive connection.
const IDLE: usize = 2;
/// Its slot went to a newer connection.
const CLOSED: usize = 3;

/// One connection's state, shared by its slot and the service answering its requests.
struct SlotState {
    state: AtomicUsize,
    /// When it last fell idle, in nanoseconds since the listener started.
    idle_since: AtomicUsize,
}

/// The open connections.
struct Slots {
    max: usize,
    per_client: usize,
    started: Instant,
    open: Mutex<Open>,
    /// Told when a connection ends or falls idle.
    changed: Notify,
}

#[derive(Default)]
struct Open {
    next: u64,
    /// The connections holding a slot, oldest first.
    by_age: BTreeMap<u64, Held>,
    /// Slots held per client.
    clients: HashMap<IpAddr, usize>,
    /// Connections whose task has not ended yet (a closed one holds no slot but is counted
    /// here until its task ends).
    live: usize,
}

struct Held {
    client: IpAddr,
    state: Arc<SlotState>,
    close: oneshot::Sender<()>,
}

/// What a new connection gets.
enum Take {
    Slot(Slot),
    /// Its client holds its cap: the connection is closed.
    ClientFull,
    /// Every slot serves a request.
    Full,
}

/// A slot, given back when dropped.
struct Slot {
    state: Arc<SlotState>,
    /// Resolves when the slot goes to a newer connection.
    closed: oneshot::Receiver<()>,
    guard: SlotGuard,
}

struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
}

impl Slots {
    fn new(max: usize, per_client: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max: max.max(1),
            per_client: per_client.max(1),
            started: Instant::now(),
            open: Mutex::default(),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_empty(&self) -> bool {
        self.lock().live == 0
    }

    /// A slot for a connection from `ip`: a free one, or an idle connection's.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Take {
        let client = client_of(ip);
        let mut open = self.lock();
        let n = open.clients.get(&client).copied().unwrap_or(0);
        if n >= self.per_client {
            tracing::debug!("{client} already holds {n} connections: closing its next one");
            return Take::ClientFull;
        }
        if open.by_age.len() >= self.max && !open.close_an_idle_one() {
            return Take::Full;
        }
        let id = open.next;
        open.next += 1;
        let state = Arc::new(SlotState {
            state: AtomicUsize::new(NEW),
            idle_since: AtomicUsize::new(0),
        });
        let (close, closed) = oneshot::channel();
        open.by_age.insert(
            id,
            Held {
                client,
                state: state.clone(),
                close,
            },
        );
        *open.clients.entry(client).or_insert(0) += 1;
        open.live += 1;
        Take::Slot(Slot {
            state,
            closed,
            guard: SlotGuard {
                slots: self.clone(),
                id,
            },
        })
    }
}

impl Open {
    /// Closes the oldest connection that never sent a request, else the one idle the longest
    /// between two requests; false when every connection serves one.
    fn close_an_idle_one(&mut self) -> bool {
        let new = self
            .by_age
            .iter()
            .filter(|(_, h)| h.state.state.load(Ordering::Acquire) == NEW)
            .map(|(id, _)| *id);
        let mut idle: Vec<(usize, u64)> = self
            .by_age
            .iter()
            .filter(|(_, h)| h.state.state.load(Ordering::Acquire) == IDLE)
            .map(|(id, h)| (h.state.idle_since.load(Ordering::Acquire), *id))
            .collect();
        idle.sort_unstable();
        let candidates: Vec<u64> = new.chain(idle.into_iter().map(|(_, id)| id)).collect();
        for id in candidates {
            let state = &self.by_age[&id].state.state;
            let won = [NEW, IDLE].into_iter().any(|from| {
                state
                    .compare_exchange(from, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            });
            if won {
                let held = self.release(id).expect("present");
                tracing::debug!(
                    "every connection slot is taken: closing an idle one from {}",
                    held.client
                );
                let _ = held.close.send(());
                return true;
            }
        }
        false
    }

    /// Takes connection `id` out of the slots, and out of its client's count.
    fn release(&mut self, id: u64) -> Option<Held> {
        let held = self.by_age.remove(&id)?;
        if let Some(n) = self.clients.get_mut(&held.client) {
            *n -= 1;
            if *n == 0 {
                self.clients.remove(&held.client);
            }
        }
        Some(held)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        open.release(self.id);
        open.live -= 1;
        drop(open);
        self.slots.changed.notify_waiters();
    }
}

/// The router behind one connection, marking the connection busy from a request's headers to
/// the end of its answer's body.
struct Tracked {
    inner: TowerToHyperService<Router>,
    slots: Arc<Slots>,
    slot: Arc<SlotState>,
}

/// A request being served on a connection; the connection falls idle when dropped.
struct Busy {
    slots: Arc<Slots>,
    slot: Arc<SlotState>,
}

impl Busy {
    fn begin(slots: Arc<Slots>, slot: Arc<SlotState>) -> Busy {
        // A connection closed for a newer one ends with the request it just began.
        let _ = slot
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s != CLOSED).then_some(BUSY)
            });
        Busy { slots, slot }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let since = self.slots.started.elapsed().as_nanos();
        self.slot.idle_since.store(
            usize::try_from(since).unwrap_or(usize::MAX),
            Ordering::Release,
        );
        let _ = self
            .slot
            .state
            .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire);
        self.slots.changed.notify_waiters();
    }
}

type Answer = hyper::Response<Body>;

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let busy = Busy::begin(self.slots.clone(), self.slot.clone());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await?;
            // The body keeps the connection busy until hyper drops it, after its last byte.
            Ok(answer.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _busy = &busy;
                    frame
                }))
            }))
        })
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

    fn slot(take: Take) -> Slot {
        match take {
            Take::Slot(s) => s,
            Take::ClientFull => panic!("refused: its client is full"),
            Take::Full => panic!("refused: every slot serves a request"),
        }
    }

    #[test]
    fn a_client_holds_at_most_its_cap_and_gets_slots_back() {
        let slots = Slots::new(10, 3);
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let b: IpAddr = "192.0.2.8".parse().unwrap();
        let held: Vec<Slot> = (0..3).map(|_| slot(slots.take(a))).collect();
        assert!(matches!(slots.take(a), Take::ClientFull));
        drop(slot(slots.take(b)));
        drop(held);
        drop(slot(slots.take(a)));
        let open = slots.lock();
        assert!(open.clients.is_empty() && open.by_age.is_empty() && open.live == 0);
    }

    fn set(s: &Slot, state: usize, idle_since: usize) {
        s.state.state.store(state, Ordering::Release);
        s.state.idle_since.store(idle_since, Ordering::Release);
    }

    #[test]
    fn a_full_listener_closes_a_silent_connection_then_the_longest_idle_never_a_busy_one() {
        let slots = Slots::new(3, 3);
        let ip = |i: u8| IpAddr::from([192, 0, 2, i]);
        let mut a = slot(slots.take(ip(1)));
        let mut b = slot(slots.take(ip(2)));
        let mut c = slot(slots.take(ip(3)));
        set(&b, BUSY, 0);
        set(&c, IDLE, 5);
        // The one that never sent a request goes first, even before an idle one.
        let mut d = slot(slots.take(ip(4)));
        assert!(
            a.closed.try_recv().is_ok(),
            "the silent connection was not closed"
        );
        assert_eq!(a.state.state.load(Ordering::Acquire), CLOSED);
        assert!(b.closed.try_recv().is_err() && c.closed.try_recv().is_err());
        // A closed connection holds no slot, but its task counts until it ends.
        assert_eq!(slots.lock().live, 4);
        drop(a);
        assert_eq!(slots.lock().live, 3);
        // Among idle ones, the one idle the longest.
        set(&d, IDLE, 3);
        let mut e = slot(slots.take(ip(5)));
        assert!(d.closed.try_recv().is_ok());
        assert!(c.closed.try_recv().is_err());
        set(&e, BUSY, 0);
        let f = slot(slots.take(ip(6)));
        assert!(c.closed.try_recv().is_ok());
        set(&f, BUSY, 0);
        // Every slot serves a request: none is taken from them.
        assert!(matches!(slots.take(ip(7)), Take::Full));
        assert!(b.closed.try_recv().is_err() && e.closed.try_recv().is_err());
        // A request that ends leaves its connection idle, and so takeable.
        drop(Busy {
            slots: slots.clone(),
            slot: e.state.clone(),
        });
        assert_eq!(e.state.state.load(Ordering::Acquire), IDLE);
        drop(slot(slots.take(ip(7))));
        assert!(e.closed.try_recv().is_ok());
        // A request beginning on a connection already closed leaves it closed.
        drop(Busy::begin(slots.clone(), e.state.clone()));
        assert_eq!(e.state.state.load(Ordering::Acquire), CLOSED);
    }

    /// Sends `request` on a new connection and returns the status line and how long it took.
    async fn ask(addr: std::net::SocketAddr, path: &str) -> (String, Duration) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let started = Instant::now();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer).await;
        (
            answer.lines().next().unwrap_or("").to_owned(),
            started.elapsed(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_connections_give_way_and_requests_being_served_do_not() {
        use tokio::io::AsyncReadExt as _;
        let app = Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_millis(800)).await;
                    "slow"
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections: 4,
            // Every connection here comes from 127.0.0.1.
            per_client: 16,
            header: Duration::from_secs(30),
            connection: Duration::from_secs(60),
            keep_alive: true,
        };
        let server = tokio::spawn(serve(listener, app, limits, std::future::pending()));
        // Four connections that send nothing take every slot for the 30 s header bound.
        let mut silent = Vec::new();
        for _ in 0..4 {
            silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (status, took) = ask(addr, "/").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(took < Duration::from_secs(1), "waited {took:?}");
        let mut closed = 0;
        for s in &mut silent {
            let mut buf = [0u8; 1];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await
            {
                closed += 1;
            }
        }
        assert_eq!(closed, 1, "silent connections closed for the newcomer");
        drop(silent);
        // Four requests being served hold every slot: the next connection waits for one of
        // them, and none is cut.
        let slow: Vec<_> = (0..4).map(|_| tokio::spawn(ask(addr, "/slow"))).collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, took) = ask(addr, "/").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            took > Duration::from_millis(300),
            "answered in {took:?} beside four slow requests"
        );
        for s in slow {
            assert_eq!(s.await.unwrap().0, "HTTP/1.1 200 OK");
        }
        server.abort();
    }
}
