//! What several subcommands read the same way (`append`, `serve`, `verify`, `report verify`,
//! `prove verify`): the default database, `--witness VERIFIER_KEY,URL` endpoints, `--trust`
//! anchors, `--witness` keys with `--witness-threshold`, which witnesses cosigned a note, and
//! `--signed-head`, the key holder's record of the last head signed.
//! One owner, so `serve` and `report` take them from here rather than from `cli.rs`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::keys::VerifierKey;
use crate::ledger::cosignature::WitnessKey;
use crate::store::WitnessEndpoint;
use crate::store::signed_head::SignedHeadFile;

/// `--signed-head FILE`, beside every `--key` that signs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SignedHeadArg {
    /// The key holder's record of the last head this key signed: a start refuses a database
    /// whose head does not extend it (a database set back to an older state), and every commit
    /// updates it before anything is acknowledged. Keep it where the database's owner cannot
    /// write, and for as long as the key. Default: the key file's path with `.signed-head`
    /// appended.
    #[arg(long = "signed-head", value_name = "FILE")]
    pub signed_head: Option<PathBuf>,
}

impl SignedHeadArg {
    /// The record for the key file `key`.
    pub fn file(&self, key: &Path) -> SignedHeadFile {
        match &self.signed_head {
            Some(p) => SignedHeadFile::at(p.clone()),
            None => SignedHeadFile::beside(key),
        }
    }
}

/// Default database: a SQLite file in the current directory.
pub const DEFAULT_DB: &str = "sqlite:hexagone-ledger.sqlite";

/// Parses `--witness VERIFIER_KEY,URL`: the URL follows the first comma after the key's
/// base64 part (names and base64 hold no comma there).
pub fn witness_endpoint(s: &str) -> anyhow::Result<WitnessEndpoint> {
    let split = s
        .rfind('+')
        .and_then(|p| s[p..].find(',').map(|c| p + c))
        .with_context(|| format!("--witness {s:?}: expected VERIFIER_KEY,http://host:port"))?;
    Ok(WitnessEndpoint {
        key: WitnessKey::parse(&s[..split]).with_context(|| format!("--witness {s:?}"))?,
        url: s[split + 1..].to_string(),
        last: None,
    })
}

/// The names of the `witnesses` that cosigned `note` (a checkpoint of `size` entries); when
/// fewer than `threshold` did, an error naming the missing ones.
pub fn cosigned_by(
    note: &crate::ledger::checkpoint::Note,
    size: u64,
    witnesses: &[WitnessKey],
    threshold: usize,
) -> Result<Vec<String>, String> {
    let (have, missing): (Vec<&WitnessKey>, Vec<&WitnessKey>) =
        witnesses.iter().partition(|w| w.cosigned(note).is_some());
    if have.len() < threshold {
        return Err(format!(
            "(size {size}) is cosigned by {} of the {} witnesses given, {threshold} needed; missing: {}",
            have.len(),
            witnesses.len(),
            missing
                .iter()
                .map(|w| w.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(have.iter().map(|w| w.name().to_string()).collect())
}

/// Reads `--trust`: a verifier key, a fingerprint, or a file holding either.
pub fn trust_anchor(s: &str) -> anyhow::Result<String> {
    let p = Path::new(s);
    if VerifierKey::parse(s).is_err() && p.exists() {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {s}"))?;
        return Ok(text.trim().to_string());
    }
    Ok(s.trim().to_string())
}

/// Reads `--witness` keys (each a witness verifier key or a file holding one) and
/// `--witness-threshold` (default: all of them).
pub fn witness_keys(
    given: &[String],
    threshold: Option<usize>,
) -> anyhow::Result<(Vec<WitnessKey>, usize)> {
    let witnesses = given
        .iter()
        .map(|w| {
            let text = trust_anchor(w)?;
            WitnessKey::parse(&text).with_context(|| format!("--witness {w}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let threshold = threshold.unwrap_or(witnesses.len());
    if threshold > witnesses.len() {
        bail!(
            "--witness-threshold {threshold} is more than the {} witnesses given",
            witnesses.len()
        );
    }
    Ok((witnesses, threshold))
}
