//! How entries are laid out in the database: in chunks of up to [`CHUNK`] consecutive entries
//! of one commit per row (`ledger_chunks`), their texts compressed together. A row per entry
//! cost SQLite and PostgreSQL more than the entry itself; entry texts of one commit repeat
//! each other (the same nodes, policy and databases), so a chunk compresses about tenfold.
//!
//! A row holds `first` (the first entry's sequence number), `count`, the leaf hashes (32 bytes
//! each, in order), the object keys (per entry its [`super::db::ObjectKeys`], 16 bytes
//! big-endian, zero for an entry about no object; rows written by earlier versions hold the
//! first key only, 8 bytes per entry, or none, and the index reads their texts instead) and the
//! texts, each followed by a newline (canonical entries hold none), in `codec`:
//! [`CODEC_PLAIN`] as they are, [`CODEC_LZ4`] an LZ4 block of them after their length (4 bytes,
//! little-endian).
//!
//! Rows are untrusted like every other: [`check_count`], [`leaves`], [`object_keys`] and
//! [`texts`] refuse a chunk whose parts disagree, and readers refuse chunks that overlap.

use super::StoreError;
use super::db::ObjectKeys;
use crate::ledger::entry::{MAX_ENTRY, Prepared};
use crate::ledger::tree::Hash;

/// Most entries in one chunk.
pub const CHUNK: usize = 256;
/// Texts stored as they are.
pub const CODEC_PLAIN: i32 = 0;
/// Texts compressed as one LZ4 block, after their length.
pub const CODEC_LZ4: i32 = 1;

/// One `ledger_chunks` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRow {
    /// Sequence number of the first entry.
    pub first: u64,
    /// Number of entries (1 to [`CHUNK`]).
    pub count: u32,
    /// Their leaf hashes, 32 bytes each.
    pub leaves: Vec<u8>,
    /// Their object keys, 16 bytes each (8 or none in rows of earlier versions).
    pub objects: Vec<u8>,
    /// [`CODEC_PLAIN`] or [`CODEC_LZ4`].
    pub codec: i32,
    /// Their texts, each followed by a newline, in `codec`.
    pub bodies: Vec<u8>,
}

/// One entry row to insert.
#[derive(Debug, Clone)]
pub struct EntryRow {
    /// Sequence number.
    pub seq: u64,
    /// Leaf hash.
    pub leaf: Hash,
    /// Canonical encoding.
    pub body: String,
    /// The object's index keys (observations and removals), for proofs by object.
    pub object_keys: Option<ObjectKeys>,
}

/// Packs consecutive sealed entries (at most [`CHUNK`], at least one) into a compressed chunk.
pub fn pack(rows: &[EntryRow]) -> ChunkRow {
    assert!(
        !rows.is_empty() && rows.len() <= CHUNK,
        "a chunk holds 1 to {CHUNK} entries"
    );
    let mut leaves = Vec::with_capacity(rows.len() * 32);
    let mut objects = Vec::with_capacity(rows.len() * 16);
    let mut plain = Vec::with_capacity(rows.iter().map(|r| r.body.len() + 1).sum());
    for (i, r) in rows.iter().enumerate() {
        debug_assert_eq!(r.seq, rows[0].seq + i as u64, "consecutive entries");
        leaves.extend_from_slice(&r.leaf);
        objects.extend(key_bytes(r.object_keys));
        plain.extend_from_slice(r.body.as_bytes());
        plain.push(b'\n');
    }
    ChunkRow {
        first: rows[0].seq,
        count: rows.len() as u32,
        leaves,
        objects,
        codec: CODEC_LZ4,
        bodies: compress(&plain),
    }
}

/// Packs entries sealed from a [`Prepared`] (at most [`CHUNK`], at least one), with their leaf
/// hashes and object keys, into a compressed chunk.
pub fn pack_prepared(p: &Prepared, leaves: &[Hash], keys: &[Option<ObjectKeys>]) -> ChunkRow {
    assert!(
        !p.is_empty() && p.len() <= CHUNK && leaves.len() == p.len() && keys.len() == p.len(),
        "a chunk holds 1 to {CHUNK} entries, each with its leaf hash and key"
    );
    ChunkRow {
        first: p.first(),
        count: p.len() as u32,
        leaves: leaves.concat(),
        objects: keys.iter().flat_map(|k| key_bytes(*k)).collect(),
        codec: CODEC_LZ4,
        bodies: compress(p.text().as_bytes()),
    }
}

/// The 16 bytes an entry's keys take in a row (zero for none).
fn key_bytes(keys: Option<ObjectKeys>) -> impl Iterator<Item = u8> {
    keys.unwrap_or([0, 0])
        .into_iter()
        .flat_map(i64::to_be_bytes)
}

/// The [`CODEC_LZ4`] form of texts: their length (4 bytes, little-endian), then their LZ4
/// block.
fn compress(plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + plain.len() / 4);
    out.extend_from_slice(&(plain.len() as u32).to_le_bytes());
    out.extend_from_slice(&lz4_flex::block::compress(plain));
    out
}

fn corrupt(first: u64, why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("the chunk of entries from {first}: {why}"))
}

/// Checks a chunk's count (1 to [`CHUNK`]).
pub fn check_count(first: u64, count: i64) -> Result<usize, StoreError> {
    match usize::try_from(count) {
        Ok(n) if (1..=CHUNK).contains(&n) => Ok(n),
        _ => Err(corrupt(first, format!("holds {count} entries"))),
    }
}

/// The leaf hashes of a chunk of `count` entries.
pub fn leaves(first: u64, count: usize, bytes: &[u8]) -> Result<Vec<Hash>, StoreError> {
    if bytes.len() != count * 32 {
        return Err(corrupt(
            first,
            format!("{} bytes of leaf hashes for {count} entries", bytes.len()),
        ));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|h| h.try_into().expect("32 bytes"))
        .collect())
}

/// The (seq, object index key) pairs of a chunk, both keys of each entry (an entry about no
/// object has zero keys and is left out); `None` for a row written before both keys were kept
/// (8 bytes per entry, or none), whose keys must be read from its texts.
pub fn object_keys(
    first: u64,
    count: usize,
    bytes: &[u8],
) -> Result<Option<Vec<(u64, i64)>>, StoreError> {
    if bytes.is_empty() || bytes.len() == count * 8 {
        return Ok(None);
    }
    if bytes.len() != count * 16 {
        return Err(corrupt(
            first,
            format!("{} bytes of object keys for {count} entries", bytes.len()),
        ));
    }
    Ok(Some(
        bytes
            .chunks_exact(8)
            .enumerate()
            .map(|(i, k)| {
                (
                    first + (i / 2) as u64,
                    i64::from_be_bytes(k.try_into().expect("8")),
                )
            })
            .filter(|(_, k)| *k != 0)
            .collect(),
    ))
}

/// The texts of a chunk of `count` entries.
pub fn texts(
    first: u64,
    count: usize,
    codec: i32,
    bytes: &[u8],
) -> Result<Vec<String>, StoreError> {
    let plain = match codec {
        CODEC_PLAIN => bytes.to_vec(),
        CODEC_LZ4 => {
            let (len, block) = bytes
                .split_first_chunk::<4>()
                .ok_or_else(|| corrupt(first, "the compressed texts are truncated"))?;
            let len = u32::from_le_bytes(*len) as usize;
            // A length no chunk of `count` valid entries can have is refused before anything
            // is allocated for it.
            if len > count * (MAX_ENTRY + 1) {
                return Err(corrupt(
                    first,
                    format!("the texts claim {len} bytes for {count} entries"),
                ));
            }
            let plain = lz4_flex::block::decompress(block, len)
                .map_err(|e| corrupt(first, format!("the compressed texts do not decode: {e}")))?;
            if plain.len() != len {
                return Err(corrupt(first, "the compressed texts have the wrong length"));
            }
            plain
        }
        other => return Err(corrupt(first, format!("unknown codec {other}"))),
    };
    let text = String::from_utf8(plain).map_err(|_| corrupt(first, "the texts are not UTF-8"))?;
    let Some(text) = text.strip_suffix('\n') else {
        return Err(corrupt(first, "the texts do not end with a newline"));
    };
    let out: Vec<String> = text.split('\n').map(str::to_string).collect();
    if out.len() != count {
        return Err(corrupt(
            first,
            format!("{} texts for {count} entries", out.len()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<EntryRow> {
        (0..n as u64)
            .map(|i| EntryRow {
                seq: 40 + i,
                leaf: [i as u8; 32],
                body: format!("{{\"seq\":{}}}", 40 + i),
                object_keys: (i % 2 == 0).then_some([i as i64 + 1, -(i as i64) - 1]),
            })
            .collect()
    }

    #[test]
    fn a_packed_chunk_unpacks_to_its_entries() {
        let rows = rows(CHUNK);
        let c = pack(&rows);
        assert_eq!((c.first, c.count, c.codec), (40, CHUNK as u32, CODEC_LZ4));
        let n = check_count(c.first, i64::from(c.count)).unwrap();
        let texts = texts(c.first, n, c.codec, &c.bodies).unwrap();
        let leaves = leaves(c.first, n, &c.leaves).unwrap();
        for (i, r) in rows.iter().enumerate() {
            assert_eq!((&texts[i], leaves[i]), (&r.body, r.leaf));
        }
        let keys = object_keys(c.first, n, &c.objects).unwrap().unwrap();
        let want: Vec<(u64, i64)> = rows
            .iter()
            .filter_map(|r| r.object_keys.map(|[a, b]| [(r.seq, a), (r.seq, b)]))
            .flatten()
            .collect();
        assert_eq!(keys, want);
        // Rows written before both keys were kept: read from the texts instead.
        assert_eq!(object_keys(c.first, n, &c.objects[..n * 8]).unwrap(), None);
        assert_eq!(object_keys(c.first, n, &[]).unwrap(), None);
    }

    #[test]
    fn a_chunk_whose_parts_disagree_is_refused() {
        let c = pack(&rows(3));
        let bad = |r: Result<Vec<String>, StoreError>, want: &str| {
            let e = r.unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("from 40"), "{e}");
        };
        // Fewer or more texts than the count says.
        bad(texts(40, 2, c.codec, &c.bodies), "3 texts for 2 entries");
        bad(texts(40, 4, c.codec, &c.bodies), "3 texts for 4 entries");
        // A length no chunk can have: refused before decompressing.
        let mut huge = c.bodies.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        bad(texts(40, 3, c.codec, &huge), "claim");
        // Damaged compressed bytes, an unknown codec, texts without their newline.
        bad(texts(40, 3, c.codec, &c.bodies[..c.bodies.len() - 3]), "");
        bad(texts(40, 3, 7, &c.bodies), "unknown codec 7");
        bad(texts(40, 1, CODEC_PLAIN, b"{}"), "newline");
        bad(texts(40, 1, CODEC_PLAIN, b"\xff\n"), "UTF-8");
        assert!(leaves(40, 2, &c.leaves).is_err());
        assert!(object_keys(40, 2, &c.objects).is_err());
        assert!(check_count(40, 0).is_err() && check_count(40, CHUNK as i64 + 1).is_err());
    }
}
