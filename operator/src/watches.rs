//! What every watch of the operator shares: a short backoff of its own, its errors logged where
//! it fails rather than handed to the controller, and a bounded wait for a cache's first listing.
//!
//! Two lessons of the operator tests behind this (`operator/tests/it/leader.rs`):
//! - kube-runtime's controller pauses all its trigger streams at once after an error of any of
//!   them (its trigger backoff). With a dozen watches failing together through an API server
//!   restart (refused connections, 403 until RBAC is loaded, 410 for every resumed watch), each
//!   error cost every watch a pause: the Node watch, which the qualifier's passes and every
//!   reconcile read, listed again only after more than 30 s. Each watch now backs off alone, and
//!   the controller sees no error.
//! - kube-runtime's `Store::wait_until_ready` rests on one oneshot channel whose receiver keeps
//!   one waker: of several tasks waiting at once (the qualifier's pass and a reconcile, say), only
//!   the last one to poll is woken when the listing ends. A reconcile waiting without bound
//!   waited for ever, and held its Workplace: every later change of it waited behind.
//!   [`listed`] polls again at short intervals, and gives up at a deadline.

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;

/// The backoff of each watch: doubling from 0.5 s to at most 5 s, and back to 0.5 s at the
/// next event it delivers. kube-runtime's default (0.8 s doubling to 30 s, forgotten only after
/// 120 s without an error) left a watch deaf for up to 30 s after an outage.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// `stream` without its errors, each logged as a failure to watch `what` and counted in
/// `errors` (`hexagone_watch_errors_total`, labelled with the kind watched): the watch backs off
/// and tries again by itself ([`WatchBackoff`]); passed on, an error would pause the others.
pub(crate) fn logged<S, T>(
    what: impl std::fmt::Display + Send + 'static,
    errors: prometheus::IntCounter,
    stream: S,
) -> impl Stream<Item = T> + Send
where
    S: Stream<Item = Result<T, watcher::Error>> + Send,
    T: Send,
{
    stream.filter_map(move |item| {
        std::future::ready(match item {
            Ok(item) => Some(item),
            Err(e) => {
                errors.inc();
                tracing::warn!("watching {what}: {e} (trying again)");
                None
            }
        })
    })
}

/// How often a wait for a cache polls it again: the longest a lost wakeup costs.
const RECHECK: Duration = Duration::from_millis(200);

/// Whether `store` has listed its objects, waiting for it at most `within`.
pub(crate) async fn listed<K>(store: &Store<K>, within: Duration) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        // Polled afresh each time: this task's waker is registered again, whoever else waits.
        match tokio::time::timeout(left.min(RECHECK), store.wait_until_ready()).await {
            Ok(ready) => return ready.is_ok(),
            Err(_) if left <= RECHECK => return false,
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::Node;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::utils::Backoff as _;
    use kube::runtime::watcher::Event;

    use super::{WatchBackoff, listed, logged};

    /// Each watch's backoff doubles to 5 s at most, never gives up, and starts again at 0.5 s
    /// after an event.
    #[test]
    fn a_watch_backs_off_briefly_and_forgets_at_its_next_event() {
        let mut b = WatchBackoff::default();
        let waits: Vec<u64> = (0..8)
            .map(|_| b.next().unwrap().as_millis() as u64)
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(500)));
    }

    /// Two tasks wait for the same cache (a qualification pass and a reconcile): both see it
    /// listed soon after it is, not only the last one to wait (kube-runtime wakes that one
    /// only); a cache never listed is given up at the deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiter_sees_the_cache_listed_and_none_waits_for_ever() {
        let mut writer = Writer::<Node>::default();
        let store = writer.as_reader();
        let within = Duration::from_secs(30);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { listed(&store, within).await })
            })
            .collect();
        // Every waiter has polled (and registered its waker) before the listing ends.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitDone);
        for waiter in waiters {
            let seen = tokio::time::timeout(Duration::from_secs(2), waiter)
                .await
                .expect("a waiter still waits 2 s after the listing")
                .expect("the waiter ran");
            assert!(seen);
        }
        assert!(started.elapsed() < Duration::from_secs(2));

        let never = Writer::<Node>::default();
        let started = std::time::Instant::now();
        assert!(!listed(&never.as_reader(), Duration::from_millis(500)).await);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// A watch's errors are dropped from its stream (the controller never sees one), and each
    /// is counted under the kind watched: ops see a watch failing in the metrics, not only in
    /// the log.
    #[tokio::test]
    async fn a_watch_error_is_counted_and_not_passed_on() {
        use futures::StreamExt as _;
        let metrics = crate::metrics::Metrics::new();
        let errors = metrics.watch_errors.with_label_values(&["Node"]);
        let failed = || Err(kube::runtime::watcher::Error::NoResourceVersion);
        let events = futures::stream::iter(vec![Ok(1), failed(), Ok(2), failed(), failed()]);
        let passed: Vec<i32> = logged("Nodes", errors.clone(), events).collect().await;
        assert_eq!(passed, [1, 2]);
        assert_eq!(errors.get(), 3);
        assert_eq!(metrics.watch_errors.with_label_values(&["Pod"]).get(), 0);
        let text = metrics.render();
        assert!(
            text.contains("hexagone_watch_errors_total{watch=\"Node\"} 3"),
            "{text}"
        );
    }
}
