//! The export bundle format (the one owner of it): JSON Lines, one record per line, each line
//! a one-key object `{"<kind>":<value>}`, written and read as a stream, never held whole.
//!
//! ```text
//! {"bundle":{"format":"hexagone.ledger/bundle@v1","origin":"<log origin>"}}
//! {"key":"<verifier key>"}                 one per signing key, initial key first
//! {"entry":<canonical entry>}              the entry's exact canonical bytes
//! {"checkpoint":"<signed note>"}           after the last entry it covers
//! {"end":{"entries":N,"checkpoints":M}}
//! ```
//!
//! An entry's leaf bytes are the line minus its 9-byte prefix `{"entry":` and 1-byte suffix `}`.

use std::io::{BufRead, Read as _, Write};

use serde::{Deserialize, Serialize};

use crate::keys::VerifierKey;

/// Format name in the header record.
pub const BUNDLE_FORMAT: &str = "hexagone.ledger/bundle@v1";
/// Longest line accepted when reading.
pub const MAX_LINE: usize = 64 * 1024;
const ENTRY_PREFIX: &[u8] = b"{\"entry\":";

/// Why a bundle cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing failed.
    #[error("bundle I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a bundle record.
    #[error("line {line}: {why}")]
    Malformed {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        why: String,
    },
}

/// One bundle record. Entry bytes borrow the reader's line buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// First line: format and log origin.
    Header {
        /// Format name.
        format: String,
        /// Log origin.
        origin: String,
    },
    /// A public verifier key string.
    Key(String),
    /// An entry's canonical bytes.
    Entry(&'a [u8]),
    /// A signed checkpoint note.
    Checkpoint(String),
    /// Last line: counts.
    End {
        /// Entries in the bundle.
        entries: u64,
        /// Checkpoints in the bundle.
        checkpoints: u64,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderBody {
    format: String,
    origin: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndBody {
    entries: u64,
    checkpoints: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Line {
    Bundle(HeaderBody),
    Key(String),
    Checkpoint(String),
    End(EndBody),
}

/// Writes a bundle record by record.
pub struct BundleWriter<W: Write> {
    out: W,
    entries: u64,
    checkpoints: u64,
}

impl<W: Write> BundleWriter<W> {
    /// Starts a bundle: writes the header.
    pub fn new(mut out: W, origin: &str) -> Result<Self, BundleError> {
        write_line(
            &mut out,
            &Line::Bundle(HeaderBody {
                format: BUNDLE_FORMAT.into(),
                origin: origin.into(),
            }),
        )?;
        Ok(Self {
            out,
            entries: 0,
            checkpoints: 0,
        })
    }

    /// Writes a key record.
    pub fn key(&mut self, key: &VerifierKey) -> Result<(), BundleError> {
        write_line(&mut self.out, &Line::Key(key.to_string()))
    }

    /// Writes an entry record from the entry's canonical bytes.
    pub fn entry(&mut self, canonical: &[u8]) -> Result<(), BundleError> {
        self.out.write_all(ENTRY_PREFIX)?;
        self.out.write_all(canonical)?;
        self.out.write_all(b"}\n")?;
        self.entries += 1;
        Ok(())
    }

    /// Writes a checkpoint record.
    pub fn checkpoint(&mut self, note: &str) -> Result<(), BundleError> {
        self.checkpoints += 1;
        write_line(&mut self.out, &Line::Checkpoint(note.into()))
    }

    /// Writes the end record and flushes; returns the writer.
    pub fn finish(mut self) -> Result<W, BundleError> {
        write_line(
            &mut self.out,
            &Line::End(EndBody {
                entries: self.entries,
                checkpoints: self.checkpoints,
            }),
        )?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn write_line(out: &mut impl Write, line: &Line) -> Result<(), BundleError> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::other)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Reads a bundle record by record with one reused line buffer.
pub struct BundleReader<R: BufRead> {
    input: R,
    buf: Vec<u8>,
    line: u64,
}

impl<R: BufRead> BundleReader<R> {
    /// Wraps a buffered reader.
    pub fn new(input: R) -> Self {
        Self {
            input,
            buf: Vec::with_capacity(1024),
            line: 0,
        }
    }

    /// 1-based number of the line last returned.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next record, or `None` at the end of the input.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, BundleError> {
        self.buf.clear();
        let n = (&mut self.input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let line = self.line;
        let Some(content) = self.buf.strip_suffix(b"\n") else {
            return Err(BundleError::Malformed {
                line,
                why: unterminated(n),
            });
        };
        parse_record(line, content).map(Some)
    }
}

/// Parses one line (without its newline) as a record; `line` is its 1-based number.
pub fn parse_record(line: u64, content: &[u8]) -> Result<Record<'_>, BundleError> {
    let bad = |why: String| BundleError::Malformed { line, why };
    if let Some(rest) = content.strip_prefix(ENTRY_PREFIX) {
        let Some(entry) = rest.strip_suffix(b"}") else {
            return Err(bad("entry record does not end with `}`".into()));
        };
        return Ok(Record::Entry(entry));
    }
    let parsed: Line =
        serde_json::from_slice(content).map_err(|e| bad(format!("not a bundle record: {e}")))?;
    Ok(match parsed {
        Line::Bundle(h) => Record::Header {
            format: h.format,
            origin: h.origin,
        },
        Line::Key(k) => Record::Key(k),
        Line::Checkpoint(c) => Record::Checkpoint(c),
        Line::End(e) => Record::End {
            entries: e.entries,
            checkpoints: e.checkpoints,
        },
    })
}

/// The message for a line without newline: too long, or the bundle stops mid-line.
pub fn unterminated(len: usize) -> String {
    if len > MAX_LINE {
        format!("longer than {MAX_LINE} bytes")
    } else {
        "incomplete last line (the bundle is truncated)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SignerKey;
    use ed25519_dalek::SigningKey;

    /// Reads all records of `text`, returning a debug rendering or the first error.
    fn check(text: &str, want: Result<&[&str], &str>) {
        let mut r = BundleReader::new(text.as_bytes());
        let mut got = Vec::new();
        let res = loop {
            match r.next_record() {
                Ok(Some(rec)) => got.push(match rec {
                    Record::Entry(b) => format!("entry {}", String::from_utf8_lossy(b)),
                    other => format!("{other:?}"),
                }),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.to_string()),
            }
        };
        match (res, want) {
            (Ok(()), Ok(w)) => assert_eq!(got, w),
            (Err(e), Err(w)) => assert!(e.contains(w), "{e} should mention {w}"),
            (res, want) => panic!("{res:?} / {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn write_then_read() {
        let k = SignerKey::from_signing_key("o", SigningKey::from_bytes(&[1; 32])).unwrap();
        let mut w = BundleWriter::new(Vec::new(), "o").unwrap();
        w.key(k.verifier()).unwrap();
        w.entry(br#"{"a":1}"#).unwrap();
        w.checkpoint("o\n1\nx\n\n\u{2014} o y\n").unwrap();
        let bytes = w.finish().unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("{\"entry\":{\"a\":1}}\n"));
        let key = format!("Key({:?})", k.verifier().to_string());
        check(
            &text,
            Ok(&[
                "Header { format: \"hexagone.ledger/bundle@v1\", origin: \"o\" }",
                &key,
                "entry {\"a\":1}",
                "Checkpoint(\"o\\n1\\nx\\n\\n\u{2014} o y\\n\")",
                "End { entries: 1, checkpoints: 1 }",
            ]),
        );
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        check(
            "{\"key\":\"k\"}\n{\"key\":1}\n",
            Err("line 2: not a bundle record"),
        );
        check("{\"key\":\"k\"}", Err("line 1: incomplete last line"));
        check("{\"entry\":\n", Err("line 1: entry record"));
        check("{\"nope\":1}\n", Err("unknown variant"));
        check(
            &format!("{}\n", "x".repeat(MAX_LINE + 5)),
            Err("longer than"),
        );
    }
}
