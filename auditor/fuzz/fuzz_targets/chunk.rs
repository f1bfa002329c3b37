//! Fuzzes the reading of a stored chunk of entries, whose bytes whoever can write the database
//! chooses: never a panic, never an allocation larger than `count` valid entries can need, and
//! what is accepted is exactly `count` texts without a newline.
#![no_main]

use hexagone_auditor::store::chunk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [count, codec, bytes @ ..] = data else {
        return;
    };
    let count = usize::from(*count) + 1;
    if let Ok(texts) = chunk::texts(7, count, i32::from(*codec % 3), bytes) {
        assert_eq!(texts.len(), count);
        assert!(texts.iter().all(|t| !t.contains('\n')));
    }
});
