//! One bounded HTTP/1 listener for `serve` and `witness serve` (hyper under an axum router):
//! at most `max_connections` connections at once, request headers within `header`, each
//! connection closed after `connection` whatever it is doing, and an accept error (no
//! descriptor left, a reset before accept) logged and retried after a pause, never the end of
//! the service. One client (an IPv4 address, an IPv6 /64 prefix) holds at most `per_client`
//! slots: a connection beyond is closed as soon as accepted, so one source cannot take every
//! slot from the others.
//!
//! When every slot is taken, a new connection takes the slot of a *waiting* one, which is
//! closed: one whose socket has been read dry without a complete request's headers (still
//! sending them, or silent), or a kept-alive one between two requests; of those, the one that
//! has gone the longest without a request being served (since its last answer, or since a
//! second after it was accepted: a writer whose request is on its way is not the first to go). The idea is nginx's, which closes kept-alive connections when it runs out
//! (`ngx_drain_connections`, nginx `src/core/ngx_connection.c`); it goes further here, since a
//! connection still sending its headers can be taken too. Never taken: a connection whose
//! socket has not been read yet (what it sent may be a whole request), and one serving a
//! request, from the call of the service to the moment hyper has taken the last byte of its
//! answer (counted per request, so pipelined requests count each). When every slot serves a
//! request, the next connection waits, accepted, for a slot to end or fall idle. So connections
//! that hold slots without requests being served, from however many addresses, cannot keep an
//! honest client waiting for a header timeout: the listener keeps accepting, and each newcomer
//! displaces the one waiting the longest.

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
        let io = Unread {
            stream,
            slots: slots.clone(),
            slot: slot.state.clone(),
        };
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
                .serve_connection(TokioIo::new(io), service);
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

/// A connection's state word: a base state in the low two bits, and above them the number of
/// requests being served (hyper may call the service for a pipelined request while the
/// previous answer is still being written).
///
/// Accepted, its socket not read dry yet: what it sent may be a whole request.
const UNREAD: usize = 0;
/// Read dry without a complete request's headers: silent, or still sending them.
const NEW: usize = 1;
/// Between two requests on a kept-alive connection.
const IDLE: usize = 2;
/// Its slot went to a newer connection.
const CLOSED: usize = 3;
const BASE: usize = 0b11;
/// How long a new connection counts as active when choosing which waiting one gives way.
const GRACE: Duration = Duration::from_secs(1);
/// One request being served.
const REQUEST: usize = 1 << 2;

/// Whether a connection in state `word` may give its slot to a newcomer.
fn takeable(word: usize) -> bool {
    word == NEW || word == IDLE
}

/// One connection's state, shared by its slot, its stream and the service answering its
/// requests.
struct SlotState {
    word: AtomicUsize,
    /// Since when no request has been served on it (its last answer taken, or [`GRACE`] after
    /// it was accepted), in nanoseconds since the listener started.
    since: AtomicUsize,
}

impl SlotState {
    fn new(since: usize) -> SlotState {
        SlotState {
            word: AtomicUsize::new(UNREAD),
            since: AtomicUsize::new(since),
        }
    }
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

    /// Nanoseconds since the listener started.
    fn now(&self) -> usize {
        usize::try_from(self.started.elapsed().as_nanos()).unwrap_or(usize::MAX)
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
        // A new connection counts as active for a moment: a writer whose request is on its
        // way is not the first to go when others have waited since before it came.
        let grace = usize::try_from(GRACE.as_nanos()).unwrap_or(usize::MAX);
        let state = Arc::new(SlotState::new(self.now().saturating_add(grace)));
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
    /// Closes the takeable connection that has gone the longest without a request being
    /// served; false when none is takeable (each serves a request, or has not been read yet).
    fn close_an_idle_one(&mut self) -> bool {
        // A connection can change state during the scan (a request begins): then look again.
        for _ in 0..8 {
            let Some((id, word)) = self
                .by_age
                .iter()
                .filter_map(|(id, h)| {
                    let word = h.state.word.load(Ordering::Acquire);
                    takeable(word).then(|| (h.state.since.load(Ordering::Acquire), *id, word))
                })
                .min()
                .map(|(_, id, word)| (id, word))
            else {
                return false;
            };
            let won = self.by_age[&id]
                .state
                .word
                .compare_exchange(word, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if won {
                let held = self.release(id).expect("present");
                tracing::debug!(
                    "every connection slot is taken: closing a waiting one from {}",
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

/// A request being served on a connection; the connection falls idle when the last one is
/// dropped.
struct Busy {
    slots: Arc<Slots>,
    slot: Arc<SlotState>,
    /// False when the connection had already been closed for a newer one.
    counted: bool,
}

impl Busy {
    fn begin(slots: Arc<Slots>, slot: Arc<SlotState>) -> Busy {
        // A connection closed for a newer one ends with the request it just began.
        let counted = slot
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w & BASE != CLOSED).then_some(w + REQUEST)
            })
            .is_ok();
        Busy {
            slots,
            slot,
            counted,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        self.slot.since.store(self.slots.now(), Ordering::Release);
        let _ = self
            .slot
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                let w = w - REQUEST;
                Some(if w < REQUEST { IDLE } else { w })
            });
        self.slots.changed.notify_waiters();
    }
}

/// The accepted stream. Its connection becomes takeable the first time a read finds nothing
/// more to read: until then, what the client sent may be a whole request, not yet parsed.
struct Unread {
    stream: tokio::net::TcpStream,
    slots: Arc<Slots>,
    slot: Arc<SlotState>,
}

impl tokio::io::AsyncRead for Unread {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if read.is_pending()
            && self
                .slot
                .word
                .compare_exchange(UNREAD, NEW, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.slots.changed.notify_waiters();
        }
        read
    }
}

impl tokio::io::AsyncWrite for Unread {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
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
            // The body keeps the connection busy until hyper drops it, having taken its last
            // byte (buffered, perhaps not yet flushed to the socket).
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

    fn set(s: &Slot, word: usize, since: usize) {
        s.state.word.store(word, Ordering::Release);
        s.state.since.store(since, Ordering::Release);
    }

    fn word(s: &Slot) -> usize {
        s.state.word.load(Ordering::Acquire)
    }

    #[test]
    fn the_connection_waiting_the_longest_gives_way_never_an_unread_or_busy_one() {
        let slots = Slots::new(3, 3);
        let ip = |i: u8| IpAddr::from([192, 0, 2, i]);
        let mut a = slot(slots.take(ip(1)));
        let mut b = slot(slots.take(ip(2)));
        let mut c = slot(slots.take(ip(3)));
        // Not read yet: what they sent may be whole requests.
        assert!(matches!(slots.take(ip(4)), Take::Full));
        set(&a, NEW, 10);
        set(&b, IDLE, 5);
        set(&c, UNREAD + REQUEST, 0);
        // Waiting the longest: the idle one, though the other never sent a whole request.
        let mut d = slot(slots.take(ip(4)));
        assert!(
            b.closed.try_recv().is_ok(),
            "the longest waiting was not closed"
        );
        assert_eq!(word(&b), CLOSED);
        assert!(a.closed.try_recv().is_err() && c.closed.try_recv().is_err());
        // A closed connection holds no slot, but its task counts until it ends.
        assert_eq!(slots.lock().live, 4);
        drop(b);
        assert_eq!(slots.lock().live, 3);
        set(&d, NEW, 20);
        let mut e = slot(slots.take(ip(5)));
        assert!(a.closed.try_recv().is_ok());
        // Two pipelined requests on e: it stays busy until both are answered.
        let first = Busy::begin(slots.clone(), e.state.clone());
        let second = Busy::begin(slots.clone(), e.state.clone());
        drop(first);
        assert!(!takeable(word(&e)));
        let mut f = slot(slots.take(ip(6)));
        assert!(d.closed.try_recv().is_ok());
        assert!(e.closed.try_recv().is_err() && c.closed.try_recv().is_err());
        // c and e serve requests, f is not read yet: nothing is taken from them.
        assert!(matches!(slots.take(ip(7)), Take::Full));
        drop(second);
        assert_eq!(word(&e), IDLE);
        drop(slot(slots.take(ip(7))));
        assert!(e.closed.try_recv().is_ok());
        assert!(c.closed.try_recv().is_err() && f.closed.try_recv().is_err());
        // A request beginning on a connection already closed leaves it closed.
        drop(Busy::begin(slots.clone(), e.state.clone()));
        assert_eq!(word(&e), CLOSED);
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

    /// The attack a review found: every slot held by kept-alive connections that each had a
    /// request served and send another now and then, and a stream of new connections. The
    /// writer's fresh connection must not be the one taken, though its request is not parsed yet.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_served_once_cannot_make_a_newcomer_the_victim() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections: 8,
            per_client: 1024,
            header: Duration::from_secs(30),
            connection: Duration::from_secs(60),
            keep_alive: true,
        };
        let server = tokio::spawn(serve(listener, app, limits, std::future::pending()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        async fn one_request(s: &mut tokio::net::TcpStream) -> bool {
            if s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .is_err()
            {
                return false;
            }
            let mut buf = [0u8; 256];
            matches!(
                tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await,
                Ok(Ok(n)) if n > 0
            )
        }
        let attacker = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut held: Vec<tokio::net::TcpStream> = Vec::new();
                let mut round = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await
                        && one_request(&mut s).await
                    {
                        held.push(s);
                    }
                    // Refresh the kept connections now and then, so they are never the ones
                    // waiting the longest for long; drop those the listener closed.
                    round += 1;
                    if round.is_multiple_of(16) {
                        let mut alive = Vec::new();
                        for mut s in held.drain(..) {
                            if one_request(&mut s).await {
                                alive.push(s);
                            }
                        }
                        held = alive;
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut answered = 0;
        for _ in 0..40 {
            let (status, _) = ask(addr, "/").await;
            if status == "HTTP/1.1 200 OK" {
                answered += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let _ = attacker.await;
        assert_eq!(answered, 40, "the writer's requests answered");
        server.abort();
    }
}
