//! Locality reports for security officers: the one report model (`hexagone.report@v3`), its
//! signature with the log's key, and its renderings (JSON, Markdown, HTML).
//!
//! The model is built from a verified ledger by [`aggregate`], serialised in canonical JSON
//! (serde's field order, no whitespace, no floating-point numbers) and signed as a C2SP signed
//! note whose text names the digest of that JSON, under the log's key: the same key, the same
//! encoding and the same tools as checkpoints. Every rendering embeds the signed envelope, and
//! [`open`] checks that the rest of the file is exactly the rendering of it.

pub mod aggregate;
pub mod cmd;
pub mod html;
pub mod markdown;
mod markup;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::keys::{SignerKey, VerifierKey};
use crate::ledger::checkpoint::{CheckpointError, Note, open_checkpoint, parse_note, sign_note};

/// The report format and version; also the first line of the signed note's text.
///
/// v3 (this one) adds the policies in force at the period's end ([`Report::policies_in_force`])
/// to v2. v2 carries each object's state as of the period's end and splits violations into
/// open and resolved; v1 counted only the period's entries. A v2 report is still read and
/// checked against its ledger as v2 ([`Report::as_version`]): the ledger gives the same v2
/// report it gave when it was made. A v1 report is refused by name (see [`open`]).
pub const FORMAT: &str = "hexagone.report@v3";

/// The previous version, still read: v3 without [`Report::policies_in_force`].
pub const FORMAT_V2: &str = "hexagone.report@v2";

/// Whether this hexagone-auditor reads reports of `format`.
fn readable(format: &str) -> bool {
    format == FORMAT || format == FORMAT_V2
}

/// What is wrong with a report (or the ledger it is checked against).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file holds no signed report in any known rendering.
    #[error("no signed report found: {0}")]
    NotAReport(String),
    /// The report is of another version of the format.
    #[error(
        "this is a {0} report; this hexagone-auditor reads {FORMAT} and {FORMAT_V2} (each \
         object's state at the period's end, open and resolved violations): check it with the \
         version that made it, or make the report again"
    )]
    OtherVersion(String),
    /// The signed envelope is not valid JSON of the model.
    #[error("the signed report is not a {FORMAT} report: {0}")]
    Json(#[from] serde_json::Error),
    /// The signature note is malformed or not by the key.
    #[error("the report's signature: {0}")]
    Signature(CheckpointError),
    /// The signature note carries a line besides the log key's one signature: a line naming
    /// another authority (or a second line under the log's name) vouches for nothing this
    /// tool can check, and a page showing it would present it as a signature.
    #[error(
        "the report's signature note carries a line that is not the log key's signature: `{line}`; a report is signed by the log's key alone (cosignatures belong on checkpoints), so the report is refused"
    )]
    ForeignSignature {
        /// The signature line, as written in the note.
        line: String,
    },
    /// The signed text does not name this report's digest.
    #[error(
        "the report was changed after it was signed: its content has digest {computed}, the signature covers {signed}"
    )]
    Digest {
        /// Digest named by the signature.
        signed: String,
        /// Digest of the content found.
        computed: String,
    },
    /// The checkpoint the report names does not open with the key, or disagrees with the
    /// fields the report shows.
    #[error("the report's checkpoint: {0}")]
    Checkpoint(String),
    /// The file's text is not the rendering of its signed content.
    #[error(
        "line {line} of the {format} report differs from the rendering of its signed content (the visible text was changed after signing)"
    )]
    Rendering {
        /// Rendering format.
        format: &'static str,
        /// First differing line, from 1.
        line: usize,
    },
    /// The report does not match the ledger it is checked against.
    #[error("the report does not match the ledger: {0}")]
    Ledger(String),
}

/// The locality report for one period, tied to one signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// [`FORMAT`], or [`FORMAT_V2`] for a report made before v3 (no `policies_in_force`).
    pub format: String,
    /// The period: entries with `from <= time < to` (sequencer times, UTC).
    pub period: Period,
    /// When the report was made (UTC).
    pub generated_at: String,
    /// The signed checkpoint the report covers: only entries below its size are counted.
    pub checkpoint: CheckpointRef,
    /// Totals: the period's entries, and the objects by the verdict of their state at its end.
    pub totals: Totals,
    /// The policies the period's observations were judged under.
    pub policies: Vec<PolicyRow>,
    /// Objects by data store and object class, counted by their latest verdict before the
    /// period's end.
    pub stores: Vec<StoreRow>,
    /// Objects by the countries their location evidence names, counted by latest verdict.
    pub countries: Vec<CountRow>,
    /// Objects by the network operators (jurisdiction) of their latest location.
    pub jurisdictions: Vec<JurisdictionRow>,
    /// Every object's state at the period's end: its latest entry before the end, made in the
    /// period or before it (an object recorded once, such as a backup, is in every later report).
    pub objects: Vec<ObjectRow>,
    /// Violations open at the period's end: no compliant entry for the object has followed
    /// the violation, whenever it was recorded. The longest open first.
    pub open_violations: Vec<ViolationRow>,
    /// Violations resolved in the period: a compliant entry for the object, made in the
    /// period, followed them. In the order of those entries.
    pub resolved_violations: Vec<ViolationRow>,
    /// The round-trip bound of each place and address that has latency evidence: the latest
    /// before the period's end. Absent when no entry has any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bounds: Vec<BoundRow>,
    /// The policy entries of the period (a `LocalityPolicy` as the cluster held it, or its
    /// removal), in ledger order. Absent when the period has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_changes: Vec<PolicyChangeRow>,
    /// The policies in force at the period's end: each `LocalityPolicy` whose latest entry
    /// before the end (in the period or before it) is a policy entry, not its removal. By data
    /// store and name. Absent when there is none, and always in a v2 report ([`FORMAT_V2`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies_in_force: Vec<PolicyInForceRow>,
}

/// One policy entry of the period: the digest of a `LocalityPolicy` as the cluster held it,
/// or its removal, with what the ledger knew of it before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChangeRow {
    /// Data store (`kubernetes` for the cluster's policies).
    pub store: String,
    /// The policy's name (the entry's object identifier).
    pub policy: String,
    /// Entry position.
    pub seq: u64,
    /// Entry time.
    pub time: String,
    /// The policy's digest (`LocalityPolicy::digest` of its spec); `None` when the entry is
    /// its removal.
    pub digest: Option<String>,
    /// What the policy's latest earlier entry (in the period or before it) recorded: its
    /// digest, or `None` when that entry was its removal or there is none.
    pub previous: Option<String>,
    /// The position of that earlier entry; `None` when the policy is first seen.
    pub previous_seq: Option<u64>,
    /// Whether `digest` is the digest of a policy the period's observations were judged under
    /// ([`Report::policies`]); `None` for a removal, or when no observation of the period was
    /// judged.
    pub judged_under: Option<bool>,
}

/// A policy in force at the period's end: the digest of a `LocalityPolicy` as its latest entry
/// before the end recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInForceRow {
    /// Data store (`kubernetes` for the cluster's policies).
    pub store: String,
    /// The policy's name (the entry's object identifier).
    pub policy: String,
    /// Its digest (`LocalityPolicy::digest` of its spec).
    pub digest: String,
    /// The position of the entry that recorded it: in force since then.
    pub since_seq: u64,
    /// That entry's time.
    pub since: String,
    /// Whether the period's observations were judged under a policy with this digest
    /// ([`Report::policies`]), as for [`PolicyChangeRow::judged_under`]; `None` when no
    /// observation of the period was judged.
    pub judged_under: Option<bool>,
}

/// How far a place's address can be from the vantage points that measured it, as its latest
/// latency evidence before the period's end recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundRow {
    /// The node or endpoint.
    pub subject: String,
    /// `node` or `endpoint`.
    pub subject_kind: String,
    /// The address and port measured.
    pub address: String,
    /// Each vantage with its quickest round trip and bound: `paris-1: 0.400 ms, 60 km`.
    pub measured_from: Vec<String>,
    /// The smallest of the bounds, in kilometres.
    pub bound_km: u64,
    /// How the evidence weighed: `supports` or `inconclusive`.
    pub assessment: String,
    /// The evidence's sentence.
    pub sentence: String,
    /// Its entry.
    pub seq: u64,
    /// The entry's time.
    pub time: String,
}

/// A period, half-open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// First instant included.
    pub from: String,
    /// First instant excluded.
    pub to: String,
}

/// The checkpoint a report covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRef {
    /// Log origin (the signing key's name).
    pub origin: String,
    /// Tree size: entries `0..size` are covered.
    pub size: u64,
    /// Root hash, hex.
    pub root: String,
    /// The signed checkpoint note, as exported (give it to `verify --checkpoint`).
    pub note: String,
}

/// Totals over the period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Observation entries in the period.
    pub observations: u64,
    /// First and last entry position in the period.
    pub first_seq: Option<u64>,
    /// Last entry position in the period.
    pub last_seq: Option<u64>,
    /// Objects known at the period's end (recorded in the period or before it).
    pub objects: u64,
    /// Objects by the verdict of their latest entry before the period's end.
    pub verdicts: Verdicts,
}

/// Counts by verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdicts {
    /// Compliant.
    pub compliant: u64,
    /// Violation.
    pub violation: u64,
    /// Unknown.
    pub unknown: u64,
}

impl Verdicts {
    /// Counts one verdict by its canonical name.
    pub fn count(&mut self, verdict: &str) {
        match verdict {
            "compliant" => self.compliant += 1,
            "violation" => self.violation += 1,
            _ => self.unknown += 1,
        }
    }

    /// All objects counted.
    pub fn total(&self) -> u64 {
        self.compliant + self.violation + self.unknown
    }
}

/// A policy seen in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRow {
    /// Its classification.
    pub classification: String,
    /// Its digest.
    pub digest: String,
    /// Observations judged under it.
    pub observations: u64,
}

/// Objects of one store and class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreRow {
    /// Data store.
    pub store: String,
    /// Object class.
    pub class: String,
    /// Objects by latest verdict.
    pub verdicts: Verdicts,
}

/// Objects placed in one country (or several, when the location sources disagree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountRow {
    /// The countries the location evidence names, comma-separated, or `unknown`.
    pub country: String,
    /// Objects by latest verdict.
    pub verdicts: Verdicts,
}

/// Objects whose latest location is reached through one network operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JurisdictionRow {
    /// AS number, if the network operator was recorded.
    pub asn: Option<u32>,
    /// Organisation as the registration data names it.
    pub organisation: Option<String>,
    /// Registration country.
    pub registered: Option<String>,
    /// Whether the policy's list of networks under extra-EU control named it.
    pub extra_eu_control: bool,
    /// Objects by latest verdict.
    pub verdicts: Verdicts,
}

impl JurisdictionRow {
    /// The row's cells as every rendering shows them: AS, organisation, registration country,
    /// extra-EU control.
    pub fn cells(&self) -> Vec<String> {
        vec![
            self.asn
                .map_or("none recorded".into(), |a| format!("AS{a}")),
            self.organisation.clone().unwrap_or_default(),
            self.registered.clone().unwrap_or_default(),
            if self.extra_eu_control { "yes" } else { "no" }.into(),
        ]
    }
}

/// An object's state at the period's end: its latest entry before the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRow {
    /// Data store.
    pub store: String,
    /// Object class.
    pub class: String,
    /// Identifier in the store (as recorded: an identifier or a hash).
    pub object: String,
    /// For an image the collector recorded: which image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRow>,
    /// Node or endpoint holding it.
    pub subject: String,
    /// `node` or `endpoint`.
    pub subject_kind: String,
    /// Countries its location evidence names (see [`CountRow::country`]).
    pub country: String,
    /// `compliant`, `violation` or `unknown`.
    pub verdict: String,
    /// Entry position.
    pub seq: u64,
    /// Entry time.
    pub time: String,
}

/// A violation of one object: from the violation entry that opened it (no violation open
/// before it) to the compliant entry that resolved it, if one has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViolationRow {
    /// Data store.
    pub store: String,
    /// Object class.
    pub class: String,
    /// Identifier in the store.
    pub object: String,
    /// For an image: which image, as the last violation entry names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRow>,
    /// Node or endpoint holding it at the last violation entry.
    pub subject: String,
    /// `node` or `endpoint`.
    pub subject_kind: String,
    /// Countries the location evidence of the last violation entry names.
    pub country: String,
    /// Classification of the policy the last violation entry was judged under.
    pub classification: String,
    /// Time of the violation entry that opened it (possibly before the period).
    pub since: String,
    /// Position of that entry.
    pub since_seq: u64,
    /// Time of the last violation entry.
    pub last_seen: String,
    /// Position of the last violation entry.
    pub last_seq: u64,
    /// Violation entries from the opening one to the last.
    pub entries: u64,
    /// One sentence: open since when, or resolved when and where it went; for an open one,
    /// with its decisive reason.
    pub headline: String,
    /// The reasons of the last violation entry, the decisive one first (the first
    /// contradicting evidence; without one, the unmet requirement), then the others in the
    /// engine's order.
    pub reasons: Vec<String>,
    /// The evidence sentences of the last violation entry, in the engine's order.
    pub evidence: Vec<String>,
    /// The compliant entry that resolved it; `None` while it is open.
    pub resolved: Option<Resolution>,
}

/// Which image a container runs, as its entry names it ([`crate::ledger::entry::ImageRef`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRow {
    /// The image as the pod spec writes it.
    pub reference: String,
    /// The image ID the kubelet reported pulling (the digest), `None` until it did.
    pub image_id: Option<String>,
}

impl From<&crate::ledger::entry::ImageRef> for ImageRow {
    fn from(i: &crate::ledger::entry::ImageRef) -> Self {
        Self {
            reference: i.reference.clone(),
            image_id: i.image_id.clone(),
        }
    }
}

/// Where a violation went: the compliant entry that resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// Node or endpoint holding the object since; empty when it was removed.
    pub subject: String,
    /// `node` or `endpoint`; [`REMOVED`] when a removal entry resolved it (the object is gone).
    pub subject_kind: String,
    /// Countries its location evidence names; empty when it was removed.
    pub country: String,
    /// Entry position.
    pub seq: u64,
    /// Entry time.
    pub time: String,
}

/// The [`Resolution::subject_kind`] of a violation resolved by the object's removal.
pub const REMOVED: &str = "removed";

/// A report with its signature: the signed note over its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReport {
    /// The report.
    pub report: Report,
    /// C2SP signed note: text `hexagone.report@v3\nsha256:<hex>\n` (the report's format on the
    /// first line), signed by the log's key.
    pub signature: String,
}

impl Report {
    /// The canonical JSON the signature covers.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the report model serialises")
    }

    /// `sha256:` and the hex SHA-256 of [`Report::canonical`].
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(self.canonical())))
    }

    /// This report as a report of `format` would have it: a [`FORMAT_V2`] report has no
    /// policies in force (that version did not have them). What `report verify --ledger`
    /// compares a report with: the report the ledger gives, in the report's own version.
    pub fn as_version(mut self, format: &str) -> Self {
        if format == FORMAT_V2 {
            // Nor images: that version's ledgers named none.
            self.policies_in_force.clear();
            for o in &mut self.objects {
                o.image = None;
            }
            for v in self
                .open_violations
                .iter_mut()
                .chain(&mut self.resolved_violations)
            {
                v.image = None;
            }
        }
        self.format = format.to_owned();
        self
    }

    /// Signs the report with the log's key.
    pub fn sign(self, key: &SignerKey) -> SignedReport {
        let signature = sign_note(&note_text(&self.format, &self.digest()), key);
        SignedReport {
            report: self,
            signature,
        }
    }
}

fn note_text(format: &str, digest: &str) -> String {
    // The second line is never a number, so this note can never pass for a checkpoint.
    format!("{format}\n{digest}\n")
}

impl SignedReport {
    /// Checks the signature by `key` over this content, and that the checkpoint the report
    /// names is signed by `key` and says what the report shows (origin, size, root).
    pub fn check(&self, key: &VerifierKey) -> Result<(), ReportError> {
        let keys = std::slice::from_ref(key);
        let note = parse_note(&self.signature).map_err(ReportError::Signature)?;
        note.verified_by(keys).map_err(ReportError::Signature)?;
        self.only_the_log_signs(&note, key)?;
        let computed = self.report.digest();
        let format = self.report.format.as_str();
        if !readable(format) {
            return Err(ReportError::NotAReport(format!(
                "format {format:?}, expected {FORMAT} or {FORMAT_V2}"
            )));
        }
        let mut lines = note.text.lines();
        if lines.next() != Some(format) {
            return Err(ReportError::Signature(CheckpointError::MalformedNote(
                format!("the signed text does not start with {format}"),
            )));
        }
        let signed = lines.next().unwrap_or_default().to_string();
        if note.text != note_text(format, &signed) || signed != computed {
            return Err(ReportError::Digest { signed, computed });
        }
        if format == FORMAT_V2 && !self.report.policies_in_force.is_empty() {
            return Err(ReportError::NotAReport(format!(
                "a {FORMAT_V2} report has no policies_in_force (added in {FORMAT})"
            )));
        }
        let r = &self.report;
        if format == FORMAT_V2
            && (r.objects.iter().any(|o| o.image.is_some())
                || r.open_violations
                    .iter()
                    .chain(&r.resolved_violations)
                    .any(|v| v.image.is_some()))
        {
            return Err(ReportError::NotAReport(format!(
                "a {FORMAT_V2} report names no images (added in {FORMAT})"
            )));
        }
        let cp = &self.report.checkpoint;
        let (body, _) = open_checkpoint(&cp.note, keys)
            .map_err(|e| ReportError::Checkpoint(format!("its note does not open: {e}")))?;
        let root = hex::encode(body.root);
        if body.origin != cp.origin || body.size != cp.size || root != cp.root {
            return Err(ReportError::Checkpoint(format!(
                "the report shows origin {} size {} root {}, its signed note says origin {} size {} root {root}",
                cp.origin, cp.size, cp.root, body.origin, body.size
            )));
        }
        Ok(())
    }
}

impl SignedReport {
    /// Refuses every signature line but the first one by `key`: the signed-note spec lets a
    /// verifier ignore lines by keys it does not know, but a report page shows them all, and
    /// an accreditation auditor reading "— some.authority/… " would take it for a signature.
    fn only_the_log_signs(&self, note: &Note, key: &VerifierKey) -> Result<(), ReportError> {
        let lines = signature_lines(&self.signature);
        let mut by_log = false;
        for (i, sig) in note.signatures.iter().enumerate() {
            let ours = sig.name == key.name() && sig.key_id == key.id();
            if ours && !by_log {
                by_log = true;
                continue;
            }
            return Err(ReportError::ForeignSignature {
                line: lines.get(i).copied().unwrap_or_default().to_string(),
            });
        }
        Ok(())
    }
}

/// The signature lines of a signed note's text, in the order [`parse_note`] reads them (its
/// `signatures[i]` is `lines[i]`).
pub(crate) fn signature_lines(note: &str) -> Vec<&str> {
    note.rsplit_once("\n\n")
        .map_or(Vec::new(), |(_, sigs)| sigs.lines().collect())
}

/// A rendering of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The model itself, with its signature (pretty-printed JSON).
    Json,
    /// Markdown, the signed JSON in a final fenced block.
    Md,
    /// One self-contained HTML page, the signed JSON in a `<script>` data block.
    Html,
}

impl Format {
    /// The name used in messages and file extensions.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Md => "md",
            Self::Html => "html",
        }
    }

    /// The format a file name's extension implies.
    pub fn from_extension(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "json" => Some(Self::Json),
            "md" | "markdown" => Some(Self::Md),
            "html" | "htm" => Some(Self::Html),
            _ => None,
        }
    }
}

/// Renders a signed report in `format`. Deterministic: [`open`] renders again and compares.
pub fn render(signed: &SignedReport, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(signed).expect("the report serialises");
            s.push('\n');
            s
        }
        Format::Md => markdown::render(signed),
        Format::Html => html::render(signed),
    }
}

/// The signed envelope as one line of JSON for embedding in a page or document: `<`, `>` and
/// `&` (which JSON has only inside strings) as `\u` escapes, so no ledger value can close an
/// HTML element or become markup, even where a renderer does not treat the block as code.
fn embedded_json(signed: &SignedReport) -> String {
    serde_json::to_string(signed)
        .expect("the report serialises")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Finds the signed report in a rendering, checks its signature and checkpoint with `key`,
/// and checks the whole file is the rendering of it.
pub fn open(text: &str, key: &VerifierKey) -> Result<(Format, SignedReport), ReportError> {
    let (format, signed) = extract(text)?;
    signed.check(key)?;
    let expected = render(&signed, format);
    if expected != text {
        let line = expected
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(text.lines().count()))
            + 1;
        return Err(ReportError::Rendering {
            format: format.name(),
            line,
        });
    }
    Ok((format, signed))
}

/// Finds the signed envelope in any rendering.
fn extract(text: &str) -> Result<(Format, SignedReport), ReportError> {
    let (format, json) = envelope(text)?;
    // Name another version before the model's field-by-field refusal.
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(json)
        && let Some(other) = v["report"]["format"].as_str()
        && !readable(other)
        && other.starts_with("hexagone.report@")
    {
        return Err(ReportError::OtherVersion(other.to_string()));
    }
    Ok((format, serde_json::from_str(json)?))
}

/// The rendering and the JSON text of its signed envelope.
fn envelope(text: &str) -> Result<(Format, &str), ReportError> {
    if text.trim_start().starts_with('{') {
        return Ok((Format::Json, text));
    }
    if text.starts_with("<!DOCTYPE html>") {
        let json = html::embedded(text).ok_or_else(|| {
            ReportError::NotAReport(format!(
                "an HTML page without its <script id=\"{}\"> block",
                html::DATA_ID
            ))
        })?;
        return Ok((Format::Html, json));
    }
    let json = markdown::embedded(text).ok_or_else(|| {
        ReportError::NotAReport(
            "neither JSON, nor a Hexagone HTML page, nor Markdown ending with its signed block"
                .into(),
        )
    })?;
    Ok((Format::Md, json))
}

#[cfg(test)]
mod tests {
    use super::aggregate::Aggregator;
    use super::*;
    use crate::ledger::checkpoint::Checkpoint;
    use ed25519_dalek::SigningKey;

    fn key(seed: u8) -> SignerKey {
        SignerKey::from_signing_key("hexagone.test/ledger", SigningKey::from_bytes(&[seed; 32]))
            .unwrap()
    }

    fn sample(key: &SignerKey) -> Report {
        let note = Checkpoint {
            origin: key.name().into(),
            size: 3,
            root: [7; 32],
            extensions: vec![],
        }
        .sign(key);
        Report {
            format: FORMAT.into(),
            period: Period {
                from: "2026-11-01T00:00:00.000Z".into(),
                to: "2026-12-01T00:00:00.000Z".into(),
            },
            generated_at: "2026-11-29T08:00:00.000Z".into(),
            checkpoint: CheckpointRef {
                origin: key.name().into(),
                size: 3,
                root: hex::encode([7; 32]),
                note,
            },
            totals: Totals::default(),
            policies: vec![],
            stores: vec![],
            countries: vec![],
            jurisdictions: vec![],
            objects: vec![ObjectRow {
                store: "kubernetes".into(),
                class: "image".into(),
                object: "image/wp/exo-0/exo".into(),
                image: Some(ImageRow {
                    reference: "registry.example.fr/hexagone/exo:7.1".into(),
                    image_id: Some(
                        "registry.example.fr/hexagone/exo@sha256:\
                         9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                            .into(),
                    ),
                }),
                subject: "registry.example.fr".into(),
                subject_kind: "endpoint".into(),
                country: "FR".into(),
                verdict: "compliant".into(),
                seq: 2,
                time: "2026-11-03T00:00:00.000Z".into(),
            }],
            open_violations: vec![ViolationRow {
                store: "minio/documents".into(),
                class: "document".into(),
                object: "<script>alert(1)</script>".into(),
                image: Some(ImageRow {
                    reference: "<b>exo</b>".into(),
                    image_id: None,
                }),
                subject: "fsn-1".into(),
                subject_kind: "node".into(),
                country: "DE".into(),
                classification: "Standard".into(),
                since: "2026-11-02T00:00:00.000Z".into(),
                since_seq: 1,
                last_seen: "2026-11-03T00:00:00.000Z".into(),
                last_seq: 2,
                entries: 2,
                headline: "<script> on fsn-1 & \"more\" has violated Standard since 2026-11-02T00:00:00.000Z".into(),
                reasons: vec!["address 5.9.0.1 is in DE & \"not\" allowed".into()],
                evidence: vec![],
                resolved: None,
            }],
            resolved_violations: vec![],
            bounds: vec![],
            policy_changes: vec![],
            policies_in_force: vec![],
        }
    }

    fn check(format: Format) {
        let k = key(1);
        let signed = sample(&k).sign(&k);
        let text = render(&signed, format);
        let (f, opened) = open(&text, k.verifier()).unwrap();
        assert_eq!((f, &opened), (format, &signed));
        // Another key: refused.
        let other = key(2);
        let err = open(&text, other.verifier()).unwrap_err().to_string();
        assert!(err.contains("signature"), "{err}");
        // The signed content changed (in the embedded data): the digest no longer matches.
        let tampered = text.replacen("fsn-1", "fsn-2", 1);
        let err = open(&tampered, k.verifier()).unwrap_err().to_string();
        assert!(
            err.contains("changed after it was signed") || err.contains("differs"),
            "{format:?}: {err}"
        );
    }

    #[test]
    fn every_rendering_opens_and_refuses_another_key_and_a_change() {
        check(Format::Json);
        check(Format::Md);
        check(Format::Html);
    }

    #[test]
    fn a_changed_visible_line_is_named() {
        let k = key(1);
        let signed = sample(&k).sign(&k);
        for format in [Format::Md, Format::Html] {
            let text = render(&signed, format);
            // Change only the human-readable part (the last occurrence is in the signed data).
            let at = text.find("fsn-1").unwrap();
            let tampered = format!("{}fsn-9{}", &text[..at], &text[at + 5..]);
            let err = open(&tampered, k.verifier()).unwrap_err();
            assert!(
                matches!(err, ReportError::Rendering { line, .. } if line > 1),
                "{format:?}: {err}"
            );
        }
    }

    #[test]
    fn a_checkpoint_that_disagrees_with_the_report_is_refused() {
        let k = key(1);
        let mut r = sample(&k);
        r.checkpoint.size = 4;
        let err = r.sign(&k).check(k.verifier()).unwrap_err().to_string();
        assert!(err.contains("size 4") && err.contains("size 3"), "{err}");
    }

    /// `insta` snapshots of the three renderings. Regenerate with `INSTA_UPDATE=always cargo
    /// test -p hexagone-auditor --lib report` (or `cargo insta review`) and read the diff before
    /// committing.
    /// The ledger the committed snapshots report on: observations (one in the period's past,
    /// a script in a name, a document moved back to France) and a policy's changes, its removal
    /// and another policy, recorded on day `dr_observed` (before the period, 0, or in it).
    fn snapshot_ledger(dr_observed: i64) -> Aggregator {
        use super::aggregate::Window;
        use super::aggregate::fixture::{DAY, entry, policy, policy_removal};
        use crate::ledger::entry::Timestamp;
        let script = "spaces/9/<script>alert(1)</script>";
        let mut a = Aggregator::new(Window {
            from: Timestamp(DAY),
            to: Timestamp(10 * DAY),
        });
        for e in [
            entry(0, 0, "spaces/1/doc-early", "fsn-1", "DE"),
            entry(1, 1, "spaces/7/doc-42", "gra-3", "FR"),
            entry(2, 2, script, "fsn-1", "DE"),
            entry(3, 3, script, "fsn-1", "DE"),
            entry(4, 4, "spaces/5/doc-moved", "fsn-1", "DE"),
            entry(5, 5, "spaces/5/doc-moved", "gra-3", "FR"),
            policy(6, 6, "standard-fr", "sha256:aa"),
            policy(7, 7, "standard-fr", "sha256:bb"),
            policy_removal(8, 8, "standard-fr"),
            policy(9, dr_observed, "dr", "sha256:aa"),
        ] {
            a.add(&e);
        }
        a
    }

    #[test]
    fn renderings_match_the_committed_snapshots() {
        let k = key(1);
        let mut a = snapshot_ledger(9);
        // The collector's images, named by their entries (a v2 report had none).
        use super::aggregate::fixture::image_entry;
        for e in [
            image_entry(
                10,
                9,
                "image/wp/exo-0/exo",
                "registry.example.fr",
                "FR",
                (
                    "registry.example.fr/hexagone/exo:7.1",
                    Some(
                        "registry.example.fr/hexagone/exo@sha256:\
                         9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    ),
                ),
            ),
            image_entry(
                11,
                9,
                "image/wp/exo-0/debugger",
                "5.9.0.1:5000",
                "DE",
                ("5.9.0.1:5000/tools/debug:1", None),
            ),
        ] {
            a.add(&e);
        }
        let sample = sample(&k);
        let signed = a.finish(sample.checkpoint, sample.generated_at).sign(&k);
        let named = |r: &Report| {
            r.objects.iter().filter(|o| o.image.is_some()).count()
                + r.open_violations
                    .iter()
                    .filter(|v| v.image.is_some())
                    .count()
        };
        assert_eq!(named(&signed.report), 3);
        assert_eq!(named(&signed.report.clone().as_version(FORMAT_V2)), 0);
        for format in [Format::Json, Format::Md, Format::Html] {
            let text = render(&signed, format);
            insta::with_settings!({
                snapshot_path => "snapshots",
                prepend_module_to_snapshot => false,
                omit_expression => true,
            }, {
                insta::assert_snapshot!(format!("sample-{}", format.name()), &text);
            });
            assert_eq!(open(&text, k.verifier()).unwrap().1, signed);
        }
    }

    #[test]
    fn a_report_of_another_version_is_refused_by_name() {
        // The v1 snapshot as the previous version committed it, signed with the same key.
        let text = include_str!("snapshots/v1-sample.json");
        let err = open(text, key(1).verifier()).unwrap_err().to_string();
        assert!(
            err.contains("this is a hexagone.report@v1 report; this hexagone-auditor reads hexagone.report@v3 and hexagone.report@v2"),
            "{err}"
        );
    }

    /// The v2 renderings as the previous version committed them (before `policies_in_force`),
    /// signed with the same key: still read, checked and rendered the same; as v2 again, the
    /// report this version makes of the same ledger is that report. A v2 report cannot carry
    /// the v3 section.
    #[test]
    fn a_v2_report_is_still_read_and_the_ledger_gives_it_again() {
        let k = key(1);
        let mut opened = vec![];
        for (format, text) in [
            (Format::Json, include_str!("snapshots/v2-sample.json")),
            (Format::Md, include_str!("snapshots/v2-sample.md")),
            (Format::Html, include_str!("snapshots/v2-sample.html")),
        ] {
            let (f, signed) = open(text, k.verifier()).unwrap();
            assert_eq!((f, signed.report.format.as_str()), (format, FORMAT_V2));
            opened.push(signed);
        }
        // The ledger of the v2 snapshots, and a policy in force since before the period (its
        // position aside, which the fold does not read before the period): v3 lists it.
        let a = snapshot_ledger(0);
        let v2 = &opened[0];
        let again = a.finish(v2.report.checkpoint.clone(), v2.report.generated_at.clone());
        assert_eq!(
            again.policies_in_force.len(),
            1,
            "a policy stands at the end"
        );
        assert_ne!(again, v2.report);
        assert_eq!(again.as_version(FORMAT_V2).sign(&k), *v2);
        // Re-signed as v2 with the v3 section: refused.
        let mut forged = sample(&k);
        forged.format = FORMAT_V2.into();
        forged.policies_in_force = vec![PolicyInForceRow {
            store: "kubernetes".into(),
            policy: "dr".into(),
            digest: "sha256:aa".into(),
            since_seq: 8,
            since: "1970-01-10T00:00:00.000Z".into(),
            judged_under: None,
        }];
        let err = forged.sign(&k).check(k.verifier()).unwrap_err().to_string();
        assert!(err.contains("has no policies_in_force"), "{err}");
        // Or with an image named: refused.
        let mut forged = sample(&k);
        forged.format = FORMAT_V2.into();
        assert!(forged.open_violations[0].image.is_some());
        let err = forged.sign(&k).check(k.verifier()).unwrap_err().to_string();
        assert!(
            err.contains("a hexagone.report@v2 report names no images"),
            "{err}"
        );
    }

    #[test]
    fn the_signature_note_is_not_a_checkpoint() {
        let k = key(1);
        let signed = sample(&k).sign(&k);
        let err = open_checkpoint(&signed.signature, std::slice::from_ref(k.verifier()));
        assert!(err.is_err());
    }
}
