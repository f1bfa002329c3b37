//! What both renderings say, written once: the violations, the tables and the policies. Each
//! format (`html`, `markdown`) only says how text is marked up, through [`Markup`]; the page's
//! own frame (cards, charts, the embedded data) stays with its format.

use super::{
    BoundRow, ImageRow, ObjectRow, PolicyChangeRow, PolicyInForceRow, PolicyRow, Report, Verdicts,
    ViolationRow,
};

/// How a table cell is set: its text is already marked up by the caller.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Cell {
    Text,
    /// An identifier, set in a fixed-width font.
    Mono,
    /// A count, aligned right.
    Number,
    /// A verdict, coloured by its name.
    Verdict,
}

/// A format's markup. Inline methods escape what they are given; block methods take text
/// already marked up.
pub(super) trait Markup {
    /// Ledger text made inert in this format.
    fn escape(s: &str) -> String;
    /// An identifier (object, address, digest).
    fn code(s: &str) -> String;
    /// Emphasis.
    fn strong(s: &str) -> String;
    /// An emphasised identifier (the node or endpoint holding an object).
    fn strong_code(s: &str) -> String;
    /// A section heading, with an anchor where the format has them.
    fn heading(out: &mut String, text: &str, anchor: Option<&str>);
    /// A paragraph; `aside` for explanations set apart from the figures.
    fn paragraph(out: &mut String, text: &str, aside: bool);
    /// A bulleted list, introduced by `intro` when given.
    fn list(out: &mut String, intro: Option<&str>, items: &[String]);
    /// A table: heads (with whether the column holds numbers) and rows of (text, cell).
    fn table(out: &mut String, heads: &[(&str, bool)], rows: &[Vec<(String, Cell)>]);
    /// Opens one violation: its state (`open` or `resolved`) and headline.
    fn open_violation(out: &mut String, state: &str, headline: &str);
    /// Closes what `open_violation` opened.
    fn close_violation(out: &mut String);
}

/// The open violations, then those resolved in the period.
pub(super) fn violations<M: Markup>(out: &mut String, r: &Report) {
    let n = r.open_violations.len();
    M::heading(out, &format!("Open violations ({n})"), Some("open"));
    if r.open_violations.is_empty() {
        M::paragraph(out, "No violation is open at the period's end.", false);
    }
    for v in &r.open_violations {
        violation::<M>(out, v);
    }
    let n = r.resolved_violations.len();
    M::heading(
        out,
        &format!("Resolved in the period ({n})"),
        Some("resolved"),
    );
    if r.resolved_violations.is_empty() {
        M::paragraph(out, "No violation was resolved in the period.", false);
    }
    for v in &r.resolved_violations {
        violation::<M>(out, v);
    }
}

/// One violation, open or resolved: its state and headline first, then for an open one its
/// decisive reason, then when and where, the other reasons and the evidence.
fn violation<M: Markup>(out: &mut String, v: &ViolationRow) {
    let e = M::escape;
    let state = if v.resolved.is_some() {
        "resolved"
    } else {
        "open"
    };
    M::open_violation(out, state, &v.headline);
    let (decisive, others) = v
        .reasons
        .split_first()
        .map_or((None, &[][..]), |(d, o)| (Some(d), o));
    if let (None, Some(d)) = (&v.resolved, decisive) {
        M::paragraph(out, &format!("Decisive reason: {}", M::strong(d)), false);
    }
    M::paragraph(
        out,
        &format!(
            "{} ({} / {}) on {} {} ({}): in violation since {} (entry {}), last seen in \
             violation {} (entry {}), violation entries: {}.",
            M::code(&v.object),
            e(&v.store),
            e(&v.class),
            e(&v.subject_kind),
            M::strong_code(&v.subject),
            e(&v.country),
            e(&v.since),
            v.since_seq,
            e(&v.last_seen),
            v.last_seq,
            v.entries
        ),
        true,
    );
    if let Some(i) = &v.image {
        M::paragraph(
            out,
            &format!("Image at the last violation entry: {}.", image::<M>(i)),
            false,
        );
    }
    if let Some(r) = &v.resolved {
        let how = if r.subject_kind == super::REMOVED {
            "the object was removed".to_owned()
        } else {
            format!(
                "compliant on {} {} ({})",
                e(&r.subject_kind),
                M::strong_code(&r.subject),
                e(&r.country)
            )
        };
        M::paragraph(
            out,
            &format!("Resolved by entry {} at {}: {how}.", r.seq, e(&r.time)),
            false,
        );
    }
    let (intro, listed) = if v.resolved.is_some() {
        ("Reasons:", &v.reasons[..])
    } else {
        ("Other reasons:", others)
    };
    if !listed.is_empty() {
        let items: Vec<String> = listed.iter().map(|s| e(s)).collect();
        M::list(out, Some(intro), &items);
    }
    let evidence: Vec<String> = v.evidence.iter().map(|s| e(s)).collect();
    M::list(out, Some("Evidence (last violation entry):"), &evidence);
    M::close_violation(out);
}

/// The inventory: objects counted by data store and class, by country and by network operator.
pub(super) fn inventory<M: Markup>(out: &mut String, r: &Report) {
    M::heading(out, "Inventory by data store and object class", None);
    verdict_table::<M>(
        out,
        &["Data store", "Object class"],
        r.stores
            .iter()
            .map(|s| (vec![s.store.clone(), s.class.clone()], &s.verdicts)),
    );
    M::heading(out, "By country", None);
    verdict_table::<M>(
        out,
        &["Country"],
        r.countries
            .iter()
            .map(|c| (vec![c.country.clone()], &c.verdicts)),
    );
    M::heading(out, "By jurisdiction (network operator)", None);
    M::paragraph(
        out,
        "Who operates the network of the addresses holding each object, as recorded: location \
         alone is not sovereignty. An object reached through several networks counts under each.",
        true,
    );
    verdict_table::<M>(
        out,
        &["AS", "Organisation", "Registered in", "Extra-EU control"],
        r.jurisdictions.iter().map(|j| (j.cells(), &j.verdicts)),
    );
}

/// A table of rows with verdict counts.
fn verdict_table<'a, M: Markup>(
    out: &mut String,
    heads: &[&str],
    rows: impl Iterator<Item = (Vec<String>, &'a Verdicts)>,
) {
    let mut all: Vec<(&str, bool)> = heads.iter().map(|h| (*h, false)).collect();
    all.extend(["Objects", "Compliant", "Violation", "Unknown"].map(|h| (h, true)));
    let rows: Vec<Vec<(String, Cell)>> = rows
        .map(|(cells, v)| {
            let mut row: Vec<(String, Cell)> =
                cells.iter().map(|c| (M::escape(c), Cell::Text)).collect();
            row.extend(
                [v.total(), v.compliant, v.violation, v.unknown]
                    .map(|n| (n.to_string(), Cell::Number)),
            );
            row
        })
        .collect();
    M::table(out, &all, &rows);
}

/// Who holds an object, as a cell: the kind of holder, then its name.
fn held_by<M: Markup>(kind: &str, subject: &str) -> String {
    format!("{} {}", M::escape(kind), M::code(subject))
}

/// The round-trip bounds of the latency evidence, when there are any.
pub(super) fn bounds<M: Markup>(out: &mut String, bounds: &[BoundRow]) {
    if bounds.is_empty() {
        return;
    }
    M::heading(out, "Round-trip bounds (latency evidence)", None);
    M::paragraph(
        out,
        "How far each place's address can be from the vantage points that measured it (the speed \
         of light bounds it; a place can add delay, never remove it), from its latest evidence \
         before the period's end.",
        true,
    );
    let heads = [
        ("Held by", false),
        ("Address", false),
        ("Measured from", false),
        ("Within", true),
        ("Weighs", false),
        ("Entry", true),
        ("Time", false),
    ];
    let rows: Vec<Vec<(String, Cell)>> = bounds
        .iter()
        .map(|b| {
            vec![
                (held_by::<M>(&b.subject_kind, &b.subject), Cell::Text),
                (M::escape(&b.address), Cell::Mono),
                (M::escape(&b.measured_from.join("; ")), Cell::Text),
                (format!("{} km", b.bound_km), Cell::Number),
                (M::escape(&b.assessment), Cell::Text),
                (b.seq.to_string(), Cell::Number),
                (M::escape(&b.time), Cell::Mono),
            ]
        })
        .collect();
    M::table(out, &heads, &rows);
}

/// Every object and where it is at the period's end.
pub(super) fn objects<M: Markup>(out: &mut String, objects: &[ObjectRow]) {
    M::heading(out, "Objects and where they are at the period's end", None);
    let heads = [
        ("Data store", false),
        ("Class", false),
        ("Object", false),
        ("Held by", false),
        ("Country", false),
        ("Verdict", false),
        ("Entry", true),
        ("Time", false),
    ];
    let rows: Vec<Vec<(String, Cell)>> = objects
        .iter()
        .map(|o| {
            vec![
                (M::escape(&o.store), Cell::Text),
                (M::escape(&o.class), Cell::Text),
                (M::escape(&o.object), Cell::Mono),
                (held_by::<M>(&o.subject_kind, &o.subject), Cell::Text),
                (M::escape(&o.country), Cell::Text),
                (M::escape(&o.verdict), Cell::Verdict),
                (o.seq.to_string(), Cell::Number),
                (M::escape(&o.time), Cell::Mono),
            ]
        })
        .collect();
    M::table(out, &heads, &rows);
}

/// An image, for a person: its reference and the digest pulled, or that none was reported.
fn image<M: Markup>(i: &ImageRow) -> String {
    match &i.image_id {
        Some(id) => format!("{}, pulled as {}", M::code(&i.reference), M::code(id)),
        None => format!("{}, no pull reported yet", M::code(&i.reference)),
    }
}

/// The images the workplace's pods run at the period's end, where their entries name them:
/// which image, pulled as which digest, from which registry; nothing when none does.
pub(super) fn images<M: Markup>(out: &mut String, objects: &[ObjectRow]) {
    let named: Vec<(&ObjectRow, &ImageRow)> = objects
        .iter()
        .filter_map(|o| Some((o, o.image.as_ref()?)))
        .collect();
    if named.is_empty() {
        return;
    }
    M::heading(out, "Images at the period's end", None);
    let heads = [
        ("Object", false),
        ("Image", false),
        ("Image ID (pulled)", false),
        ("Registry", false),
        ("Country", false),
        ("Verdict", false),
        ("Entry", true),
    ];
    let rows: Vec<Vec<(String, Cell)>> = named
        .iter()
        .map(|(o, i)| {
            vec![
                (M::escape(&o.object), Cell::Mono),
                (M::escape(&i.reference), Cell::Mono),
                (
                    M::escape(i.image_id.as_deref().unwrap_or("not reported yet")),
                    Cell::Mono,
                ),
                (M::escape(&o.subject), Cell::Mono),
                (M::escape(&o.country), Cell::Text),
                (M::escape(&o.verdict), Cell::Verdict),
                (o.seq.to_string(), Cell::Number),
            ]
        })
        .collect();
    M::table(out, &heads, &rows);
}

/// The policies the period's entries were judged under.
pub(super) fn policies<M: Markup>(out: &mut String, policies: &[PolicyRow]) {
    M::heading(out, "Policies", None);
    let items: Vec<String> = policies
        .iter()
        .map(|p| {
            format!(
                "{} {}: {} observations",
                M::escape(&p.classification),
                M::code(&p.digest),
                p.observations
            )
        })
        .collect();
    M::list(out, None, &items);
}

/// The period's policy changes, when there are any: each policy's new digest or its removal,
/// what it was before, and whether the period's observations were judged under it.
pub(super) fn policy_changes<M: Markup>(out: &mut String, changes: &[PolicyChangeRow]) {
    if changes.is_empty() {
        return;
    }
    M::heading(out, "Policy changes", Some("policy-changes"));
    M::paragraph(
        out,
        &format!(
            "Each LocalityPolicy the cluster held, by the digest of its rules (as {} shows it), \
             and each removal of one, in ledger order, with what the ledger recorded of it \
             before. Judged under: whether the period's observations were judged under a policy \
             with that digest (see Policies); no means the cluster places workloads by other \
             rules than those the auditor judged by.",
            M::code("kubectl get lp NAME -o jsonpath='{.status.policyDigest}'")
        ),
        true,
    );
    let heads = [
        ("Policy", false),
        ("Entry", true),
        ("Time", false),
        ("Digest", false),
        ("Before", false),
        ("Judged under", false),
    ];
    let rows: Vec<Vec<(String, Cell)>> = changes
        .iter()
        .map(|c| {
            let before = match (&c.previous, c.previous_seq) {
                (Some(d), Some(seq)) => format!("{} (entry {seq})", M::code(d)),
                (None, Some(seq)) => format!("removed (entry {seq})"),
                (_, None) => "first seen".into(),
            };
            let judged = match &c.digest {
                None => "",
                Some(_) => judged_under(c.judged_under),
            };
            vec![
                (M::code(&c.policy), Cell::Text),
                (c.seq.to_string(), Cell::Number),
                (M::escape(&c.time), Cell::Mono),
                (
                    c.digest.as_deref().map_or("removed".into(), M::code),
                    Cell::Text,
                ),
                (before, Cell::Text),
                (M::escape(judged), Cell::Text),
            ]
        })
        .collect();
    M::table(out, &heads, &rows);
}

/// Whether the period's observations were judged under a policy's digest, in words.
fn judged_under(judged: Option<bool>) -> &'static str {
    match judged {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not known (no observation judged in the period)",
    }
}

/// The policies in force at the period's end, when there are any: each policy's digest, the
/// entry that recorded it, and whether the period's observations were judged under it.
pub(super) fn policies_in_force<M: Markup>(out: &mut String, policies: &[PolicyInForceRow]) {
    if policies.is_empty() {
        return;
    }
    M::heading(out, "Policies in force", Some("policies-in-force"));
    M::paragraph(
        out,
        &format!(
            "Each LocalityPolicy in force at the period's end as the ledger last recorded it: \
             its latest entry before the end (in the period or before it) records the digest of \
             its rules (as {} shows it for the policy the cluster holds now), in force since that \
             entry. Judged under: yes when observations of the period were judged under a policy \
             with this digest; no when none was (the auditor judged by another policy, or by \
             other rules than these); not known when no observation of the period was judged.",
            M::code("kubectl get lp NAME -o jsonpath='{.status.policyDigest}'")
        ),
        true,
    );
    let heads = [
        ("Policy", false),
        ("Digest", false),
        ("Since entry", true),
        ("Since", false),
        ("Judged under", false),
    ];
    let rows: Vec<Vec<(String, Cell)>> = policies
        .iter()
        .map(|p| {
            vec![
                (M::code(&p.policy), Cell::Text),
                (M::code(&p.digest), Cell::Text),
                (p.since_seq.to_string(), Cell::Number),
                (M::escape(&p.since), Cell::Mono),
                (M::escape(judged_under(p.judged_under)), Cell::Text),
            ]
        })
        .collect();
    M::table(out, &heads, &rows);
}
