//! Entries encoded whole ahead of sealing, in the layout they are stored in, for the
//! sequencer to chain in order.

use super::{Body, EncodedBody, Entry, Timestamp};
use crate::tree::Hash;

/// Entries encoded whole ahead of sealing, one after another in one text, each followed by a
/// newline (the layout entries are stored in), their `prev` left as zeros for the sequencer to
/// fill in order ([`crate::Sequencer::seal_prepared`]). Encoding, the costly part, can
/// thus run on another thread than sealing, and an entry's text is written once.
#[derive(Debug, Clone)]
pub struct Prepared {
    first: u64,
    time: Timestamp,
    text: String,
    /// Per entry: where its text starts, where its `prev` starts, where it ends (before its
    /// newline).
    spans: Vec<(usize, usize, usize)>,
}

impl Prepared {
    /// Entries from sequence number `first`, all stamped `time`, for about `n` bodies.
    pub fn new(first: u64, time: Timestamp, n: usize) -> Self {
        Self {
            first,
            time,
            // Observations are about 2 to 3 KB.
            text: String::with_capacity(n * 2560),
            spans: Vec::with_capacity(n),
        }
    }

    /// Encodes the next entry, about `body`.
    pub fn push(&mut self, body: &Body) {
        self.push_with(|text| body.encode_into(text));
    }

    /// Encodes the next entry, about the body encoded as `body` ([`Body::encode`]).
    pub fn push_encoded(&mut self, body: &EncodedBody) {
        self.push_with(|text| body.write(text));
    }

    /// The next entry's head (its `prev` blank), then its body as `body` writes it.
    fn push_with(&mut self, body: impl FnOnce(&mut String)) {
        let start = self.text.len();
        let seq = self.first + self.spans.len() as u64;
        Entry::encode_head(seq, self.time, &[0; 32], &mut self.text);
        let prev_at = self.text.len() - 64;
        body(&mut self.text);
        self.spans.push((start, prev_at, self.text.len()));
        self.text.push('\n');
    }

    /// Sequence number of the first entry.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The time every entry is stamped with.
    pub fn time(&self) -> Timestamp {
        self.time
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Every entry's text followed by a newline (canonical once sealed).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Writes `prev` into entry `i` and returns its text.
    pub(crate) fn chain(&mut self, i: usize, prev: &Hash) -> &[u8] {
        let (start, prev_at, end) = self.spans[i];
        let mut hex = [0u8; 64];
        hex::encode_to_slice(prev, &mut hex).expect("64 hex digits");
        let hex = std::str::from_utf8(&hex).expect("hex digits are ASCII");
        self.text.replace_range(prev_at..prev_at + 64, hex);
        &self.text.as_bytes()[start..end]
    }
}
