//! A minimal blocking HTTP/1.0 client, enough for health probes and
//! ClickHouse queries without pulling an HTTP stack into xtask.
//!
//! An address written `https://host:port` is probed over TLS without
//! checking the server's certificate, as a kubelet probes: it asks whether
//! the service is up, not who it is.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn request(addr: &str, method: &str, path: &str, body: &[u8], timeout: Duration) -> Result<HttpResponse> {
    let (tls, addr) = match addr.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, addr.strip_prefix("http://").unwrap_or(addr)),
    };
    let target: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to no address"))?;
    let tcp = TcpStream::connect_timeout(&target, timeout).map_err(|e| format!("connect to {addr}: {e}"))?;
    tcp.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let mut stream: Box<dyn ReadWrite> = if tls {
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a valid name");
        let connection = rustls::ClientConnection::new(probe_config(), name).map_err(|e| e.to_string())?;
        Box::new(rustls::StreamOwned::new(connection, tcp))
    } else {
        Box::new(tcp)
    };
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("{method} {addr}{path}: {e}"))?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify after its answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(format!("{method} {addr}{path}: reading the answer: {e}")),
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {addr}{path}: not an HTTP answer: {head:.80}"))?;
    Ok(HttpResponse {
        status,
        body: body.to_owned(),
    })
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// TLS that takes any server certificate: for probes only.
fn probe_config() -> std::sync::Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

/// `GET http://addr/path` with a timeout on connect, write and read.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<HttpResponse> {
    request(addr, "GET", path, &[], timeout)
}

/// `POST http://addr/path` with `body`.
pub fn http_post(addr: &str, path: &str, body: &str, timeout: Duration) -> Result<HttpResponse> {
    request(addr, "POST", path, body.as_bytes(), timeout)
}

/// Polls `GET addr/path` until it answers 2xx or `deadline` passes; the
/// error carries the last answer or connection error.
pub fn wait_http_ok(addr: &str, path: &str, deadline: Duration) -> Result<HttpResponse> {
    let start = Instant::now();
    let mut last = String::from("no attempt");
    while start.elapsed() < deadline {
        match http_get(addr, path, Duration::from_secs(2)) {
            Ok(r) if r.is_success() => return Ok(r),
            Ok(r) => last = format!("HTTP {}: {}", r.status, r.body.trim()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "http://{addr}{path} not healthy after {:.1}s: {last}",
        deadline.as_secs_f64()
    ))
}
