//! Verifying a bundle read from a stream: the reading, and the worker threads that decode and
//! hash entries, around the pure [`Verifier`] of the ledger core.

use crate::bundle::Record;
use crate::ledger::verify::{Finding, ObservationCheck, Prepared, Problem, Summary, Verifier};

/// Verifies a whole bundle from a reader, stopping at the first problem. `progress` is called
/// with the number of records read every 65,536 records.
pub fn verify_bundle<R: std::io::BufRead>(
    input: R,
    mut verifier: Verifier,
    mut progress: impl FnMut(u64),
) -> Result<Result<Summary, Finding>, crate::bundle::BundleError> {
    let mut reader = crate::bundle::BundleReader::new(input);
    loop {
        let line = reader.line() + 1;
        let record = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(crate::bundle::BundleError::Malformed { line, why }) => {
                return Ok(Err(Finding {
                    line,
                    seq: None,
                    problem: Problem::Unexpected(why),
                }));
            }
            Err(e) => return Err(e),
        };
        if let Err(f) = verifier.feed(line, record) {
            return Ok(Err(f));
        }
        if line.is_multiple_of(65_536) {
            progress(line);
        }
    }
    Ok(verifier.finish())
}

/// Bytes per block handed to a worker by [`verify_bundle_parallel`].
const BLOCK: usize = 1 << 20;

// Nearly every item is an entry: boxing it would only add an allocation per entry.
#[allow(clippy::large_enum_variant)]
enum Item {
    Entry(Prepared),
    Other(Vec<u8>),
    Broken(String),
}

/// Splits a block of whole lines and prepares its entries (running `check` on observations).
fn prepare_block(block: &[u8], last: bool, check: Option<&ObservationCheck>) -> Vec<Item> {
    let mut items = Vec::with_capacity(block.len() / 400 + 4);
    let mut rest = block;
    while !rest.is_empty() {
        let Some(n) = rest.iter().position(|&c| c == b'\n') else {
            // Only the last block may end without a newline.
            debug_assert!(last);
            items.push(Item::Broken(crate::bundle::unterminated(rest.len())));
            break;
        };
        let line = &rest[..n];
        rest = &rest[n + 1..];
        if line.len() > crate::bundle::MAX_LINE {
            items.push(Item::Broken(crate::bundle::unterminated(line.len())));
            break;
        }
        match crate::bundle::parse_record(0, line) {
            Ok(Record::Entry(bytes)) => items.push(Item::Entry(Prepared::checked(bytes, check))),
            _ => items.push(Item::Other(line.to_vec())),
        }
    }
    items
}

/// [`verify_bundle`] with entries decoded and hashed by `workers` threads while this thread
/// checks order, chain, tree and checkpoints. Same verdicts and diagnoses; memory stays
/// bounded (a few 1 MiB blocks in flight).
pub fn verify_bundle_parallel<R: std::io::Read + Send>(
    mut input: R,
    mut verifier: Verifier,
    workers: usize,
    mut progress: impl FnMut(u64),
) -> Result<Result<Summary, Finding>, crate::bundle::BundleError> {
    use std::collections::BTreeMap;
    use std::sync::mpsc::sync_channel;
    use std::sync::{Arc, Mutex};

    type Job = (u64, Vec<u8>, bool);
    let (job_tx, job_rx) = sync_channel::<Job>(workers * 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (res_tx, res_rx) = sync_channel::<Result<(u64, Vec<Item>), std::io::Error>>(workers * 2);
    std::thread::scope(|scope| {
        let reader_tx = res_tx.clone();
        scope.spawn(move || {
            let mut idx = 0;
            let mut carry: Vec<u8> = Vec::new();
            loop {
                let mut block = std::mem::take(&mut carry);
                let start = block.len();
                block.resize(start.max(BLOCK) + BLOCK, 0);
                let mut filled = start;
                let eof = loop {
                    match input.read(&mut block[filled..]) {
                        Ok(0) => break true,
                        Ok(n) => {
                            filled += n;
                            if filled == block.len() {
                                break false;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = reader_tx.send(Err(e));
                            return;
                        }
                    }
                };
                block.truncate(filled);
                if !eof {
                    match block.iter().rposition(|&c| c == b'\n') {
                        Some(p) => carry = block.split_off(p + 1),
                        None if block.len() <= crate::bundle::MAX_LINE + 1 => {
                            carry = block;
                            continue;
                        }
                        None => {
                            // One line longer than allowed: let a worker report it.
                            let _ = job_tx.send((idx, block, true));
                            return;
                        }
                    }
                }
                if job_tx.send((idx, block, eof)).is_err() || eof {
                    return;
                }
                idx += 1;
            }
        });
        let check = verifier.observation_check();
        for _ in 0..workers.max(1) {
            let rx = Arc::clone(&job_rx);
            let tx = res_tx.clone();
            let check = check.clone();
            scope.spawn(move || {
                loop {
                    let job = rx.lock().map(|r| r.recv());
                    let Ok(Ok((idx, block, last))) = job else {
                        return;
                    };
                    let items = prepare_block(&block, last, check.as_deref());
                    if tx.send(Ok((idx, items))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(res_tx);
        drop(job_rx);
        let outcome = (|| {
            let mut pending = BTreeMap::new();
            let mut next = 0u64;
            let mut line = 0u64;
            for res in &res_rx {
                let (idx, items) = res?;
                pending.insert(idx, items);
                while let Some(items) = pending.remove(&next) {
                    next += 1;
                    for item in items {
                        line += 1;
                        let fed = match item {
                            Item::Entry(p) => verifier.feed_prepared(line, p),
                            Item::Other(bytes) => match crate::bundle::parse_record(line, &bytes) {
                                Ok(record) => verifier.feed(line, record),
                                Err(e) => Err(Finding {
                                    line,
                                    seq: None,
                                    problem: Problem::Unexpected(match e {
                                        crate::bundle::BundleError::Malformed { why, .. } => why,
                                        other => other.to_string(),
                                    }),
                                }),
                            },
                            Item::Broken(why) => Err(Finding {
                                line,
                                seq: None,
                                problem: Problem::Unexpected(why),
                            }),
                        };
                        if let Err(f) = fed {
                            return Ok(Err(f));
                        }
                        if line.is_multiple_of(65_536) {
                            progress(line);
                        }
                    }
                }
            }
            Ok(Ok(()))
        })();
        // Dropping the receiver stops the workers and the reader.
        drop(res_rx);
        match outcome {
            Err(e) => Err(crate::bundle::BundleError::Io(e)),
            Ok(Err(f)) => Ok(Err(f)),
            Ok(Ok(())) => Ok(verifier.finish()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::BundleWriter;
    use crate::keys::SignerKey;
    use crate::ledger::Sequencer;
    use crate::ledger::entry::Timestamp;
    use ed25519_dalek::SigningKey;

    /// A bundle of `n` observations with a checkpoint every 1000 entries.
    fn bundle(n: u64) -> (SignerKey, Vec<u8>) {
        let key = SignerKey::from_signing_key("t/log", SigningKey::from_bytes(&[3; 32])).unwrap();
        let mut w = BundleWriter::new(Vec::new(), "t/log").unwrap();
        w.key(key.verifier()).unwrap();
        let mut seq = Sequencer::new(key.clone());
        for i in 0..n {
            let body = crate::ledger::entry::fixture::observation(i);
            let s = seq.seal(Timestamp(i as i64), body);
            w.entry(s.text.as_bytes()).unwrap();
            if (i + 1).is_multiple_of(1000) || i + 1 == n {
                w.checkpoint(&seq.sign()).unwrap();
            }
        }
        (key, w.finish().unwrap())
    }

    /// Sequential and parallel verification agree on `bytes`; returns the shared result.
    fn check(bytes: &[u8], trust: &str) -> Result<Summary, Finding> {
        let seq = verify_bundle(bytes, Verifier::new(trust), |_| {}).unwrap();
        let par = verify_bundle_parallel(bytes, Verifier::new(trust), 2, |_| {}).unwrap();
        assert_eq!(seq, par);
        seq
    }

    #[test]
    fn parallel_and_sequential_agree_across_blocks() {
        // About 5 MiB: several blocks for the parallel reader.
        let (key, bytes) = bundle(3000);
        assert!(bytes.len() > 2 * BLOCK);
        let trust = key.verifier().fingerprint();
        assert_eq!(check(&bytes, &trust).unwrap().entries, 3000);
        let text = String::from_utf8(bytes).unwrap();
        let tampered = text.replacen(
            "\"object\":\"spaces/61/doc-2777\"",
            "\"object\":\"spaces/61/doc-2778\"",
            1,
        );
        let f = check(tampered.as_bytes(), &trust).unwrap_err();
        assert_eq!(f.seq, Some(2777));
        assert!(f.to_string().contains("entry 2777 was altered"), "{f}");
        let cut = &text[..text.len() - 100];
        assert!(
            check(cut.as_bytes(), &trust)
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        let long = format!(
            "{}{}\n",
            &text[..200],
            "x".repeat(crate::bundle::MAX_LINE + 10)
        );
        assert!(
            check(long.as_bytes(), &trust)
                .unwrap_err()
                .to_string()
                .contains("longer than")
        );
        assert!(check(b"", &trust).is_err());
    }
}
