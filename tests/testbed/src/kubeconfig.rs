//! Kubeconfig files for the components and for the admin, with certificates embedded.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::Error;
use crate::pki::Pair;

/// Renders a kubeconfig for `server` authenticating with the client certificate `client`,
/// trusting the CA `ca_pem`, and writes it to `path`.
pub(crate) fn write(
    path: &Path,
    server: &str,
    ca_pem: &str,
    user: &str,
    client: &Pair,
) -> Result<String, Error> {
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "hexagone-testbed",
            "cluster": {
                "server": server,
                "certificate-authority-data": STANDARD.encode(ca_pem),
            },
        }],
        "users": [{
            "name": user,
            "user": {
                "client-certificate-data": STANDARD.encode(&client.cert_pem),
                "client-key-data": STANDARD.encode(&client.key_pem),
            },
        }],
        "contexts": [{
            "name": "hexagone-testbed",
            "context": { "cluster": "hexagone-testbed", "user": user },
        }],
        "current-context": "hexagone-testbed",
    });
    // JSON is valid YAML, which every kubeconfig reader accepts.
    let text = serde_json::to_string_pretty(&doc).map_err(|e| {
        Error::io(
            format!("rendering kubeconfig {}", path.display()),
            std::io::Error::other(e),
        )
    })?;
    std::fs::write(path, &text).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(text)
}
