//! `hexagone-auditor serve`: the auditor's HTTP ingest service. Writers (collectors, backup
//! jobs, object stores' notifications) submit facts with a bearer token; the service judges
//! them itself (as `append` does), queues them to the one sequencer task and answers once their
//! entries are committed under a signed checkpoint.
//!
//! - [`http`]: routes, authentication, request validation;
//! - [`events`]: the object stores' notification formats (SeaweedFS, MinIO, Ceph RGW);
//! - [`tokens`]: the tokens file (hashes only) and `serve token add`;
//! - [`metrics`]: the Prometheus registry.
//!
//! Backpressure: the queue to the sequencer is bounded (`--queue`); a full queue is answered
//! `503` with `Retry-After` at once, never by waiting. The sequencer waits `--flush-ms` after
//! the first queued request, then commits every request waiting (up to [`MAX_BATCH`] entries)
//! in one transaction with one checkpoint: group commit.

pub mod events;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod state;
pub mod tokens;

pub use crate::queue::{Committed, Job, Outcome};
pub use state::{Service, Shared};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tokio::sync::{mpsc, oneshot};

use crate::ingest::Submission;
use crate::judge::ObservationJudge;
use crate::ledger::Sequencer;
use crate::ledger::checkpoint::parse_note;
use crate::ledger::entry::{Assessment, Body, Timestamp};
use crate::store::{Appended, Ledger, StoreError, WitnessEndpoint};

/// Most entries committed in one transaction (a larger single request is committed whole).
pub const MAX_BATCH: usize = 10_000;

/// What one byte of a request body costs in memory while it is parsed, judged, queued and
/// committed (observations become judged submissions with their evidence and encoded entry):
/// the figure the hostile review measured, about fifty.
pub const COST_PER_BODY_BYTE: u64 = 50;

/// How long a witness that did not cosign a commit's checkpoint (refused, unreachable, or not
/// within `--witness-timeout`) is left out before it is asked again, at the next commit after
/// that: a stalled witness must not cost every commit the whole wait.
pub const WITNESS_REST: Duration = Duration::from_secs(30);

/// The longest a connection of `serve` lasts, all its requests included (a request waits for
/// its commit and the witnesses, each bounded well below this).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// `serve`: run the ingest service, or manage its tokens.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeCli {
    /// `token add NAME`.
    #[command(subcommand)]
    pub command: Option<ServeCommand>,
    /// The service's options.
    #[command(flatten)]
    pub args: ServeArgs,
}

/// `serve` subcommands.
#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// Bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `serve token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a random token for writer NAME: prints it once, appends its SHA-256 to the file.
    Add {
        /// The writer's name (letters, digits, `.`, `_`, `-`).
        name: String,
        /// The tokens file (created with mode 0600; refused unless 0600).
        #[arg(long)]
        tokens: PathBuf,
    },
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Ledger database: `sqlite:PATH` (one file, WAL) or `postgres://…`.
    #[arg(long = "db", visible_alias = "ledger", env = "HEXAGONE_DB", default_value = crate::args::DEFAULT_DB)]
    pub db: String,
    /// Private signing key file (mode 0600).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The record of the last head signed.
    #[command(flatten)]
    pub signed_head: crate::args::SignedHeadArg,
    /// The locality policy (YAML) every observation is judged under.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The geolocation databases (default: the vendored ip-location-db files).
    #[command(flatten)]
    pub geo: crate::locate::GeoArgs,
    /// Attestations and storage endpoints outside the cluster.
    #[command(flatten)]
    pub places: crate::args::PlacesArgs,
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, default_value = "127.0.0.1:7381")]
    pub listen: String,
    /// The tokens file (`serve token add`), mode 0600.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub max_body: u64,
    /// Memory the requests being read, judged and committed may take, in bytes: each is
    /// charged [`COST_PER_BODY_BYTE`] times its body (its declared length, else `--max-body`)
    /// before its body is read, and one that does not fit is answered 503 at once.
    #[arg(long, default_value_t = 512 << 20, value_parser = clap::value_parser!(u64).range(1 << 20..=1 << 40))]
    pub max_inflight_bytes: u64,
    /// Connections served at once (more wait in the listen queue).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_connections: u64,
    /// Connections served at once from one client (an IPv4 address, an IPv6 /64); more are
    /// closed as soon as accepted. Behind a proxy every request comes from the proxy's address:
    /// set it to `--max-connections` there and limit clients at the proxy.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_connections_per_client: u64,
    /// Seconds a client has to send a request's headers, or to start the next request on a
    /// kept-alive connection; also the time it has to send the body.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Requests waiting for the sequencer at most (more: 503 with Retry-After).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub queue: u64,
    /// How long the sequencer gathers requests after the first one before committing them
    /// together (group commit), in milliseconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub flush_ms: u64,
    /// A witness to ask for a cosignature of every checkpoint, as `VERIFIER_KEY,http://host:port`;
    /// repeatable. Requests are answered after the witnesses answered or `--witness-timeout`
    /// passed (a refusal is reported on standard error and in the answer; the commit stands).
    #[arg(long = "witness")]
    pub witnesses: Vec<String>,
    /// How many of the `--witness` witnesses must cosign a checkpoint for the answers it
    /// covers to say `"witnessed": true` (default: all of them).
    #[arg(long, requires = "witnesses")]
    pub witness_threshold: Option<usize>,
    /// Seconds a commit waits for the witnesses' cosignatures before it is answered anyway,
    /// saying `"witnessed": false` and why. A witness that did not cosign is not asked again
    /// for 30 s, so a stalled one costs this wait once, not at every commit.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub witness_timeout: u64,
    /// Also watch the cluster (in-cluster service account, or KUBECONFIG) and record where
    /// each bound PersistentVolume is, judged with the NodeAttestations the auditor sees itself
    /// (they replace `--attestations`).
    #[arg(long)]
    pub kubernetes: bool,
    /// Run as one of several replicas sharing one PostgreSQL ledger: only the holder of this
    /// Lease (`NAMESPACE/NAME`) opens the sequencer and runs the collector; the others stand
    /// by (ingest answers 503) and take over when it expires. Needs a cluster configuration.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub lease: Option<String>,
    /// This replica's identity in the Lease (default: `$POD_NAME`, else host and process id).
    #[arg(long, env = "POD_NAME")]
    pub lease_identity: Option<String>,
    /// Seconds a leader holds the Lease without renewing it; a standby takes over after that.
    #[arg(long, default_value_t = 15, requires = "lease", value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_seconds: u64,
}

/// Runs `serve` or `serve token …`.
pub fn run(cli: ServeCli) -> anyhow::Result<u8> {
    match cli.command {
        Some(ServeCommand::Token(TokenCommand::Add { name, tokens })) => {
            let token = tokens::add(&tokens, &name)?;
            eprintln!(
                "token for writer {name} (shown once; {} keeps only its SHA-256):",
                tokens.display()
            );
            println!("{token}");
            Ok(0)
        }
        None => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(serve(cli.args)),
    }
}

fn required<T>(v: Option<T>, flag: &str) -> anyhow::Result<T> {
    v.with_context(|| format!("serve needs {flag}"))
}

async fn serve(a: ServeArgs) -> anyhow::Result<u8> {
    let witnesses = a
        .witnesses
        .iter()
        .map(|w| crate::args::witness_endpoint(w))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let witness_threshold = a.witness_threshold.unwrap_or(witnesses.len());
    if witness_threshold > witnesses.len() || (witness_threshold == 0 && !witnesses.is_empty()) {
        anyhow::bail!(
            "--witness-threshold {witness_threshold}: give 1 to {} (the witnesses given)",
            witnesses.len()
        );
    }
    let key = required(a.key, "--key FILE")?;
    let policy_path = required(a.policy, "--policy FILE")?;
    let tokens_path = required(a.tokens, "--tokens FILE (see `serve token add`)")?;
    let tokens = tokens::Tokens::load(&tokens_path)?;
    if tokens.is_empty() {
        anyhow::bail!(
            "{}: no token: add one with `hexagone-auditor serve token add NAME --tokens {}`",
            tokens_path.display(),
            tokens_path.display()
        );
    }
    // The service judges for as long as the process lives: the policy and the databases are
    // leaked once so the judge can be shared by every handler without a lifetime.
    let policy: &'static _ = Box::leak(Box::new(hexagone_platform::LocalityPolicy::from_file(
        &policy_path,
    )?));
    let geo: &'static _ = Box::leak(Box::new(
        hexagone_platform::GeoDatabases::open(&a.geo.paths()?)
            .context("opening the geolocation databases")?,
    ));
    let (attestations, inventory) = a.places.load()?;
    let judge = ObservationJudge::new(policy, geo, attestations, inventory);
    // Connect before opening the ledger: a missing or wrong configuration stops here.
    if a.kubernetes && a.places.attestations.is_some() {
        anyhow::bail!(
            "--kubernetes reads the NodeAttestations from the cluster: --attestations cannot be given with it"
        );
    }
    if a.lease.is_some()
        && crate::store::db::Backend::of(&a.db) != Some(crate::store::db::Backend::Postgres)
    {
        anyhow::bail!(
            "--lease elects one sequencer among replicas sharing one database: it needs --db postgres://… (a SQLite file belongs to one process)"
        );
    }
    let client =
        if a.kubernetes || a.lease.is_some() {
            Some(kube::Client::try_default().await.context(
                "--kubernetes/--lease: no cluster configuration (in-cluster or KUBECONFIG)",
            )?)
        } else {
            None
        };
    // Read the key now: a standby must not find out it cannot sign only when it takes over.
    crate::keyfile::load(&key)?;
    let mut election = match (&a.lease, &client) {
        (Some(lease), Some(client)) => {
            let identity = a.lease_identity.clone().unwrap_or_else(|| {
                let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                format!("{}-{}", host.trim(), std::process::id())
            });
            Some(lease::Election::join(client.clone(), lease, identity, a.lease_seconds).await?)
        }
        _ => None,
    };
    // Without an election the sequencer opens before the service listens: a writer never
    // finds it listening but not yet able to record.
    let mut opened = match election {
        Some(_) => None,
        None => Some(crate::store::open_sequencer(&a.db, &key, a.signed_head.file(&key)).await?),
    };
    let shared = Arc::new(Shared {
        metrics: metrics::Metrics::new()?,
        ready: AtomicBool::new(false),
        standby: AtomicBool::new(false),
        judging: AtomicBool::new(!a.kubernetes),
        checkpoint: RwLock::new(None),
    });
    if a.max_body.saturating_mul(COST_PER_BODY_BYTE) > a.max_inflight_bytes {
        anyhow::bail!(
            "--max-body {} would need {} bytes of memory at {COST_PER_BODY_BYTE} per body byte, more than --max-inflight-bytes {}: lower the one or raise the other",
            a.max_body,
            a.max_body.saturating_mul(COST_PER_BODY_BYTE),
            a.max_inflight_bytes
        );
    }
    let (tx, rx) = mpsc::channel(a.queue as usize);
    let service = Arc::new(Service {
        judge,
        tokens,
        queue: tx,
        shared: shared.clone(),
        max_body: a.max_body as usize,
        budget: state::Budget::new(a.max_inflight_bytes),
        body_timeout: Duration::from_secs(a.header_timeout),
        cluster_nodes: std::sync::OnceLock::new(),
    });
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    let local = listener.local_addr()?;
    use std::io::Write as _;
    let announce = move || -> std::io::Result<()> {
        println!("serve listening on {local}");
        std::io::stdout().flush()
    };
    // Stop accepting when told; requests in flight wait for their commit.
    let (stop_http, mut http_stopped) = tokio::sync::watch::channel(false);
    let limits = crate::listen::Limits {
        max_connections: a.max_connections as usize,
        per_client: a.max_connections_per_client as usize,
        header: Duration::from_secs(a.header_timeout),
        connection: CONNECTION_LIFETIME,
        keep_alive: true,
    };
    let server = tokio::spawn(crate::listen::serve(
        listener,
        http::router(service.clone()),
        limits,
        async move {
            let _ = http_stopped.wait_for(|stop| *stop).await;
        },
    ));
    let refresher = tokio::spawn(refresh_databases(service.clone()));
    let signal = shutdown_signal();
    tokio::pin!(signal);
    if let Some(e) = election.as_mut() {
        shared.standby.store(true, Ordering::SeqCst);
        announce()?;
        println!(
            "standing by: {} waits for Lease {} before opening the sequencer",
            e.identity, e.lease
        );
        std::io::stdout().flush()?;
        let led = tokio::select! {
            r = e.lead() => Some(r),
            () = &mut signal => None,
        };
        shared.standby.store(false, Ordering::SeqCst);
        match led {
            Some(Ok(())) => {
                println!(
                    "{} holds Lease {}: opening the sequencer",
                    e.identity, e.lease
                );
                std::io::stdout().flush()?;
            }
            other => {
                let _ = stop_http.send(true);
                let _ = server.await;
                refresher.abort();
                if let Some(e) = election {
                    e.resign().await;
                }
                return match other {
                    Some(Err(err)) => Err(err),
                    _ => Ok(0),
                };
            }
        }
    }
    let opened = match opened.take() {
        Some(o) => Ok(o),
        None => crate::store::open_sequencer(&a.db, &key, a.signed_head.file(&key))
            .await
            .map_err(anyhow::Error::from),
    };
    // A witness that cosigned more of this log than the database holds stops the start.
    let mut witnesses = witnesses;
    let opened = match opened {
        Ok((ledger, seq)) => match ledger
            .check_witnessed(&seq, &mut witnesses, Duration::from_secs(a.witness_timeout))
            .await
        {
            Ok(()) => Ok((ledger, seq)),
            Err(e) => Err(anyhow::Error::from(e)),
        },
        Err(e) => Err(e),
    };
    let (ledger, seq) = match opened {
        Ok(opened) => opened,
        Err(err) => {
            let _ = stop_http.send(true);
            let _ = server.await;
            refresher.abort();
            if let Some(e) = election {
                e.resign().await;
            }
            return Err(err);
        }
    };
    if let Some(note) = seq.note() {
        publish(&ledger, &shared, note, seq.size()).await;
        shared.metrics.checkpoint_size.set(seq.size() as i64);
        // The note carries no time: the last entry's is the closest lower bound.
        shared
            .metrics
            .checkpoint_time
            .set(seq.last_time().0 as f64 / 1000.0);
    }
    // The collector reads the ledger (its objects' latest entries) through the same pool.
    let reader = ledger.reader();
    let (failed, sequencer_failed) = oneshot::channel();
    let witnessing = Witnessing {
        threshold: witness_threshold,
        timeout: Duration::from_secs(a.witness_timeout),
        resting: vec![None; witnesses.len()],
        endpoints: witnesses,
    };
    let sequencer = tokio::spawn(sequence(
        ledger,
        seq,
        rx,
        shared.clone(),
        Duration::from_millis(a.flush_ms),
        witnessing,
        failed,
    ));
    shared.ready.store(true, Ordering::SeqCst);
    shared.metrics.leader.set(1);
    if election.is_none() {
        // Announced once it records: the first line means ready.
        announce()?;
    }
    let collector = client.filter(|_| a.kubernetes).map(|client| {
        let service = service.clone();
        let ledger = reader.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::collect::kubernetes::run(client, service, ledger).await {
                tracing::warn!("kubernetes: the collector stopped: {e}");
            }
        })
    });
    let indexer = tokio::spawn(index_objects(reader.db().clone()));
    let lost = async {
        match election.as_mut() {
            Some(e) => e.lost().await,
            None => std::future::pending().await,
        }
    };
    let lease_lost = tokio::select! {
        () = &mut signal => false,
        Ok(()) = sequencer_failed => {
            tracing::warn!("shutting down: the sequencer stopped");
            false
        }
        () = lost => true,
    };
    if lease_lost {
        // Another replica may already be sequencing: stop committing at once. Requests in
        // flight are answered 500 (not acknowledged) and their writers retry on the leader.
        shared.ready.store(false, Ordering::SeqCst);
        shared.metrics.leader.set(0);
        sequencer.abort();
        if let Some(c) = collector {
            c.abort();
        }
        indexer.abort();
        refresher.abort();
        let _ = stop_http.send(true);
        drop(service);
        let _ = server.await;
        let lease = election
            .as_ref()
            .map(|e| e.lease.clone())
            .unwrap_or_default();
        if let Some(e) = election {
            e.resign().await;
        }
        anyhow::bail!(
            "lost Lease {lease}: the sequencer stopped before its next commit; restart to stand by"
        );
    }
    let _ = stop_http.send(true);
    if let Err(e) = server.await {
        anyhow::bail!("the HTTP server task: {e}");
    }
    refresher.abort();
    let _ = refresher.await;
    indexer.abort();
    let _ = indexer.await;
    // The collector holds a handle on the queue: stop it so the sequencer can drain and end.
    if let Some(c) = collector {
        c.abort();
        let _ = c.await;
    }
    // The last handle on the queue is gone: the sequencer drains what is queued and stops.
    drop(service);
    let (ledger, seq) = sequencer.await.context("the sequencer task")??;
    shared.ready.store(false, Ordering::SeqCst);
    match seq.note() {
        Some(note) => {
            println!("final checkpoint, size {}:", seq.size());
            print!("{note}");
        }
        None => println!("the ledger is empty: no checkpoint"),
    }
    std::io::stdout().flush()?;
    ledger.close().await;
    if let Some(e) = election {
        e.resign().await;
    }
    Ok(0)
}

/// Resolves at the first SIGTERM or SIGINT. The handlers are installed when this is called,
/// before the service announces itself, not when the future is first polled: a SIGTERM sent
/// right after the announcement once found no handler yet and killed the process, so the
/// queue was not drained and no final checkpoint printed.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (term, int) = (
        signal(SignalKind::terminate()).ok(),
        signal(SignalKind::interrupt()).ok(),
    );
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = wait(term) => {}
            () = wait(int) => {}
        }
        tracing::warn!("shutting down: no new connections; draining the queue");
    }
}

/// How often the service brings the object index up to the signed head.
const INDEX_EVERY: Duration = Duration::from_secs(30);

/// Keeps the object index (proofs by object, the collector's first pass at the next start)
/// close to the head, off the append path: every [`INDEX_EVERY`], the entries signed since.
async fn index_objects(db: crate::store::db::Db) {
    let mut tick = tokio::time::interval(INDEX_EVERY);
    loop {
        tick.tick().await;
        let indexed = match db.head().await {
            Ok(Some(head)) => db.index_objects(head.size).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = indexed {
            tracing::warn!("object index not brought up to the head (tried again later): {e}");
        }
    }
}

/// How often the service looks for replaced geolocation files.
const GEO_REFRESH: Duration = Duration::from_secs(60);

async fn refresh_databases(service: Arc<Service>) {
    let mut tick = tokio::time::interval(GEO_REFRESH);
    tick.tick().await;
    loop {
        tick.tick().await;
        let s = service.clone();
        match tokio::task::spawn_blocking(move || s.judge.refresh()).await {
            Ok(Ok(0)) | Err(_) => {}
            Ok(Ok(n)) => tracing::info!("reloaded {n} geolocation databases"),
            Ok(Err(e)) => {
                tracing::warn!(
                    "geolocation databases not reloaded (the previous ones stay in use): {e}"
                )
            }
        }
    }
}

/// The sequencer task: takes queued requests, commits them in batches, answers each once its
/// entries are durable. Returns when every sender is gone and the queue is drained.
async fn sequence(
    ledger: Ledger,
    mut seq: Sequencer,
    mut rx: mpsc::Receiver<Job>,
    shared: Arc<Shared>,
    flush: Duration,
    mut witnesses: Witnessing,
    failed: oneshot::Sender<()>,
) -> anyhow::Result<(Ledger, Sequencer)> {
    while let Some(first) = rx.recv().await {
        // Group commit: let the queue fill for `flush` after the first request.
        tokio::time::sleep_until((first.arrived + flush).into()).await;
        let mut n = first.items.len();
        let mut jobs = vec![first];
        while n < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.items.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        shared.metrics.queue_depth.set(rx.len() as i64);
        // The submissions move out of their requests (no copy); each request keeps its count.
        let counts: Vec<usize> = jobs.iter().map(|j| j.items.len()).collect();
        let items: Vec<Submission> = jobs
            .iter_mut()
            .flat_map(|j| std::mem::take(&mut j.items))
            .collect();
        match commit(&ledger, &mut seq, &items, &shared).await {
            Ok((outcomes, appended)) => {
                let w = cosign(&ledger, appended, &mut witnesses, &shared).await;
                answer(jobs, &counts, outcomes, &seq, &w, &shared)
            }
            Err(e) if e.refuses_request() && jobs.len() > 1 => {
                // One request's key conflicts: commit the others, refuse that one alone.
                let mut items = items.into_iter();
                for (job, n) in jobs.into_iter().zip(counts) {
                    let own: Vec<Submission> = items.by_ref().take(n).collect();
                    match commit(&ledger, &mut seq, &own, &shared).await {
                        Ok((outcomes, appended)) => {
                            let w = cosign(&ledger, appended, &mut witnesses, &shared).await;
                            answer(vec![job], &[n], outcomes, &seq, &w, &shared)
                        }
                        Err(e) if e.refuses_request() => {
                            let _ = job.reply.send(Err(e.to_string()));
                        }
                        Err(e) => return Err(stop(&shared, e, failed)),
                    }
                }
            }
            Err(e) if e.refuses_request() => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.to_string()));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(format!("not recorded: {e}")));
                }
                return Err(stop(&shared, e, failed));
            }
        }
    }
    Ok((ledger, seq))
}

/// A store error stops the sequencer (the head it holds may no longer be the stored one) and
/// the service: a restart checks the stored head and recovers.
fn stop(shared: &Shared, e: StoreError, failed: oneshot::Sender<()>) -> anyhow::Error {
    shared.ready.store(false, Ordering::SeqCst);
    let _ = failed.send(());
    tracing::warn!("the sequencer stopped: {e}");
    anyhow::Error::new(e).context("the sequencer stopped")
}

/// The witnesses `serve` asks, how many must cosign, for how long a commit waits for them,
/// and the ones left out for a while after they did not cosign.
struct Witnessing {
    endpoints: Vec<WitnessEndpoint>,
    threshold: usize,
    timeout: Duration,
    /// Per endpoint: until when it is left out, and why it did not cosign last time.
    resting: Vec<Option<(tokio::time::Instant, String)>>,
}

/// Asks the witnesses to cosign the commit's checkpoint, as `append --witness` does, at once
/// and each within the timeout (the ones resting after a failure are not asked), then
/// publishes it with the cosignatures it got.
/// Returns the checkpoint the answers carry: the one published, who cosigned it, whether the
/// threshold was met, and if not, why.
async fn cosign(
    ledger: &Ledger,
    appended: Option<Appended>,
    witnesses: &mut Witnessing,
    shared: &Shared,
) -> Witnessed {
    if let Some(a) = appended {
        let now = tokio::time::Instant::now();
        let asked: Vec<usize> = (0..witnesses.endpoints.len())
            .filter(|&i| {
                witnesses.resting[i]
                    .as_ref()
                    .is_none_or(|(until, _)| *until <= now)
            })
            .collect();
        if !asked.is_empty() {
            let mut endpoints: Vec<WitnessEndpoint> = asked
                .iter()
                .map(|&i| witnesses.endpoints[i].clone())
                .collect();
            let results = ledger
                .collect_cosignatures(&a, &mut endpoints, witnesses.timeout)
                .await;
            for ((&i, w), r) in asked.iter().zip(endpoints).zip(results) {
                witnesses.resting[i] = match r {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::warn!("checkpoint {}: {} did not cosign: {e}", a.size, w.url);
                        Some((tokio::time::Instant::now() + WITNESS_REST, e))
                    }
                };
                witnesses.endpoints[i] = w;
            }
        }
        publish(ledger, shared, &a.note, a.size).await;
    }
    let checkpoint = shared
        .checkpoint
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default();
    let note = parse_note(&checkpoint).ok();
    let cosigned = |w: &WitnessEndpoint| note.as_ref().is_some_and(|n| w.key.cosigned(n).is_some());
    let by: Vec<String> = witnesses
        .endpoints
        .iter()
        .filter(|w| cosigned(w))
        .map(|w| w.key.name().to_string())
        .collect();
    let witnessed = witnesses.threshold > 0 && by.len() >= witnesses.threshold;
    let not_witnessed = if witnessed {
        None
    } else if witnesses.endpoints.is_empty() {
        Some(
            "no witness is configured (serve --witness): only the key holder's signature vouches for these entries"
                .to_string(),
        )
    } else {
        let now = tokio::time::Instant::now();
        let missing: Vec<String> = witnesses
            .endpoints
            .iter()
            .zip(&witnesses.resting)
            .filter(|(w, _)| !cosigned(w))
            .map(|(w, rest)| match rest {
                Some((until, why)) => format!(
                    "{} did not cosign ({why}; asked again in {} s at the earliest)",
                    w.key.name(),
                    until.saturating_duration_since(now).as_secs()
                ),
                None => format!("{} did not cosign", w.key.name()),
            })
            .collect();
        Some(format!(
            "cosigned by {} of the {} witnesses, {} needed: {}; the entries are durable and signed, but only the key holder vouches for them yet",
            by.len(),
            witnesses.endpoints.len(),
            witnesses.threshold,
            missing.join("; ")
        ))
    };
    Witnessed {
        witnessed,
        by,
        threshold: witnesses.threshold,
        not_witnessed,
        checkpoint,
    }
}

/// The checkpoint an answer carries.
struct Witnessed {
    checkpoint: String,
    by: Vec<String>,
    threshold: usize,
    witnessed: bool,
    not_witnessed: Option<String>,
}

/// Serves `note` (of tree size `size`) at `/v1/checkpoint` with the witnesses' cosignatures
/// stored for it, as a C2SP signed note: watchers see what the witnesses vouched for.
async fn publish(ledger: &Ledger, shared: &Shared, note: &str, size: u64) {
    let mut full = note.to_owned();
    match ledger.db().cosignatures(size).await {
        Ok(lines) => lines.iter().for_each(|l| full.push_str(l)),
        Err(e) => tracing::warn!("checkpoint {size}: its cosignatures cannot be read: {e}"),
    }
    *shared.checkpoint.write().unwrap_or_else(|e| e.into_inner()) = Some(full);
}

/// Commits `items` and says, for each, which entry holds it and its verdict.
async fn commit(
    ledger: &Ledger,
    seq: &mut Sequencer,
    items: &[Submission],
    shared: &Shared,
) -> Result<(Vec<Outcome>, Option<Appended>), StoreError> {
    let done = ledger.submit(seq, Timestamp::now(), items).await?;
    let already: std::collections::HashMap<&str, u64> = done
        .already
        .iter()
        .map(|(id, at)| (id.as_str(), *at))
        .collect();
    let first = done.appended.as_ref().map_or(u64::MAX, |a| a.first);
    let mut next = first;
    let mut sealed: std::collections::HashMap<&str, (u64, String)> = Default::default();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let id = item.id();
        if let Some(id) = id {
            if let Some((at, verdict)) = sealed.get(id) {
                out.push(Outcome {
                    seq: *at,
                    verdict: verdict.clone(),
                    recorded: false,
                });
                continue;
            }
            if let Some(&at) = already.get(id)
                && at < first
            {
                out.push(Outcome {
                    seq: at,
                    verdict: stored_verdict(ledger, seq, at).await?,
                    recorded: false,
                });
                continue;
            }
        }
        let verdict = verdict_of(item.body());
        if let Body::Observation(o) = item.body() {
            shared.metrics.verdicts.with_label_values(&[&verdict]).inc();
            if verdict == "violation" {
                for e in o.locality.evidence.iter() {
                    if let Assessment::Contradicts(rule) = &e.assessment {
                        shared.metrics.violations.with_label_values(&[rule]).inc();
                    }
                }
            }
        }
        if let Some(id) = id {
            sealed.insert(id, (next, verdict.clone()));
        }
        out.push(Outcome {
            seq: next,
            verdict,
            recorded: true,
        });
        next += 1;
    }
    if let Some(a) = &done.appended {
        shared.metrics.entries_appended.inc_by(a.size - a.first);
        shared.metrics.checkpoint_size.set(a.size as i64);
        shared.metrics.checkpoint_time.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
    }
    Ok((out, done.appended))
}

fn verdict_of(body: &Body) -> String {
    match body {
        Body::Observation(o) => o.locality.verdict.as_str().to_string(),
        _ => "none".to_string(),
    }
}

/// The verdict of the stored entry `at` (a retried idempotency key answers with it), read from
/// the entry proven under the signed root: a rewritten row stops the sequencer rather than
/// answer.
async fn stored_verdict(ledger: &Ledger, seq: &Sequencer, at: u64) -> Result<String, StoreError> {
    Ok(verdict_of(&ledger.proven_entry(at, seq).await?.body))
}

/// Answers each job with its `counts[i]` outcomes, in order.
fn answer(
    jobs: Vec<Job>,
    counts: &[usize],
    outcomes: Vec<Outcome>,
    seq: &Sequencer,
    witnessed: &Witnessed,
    shared: &Shared,
) {
    let mut outcomes = outcomes.into_iter();
    for (job, n) in jobs.into_iter().zip(counts) {
        let entries: Vec<Outcome> = outcomes.by_ref().take(*n).collect();
        shared
            .metrics
            .ingest_latency
            .observe(job.arrived.elapsed().as_secs_f64());
        let _ = job.reply.send(Ok(Committed {
            entries,
            size: seq.size(),
            checkpoint: witnessed.checkpoint.clone(),
            witnessed_by: witnessed.by.clone(),
            witness_threshold: witnessed.threshold,
            witnessed: witnessed.witnessed,
            not_witnessed: witnessed.not_witnessed.clone(),
        }));
    }
}
