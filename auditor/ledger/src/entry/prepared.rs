//! Entries encoded whole ahead of sealing, in the layout they are stored in, for the
//! sequencer to chain in order.

use super::{Body, EncodedBody, Entry, Timestamp};
use crate::tree::Hash;

/// The most an entry's head takes before its body: `{"v":N,"seq":` and 20 digits, the time,
/// `prev` and its 64 hex digits.
pub const ENTRY_HEAD_MAX: usize = 160;

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

    /// Entries from sequence number `first`, all stamped `time`, for the bodies encoded as
    /// `bodies`: the text is allocated once, at its final size.
    pub fn for_encoded<'a>(
        first: u64,
        time: Timestamp,
        bodies: impl ExactSizeIterator<Item = &'a EncodedBody> + Clone,
    ) -> Self {
        let n = bodies.len();
        // Each entry's head (version, sequence number, time, `prev`) and its newline.
        let bytes: usize = bodies.map(|b| b.len() + ENTRY_HEAD_MAX + 1).sum();
        Self {
            first,
            time,
            text: String::with_capacity(bytes),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::fixture;

    /// Entries prepared for encoded bodies are the entries the bodies make, and their text is
    /// allocated once: it never grows past the size reserved for it, even at the largest
    /// sequence number.
    #[test]
    fn entries_for_encoded_bodies_fit_the_text_reserved() {
        let bodies: Vec<EncodedBody> = (0..6).map(|n| fixture::observation(n).encode()).collect();
        let time = Timestamp(253_402_300_799_999);
        let mut p = Prepared::for_encoded(u64::MAX - 10, time, bodies.iter());
        let reserved = p.text.capacity();
        for b in &bodies {
            p.push_encoded(b);
        }
        assert_eq!(p.text.capacity(), reserved);
        let mut whole = String::new();
        for (i, n) in (0..6).enumerate() {
            let e = Entry {
                seq: u64::MAX - 10 + i as u64,
                time,
                prev: [0; 32],
                body: fixture::observation(n),
            };
            whole.push_str(&e.encode());
            whole.push('\n');
        }
        assert_eq!(p.text(), whole);
    }
}
