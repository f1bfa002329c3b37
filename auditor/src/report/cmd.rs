//! `hexagone-auditor report` and `report verify`: reading a ledger (database or export bundle)
//! through the verifier into the aggregation, signing, writing and checking report files.

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use super::aggregate::{Aggregator, Window};
use super::{CheckpointRef, Format, Report, ReportError};
use crate::bundle::{BundleReader, Record};
use crate::keys::VerifierKey;
use crate::ledger::checkpoint::{Checkpoint, Note, parse_note};
use crate::ledger::cosignature::WitnessKey;
use crate::ledger::entry::{Entry, Timestamp};
use crate::ledger::verify::Verifier;

/// `report`: make a signed report; `report verify`: check one.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReportArgs {
    /// `verify`, or nothing to make a report.
    #[command(subcommand)]
    pub command: Option<ReportCommand>,
    /// The ledger: its database (`sqlite:PATH`, `postgres://…`) or an export bundle file.
    #[arg(long, env = "HEXAGONE_DB", required = true)]
    pub ledger: Option<String>,
    /// The log's private signing key file (mode 0600): the key in force, which signed the
    /// last checkpoint.
    #[arg(long, required = true)]
    pub key: Option<PathBuf>,
    /// Start of the period (RFC 3339), included.
    #[arg(long, required = true)]
    pub from: Option<String>,
    /// End of the period (RFC 3339), excluded.
    #[arg(long, required = true)]
    pub to: Option<String>,
    /// Rendering (default: from the extension of `--out`).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The report file to write.
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
}

/// `report` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Check a report's signature, its checkpoint and its text: exit 0 valid, 1 invalid,
    /// 2 usage or I/O error.
    Verify(ReportVerifyArgs),
}

/// `report verify`.
#[derive(Debug, Args)]
pub struct ReportVerifyArgs {
    /// The report file (JSON, Markdown or HTML, as `report` wrote it).
    #[arg(long)]
    pub report: PathBuf,
    /// The log's key: verifier key string or a file holding it (`keygen`'s `.pub`).
    #[arg(long)]
    pub key: String,
    /// An export bundle to check the report against: the ledger must verify with the key,
    /// reach the report's checkpoint, and give the same report for the same period.
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// The witnesses whose cosignatures the report's checkpoint must carry.
    #[command(flatten)]
    pub witnesses: crate::args::WitnessKeyArgs,
    /// Freshness: the report must be made at the newest checkpoint given (`--checkpoint`,
    /// `--fresh-from`), and the `--witness` cosignatures within `--max-age`.
    #[command(flatten)]
    pub fresh: crate::args::FreshnessArgs,
}

/// Runs `report` or `report verify`; returns the exit code.
pub fn run(a: ReportArgs) -> anyhow::Result<u8> {
    if let Some(ReportCommand::Verify(v)) = a.command {
        return verify(v);
    }
    let (Some(ledger), Some(key), Some(from), Some(to), Some(out)) =
        (a.ledger, a.key, a.from, a.to, a.out)
    else {
        bail!("report needs --ledger, --key, --from, --to and --out");
    };
    let format = match a.format.or_else(|| Format::from_extension(&out)) {
        Some(f) => f,
        None => bail!(
            "--format is needed: the extension of {} says neither json, md nor html",
            out.display()
        ),
    };
    let window = Window {
        from: rfc3339("--from", &from)?,
        to: rfc3339("--to", &to)?,
    };
    if window.to <= window.from {
        bail!("the period is empty: --to {to} is not after --from {from}");
    }
    let key = crate::keyfile::load(&key)?;
    let verifier = Verifier::new(&key.verifier().to_string());
    let generated = Timestamp::now().to_string();
    let read = if is_database(&ledger) {
        from_database(&ledger, verifier, window)?
    } else {
        let f = std::fs::File::open(&ledger).with_context(|| format!("opening {ledger}"))?;
        read_ledger(BufReader::new(f), verifier, window, None)
    };
    let (agg, cp) = match read {
        Ok(r) => r,
        Err(e) => {
            eprintln!("the ledger does not verify, no report made: {e}");
            return Ok(1);
        }
    };
    let signed = agg.finish(cp, generated).sign(&key);
    let text = super::render(&signed, format);
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    let r = &signed.report;
    println!(
        "report {} ({}): {}; checkpoint size {} root {}",
        out.display(),
        format.name(),
        summary(r),
        r.checkpoint.size,
        r.checkpoint.root
    );
    Ok(0)
}

/// The counts the page shows at its top, in its words: objects at the period's end by verdict,
/// open violations, violations resolved in the period.
pub fn summary(r: &Report) -> String {
    let t = &r.totals;
    format!(
        "{} objects ({} compliant, {} violation, {} unknown), {} open violations, {} resolved in the period",
        t.objects,
        t.verdicts.compliant,
        t.verdicts.violation,
        t.verdicts.unknown,
        r.open_violations.len(),
        r.resolved_violations.len()
    )
}

fn is_database(s: &str) -> bool {
    crate::store::db::Backend::of(s).is_some()
}

fn rfc3339(flag: &str, s: &str) -> anyhow::Result<Timestamp> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{flag} {s:?}: expected RFC 3339, e.g. 2026-11-01T00:00:00Z"))?;
    Ok(Timestamp::from_datetime(t))
}

/// Exports the database through a pipe into [`read_ledger`] on another thread: the ledger is
/// streamed, never held whole.
fn from_database(
    url: &str,
    verifier: Verifier,
    window: Window,
) -> anyhow::Result<Result<(Aggregator, CheckpointRef), String>> {
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    let consumer = std::thread::spawn(move || {
        read_ledger(
            BufReader::with_capacity(1 << 20, reader),
            verifier,
            window,
            None,
        )
    });
    let exported = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async {
            let ledger = crate::store::Ledger::open(url).await?;
            let r = ledger
                .export(
                    std::io::BufWriter::with_capacity(1 << 20, writer),
                    |_, _| {},
                )
                .await;
            ledger.close().await;
            anyhow::Ok(r)
        });
    let read = consumer
        .join()
        .map_err(|_| anyhow::anyhow!("the ledger reader panicked"))?;
    match (exported, read) {
        // The reader's finding explains a broken pipe on the exporter's side.
        (_, Err(finding)) => Ok(Err(finding)),
        (Ok(Ok(_)), Ok(r)) => Ok(Ok(r)),
        (Ok(Err(e)), Ok(_)) => Err(e).context("exporting the ledger"),
        (Err(e), Ok(_)) => Err(e),
    }
}

/// Reads a bundle through the verifier, aggregating the observations of the window among
/// the first `limit` entries (default: every entry, all covered by the last checkpoint).
/// `Err` is the verifier's finding, or what is wrong with the bundle.
pub fn read_ledger<R: BufRead>(
    input: R,
    mut verifier: Verifier,
    window: Window,
    limit: Option<u64>,
) -> Result<(Aggregator, CheckpointRef), String> {
    let mut reader = BundleReader::new(input);
    let mut agg = Aggregator::new(window);
    let mut covered: Option<String> = None;
    let mut last: Option<String> = None;
    loop {
        let line = reader.line() + 1;
        let record = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => return Err(e.to_string()),
        };
        match &record {
            Record::Entry(bytes) => {
                if let Ok(entry) = Entry::decode(bytes)
                    && limit.is_none_or(|l| entry.seq < l)
                {
                    agg.add(&entry);
                }
            }
            Record::Checkpoint(note) => {
                if limit.is_some_and(|l| size_of(note) == Some(l)) {
                    covered = Some(note.clone());
                }
                last = Some(note.clone());
            }
            _ => {}
        }
        verifier.feed(line, record).map_err(|f| f.to_string())?;
    }
    verifier.finish().map_err(|f| f.to_string())?;
    let note = match limit {
        Some(l) => covered.ok_or_else(|| format!("the ledger has no checkpoint of size {l}"))?,
        None => last.ok_or("the ledger has no checkpoint")?,
    };
    let cp = Checkpoint::parse_body(&parse_note(&note).map_err(|e| e.to_string())?.text)
        .map_err(|e| e.to_string())?;
    Ok((
        agg,
        CheckpointRef {
            origin: cp.origin,
            size: cp.size,
            root: hex::encode(cp.root),
            note,
        },
    ))
}

fn size_of(note: &str) -> Option<u64> {
    parse_note(note).ok()?.text.lines().nth(1)?.parse().ok()
}

fn verify(a: ReportVerifyArgs) -> anyhow::Result<u8> {
    let key_text = if VerifierKey::parse(a.key.trim()).is_ok() {
        a.key.trim().to_string()
    } else {
        std::fs::read_to_string(&a.key)
            .with_context(|| format!("reading the key {}", a.key))?
            .trim()
            .to_string()
    };
    let key = VerifierKey::parse(&key_text).with_context(|| format!("--key {}", a.key))?;
    let (witnesses, threshold) = a.witnesses.keys()?;
    a.fresh.check(witnesses.len())?;
    let oldest = a.fresh.oldest_cosignature();
    let newest = a.fresh.newest(Some(key.name()))?;
    let text = std::fs::read_to_string(&a.report)
        .with_context(|| format!("reading {}", a.report.display()))?;
    let (format, signed) = match super::open(&text, &key) {
        Ok(r) => r,
        Err(e) => {
            println!("INVALID: {}: {e}", a.report.display());
            return Ok(1);
        }
    };
    let r = &signed.report;
    let cosigned_by = match cosignatures(r, &witnesses, threshold, oldest) {
        Ok(names) => names,
        Err(e) => {
            println!("INVALID: {}: {e}", a.report.display());
            return Ok(1);
        }
    };
    let fresh = match newest.as_ref().map(|n| fresher(r, n, &key)).transpose() {
        Ok(f) => f,
        Err(e) => {
            println!("INVALID: {}: {e}", a.report.display());
            return Ok(1);
        }
    };
    if let Some(bundle) = &a.ledger {
        let f =
            std::fs::File::open(bundle).with_context(|| format!("opening {}", bundle.display()))?;
        if let Err(e) = against_ledger(r, BufReader::new(f), &key) {
            println!("INVALID: {}: {e}", a.report.display());
            return Ok(1);
        }
    }
    println!(
        "valid: {} report signed by {} (SHA256:{})",
        format.name(),
        key,
        key.fingerprint()
    );
    println!(
        "period {} to {}; checkpoint origin {} size {} root {}",
        r.period.from, r.period.to, r.checkpoint.origin, r.checkpoint.size, r.checkpoint.root
    );
    println!("{}", summary(r));
    if a.ledger.is_some() {
        println!("the ledger verifies, reaches the checkpoint and gives the same report");
    }
    let unchecked = unchecked_lines(r, &key, &witnesses);
    if !unchecked.is_empty() {
        println!(
            "NOT CHECKED: the report's checkpoint note carries {} line(s) that are neither the log key's signature nor a valid cosignature by a --witness key given: {}; they vouch for nothing until checked",
            unchecked.len(),
            unchecked
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(line) = fresh {
        println!("{line}");
    }
    if let (Some(age), Some(oldest)) = (a.fresh.max_age, oldest)
        && !witnesses.is_empty()
    {
        println!(
            "fresh: the cosignatures counted were made within --max-age {} (after {})",
            crate::args::age_text(age),
            crate::args::unix_time(oldest)
        );
    }
    if a.fresh.is_empty() {
        println!(
            "freshness NOT checked: nothing shows the report's checkpoint is the log's newest; a report made at an older checkpoint leaves out what was recorded since (give --checkpoint, --fresh-from, or --max-age with --witness)"
        );
    }
    if !witnesses.is_empty() {
        println!(
            "checkpoint cosigned by: {} ({} of {} witnesses given, {threshold} needed)",
            if cosigned_by.is_empty() {
                "none".to_string()
            } else {
                cosigned_by.join(", ")
            },
            cosigned_by.len(),
            witnesses.len()
        );
    }
    std::io::stdout().flush()?;
    Ok(0)
}

/// The witnesses among `witnesses` whose cosignature the report's checkpoint note carries,
/// over that very checkpoint (its size and root are the report's); an error when fewer than
/// `threshold`.
fn cosignatures(
    report: &Report,
    witnesses: &[WitnessKey],
    threshold: usize,
    oldest: Option<u64>,
) -> Result<Vec<String>, String> {
    if witnesses.is_empty() {
        return Ok(Vec::new());
    }
    let note = parse_note(&report.checkpoint.note)
        .map_err(|e| format!("its checkpoint note cannot be read: {e}"))?;
    let cp = Checkpoint::parse_body(&note.text)
        .map_err(|e| format!("its checkpoint note cannot be read: {e}"))?;
    if cp.size != report.checkpoint.size || hex::encode(cp.root) != report.checkpoint.root {
        return Err(format!(
            "its checkpoint note is for size {} root {}, the report names size {} root {}",
            cp.size,
            hex::encode(cp.root),
            report.checkpoint.size,
            report.checkpoint.root
        ));
    }
    crate::args::cosigned_by(&note, cp.size, witnesses, threshold, oldest)
        .map_err(|e| format!("its checkpoint {e}"))
}

/// Holds the report to `newest`, a checkpoint of the log obtained independently: the report
/// must be made at it or later (a report made at an older checkpoint leaves out what was
/// recorded since, a violation included), and at the same size it must name the same root.
/// Returns what was checked, for the output.
fn fresher(
    report: &Report,
    newest: &crate::args::Newest,
    key: &VerifierKey,
) -> Result<String, String> {
    let (cp, _) =
        crate::ledger::checkpoint::open_checkpoint(&newest.note, std::slice::from_ref(key))
            .map_err(|e| format!("{} is not a checkpoint the key signed: {e}", newest.from))?;
    let made = report.checkpoint.size;
    if cp.size > made {
        return Err(format!(
            "NOT FRESH: the report is made at the checkpoint of size {made}, but {} is of size {}: the {} entries recorded since are not in it; make the report again at the newest checkpoint",
            newest.from,
            cp.size,
            cp.size - made
        ));
    }
    if cp.size == made && hex::encode(cp.root) != report.checkpoint.root {
        return Err(format!(
            "{} (size {}) has root {}, the report's checkpoint {}: two histories under one key (fork)",
            newest.from,
            cp.size,
            hex::encode(cp.root),
            report.checkpoint.root
        ));
    }
    Ok(format!(
        "fresh: the report's checkpoint (size {made}) reaches {} (size {})",
        newest.from, cp.size
    ))
}

/// The signature lines of the report's checkpoint note that nothing checked: all but the
/// log key's first line (which opened the note) and the valid cosignatures of `witnesses`.
/// The log's signature over the report covers these lines as text, not what they claim.
fn unchecked_lines<'r>(
    report: &'r Report,
    key: &VerifierKey,
    witnesses: &[WitnessKey],
) -> Vec<&'r str> {
    let Ok(note) = parse_note(&report.checkpoint.note) else {
        return Vec::new();
    };
    let lines = super::signature_lines(&report.checkpoint.note);
    let mut log_line = false;
    let mut out = Vec::new();
    for (i, sig) in note.signatures.into_iter().enumerate() {
        if !log_line && sig.name == key.name() && sig.key_id == key.id() {
            log_line = true;
            continue;
        }
        let alone = Note {
            text: note.text.clone(),
            signatures: vec![sig],
        };
        if !witnesses.iter().any(|w| w.cosigned(&alone).is_some()) {
            out.extend(lines.get(i).copied());
        }
    }
    out
}

/// Checks `report` against a bundle: the bundle verifies under `key`, reaches the report's
/// checkpoint, and the same period over the same checkpoint gives the same report.
fn against_ledger<R: BufRead>(
    report: &Report,
    input: R,
    key: &VerifierKey,
) -> Result<(), ReportError> {
    let window = Window {
        from: Timestamp::parse(&report.period.from)
            .map_err(|e| ReportError::Ledger(e.to_string()))?,
        to: Timestamp::parse(&report.period.to).map_err(|e| ReportError::Ledger(e.to_string()))?,
    };
    let verifier = Verifier::new(&key.to_string()).with_trusted_checkpoint(&report.checkpoint.note);
    let (agg, cp) = read_ledger(input, verifier, window, Some(report.checkpoint.size))
        .map_err(ReportError::Ledger)?;
    if cp.root != report.checkpoint.root {
        return Err(ReportError::Ledger(format!(
            "its checkpoint of size {} has root {}, the report names {}",
            cp.size, cp.root, report.checkpoint.root
        )));
    }
    // A report of an earlier version is compared with what the ledger gives in that version:
    // the ledger has not changed, only what a report of this version says of it.
    let again = agg
        .finish(report.checkpoint.clone(), report.generated_at.clone())
        .as_version(&report.format);
    if &again != report {
        return Err(ReportError::Ledger(format!(
            "the report's {} differ from what the ledger gives for the same period and checkpoint",
            differing_keys(report, &again).join(", ")
        )));
    }
    Ok(())
}

/// The top-level keys whose values differ between two reports' JSON, from both reports' keys
/// (a key one of them lacks, as an empty list is left out, differs too), in name order.
fn differing_keys(a: &Report, b: &Report) -> Vec<String> {
    let (a, b) = (
        serde_json::to_value(a).expect("serialises"),
        serde_json::to_value(b).expect("serialises"),
    );
    let (a, b) = (
        a.as_object().expect("an object"),
        b.as_object().expect("an object"),
    );
    a.keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| a.get(k.as_str()) != b.get(k.as_str()))
        .cloned()
        .collect()
}
