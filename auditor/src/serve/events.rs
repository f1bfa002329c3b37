//! Object-storage event notifications, each in its server's own format, turned into
//! observations of an object in a bucket stored on a declared endpoint: the one owner of these
//! formats. Pure: bytes in, reports out.
//!
//! - **MinIO** bucket notifications (webhook target): the S3 event JSON, `{"EventName", "Key",
//!   "Records": [...]}`, object keys URL-encoded as S3 does.
//! - **Ceph RGW** bucket notifications (HTTP push endpoint): the S3-compatible
//!   `{"Records": [...]}`, event names with or without the `s3:` prefix, sizes as numbers or
//!   strings, keys as stored.
//! - **SeaweedFS** filer notifications (`[notification.webhook]` in `filer.toml`):
//!   `{"key": <full path>, "event_type": "create"|"update"|"delete"|"rename", "message":
//!   <filer_pb.EventNotification as Go's encoding/json writes it>}`; S3 buckets are the
//!   directories under `/buckets/`.
//!
//! Bucket names and object keys can carry personal data (a user's name in a path): the ledger
//! gets their SHA-256 only. Removals are not observations of where an object is stored: they
//! are counted and skipped, as are directories and event kinds that store nothing.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::ingest::{Location, Report};
use crate::ledger::entry::{EntryError, ObjectId};

/// The object stores whose notifications the auditor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectStore {
    /// SeaweedFS filer webhook notifications.
    SeaweedFs,
    /// MinIO bucket notifications (webhook target).
    Minio,
    /// Ceph RADOS Gateway bucket notifications (HTTP push endpoint).
    Ceph,
}

impl ObjectStore {
    /// The name used in routes, stores and idempotency keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SeaweedFs => "seaweedfs",
            Self::Minio => "minio",
            Self::Ceph => "ceph",
        }
    }
}

/// Why a notification was refused.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not the store's notification JSON; the message names the field (serde's path).
    #[error("not a {store} notification: {why}")]
    Syntax {
        /// Which format was expected.
        store: &'static str,
        /// What is wrong, with the path to the field.
        why: String,
    },
    /// A record that cannot make an observation.
    #[error("{store} notification, record {record}: {why}")]
    Record {
        /// Which format.
        store: &'static str,
        /// 0-based record index.
        record: usize,
        /// What is wrong.
        why: String,
    },
}

/// One object a notification says is now stored (created, overwritten, copied, restored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The bucket (SeaweedFS: the directory under `/buckets/`, or `/` for filer paths outside).
    pub bucket: String,
    /// The object key within the bucket, decoded.
    pub key: String,
    /// The store's content tag (ETag, or the filer's MD5 in hex), if it gave one.
    pub etag: Option<String>,
    /// Object version, if versioned.
    pub version: Option<String>,
    /// The store's ordering token (S3 `sequencer`, SeaweedFS mtime), part of the retry key.
    pub sequencer: Option<String>,
    /// Size in bytes, as reported.
    pub size: u64,
}

/// What a notification holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notification {
    /// Objects now stored, in the notification's order.
    pub stored: Vec<StoredObject>,
    /// Records that store nothing (removals, directories, other event kinds).
    pub skipped: usize,
}

/// Parses one notification body from `store`.
pub fn parse(store: ObjectStore, body: &[u8]) -> Result<Notification, EventError> {
    match store {
        ObjectStore::Minio | ObjectStore::Ceph => parse_s3(store, body),
        ObjectStore::SeaweedFs => parse_seaweedfs(body),
    }
}

fn syntax(store: ObjectStore, e: impl std::fmt::Display) -> EventError {
    EventError::Syntax {
        store: store.as_str(),
        why: e.to_string(),
    }
}

fn from_json<'a, T: Deserialize<'a>>(store: ObjectStore, body: &'a [u8]) -> Result<T, EventError> {
    let d = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(d).map_err(|e| syntax(store, e))
}

#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(default)]
    size: Option<Size>,
    #[serde(default, rename = "eTag")]
    etag: Option<String>,
    #[serde(default, rename = "versionId")]
    version_id: Option<String>,
    #[serde(default)]
    sequencer: Option<String>,
}

/// Ceph writes sizes as strings in some releases, MinIO and AWS as numbers.
#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Number(u64),
    Text(String),
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn parse_s3(store: ObjectStore, body: &[u8]) -> Result<Notification, EventError> {
    let n: S3Notification = from_json(store, body)?;
    let mut out = Notification::default();
    for (i, r) in n.records.into_iter().enumerate() {
        let record = |why: String| EventError::Record {
            store: store.as_str(),
            record: i,
            why,
        };
        let name = r.event_name.strip_prefix("s3:").unwrap_or(&r.event_name);
        if !name.starts_with("ObjectCreated:") {
            out.skipped += 1;
            continue;
        }
        // MinIO (like AWS) URL-encodes keys in events; Ceph sends them as stored.
        let key = match store {
            ObjectStore::Minio => {
                percent_encoding::percent_decode_str(&r.s3.object.key.replace('+', " "))
                    .decode_utf8()
                    .map_err(|e| record(format!("`s3.object.key` is not URL-encoded UTF-8: {e}")))?
                    .into_owned()
            }
            _ => r.s3.object.key,
        };
        let size = match r.s3.object.size {
            None => 0,
            Some(Size::Number(n)) => n,
            Some(Size::Text(t)) => t
                .parse()
                .map_err(|_| record(format!("`s3.object.size` {t:?} is not a number")))?,
        };
        if r.s3.bucket.name.is_empty() || key.is_empty() {
            return Err(record("empty `s3.bucket.name` or `s3.object.key`".into()));
        }
        out.stored.push(StoredObject {
            bucket: r.s3.bucket.name,
            key,
            etag: non_empty(r.s3.object.etag),
            version: non_empty(r.s3.object.version_id),
            sequencer: non_empty(r.s3.object.sequencer),
            size,
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
struct SeaweedMessage {
    key: String,
    #[serde(default)]
    event_type: Option<String>,
    message: SeaweedEvent,
}

#[derive(Deserialize)]
struct SeaweedEvent {
    #[serde(default)]
    new_entry: Option<SeaweedEntry>,
    #[serde(default)]
    new_parent_path: Option<String>,
}

#[derive(Deserialize)]
struct SeaweedEntry {
    name: String,
    #[serde(default)]
    is_directory: bool,
    #[serde(default)]
    chunks: Vec<SeaweedChunk>,
    #[serde(default)]
    attributes: Option<SeaweedAttributes>,
}

#[derive(Deserialize)]
struct SeaweedChunk {
    #[serde(default)]
    e_tag: Option<String>,
}

#[derive(Deserialize)]
struct SeaweedAttributes {
    #[serde(default)]
    file_size: u64,
    #[serde(default)]
    mtime: i64,
    /// Go's encoding/json writes `[]byte` as standard base64.
    #[serde(default)]
    md5: Option<String>,
}

fn parse_seaweedfs(body: &[u8]) -> Result<Notification, EventError> {
    let store = ObjectStore::SeaweedFs;
    let m: SeaweedMessage = from_json(store, body)?;
    let record = |why: String| EventError::Record {
        store: store.as_str(),
        record: 0,
        why,
    };
    let mut out = Notification::default();
    let Some(entry) = m.message.new_entry else {
        // A deletion: nothing is stored any more.
        out.skipped = 1;
        return Ok(out);
    };
    if entry.is_directory || m.event_type.as_deref() == Some("delete") {
        out.skipped = 1;
        return Ok(out);
    }
    // A rename names the new directory; otherwise the key is the entry's full path.
    let path = match m.message.new_parent_path.filter(|p| !p.is_empty()) {
        Some(dir) => format!("{}/{}", dir.trim_end_matches('/'), entry.name),
        None => m.key,
    };
    if !path.starts_with('/') || path.len() < 2 {
        return Err(record(format!(
            "`key` must be an absolute filer path, got {} bytes",
            path.len()
        )));
    }
    let (bucket, key) = match path
        .strip_prefix("/buckets/")
        .and_then(|p| p.split_once('/'))
    {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
            (bucket.to_string(), key.to_string())
        }
        _ => ("/".to_string(), path),
    };
    let attributes = entry.attributes;
    let md5 = attributes
        .as_ref()
        .and_then(|a| a.md5.as_deref())
        .filter(|m| !m.is_empty())
        .map(|m| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(m)
                .map(hex::encode)
                .map_err(|e| {
                    record(format!(
                        "`message.new_entry.attributes.md5` is not base64: {e}"
                    ))
                })
        })
        .transpose()?;
    let etag = md5.or_else(|| {
        let tags: Vec<&str> = entry
            .chunks
            .iter()
            .filter_map(|c| c.e_tag.as_deref())
            .collect();
        (!tags.is_empty()).then(|| tags.join(","))
    });
    out.stored.push(StoredObject {
        bucket,
        key,
        etag,
        version: None,
        sequencer: attributes
            .as_ref()
            .map(|a| a.mtime)
            .filter(|&t| t != 0)
            .map(|t| t.to_string()),
        size: attributes.map_or(0, |a| a.file_size),
    });
    Ok(out)
}

/// Hex SHA-256 of `parts`, each followed by a 0 byte (no two part lists hash the same).
fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

impl StoredObject {
    /// The observation of this object, stored on the inventory `endpoint`, in object `class`:
    /// store `<store>/<endpoint>/bucket-sha256:<SHA-256 of the bucket>`, object
    /// `sha256:<SHA-256 of the key>`, content the SHA-256 of the store's content tag (object
    /// stores report an ETag, not a SHA-256 of the content), and an idempotency key derived
    /// from all of them and the store's ordering token, so a redelivered notification is
    /// recorded once.
    pub fn report(
        &self,
        store: ObjectStore,
        endpoint: &str,
        class: &str,
    ) -> Result<Report, EntryError> {
        crate::names::check_plain("endpoint", endpoint)?;
        crate::names::check_plain("class", class)?;
        let bucket = digest(&[&self.bucket]);
        let key = digest(&[&self.key]);
        let tag = match &self.etag {
            Some(e) => format!("etag {}", e.trim_matches('"')),
            None => format!("size {}", self.size),
        };
        let content = Sha256::digest(tag.as_bytes()).into();
        let version = self.version.as_deref().unwrap_or("");
        let sequencer = self.sequencer.as_deref().unwrap_or("");
        let id = digest(&[
            store.as_str(),
            endpoint,
            &self.bucket,
            &self.key,
            &tag,
            version,
            sequencer,
        ]);
        Ok(Report {
            id: Some(format!("{}-event:{id}", store.as_str())),
            object: ObjectId::new(
                format!("{}/{endpoint}/bucket-sha256:{bucket}", store.as_str()),
                class.to_string(),
                format!("sha256:{key}"),
            )?,
            content,
            location: Location::Endpoint(endpoint.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The (bucket, key) pairs stored and the count skipped, or a part of the error.
    type Want<'a> = Result<(&'a [(&'a str, &'a str)], usize), &'a str>;

    fn check(store: ObjectStore, body: &[u8], want: Want) {
        match (parse(store, body), want) {
            (Ok(n), Ok((objects, skipped))) => {
                let got: Vec<(&str, &str)> = n
                    .stored
                    .iter()
                    .map(|o| (o.bucket.as_str(), o.key.as_str()))
                    .collect();
                assert_eq!(got, objects);
                assert_eq!(n.skipped, skipped);
            }
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e} should mention {w}"),
            (got, want) => panic!("{got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn minio_notifications() {
        let body = fixture("minio-put.json");
        check(
            ObjectStore::Minio,
            &body,
            Ok((&[("documents", "spaces/7/Rapport annuel é.pdf")], 0)),
        );
        let n = parse(ObjectStore::Minio, &body).unwrap();
        let o = &n.stored[0];
        assert_eq!(o.size, 53_214);
        assert_eq!(o.etag.as_deref(), Some("e1b6b5ad0f1f2ec4b1b8d5a4a0e2b4f1"));
        assert_eq!(o.sequencer.as_deref(), Some("1805A0B3C3C2D1E7"));
        let removed = String::from_utf8(body)
            .unwrap()
            .replace("s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete");
        check(ObjectStore::Minio, removed.as_bytes(), Ok((&[], 1)));
        check(
            ObjectStore::Minio,
            br#"{"Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{},"object":{"key":"k"}}}]}"#,
            Err("Records[0].s3.bucket: missing field `name`"),
        );
        check(ObjectStore::Minio, b"[]", Err("not a minio notification"));
    }

    #[test]
    fn ceph_notifications() {
        let body = fixture("ceph-put.json");
        check(
            ObjectStore::Ceph,
            &body,
            Ok((
                &[
                    ("backups", "portal/base/2026-11-29.tar"),
                    ("backups", "portal/wal/000000010000000000000042"),
                ],
                1,
            )),
        );
        let n = parse(ObjectStore::Ceph, &body).unwrap();
        assert_eq!(n.stored[0].size, 1_048_576, "a size written as a string");
        check(
            ObjectStore::Ceph,
            br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":"big"}}}]}"#,
            Err("record 0: `s3.object.size` \"big\" is not a number"),
        );
    }

    #[test]
    fn seaweedfs_notifications() {
        let body = fixture("seaweedfs-create.json");
        check(
            ObjectStore::SeaweedFs,
            &body,
            Ok((&[("documents", "spaces/7/compte-rendu.odt")], 0)),
        );
        let n = parse(ObjectStore::SeaweedFs, &body).unwrap();
        assert_eq!(
            n.stored[0].etag.as_deref(),
            Some("2848d811982973ffda34cf8c8599e3f6"),
            "the filer's MD5, base64 in the event"
        );
        assert_eq!(n.stored[0].size, 941_248);
        let delete = br#"{"key":"/buckets/documents/a","event_type":"delete","message":{"old_entry":{"name":"a"}}}"#;
        check(ObjectStore::SeaweedFs, delete, Ok((&[], 1)));
        let rename = br#"{"key":"/buckets/documents/a","event_type":"rename","message":{"old_entry":{"name":"a"},"new_entry":{"name":"b"},"new_parent_path":"/buckets/archive/2026"}}"#;
        check(
            ObjectStore::SeaweedFs,
            rename,
            Ok((&[("archive", "2026/b")], 0)),
        );
        let outside =
            br#"{"key":"/etc/x","event_type":"create","message":{"new_entry":{"name":"x"}}}"#;
        check(ObjectStore::SeaweedFs, outside, Ok((&[("/", "/etc/x")], 0)));
        check(
            ObjectStore::SeaweedFs,
            br#"{"key":"/a","message":{"new_entry":{}}}"#,
            Err("message.new_entry: missing field `name`"),
        );
    }

    #[test]
    fn reports_hash_bucket_and_key() {
        let n = parse(ObjectStore::Minio, &fixture("minio-put.json")).unwrap();
        let r = n.stored[0]
            .report(ObjectStore::Minio, "minio-gra", "document")
            .unwrap();
        let text = format!("{r:?}");
        assert!(
            !text.contains("Rapport") && !text.contains("documents\""),
            "{text}"
        );
        assert_eq!(
            r.object.store.len(),
            "minio/minio-gra/bucket-sha256:".len() + 64
        );
        assert_eq!(r.location, Location::Endpoint("minio-gra".into()));
        let again = n.stored[0]
            .report(ObjectStore::Minio, "minio-gra", "document")
            .unwrap();
        assert_eq!(r.id, again.id, "a redelivery has the same idempotency key");
        let mut other = n.stored[0].clone();
        other.etag = Some("00".into());
        let other = other
            .report(ObjectStore::Minio, "minio-gra", "document")
            .unwrap();
        assert_ne!(r.id, other.id);
        assert_ne!(r.content, other.content);
    }
}
