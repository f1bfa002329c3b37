//! Command-line surface of `hexagone-auditor`: one clap type per subcommand, dispatched by `run`.

use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::args::{DEFAULT_DB, cosigned_by, trust_anchor};
use crate::bundle_verify::verify_bundle_parallel;
use crate::keys::{SignerKey, VerifierKey};
use crate::ledger::checkpoint::{Checkpoint, parse_note};
use crate::ledger::cosignature::WitnessSigner;
use crate::ledger::entry::{Body, Timestamp};
use crate::ledger::proof::InclusionProof;
use crate::ledger::verify::Verifier;
use crate::store::{Appended, Ledger, open_sequencer};
use crate::witness::Witness;

/// `hexagone-auditor` command line.
#[derive(Debug, Parser)]
#[command(name = "hexagone-auditor", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the ledger lives.
#[derive(Debug, Clone, Args)]
pub struct DbArg {
    /// Ledger database: `sqlite:PATH` (one file, WAL) or `postgres://…`.
    #[arg(long, env = "HEXAGONE_DB", default_value = DEFAULT_DB)]
    pub db: String,
}

/// The ledger a command signs for: its database, the signing key and the key holder's record
/// of the last head signed (`append`, `checkpoint`, `keys rotate`).
#[derive(Debug, Args)]
pub struct SignerArgs {
    #[command(flatten)]
    db: DbArg,
    /// The record of the last head signed.
    #[command(flatten)]
    pub signed_head: crate::args::SignedHeadArg,
    /// Private signing key file (mode 0600); for `keys rotate`, the current key.
    #[arg(long)]
    pub key: PathBuf,
}

impl SignerArgs {
    /// Opens the ledger and starts its sequencer under the key.
    pub(crate) async fn open(&self) -> anyhow::Result<(Ledger, crate::ledger::Sequencer)> {
        Ok(open_sequencer(&self.db.db, &self.key, self.signed_head.file(&self.key)).await?)
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an Ed25519 signing key; prints its verifier key and fingerprint.
    Keygen(KeygenArgs),
    /// Judge observations (JSON Lines of facts: which object, on which node or endpoint) under
    /// a locality policy and append them to the ledger in batches, each committed with its
    /// signed checkpoint.
    Append(AppendArgs),
    /// Check the stored head with the key, drop rows found past it, print the signed head.
    Checkpoint(CheckpointArgs),
    /// Rotate the signing key: the new key is announced in an entry signed under the old one.
    Rotate(RotateArgs),
    /// Export the ledger as a streamed bundle (entries, checkpoints, public keys).
    Export(ExportArgs),
    /// Verify a bundle offline: exit 0 valid, 1 invalid ledger, 2 usage or I/O error.
    Verify(VerifyArgs),
    /// Write an inclusion proof (c2sp.org/tlog-proof@v1) for the latest entry about an object
    /// (`prove verify` checks one).
    Prove(ProveArgs),
    /// Locate an address or a node against a locality policy: evidence and verdict.
    Locate(crate::locate::LocateArgs),
    /// At a vantage point: time TCP handshakes to addresses, one measurement per address
    /// (JSON Lines) for `locate --latency`.
    Measure(crate::measure::MeasureArgs),
    /// Make a signed locality report for a period (`report verify` checks one).
    Report(crate::report::cmd::ReportArgs),
    /// A witness that cosigns checkpoints consistent with what it saw (C2SP tlog-witness).
    #[command(subcommand)]
    Witness(WitnessCommand),
    /// Private key files.
    #[command(subcommand)]
    Key(KeyCommand),
    /// The HTTP ingest service: authenticated observations and object-store notifications,
    /// judged and committed under signed checkpoints; health, metrics, the latest checkpoint.
    Serve(crate::serve::ServeCli),
}

/// `key` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Copy private files (a signing key, a tokens file) from a Kubernetes Secret volume
    /// (root's, through symbolic links) to files of the running user's own with mode 0600, as
    /// `--key` and `--tokens` require. Run it in an init container. Each `--from` goes to the
    /// `--to` in the same position.
    Install {
        /// A file in the Secret volume: a private key or a tokens file. Repeatable.
        #[arg(long, required = true)]
        from: Vec<PathBuf>,
        /// The file to create (mode 0600; an existing one must hold the same content).
        #[arg(long, required = true)]
        to: Vec<PathBuf>,
    },
}

/// `witness` subcommands.
#[derive(Debug, Subcommand)]
pub enum WitnessCommand {
    /// Generate a witness key (cosignature/v1); prints its verifier key.
    Keygen(KeygenArgs),
    /// Serve `POST /add-checkpoint` for the logs whose keys are given.
    Serve(WitnessServeArgs),
}

/// `witness serve`.
#[derive(Debug, Args)]
pub struct WitnessServeArgs {
    /// The witness's private key file (mode 0600).
    #[arg(long)]
    pub key: PathBuf,
    /// A log key to watch (verifier key or file); repeatable: give every key of a rotated log,
    /// in the order it used them (once a later key signed a checkpoint cosigned here, an
    /// earlier one is refused).
    #[arg(long = "log-key", required = true)]
    pub log_keys: Vec<String>,
    /// The state file: the last checkpoint cosigned per log.
    #[arg(long)]
    pub state: PathBuf,
    /// Address to listen on; port 0 picks a free port (printed on start).
    #[arg(long, default_value = "127.0.0.1:7380")]
    pub listen: String,
}

/// `keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Key name: the log origin (e.g. `ledger.example.fr/hexagone`).
    #[arg(long)]
    pub name: String,
    /// Private key file to create (mode 0600); the verifier key goes to `<out>.pub`.
    #[arg(long)]
    pub out: PathBuf,
}

/// `append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The ledger, its key and the record of the last head signed.
    #[command(flatten)]
    pub signer: SignerArgs,
    /// JSON Lines input; `-` for standard input.
    #[arg(long, default_value = "-")]
    pub input: String,
    /// The locality policy (YAML) the auditor judges every observation under, for example
    /// `policies/france-diffusion-restreinte.yaml`.
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The geolocation databases (default: the vendored ip-location-db files).
    #[command(flatten)]
    pub geo: crate::locate::GeoArgs,
    /// Attestations and storage endpoints outside the cluster.
    #[command(flatten)]
    pub places: crate::args::PlacesArgs,
    /// Round-trip measurements from vantage points (JSON Lines, as `measure` writes them): those
    /// of a place's addresses are weighed as its latency evidence and recorded. Repeatable.
    #[arg(long = "latency", value_name = "FILE")]
    pub latency: Vec<PathBuf>,
    /// Entries committed per transaction.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch: u64,
    /// Commit (and acknowledge) what has been read after this many milliseconds, even if the
    /// batch is not full: a slow stream still gets its acks.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_ms: u64,
    /// A witness to ask for a cosignature of every checkpoint, as `VERIFIER_KEY,http://host:port`;
    /// repeatable. Acks come after the witnesses answered.
    #[arg(long = "witness")]
    pub witnesses: Vec<String>,
}

/// `checkpoint`.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Write the signed note to this file (exactly as signed) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The ledger, its key and the record of the last head signed.
    #[command(flatten)]
    pub signer: SignerArgs,
}

/// `rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The ledger, its key and the record of the last head signed.
    #[command(flatten)]
    pub signer: SignerArgs,
    /// The next private key file (from `keygen` with the same name).
    #[arg(long)]
    pub new_key: PathBuf,
}

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    db: DbArg,
    /// Bundle file to write; `-` for standard output.
    #[arg(long, default_value = "-")]
    pub out: String,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle; `-` for standard input.
    pub bundle: String,
    /// The trusted key: verifier key string, fingerprint, or a file holding either.
    #[arg(long, visible_alias = "key")]
    pub trust: String,
    /// Accept a trusted key that is retired (it signed earlier checkpoints, a later key signed
    /// the last one). Without it, the trusted key must sign the last checkpoint.
    #[arg(long)]
    pub accept_retired_key: bool,
    /// The witnesses whose cosignatures the last checkpoint must carry.
    #[command(flatten)]
    pub witnesses: crate::args::WitnessKeyArgs,
    /// Freshness: `--checkpoint`, `--fresh-from`, `--max-age`.
    #[command(flatten)]
    pub fresh: crate::args::FreshnessArgs,
    /// A locality policy (YAML) to replay every observation's verdict under: each entry's
    /// recorded facts are judged again under the policy whose digest it recorded, and the
    /// verdict, reasons and evidence must come out the same. Repeatable (a ledger that
    /// changed policy).
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    /// With `--policy`: the geolocation databases to look every recorded address fact up in
    /// again (default: the bundled ones). Only entries naming these very files (same SHA-256)
    /// are checked; the others are counted as not checked.
    #[command(flatten)]
    pub geo: crate::locate::GeoArgs,
}

/// `prove`: write an inclusion proof; `prove verify`: check one.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ProveArgs {
    /// `verify`, or nothing to write a proof.
    #[command(subcommand)]
    pub command: Option<ProveCommand>,
    #[command(flatten)]
    db: DbArg,
    /// Object identifier.
    #[arg(long, required = true)]
    pub object: Option<String>,
    /// The object's data store, when the same identifier names objects of several stores.
    #[arg(long)]
    pub store: Option<String>,
    /// Proof file to write; `-` for standard output.
    #[arg(long, default_value = "-")]
    pub out: String,
}

/// `prove` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProveCommand {
    /// Check an inclusion proof offline: exit 0 valid, 1 invalid, 2 usage or I/O error.
    Verify(ProveVerifyArgs),
}

/// `prove verify`.
#[derive(Debug, Args)]
pub struct ProveVerifyArgs {
    /// The proof file (c2sp.org/tlog-proof@v1, as `prove` writes it); `-` for standard input.
    pub proof: String,
    /// The log's verifier key (the key in force when the proof was made), or a file holding
    /// it; a fingerprint is not enough, since a proof carries no key.
    #[arg(long, visible_alias = "key")]
    pub trust: String,
    /// The object the proof must be about (its identifier in its store).
    #[arg(long)]
    pub object: Option<String>,
    /// The data store the proof's object must be in.
    #[arg(long)]
    pub store: Option<String>,
    /// The witnesses whose cosignatures the proof's checkpoint must carry.
    #[command(flatten)]
    pub witnesses: crate::args::WitnessKeyArgs,
    /// A locality policy (YAML) to replay the entry's verdict under (the policy whose digest
    /// it recorded). Repeatable.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
}

/// Runs one parsed command line; the returned code is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Keygen(a) => keygen(a),
        Command::Verify(a) => verify(a),
        Command::Append(a) => crate::append::run(a),
        Command::Checkpoint(a) => block_on(checkpoint(a)),
        Command::Rotate(a) => block_on(rotate(a)),
        Command::Export(a) => block_on(export(a)),
        Command::Prove(a) => block_on(prove(a)),
        Command::Locate(a) => crate::locate::run(a),
        Command::Measure(a) => crate::measure::run(a),
        Command::Report(a) => crate::report::cmd::run(a),
        Command::Witness(WitnessCommand::Keygen(a)) => witness_keygen(a),
        Command::Witness(WitnessCommand::Serve(a)) => block_on(witness_serve(a)),
        Command::Serve(a) => crate::serve::run(a),
        Command::Key(KeyCommand::Install { from, to }) => key_install(&from, &to),
    }
}

fn block_on<F: Future<Output = anyhow::Result<u8>>>(f: F) -> anyhow::Result<u8> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}

/// A one-line progress display on standard error, only when it is a terminal.
pub(crate) struct Progress {
    enabled: bool,
    last: Instant,
    shown: bool,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            last: Instant::now(),
            shown: false,
        }
    }

    pub(crate) fn update(&mut self, msg: impl FnOnce() -> String) {
        if self.enabled && self.last.elapsed() >= Duration::from_millis(200) {
            eprint!("\r\x1b[2K{}", msg());
            self.last = Instant::now();
            self.shown = true;
        }
    }

    pub(crate) fn done(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            self.shown = false;
        }
    }
}

fn keygen(a: KeygenArgs) -> anyhow::Result<u8> {
    let key = SignerKey::generate(&a.name)?;
    crate::keyfile::save(&key, &a.out)?;
    let pub_path = PathBuf::from(format!("{}.pub", a.out.display()));
    std::fs::write(&pub_path, format!("{}\n", key.verifier()))
        .with_context(|| format!("writing {}", pub_path.display()))?;
    println!("private key: {} (mode 0600)", a.out.display());
    println!("verifier key: {}", key.verifier());
    println!("fingerprint: SHA256:{}", key.verifier().fingerprint());
    println!("public key file: {}", pub_path.display());
    Ok(0)
}

fn witness_keygen(a: KeygenArgs) -> anyhow::Result<u8> {
    let key = WitnessSigner::generate(&a.name)?;
    crate::keyfile::save_private(&key.to_private_string(), &a.out)?;
    let pub_path = PathBuf::from(format!("{}.pub", a.out.display()));
    std::fs::write(&pub_path, format!("{}\n", key.public()))
        .with_context(|| format!("writing {}", pub_path.display()))?;
    println!("private key: {} (mode 0600)", a.out.display());
    println!("witness key: {}", key.public());
    Ok(0)
}

async fn witness_serve(a: WitnessServeArgs) -> anyhow::Result<u8> {
    let text = crate::keyfile::read_private(&a.key)?;
    let signer = WitnessSigner::parse_private(&text)
        .with_context(|| format!("witness key {}", a.key.display()))?;
    let logs = a
        .log_keys
        .iter()
        .map(|k| {
            let text = trust_anchor(k)?;
            VerifierKey::parse(&text).with_context(|| format!("--log-key {k}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    println!(
        "witness {} listening on {}",
        signer.public(),
        listener.local_addr()?
    );
    std::io::stdout().flush()?;
    crate::witness::serve::serve(listener, Witness::new(signer, logs), a.state).await?;
    Ok(0)
}

pub(crate) fn ack(out: &mut impl Write, a: &Appended) -> anyhow::Result<()> {
    writeln!(out, "ack first={} last={} size={}", a.first, a.last, a.size)?;
    out.flush()?;
    Ok(())
}

fn key_install(from: &[PathBuf], to: &[PathBuf]) -> anyhow::Result<u8> {
    if from.len() != to.len() {
        anyhow::bail!(
            "key install: {} --from for {} --to: give one --to per --from",
            from.len(),
            to.len()
        );
    }
    for (f, t) in from.iter().zip(to) {
        let text = crate::keyfile::install(f, t, |text| {
            if SignerKey::parse_private(text).is_ok() {
                return Ok(());
            }
            match crate::serve::tokens::Tokens::parse(&f.display().to_string(), text) {
                Ok(tokens) if !tokens.is_empty() => Ok(()),
                Ok(_) => Err("neither a private key nor a tokens file with a token".to_owned()),
                Err(e) => Err(format!("neither a private key nor a tokens file ({e})")),
            }
        })?;
        match SignerKey::parse_private(&text) {
            Ok(key) => println!(
                "installed {}: signing key, verifier key {}",
                t.display(),
                key.verifier()
            ),
            Err(_) => println!("installed {}: tokens file", t.display()),
        }
    }
    Ok(0)
}

async fn checkpoint(a: CheckpointArgs) -> anyhow::Result<u8> {
    let (ledger, seq) = a.signer.open().await?;
    let note = seq.note().map(str::to_owned);
    ledger.close().await;
    let Some(note) = note else {
        eprintln!("the ledger is empty: no checkpoint yet");
        return Ok(1);
    };
    match &a.out {
        Some(path) => {
            std::fs::write(path, &note).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "checkpoint of size {} written to {} (give it to `verify --checkpoint`)",
                seq.size(),
                path.display()
            );
        }
        None => print!("{note}"),
    }
    Ok(0)
}

async fn rotate(a: RotateArgs) -> anyhow::Result<u8> {
    let new = crate::keyfile::load(&a.new_key)?;
    let (ledger, mut seq) = a.signer.open().await?;
    let done = ledger
        .rotate(&mut seq, Timestamp::now(), new.clone())
        .await?;
    // The new key's own record starts at the rotation (the same file when one was named).
    let next = a.signer.signed_head.file(&a.new_key);
    if next != a.signer.signed_head.file(&a.signer.key) {
        next.write(&done.note)?;
    }
    println!("rotated to {} in entry {}", new.verifier(), done.last);
    println!("fingerprint: SHA256:{}", new.verifier().fingerprint());
    print!("{}", done.note);
    ledger.close().await;
    Ok(0)
}

fn open_out(path: &str) -> anyhow::Result<Box<dyn Write>> {
    Ok(if path == "-" {
        Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout().lock(),
        ))
    } else {
        Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(path).with_context(|| format!("creating {path}"))?,
        ))
    })
}

async fn export(a: ExportArgs) -> anyhow::Result<u8> {
    let ledger = Ledger::open(&a.db.db).await?;
    let mut progress = Progress::new();
    let stats = ledger
        .export(open_out(&a.out)?, |done, total| {
            progress.update(|| format!("exported {done}/{total} entries"))
        })
        .await?;
    progress.done();
    ledger.close().await;
    eprintln!(
        "exported {} entries and {} checkpoints",
        stats.entries, stats.checkpoints
    );
    Ok(0)
}

async fn prove(a: ProveArgs) -> anyhow::Result<u8> {
    let object = match a.command {
        Some(ProveCommand::Verify(v)) => return prove_verify(v),
        None => a.object.context("--object is required")?,
    };
    let ledger = Ledger::open(&a.db.db).await?;
    let proof = ledger.prove_in(&object, a.store.as_deref()).await?;
    let mut out = open_out(&a.out)?;
    out.write_all(proof.format().as_bytes())?;
    out.flush()?;
    ledger.close().await;
    Ok(0)
}

/// `prove verify`: the proof's checkpoint is signed by the trusted key (and cosigned as asked),
/// its audit path leads from the entry it carries to that checkpoint's root, and the entry is
/// about the object named (and replays under the policy given). Prints what the entry records.
fn prove_verify(a: ProveVerifyArgs) -> anyhow::Result<u8> {
    let trust = trust_anchor(&a.trust)?;
    let key = VerifierKey::parse(&trust).map_err(|e| {
        anyhow::anyhow!(
            "--trust {}: {e} (a proof carries no key: give the log's verifier key, as in the .pub file keygen wrote, not its fingerprint)",
            a.trust
        )
    })?;
    let (witnesses, threshold) = a.witnesses.keys()?;
    let policies = a
        .policies
        .iter()
        .map(|p| hexagone_platform::LocalityPolicy::from_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    let text = if a.proof == "-" {
        std::io::read_to_string(std::io::stdin())
            .context("reading the proof from standard input")?
    } else {
        std::fs::read_to_string(&a.proof).with_context(|| format!("reading {}", a.proof))?
    };
    let invalid = |why: String| {
        println!("INVALID: {}: {why}", a.proof);
        Ok(1)
    };
    let proof = match InclusionProof::parse(&text) {
        Ok(p) => p,
        Err(e) => return invalid(e.to_string()),
    };
    let entry = match proof.verify(std::slice::from_ref(&key), None) {
        Ok(e) => e,
        Err(e) => return invalid(e.to_string()),
    };
    let note = parse_note(&proof.checkpoint)?;
    let cp = Checkpoint::parse_body(&note.text)?;
    let cosigners = match cosigned_by(&note, cp.size, &witnesses, threshold, None) {
        Ok(names) => names,
        Err(e) => return invalid(format!("its checkpoint {e}")),
    };
    let Some(about) = entry.body.object() else {
        return invalid(format!(
            "entry {} is a key rotation, not an observation of an object",
            entry.seq
        ));
    };
    if let Some(object) = &a.object
        && about.id != *object
    {
        return invalid(format!(
            "the proof is for object {:?} (entry {}), not {object:?}",
            about.id, entry.seq
        ));
    }
    if let Some(store) = &a.store
        && about.store != *store
    {
        return invalid(format!(
            "the proof is for an object of store {:?} (entry {}), not {store:?}",
            about.store, entry.seq
        ));
    }
    let observation = match &entry.body {
        Body::Observation(o) => Some(o),
        _ => None,
    };
    if let Some(o) = observation
        && !policies.is_empty()
        && let Err(e) = crate::judge::Replayer::new(policies).check(o)
    {
        return invalid(format!(
            "entry {}: the observation does not replay: {e}",
            entry.seq
        ));
    }
    println!(
        "valid: entry {} is in the log {} of {} entries, root {}, signed by {} (SHA256:{})",
        entry.seq,
        cp.origin,
        cp.size,
        hex::encode(cp.root),
        key,
        key.fingerprint()
    );
    if !cosigners.is_empty() {
        println!("checkpoint cosigned by: {}", cosigners.join(", "));
    }
    let o = match &entry.body {
        Body::Observation(o) => o,
        Body::Policy {
            digest,
            observed_at,
            ..
        } => {
            println!(
                "policy {} (store {}, class {}), recorded {}: digest {digest}, as the cluster held it at {observed_at}",
                about.id, about.store, about.class, entry.time
            );
            return Ok(0);
        }
        Body::Removal { .. } => {
            println!(
                "object {} (store {}, class {}) recorded as removed {}",
                about.id, about.store, about.class, entry.time
            );
            return Ok(0);
        }
        Body::KeyRotation { .. } => unreachable!("a rotation is about no object: refused above"),
    };
    let l = &o.locality;
    println!(
        "object {} (store {}, class {}), recorded {}",
        o.object.id, o.object.store, o.object.class, entry.time
    );
    println!(
        "on {} {}: {} under {:?} ({})",
        l.subject_kind.as_str(),
        l.subject,
        l.verdict.as_str(),
        l.policy.classification,
        l.policy.digest
    );
    for reason in l.verdict.reasons() {
        println!("  - {reason}");
    }
    if let Some(i) = &o.image {
        println!(
            "image {}, {}",
            i.reference,
            i.image_id
                .as_deref()
                .map_or("no pull reported yet".to_owned(), |id| format!(
                    "pulled as {id}"
                ))
        );
    }
    if !a.policies.is_empty() {
        println!("the verdict replays from the recorded evidence under the policy given");
    }
    println!(
        "This proves the entry is in the signed log; whether it is the object's latest entry, only the whole ledger shows (`verify`, `report`)."
    );
    Ok(0)
}

fn verify(a: VerifyArgs) -> anyhow::Result<u8> {
    let trust = trust_anchor(&a.trust)?;
    let (witnesses, threshold) = a.witnesses.keys()?;
    let mut verifier = Verifier::new(&trust)
        .accept_retired_key(a.accept_retired_key)
        .with_witnesses(witnesses, threshold);
    a.fresh.check(a.witnesses.witnesses.len())?;
    let origin = VerifierKey::parse(&trust)
        .map(|k| k.name().to_string())
        .ok();
    let held = a.fresh.newest(origin.as_deref())?;
    if let Some(n) = &held {
        verifier = verifier.with_trusted_checkpoint(&n.note);
    }
    if let Some(oldest) = a.fresh.oldest_cosignature() {
        verifier = verifier.with_cosignatures_since(oldest);
    }
    let policies = a
        .policies
        .iter()
        .map(|p| hexagone_platform::LocalityPolicy::from_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut replayer = None;
    if !policies.is_empty() {
        let geo = hexagone_platform::GeoDatabases::open(&a.geo.paths()?)
            .context("opening the geolocation databases to check address facts against")?;
        let r = std::sync::Arc::new(
            crate::judge::Replayer::new(policies).with_databases(geo.snapshot()),
        );
        let check = r.clone();
        verifier = verifier.with_observation_check(std::sync::Arc::new(move |o| check.check(o)));
        replayer = Some(r);
    }
    let input: Box<dyn std::io::Read + Send> = if a.bundle == "-" {
        Box::new(std::io::stdin())
    } else {
        let f = std::fs::File::open(&a.bundle).with_context(|| format!("opening {}", a.bundle))?;
        Box::new(f)
    };
    let mut progress = Progress::new();
    let started = Instant::now();
    // Two workers decode and hash entries while this thread checks order, chain and tree.
    let result = verify_bundle_parallel(input, verifier, 2, |lines| {
        progress.update(|| format!("verified {lines} records ({:.0?})", started.elapsed()))
    })
    .with_context(|| format!("reading {}", a.bundle))?;
    progress.done();
    match result {
        Ok(s) => {
            println!(
                "valid: {} entries, {} checkpoints, origin {}, root {}",
                s.entries, s.checkpoints, s.origin, s.root
            );
            println!(
                "verdicts: {} compliant, {} violation, {} unknown",
                s.verdicts[0], s.verdicts[1], s.verdicts[2]
            );
            if let Some(r) = &replayer {
                let usage = r.usage();
                let used: Vec<String> = usage
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(p, n)| format!("{p} ({n} observations)"))
                    .collect();
                if used.is_empty() {
                    println!("no verdict replayed: the bundle holds no observation");
                } else {
                    println!(
                        "every verdict replayed from its evidence under {}",
                        used.join(", ")
                    );
                }
                for (p, _) in usage.iter().filter(|(_, n)| *n == 0) {
                    println!("policy {p} was given, but no entry was judged under it");
                }
                let (checked, unchecked) = r.facts();
                println!(
                    "address facts: {checked} observations looked up again in the databases they name, all the same"
                );
                if unchecked > 0 {
                    println!(
                        "address facts NOT checked for {unchecked} observations: the databases they name (by SHA-256) were not given (--geo-dir, --geo-db, --registration-db, --asn-db)"
                    );
                }
            }
            for (i, k) in s.keys.iter().enumerate() {
                println!("key {i}: {k}");
            }
            println!(
                "last checkpoint signed by key {}: {}",
                s.last_signer, s.keys[s.last_signer]
            );
            if !s.cosigned_by.is_empty() {
                println!("last checkpoint cosigned by: {}", s.cosigned_by.join(", "));
            }
            if let (Some(age), Some(oldest)) = (a.fresh.max_age, a.fresh.oldest_cosignature())
                && !s.cosigned_by.is_empty()
            {
                let at: Vec<String> = s
                    .cosigned_by
                    .iter()
                    .zip(&s.cosigned_at)
                    .map(|(w, t)| format!("{w} at {}", crate::args::unix_time(*t)))
                    .collect();
                println!(
                    "fresh: the last checkpoint's cosignatures counted were made within --max-age {} (after {}): {}",
                    crate::args::age_text(age),
                    crate::args::unix_time(oldest),
                    at.join(", ")
                );
            }
            if s.trusted != s.last_signer {
                println!(
                    "WARNING: the trusted key (key {}) is retired; accepted because of --accept-retired-key",
                    s.trusted
                );
            }
            if let Some(n) = &held {
                println!("fresh: the bundle reaches {} (size {})", n.from, n.size);
            }
            if a.fresh.is_empty() {
                println!(
                    "freshness NOT checked: nothing shows this bundle is the log's newest state rather than one cut back to an older checkpoint (give --checkpoint, --fresh-from, or --max-age with --witness)"
                );
            }
            Ok(0)
        }
        Err(finding) => {
            println!("INVALID: {finding}");
            Ok(1)
        }
    }
}
