//! Facts as entries hold them: what a source observed, as the locality engine records it,
//! in canonical JSON.

use std::fmt::Write as _;

use super::decode::name;
use super::encode::{push_digits, push_str};
use super::{EntryError, FactKind, MAX_FACT, MAX_TEXT};

/// What a source observed, exactly as the locality engine records it (an observation of
/// `hexagone_platform`: a JSON object whose `kind` names it), held in canonical JSON: keys
/// sorted by bytes, no whitespace, integers only, strings escaping only `"` and `\`.
/// Replaying an entry judges these facts again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fact {
    kind: FactKind,
    canonical: String,
}

impl Fact {
    /// Checks a JSON object and puts it in canonical form.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, EntryError> {
        let bad = |problem: String| EntryError::Field {
            field: "evidence.fact",
            problem,
        };
        let kind = value
            .get("kind")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad("not an object with a `kind`".into()))?;
        let kind: FactKind = name("evidence.fact", kind)?;
        let mut canonical = String::with_capacity(128);
        write_canonical(&mut canonical, value, 0).map_err(bad)?;
        if canonical.len() > MAX_FACT {
            return Err(bad(format!(
                "{} bytes in canonical form, at most {MAX_FACT}",
                canonical.len()
            )));
        }
        Ok(Self { kind, canonical })
    }

    /// Which kind of fact this is.
    pub fn kind(&self) -> FactKind {
        self.kind
    }

    /// The canonical JSON text.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// The fact as a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.canonical).expect("a canonical fact is JSON")
    }
}

/// Writes `v` in canonical JSON; `Err` says why it has none (a fractional number, a control
/// character, nesting deeper than 8).
fn write_canonical(out: &mut String, v: &serde_json::Value, depth: u8) -> Result<(), String> {
    use serde_json::Value;
    if depth > 8 {
        return Err("nested more than 8 levels deep".into());
    }
    let text = |s: &str| {
        if s.len() > MAX_TEXT {
            Err(format!("a string of {} bytes, at most {MAX_TEXT}", s.len()))
        } else if s.chars().any(char::is_control) {
            Err(format!("{s:?} contains a control character"))
        } else {
            Ok(())
        }
    };
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => push_digits(out, u, 1),
            (None, Some(i)) => {
                let _ = write!(out, "{i}");
            }
            _ => return Err(format!("{n} is not an integer")),
        },
        Value::String(s) => {
            text(s)?;
            push_str(out, s);
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                text(k)?;
                push_str(out, k);
                out.push(':');
                write_canonical(out, &map[k], depth + 1)?;
            }
            out.push('}');
        }
    }
    Ok(())
}
