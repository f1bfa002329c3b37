//! The observation input of `append` (and of the ingest API to come): one JSON object per line
//! carrying **facts only** — which object, and where it is stored (a node as the cluster
//! reports it, or an endpoint outside the cluster) — validated with the line and field when it
//! is wrong. Verdicts, reasons, evidence and policies are refused: the auditor judges every
//! observation itself ([`crate::judge`]).

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

use hexagone_platform::NodeDescription;

use crate::ledger::entry::{
    Body, EncodedBody, EntryError, ImageRef, ObjectId, Timestamp, check_text, parse_hash,
    request_hash,
};
use crate::ledger::tree::Hash;

/// Why an input line was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Not JSON of the expected shape.
    #[error("line {line}: {why}")]
    Syntax {
        /// 1-based line.
        line: u64,
        /// What is wrong.
        why: String,
    },
    /// A field is invalid.
    #[error("line {line}: {source}")]
    Field {
        /// 1-based line.
        line: u64,
        /// The rule broken.
        source: EntryError,
    },
    /// The store is reserved to the auditor's own collector, or reads like it once case,
    /// separators and look-alike digits are set aside ([`crate::names::reserved_store`]).
    #[error(
        "line {line}: field `store`: {store:?} is reserved for the auditor's own Kubernetes collector (`serve --kubernetes`), which observes volumes in the cluster itself{alike}; a writer cannot record under it",
        alike = if store == reserved { String::new() } else {
            format!(" (read without case, separators and look-alike digits, it is {reserved:?})")
        }
    )]
    Reserved {
        /// 1-based line.
        line: u64,
        /// The store given.
        store: String,
        /// The reserved store it reads as.
        reserved: &'static str,
    },
    /// The line carries a judgement: the auditor makes its own.
    #[error(
        "line {line}: field `{field}`: an observation carries facts only (which object, and the node or endpoint storing it); the auditor judges it under its own policy, so `{field}` is refused"
    )]
    Judgement {
        /// 1-based line.
        line: u64,
        /// The field (`verdict`, `reasons`, `evidence`, `policy`, `policy_version`).
        field: &'static str,
    },
}

impl IngestError {
    /// The reserved store a refused line's store reads as, if that is why it was refused.
    pub fn reserved_store(&self) -> Option<&'static str> {
        match self {
            Self::Reserved { reserved, .. } => Some(reserved),
            _ => None,
        }
    }
}

/// A node as the cluster reports it: the fields of a Kubernetes Node the locality engine reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportedNode {
    /// `metadata.name`.
    pub name: String,
    /// `spec.providerID`, which binds an attestation to one machine.
    #[serde(default, rename = "providerID")]
    pub provider_id: Option<String>,
    /// `metadata.labels`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `status.addresses`, as reported (any type; values need not be IP addresses).
    #[serde(default)]
    pub addresses: Vec<ReportedAddress>,
}

/// One `status.addresses` item.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportedAddress {
    /// `ExternalIP`, `InternalIP`, `Hostname`, `ExternalDNS`, `InternalDNS`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value.
    pub address: String,
}

impl ReportedNode {
    /// The node as the engine sees it, through the same bridge as a Kubernetes Node object
    /// (`hexagone_platform::k8s::describe`): an `ExternalIP`/`InternalIP` that is not an IP
    /// address is kept as unreadable, host names are left out.
    pub fn describe(&self) -> NodeDescription {
        self.clone().into_description()
    }

    /// [`ReportedNode::describe`], taking the node (its parts move into the bridge's Node).
    pub fn into_description(self) -> NodeDescription {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(self.name),
                labels: Some(self.labels),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                provider_id: self.provider_id,
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(
                    self.addresses
                        .into_iter()
                        .map(|a| NodeAddress {
                            type_: a.kind,
                            address: a.address,
                        })
                        .collect(),
                ),
                ..NodeStatus::default()
            }),
        };
        hexagone_platform::k8s::describe(&node)
    }
}

/// Where the object is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// On a node of the cluster.
    Node(ReportedNode),
    /// On a storage endpoint outside the cluster: a name from the auditor's inventory, or an
    /// IP address.
    Endpoint(String),
    /// On the server of a network volume (its host, as the PersistentVolume names it): an
    /// endpoint of the inventory by that name, else a place nothing locates, as a registry is
    /// (the collector's network volumes; never written by an HTTP writer).
    Server(String),
    /// At the registry a container image is pulled from (its host): an endpoint of the
    /// inventory by that name, else a place nothing locates (the collector's images; never
    /// written by an HTTP writer), and which image it is, which the entry names.
    Registry {
        /// The registry host, with its port if any.
        host: String,
        /// The image: reference and image ID (`None` when the reference is not one an entry
        /// can hold).
        image: Option<ImageRef>,
    },
}

/// One observation as reported: facts only, not yet judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The writer's idempotency key: a retry with the same id is recorded once.
    pub id: Option<String>,
    /// Which object.
    pub object: ObjectId,
    /// SHA-256 of its content, as its store reports it.
    pub content: Hash,
    /// Where it is stored.
    pub location: Location,
}

/// The writer of `append`'s input lines, in idempotency keys: no token names it on a route
/// of `serve`, whose routes are never `append`.
pub const LOCAL_WRITER: &str = "local";

/// The key under which an idempotency key `id` is recorded: the writer's own (the name its
/// token carries) on one route (`observations`, `events/minio`, …, `append`), so that one
/// writer cannot take another's key before it, as the key of an object store's notification
/// can be computed in advance. Writer names and routes hold no space, so the first two spaces
/// end them; keys recorded before scoping were moved out of reach of every writer (migration
/// 0006 starts them with a space).
pub fn request_key(writer: &str, route: &str, id: &str) -> String {
    debug_assert!(!writer.is_empty() && !writer.contains(' ') && !route.contains(' '));
    format!("{writer} {route} {id}")
}

/// The writer's own id in a key made by [`request_key`] (a key made otherwise is returned
/// whole).
pub fn writer_id(key: &str) -> &str {
    key.splitn(3, ' ').nth(2).unwrap_or(key)
}

/// One observation submitted for the ledger: judged, ready to seal. It holds its body in its
/// canonical encoding too, made once (by whoever judged it, on their thread) and never
/// changed after: the sequencer copies that text into the entry instead of encoding again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    id: Option<String>,
    body: Body,
    encoded: EncodedBody,
    key: Option<crate::store::db::ObjectKeys>,
}

impl Submission {
    /// `body`, with the writer's idempotency key `id` if any (a retry with the same id is
    /// recorded once): the body records the request ([`request_hash`] of `id`, signed with the
    /// entry), so that a duplicate answer can be proven.
    pub fn new(id: Option<String>, body: Body) -> Self {
        let body = body.with_request(id.as_deref().map(request_hash));
        let encoded = body.encode();
        Self::encoded(id, body, encoded)
    }

    /// `body` and its encoding, as [`crate::ledger::entry::Observation::new_encoded`] made
    /// them together, the body recording the request `id` ([`request_hash`]).
    pub(crate) fn encoded(id: Option<String>, body: Body, encoded: EncodedBody) -> Self {
        debug_assert_eq!(encoded, body.encode());
        debug_assert!(
            matches!(body, Body::KeyRotation { .. })
                || body.request() == id.as_deref().map(request_hash).as_ref()
        );
        let key = crate::store::db::body_keys(&body);
        Self {
            id,
            body,
            encoded,
            key,
        }
    }

    /// The writer's idempotency key.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The entry body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The body's canonical encoding.
    pub fn encoded_body(&self) -> &EncodedBody {
        &self.encoded
    }

    /// The object index keys of the body ([`crate::store::db::body_keys`]).
    pub fn object_keys(&self) -> Option<crate::store::db::ObjectKeys> {
        self.key
    }

    /// The body, taken out.
    pub fn into_body(self) -> Body {
        self.body
    }
}

/// Deserializes any value as "present" (even `null`): a judgement field is refused whatever
/// it holds.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    time: Option<String>,
    store: String,
    class: String,
    object: String,
    content: String,
    #[serde(default)]
    node: Option<ReportedNode>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default, deserialize_with = "present")]
    verdict: bool,
    #[serde(default, deserialize_with = "present")]
    reasons: bool,
    #[serde(default, deserialize_with = "present")]
    evidence: bool,
    #[serde(default, deserialize_with = "present")]
    policy: bool,
    #[serde(default, deserialize_with = "present")]
    policy_version: bool,
}

fn time(s: &str) -> Result<Timestamp, EntryError> {
    if let Ok(t) = Timestamp::parse(s) {
        return Ok(t);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| EntryError::Field {
            field: "time",
            problem: format!("{s:?} is not an RFC 3339 time: {e}"),
        })?;
    Ok(Timestamp::from_datetime(t))
}

/// Parses one input line (1-based `line` for messages). A `time` given by the caller is
/// checked but not recorded: the sequencer stamps every entry itself.
pub fn parse_line(line: u64, text: &str) -> Result<Report, IngestError> {
    let input: Input = serde_json::from_str(text).map_err(|e| IngestError::Syntax {
        line,
        why: e.to_string(),
    })?;
    for (given, field) in [
        (input.verdict, "verdict"),
        (input.reasons, "reasons"),
        (input.evidence, "evidence"),
        (input.policy, "policy"),
        (input.policy_version, "policy_version"),
    ] {
        if given {
            return Err(IngestError::Judgement { line, field });
        }
    }
    if let Some(reserved) = crate::names::reserved_store(&input.store) {
        return Err(IngestError::Reserved {
            line,
            store: input.store,
            reserved,
        });
    }
    build(input).map_err(|source| IngestError::Field { line, source })
}

fn build(i: Input) -> Result<Report, EntryError> {
    if let Some(id) = &i.id {
        check_text("id", id)?;
    }
    let object = ObjectId::new(i.store, i.class, i.object)?;
    crate::names::check_plain("store", &object.store)?;
    crate::names::check_plain("class", &object.class)?;
    let content = parse_hash(
        "content",
        i.content.strip_prefix("sha256:").unwrap_or(&i.content),
    )?;
    i.time.as_deref().map(time).transpose()?;
    let location = match (i.node, i.endpoint) {
        (Some(node), None) => {
            check_text("node.name", &node.name)?;
            Location::Node(node)
        }
        (None, Some(endpoint)) => {
            check_text("endpoint", &endpoint)?;
            Location::Endpoint(endpoint)
        }
        (Some(_), Some(_)) => {
            return Err(EntryError::Field {
                field: "node",
                problem: "give either `node` or `endpoint`, not both".into(),
            });
        }
        (None, None) => {
            return Err(EntryError::Field {
                field: "node",
                problem: "missing: where is the object stored? give `node` (name, providerID, labels, addresses as the cluster reports them) or `endpoint` (an inventory name or an IP address)".into(),
            });
        }
    };
    Ok(Report {
        id: i.id,
        object,
        content,
        location,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"store":"s3/docs","class":"document","object":"o1","content":"sha256:abababababababababababababababababababababababababababababababab","node":{"name":"gra-3","providerID":"ovh://gra/3","labels":{"topology.kubernetes.io/region":"gra"},"addresses":[{"type":"Hostname","address":"gra-3"},{"type":"ExternalIP","address":"51.38.1.1"},{"type":"InternalIP","address":"not-an-ip"}]}}"#;

    fn check(text: &str, want: Result<(), &str>) {
        match (parse_line(7, text), want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e} should mention {w}"),
            (got, want) => panic!("{got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn observations_are_validated_with_line_numbers() {
        check(GOOD, Ok(()));
        check(&GOOD.replace("sha256:ab", "sha256:zz"), Err("content"));
        check(
            &GOOD.replace("\"store\":\"s3/docs\"", "\"store\":\"\""),
            Err("line 7: field `store`: must not be empty"),
        );
        check(
            &GOOD.replace("s3/docs", "S3/docs"),
            Err("line 7: field `store`: \"S3/docs\" is not a plain name"),
        );
        check(
            &GOOD.replace("\"document\"", "\"Document\""),
            Err("line 7: field `class`: \"Document\" is not a plain name"),
        );
        check(
            &GOOD.replace("s3/docs", "kube-rnetes/docs"),
            Err(
                "line 7: field `store`: \"kube-rnetes/docs\" is reserved for the auditor's own Kubernetes collector",
            ),
        );
        check(
            &GOOD.replace("\"store\"", "\"secret\":\"x\",\"store\""),
            Err("unknown field `secret`"),
        );
        check(
            &GOOD.replace("\"providerID\"", "\"provider\""),
            Err("unknown field `provider`"),
        );
        check("not json", Err("line 7"));
        let with_time = GOOD.replace(
            "{\"store\"",
            "{\"time\":\"2026-01-02T03:04:05.5+01:00\",\"store\"",
        );
        check(&with_time, Ok(()));
        assert_eq!(
            writer_id(&request_key("backup.pg", "observations", "a b")),
            "a b"
        );
        let with_id = GOOD.replace("{\"store\"", "{\"id\":\"retry-1\",\"store\"");
        assert_eq!(
            parse_line(1, &with_id).unwrap().id.as_deref(),
            Some("retry-1")
        );
        check(
            &GOOD.replace("{\"store\"", "{\"id\":\"\",\"store\""),
            Err("id"),
        );
        check(
            &GOOD.replace("{\"store\"", "{\"time\":\"yesterday\",\"store\""),
            Err("time"),
        );
        let endpoint =
            GOOD.split(",\"node\"").next().unwrap().to_string() + ",\"endpoint\":\"backup-gra\"}";
        assert_eq!(
            parse_line(1, &endpoint).unwrap().location,
            Location::Endpoint("backup-gra".into())
        );
        let nowhere = GOOD.split(",\"node\"").next().unwrap().to_string() + "}";
        check(
            &nowhere,
            Err("line 7: field `node`: missing: where is the object stored?"),
        );
        let both = GOOD.replacen("}}", "},\"endpoint\":\"x\"}", 1);
        check(&both, Err("not both"));
    }

    /// A line that brings its own verdict (or reasons, evidence, policy) is refused, naming the
    /// line and the field, even when the value is null.
    #[test]
    fn judgements_are_refused() {
        for (field, value) in [
            ("verdict", "\"compliant\""),
            ("verdict", "null"),
            ("reasons", "[]"),
            (
                "evidence",
                "[{\"source\":\"geolocation\",\"country\":\"FR\"}]",
            ),
            ("policy", "\"france-only\""),
            ("policy_version", "\"3\""),
        ] {
            let line = GOOD.replacen('{', &format!("{{\"{field}\":{value},"), 1);
            check(
                &line,
                Err(&format!(
                    "line 7: field `{field}`: an observation carries facts only"
                )),
            );
        }
    }

    #[test]
    fn reported_nodes_go_through_the_platform_bridge() {
        let Location::Node(node) = parse_line(1, GOOD).unwrap().location else {
            panic!("a node")
        };
        let d = node.describe();
        assert_eq!(d.name, "gra-3");
        assert_eq!(d.provider_id.as_deref(), Some("ovh://gra/3"));
        assert_eq!(
            d.public_addresses()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
            ["51.38.1.1"]
        );
        assert_eq!(
            d.unreadable_addresses,
            [("InternalIP".to_string(), "not-an-ip".to_string())]
        );
    }
}
