//! Certificates: the one the gateway serves (read from a TLS handshake
//! that trusts `--ca`) and the strategy's own (`--cert`), each with the
//! days it has left.

use std::sync::Arc;
use std::time::Duration;

use moat_common_types::tls::{CertInfo, cert_info, provider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::Report;
use crate::Global;

/// A certificate with fewer days left than this is a warning.
const WARN_DAYS: i64 = 30;

pub(super) async fn certificates(report: &mut Report, global: &Global) {
    if !global.tls() {
        report.pass(
            "gateway certificate",
            format!("{} is plaintext: no certificate to check", global.gateway),
        );
        return;
    }
    match served(global).await {
        Ok(info) => expiry(report, "gateway certificate", &info, "renew the gateway's tls.cert (it is read again without a restart)"),
        Err(error) => report.fail(
            "gateway certificate",
            error,
            "check --ca is the CA that signed the gateway's certificate, and that the certificate is valid and names the host in --gateway",
        ),
    }
    if let Some(path) = &global.cert {
        let name = "strategy certificate";
        let info = crate::read(path).map_err(|e| e.to_string()).and_then(|pem| {
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
            cert_info(&der).map_err(|e| format!("{}: {e}", path.display()))
        });
        match info {
            Ok(info) => expiry(
                report,
                name,
                &info,
                "issue the strategy a new certificate from the gateway's client CA",
            ),
            Err(error) => report.fail(name, error, "point --cert at the strategy's PEM certificate"),
        }
    }
}

/// Passes, warns or fails on the days `info` has left.
fn expiry(report: &mut Report, name: &str, info: &CertInfo, fix: &str) {
    let now = moat_common_types::now_ms() / 1000;
    let days = (info.not_after - now).div_euclid(86_400);
    let names: Vec<&str> = info.names().collect();
    let detail = format!(
        "{} valid until {} ({days} days left)",
        names.join(", "),
        format_time(info.not_after)
    );
    if info.not_after <= now {
        report.fail(
            name,
            format!("{} expired on {}", names.join(", "), format_time(info.not_after)),
            fix,
        );
    } else if info.not_before > now {
        report.fail(
            name,
            format!(
                "{} is not valid before {}",
                names.join(", "),
                format_time(info.not_before)
            ),
            fix,
        );
    } else if days < WARN_DAYS {
        report.warn(name, detail, fix);
    } else {
        report.pass(name, detail);
    }
}

/// `2027-03-01 12:00 UTC`.
fn format_time(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()),
        Err(_) => format!("{unix} (Unix seconds)"),
    }
}

/// The certificate the gateway's gRPC port serves, from a handshake that
/// trusts `--ca` (or the system's roots).
async fn served(global: &Global) -> Result<CertInfo, String> {
    let url = global
        .gateway
        .split_once("://")
        .map_or(global.gateway.as_str(), |(_, rest)| rest);
    let authority = url.split('/').next().unwrap_or(url);
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .trim_matches(['[', ']']);
    let mut roots = rustls::RootCertStore::empty();
    match &global.ca {
        Some(ca) => {
            let pem = crate::read(ca).map_err(|e| e.to_string())?;
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots.add(cert).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
        }
        None => return Err("TLS without --ca: give the CA of the gateway's certificate to check it".to_owned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(authority))
        .await
        .map_err(|_| format!("no connection to {authority} within 5 s"))?
        .map_err(|e| format!("connecting to {authority}: {e}"))?;
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| format!("no TLS handshake with {authority} within 5 s"))?
    .map_err(|e| format!("TLS handshake with {authority}: {e}"))?;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("the gateway sent no certificate")?;
    cert_info(leaf)
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn unix_times_read_as_utc_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(951_827_696), "2000-02-29 12:34 UTC");
        assert_eq!(format_time(1_795_996_800), "2026-11-30 00:00 UTC");
    }
}
