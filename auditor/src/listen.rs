//! One bounded HTTP/1 listener for `serve` and `witness serve` (hyper under an axum router):
//! at most `max_connections` connections at once (the next wait in the kernel's listen queue),
//! request headers within `header`, each connection closed after `connection` whatever it is
//! doing, and an accept error (no descriptor left, a reset before accept) logged and retried
//! after a pause, never the end of the service. A client that trickles headers or a body, or
//! never reads its answer, holds one slot for a bounded time.

use std::future::Future;
use std::sync::Arc;
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
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            a = listener.accept() => match a {
                Ok((stream, _)) => stream,
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
