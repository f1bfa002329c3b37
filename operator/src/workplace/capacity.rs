//! The capacity report: whether the eligible nodes can hold the profile's requests (Degraded when
//! they cannot), through the platform's one quantity parser.

use std::sync::Arc;

use hexagone_platform::catalog::{Catalog, Resources};
use hexagone_platform::workplace::Workplace;
use k8s_openapi::api::core::v1::Node;

/// Why the eligible nodes cannot hold the profile, if they cannot: total requests against
/// total allocatable.
pub(super) fn capacity_shortfall(
    catalog: &Catalog,
    wp: &Workplace,
    eligible: &[Arc<Node>],
) -> Option<String> {
    let mut cpu = 0.0;
    let mut mem = 0.0;
    for c in &catalog.components {
        let o = wp.spec.components.get(&c.name);
        let sizing = &c.sizing[&wp.spec.profile];
        let replicas = f64::from(o.and_then(|o| o.replicas).unwrap_or(sizing.replicas));
        let r: &Resources = o
            .and_then(|o| o.requests.as_ref())
            .unwrap_or(&sizing.requests);
        cpu += replicas * cores(&r.cpu)?;
        mem += replicas * memory(&r.memory)?;
    }
    let (mut have_cpu, mut have_mem) = (0.0, 0.0);
    for n in eligible {
        let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
        have_cpu += alloc
            .and_then(|a| a.get("cpu"))
            .and_then(|q| cores(&q.0))
            .unwrap_or(0.0);
        have_mem += alloc
            .and_then(|a| a.get("memory"))
            .and_then(|q| memory(&q.0))
            .unwrap_or(0.0);
    }
    let gib = 1024.0 * 1024.0 * 1024.0;
    (cpu > have_cpu || mem > have_mem).then(|| {
        format!(
            "the {} profile requests {cpu:.1} CPU and {:.1} GiB but the {} eligible nodes offer {have_cpu:.1} CPU and {:.1} GiB: pods will stay Pending until nodes are added",
            wp.spec.profile,
            mem / gib,
            eligible.len(),
            have_mem / gib
        )
    })
}

/// A CPU quantity in cores (the platform's one quantity parser).
fn cores(q: &str) -> Option<f64> {
    hexagone_platform::quantity::millicores(q).map(|m| m as f64 / 1000.0)
}

/// A memory quantity in bytes (the platform's one quantity parser).
fn memory(q: &str) -> Option<f64> {
    hexagone_platform::quantity::bytes(q).map(|b| b as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_cores_and_bytes() {
        assert_eq!(cores("500m"), Some(0.5));
        assert_eq!(cores("2"), Some(2.0));
        assert_eq!(memory("1Gi"), Some(1024.0 * 1024.0 * 1024.0));
        assert_eq!(memory("8150Mi"), Some(8150.0 * 1024.0 * 1024.0));
        assert_eq!(cores("2k"), Some(2000.0));
        assert_eq!(cores("1x"), None);
    }
}
