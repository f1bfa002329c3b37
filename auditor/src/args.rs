//! What several subcommands read the same way (`append`, `serve`, `verify`, `report verify`,
//! `prove verify`): the default database, `--witness VERIFIER_KEY,URL` endpoints, `--trust`
//! anchors, `--witness` keys with `--witness-threshold`, which witnesses cosigned a note,
//! `--signed-head`, the key holder's record of the last head signed, and the freshness
//! options of `verify` and `report verify` (`--checkpoint`, `--fresh-from`, `--max-age`).
//! One owner, so `serve` and `report` take them from here rather than from `cli.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The names of the `witnesses` that cosigned `note` (a checkpoint of `size` entries), at or
/// after `oldest` (Unix seconds) when given; when fewer than `threshold` did, an error naming
/// the missing ones and the ones that cosigned too long ago.
pub fn cosigned_by(
    note: &crate::ledger::checkpoint::Note,
    size: u64,
    witnesses: &[WitnessKey],
    threshold: usize,
    oldest: Option<u64>,
) -> Result<Vec<String>, String> {
    let recent = |t: u64| oldest.is_none_or(|o| t >= o);
    let (have, missing): (Vec<&WitnessKey>, Vec<&WitnessKey>) = witnesses
        .iter()
        .partition(|w| w.cosigned(note).is_some_and(recent));
    let stale: Vec<String> = missing
        .iter()
        .filter_map(|w| Some((w, w.cosigned(note)?)))
        .map(|(w, t)| format!("{} cosigned it at {}", w.name(), unix_time(t)))
        .collect();
    if have.len() < threshold && !stale.is_empty() {
        return Err(format!(
            "(size {size}) is cosigned recently enough by {} of the {} witnesses given, {threshold} needed: {}; cosignatures before {} are too old (--max-age)",
            have.len(),
            witnesses.len(),
            stale.join(", "),
            unix_time(oldest.unwrap_or_default())
        ));
    }
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

/// `--witness KEY` and `--witness-threshold N` of the offline checks (`verify`, `prove verify`,
/// `report verify`): the cosignatures the checkpoint checked must carry.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WitnessKeyArgs {
    /// A witness key (or file) whose cosignature the checkpoint checked must carry; repeatable.
    #[arg(long = "witness")]
    pub witnesses: Vec<String>,
    /// How many of the `--witness` keys must have cosigned the checkpoint checked (default:
    /// all).
    #[arg(long)]
    pub witness_threshold: Option<usize>,
}

impl WitnessKeyArgs {
    /// The keys read (each a witness verifier key or a file holding one) and the threshold
    /// (default: all of them).
    pub fn keys(&self) -> anyhow::Result<(Vec<WitnessKey>, usize)> {
        witness_keys(&self.witnesses, self.witness_threshold)
    }
}

/// `--attestations FILE` and `--inventory FILE` of `append` and `serve`: the places
/// observations are judged against besides what the observation reports.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PlacesArgs {
    /// NodeAttestations (YAML: a list, or `kubectl get nodeattestations -o yaml`).
    #[arg(long, value_name = "FILE")]
    pub attestations: Option<PathBuf>,
    /// Storage endpoints outside the cluster (YAML list of `name`, `addresses` and an optional
    /// `attestation`), resolved like nodes when an observation names them.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
}

impl PlacesArgs {
    /// The attestations and the inventory read (empty when not given).
    pub fn load(
        &self,
    ) -> anyhow::Result<(Vec<hexagone_platform::Attestation>, crate::judge::Inventory)> {
        let attestations = match &self.attestations {
            Some(p) => crate::judge::load_attestations(p)?,
            None => Vec::new(),
        };
        let inventory = match &self.inventory {
            Some(p) => crate::judge::Inventory::load(p)?,
            None => crate::judge::Inventory::default(),
        };
        Ok((attestations, inventory))
    }
}

/// Reads `--witness` keys (each a witness verifier key or a file holding one) and
/// `--witness-threshold` (default: all of them).
fn witness_keys(
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

/// Unix seconds in the ledger's time format.
pub fn unix_time(secs: u64) -> String {
    crate::ledger::entry::Timestamp(
        i64::try_from(secs)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000),
    )
    .to_string()
}

/// A `--max-age` as people write it (`1h 30m`).
pub fn age_text(age: Duration) -> String {
    jiff::SignedDuration::try_from(age).map_or_else(|_| format!("{age:?}"), |d| format!("{d:#}"))
}

/// The clock, in Unix seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads `--max-age`: a duration in the friendly format (`90s`, `15m`, `1h30m`, `24h`) or
/// ISO 8601 (`PT1H`); days and longer units are not fixed lengths, so give hours.
pub fn max_age(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s.trim().parse().map_err(|e| {
        format!("{s:?} is not a duration such as 90s, 15m, 1h30m, 24h or PT1H ({e})")
    })?;
    Duration::try_from(d)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?}: give a positive duration"))
}

/// The freshness options of `verify` and `report verify`: what shows the ledger (or report)
/// is the log's newest state, not one cut back to an older checkpoint.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FreshnessArgs {
    /// A signed checkpoint obtained independently (a writer's acknowledgement, `checkpoint
    /// --out`, the service's `/v1/checkpoint`): what is verified must reach it.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// A witness to ask for the newest checkpoint of this log it cosigned, as
    /// `WITNESS_KEY,http://host:port[/prefix]`; repeatable. What is verified must reach the
    /// newest of them, so one cut back to an older witnessed checkpoint is refused. A witness
    /// that cannot be asked stops the check (exit 2, naming it): freshness was not checked.
    #[arg(long = "fresh-from", value_name = "WITNESS_KEY,URL")]
    pub fresh_from: Vec<String>,
    /// The oldest a cosignature may be (`90m`, `24h`, `PT1H`): the `--witness` cosignatures
    /// counted toward `--witness-threshold` must have been made within it (their C2SP
    /// cosignature/v1 time), and with `--fresh-from` so must the witness's newest one.
    #[arg(long, value_name = "DURATION", value_parser = max_age)]
    pub max_age: Option<Duration>,
}

/// The newest checkpoint known from outside the ledger being verified.
#[derive(Debug, Clone)]
pub struct Newest {
    /// Its tree size.
    pub size: u64,
    /// The signed note (with the cosignatures it came with).
    pub note: String,
    /// Where it came from, for messages.
    pub from: String,
}

impl FreshnessArgs {
    /// True when no freshness option was given.
    pub fn is_empty(&self) -> bool {
        self.checkpoint.is_none() && self.fresh_from.is_empty() && self.max_age.is_none()
    }

    /// Refuses `--max-age` with no cosignature to apply it to: `witnesses` is the number of
    /// `--witness` keys given.
    pub fn check(&self, witnesses: usize) -> anyhow::Result<()> {
        if self.max_age.is_some() && witnesses == 0 && self.fresh_from.is_empty() {
            bail!(
                "--max-age applies to the cosignatures of the --witness keys, or of the --fresh-from witnesses: give one of them"
            );
        }
        Ok(())
    }

    /// The oldest cosignature time `--max-age` accepts, on this machine's clock.
    pub fn oldest_cosignature(&self) -> Option<u64> {
        self.max_age
            .map(|age| now_unix().saturating_sub(age.as_secs()))
    }

    /// The newest of `--checkpoint` and the `--fresh-from` witnesses' newest cosigned
    /// checkpoints of the log `origin`. A witness that cannot be asked, answers no valid
    /// cosignature, or (with `--max-age`) cosigned nothing of the log within it, is an error:
    /// freshness could not be established.
    pub fn newest(&self, origin: Option<&str>) -> anyhow::Result<Option<Newest>> {
        let mut held: Option<Newest> = None;
        if let Some(cp) = &self.checkpoint {
            let text =
                std::fs::read_to_string(cp).with_context(|| format!("reading {}", cp.display()))?;
            // A note ends with one newline; a copy through `jq -r`, an editor or a terminal
            // may add or drop some: the signature covers the text, not the file's last bytes.
            let note = format!("{}\n", text.trim_end());
            let size = checkpoint_size(&note).with_context(|| {
                format!(
                    "--checkpoint {}: the file is not a signed checkpoint note (origin, size, root, a blank line, signature lines); nothing was verified",
                    cp.display()
                )
            })?;
            held = Some(Newest {
                size,
                note,
                from: format!("the checkpoint in {}", cp.display()),
            });
        }
        if !self.fresh_from.is_empty() {
            let origin = origin.context(
                "--fresh-from asks witnesses about the log the trusted key names: give the verifier key (the .pub file keygen wrote), not a fingerprint",
            )?;
            for spec in &self.fresh_from {
                if let Some(fresh) = self.newest_witnessed(spec, origin)?
                    && held.as_ref().is_none_or(|h| fresh.size > h.size)
                {
                    held = Some(fresh);
                }
            }
        }
        Ok(held)
    }

    /// `--fresh-from WITNESS_KEY,URL`: the newest checkpoint of `origin` the witness cosigned,
    /// with its cosignature checked. `None` when the witness cosigned nothing of this log
    /// (said on standard error).
    fn newest_witnessed(&self, spec: &str, origin: &str) -> anyhow::Result<Option<Newest>> {
        let w = witness_endpoint(spec)?;
        let name = w.key.name().to_string();
        let fetched = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(crate::witness::serve::latest(&w.url, origin))
            .with_context(|| {
                format!(
                    "--fresh-from: witness {name} at {} could not be asked for its newest checkpoint, so freshness was not checked",
                    w.url
                )
            })?;
        let Some(note) = fetched else {
            eprintln!(
                "witness {name} has cosigned no checkpoint of {origin}: nothing to hold the bundle to"
            );
            return Ok(None);
        };
        let parsed = crate::ledger::checkpoint::parse_note(&note)
            .with_context(|| format!("witness {name}'s newest checkpoint"))?;
        let Some(at) = w.key.cosigned(&parsed) else {
            bail!(
                "--fresh-from: witness {name} answered a checkpoint that does not carry its valid cosignature; freshness was not checked"
            );
        };
        let size = checkpoint_size(&note)
            .with_context(|| format!("witness {name}'s newest checkpoint has no size"))?;
        if let Some(oldest) = self.oldest_cosignature()
            && at < oldest
        {
            bail!(
                "--fresh-from: the newest checkpoint of {origin} witness {name} cosigned (size {size}) was cosigned at {}, before {} (--max-age): the log has not shown it a checkpoint since, so freshness could not be established",
                unix_time(at),
                unix_time(oldest)
            );
        }
        Ok(Some(Newest {
            size,
            note,
            from: format!("the newest checkpoint witness {name} cosigned"),
        }))
    }
}

/// The tree size a checkpoint note states, if it parses.
pub fn checkpoint_size(note: &str) -> Option<u64> {
    crate::ledger::checkpoint::parse_note(note)
        .ok()?
        .text
        .lines()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(given: &str, want: Result<u64, &str>) {
        match (max_age(given), want) {
            (Ok(d), Ok(secs)) => assert_eq!(d, Duration::from_secs(secs), "{given}"),
            (Err(e), Err(part)) => assert!(e.contains(part), "{given}: {e}"),
            (got, want) => panic!("{given}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn max_ages_are_read_as_people_write_them() {
        check("90s", Ok(90));
        check("15m", Ok(900));
        check("1h30m", Ok(5400));
        check("24h", Ok(86_400));
        check("PT1H", Ok(3600));
        check(" 2h ", Ok(7200));
        check("0s", Err("give a positive duration"));
        check("-1h", Err("give a positive duration"));
        check("soon", Err("is not a duration such as 90s"));
        check("", Err("is not a duration such as 90s"));
    }

    /// A cosignature counts only when made at or after the oldest time `--max-age` accepts;
    /// one made before is named with its time, not called missing.
    #[test]
    fn cosignatures_older_than_the_oldest_accepted_do_not_count() {
        use crate::ledger::cosignature::WitnessSigner;
        let w = WitnessSigner::generate("witness.test/a").unwrap();
        let text = "example.test/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let line = w.cosign(text, 1_764_300_000);
        let note = crate::ledger::checkpoint::parse_note(&format!("{text}\n{line}")).unwrap();
        let keys = [w.public().clone()];
        let named = Ok(vec!["witness.test/a".to_string()]);
        assert_eq!(cosigned_by(&note, 5, &keys, 1, None), named);
        assert_eq!(cosigned_by(&note, 5, &keys, 1, Some(1_764_300_000)), named);
        let err = cosigned_by(&note, 5, &keys, 1, Some(1_764_300_001)).unwrap_err();
        assert_eq!(
            err,
            "(size 5) is cosigned recently enough by 0 of the 1 witnesses given, 1 needed: witness.test/a cosigned it at 2025-11-28T03:20:00.000Z; cosignatures before 2025-11-28T03:20:01.000Z are too old (--max-age)"
        );
    }
}
