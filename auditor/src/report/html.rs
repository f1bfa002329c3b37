//! The HTML rendering of a report: one self-contained page (inline CSS and SVG charts, no
//! external fetch, print styles), every ledger value escaped, the signed JSON embedded.

use std::fmt::Write as _;

use super::{SignedReport, Verdicts, ViolationRow};

/// The `id` of the `<script>` data block holding the signed report.
pub const DATA_ID: &str = "hexagone-signed-report";

const OPEN_DATA: &str = r#"<script type="application/json" id="hexagone-signed-report">"#;

/// Escapes text for HTML content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The JSON text of the embedded signed report, if the page has one.
pub fn embedded(page: &str) -> Option<&str> {
    let start = page.find(OPEN_DATA)? + OPEN_DATA.len();
    let len = page[start..].find("</script>")?;
    Some(&page[start..start + len])
}

const CSS: &str = "
:root{--ok:#1b7f3b;--bad:#b3261e;--unk:#8a6d00;--ink:#1d1d1f;--muted:#5f6368;--line:#d9d9de}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);margin:0 auto;max-width:1100px;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:2px solid var(--line);padding-bottom:4px}
.muted{color:var(--muted)}code,pre,.mono{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:12.5px}
pre{background:#f5f5f7;padding:8px;white-space:pre-wrap;word-break:break-all}
table{border-collapse:collapse;width:100%;margin:6px 0 12px}th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
td,li{word-break:break-word}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}.card{border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:150px}
.card b{display:block;font-size:26px}
.compliant{color:var(--ok)}.violation{color:var(--bad)}.unknown{color:var(--unk)}
.violation-box{border-left:4px solid var(--bad);padding:6px 12px;margin:10px 0;background:#fdf3f2}
.violation-box.resolved{border-left-color:var(--muted);background:#f5f5f7}
.badge{display:inline-block;border-radius:4px;padding:1px 7px;margin-right:6px;font-size:12px;letter-spacing:.05em;color:#fff}
.badge.open{background:var(--bad)}.badge.resolved{background:var(--muted)}
.headline{font-weight:600}.card.open{border:2px solid var(--bad)}
.charts{display:flex;gap:24px;flex-wrap:wrap}figure{margin:0}
svg text{font:12px system-ui,sans-serif}
@media print{body{max-width:none;padding:0;font-size:11pt}h2{break-after:avoid}tr,.violation-box,.card,svg{break-inside:avoid}
 .noprint{display:none}a{color:inherit;text-decoration:none}pre{background:none;border:1px solid var(--line)}}
";

/// Renders the page.
pub fn render(signed: &SignedReport) -> String {
    let r = &signed.report;
    let e = escape;
    let mut h = String::with_capacity(16 * 1024);
    let cp = &r.checkpoint;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Locality report {} to {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
         <h1>Data locality report</h1>\n\
         <p class=\"muted\">Ledger <span class=\"mono\">{}</span> · period {} (included) to {} (excluded) · generated {}</p>\n",
        e(&r.period.from),
        e(&r.period.to),
        e(&cp.origin),
        e(&r.period.from),
        e(&r.period.to),
        e(&r.generated_at),
    );
    let t = &r.totals;
    let _ = write!(
        h,
        "<div class=\"cards\">\n\
         <div class=\"card\"><b id=\"objects\">{}</b>objects</div>\n\
         <div class=\"card compliant\"><b id=\"compliant\">{}</b>compliant</div>\n\
         <div class=\"card violation\"><b id=\"violation\">{}</b>violation</div>\n\
         <div class=\"card unknown\"><b id=\"unknown\">{}</b>unknown</div>\n\
         <div class=\"card\"><b id=\"observations\">{}</b>observations in the period</div>\n</div>\n\
         <div class=\"cards\">\n\
         <div class=\"card{}\"><b id=\"open-violations\">{}</b>open violations</div>\n\
         <div class=\"card\"><b id=\"resolved-violations\">{}</b>resolved in the period</div>\n</div>\n\
         <p class=\"muted\">Objects at the period's end, by the verdict of their latest entry (made in the \
         period or before it).</p>\n",
        t.objects,
        t.verdicts.compliant,
        t.verdicts.violation,
        t.verdicts.unknown,
        t.observations,
        if r.open_violations.is_empty() {
            ""
        } else {
            " open"
        },
        r.open_violations.len(),
        r.resolved_violations.len(),
    );
    let _ = writeln!(
        h,
        "<h2 id=\"open\">Open violations ({})</h2>",
        r.open_violations.len()
    );
    if r.open_violations.is_empty() {
        h.push_str("<p>No violation is open at the period's end.</p>\n");
    }
    for v in &r.open_violations {
        violation_box(&mut h, v);
    }
    let _ = writeln!(
        h,
        "<h2 id=\"resolved\">Resolved in the period ({})</h2>",
        r.resolved_violations.len()
    );
    if r.resolved_violations.is_empty() {
        h.push_str("<p>No violation was resolved in the period.</p>\n");
    }
    for v in &r.resolved_violations {
        violation_box(&mut h, v);
    }
    let _ = write!(
        h,
        "<h2>Checkpoint</h2>\n<p>This report covers the entries below tree size <b id=\"tree-size\">{}</b> \
         of the log <span class=\"mono\">{}</span>, root hash <span class=\"mono\" id=\"root\">{}</span>; \
         {}. The signed checkpoint:</p>\n<pre>{}</pre>\n",
        cp.size,
        e(&cp.origin),
        e(&cp.root),
        super::markdown::in_period(t),
        e(&cp.note)
    );
    h.push_str("<h2>Current state</h2>\n<div class=\"charts\">\n");
    h.push_str(&bar_chart(
        "Objects by verdict",
        &[(String::new(), t.verdicts.clone())],
        true,
    ));
    h.push_str(&bar_chart(
        "Objects by country",
        &r.countries
            .iter()
            .map(|c| (c.country.clone(), c.verdicts.clone()))
            .collect::<Vec<_>>(),
        false,
    ));
    h.push_str("</div>\n");
    h.push_str(
        "<p class=\"muted\">Each object counts once, with the verdict of its latest entry before the \
         period's end, made in the period or before it. A country is where the object's location evidence (topology label, attestation, \
         address) places its node or endpoint; several countries mean the sources disagree.</p>\n",
    );

    h.push_str("<h2>Inventory by data store and object class</h2>\n");
    h.push_str(&verdict_table(
        &["Data store", "Object class"],
        r.stores
            .iter()
            .map(|s| (vec![s.store.clone(), s.class.clone()], &s.verdicts)),
    ));
    h.push_str("<h2>By country</h2>\n");
    h.push_str(&verdict_table(
        &["Country"],
        r.countries
            .iter()
            .map(|c| (vec![c.country.clone()], &c.verdicts)),
    ));
    h.push_str(
        "<h2>By jurisdiction (network operator)</h2>\n<p class=\"muted\">Who operates the network \
         of the addresses holding each object, as recorded: location alone is not sovereignty. \
         An object reached through several networks counts under each.</p>\n",
    );
    h.push_str(&verdict_table(
        &["AS", "Organisation", "Registered in", "Extra-EU control"],
        r.jurisdictions.iter().map(|j| (j.cells(), &j.verdicts)),
    ));

    if !r.bounds.is_empty() {
        h.push_str("<h2>Round-trip bounds (latency evidence)</h2>\n<p class=\"muted\">How far each place's address can be from the vantage points that measured it (the speed of light bounds it; a place can add delay, never remove it), from its latest evidence before the period's end.</p>\n<table><thead><tr><th>Held by</th><th>Address</th><th>Measured from</th><th>Within</th><th>Weighs</th><th>Entry</th><th>Time</th></tr></thead><tbody>\n");
        for b in &r.bounds {
            let _ = writeln!(
                h,
                "<tr><td>{} <span class=\"mono\">{}</span></td><td class=\"mono\">{}</td><td>{}</td><td class=\"n\">{} km</td><td>{}</td><td class=\"n\">{}</td><td class=\"mono\">{}</td></tr>",
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
        h.push_str("</tbody></table>\n");
    }
    h.push_str("<h2>Objects and where they are at the period's end</h2>\n<table><thead><tr><th>Data store</th><th>Class</th><th>Object</th><th>Held by</th><th>Country</th><th>Verdict</th><th>Entry</th><th>Time</th></tr></thead><tbody>\n");
    for o in &r.objects {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{} <span class=\"mono\">{}</span></td><td>{}</td><td class=\"{}\">{}</td><td class=\"n\">{}</td><td class=\"mono\">{}</td></tr>",
            e(&o.store),
            e(&o.class),
            e(&o.object),
            e(&o.subject_kind),
            e(&o.subject),
            e(&o.country),
            e(&o.verdict),
            e(&o.verdict),
            o.seq,
            e(&o.time)
        );
    }
    h.push_str("</tbody></table>\n");

    h.push_str("<h2>Policies</h2>\n<ul>");
    for p in &r.policies {
        let _ = write!(
            h,
            "<li>{} <span class=\"mono\">{}</span>: {} observations</li>",
            e(&p.classification),
            e(&p.digest),
            p.observations
        );
    }
    h.push_str("</ul>\n");
    let _ = write!(
        h,
        "<h2>Signature</h2>\n<p>This report is signed with the log's key (C2SP signed note over the SHA-256 \
         of its canonical JSON, embedded in this page). Check it, and that nothing on this page was \
         changed, with <code>hexagone-auditor report verify --report FILE --key KEY.pub</code>; add \
         <code>--ledger BUNDLE</code> to check it against an exported ledger.</p>\n<pre>{}</pre>\n{OPEN_DATA}{}</script>\n</body>\n</html>\n",
        e(&signed.signature),
        super::embedded_json(signed)
    );
    h
}

/// One violation, open or resolved: a badge and the headline first, then for an open one its
/// decisive reason, then when and where, the other reasons and the evidence.
fn violation_box(h: &mut String, v: &ViolationRow) {
    let e = escape;
    let state = if v.resolved.is_some() {
        "resolved"
    } else {
        "open"
    };
    let _ = writeln!(
        h,
        "<div class=\"violation-box {state}\" data-state=\"{state}\"><p class=\"headline\"><b class=\"badge {state}\">{}</b>{}</p>",
        state.to_uppercase(),
        e(&v.headline)
    );
    let (decisive, others) = v
        .reasons
        .split_first()
        .map_or((None, &[][..]), |(d, o)| (Some(d), o));
    if let (None, Some(d)) = (&v.resolved, decisive) {
        let _ = writeln!(h, "<p>Decisive reason: <b>{}</b></p>", e(d));
    }
    let _ = writeln!(
        h,
        "<p class=\"muted\"><span class=\"mono\">{}</span> ({} / {}) on {} <b class=\"mono\">{}</b> ({}): \
         in violation since {} (entry {}), last seen in violation {} (entry {}), violation entries: {}</p>",
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
        let _ = writeln!(
            h,
            "<p>Resolved by entry {} at {}: compliant on {} <b class=\"mono\">{}</b> ({})</p>",
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
        h.push_str(if v.resolved.is_some() {
            "<p>Reasons:</p><ul>"
        } else {
            "<p>Other reasons:</p><ul>"
        });
        for reason in listed {
            let _ = write!(h, "<li>{}</li>", e(reason));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<p>Evidence (last violation entry):</p><ul>");
    for s in &v.evidence {
        let _ = write!(h, "<li>{}</li>", e(s));
    }
    h.push_str("</ul></div>\n");
}

/// A table of rows with verdict counts.
fn verdict_table<'a>(
    heads: &[&str],
    rows: impl Iterator<Item = (Vec<String>, &'a Verdicts)>,
) -> String {
    let mut h = String::from("<table><thead><tr>");
    for c in heads {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    h.push_str("<th>Objects</th><th>Compliant</th><th>Violation</th><th>Unknown</th></tr></thead><tbody>\n");
    for (cells, v) in rows {
        h.push_str("<tr>");
        for c in cells {
            let _ = write!(h, "<td>{}</td>", escape(&c));
        }
        let _ = writeln!(
            h,
            "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            v.total(),
            v.compliant,
            v.violation,
            v.unknown
        );
    }
    h.push_str("</tbody></table>\n");
    h
}

const COLOURS: [(&str, &str); 3] = [
    ("compliant", "#1b7f3b"),
    ("violation", "#b3261e"),
    ("unknown", "#c9a227"),
];

/// A horizontal bar chart in inline SVG. With `by_verdict`, the one row given is split into
/// one bar per verdict; otherwise each row is a bar stacked by verdict.
fn bar_chart(title: &str, rows: &[(String, Verdicts)], by_verdict: bool) -> String {
    let bars: Vec<(String, [u64; 3])> = if by_verdict {
        let v = rows.first().map(|r| r.1.clone()).unwrap_or_default();
        vec![
            ("compliant".into(), [v.compliant, 0, 0]),
            ("violation".into(), [0, v.violation, 0]),
            ("unknown".into(), [0, 0, v.unknown]),
        ]
    } else {
        rows.iter()
            .map(|(k, v)| (k.clone(), [v.compliant, v.violation, v.unknown]))
            .collect()
    };
    let max = bars
        .iter()
        .map(|b| b.1.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (label_w, bar_w, row_h) = (110u64, 300u64, 26u64);
    let height = 30 + row_h * bars.len().max(1) as u64 + 24;
    let width = label_w + bar_w + 60;
    let mut s = format!(
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{}\">\n<text x=\"0\" y=\"16\" font-weight=\"bold\">{}</text>\n",
        escape(title),
        escape(title)
    );
    if bars.is_empty() {
        s.push_str("<text x=\"0\" y=\"46\">no object</text>\n");
    }
    for (i, (label, counts)) in bars.iter().enumerate() {
        let y = 30 + row_h * i as u64;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            label_w - 8,
            y + 16,
            escape(label)
        );
        let mut x = label_w;
        for (n, (name, colour)) in counts.iter().zip(COLOURS) {
            if *n == 0 {
                continue;
            }
            let w = (bar_w * n / max).max(2);
            let _ = writeln!(
                s,
                "<rect x=\"{x}\" y=\"{}\" width=\"{w}\" height=\"{}\" fill=\"{colour}\"><title>{} {name}</title></rect>",
                y + 2,
                row_h - 6,
                n
            );
            x += w;
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            x + 6,
            y + 16,
            counts.iter().sum::<u64>()
        );
    }
    let legend_y = height - 8;
    let mut lx = 0;
    for (name, colour) in COLOURS {
        let _ = writeln!(
            s,
            "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"{legend_y}\">{name}</text>",
            legend_y - 9,
            lx + 14
        );
        lx += 90;
    }
    s.push_str("</svg></figure>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }
}
