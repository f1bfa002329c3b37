//! RFC 6962 Merkle tree: leaf and node hashes, an incremental root (the frontier), and
//! inclusion and consistency proofs (generation and verification, RFC 6962 / RFC 9162).
//!
//! Pure functions over hashes. Proof generation asks a caller-supplied `mth` closure for the
//! Merkle tree hash of a leaf range, so a store can answer it from whatever it keeps.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: leaf, node or root.
pub type Hash = [u8; 32];

/// Why a proof or a frontier does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// Consistency asked from a larger tree to a smaller one.
    #[error("cannot prove consistency from size {old} to smaller size {new}")]
    Shrinking {
        /// Older tree size.
        old: u64,
        /// Newer tree size.
        new: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has {got} hashes, expected {expected}")]
    WrongLength {
        /// Hashes in the proof.
        got: usize,
        /// Hashes the sizes call for.
        expected: usize,
    },
    /// The proof recomputes a different root.
    #[error("proof leads to root {computed}, checkpoint says {expected}")]
    RootMismatch {
        /// Root recomputed from the proof (hex).
        computed: String,
        /// Root expected (hex).
        expected: String,
    },
    /// A serialized frontier is malformed.
    #[error("malformed frontier: {0}")]
    BadFrontier(String),
}

/// RFC 6962 leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 1;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// Root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Largest power of two strictly smaller than `n` (n >= 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Merkle tree hash of a slice of leaf hashes, by the RFC 6962 recursion.
pub fn root_of_leaves(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root_of_leaves(&leaves[..k]), &root_of_leaves(&leaves[k..]))
        }
    }
}

/// The right edge of a tree: the roots of its maximal perfect subtrees, left to right.
///
/// Appending a leaf costs one hash plus one per carry; the root of the current tree costs one
/// hash per set bit of the size. This is what a streaming verifier keeps: O(log n) memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_completing(leaf, |_, _| {});
    }

    /// Appends one leaf hash and hands `completed` every perfect subtree of two or more
    /// leaves that this leaf completes, smallest first, with its hash (what a store keeps to
    /// answer proofs without reading every leaf).
    pub fn push_completing(&mut self, leaf: Hash, mut completed: impl FnMut(Subtree, Hash)) {
        let mut acc = leaf;
        let mut size = self.size;
        let mut level = 0u8;
        while size & 1 == 1 {
            let left = self.nodes.pop().expect("one node per set bit");
            acc = node_hash(&left, &acc);
            size >>= 1;
            level += 1;
            completed(
                Subtree {
                    level,
                    index: self.size >> level,
                },
                acc,
            );
        }
        self.nodes.push(acc);
        self.size += 1;
    }

    /// Root hash of the tree of the leaves appended so far.
    pub fn root(&self) -> Hash {
        fold_subtrees(&self.nodes)
    }

    /// Serializes as 8 bytes of big-endian size followed by the subtree roots.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.nodes.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for n in &self.nodes {
            out.extend_from_slice(n);
        }
        out
    }

    /// Parses what [`Frontier::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TreeError> {
        if bytes.len() < 8 || !(bytes.len() - 8).is_multiple_of(32) {
            return Err(TreeError::BadFrontier(format!("{} bytes", bytes.len())));
        }
        let size = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let nodes: Vec<Hash> = bytes[8..]
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect();
        if nodes.len() != size.count_ones() as usize {
            return Err(TreeError::BadFrontier(format!(
                "size {size} needs {} subtree roots, found {}",
                size.count_ones(),
                nodes.len()
            )));
        }
        Ok(Self { size, nodes })
    }
}

/// A perfect subtree of the log: the `2^level` leaves from `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subtree {
    /// Height: the subtree holds `2^level` leaves.
    pub level: u8,
    /// Position among the subtrees of this level.
    pub index: u64,
}

impl Subtree {
    /// The leaves it covers.
    pub fn leaves(&self) -> std::ops::Range<u64> {
        (self.index << self.level)..((self.index + 1) << self.level)
    }

    /// The perfect subtrees, left to right, whose hashes [`fold_subtrees`] into the Merkle tree
    /// hash of leaves `start..end`: every range a proof asks for starts at a multiple of its
    /// largest power of two, and splits by the bits of its length. `None` for another range
    /// (its hash is not made of the log's subtrees) or an empty one.
    pub fn cover(start: u64, end: u64) -> Option<Vec<Subtree>> {
        let n = end.checked_sub(start).filter(|n| *n > 0)?;
        let top = 63 - n.leading_zeros();
        if start & ((1u64 << top) - 1) != 0 {
            return None;
        }
        let mut at = start;
        Some(
            (0..=top)
                .rev()
                .filter(|l| n >> l & 1 == 1)
                .map(|l| {
                    let s = Subtree {
                        level: l as u8,
                        index: at >> l,
                    };
                    at += 1 << l;
                    s
                })
                .collect(),
        )
    }
}

/// The Merkle tree hash of a range from the hashes of the subtrees [`Subtree::cover`] gives
/// for it, in that order.
pub fn fold_subtrees(hashes: &[Hash]) -> Hash {
    let mut it = hashes.iter().rev();
    let Some(last) = it.next() else {
        return empty_root();
    };
    it.fold(*last, |acc, left| node_hash(left, &acc))
}

/// Inclusion proof (RFC 6962 PATH) for leaf `index` in a tree of `size` leaves.
///
/// `mth(start, end)` must return the Merkle tree hash of leaves `start..end`.
pub fn inclusion_proof<E>(
    index: u64,
    size: u64,
    mth: &mut impl FnMut(u64, u64) -> Result<Hash, E>,
) -> Result<Result<Vec<Hash>, TreeError>, E> {
    if index >= size {
        return Ok(Err(TreeError::IndexOutOfRange { index, size }));
    }
    let mut out = Vec::new();
    path(index, 0, size, mth, &mut out)?;
    Ok(Ok(out))
}

fn path<E>(
    m: u64,
    start: u64,
    end: u64,
    mth: &mut impl FnMut(u64, u64) -> Result<Hash, E>,
    out: &mut Vec<Hash>,
) -> Result<(), E> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(m, start, start + k, mth, out)?;
        out.push(mth(start + k, end)?);
    } else {
        path(m - k, start + k, end, mth, out)?;
        out.push(mth(start, start + k)?);
    }
    Ok(())
}

/// Consistency proof (RFC 6962 PROOF) from a tree of `old` leaves to one of `new` leaves.
pub fn consistency_proof<E>(
    old: u64,
    new: u64,
    mth: &mut impl FnMut(u64, u64) -> Result<Hash, E>,
) -> Result<Result<Vec<Hash>, TreeError>, E> {
    if old > new {
        return Ok(Err(TreeError::Shrinking { old, new }));
    }
    let mut out = Vec::new();
    if old > 0 && old < new {
        subproof(old, 0, new, true, mth, &mut out)?;
    }
    Ok(Ok(out))
}

fn subproof<E>(
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    mth: &mut impl FnMut(u64, u64) -> Result<Hash, E>,
    out: &mut Vec<Hash>,
) -> Result<(), E> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(mth(start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(m, start, start + k, complete, mth, out)?;
        out.push(mth(start + k, end)?);
    } else {
        subproof(m - k, start + k, end, false, mth, out)?;
        out.push(mth(start, start + k)?);
    }
    Ok(())
}

/// Verifies an inclusion proof (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), TreeError> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_len(index, size);
    if proof.len() != expected {
        return Err(TreeError::WrongLength {
            got: proof.len(),
            expected,
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    check_root(&r, root)
}

fn inclusion_len(index: u64, size: u64) -> usize {
    // Levels below the point where the paths of `index` and `size - 1` merge, plus the
    // set bits above it (left siblings of the last, possibly imperfect, subtree).
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = (index >> inner).count_ones();
    (inner + border) as usize
}

/// Verifies a consistency proof between two roots (RFC 9162 section 2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), TreeError> {
    if old > new {
        return Err(TreeError::Shrinking { old, new });
    }
    if old == new || old == 0 {
        if !proof.is_empty() {
            return Err(TreeError::WrongLength {
                got: proof.len(),
                expected: 0,
            });
        }
        return if old == new {
            check_root(old_root, new_root)
        } else {
            Ok(())
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(TreeError::WrongLength {
            got: 0,
            expected: 1,
        });
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(TreeError::WrongLength {
                got: proof.len(),
                expected: proof.len() - 1,
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(TreeError::WrongLength {
            got: proof.len(),
            expected: proof.len() + 1,
        });
    }
    check_root(&fr, old_root)?;
    check_root(&sr, new_root)
}

fn check_root(computed: &Hash, expected: &Hash) -> Result<(), TreeError> {
    if computed == expected {
        Ok(())
    } else {
        Err(TreeError::RootMismatch {
            computed: hex::encode(computed),
            expected: hex::encode(expected),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// The RFC 6962 test inputs used by Certificate Transparency and transparency-dev.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn vector_leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect()
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn oracle(l: &[Hash]) -> impl FnMut(u64, u64) -> Result<Hash, Infallible> + '_ {
        |a, b| Ok(root_of_leaves(&l[a as usize..b as usize]))
    }

    fn check_roots(l: &[Hash], expected: &[&str]) {
        let mut f = Frontier::new();
        for (i, leaf) in l.iter().enumerate() {
            f.push(*leaf);
            assert_eq!(
                hex::encode(f.root()),
                expected[i],
                "frontier root at size {}",
                i + 1
            );
            assert_eq!(hex::encode(root_of_leaves(&l[..=i])), expected[i]);
            assert_eq!(Frontier::from_bytes(&f.to_bytes()).unwrap(), f);
        }
    }

    #[test]
    fn rfc6962_roots() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        check_roots(&vector_leaves(), &ROOTS);
    }

    #[test]
    fn rfc6962_inclusion_vectors() {
        let l = vector_leaves();
        let cases: [(u64, u64, &[&str]); 3] = [
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (index, size, want) in cases {
            let got = inclusion_proof(index, size, &mut oracle(&l))
                .unwrap()
                .unwrap();
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(got, want, "inclusion {index} in {size}");
            let root = h(ROOTS[size as usize - 1]);
            verify_inclusion(index, size, &l[index as usize], &got, &root).unwrap();
        }
    }

    #[test]
    fn rfc6962_consistency_vectors() {
        let l = vector_leaves();
        let cases: [(u64, u64, &[&str]); 3] = [
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in cases {
            let got = consistency_proof(old, new, &mut oracle(&l))
                .unwrap()
                .unwrap();
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(got, want, "consistency {old} -> {new}");
            let (r1, r2) = (h(ROOTS[old as usize - 1]), h(ROOTS[new as usize - 1]));
            verify_consistency(old, new, &r1, &r2, &got).unwrap();
        }
    }

    /// Every proof for every pair of sizes up to 33 verifies, and every single-hash
    /// corruption of it is rejected.
    #[test]
    fn all_small_proofs_round_trip_and_reject_corruption() {
        let l = leaves(33);
        for size in 1..=33u64 {
            let root = root_of_leaves(&l[..size as usize]);
            for index in 0..size {
                let p = inclusion_proof(index, size, &mut oracle(&l))
                    .unwrap()
                    .unwrap();
                verify_inclusion(index, size, &l[index as usize], &p, &root).unwrap();
                for i in 0..p.len() {
                    let mut bad = p.clone();
                    bad[i][0] ^= 1;
                    assert!(
                        verify_inclusion(index, size, &l[index as usize], &bad, &root).is_err()
                    );
                }
                let wrong_leaf = leaf_hash(b"not in the tree");
                assert!(verify_inclusion(index, size, &wrong_leaf, &p, &root).is_err());
            }
            for old in 0..=size {
                let old_root = root_of_leaves(&l[..old as usize]);
                let p = consistency_proof(old, size, &mut oracle(&l))
                    .unwrap()
                    .unwrap();
                verify_consistency(old, size, &old_root, &root, &p).unwrap();
                for i in 0..p.len() {
                    let mut bad = p.clone();
                    bad[i][31] ^= 0x80;
                    assert!(verify_consistency(old, size, &old_root, &root, &bad).is_err());
                }
                if old > 0 && old < size {
                    let mut short = p.clone();
                    short.pop();
                    assert!(verify_consistency(old, size, &old_root, &root, &short).is_err());
                }
            }
        }
    }

    /// Every range a proof asks for is covered by the subtrees a frontier reports, and their
    /// fold is the range's hash.
    #[test]
    fn proof_ranges_fold_from_completed_subtrees() {
        let l = leaves(70);
        let mut stored = std::collections::HashMap::new();
        let mut f = Frontier::new();
        for leaf in &l {
            f.push_completing(*leaf, |s, h| {
                assert_eq!(
                    h,
                    root_of_leaves(&l[s.leaves().start as usize..s.leaves().end as usize])
                );
                assert!(stored.insert(s, h).is_none(), "{s:?} reported twice");
            });
        }
        assert_eq!(stored.len(), 70 - 70u64.count_ones() as usize);
        let mut hash = |a: u64, b: u64| -> Result<Hash, Infallible> {
            let cover = Subtree::cover(a, b).expect("a proof range is covered");
            let hashes: Vec<Hash> = cover
                .iter()
                .map(|s| match s.level {
                    0 => l[s.index as usize],
                    _ => stored[s],
                })
                .collect();
            Ok(fold_subtrees(&hashes))
        };
        for size in 1..=70u64 {
            for index in 0..size {
                assert_eq!(
                    inclusion_proof(index, size, &mut hash).unwrap(),
                    inclusion_proof(index, size, &mut oracle(&l)).unwrap()
                );
            }
            for old in 0..=size {
                assert_eq!(
                    consistency_proof(old, size, &mut hash).unwrap(),
                    consistency_proof(old, size, &mut oracle(&l)).unwrap()
                );
            }
        }
        assert_eq!(Subtree::cover(3, 5), None);
        assert_eq!(Subtree::cover(4, 4), None);
    }

    #[test]
    fn out_of_range_and_shrinking_are_errors() {
        let l = leaves(4);
        assert_eq!(
            inclusion_proof(4, 4, &mut oracle(&l)).unwrap(),
            Err(TreeError::IndexOutOfRange { index: 4, size: 4 })
        );
        assert_eq!(
            consistency_proof(5, 4, &mut oracle(&l)).unwrap(),
            Err(TreeError::Shrinking { old: 5, new: 4 })
        );
        assert!(Frontier::from_bytes(&[0; 7]).is_err());
        let mut f = Frontier::new();
        f.push(l[0]);
        let mut b = f.to_bytes();
        b.extend_from_slice(&[0; 32]);
        assert!(Frontier::from_bytes(&b).is_err());
    }
}
