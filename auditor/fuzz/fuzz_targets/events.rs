//! Fuzzes the object stores' notification parsers (SeaweedFS, MinIO, Ceph RGW): any body gives
//! a notification or an error naming the format, never a panic; every stored object makes a
//! report, or a field error, whose identifiers never hold the raw bucket or key.
#![no_main]

use hexagone_auditor::serve::events::{ObjectStore, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for store in [ObjectStore::SeaweedFs, ObjectStore::Minio, ObjectStore::Ceph] {
        match parse(store, data) {
            Ok(n) => {
                for o in &n.stored {
                    if let Ok(r) = o.report(store, "endpoint", "object") {
                        assert!(r.object.id.starts_with("sha256:"));
                        assert!(r.object.store.contains("/bucket-sha256:"));
                        assert!(r.id.as_deref().is_some_and(|id| id.len() < 100));
                    }
                }
            }
            Err(e) => assert!(e.to_string().contains(store.as_str()), "{e}"),
        }
    }
});
