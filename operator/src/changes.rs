//! Watch events that matter: a watcher's stream reduced to the changes of what a controller
//! reads. Kubelets rewrite their Node's status on every heartbeat and controllers rewrite their
//! objects' status as pods come and go; a controller that runs a full pass on each of those
//! does the same work again for nothing. [`Changes`] keeps, per object, a fingerprint of the
//! fields its controller reads and calls an event a change only when the fingerprint changed,
//! the object was deleted, or the watch listed everything again (objects deleted while it was
//! down are never announced).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use kube::Resource;
use kube::runtime::watcher::Event;

/// The fingerprints of the objects a watch has seen, keyed by uid (a name reused by a new
/// object is a new object).
pub struct Changes<K> {
    fingerprint: fn(&K) -> u64,
    seen: HashMap<String, u64>,
    relisting: HashMap<String, u64>,
}

impl<K: Resource> Changes<K> {
    /// Changes as `fingerprint` reads them (hash only the fields that matter; see [`hash_of`]).
    pub fn new(fingerprint: fn(&K) -> u64) -> Self {
        Changes {
            fingerprint,
            seen: HashMap::new(),
            relisting: HashMap::new(),
        }
    }

    /// Whether an event is a change: an object new, changed in what the fingerprint reads, or
    /// deleted; or a relist ended (objects deleted while the watch was down are never
    /// announced). During a relist objects are compared with what was seen before it, and
    /// those it did not return are forgotten when it ends.
    pub fn judge(&mut self, event: &Event<K>) -> bool {
        match event {
            Event::Apply(o) => {
                let (uid, print) = self.print(o);
                self.seen.insert(uid, print) != Some(print)
            }
            Event::Delete(o) => {
                self.seen.remove(&self.print(o).0);
                true
            }
            Event::Init => {
                self.relisting.clear();
                false
            }
            Event::InitApply(o) => {
                let (uid, print) = self.print(o);
                let changed = self.seen.get(&uid) != Some(&print);
                self.relisting.insert(uid, print);
                changed
            }
            Event::InitDone => {
                self.seen = std::mem::take(&mut self.relisting);
                true
            }
        }
    }

    fn print(&self, o: &K) -> (String, u64) {
        let uid = o.meta().uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                o.meta().namespace.as_deref().unwrap_or_default(),
                o.meta().name.as_deref().unwrap_or_default()
            )
        });
        (uid, (self.fingerprint)(o))
    }
}

/// A hash of `value`, the same for equal values within one process (fingerprints never leave
/// it).
pub fn hash_of(value: &impl Hash) -> u64 {
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(uid: &str, data: &str, rv: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "c", "namespace": "ns", "uid": uid, "resourceVersion": rv},
            "data": {"k": data}
        }))
        .expect("a ConfigMap")
    }

    fn data(c: &ConfigMap) -> u64 {
        hash_of(&c.data)
    }

    /// A rewrite that changes nothing the fingerprint reads is no change; a change, a deletion,
    /// a new object under a reused name and a relist are.
    #[test]
    fn only_changes_of_what_is_read_are_changes() {
        let mut c = Changes::new(data);
        let mut judge = |e| c.judge(&e);
        assert!(judge(Event::Apply(cm("1", "a", "1"))), "new");
        assert!(!judge(Event::Apply(cm("1", "a", "2"))), "rewritten alike");
        assert!(judge(Event::Apply(cm("1", "b", "3"))), "changed");
        assert!(judge(Event::Delete(cm("1", "b", "4"))), "deleted");
        assert!(
            judge(Event::Apply(cm("2", "b", "5"))),
            "a new object, the same name"
        );
        assert!(!judge(Event::Init));
        assert!(
            judge(Event::InitApply(cm("3", "x", "6"))),
            "new, listed again"
        );
        assert!(
            !judge(Event::InitApply(cm("2", "b", "7"))),
            "listed again, unchanged"
        );
        assert!(judge(Event::InitDone), "relisted");
        // After the relist, only what it returned is known.
        assert!(!judge(Event::Apply(cm("3", "x", "8"))));
        assert!(!judge(Event::Apply(cm("2", "b", "9"))));
        assert!(!judge(Event::Init));
        assert!(!judge(Event::InitApply(cm("3", "x", "10"))));
        assert!(judge(Event::InitDone));
        assert!(
            judge(Event::Apply(cm("2", "b", "11"))),
            "not in the last relist"
        );
    }
}
