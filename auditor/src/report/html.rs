//! The HTML rendering of a report: one self-contained page (inline CSS and SVG charts, no
//! external fetch, print styles), every ledger value escaped, the signed JSON embedded.

use std::fmt::Write as _;

use super::markup::{self, Cell, Markup};
use super::{SignedReport, Verdicts};

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
    markup::violations::<Html>(&mut h, r);
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

    markup::inventory::<Html>(&mut h, r);
    markup::bounds::<Html>(&mut h, &r.bounds);
    markup::objects::<Html>(&mut h, &r.objects);
    markup::images::<Html>(&mut h, &r.objects);
    markup::policies::<Html>(&mut h, &r.policies);
    markup::policies_in_force::<Html>(&mut h, &r.policies_in_force);
    markup::policy_changes::<Html>(&mut h, &r.policy_changes);
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

/// The page's markup.
struct Html;

impl Markup for Html {
    fn escape(s: &str) -> String {
        escape(s)
    }
    fn code(s: &str) -> String {
        format!("<span class=\"mono\">{}</span>", escape(s))
    }
    fn strong(s: &str) -> String {
        format!("<b>{}</b>", escape(s))
    }
    fn strong_code(s: &str) -> String {
        format!("<b class=\"mono\">{}</b>", escape(s))
    }
    fn heading(out: &mut String, text: &str, anchor: Option<&str>) {
        match anchor {
            Some(id) => {
                let _ = writeln!(out, "<h2 id=\"{id}\">{text}</h2>");
            }
            None => {
                let _ = writeln!(out, "<h2>{text}</h2>");
            }
        }
    }
    fn paragraph(out: &mut String, text: &str, aside: bool) {
        let class = if aside { " class=\"muted\"" } else { "" };
        let _ = writeln!(out, "<p{class}>{text}</p>");
    }
    fn list(out: &mut String, intro: Option<&str>, items: &[String]) {
        if let Some(intro) = intro {
            let _ = write!(out, "<p>{intro}</p>");
        }
        out.push_str("<ul>");
        for item in items {
            let _ = write!(out, "<li>{item}</li>");
        }
        out.push_str("</ul>\n");
    }
    fn table(out: &mut String, heads: &[(&str, bool)], rows: &[Vec<(String, Cell)>]) {
        out.push_str("<table><thead><tr>");
        for (head, _) in heads {
            let _ = write!(out, "<th>{}</th>", escape(head));
        }
        out.push_str("</tr></thead><tbody>\n");
        for row in rows {
            out.push_str("<tr>");
            for (text, cell) in row {
                let _ = match cell {
                    Cell::Text => write!(out, "<td>{text}</td>"),
                    Cell::Mono => write!(out, "<td class=\"mono\">{text}</td>"),
                    Cell::Number => write!(out, "<td class=\"n\">{text}</td>"),
                    Cell::Verdict => write!(out, "<td class=\"{text}\">{text}</td>"),
                };
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table>\n");
    }
    fn open_violation(out: &mut String, state: &str, headline: &str) {
        let _ = writeln!(
            out,
            "<div class=\"violation-box {state}\" data-state=\"{state}\"><p class=\"headline\"><b class=\"badge {state}\">{}</b>{}</p>",
            state.to_uppercase(),
            escape(headline)
        );
    }
    fn close_violation(out: &mut String) {
        out.push_str("</div>\n");
    }
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
