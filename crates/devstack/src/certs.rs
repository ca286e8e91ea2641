//! A development certificate authority and a certificate for every moat
//! service and for the `dev` strategy (`cargo xtask certs`), in pure Rust
//! with rcgen: `ca.pem` (and `ca-key.pem`), then `<name>.pem` and
//! `<name>-key.pem` for each name.
//!
//! The CA is kept once made, so clients that trust it keep working; a
//! certificate missing, unreadable, or within 30 days of its end is made
//! anew. Service certificates serve and identify (server and client
//! authentication); the strategy's only identifies.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Common name of the development CA.
const CA_NAME: &str = "moat development CA";

/// Who gets a certificate: the file name, the names it holds (the first is
/// its common name and the identity other services check), and whether it
/// serves TLS (a service) or only identifies (a strategy).
pub const IDENTITIES: [(&str, &[&str], bool); 8] = [
    ("gateway", &["moat-gateway", "gateway", "localhost"], true),
    ("state", &["moat-state", "state", "localhost"], true),
    ("collector", &["moat-collector", "collector", "localhost"], true),
    (
        "storage-writer",
        &["moat-storage-writer", "storage-writer", "localhost"],
        true,
    ),
    ("nats", &["moat-nats", "nats", "localhost"], true),
    ("clickhouse", &["moat-clickhouse", "clickhouse", "localhost"], true),
    ("dev", &["dev"], false),
    // The `moat` command line of an operator (NATS user moat-operator).
    ("operator", &["moat-operator"], false),
];

/// The files of one identity.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The development CA and identities in a folder.
#[derive(Debug, Clone)]
pub struct Certs {
    pub dir: PathBuf,
    pub ca: PathBuf,
}

impl Certs {
    /// The certificate and key of `name` (`gateway`, `dev`, …).
    pub fn pair(&self, name: &str) -> Pair {
        Pair {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}-key.pem")),
        }
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "moat");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// What a certificate to issue looks like.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// Common name first, then the other DNS names.
    pub names: &'a [&'a str],
    pub server: bool,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl<'a> Spec<'a> {
    /// Valid from a day ago for `days`.
    pub fn for_days(names: &'a [&'a str], server: bool, days: i64) -> Spec<'a> {
        let now = OffsetDateTime::now_utc();
        Spec {
            names,
            server,
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(days),
        }
    }
}

/// A certificate authority that signs certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

impl Authority {
    /// A new CA valid for `days`, with `name` as its common name.
    pub fn new(name: &str, days: i64) -> Result<Authority, String> {
        let mut params = ca_params();
        params.distinguished_name.push(DnType::CommonName, name);
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(days);
        let key = KeyPair::generate().map_err(|e| format!("generating a CA key: {e}"))?;
        let cert = params.self_signed(&key).map_err(|e| format!("signing the CA: {e}"))?;
        Ok(Authority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The key of a certificate issued by this CA, and the certificate.
    pub fn issue(&self, spec: &Spec<'_>) -> Result<(String, String), String> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spec.names[0]);
        dn.push(DnType::OrganizationName, "moat");
        params.distinguished_name = dn;
        let mut sans = Vec::new();
        for name in spec.names {
            sans.push(SanType::DnsName(
                (*name).try_into().map_err(|e| format!("{name}: {e}"))?,
            ));
        }
        if spec.server {
            sans.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
            sans.push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = if spec.server {
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        params.use_authority_key_identifier_extension = true;
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        let key = KeyPair::generate().map_err(|e| format!("generating a key: {e}"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("signing {}: {e}", spec.names[0]))?;
        Ok((key.serialize_pem(), cert.pem()))
    }
}

/// Writes `text` to `path` readable by the owner only when `secret`.
fn write(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("restricting {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Whether the PEM certificate at `path` is readable and valid for 30 days more.
fn fresh(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let Some(der) = pem_der(&text) else { return false };
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(&der)
        .map(|(_, c)| {
            c.validity().not_after.timestamp() > (OffsetDateTime::now_utc() + Duration::days(30)).unix_timestamp()
        })
        .unwrap_or(false)
}

/// The DER bytes of the first PEM block of `text`.
fn pem_der(text: &str) -> Option<Vec<u8>> {
    x509_parser::pem::parse_x509_pem(text.as_bytes())
        .ok()
        .map(|(_, pem)| pem.contents)
}

/// The CA kept in `dir` (`ca.pem`, `ca-key.pem`), to issue more
/// certificates with: an expired one for a test, say.
pub fn authority(dir: &Path) -> Result<Authority, String> {
    let (ca_path, key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let key = std::fs::read_to_string(&key_path).map_err(|e| format!("reading {}: {e}", key_path.display()))?;
    let key = KeyPair::from_pem(&key).map_err(|e| format!("{}: {e}", key_path.display()))?;
    Ok(Authority {
        issuer: Issuer::new(ca_params(), key),
        cert_pem: std::fs::read_to_string(&ca_path).map_err(|e| format!("reading {}: {e}", ca_path.display()))?,
    })
}

/// Makes what is missing or about to expire under `dir`: the CA, then a
/// certificate for each of [`IDENTITIES`]. Returns what it made, by file.
pub fn ensure(dir: &Path) -> Result<(Certs, Vec<String>), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let (ca_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let mut made = Vec::new();
    let existing = authority(dir).ok().filter(|_| fresh(&ca_path));
    let authority = match existing {
        Some(authority) => authority,
        None => {
            let mut params = ca_params();
            let now = OffsetDateTime::now_utc();
            params.not_before = now - Duration::days(1);
            params.not_after = now + Duration::days(3650);
            let key = KeyPair::generate().map_err(|e| format!("generating the CA key: {e}"))?;
            let cert = params.self_signed(&key).map_err(|e| format!("signing the CA: {e}"))?;
            write(&ca_key_path, &key.serialize_pem(), true)?;
            write(&ca_path, &cert.pem(), false)?;
            made.push("ca.pem".to_owned());
            // Every certificate of an older CA is worthless now.
            for (name, _, _) in IDENTITIES {
                let _ = std::fs::remove_file(dir.join(format!("{name}.pem")));
            }
            Authority {
                cert_pem: cert.pem(),
                issuer: Issuer::new(params, key),
            }
        }
    };
    let certs = Certs {
        dir: dir.to_owned(),
        ca: ca_path,
    };
    for (name, names, server) in IDENTITIES {
        let pair = certs.pair(name);
        if fresh(&pair.cert) && pair.key.is_file() {
            continue;
        }
        let (key, cert) = authority.issue(&Spec::for_days(names, server, 825))?;
        write(&pair.key, &key, true)?;
        write(&pair.cert, &cert, false)?;
        made.push(format!("{name}.pem"));
    }
    Ok((certs, made))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_keeps_the_ca_and_remakes_only_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("moat-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (certs, made) = ensure(&dir).unwrap();
        assert_eq!(made.len(), 1 + IDENTITIES.len(), "{made:?}");
        let ca = std::fs::read_to_string(&certs.ca).unwrap();
        std::fs::remove_file(certs.pair("state").cert).unwrap();
        let (_, made) = ensure(&dir).unwrap();
        assert_eq!(made, ["state.pem"]);
        assert_eq!(std::fs::read_to_string(&certs.ca).unwrap(), ca, "the CA is kept");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
