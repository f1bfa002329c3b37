//! Fuzzes the object stores' notification parsers (SeaweedFS, MinIO, Ceph RGW): any body gives
//! a notification or an error naming the format, never a panic; every object stored or removed
//! makes a report or a removal, or a field error, whose identifiers never hold the raw bucket or key.
#![no_main]

use hexagone_auditor::serve::events::{Change, ObjectStore, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for store in [ObjectStore::SeaweedFs, ObjectStore::Minio, ObjectStore::Ceph] {
        match parse(store, data) {
            Ok(n) => {
                for change in &n.changes {
                    let made = match change {
                        Change::Stored(o) => o
                            .report(store, "endpoint", "object")
                            .map(|r| (r.id.unwrap_or_default(), r.object)),
                        Change::Removed(o) => o.removal(store, "endpoint", "object"),
                    };
                    if let Ok((id, object)) = made {
                        assert!(object.id.starts_with("sha256:"));
                        assert!(object.store.contains("/bucket-sha256:"));
                        assert!(!id.is_empty() && id.len() < 100);
                    }
                }
            }
            Err(e) => assert!(e.to_string().contains(store.as_str()), "{e}"),
        }
    }
});
