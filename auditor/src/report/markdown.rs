//! The Markdown rendering of a report: tables and violation lists, every ledger value escaped
//! (no markup or inline HTML can come from the ledger), the signed JSON in a final block.

use std::fmt::Write as _;

use super::{SignedReport, Totals, Verdicts, ViolationRow};

const OPEN_DATA: &str = "\n```hexagone-report\n";

/// Escapes text for a Markdown table cell or paragraph: markup characters get a backslash,
/// HTML's `<`, `>` and `&` become entities, line breaks become spaces.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The JSON text of the embedded signed report, if the document has one.
pub fn embedded(doc: &str) -> Option<&str> {
    let start = doc.rfind(OPEN_DATA)? + OPEN_DATA.len();
    let len = doc[start..].find('\n')?;
    Some(&doc[start..start + len])
}

/// Renders the document.
pub fn render(signed: &SignedReport) -> String {
    let r = &signed.report;
    let e = escape;
    let cp = &r.checkpoint;
    let t = &r.totals;
    let mut m = String::with_capacity(8 * 1024);
    let _ = write!(
        m,
        "# Data locality report\n\n\
         Ledger `{}` · period {} (included) to {} (excluded) · generated {}\n\n\
         | Objects | Compliant | Violation | Unknown | Observations in the period | Open violations | Resolved in the period |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n| {} | {} | {} | {} | {} | **{}** | {} |\n\n\
         Objects at the period's end, by the verdict of their latest entry (made in the period or \
         before it).\n\n{}\
         ## Checkpoint\n\nThis report covers the entries below tree size **{}** of the log, root hash `{}`; \
         {}. The signed checkpoint:\n\n```text\n{}```\n\n",
        cp.origin.replace('`', "'"),
        e(&r.period.from),
        e(&r.period.to),
        e(&r.generated_at),
        t.objects,
        t.verdicts.compliant,
        t.verdicts.violation,
        t.verdicts.unknown,
        t.observations,
        r.open_violations.len(),
        r.resolved_violations.len(),
        violations(signed),
        cp.size,
        cp.root.replace('`', "'"),
        in_period(t),
        cp.note.replace("```", "'''"),
    );
    m.push_str("## Inventory by data store and object class\n\n");
    m.push_str(&verdict_table(
        &["Data store", "Object class"],
        r.stores
            .iter()
            .map(|s| (vec![s.store.clone(), s.class.clone()], &s.verdicts)),
    ));
    m.push_str("## By country\n\n");
    m.push_str(&verdict_table(
        &["Country"],
        r.countries
            .iter()
            .map(|c| (vec![c.country.clone()], &c.verdicts)),
    ));
    m.push_str("## By jurisdiction (network operator)\n\n");
    m.push_str(&verdict_table(
        &["AS", "Organisation", "Registered in", "Extra-EU control"],
        r.jurisdictions.iter().map(|j| (j.cells(), &j.verdicts)),
    ));
    if !r.bounds.is_empty() {
        m.push_str("## Round-trip bounds (latency evidence)\n\nHow far each place's address can be from the vantage points that measured it (the speed of light bounds it; a place can add delay, never remove it), from its latest evidence before the period's end.\n\n| Held by | Address | Measured from | Within | Weighs | Entry | Time |\n| --- | --- | --- | ---: | --- | ---: | --- |\n");
        for b in &r.bounds {
            let _ = writeln!(
                m,
                "| {} {} | {} | {} | {} km | {} | {} | {} |",
                e(&b.subject_kind),
                e(&b.subject),
                e(&b.address),
                e(&b.measured_from.join("; ")),
                b.bound_km,
                e(&b.assessment),
                b.seq,
                e(&b.time)
            );
        }
        m.push('\n');
    }
    m.push_str("## Objects and where they are at the period's end\n\n| Data store | Class | Object | Held by | Country | Verdict | Entry | Time |\n| --- | --- | --- | --- | --- | --- | ---: | --- |\n");
    for o in &r.objects {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} {} | {} | {} | {} | {} |",
            e(&o.store),
            e(&o.class),
            e(&o.object),
            e(&o.subject_kind),
            e(&o.subject),
            e(&o.country),
            e(&o.verdict),
            o.seq,
            e(&o.time)
        );
    }
    m.push_str("\n## Policies\n\n");
    for p in &r.policies {
        let _ = writeln!(
            m,
            "- {} {}: {} observations",
            e(&p.classification),
            e(&p.digest),
            p.observations
        );
    }
    let _ = write!(
        m,
        "\n## Signature\n\nSigned with the log's key (C2SP signed note over the SHA-256 of the report's \
         canonical JSON, below). Check it, and that nothing in this document was changed, with \
         `hexagone-auditor report verify --report FILE --key KEY.pub`.\n\n```text\n{}```\n{OPEN_DATA}{}\n```\n",
        signed.signature.replace("```", "'''"),
        super::embedded_json(signed)
    );
    m
}

/// The open violations, then those resolved in the period.
fn violations(signed: &SignedReport) -> String {
    let r = &signed.report;
    let mut m = format!("## Open violations ({})\n\n", r.open_violations.len());
    if r.open_violations.is_empty() {
        m.push_str("No violation is open at the period's end.\n\n");
    }
    for v in &r.open_violations {
        violation(&mut m, v);
    }
    let _ = write!(
        m,
        "## Resolved in the period ({})\n\n",
        r.resolved_violations.len()
    );
    if r.resolved_violations.is_empty() {
        m.push_str("No violation was resolved in the period.\n\n");
    }
    for v in &r.resolved_violations {
        violation(&mut m, v);
    }
    m
}

/// One violation: its state and headline as the heading, then for an open one its decisive
/// reason, then when and where, the other reasons and the evidence.
fn violation(m: &mut String, v: &ViolationRow) {
    let e = escape;
    let state = if v.resolved.is_some() {
        "RESOLVED"
    } else {
        "OPEN"
    };
    let _ = write!(m, "### {state} · {}\n\n", e(&v.headline));
    let (decisive, others) = v
        .reasons
        .split_first()
        .map_or((None, &[][..]), |(d, o)| (Some(d), o));
    if let (None, Some(d)) = (&v.resolved, decisive) {
        let _ = write!(m, "Decisive reason: **{}**\n\n", e(d));
    }
    let _ = write!(
        m,
        "{} ({} / {}) on {} {} ({}): in violation since {} (entry {}), last seen in violation {} (entry {}), violation entries: {}.\n\n",
        e(&v.object),
        e(&v.store),
        e(&v.class),
        e(&v.subject_kind),
        e(&v.subject),
        e(&v.country),
        e(&v.since),
        v.since_seq,
        e(&v.last_seen),
        v.last_seq,
        v.entries
    );
    if let Some(r) = &v.resolved {
        let _ = write!(
            m,
            "Resolved by entry {} at {}: compliant on {} {} ({}).\n\n",
            r.seq,
            e(&r.time),
            e(&r.subject_kind),
            e(&r.subject),
            e(&r.country)
        );
    }
    let listed: &[String] = if v.resolved.is_some() {
        &v.reasons
    } else {
        others
    };
    if !listed.is_empty() {
        m.push_str(if v.resolved.is_some() {
            "Reasons:\n\n"
        } else {
            "Other reasons:\n\n"
        });
        for reason in listed {
            let _ = writeln!(m, "- {}", e(reason));
        }
        m.push('\n');
    }
    m.push_str("Evidence (last violation entry):\n\n");
    for s in &v.evidence {
        let _ = writeln!(m, "- {}", e(s));
    }
    m.push('\n');
}

/// Which entries of the tree the period holds, as a clause.
pub(super) fn in_period(t: &Totals) -> String {
    match (t.first_seq, t.last_seq) {
        (Some(a), Some(b)) => format!("the period holds its entries {a} to {b}"),
        _ => "no entry of it falls in the period".into(),
    }
}

fn verdict_table<'a>(
    heads: &[&str],
    rows: impl Iterator<Item = (Vec<String>, &'a Verdicts)>,
) -> String {
    let mut m = String::from("|");
    for h in heads {
        let _ = write!(m, " {h} |");
    }
    m.push_str(" Objects | Compliant | Violation | Unknown |\n|");
    for _ in heads {
        m.push_str(" --- |");
    }
    m.push_str(" ---: | ---: | ---: | ---: |\n");
    for (cells, v) in rows {
        m.push('|');
        for c in cells {
            let _ = write!(m, " {} |", escape(&c));
        }
        let _ = writeln!(
            m,
            " {} | {} | {} | {} |",
            v.total(),
            v.compliant,
            v.violation,
            v.unknown
        );
    }
    m.push('\n');
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_and_html() {
        assert_eq!(
            escape("<script>|*x*|\n[a](b)"),
            "&lt;script&gt;\\|\\*x\\*\\| \\[a\\](b)"
        );
    }
}
