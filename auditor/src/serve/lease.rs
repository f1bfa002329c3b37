//! `serve --lease NAMESPACE/NAME`: several replicas on one PostgreSQL ledger, one sequencer.
//!
//! Only the holder of a Kubernetes Lease opens the sequencer (and runs the collector); the
//! others stand by, answer ingest with `503` and `Retry-After`, and take over when the Lease
//! expires. The leader labels its own pod [`ROLE_LABEL`]`=leader` so that the Service routes
//! writers to it; a replica removes the label from its pod when it starts and when it stops
//! leading.
//!
//! The Lease keeps the work in one place; the store keeps the ledger whole whoever writes:
//! every commit holds the head's lock and moves the stored head by compare-and-swap, after
//! checking the signed head it finds. A former leader that has not yet noticed its loss can at
//! worst seal its batch after the new leader's (as two `append` processes would); it can never
//! replace or fork an acknowledged entry. It stops committing the moment its renewal fails.

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::sync::watch;

/// The label the leader sets on its own pod (the Service selects on it).
pub const ROLE_LABEL: &str = "hexagone.fr/auditor-role";

/// The field manager of the Lease and of the pod label.
const FIELD_MANAGER: &str = "hexagone-auditor";

/// A replica's side of the election.
pub struct Election {
    /// True while this replica holds the Lease.
    leader: watch::Receiver<bool>,
    /// Renews the Lease; releases it when `leader` is dropped.
    task: tokio::task::JoinHandle<
        Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>,
    >,
    /// `NAMESPACE/NAME`, for messages.
    pub lease: String,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// This replica's pod, when it runs in one (`POD_NAMESPACE`, `POD_NAME`).
    pod: Option<(Api<Pod>, String)>,
}

/// Splits `NAMESPACE/NAME`.
pub fn parse(lease: &str) -> anyhow::Result<(String, String)> {
    match lease.split_once('/') {
        Some((ns, name)) if valid_name(ns) && valid_name(name) => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => anyhow::bail!(
            "--lease {lease:?}: expected NAMESPACE/NAME (lowercase letters, digits, `-`, `.`), e.g. hexagone-audit/hexagone-auditor"
        ),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

impl Election {
    /// Joins the election for Lease `lease` (`NAMESPACE/NAME`) as `identity`, holding it at most
    /// `seconds` without renewal; clears a stale leader label from this replica's pod.
    pub async fn join(
        client: kube::Client,
        lease: &str,
        identity: String,
        seconds: u64,
    ) -> anyhow::Result<Self> {
        let (ns, name) = parse(lease)?;
        let pod = match (std::env::var("POD_NAMESPACE"), std::env::var("POD_NAME")) {
            (Ok(ns), Ok(name)) if !ns.is_empty() && !name.is_empty() => {
                Some((Api::<Pod>::namespaced(client.clone(), &ns), name))
            }
            _ => None,
        };
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &name)
            .with_namespace(ns)
            .with_identity(identity.clone())
            .with_duration(seconds)
            .with_grace((seconds / 3).max(1))
            .with_field_manager(FIELD_MANAGER.to_owned())
            .build()
            .await
            .with_context(|| format!("opening Lease {lease} for leader election"))?;
        let (leader, task) = manager.watch().await;
        let election = Self {
            leader,
            task,
            lease: lease.to_owned(),
            identity,
            pod,
        };
        // A restarted container keeps its pod and so a label its former self set.
        election.label(false).await?;
        Ok(election)
    }

    /// Waits until this replica holds the Lease, then labels its pod.
    pub async fn lead(&mut self) -> anyhow::Result<()> {
        while !*self.leader.borrow_and_update() {
            self.leader
                .changed()
                .await
                .context("the leader election stopped")?;
        }
        self.label(true).await
    }

    /// Returns when this replica no longer holds the Lease (or the election stopped).
    pub async fn lost(&mut self) {
        loop {
            if self.leader.changed().await.is_err() || !*self.leader.borrow() {
                return;
            }
        }
    }

    /// Removes the pod label and releases the Lease (a standby takes over at once).
    pub async fn resign(self) {
        if let Err(e) = self.label(false).await {
            tracing::warn!("{e}");
        }
        let Self { leader, task, .. } = self;
        drop(leader);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }

    /// Sets (or removes) [`ROLE_LABEL`] on this replica's pod.
    async fn label(&self, leading: bool) -> anyhow::Result<()> {
        let Some((pods, name)) = &self.pod else {
            return Ok(());
        };
        let value = if leading {
            serde_json::json!("leader")
        } else {
            serde_json::Value::Null
        };
        let patch = serde_json::json!({"metadata": {"labels": {ROLE_LABEL: value}}});
        pods.patch(
            name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .with_context(|| {
            format!(
                "{} the label {ROLE_LABEL} on pod {name}",
                if leading { "setting" } else { "removing" }
            )
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn lease_names() {
        assert_eq!(
            parse("hexagone-audit/hexagone-auditor").unwrap(),
            ("hexagone-audit".into(), "hexagone-auditor".into())
        );
        for bad in ["", "x", "/x", "x/", "A/b", "a/b/c", "a/-b", "a b/c"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected NAMESPACE/NAME"), "{bad}: {e}");
        }
    }
}
