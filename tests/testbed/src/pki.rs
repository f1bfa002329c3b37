//! Certificates and keys of one test bed: a CA, serving certificates for loopback, client
//! certificates per component and the service-account signing key pair, all made with rcgen.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::Error;

/// A certificate and its private key, as PEM text and as files.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The certificate authority that signs every other certificate of one test bed.
pub(crate) struct Authority {
    cert: Certificate,
    key: KeyPair,
    pub cert_file: PathBuf,
}

fn cert_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::Certificate { what, source }
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

impl Authority {
    /// Creates a fresh CA and writes `ca.crt` into `dir`.
    pub fn create(dir: &Path) -> Result<Self, Error> {
        let key = KeyPair::generate().map_err(cert_err("CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("CA"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "hexagone-testbed-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(cert_err("CA"))?;
        let cert_file = dir.join("ca.crt");
        write(&cert_file, &cert.pem())?;
        Ok(Authority {
            cert,
            key,
            cert_file,
        })
    }

    /// The CA certificate as PEM text.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A serving certificate for `127.0.0.1` and `localhost` (plus the in-cluster names of the
    /// API server), written as `<name>.crt` / `<name>.key` in `dir`.
    pub fn serving(&self, dir: &Path, name: &'static str) -> Result<Pair, Error> {
        let mut params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ])
        .map_err(cert_err("serving certificate"))?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(dir, name, params, "serving certificate")
    }

    /// A client certificate for user `cn` in group `org` (if any).
    pub fn client(
        &self,
        dir: &Path,
        name: &str,
        cn: &str,
        org: Option<&str>,
    ) -> Result<Pair, Error> {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(cert_err("client certificate"))?;
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(org) = org {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(dir, name, params, "client certificate")
    }

    fn sign(
        &self,
        dir: &Path,
        name: &str,
        params: CertificateParams,
        what: &'static str,
    ) -> Result<Pair, Error> {
        let key = KeyPair::generate().map_err(cert_err(what))?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(cert_err(what))?;
        let pair = Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_file: dir.join(format!("{name}.crt")),
            key_file: dir.join(format!("{name}.key")),
        };
        write(&pair.cert_file, &pair.cert_pem)?;
        write(&pair.key_file, &pair.key_pem)?;
        Ok(pair)
    }
}

/// The key pair the API server signs service-account tokens with (and the controller-manager
/// uses for its token controller).
pub(crate) struct ServiceAccountKeys {
    pub private_file: PathBuf,
    pub public_file: PathBuf,
}

impl ServiceAccountKeys {
    /// Creates `sa.key` (PKCS#8 private key) and `sa.pub` (public key) in `dir`.
    pub fn create(dir: &Path) -> Result<Self, Error> {
        let key = KeyPair::generate().map_err(cert_err("service-account key"))?;
        let keys = ServiceAccountKeys {
            private_file: dir.join("sa.key"),
            public_file: dir.join("sa.pub"),
        };
        write(&keys.private_file, &key.serialize_pem())?;
        write(&keys.public_file, &key.public_key_pem())?;
        Ok(keys)
    }
}
