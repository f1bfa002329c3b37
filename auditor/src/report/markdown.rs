//! The Markdown rendering of a report: tables and violation lists, every ledger value escaped
//! (no markup or inline HTML can come from the ledger), the signed JSON in a final block.

use std::fmt::Write as _;

use super::markup::{self, Cell, Markup};
use super::{SignedReport, Totals};

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
        {
            let mut v = String::new();
            markup::violations::<Markdown>(&mut v, r);
            v
        },
        cp.size,
        cp.root.replace('`', "'"),
        in_period(t),
        cp.note.replace("```", "'''"),
    );
    markup::inventory::<Markdown>(&mut m, r);
    markup::bounds::<Markdown>(&mut m, &r.bounds);
    markup::objects::<Markdown>(&mut m, &r.objects);
    markup::images::<Markdown>(&mut m, &r.objects);
    markup::policies::<Markdown>(&mut m, &r.policies);
    markup::policies_in_force::<Markdown>(&mut m, &r.policies_in_force);
    markup::policy_changes::<Markdown>(&mut m, &r.policy_changes);
    let _ = write!(
        m,
        "## Signature\n\nSigned with the log's key (C2SP signed note over the SHA-256 of the report's \
         canonical JSON, below). Check it, and that nothing in this document was changed, with \
         `hexagone-auditor report verify --report FILE --key KEY.pub`.\n\n```text\n{}```\n{OPEN_DATA}{}\n```\n",
        signed.signature.replace("```", "'''"),
        super::embedded_json(signed)
    );
    m
}

/// Which entries of the tree the period holds, as a clause.
pub(super) fn in_period(t: &Totals) -> String {
    match (t.first_seq, t.last_seq) {
        (Some(a), Some(b)) => format!("the period holds its entries {a} to {b}"),
        _ => "no entry of it falls in the period".into(),
    }
}

/// The document's markup.
struct Markdown;

impl Markup for Markdown {
    fn escape(s: &str) -> String {
        escape(s)
    }
    fn code(s: &str) -> String {
        escape(s)
    }
    fn strong(s: &str) -> String {
        format!("**{}**", escape(s))
    }
    fn strong_code(s: &str) -> String {
        escape(s)
    }
    fn heading(out: &mut String, text: &str, _anchor: Option<&str>) {
        let _ = write!(out, "## {text}\n\n");
    }
    fn paragraph(out: &mut String, text: &str, _aside: bool) {
        let _ = write!(out, "{text}\n\n");
    }
    fn list(out: &mut String, intro: Option<&str>, items: &[String]) {
        if let Some(intro) = intro {
            let _ = write!(out, "{intro}\n\n");
        }
        for item in items {
            let _ = writeln!(out, "- {item}");
        }
        out.push('\n');
    }
    fn table(out: &mut String, heads: &[(&str, bool)], rows: &[Vec<(String, Cell)>]) {
        out.push('|');
        for (head, _) in heads {
            let _ = write!(out, " {head} |");
        }
        out.push_str("\n|");
        for (_, number) in heads {
            out.push_str(if *number { " ---: |" } else { " --- |" });
        }
        out.push('\n');
        for row in rows {
            out.push('|');
            for (text, _) in row {
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
        out.push('\n');
    }
    fn open_violation(out: &mut String, state: &str, headline: &str) {
        let _ = write!(
            out,
            "### {} · {}\n\n",
            state.to_uppercase(),
            escape(headline)
        );
    }
    fn close_violation(_out: &mut String) {}
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
