//! Which images a workplace's pods run, and the registries they come from: pure functions over
//! `k8s_openapi` values, no client. The code that handles a workplace's data is whatever its
//! registry serves: each container of a pod of a workplace namespace bound to a node (init,
//! regular and ephemeral, labelled pod or not, running or finished: a Job's code ran too) is an
//! object of its own (`image/<namespace>/<pod>/<container>`, class [`CLASS`]), and so is each
//! image volume (an OCI artifact the kubelet pulls and mounts: `image/<namespace>/<pod>/volume:<name>`),
//! judged at its registry as an endpoint is: a registry the auditor's inventory declares by
//! name (a DNS name) or address is placed by the evidence
//! the inventory gives (its addresses, its attestation); any other is placed by nothing, so
//! the policy's `onUnknown` decides.
//!
//! Whoever wrote the pod — the operator rendering the catalog, ops overriding the registry, or
//! anyone who patches a pod's image or adds an ephemeral container — the image is recorded
//! where it was taken from, and the entry names it: the reference as written and, once the
//! kubelet reports it, the image ID it resolved (`status.containerStatuses[].imageID`, the
//! digest actually pulled). Its content stamp is made of both: a tag moved to other content is
//! recorded again.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ContainerStatus, ObjectReference, Pod};
use sha2::{Digest as _, Sha256};

use super::volumes::STORE;
use crate::ledger::entry::{ImageRef, ObjectId, check_image_id};
use crate::ledger::tree::Hash;

/// The object class of an image a workplace pod runs.
pub const CLASS: &str = "image";

/// The registry an image reference without one is pulled from.
const DEFAULT_REGISTRY: &str = "docker.io";

/// One container of a workplace pod and where its image comes from.
#[derive(Debug, Clone)]
pub struct Image {
    /// `kubernetes` / [`CLASS`] / `image/<namespace>/<pod>/<container>`.
    pub object: ObjectId,
    /// SHA-256 of the pod's uid, the image as written and the image ID the kubelet reports
    /// (empty until it does).
    pub content: Hash,
    /// The registry host (with its port, if any) the image is pulled from.
    pub registry: String,
    /// The image as the entry names it; `None` for a reference no runtime can pull (outside
    /// the reference grammar's characters: nothing ran from it). An image ID outside them is
    /// left out (`image_id: None`).
    pub image: Option<ImageRef>,
    /// The pod and the container's field, which a violation's Event is about.
    pub regarding: ObjectReference,
}

/// The registry host of an image reference, as container runtimes read it (the
/// `splitDockerDomain` rule of distribution/reference `normalize.go`): the part before the
/// first `/` when it looks like a host (it holds a `.` or a `:`, is `localhost`, or is not
/// lowercase), else Docker Hub; `index.docker.io` is Docker Hub's legacy name. Hosts compare
/// without case.
pub fn registry(reference: &str) -> String {
    let name = reference.split('@').next().unwrap_or_default();
    let host = match name.split_once('/') {
        Some((first, _))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            first.to_ascii_lowercase()
        }
        _ => DEFAULT_REGISTRY.to_owned(),
    };
    if host == "index.docker.io" {
        DEFAULT_REGISTRY.to_owned()
    } else {
        host
    }
}

/// A reference as runtimes resolve it, to compare two spellings of one image: the registry
/// host ([`registry`]), `library/` for a Docker Hub image of one component, and `:latest`
/// when neither tag nor digest is written (distribution/reference `normalize.go`,
/// `ParseNormalizedNamed` and `TagNameOnly`).
fn normalized(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let path = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            rest
        }
        _ => name,
    };
    let host = registry(reference);
    let mut path = path.to_owned();
    if host == DEFAULT_REGISTRY && !path.contains('/') {
        path.insert_str(0, "library/");
    }
    let tagged = path.rsplit('/').next().is_some_and(|l| l.contains(':'));
    if !tagged && digest.is_none() {
        path.push_str(":latest");
    }
    match digest {
        Some(d) => format!("{host}/{path}@{d}"),
        None => format!("{host}/{path}"),
    }
}

/// Whether a container status is of `image`, the reference the spec names: the same image
/// once both are resolved, or, for a reference pinned by digest, an image ID of that digest.
fn of_image(status: &ContainerStatus, image: &str) -> bool {
    if normalized(&status.image) == normalized(image) {
        return true;
    }
    image.split_once('@').is_some_and(|(_, digest)| {
        status.image_id.ends_with(&format!("@{digest}"))
            || status.image_id.ends_with(&format!("/{digest}"))
            || status.image_id == digest
    })
}

/// Every container image and image volume of every pod bound to a node in `namespaces` (the
/// workplace namespaces), finished or not, sorted by object. One that cannot be named as an
/// object (an identifier past an entry's bounds, which the API server's own limits prevent) is
/// left out with a warning: it does not keep the others from being recorded.
pub fn images<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    namespaces: &BTreeSet<String>,
) -> Vec<Image> {
    let mut out = Vec::new();
    for pod in pods {
        let (Some(ns), Some(name), Some(spec)) =
            (&pod.metadata.namespace, &pod.metadata.name, &pod.spec)
        else {
            continue;
        };
        if !namespaces.contains(ns) || spec.node_name.is_none() {
            continue;
        }
        let status = pod.status.as_ref();
        let containers = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| ("initContainers", c.name.clone(), c.image.as_deref()))
            .chain(
                spec.containers
                    .iter()
                    .map(|c| ("containers", c.name.clone(), c.image.as_deref())),
            )
            .chain(
                spec.ephemeral_containers
                    .iter()
                    .flatten()
                    .map(|c| ("ephemeralContainers", c.name.clone(), c.image.as_deref())),
            )
            // A container name holds no `:`, so an image volume's object is no container's.
            .chain(spec.volumes.iter().flatten().filter_map(|v| {
                let image = v.image.as_ref()?.reference.as_deref();
                Some(("volumes", format!("volume:{}", v.name), image))
            }));
        for (field, container, image) in containers {
            // A container without an image is refused by the API server; nothing runs there.
            let Some(image) = image else { continue };
            let statuses: [Option<&Vec<ContainerStatus>>; 3] = [
                status.and_then(|s| s.init_container_statuses.as_ref()),
                status.and_then(|s| s.container_statuses.as_ref()),
                status.and_then(|s| s.ephemeral_container_statuses.as_ref()),
            ];
            let found = statuses
                .into_iter()
                .flatten()
                .flatten()
                .find(|s| s.name == container);
            let image_id = found.map(|s| s.image_id.as_str()).unwrap_or_default();
            let mut h = Sha256::new();
            for part in [
                pod.metadata.uid.as_deref().unwrap_or_default(),
                image,
                image_id,
            ] {
                h.update(part);
                h.update(b"\n");
            }
            let object = match ObjectId::new(
                STORE.to_owned(),
                CLASS.to_owned(),
                format!("image/{ns}/{name}/{container}"),
            ) {
                Ok(object) => object,
                Err(e) => {
                    tracing::warn!(
                        "kubernetes: the image of {ns}/{name} {container} cannot be recorded: {e}"
                    );
                    continue;
                }
            };
            let named = match ImageRef::new(image.to_owned(), None) {
                Ok(mut named) => {
                    // The status speaks of this image only when it is of the image the spec
                    // names now: after a patch it still describes the old container until
                    // the kubelet replaces it.
                    let pulled = found
                        .filter(|s| !s.image_id.is_empty() && of_image(s, image))
                        .map(|s| s.image_id.clone());
                    if let Some(id) = pulled {
                        match check_image_id("image.image_id", &id) {
                            Ok(()) => named.image_id = Some(id),
                            Err(e) => tracing::warn!(
                                "kubernetes: the image of {ns}/{name} {container} is recorded without its image ID: {e}"
                            ),
                        }
                    }
                    Some(named)
                }
                Err(e) => {
                    tracing::warn!(
                        "kubernetes: the image of {ns}/{name} {container} is recorded at its registry without being named: {e}"
                    );
                    None
                }
            };
            out.push(Image {
                object,
                content: h.finalize().into(),
                registry: registry(image),
                image: named,
                regarding: ObjectReference {
                    api_version: Some("v1".to_owned()),
                    kind: Some("Pod".to_owned()),
                    namespace: Some(ns.clone()),
                    name: Some(name.clone()),
                    uid: pod.metadata.uid.clone(),
                    field_path: Some(format!(
                        "spec.{field}{{{}}}",
                        container.strip_prefix("volume:").unwrap_or(&container)
                    )),
                    ..ObjectReference::default()
                },
            });
        }
    }
    out.sort_by(|a, b| a.object.id.cmp(&b.object.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_read_as_container_runtimes_read_it() {
        for (reference, host) in [
            ("postgres:17", "docker.io"),
            ("library/postgres", "docker.io"),
            ("bitnami/redis:7@sha256:00", "docker.io"),
            ("docker.io/library/postgres:17", "docker.io"),
            ("index.docker.io/library/postgres:17", "docker.io"),
            ("quay.io/keycloak/keycloak:26.0", "quay.io"),
            (
                "registry.local:5000/hexagone/exo:7.1",
                "registry.local:5000",
            ),
            ("localhost/exo:7", "localhost"),
            ("Registry/exo:7", "registry"),
            ("ghcr.io/element-hq/synapse@sha256:ab", "ghcr.io"),
        ] {
            assert_eq!(registry(reference), host, "{reference}");
        }
    }

    const PULLED: &str = "quay.io/keycloak/keycloak@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    /// The status of the `app` container of a pod made by [`pod`].
    fn app_status(p: &mut Pod) -> &mut ContainerStatus {
        &mut p
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
    }

    fn pod(ns: &str, name: &str, node: Option<&str>, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
            "spec": {
                "nodeName": node,
                "initContainers": [{"name": "init", "image": "registry.gouv.example/busybox:1"}],
                "containers": [{"name": "app", "image": "quay.io/keycloak/keycloak:26.0"}],
                "ephemeralContainers": [{"name": "debugger", "image": "busybox"}],
                "volumes": [{"name": "models", "image": {"reference": "ghcr.io/acme/models:1"}},
                            {"name": "scratch", "emptyDir": {}}]
            },
            "status": {"phase": phase, "containerStatuses": [
                {"name": "app", "image": "quay.io/keycloak/keycloak:26.0", "imageID": PULLED,
                 "ready": true, "restartCount": 0}
            ]}
        }))
        .unwrap()
    }

    #[test]
    fn every_container_of_a_bound_workplace_pod_is_recorded_at_its_registry() {
        let pods = [
            pod("wp", "kc-0", Some("a"), "Running"),
            pod("wp", "pending", None, "Pending"),
            pod("other", "kc-0", Some("a"), "Running"),
        ];
        let found = images(&pods, &BTreeSet::from(["wp".to_owned()]));
        let shown: Vec<String> = found
            .iter()
            .map(|i| {
                let image = i.image.as_ref().unwrap();
                format!(
                    "{} {} {} {} {}",
                    i.object.id,
                    i.registry,
                    i.regarding.field_path.as_deref().unwrap(),
                    image.reference,
                    image.image_id.as_deref().unwrap_or("-"),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                // The entry names the image as written and the digest the kubelet pulled.
                &format!(
                    "image/wp/kc-0/app quay.io spec.containers{{app}} quay.io/keycloak/keycloak:26.0 {PULLED}"
                ),
                // An ephemeral container someone added to debug the pod runs code too.
                "image/wp/kc-0/debugger docker.io spec.ephemeralContainers{debugger} busybox -",
                "image/wp/kc-0/init registry.gouv.example spec.initContainers{init} registry.gouv.example/busybox:1 -",
                // An OCI artifact mounted as a volume is pulled from a registry too.
                "image/wp/kc-0/volume:models ghcr.io spec.volumes{models} ghcr.io/acme/models:1 -",
            ]
        );
        // A finished Job's code ran: its images stay recorded while the pod exists.
        let done = images(
            &[pod("wp", "done", Some("a"), "Succeeded")],
            &BTreeSet::from(["wp".to_owned()]),
        );
        assert_eq!(done.len(), 4);
    }

    /// Whoever writes the pod writes the texts the entry would hold: a reference outside the
    /// reference grammar's characters (which no runtime pulls) is recorded at its registry
    /// without being named, an image ID outside them is left out, and neither keeps the other
    /// containers from being recorded with theirs.
    #[test]
    fn an_image_text_no_entry_can_hold_is_left_out_not_the_image() {
        let mut p = pod("wp", "x", Some("a"), "Running");
        let spec = p.spec.as_mut().unwrap();
        spec.containers[0].image = Some("quay.io/keycloak/keycloak:26.0 jdupont@example.fr".into());
        spec.init_containers.as_mut().unwrap()[0].image = Some(format!("r/{}", "a".repeat(700)));
        app_status(&mut p).image_id = "docker-pullable://x@y@sha256:aa".into();
        let found = images(&[p], &BTreeSet::from(["wp".to_owned()]));
        let named: Vec<(&str, Option<&ImageRef>)> = found
            .iter()
            .map(|i| (i.object.id.as_str(), i.image.as_ref()))
            .collect();
        assert_eq!(found.len(), 4, "{named:?}");
        assert_eq!(named[0], ("image/wp/x/app", None));
        assert_eq!(found[0].registry, "quay.io");
        assert_eq!(named[2], ("image/wp/x/init", None));
        assert_eq!(
            named[1]
                .1
                .map(|i| (i.reference.as_str(), i.image_id.as_deref())),
            Some(("busybox", None))
        );
        let mut p = pod("wp", "y", Some("a"), "Running");
        app_status(&mut p).image_id = "docker-pullable://x@y@sha256:aa".into();
        let app = images(&[p], &BTreeSet::from(["wp".to_owned()])).remove(0);
        assert_eq!(
            app.image,
            Some(ImageRef::new("quay.io/keycloak/keycloak:26.0".into(), None).unwrap()),
            "a bad image ID is left out, the reference is kept"
        );
    }

    /// The digest a status reports is signed as the image's only when the status is of that
    /// image: a container patched to another image still reports the old one's until the
    /// kubelet replaces it, and the entry then names no digest rather than the old one's.
    #[test]
    fn a_status_of_another_image_does_not_name_the_digest() {
        let set = BTreeSet::from(["wp".to_owned()]);
        let app = |p: Pod| {
            images(&[p], &set)
                .into_iter()
                .find(|i| i.object.id.ends_with("/app"))
                .unwrap()
                .image
                .unwrap()
        };
        let mut patched = pod("wp", "x", Some("a"), "Running");
        patched.spec.as_mut().unwrap().containers[0].image =
            Some("quay.io/keycloak/keycloak:26.1".into());
        let named = app(patched.clone());
        assert_eq!(
            (named.reference.as_str(), named.image_id),
            ("quay.io/keycloak/keycloak:26.1", None)
        );
        // The kubelet replaced it: the status is of the new image, in the runtime's spelling.
        app_status(&mut patched).image = "quay.io/keycloak/keycloak:26.1".into();
        assert_eq!(app(patched.clone()).image_id.as_deref(), Some(PULLED));
        // Docker Hub's short names, as containerd reports them, are the same image.
        for (spec, status) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
            ("index.docker.io/library/postgres:17", "postgres:17"),
        ] {
            let mut p = pod("wp", "x", Some("a"), "Running");
            p.spec.as_mut().unwrap().containers[0].image = Some(spec.into());
            app_status(&mut p).image = status.into();
            assert_eq!(
                app(p).image_id.as_deref(),
                Some(PULLED),
                "{spec} / {status}"
            );
        }
        // Pinned by digest: an image ID of that digest is of it, whatever the status's name.
        let digest = PULLED.split_once('@').unwrap().1;
        let mut p = pod("wp", "x", Some("a"), "Running");
        p.spec.as_mut().unwrap().containers[0].image =
            Some(format!("registry.example.fr/keycloak@{digest}"));
        app_status(&mut p).image = "sha256:0000".into();
        assert_eq!(app(p).image_id.as_deref(), Some(PULLED));
    }

    #[test]
    fn another_image_or_another_pulled_digest_is_a_new_record() {
        let set = BTreeSet::from(["wp".to_owned()]);
        let app = |p: Pod| {
            images(&[p], &set)
                .into_iter()
                .find(|i| i.object.id.ends_with("/app"))
                .unwrap()
                .content
        };
        let first = app(pod("wp", "x", Some("a"), "Running"));
        assert_eq!(first, app(pod("wp", "x", Some("a"), "Running")));
        let mut patched = pod("wp", "x", Some("a"), "Running");
        patched.spec.as_mut().unwrap().containers[0].image =
            Some("quay.io/keycloak/keycloak:26.1".into());
        assert_ne!(first, app(patched), "the image was patched");
        let mut moved = pod("wp", "x", Some("a"), "Running");
        app_status(&mut moved).image_id = "quay.io/keycloak/keycloak@sha256:bb".into();
        assert_ne!(first, app(moved), "the tag now names other content");
        let mut again = pod("wp", "x", Some("a"), "Running");
        again.metadata.uid = Some("another".into());
        assert_ne!(first, app(again), "the pod was recreated");
    }
}
