//! The canonical encoding of entries and bodies: one line of JSON, keys in a fixed order, no
//! whitespace; the bytes an entry's leaf hash is taken of.

use std::fmt::Write as _;

use super::{Body, ENTRY_VERSION, EncodedBody, Entry, Locality, ObjectId, Observation, Timestamp};
use crate::tree::{Hash, leaf_hash};

impl Body {
    /// The canonical encoding of this body: the part of an entry's encoding after its `prev`
    /// (see [`Entry::encode_with`]). Bodies are encoded apart, on several threads, while one
    /// sequencer chains them.
    pub fn encode(&self) -> EncodedBody {
        // Observations are about 2 to 3 KB: one allocation, no regrowth.
        let mut out = String::with_capacity(4096);
        self.encode_into(&mut out);
        EncodedBody::whole(out)
    }

    pub(super) fn encode_into(&self, out: &mut String) {
        match self {
            Body::Observation(o) => encode_observation_body(out, o),
            Body::KeyRotation { new_key } => {
                out.push_str("\",\"kind\":\"key-rotation\",\"new_key\":");
                push_str(out, new_key);
                out.push('}');
            }
            Body::Removal {
                object,
                observed_at,
                request,
            } => {
                out.push_str("\",\"kind\":\"removal\"");
                push_object(out, object);
                out.push_str(",\"observed_at\":\"");
                observed_at.write(out);
                out.push('"');
                push_request(out, request.as_ref());
                out.push('}');
            }
            Body::Policy {
                object,
                digest,
                observed_at,
                request,
            } => {
                out.push_str("\",\"kind\":\"policy\"");
                push_object(out, object);
                out.push_str(",\"digest\":");
                push_str(out, digest);
                out.push_str(",\"observed_at\":\"");
                observed_at.write(out);
                out.push('"');
                push_request(out, request.as_ref());
                out.push('}');
            }
        }
    }
}

impl Entry {
    /// The canonical encoding (one JSON line, without newline).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(2048);
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut String) {
        Self::encode_head(self.seq, self.time, &self.prev, out);
        self.body.encode_into(out);
    }

    /// Appends the canonical encoding of the entry made of `seq`, `time`, `prev` and a body
    /// encoded already ([`Body::encode`]) to `out`.
    pub fn encode_with(
        seq: u64,
        time: Timestamp,
        prev: &Hash,
        body: &EncodedBody,
        out: &mut String,
    ) {
        Self::encode_head(seq, time, prev, out);
        body.write(out);
    }

    pub(super) fn encode_head(seq: u64, time: Timestamp, prev: &Hash, out: &mut String) {
        let _ = write!(out, "{{\"v\":{ENTRY_VERSION},\"seq\":{seq},\"time\":\"");
        time.write(out);
        out.push_str("\",\"prev\":\"");
        push_hex(out, prev);
    }

    /// RFC 6962 leaf hash of the canonical encoding.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(self.encode().as_bytes())
    }
}

fn push_opt_country(out: &mut String, c: Option<[u8; 2]>) {
    match c {
        Some([a, b]) => {
            out.push('"');
            out.push(a as char);
            out.push(b as char);
            out.push('"');
        }
        None => out.push_str("null"),
    }
}

fn push_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.push_str("null"),
    }
}

/// What an observation body's encoding starts with, after the entry's `prev`.
pub(super) const OBSERVATION_BODY: &str = "\",\"kind\":\"observation\"";

/// The canonical encoding of `Body::Observation(o)`.
pub(super) fn encode_observation_body(out: &mut String, o: &Observation) {
    encode_observation_head(out, o);
    encode_locality_tail(out, &o.locality);
    encode_observation_end(out, o);
}

/// An object's identity keys: `"store"`, `"class"`, `"object"`, each after a comma.
fn push_object(out: &mut String, object: &ObjectId) {
    out.push_str(",\"store\":");
    push_str(out, &object.store);
    out.push_str(",\"class\":");
    push_str(out, &object.class);
    out.push_str(",\"object\":");
    push_str(out, &object.id);
}

/// An observation body from its start to its `"observed_at"` (its value's closing quote
/// included): what differs from one object to the next at the same place.
pub(super) fn encode_observation_head(out: &mut String, o: &Observation) {
    let l = &o.locality;
    out.push_str(OBSERVATION_BODY);
    push_object(out, &o.object);
    out.push_str(",\"content\":\"");
    push_hex(out, &o.content);
    out.push('"');
    if let Some(image) = &o.image {
        out.push_str(",\"image\":{\"reference\":");
        push_str(out, &image.reference);
        out.push_str(",\"image_id\":");
        push_opt_str(out, image.image_id.as_deref());
        out.push('}');
    }
    out.push_str(",\"subject\":");
    push_str(out, &l.subject);
    out.push_str(",\"subject_kind\":\"");
    out.push_str(l.subject_kind.as_str());
    out.push_str("\",\"observed_at\":\"");
    l.observed_at.write(out);
    out.push('"');
}

/// An observation body's keys from `"evidence"` to `"databases"`, after a comma: what the
/// engine made of the place, the same text for every object judged there the same way
/// ([`super::Judged`]).
pub(super) fn encode_locality_tail(out: &mut String, l: &Locality) {
    out.push_str(",\"evidence\":[");
    for (i, e) in l.evidence.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"source\":\"");
        out.push_str(e.source.as_str());
        out.push_str("\",\"controller\":\"");
        out.push_str(e.controller.as_str());
        out.push_str("\",\"country\":");
        push_opt_country(out, e.country);
        out.push_str(",\"asn\":");
        match e.asn {
            Some(n) => push_digits(out, u64::from(n), 1),
            None => out.push_str("null"),
        }
        out.push_str(",\"assessment\":\"");
        out.push_str(e.assessment.as_str());
        out.push_str("\",\"rule\":");
        push_opt_str(out, e.assessment.rule());
        out.push_str(",\"fact\":");
        out.push_str(e.fact.as_str());
        out.push_str(",\"sentence\":");
        push_str(out, &e.sentence);
        out.push('}');
    }
    out.push_str("],\"verdict\":\"");
    out.push_str(l.verdict.as_str());
    out.push_str("\",\"reasons\":[");
    for (i, r) in l.verdict.reasons().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, r);
    }
    out.push_str("],\"policy\":");
    push_str(out, &l.policy.classification);
    out.push_str(",\"policy_digest\":");
    push_str(out, &l.policy.digest);
    out.push_str(",\"extra_eu_control\":");
    push_opt_str(out, l.policy.extra_eu_control.as_deref());
    out.push_str(",\"databases\":[");
    for (i, d) in l.databases.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"role\":");
        push_str(out, &d.role);
        out.push_str(",\"file\":");
        push_str(out, &d.file);
        out.push_str(",\"format\":");
        push_str(out, &d.format);
        out.push_str(",\"built\":");
        push_opt_str(out, d.built.as_deref());
        out.push_str(",\"sha256\":\"");
        push_hex(out, &d.sha256);
        out.push_str("\"}");
    }
    out.push(']');
}

/// An observation body's end: its `"request"` if it records one, and the closing brace.
pub(super) fn encode_observation_end(out: &mut String, o: &Observation) {
    push_request(out, o.request.as_ref());
    out.push('}');
}

/// The last key of an observation, removal or policy that records a writer's request,
/// `,"request":"<64 hex>"`; nothing at all for one that records none (so entries without it are
/// encoded as they were before the key existed).
fn push_request(out: &mut String, request: Option<&Hash>) {
    if let Some(r) = request {
        out.push_str(",\"request\":\"");
        push_hex(out, r);
        out.push('"');
    }
}

/// Writes `v` in decimal, zero-padded to `width`.
pub(super) fn push_digits(out: &mut String, v: u64, width: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while buf.len() - i < width {
        i -= 1;
        buf[i] = b'0';
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    // Through a stack buffer: no allocation per digest, in the hot path of entry encoding.
    for part in bytes.chunks(32) {
        let mut buf = [0u8; 64];
        let hex = &mut buf[..2 * part.len()];
        hex::encode_to_slice(part, hex).expect("the buffer holds two digits per byte");
        out.push_str(std::str::from_utf8(hex).expect("hex digits are ASCII"));
    }
}

/// Writes a JSON string; only `"` and `\` are escaped because control characters are refused.
pub(super) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let mut rest = s;
    // A byte scan: both characters are ASCII, so every match is at a character boundary.
    while let Some(i) = memchr::memchr2(b'"', b'\\', rest.as_bytes()) {
        out.push_str(&rest[..i]);
        out.push('\\');
        out.push_str(&rest[i..=i]);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::testing::{check, sample};
    use crate::entry::{GENESIS_PREV, ObjectId, fixture, request_hash};

    #[test]
    fn canonical_encoding_is_stable() {
        let e = sample(5);
        let text = e.encode();
        assert_eq!(
            text,
            concat!(
                r#"{"v":2,"seq":5,"time":"2025-11-28T03:20:00.123Z","prev":"0707070707070707070707070707070707070707070707070707070707070707","#,
                r#""kind":"observation","store":"minio/documents","class":"document","object":"spaces/0/doc-0","#,
                r#""content":"3e7077fd2f66d689e0cee6a7cf5b37bf2dca7c979af356d0a31cbc5c85605c7d","#,
                r#""subject":"node-0","subject_kind":"node","observed_at":"2025-11-28T03:20:00.000Z","evidence":["#,
                r#"{"source":"topologyLabel","controller":"node","country":"FR","asn":null,"assessment":"supports","rule":null,"fact":{"key":"topology.kubernetes.io/region","kind":"topologyLabel","value":"fr-par"},"sentence":"topology label topology.kubernetes.io/region=fr-par (set by the node) is in FR by the policy's region table, an allowed country"},"#,
                r#"{"source":"attestation","controller":"securityOfficer","country":null,"asn":null,"assessment":"inconclusive","rule":null,"fact":{"kind":"attestation","label":null,"status":{"state":"missing"}},"sentence":"no NodeAttestation names the node, which proves nothing"},"#,
                r#"{"source":"address","controller":"node","country":"FR","asn":null,"assessment":"supports","rule":null,"fact":{"address":"51.15.0.1","country":"FR","kind":"address"},"sentence":"address 51.15.0.1 is in FR, an allowed country"},"#,
                r#"{"source":"networkOperator","controller":"node","country":"FR","asn":12876,"assessment":"supports","rule":null,"fact":{"address":"51.15.0.1","asn":12876,"kind":"networkOperator","organisation":"Scaleway SAS","registered":"FR"},"sentence":"network AS12876 (Scaleway SAS) of address 51.15.0.1 is registered in FR, an accepted network operator"}],"#,
                r#""verdict":"compliant","reasons":[],"policy":"Standard (France)","policy_digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","extra_eu_control":null,"#,
                r#""databases":[{"role":"location","file":"geo-whois-asn-country.mmdb","format":"MaxMind DB geo-whois-asn-country","built":"2026-11-01T00:00:00Z","sha256":"1111111111111111111111111111111111111111111111111111111111111111"}]}"#
            )
        );
        assert_eq!(Entry::decode(text.as_bytes()).unwrap(), e);
        check(&text, None);
        let rot = Entry {
            seq: 9,
            time: Timestamp(0),
            prev: GENESIS_PREV,
            body: Body::KeyRotation {
                new_key: "log+01020304+AQID".into(),
            },
        };
        check(&rot.encode(), None);
        let removal = Entry {
            seq: 10,
            time: Timestamp(1_000),
            prev: GENESIS_PREV,
            body: Body::Removal {
                object: ObjectId {
                    store: "kubernetes".into(),
                    class: "pod".into(),
                    id: "pod/intranet/exo-0".into(),
                },
                observed_at: Timestamp(999),
                request: None,
            },
        };
        let removed = removal.encode();
        assert!(
            removed.ends_with(
                r#","kind":"removal","store":"kubernetes","class":"pod","object":"pod/intranet/exo-0","observed_at":"1970-01-01T00:00:00.999Z"}"#
            ),
            "{removed}"
        );
        assert_eq!(Entry::decode(removed.as_bytes()).unwrap(), removal);
        check(&removed, None);
        // A removal carries no place, evidence or verdict: one given is refused.
        assert!(
            Entry::decode(
                removed
                    .replace(
                        r#","observed_at""#,
                        r#","verdict":"compliant","observed_at""#
                    )
                    .as_bytes()
            )
            .is_err()
        );
        for i in 0..14 {
            let e = Entry {
                body: fixture::observation(i),
                ..sample(i)
            };
            check(&e.encode(), None);
        }
        assert_eq!(
            hex::encode(e.leaf_hash()),
            hex::encode(leaf_hash(text.as_bytes()))
        );
    }

    /// A policy entry: the policy's identity, its digest, when it was seen, then the request
    /// like a removal's; decoding refuses a digest of another form, a missing one, and keys
    /// that belong to other kinds.
    #[test]
    fn a_policy_entry_is_encoded_in_one_way_and_decoded_strictly() {
        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let object = ObjectId::new(
            "kubernetes".into(),
            crate::entry::POLICY_CLASS.into(),
            "diffusion-restreinte".into(),
        )
        .unwrap();
        let policy = Entry {
            seq: 11,
            time: Timestamp(1_000),
            prev: GENESIS_PREV,
            body: Body::policy(object.clone(), digest.into(), Timestamp(999)).unwrap(),
        };
        let text = policy.encode();
        assert_eq!(
            text,
            concat!(
                r#"{"v":2,"seq":11,"time":"1970-01-01T00:00:01.000Z","prev":"0000000000000000000000000000000000000000000000000000000000000000","#,
                r#""kind":"policy","store":"kubernetes","class":"localitypolicy","object":"diffusion-restreinte","#,
                r#""digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","observed_at":"1970-01-01T00:00:00.999Z"}"#
            )
        );
        assert_eq!(Entry::decode(text.as_bytes()).unwrap(), policy);
        check(&text, None);
        assert_eq!(policy.body.object(), Some(&object));
        // With a request: last, as a removal's, and it is what the body records.
        let request = request_hash("local append 1");
        let with = Entry {
            body: policy.body.clone().with_request(Some(request)),
            ..policy.clone()
        };
        let requested = with.encode();
        assert_eq!(
            requested,
            format!(
                "{}{}",
                text.strip_suffix('}').unwrap(),
                format_args!(r#","request":"{}"}}"#, hex::encode(request))
            )
        );
        assert_eq!(with.body.request(), Some(&request));
        check(&requested, None);
        // The digest is the policy's one spelling: `sha256:` and 64 lowercase hex digits.
        for bad in [
            digest.replace("sha256:", "SHA256:"),
            digest.replace("sha256:", ""),
            digest.replace("e3b0", "E3B0"),
            format!("{digest}0"),
            digest[..70].to_string(),
        ] {
            check(&text.replace(digest, &bad), Some("field `digest`"));
            assert!(Body::policy(object.clone(), bad, Timestamp(0)).is_err());
        }
        check(
            &text.replace(&format!(r#""digest":"{digest}","#), ""),
            Some("field `digest`: missing"),
        );
        check(
            &text.replace(
                "\"observed_at\":\"1970-01-01T00:00:00.999Z\"",
                "\"observed_at\":\"1970\"",
            ),
            Some("observed_at"),
        );
        check(
            &text.replace("\"store\":\"kubernetes\"", "\"store\":\"\""),
            Some("empty"),
        );
        // Keys of other kinds: refused (an entry is its canonical bytes, no key more).
        for foreign in [
            r#""verdict":"compliant","#,
            r#""new_key":"log+01020304+AQID","#,
            r#""policy_digest":"sha256:00","#,
            r#""content":"0707070707070707070707070707070707070707070707070707070707070707","#,
        ] {
            let text = text.replace(r#""digest""#, &format!(r#"{foreign}"digest""#));
            assert!(Entry::decode(text.as_bytes()).is_err(), "{text}");
        }
        // Keys in another order, or a digest in a removal: not canonical.
        check(
            &text.replace(
                r#""digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","observed_at":"1970-01-01T00:00:00.999Z""#,
                r#""observed_at":"1970-01-01T00:00:00.999Z","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855""#,
            ),
            Some("canonical"),
        );
        check(
            &text.replace(r#""kind":"policy""#, r#""kind":"removal""#),
            Some("canonical"),
        );
        check(
            &text.replace(r#""kind":"policy""#, r#""kind":"policies""#),
            Some("removal, policy"),
        );
        // A retried report of the policy is the same report when the digest is.
        let later = Body::policy(object.clone(), digest.into(), Timestamp(5_000)).unwrap();
        assert!(policy.body.same_report(&later));
        let changed = Body::policy(object, digest.replace("e3b0", "e3b1"), Timestamp(999)).unwrap();
        assert!(!policy.body.same_report(&changed));
    }

    /// An observation or removal recording a writer's request ends with `"request"`, the hash
    /// of the scoped key; the same entry without it is byte for byte the entry of before the
    /// key existed (the text above), so ledgers written then verify unchanged.
    #[test]
    fn a_request_is_the_last_key_and_absent_when_none() {
        let plain = sample(5);
        let request = request_hash("backup.pg observations retry-1");
        assert_eq!(
            hex::encode(request),
            "15ca8c68c26ae4283392ea6340a075728af00b0818f64c175e3ccc6935721017"
        );
        let with = Entry {
            body: plain.body.clone().with_request(Some(request)),
            ..plain.clone()
        };
        let text = with.encode();
        assert_eq!(
            text,
            format!(
                "{}{}",
                plain.encode().strip_suffix('}').unwrap(),
                r#","request":"15ca8c68c26ae4283392ea6340a075728af00b0818f64c175e3ccc6935721017"}"#
            )
        );
        assert_eq!(Entry::decode(text.as_bytes()).unwrap(), with);
        assert_eq!(with.body.request(), Some(&request));
        assert_ne!(with.leaf_hash(), plain.leaf_hash(), "the request is signed");
        check(&text, None);
        // The body as a submission encodes it ahead of sealing: the same bytes.
        let Body::Observation(o) = plain.body.clone() else {
            unreachable!()
        };
        let (_, encoded) =
            Observation::new_encoded(o.object, o.content, None, o.locality, Some(request)).unwrap();
        assert_eq!(encoded, with.body.encode());
        let removal = Entry {
            seq: 3,
            time: Timestamp(1_000),
            prev: GENESIS_PREV,
            body: Body::Removal {
                object: ObjectId {
                    store: "minio/documents".into(),
                    class: "document".into(),
                    id: "spaces/0/doc-0".into(),
                },
                observed_at: Timestamp(999),
                request: Some(request),
            },
        };
        let removed = removal.encode();
        assert!(
            removed.ends_with(
                r#","observed_at":"1970-01-01T00:00:00.999Z","request":"15ca8c68c26ae4283392ea6340a075728af00b0818f64c175e3ccc6935721017"}"#
            ),
            "{removed}"
        );
        assert_eq!(Entry::decode(removed.as_bytes()).unwrap(), removal);
        // `null`, another spelling, or a request on a rotation: refused.
        check(
            &plain.encode().replace("}]}", r#"}],"request":null}"#),
            Some("canonical"),
        );
        check(
            &text.replace(r#""request":"15ca"#, r#""request":"15CA"#),
            Some("field `request`"),
        );
        let rotation = Entry {
            seq: 9,
            time: Timestamp(0),
            prev: GENESIS_PREV,
            body: Body::KeyRotation {
                new_key: "log+01020304+AQID".into(),
            },
        }
        .encode();
        check(
            &rotation.replace(
                "\"}",
                r#"","request":"15ca8c68c26ae4283392ea6340a075728af00b0818f64c175e3ccc6935721017"}"#,
            ),
            Some("not allowed in a key rotation"),
        );
    }

    /// The image an image observation names comes right after its content, reference then
    /// image ID (`null` until the kubelet reports one); an entry without an image has no such
    /// key, and decoding refuses every other spelling, an image where none belongs, and one
    /// that is not an image reference.
    #[test]
    fn an_image_is_encoded_after_the_content_in_one_way() {
        let entry = Entry {
            seq: 4,
            time: Timestamp(1_764_300_000_123),
            prev: GENESIS_PREV,
            body: fixture::image_observation(0),
        };
        let text = entry.encode();
        let at = text.find(r#","image":{"reference":"registry.example.fr/hexagone/exo:7.1","image_id":"registry.example.fr/hexagone/exo@sha256:"#).unwrap();
        let content = text.find(r#","content":""#).unwrap();
        assert_eq!(at, content + r#","content":""#.len() + 64 + 1, "{text}");
        assert!(
            text[at..].contains(r#""},"subject":"registry.example.fr","subject_kind":"endpoint""#),
            "{text}"
        );
        assert_eq!(Entry::decode(text.as_bytes()).unwrap(), entry);
        check(&text, None);
        let Body::Observation(o) = &entry.body else {
            unreachable!()
        };
        let mut unreported = o.clone();
        unreported.image.as_mut().unwrap().image_id = None;
        let unreported = Entry {
            body: Body::Observation(unreported),
            ..entry.clone()
        }
        .encode();
        assert!(
            unreported.contains(r#"exo:7.1","image_id":null},"subject""#),
            "{unreported}"
        );
        check(&unreported, None);
        // Another spelling of the same image: refused.
        check(
            &unreported.replace(r#","image_id":null"#, ""),
            Some("canonical"),
        );
        check(
            &text.replace(
                r#""image":{"reference""#,
                r#""image":{"ref":"x","reference""#,
            ),
            Some("unknown field `ref`"),
        );
        // No image is no key, not `null`.
        let plain = sample(1).encode();
        check(
            &plain.replace(r#"","subject""#, r#"","image":null,"subject""#),
            Some("canonical"),
        );
        // An image on a writer's document: refused by the rule, not only by the encoding.
        check(
            &plain.replace(
                r#"","subject""#,
                r#"","image":{"reference":"exo:7","image_id":null},"subject""#,
            ),
            Some("field `image`: only an observation of class"),
        );
        // An image reference that smuggles another text, or one on a removal: refused.
        check(
            &text.replace("hexagone/exo:7.1", "hexagone/exo:7.1 jdupont"),
            Some("field `image.reference`"),
        );
        let removal = Entry {
            seq: 3,
            time: Timestamp(1_000),
            prev: GENESIS_PREV,
            body: Body::Removal {
                object: o.object.clone(),
                observed_at: Timestamp(999),
                request: None,
            },
        }
        .encode();
        check(
            &removal.replace(
                r#","observed_at""#,
                r#","image":{"reference":"exo:7","image_id":null},"observed_at""#,
            ),
            Some("canonical"),
        );
    }
}
