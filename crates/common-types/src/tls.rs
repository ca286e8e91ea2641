//! TLS for moat's servers (rustls with ring): the certificate and key come
//! from PEM files and are read again when they change, so that new
//! connections get the new certificate while open ones keep theirs. A
//! client CA turns on client certificates (mutual TLS).
//!
//! Every handshake that fails is refused with a reason: a plaintext client
//! (told in its own protocol that the port speaks TLS), bytes that are not
//! TLS, a name the certificate does not hold (SNI), a client certificate
//! that is missing, expired or from another CA, or no handshake in time.
//! Each refusal counts in `moat_tls_handshake_failures_total{listener,
//! reason}` and is logged (at most once a second per reason), and the
//! server goes on serving.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::config::ConfigError;
use crate::http::register;

/// Time a client has from connecting to a finished handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS of one service's listeners (`[tls]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTlsConfig {
    /// PEM certificate chain, leaf first. Empty: no TLS.
    pub cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`.
    pub key: String,
    /// PEM CA certificates that sign client certificates. Set: clients
    /// are asked for a certificate (mutual TLS).
    pub client_ca: String,
    /// With `client_ca`: calls without a client certificate are refused
    /// (UNAUTHENTICATED, saying so). The handshake itself lets them in, so
    /// that probes reach `/health` and `/metrics`, but a certificate that
    /// is presented must verify or the handshake fails.
    pub require_client_cert: bool,
    /// Names (DNS subject alternative name or common name) a client
    /// certificate must hold; empty: any certificate `client_ca` signed.
    pub allowed_clients: Vec<String>,
    /// Serve without TLS. It must be said explicitly: a listener with
    /// neither `cert` nor `plaintext = true` refuses to start.
    pub plaintext: bool,
    /// How often the files are checked for changes.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for ServerTlsConfig {
    fn default() -> Self {
        ServerTlsConfig {
            cert: String::new(),
            key: String::new(),
            client_ca: String::new(),
            require_client_cert: true,
            allowed_clients: Vec::new(),
            plaintext: false,
            reload_interval: Duration::from_secs(10),
        }
    }
}

impl ServerTlsConfig {
    /// The plaintext development setting.
    pub fn plaintext() -> ServerTlsConfig {
        ServerTlsConfig {
            plaintext: true,
            ..ServerTlsConfig::default()
        }
    }

    /// `plaintext`, `tls` or `mtls`, for logs and status lines.
    pub fn mode(&self) -> &'static str {
        match (self.cert.is_empty(), self.client_ca.is_empty()) {
            (true, _) => "plaintext",
            (false, true) => "tls",
            (false, false) => "mtls",
        }
    }

    /// Checks the settings of section `at` (`tls`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.cert.is_empty() && !self.plaintext {
            return Err(ConfigError::invalid(
                &format!("{at}.cert"),
                "\"\"",
                &format!("a PEM certificate file (with {at}.key), or {at}.plaintext = true to serve without TLS"),
            ));
        }
        if !self.cert.is_empty() && self.plaintext {
            return Err(ConfigError::invalid(
                &format!("{at}.plaintext"),
                true,
                &format!("false while {at}.cert is set (TLS or plaintext, not both)"),
            ));
        }
        if !self.cert.is_empty() && self.key.is_empty() {
            return Err(ConfigError::invalid(
                &format!("{at}.key"),
                "\"\"",
                &format!("the PEM private key of {at}.cert"),
            ));
        }
        if !self.allowed_clients.is_empty() && self.client_ca.is_empty() {
            return Err(ConfigError::invalid(
                &format!("{at}.client_ca"),
                "\"\"",
                &format!("the CA of client certificates, since {at}.allowed_clients is set"),
            ));
        }
        if self.reload_interval < Duration::from_millis(100) {
            return Err(ConfigError::invalid_duration(
                &format!("{at}.reload_interval"),
                self.reload_interval,
                "at least 100ms, such as \"10s\"",
            ));
        }
        Ok(())
    }
}

/// TLS of a client of another moat service (`[state.tls]` of the
/// gateway): the CA that signs the server's certificate, and the client's
/// own certificate and key for mutual TLS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// PEM CA certificates the server's certificate must chain to. Empty:
    /// no TLS (the endpoint is `http://`).
    pub ca: String,
    /// PEM certificate chain and key this client presents.
    pub cert: String,
    pub key: String,
    /// The name the server's certificate must hold; empty: the endpoint's host.
    pub server_name: String,
}

impl ClientTlsConfig {
    pub fn enabled(&self) -> bool {
        !self.ca.is_empty()
    }

    /// Checks section `at` against the endpoint it is for.
    pub fn validate(&self, at: &str, endpoint: &str) -> Result<(), ConfigError> {
        let https = endpoint.starts_with("https://");
        if https != self.enabled() {
            return Err(ConfigError::invalid(
                &format!("{at}.ca"),
                format!("\"{}\"", self.ca),
                &format!("a CA file exactly when the endpoint is https:// (it is \"{endpoint}\")"),
            ));
        }
        if self.cert.is_empty() != self.key.is_empty() {
            return Err(ConfigError::invalid(
                &format!("{at}.key"),
                format!("\"{}\"", self.key),
                &format!("both {at}.cert and {at}.key, or neither"),
            ));
        }
        Ok(())
    }

    /// tonic's TLS settings from the files; `None` without TLS.
    pub fn tonic(&self) -> Result<Option<tonic::transport::ClientTlsConfig>, String> {
        if !self.enabled() {
            return Ok(None);
        }
        let read = |path: &str| std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"));
        let mut tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(&self.ca)?));
        if !self.cert.is_empty() {
            tls = tls.identity(tonic::transport::Identity::from_pem(
                read(&self.cert)?,
                read(&self.key)?,
            ));
        }
        if !self.server_name.is_empty() {
            tls = tls.domain_name(&self.server_name);
        }
        Ok(Some(tls))
    }
}

/// The crypto every moat TLS endpoint uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file, leaf first.
pub fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("reading certificates from {path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("reading certificates from {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("reading a private key from {path}: {e}"))
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    pub common_name: Option<String>,
    /// End of validity, in seconds since the Unix epoch.
    pub not_after: i64,
    /// Start of validity, in seconds since the Unix epoch.
    pub not_before: i64,
}

/// Parses the names and validity of a DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                dns_names.push((*dns).to_owned());
            }
        }
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Ok(CertInfo {
        dns_names,
        common_name,
        not_after: cert.validity().not_after.timestamp(),
        not_before: cert.validity().not_before.timestamp(),
    })
}

impl CertInfo {
    /// Every name the certificate holds: its DNS names, then its common
    /// name when it is not one of them.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let cn = self
            .common_name
            .as_deref()
            .filter(|cn| !self.dns_names.iter().any(|n| n == cn));
        self.dns_names.iter().map(String::as_str).chain(cn)
    }

    /// Whether the certificate holds one of `allowed`.
    pub fn is_one_of(&self, allowed: &[String]) -> bool {
        self.names().any(|n| allowed.iter().any(|a| name_matches(a, n)))
    }
}

/// Whether certificate name `pattern` (`*.example.org` or exact) covers `name`.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(name),
    }
}

/// Hands out the one certificate, unless the client asked (SNI) for a
/// name the certificate does not hold.
#[derive(Debug)]
struct Resolver {
    key: Arc<CertifiedKey>,
    /// The certificate's DNS names; empty: any name is served.
    names: Vec<String>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match hello.server_name() {
            Some(sni) if !self.names.is_empty() && !self.names.iter().any(|n| name_matches(n, sni)) => None,
            _ => Some(self.key.clone()),
        }
    }
}

/// The TLS metrics of a service, shared by its listeners.
#[derive(Clone)]
pub struct TlsMetrics {
    failures: IntCounterVec,
    reloads: IntCounterVec,
    expiry: IntGaugeVec,
}

impl TlsMetrics {
    pub fn new(registry: &Registry) -> TlsMetrics {
        TlsMetrics {
            failures: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "moat_tls_handshake_failures_total",
                        "connections refused before or during the TLS handshake, by listener and reason",
                    ),
                    &["listener", "reason"],
                )
                .expect("valid metric"),
            ),
            reloads: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "moat_tls_reloads_total",
                        "changed certificate files taken in (ok) or refused (error: the last good ones stay), by listener",
                    ),
                    &["listener", "result"],
                )
                .expect("valid metric"),
            ),
            expiry: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "moat_tls_certificate_expiry_timestamp_seconds",
                        "end of validity of the certificate a listener serves, in Unix seconds",
                    ),
                    &["listener"],
                )
                .expect("valid metric"),
            ),
        }
    }
}

/// The TLS side of one listener.
pub struct TlsServer {
    listener: &'static str,
    config: ServerTlsConfig,
    alpn: Vec<Vec<u8>>,
    current: RwLock<Arc<ServerConfig>>,
    /// The bytes of cert, key and client CA the current config was built from.
    files: Mutex<Vec<u8>>,
    metrics: TlsMetrics,
    /// Last log time and refusals not logged since, per reason.
    logged: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: &'static str,
    pub detail: String,
}

impl Refusal {
    fn new(reason: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

impl TlsServer {
    /// The TLS of listener `listener` (`grpc`, `http`), speaking the ALPN
    /// protocols `alpn` (`h2` for gRPC, `http/1.1` for HTTP).
    pub fn new(
        listener: &'static str,
        config: &ServerTlsConfig,
        alpn: &[&str],
        metrics: &TlsMetrics,
    ) -> anyhow::Result<TlsServer> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let files = read_files(config).map_err(anyhow::Error::msg)?;
        let (server, not_after) = build(config, &alpn).map_err(anyhow::Error::msg)?;
        metrics.expiry.with_label_values(&[listener]).set(not_after);
        Ok(TlsServer {
            listener,
            config: config.clone(),
            alpn,
            current: RwLock::new(server),
            files: Mutex::new(files),
            metrics: metrics.clone(),
            logged: Mutex::new(HashMap::new()),
        })
    }

    /// The TLS of a listener as `config` says, watched for new files; `None`
    /// when the config says plaintext explicitly, an error when it says
    /// neither.
    pub fn start(
        listener: &'static str,
        config: &ServerTlsConfig,
        alpn: &[&str],
        metrics: &TlsMetrics,
    ) -> anyhow::Result<Option<Arc<TlsServer>>> {
        if config.cert.is_empty() {
            anyhow::ensure!(
                config.plaintext,
                "tls.cert is not set: give the service a certificate (tls.cert, tls.key), or set tls.plaintext = true to serve without TLS"
            );
            return Ok(None);
        }
        let server = Arc::new(TlsServer::new(listener, config, alpn, metrics)?);
        tokio::spawn(server.clone().watch());
        Ok(Some(server))
    }

    fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the files again; when they changed, new handshakes use them.
    /// Files that do not load leave the last good ones in use.
    pub fn reload(&self) -> Result<bool, String> {
        let files = read_files(&self.config)?;
        let mut last = self.files.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last == files {
            return Ok(false);
        }
        let (server, not_after) = build(&self.config, &self.alpn)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = server;
        *last = files;
        self.metrics.expiry.with_label_values(&[self.listener]).set(not_after);
        Ok(true)
    }

    /// Checks the files every `reload_interval`, forever.
    pub async fn watch(self: Arc<Self>) {
        let mut last_error = None;
        loop {
            tokio::time::sleep(self.config.reload_interval).await;
            let this = self.clone();
            let Ok(result) = tokio::task::spawn_blocking(move || this.reload()).await else {
                continue;
            };
            match result {
                Ok(false) => {}
                Ok(true) => {
                    last_error = None;
                    self.metrics.reloads.with_label_values(&[self.listener, "ok"]).inc();
                    tracing::info!(listener = self.listener, cert = %self.config.cert, "TLS certificate reloaded");
                }
                Err(error) => {
                    if last_error.as_ref() != Some(&error) {
                        self.metrics.reloads.with_label_values(&[self.listener, "error"]).inc();
                        tracing::error!(listener = self.listener, %error, "TLS files refused; the last good certificate stays in use");
                        last_error = Some(error);
                    }
                }
            }
        }
    }

    /// The handshake of an accepted connection, or `None` when it was
    /// refused (counted and logged).
    pub async fn accept(&self, mut stream: TcpStream, peer: SocketAddr) -> Option<TlsStream<TcpStream>> {
        let (refusal, answer) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(&mut stream)).await {
            Ok(Ok(())) => {
                return match tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    tokio_rustls::TlsAcceptor::from(self.current()).accept(stream),
                )
                .await
                {
                    Ok(Ok(stream)) => Some(stream),
                    Ok(Err(error)) => {
                        self.refused(peer, &classify(&error));
                        None
                    }
                    Err(_) => {
                        self.refused(peer, &timed_out());
                        None
                    }
                };
            }
            Ok(Err(refused)) => refused,
            Err(_) => (timed_out(), None),
        };
        self.refused(peer, &refusal);
        if let Some(answer) = answer {
            answer_plaintext(&mut stream, &answer).await;
        }
        None
    }

    fn refused(&self, peer: SocketAddr, refusal: &Refusal) {
        self.metrics
            .failures
            .with_label_values(&[self.listener, refusal.reason])
            .inc();
        self.log(peer, refusal);
    }

    /// Waits for the client's first bytes: a TLS handshake goes on; anything
    /// else is refused, with an answer in the client's protocol when it can
    /// be recognised.
    async fn handshake(&self, stream: &mut TcpStream) -> Result<(), (Refusal, Option<Vec<u8>>)> {
        let mut first = [0u8; 16];
        let n = stream
            .peek(&mut first)
            .await
            .map_err(|e| (Refusal::new("io", e.to_string()), None))?;
        if n == 0 {
            return Err((Refusal::new("closed", "closed before sending anything"), None));
        }
        // 0x16: a TLS handshake record.
        if first[0] != 0x16 {
            return Err(plaintext(&first[..n]));
        }
        Ok(())
    }

    fn log(&self, peer: SocketAddr, refusal: &Refusal) {
        let mut logged = self.logged.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let entry = logged
            .entry(refusal.reason)
            .or_insert((now - Duration::from_secs(2), 0));
        if now.duration_since(entry.0) < Duration::from_secs(1) {
            entry.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut entry.1);
        entry.0 = now;
        drop(logged);
        tracing::warn!(
            listener = self.listener,
            %peer,
            reason = refusal.reason,
            detail = %refusal.detail,
            not_logged_since = suppressed,
            "TLS connection refused"
        );
    }
}

/// Accepted connections of `listener` after their TLS handshake, for
/// tonic's `serve_with_incoming`. Handshakes run concurrently, so a slow
/// or silent client holds up no one else; refused ones never come out.
pub fn incoming(
    listener: tokio::net::TcpListener,
    tls: Arc<TlsServer>,
) -> impl futures::Stream<Item = io::Result<TlsStream<TcpStream>>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<TlsStream<TcpStream>>>(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let (tls, tx) = (tls.clone(), tx.clone());
            tokio::spawn(async move {
                if let Some(stream) = tls.accept(stream, peer).await {
                    let _ = tx.send(Ok(stream)).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Serves `router` on `listener` until `shutdown`, through TLS when `tls`
/// is given.
pub async fn serve_grpc(
    router: tonic::transport::server::Router,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<TlsServer>>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    match tls {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(incoming(listener, tls), shutdown)
                .await
        }
        None => {
            router
                .serve_with_incoming_shutdown(crate::http::incoming(listener), shutdown)
                .await
        }
    }
}

/// The verified client certificate chain of a TLS connection, leaf first,
/// as an extension of each HTTP request on it.
#[derive(Debug, Clone)]
pub struct PeerCerts(pub Arc<Vec<CertificateDer<'static>>>);

/// Refuses a call of `service` (the TLS of which is `config`) whose client
/// certificate is missing while `require_client_cert` is on, or names none
/// of `allowed_clients`. `certs` is the connection's verified chain.
pub fn check_client(
    config: &ServerTlsConfig,
    certs: Option<&[CertificateDer<'static>]>,
    service: &str,
) -> Result<(), crate::Error> {
    use crate::{Error, ErrorCode};
    if config.client_ca.is_empty() {
        return Ok(());
    }
    let Some(leaf) = certs.and_then(|c| c.first()) else {
        if !config.require_client_cert && config.allowed_clients.is_empty() {
            return Ok(());
        }
        let naming = if config.allowed_clients.is_empty() {
            String::new()
        } else {
            format!(" naming {}", config.allowed_clients.join(" or "))
        };
        return Err(Error::new(
            ErrorCode::Unauthenticated,
            format!(
                "{service} requires a client certificate{naming} (mutual TLS): connect with the certificate and key its CA signed"
            ),
        ));
    };
    if config.allowed_clients.is_empty() {
        return Ok(());
    }
    let info =
        cert_info(leaf).map_err(|e| Error::new(ErrorCode::Unauthenticated, format!("client certificate: {e}")))?;
    if info.is_one_of(&config.allowed_clients) {
        return Ok(());
    }
    let names: Vec<&str> = info.names().collect();
    Err(Error::new(
        ErrorCode::PermissionDenied,
        format!(
            "the client certificate names {}; {service} serves only {}",
            if names.is_empty() {
                "nothing".to_owned()
            } else {
                names.join(", ")
            },
            config.allowed_clients.join(", ")
        ),
    ))
}

/// The bytes of every file a config names, to tell when they change.
fn read_files(config: &ServerTlsConfig) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    for path in [&config.cert, &config.key, &config.client_ca] {
        if !path.is_empty() {
            bytes.extend(std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?);
            bytes.push(0);
        }
    }
    Ok(bytes)
}

/// The rustls config of `config`, and the end of the certificate's validity.
fn build(config: &ServerTlsConfig, alpn: &[Vec<u8>]) -> Result<(Arc<ServerConfig>, i64), String> {
    let provider = provider();
    let certs = read_certs(&config.cert)?;
    let info = cert_info(&certs[0]).map_err(|e| format!("{}: {e}", config.cert))?;
    let key = read_key(&config.key)?;
    let key = CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| format!("{} and {} do not make a key pair: {e}", config.cert, config.key))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if config.client_ca.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&config.client_ca)? {
            roots
                .add(ca)
                .map_err(|e| format!("{}: not a CA certificate: {e}", config.client_ca))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| e.to_string())?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut server = builder.with_cert_resolver(Arc::new(Resolver {
        key: Arc::new(key),
        names: info.dns_names,
    }));
    server.alpn_protocols = alpn.to_vec();
    Ok((Arc::new(server), info.not_after))
}

/// Names why a handshake failed, from the rustls error inside `error`.
fn classify(error: &io::Error) -> Refusal {
    let detail = error.to_string();
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return Refusal::new("io", detail);
    };
    let reason = match tls {
        rustls::Error::NoCertificatesPresented => "client_cert_missing",
        rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "client_cert_expired"
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "client_cert_not_yet_valid",
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            "client_cert_unknown_ca"
        }
        rustls::Error::InvalidCertificate(_) => "client_cert_invalid",
        rustls::Error::General(message) if message.contains("no server certificate chain resolved") => {
            return Refusal::new(
                "wrong_sni",
                "the client asked (SNI) for a name the certificate does not hold",
            );
        }
        rustls::Error::AlertReceived(_) => "client_refused_server_cert",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        _ => "protocol",
    };
    Refusal::new(reason, detail)
}

fn timed_out() -> Refusal {
    Refusal::new(
        "timeout",
        format!("no TLS handshake within {}s", HANDSHAKE_TIMEOUT.as_secs()),
    )
}

/// Why a client that sent `first` (not TLS) is refused, and the answer in
/// its own protocol when it can be recognised.
fn plaintext(first: &[u8]) -> (Refusal, Option<Vec<u8>>) {
    const MESSAGE: &str = "this port speaks TLS: connect with TLS (https://, or a gRPC channel with TLS)";
    let http1 = ["GET ", "POST", "PUT ", "HEAD", "DELE", "OPTI", "PATC", "CONN"]
        .iter()
        .any(|m| first.starts_with(m.as_bytes()));
    let (reason, answer) = if first.starts_with(b"PRI ") {
        // HTTP/2 with prior knowledge (a plaintext gRPC client): our
        // SETTINGS, then GOAWAY (PROTOCOL_ERROR) carrying the message.
        let mut frames = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0];
        let payload_len = 8 + MESSAGE.len();
        frames.extend_from_slice(&(payload_len as u32).to_be_bytes()[1..]);
        frames.extend_from_slice(&[0x7, 0, 0, 0, 0, 0]);
        frames.extend_from_slice(&0u32.to_be_bytes());
        frames.extend_from_slice(&1u32.to_be_bytes());
        frames.extend_from_slice(MESSAGE.as_bytes());
        ("plaintext_http2", frames)
    } else if http1 {
        let body = format!("{MESSAGE}\n");
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        ("plaintext_http1", response.into_bytes())
    } else {
        return (
            Refusal::new(
                "not_tls",
                format!(
                    "the first bytes are not a TLS handshake: {:02x?}",
                    &first[..first.len().min(8)]
                ),
            ),
            None,
        );
    };
    (Refusal::new(reason, MESSAGE), Some(answer))
}

/// Sends `answer` and closes, reading what the client still sends for a
/// moment so that closing does not reset the connection before it reads.
async fn answer_plaintext(stream: &mut TcpStream, answer: &[u8]) {
    let _ = stream.write_all(answer).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_or_by_one_wildcard_label() {
        assert!(name_matches("gateway.moat.svc", "GATEWAY.moat.svc"));
        assert!(name_matches("*.moat.svc", "gateway.moat.svc"));
        assert!(!name_matches("*.moat.svc", "a.gateway.moat.svc"));
        assert!(!name_matches("*.moat.svc", "moat.svc"));
        assert!(!name_matches("gateway.moat.svc", "state.moat.svc"));
    }

    #[test]
    fn plaintext_must_be_said_and_tls_needs_its_key() {
        let none = ServerTlsConfig::default();
        let err = none.validate("tls").unwrap_err().to_string();
        assert!(
            err.contains("tls.cert") && err.contains("tls.plaintext = true"),
            "{err}"
        );
        assert!(ServerTlsConfig::plaintext().validate("tls").is_ok());
        let no_key = ServerTlsConfig {
            cert: "cert.pem".into(),
            ..ServerTlsConfig::default()
        };
        assert!(no_key.validate("tls").unwrap_err().to_string().contains("tls.key"));
        let both = ServerTlsConfig {
            cert: "cert.pem".into(),
            key: "key.pem".into(),
            plaintext: true,
            ..ServerTlsConfig::default()
        };
        assert!(both.validate("tls").unwrap_err().to_string().contains("tls.plaintext"));
    }
}
