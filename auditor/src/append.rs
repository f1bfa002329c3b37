//! `append`: observations read from a file or standard input, judged on every core while the
//! batches before them commit, and appended in input order, each batch acknowledged once it is
//! durable under its signed checkpoint.
//!
//! Three stages: a reader thread cuts the input into chunks of lines (a chunk ends when no more
//! input is at hand, so a slow stream is not held back); judging threads, one per core, parse
//! and judge the chunks; the sequencer (this task) takes the judged chunks in input order, fills
//! batches and commits them. Chunks in flight are bounded, so memory is too; while a batch
//! commits, the next ones are judged.

use std::io::{BufRead, BufReader, Read, Write as _};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::oneshot;

use crate::args::witness_endpoint;
use crate::cli::{AppendArgs, Progress, ack};
use crate::ingest::Submission;
use crate::judge::ObservationJudge;
use crate::ledger::entry::Timestamp;

/// How often `append` looks for replaced geolocation files.
const GEO_REFRESH: Duration = Duration::from_secs(60);

/// Lines in a chunk at most: judging threads take chunks, not lines, so that they rarely meet
/// on the queue.
const CHUNK_LINES: usize = 512;

/// Input read in one go; a chunk ends when it is used up and the next read may wait.
const READ_BUFFER: usize = 256 * 1024;

/// Lines read and not yet judged, in input order, with the error that ended the input if any.
struct Chunk {
    lines: Vec<(u64, String)>,
    failed: Option<std::io::Error>,
}

/// A chunk judged: its submissions in input order, up to the first line that failed.
struct Judged {
    items: Vec<Submission>,
    failed: Option<anyhow::Error>,
}

/// A chunk handed to the judging threads, and where its judgement goes.
type Job = (Chunk, oneshot::Sender<Judged>);

/// Runs `append`. The policy and the databases live as long as the process (judging threads
/// borrow them and are never joined: a failure ends the process with them).
pub fn run(a: AppendArgs) -> anyhow::Result<u8> {
    let policy: &'static _ = Box::leak(Box::new(hexagone_platform::LocalityPolicy::from_file(
        &a.policy,
    )?));
    let paths = a.geo.paths()?;
    let geo: &'static _ = Box::leak(Box::new(
        hexagone_platform::GeoDatabases::open(&paths)
            .context("opening the geolocation databases")?,
    ));
    let (attestations, inventory) = a.places.load()?;
    let judge = Arc::new(
        ObservationJudge::new(policy, geo, attestations, inventory)
            .with_latency(crate::measure::load(&a.latency)?),
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(sequence(a, judge))
}

/// Opens the input: a file, or standard input for `-`.
fn open(input: &str) -> anyhow::Result<Box<dyn Read + Send>> {
    Ok(if input == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(input).with_context(|| format!("opening {input}"))?)
    })
}

/// Starts the reader and the judging threads; the judged chunks come out in input order.
fn judged_chunks(
    input: Box<dyn Read + Send>,
    judge: Arc<ObservationJudge<'static>>,
) -> tokio::sync::mpsc::Receiver<oneshot::Receiver<Judged>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Chunks in flight: judged ahead while a batch commits, and no more.
    let depth = 4 * workers;
    let (jobs, queue) = mpsc::sync_channel::<Job>(depth);
    let (order, judged) = tokio::sync::mpsc::channel(depth);
    let queue = Arc::new(Mutex::new(queue));
    for _ in 0..workers {
        let (queue, judge) = (queue.clone(), judge.clone());
        std::thread::spawn(move || {
            loop {
                let job = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .recv();
                let Ok((chunk, reply)) = job else { return };
                // The sequencer may be gone (it failed): nothing is waiting for this chunk.
                let _ = reply.send(judge_chunk(&judge, chunk));
            }
        });
    }
    std::thread::spawn(move || read_chunks(input, &jobs, &order));
    judged
}

/// The reader: cuts `input` into chunks, queues each for judging and passes on where its
/// judgement will be, in order. Stops at the end of the input, at a read error (passed on
/// with the lines before it) or when the sequencer is gone.
fn read_chunks(
    input: Box<dyn Read + Send>,
    jobs: &mpsc::SyncSender<Job>,
    order: &tokio::sync::mpsc::Sender<oneshot::Receiver<Judged>>,
) {
    let mut reader = BufReader::with_capacity(READ_BUFFER, input);
    let mut n = 0u64;
    let mut lines = Vec::with_capacity(CHUNK_LINES);
    loop {
        let mut text = String::new();
        let (end, failed) = match reader.read_line(&mut text) {
            Ok(0) => (true, None),
            Ok(_) => {
                n += 1;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                lines.push((n, text));
                (false, None)
            }
            Err(e) => (true, Some(e)),
        };
        // Nothing more at hand: whatever was read goes now, not after the next (slow) read.
        if end || lines.len() >= CHUNK_LINES || reader.buffer().is_empty() {
            if !lines.is_empty() || failed.is_some() {
                let chunk = Chunk {
                    lines: std::mem::replace(&mut lines, Vec::with_capacity(CHUNK_LINES)),
                    failed,
                };
                let (reply, judgement) = oneshot::channel();
                if jobs.send((chunk, reply)).is_err() || order.blocking_send(judgement).is_err() {
                    return;
                }
            }
            if end {
                return;
            }
        }
    }
}

/// Parses and judges the lines of `chunk` in order, up to the first that fails.
fn judge_chunk(judge: &ObservationJudge<'_>, chunk: Chunk) -> Judged {
    let snapshot = judge.snapshot();
    let now = time::OffsetDateTime::now_utc();
    let mut items = Vec::with_capacity(chunk.lines.len());
    for (n, text) in chunk.lines {
        if text.trim().is_empty() {
            continue;
        }
        let judged = crate::ingest::parse_line(n, &text)
            .map_err(anyhow::Error::from)
            .and_then(|mut report| {
                report.id = report.id.map(|id| {
                    crate::ingest::request_key(crate::ingest::LOCAL_WRITER, "append", &id)
                });
                judge
                    .judge(report, &snapshot, now)
                    .with_context(|| format!("line {n}"))
            });
        match judged {
            Ok(s) => items.push(s),
            Err(e) => {
                return Judged {
                    items,
                    failed: Some(e),
                };
            }
        }
    }
    Judged {
        items,
        failed: chunk
            .failed
            .map(|e| anyhow::Error::from(e).context("reading input")),
    }
}

/// The sequencer: commits the judged chunks in input order, in batches of `--batch` (or what
/// was read when `--flush-ms` passed), and acknowledges each once durable.
async fn sequence(a: AppendArgs, judge: Arc<ObservationJudge<'static>>) -> anyhow::Result<u8> {
    let mut witnesses = a
        .witnesses
        .iter()
        .map(|w| witness_endpoint(w))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (ledger, seq) = a.signer.open().await?;
    ledger
        .check_witnessed(&seq, &mut witnesses, crate::store::WITNESS_TIMEOUT)
        .await?;
    let mut refreshed = Instant::now();
    let mut chunks = judged_chunks(open(&a.input)?, judge.clone());
    let flush = Duration::from_millis(a.flush_ms);
    let batch_size = usize::try_from(a.batch).unwrap_or(usize::MAX);
    let mut out = Acknowledger {
        ledger,
        seq,
        witnesses,
        stdout: std::io::stdout().lock(),
        progress: Progress::new(),
        batch: Vec::with_capacity(batch_size.min(1 << 20)),
        total: 0,
    };
    let mut deadline = tokio::time::Instant::now() + flush;
    loop {
        let next = tokio::time::timeout_at(deadline, chunks.recv()).await;
        let eof = matches!(next, Ok(None));
        let timed_out = next.is_err();
        let mut failed = None;
        if let Ok(Some(judgement)) = next {
            let Ok(judged) = judgement.await else {
                bail!("judging stopped: a judging thread failed");
            };
            failed = judged.failed;
            for item in judged.items {
                out.batch.push(item);
                if out.batch.len() >= batch_size {
                    out.commit().await?;
                    // The next batch has its own `--flush-ms`, though a chunk's rest is in it.
                    deadline = tokio::time::Instant::now() + flush;
                }
            }
        }
        // The lines before a bad one in its batch are not committed, as before judging spread.
        if let Some(e) = failed {
            return Err(e);
        }
        if (eof || timed_out) && !out.batch.is_empty() {
            out.commit().await?;
        }
        if timed_out || out.batch.is_empty() {
            deadline = tokio::time::Instant::now() + flush;
            if refreshed.elapsed() >= GEO_REFRESH {
                refreshed = Instant::now();
                // Judging threads take the reloaded contents with their next chunk.
                match judge.refresh() {
                    Ok(0) => {}
                    Ok(n) => eprintln!("reloaded {n} geolocation databases"),
                    Err(e) => eprintln!(
                        "geolocation databases not reloaded (the previous ones stay in use): {e}"
                    ),
                }
            }
        }
        if eof {
            break;
        }
    }
    out.progress.done();
    out.ledger.close().await;
    eprintln!("appended {} entries", out.total);
    Ok(0)
}

/// The ledger's side of `append`: the batch being filled, and where acknowledgements go.
struct Acknowledger {
    ledger: crate::store::Ledger,
    seq: crate::ledger::Sequencer,
    witnesses: Vec<crate::store::WitnessEndpoint>,
    stdout: std::io::StdoutLock<'static>,
    progress: Progress,
    batch: Vec<Submission>,
    total: u64,
}

impl Acknowledger {
    /// Commits the batch (emptied), asks the witnesses to cosign and prints the
    /// acknowledgement and the requests already recorded.
    async fn commit(&mut self) -> anyhow::Result<()> {
        let done = self
            .ledger
            .submit(&mut self.seq, Timestamp::now(), &self.batch)
            .await?;
        self.batch.clear();
        // Clear the progress line first: acks and progress may share one terminal.
        self.progress.done();
        if let Some(a) = &done.appended {
            self.total += a.size - a.first;
            let results = self
                .ledger
                .collect_cosignatures(a, &mut self.witnesses, crate::store::WITNESS_TIMEOUT)
                .await;
            for (w, r) in self.witnesses.iter().zip(results) {
                if let Err(e) = r {
                    eprintln!("checkpoint {}: {} did not cosign: {e}", a.size, w.url);
                }
            }
            ack(&mut self.stdout, a)?;
        }
        for (id, at) in &done.already {
            let id = crate::ingest::writer_id(id);
            writeln!(self.stdout, "already id={id} seq={at}")?;
        }
        self.stdout.flush()?;
        let total = self.total;
        self.progress.update(|| format!("appended {total} entries"));
        Ok(())
    }
}
