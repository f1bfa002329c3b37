//! The image an image observation names ([`ImageRef`]), and the grammar its texts must follow.
//!
//! A pod's author writes its image reference, and the API server checks little of it, so the
//! reference is text someone chose. The entry keeps it only when it is an image reference in
//! the grammar of distribution/reference (`reference.go`, v0.5.0: the one container runtimes
//! parse with), narrowed to what can be pulled: `[domain "/"] path [":" tag] ["@" digest]`,
//! the domain a host name, an IPv4 address or a bracketed IPv6 address with an optional port;
//! each path component lowercase letters and digits joined by `.`, `_`, `__` or dashes; the
//! name at most 255 bytes; the tag `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; the digest `sha256:`
//! and 64 or `sha512:` and 128 lowercase hex digits (the algorithms the OCI image
//! specification registers). So no scheme, no `user:password@`, no space, no upper case
//! outside the host and tag, nothing to escape: what is left to a pod's author is a lowercase
//! name, as a pod's own name is.
//!
//! The image ID is what the kubelet reports (`status.containerStatuses[].imageID`): a digest
//! (`sha256:…`, a local image ID) or a name and digest (`repo@sha256:…`, the digest pulled),
//! possibly behind the runtime's prefix `docker-pullable://` (a repository digest) or
//! `docker://` (a local image ID): the dockershim's `DockerPullableImageIDPrefix` and
//! `DockerImageIDPrefix` (kubernetes pkg/kubelet/dockershim, kept by cri-dockerd).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::EntryError;

/// Which image a container runs, in an observation of class [`IMAGE_CLASS`](super::IMAGE_CLASS)
/// the collector (store [`COLLECTOR_STORE`](super::COLLECTOR_STORE)) made: the reference the
/// pod spec names, and the image ID the kubelet reports once it runs it, `None` until then.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The image as the pod spec writes it (`quay.io/keycloak/keycloak:26.0`).
    pub reference: String,
    /// The image ID the kubelet reports (`quay.io/keycloak/keycloak@sha256:…`), once it does.
    pub image_id: Option<String>,
}

impl ImageRef {
    /// An image whose reference is an image reference ([`check_reference`]) and whose image ID,
    /// if any, is an image ID ([`check_image_id`]).
    pub fn new(reference: String, image_id: Option<String>) -> Result<Self, EntryError> {
        let image = Self {
            reference,
            image_id,
        };
        image.check()?;
        Ok(image)
    }

    pub(super) fn check(&self) -> Result<(), EntryError> {
        check_reference("image.reference", &self.reference)?;
        if let Some(id) = &self.image_id {
            check_image_id("image.image_id", id)?;
        }
        Ok(())
    }
}

/// The longest name (domain and path) of a reference, in bytes (`NameTotalLengthMax`).
const MAX_NAME: usize = 255;

/// Checks an image reference ([`ImageRef`] and `docs/ledger.md`).
pub fn check_reference(field: &'static str, s: &str) -> Result<(), EntryError> {
    reference(s, true).map_err(|problem| bad(field, s, problem))
}

/// Checks an image ID as the kubelet reports it: a digest, or a name and digest, possibly
/// behind `docker-pullable://` or `docker://` ([`ImageRef`] and `docs/ledger.md`).
pub fn check_image_id(field: &'static str, s: &str) -> Result<(), EntryError> {
    let rest = s
        .strip_prefix("docker-pullable://")
        .or_else(|| s.strip_prefix("docker://"))
        .unwrap_or(s);
    let checked = if rest.contains('@') {
        reference(rest, false)
    } else {
        digest(rest)
    };
    checked.map_err(|problem| bad(field, s, problem))
}

fn bad(field: &'static str, s: &str, problem: String) -> EntryError {
    // The text is someone's: shown escaped and cut, never whole.
    let shown: String = s.chars().take(80).collect();
    EntryError::Field {
        field,
        problem: format!("{shown:?} is not an image reference: {problem}"),
    }
}

/// `name [":" tag] ["@" digest]`; a tag only if `tag` (an image ID has none).
fn reference(s: &str, tag: bool) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    let (named, pinned) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = pinned {
        digest(d)?;
    } else if !tag {
        return Err("no digest".into());
    }
    // The tag is after the last `:` past the last `/` (a port's `:` comes before a `/`).
    let last = named.rsplit('/').next().unwrap_or(named);
    let (name, written) = match last.rsplit_once(':') {
        Some((_, t)) => (&named[..named.len() - t.len() - 1], Some(t)),
        None => (named, None),
    };
    match written {
        Some(_) if !tag => return Err("a tag where an image ID has none".into()),
        Some(t) => check_tag(t)?,
        None => {}
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "a name of {} bytes, at most {MAX_NAME}",
            name.len()
        ));
    }
    let mut parts = name.split('/').peekable();
    let first = parts.next().unwrap_or_default();
    // The first component is a domain when more follow and it looks like one (the
    // `splitDockerDomain` rule: a `.` or `:`, `localhost`, or upper case).
    let path_start = if parts.peek().is_some()
        && (first.contains(['.', ':', '['])
            || first == "localhost"
            || first.bytes().any(|b| b.is_ascii_uppercase()))
    {
        domain(first)?;
        None
    } else {
        Some(first)
    };
    for component in path_start.into_iter().chain(parts) {
        path_component(component)?;
    }
    Ok(())
}

/// `sha256:` and 64, or `sha512:` and 128, lowercase hex digits.
fn digest(s: &str) -> Result<(), String> {
    let (length, hex) = match s.split_once(':') {
        Some(("sha256", hex)) => (64, hex),
        Some(("sha512", hex)) => (128, hex),
        _ => return Err("a digest other than sha256: or sha512:".into()),
    };
    if hex.len() == length && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!(
            "a digest that is not {length} lowercase hex digits"
        ))
    }
}

fn check_tag(t: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !t.is_empty()
        && t.len() <= 128
        && word(t.as_bytes()[0])
        && t.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err("a tag outside [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}".into())
    }
}

/// `host [":" port]`: a host name, an IPv4 address or a bracketed IPv6 address.
fn domain(d: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| "an unclosed `[`".to_owned())?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| "a bracketed host that is not an IPv6 address".to_owned())?;
        match after {
            "" => return Ok(()),
            _ => (None, after.strip_prefix(':').ok_or("text after `]`")?),
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), p),
            None => (Some(d), ""),
        }
    };
    if let Some(host) = host {
        let name = host.split('.').all(|c| {
            !c.is_empty()
                && c.len() <= 63
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        });
        if !name && host.parse::<Ipv4Addr>().is_err() {
            return Err("a domain that is not a host name or an address".into());
        }
    }
    if d.contains(':') && !d.ends_with(']') {
        let ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        if !ok {
            return Err("a port that is not a number".into());
        }
    }
    Ok(())
}

/// Lowercase letters and digits, joined by `.`, `_`, `__` or one or more `-`.
fn path_component(c: &str) -> Result<(), String> {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let mut i = 0;
    let mut ok = !bytes.is_empty();
    while ok && i < bytes.len() {
        let start = i;
        while i < bytes.len() && alnum(&bytes[i]) {
            i += 1;
        }
        if i == start {
            ok = false;
            break;
        }
        if i == bytes.len() {
            break;
        }
        let sep = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        let separator = &c[sep..i];
        ok = i < bytes.len()
            && (matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-'));
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a path component {c:?} outside lowercase letters and digits joined by . _ __ or -"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    /// What runtimes pull is kept; what only a person's text could be is not.
    #[test]
    fn only_an_image_reference_is_a_reference() {
        for ok in [
            "busybox".to_owned(),
            "postgres:17".into(),
            "library/postgres".into(),
            "quay.io/keycloak/keycloak:26.0".into(),
            "registry.local:5000/hexagone/exo:7.1".into(),
            "Registry/exo:7".into(),
            "localhost/exo:7".into(),
            "37.59.0.1:5000/app:1".into(),
            "[fd00::1]:5000/exo:1".into(),
            "[fd00::1]/exo".into(),
            "ghcr.io/element-hq/synapse:v1.120.0".into(),
            format!("ghcr.io/element-hq/synapse@{SHA}"),
            format!("bitnami/redis:7.4@{SHA}"),
            "onlyoffice/documentserver:8.2.2.1".into(),
            "a__b/c--d/e_f.g:Tag_1.0-rc".into(),
        ] {
            assert_eq!(
                check_reference("r", &ok).map_err(|e| e.to_string()),
                Ok(()),
                "{ok}"
            );
        }
        for (bad, why) in [
            ("", "empty"),
            ("exo 7.1", "path component"),
            ("exo:7.1\"}", "tag"),
            ("Jean_Dupont/exo:1", "domain"),
            ("r.example.fr/Jean_Dupont/exo:1", "path component"),
            ("https://jdupont:ghp_x@registry.example.fr/exo:1", "digest"),
            ("jdupont:secret@registry.example.fr/exo:1", "digest"),
            ("registry.example.fr/exo@sha256:00", "64 lowercase hex"),
            ("registry.example.fr/exo@md5:00", "sha256: or sha512:"),
            ("registry.example.fr:http/exo", "port"),
            ("[not-v6]:5000/exo", "IPv6"),
            ("-bad-.example/exo", "domain"),
            ("r\u{e9}gistre.fr/exo", "domain"),
            ("exo/", "path component"),
            ("exo//x", "path component"),
            ("exo_-x", "path component"),
        ] {
            let err = check_reference("image.reference", bad)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("field `image.reference`: ") && err.contains(why),
                "{bad:?}: {err}"
            );
        }
        let long = format!("r.fr/{}", "a".repeat(MAX_NAME - 4));
        assert!(check_reference("r", &format!("{long}:1")).is_err());
        assert!(check_reference("r", &format!("{}:1", &long[..MAX_NAME])).is_ok());
        assert!(check_reference("r", &format!("exo:{}", "t".repeat(129))).is_err());
        assert!(check_reference("r", &format!("exo:{}", "t".repeat(128))).is_ok());
    }

    /// An image ID is a digest, or a name and digest, behind a runtime's prefix or not.
    #[test]
    fn only_what_a_kubelet_reports_is_an_image_id() {
        for ok in [
            SHA.to_owned(),
            format!("quay.io/keycloak/keycloak@{SHA}"),
            format!("docker-pullable://registry.example.fr/hexagone/exo@{SHA}"),
            format!("docker://{SHA}"),
            format!("[fd00::1]:5000/exo@{SHA}"),
        ] {
            assert_eq!(
                check_image_id("i", &ok).map_err(|e| e.to_string()),
                Ok(()),
                "{ok}"
            );
        }
        for bad in [
            "".to_owned(),
            "sha256:0123".into(),
            format!("quay.io/keycloak/keycloak:26.0@{SHA}"),
            "quay.io/keycloak/keycloak:26.0".into(),
            format!("http://quay.io/keycloak@{SHA}"),
            format!("x@y@{SHA}"),
            format!("jean dupont@{SHA}"),
        ] {
            assert!(check_image_id("i", &bad).is_err(), "{bad:?}");
        }
    }
}
