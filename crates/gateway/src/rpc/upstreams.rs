//! The upstreams of each chain: picking one, sending a call to it, counting
//! its failures toward ejection, and the periodic `eth_chainId` check.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use moat_common_types::{Error, ErrorCode};

use super::RpcProxy;

/// The HTTP client of the upstreams: HTTP/1.1 or HTTP/2 (by ALPN) over
/// TLS with the web's root certificates, or plain HTTP, with pooled
/// keep-alive connections. Redirects are never followed: upstreams are
/// fixed by configuration, and a redirect could lead anywhere.
pub(super) type HttpClient = Client<Bounded<hyper_rustls::HttpsConnector<HttpConnector>>, Full<Bytes>>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connector whose whole connect (name lookup, TCP and the TLS
/// handshake) is bounded by `timeout`: past it the attempt fails as a
/// connect error, known to have sent nothing.
#[derive(Clone)]
pub(super) struct Bounded<C> {
    inner: C,
    timeout: Duration,
}

impl<C> tower_service::Service<hyper::Uri> for Bounded<C>
where
    C: tower_service::Service<hyper::Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let timeout = self.timeout;
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(format!("connecting took longer than {} ms", timeout.as_millis()).into()),
            }
        })
    }
}

pub(super) fn http_client(connect_timeout: Duration, idle: Duration) -> anyhow::Result<HttpClient> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(std::sync::Arc::new(rustls::crypto::ring::default_provider()))?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(idle)
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(Bounded {
            inner: https,
            timeout: connect_timeout,
        }))
}

pub(super) struct Upstream {
    /// Where calls go, parsed once (not on every call), without its user
    /// part; it may hold an API key in its path, so it is never shown.
    pub(super) uri: hyper::Uri,
    /// Basic credentials from the URL's user part (`https://user:key@host`).
    pub(super) authorization: Option<HeaderValue>,
    /// How errors and logs name it: scheme, host and port only.
    pub(super) name: String,
    pub(super) consecutive_failures: AtomicU32,
    pub(super) ejected_until: Mutex<Option<Instant>>,
}

impl Upstream {
    pub(super) fn new(url: &str) -> anyhow::Result<Upstream> {
        let name = shown(url);
        let mut parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("upstream {name} is no URL: {e}"))?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https"),
            "upstream {name}: only http and https URLs are supported"
        );
        let authorization = if parsed.username().is_empty() && parsed.password().is_none() {
            None
        } else {
            let user = percent_decoded(parsed.username());
            let password = parsed.password().map(percent_decoded).unwrap_or_default();
            let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let mut value = HeaderValue::from_str(&format!("Basic {credentials}"))?;
            value.set_sensitive(true);
            // The credentials travel in the header, not in the URI.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            Some(value)
        };
        Ok(Upstream {
            uri: parsed
                .as_str()
                .parse()
                .map_err(|e| anyhow::anyhow!("upstream {name} is no URI: {e}"))?,
            authorization,
            name,
            consecutive_failures: AtomicU32::new(0),
            ejected_until: Mutex::new(None),
        })
    }

    pub(super) fn ejected(&self, now: Instant) -> bool {
        let until = self
            .ejected_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        until.is_some_and(|t| t > now)
    }
}

pub struct Chain {
    pub name: String,
    pub chain_id: u64,
    pub(super) upstreams: Vec<Upstream>,
}

/// What an upstream attempt ended with.
pub(super) enum Attempt {
    Answer(super::Answer),
    /// Not delivered at all (connection refused, DNS): safe to try elsewhere.
    Unreachable(String),
    /// Sent but no usable answer (timeout, 5xx, garbage): maybe processed.
    Failed {
        error: Error,
        retry_after: Option<Duration>,
    },
}

/// `error: cause: cause` — reqwest hides the interesting part in sources.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl RpcProxy {
    /// Chains and whether each has an upstream that is not ejected.
    /// Asks every upstream of every chain `eth_chainId`; an error, a
    /// timeout or another chain's id counts as a failure toward ejection.
    pub async fn check_upstreams(&self) {
        let zero = serde_json::value::RawValue::from_string("0".to_owned()).expect("0 is JSON");
        let probe = super::jsonrpc::request_body(&zero, "eth_chainId", None);
        let checks = self.chains.values().flat_map(|chain| {
            let probe = probe.clone();
            chain.upstreams.iter().map(move |upstream| {
                let probe = probe.clone();
                async move {
                    if let Attempt::Answer(answer) = self.send(upstream, probe).await {
                        let id = answer
                            .result_text()
                            .and_then(|r| serde_json::from_str::<String>(r).ok())
                            .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok());
                        if id != Some(chain.chain_id) {
                            tracing::warn!(
                                chain = %chain.name,
                                upstream = %upstream.name,
                                expected = chain.chain_id,
                                answered = ?id,
                                "upstream serves another chain: ejected"
                            );
                            *upstream
                                .ejected_until
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                                Some(Instant::now() + self.config.eject);
                        }
                    }
                }
            })
        });
        futures::future::join_all(checks).await;
    }

    /// `(chain, upstreams, healthy upstreams)` for every allowed chain.
    pub fn upstream_health(&self) -> Vec<(String, usize, usize)> {
        let now = Instant::now();
        let mut v: Vec<_> = self
            .chains
            .values()
            .map(|c| {
                let healthy = c.upstreams.iter().filter(|u| !u.ejected(now)).count();
                (c.name.clone(), c.upstreams.len(), healthy)
            })
            .collect();
        v.sort();
        v
    }

    /// The `n`-th upstream in rotation that is not ejected; when all are
    /// ejected, the one whose ejection ends first (a probe).
    pub(super) fn pick<'a>(&self, chain: &'a Chain, n: usize) -> &'a Upstream {
        let now = Instant::now();
        let len = chain.upstreams.len();
        (0..len)
            .map(|i| &chain.upstreams[(n + i) % len])
            .find(|u| !u.ejected(now))
            .unwrap_or_else(|| {
                chain
                    .upstreams
                    .iter()
                    .min_by_key(|u| {
                        *u.ejected_until
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                    })
                    .expect("chain has upstreams")
            })
    }

    pub(super) fn record(&self, upstream: &Upstream, ok: bool) {
        if ok {
            upstream.consecutive_failures.store(0, Ordering::Relaxed);
            *upstream
                .ejected_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            return;
        }
        let failures = upstream.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.config.eject_after_failures {
            tracing::warn!(upstream = %upstream.name, failures, "upstream ejected");
            *upstream
                .ejected_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now() + self.config.eject);
        }
    }

    pub(super) async fn send(&self, upstream: &Upstream, body: Bytes) -> Attempt {
        let mut request = hyper::Request::post(upstream.uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(body))
            .expect("a POST of a parsed URI with valid headers");
        if let Some(authorization) = &upstream.authorization {
            request.headers_mut().insert(AUTHORIZATION, authorization.clone());
        }
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        let timed_out = || Attempt::Failed {
            error: Error::new(
                ErrorCode::DeadlineExceeded,
                format!(
                    "upstream {} did not answer within {} ms",
                    upstream.name,
                    self.config.timeout.as_millis()
                ),
            ),
            retry_after: None,
        };
        let response = match tokio::time::timeout_at(deadline, self.http.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                self.record(upstream, false);
                if e.is_connect() {
                    return Attempt::Unreachable(error_chain(&e));
                }
                return Attempt::Failed {
                    error: Error::unavailable(format!("upstream {} failed: {}", upstream.name, error_chain(&e))),
                    retry_after: None,
                };
            }
            Err(_) => {
                self.record(upstream, false);
                return timed_out();
            }
        };
        let status = response.status();
        if status.as_u16() == 429 {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<f64>().ok())
                .map(Duration::from_secs_f64);
            return Attempt::Failed {
                error: Error::new(
                    ErrorCode::Unavailable,
                    format!("upstream {} is rate limiting (429)", upstream.name),
                ),
                retry_after,
            };
        }
        let limit = self.config.max_response_bytes;
        // A large answer is the call's doing, not the upstream's failing,
        // unless the upstream said it failed.
        let too_large = |len: String| {
            if status.is_server_error() {
                self.record(upstream, false);
            }
            Attempt::Failed {
                error: Error::unavailable(format!(
                    "upstream response of {len} bytes exceeds the limit of {limit} bytes"
                )),
                retry_after: None,
            }
        };
        if let Some(len) = hyper::body::Body::size_hint(response.body()).exact()
            && len as usize > limit
        {
            return too_large(len.to_string());
        }
        let bytes = match tokio::time::timeout_at(deadline, Limited::new(response.into_body(), limit).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return too_large(format!("more than {limit}"));
            }
            Ok(Err(e)) => {
                self.record(upstream, false);
                return Attempt::Failed {
                    error: Error::unavailable(format!(
                        "reading the answer of {}: {}",
                        upstream.name,
                        error_chain(e.as_ref())
                    )),
                    retry_after: None,
                };
            }
            Err(_) => {
                self.record(upstream, false);
                return timed_out();
            }
        };
        if status.is_server_error() {
            self.record(upstream, false);
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            return Attempt::Failed {
                error: Error::unavailable(format!("upstream {} answered HTTP {status}: {text}", upstream.name)),
                retry_after: None,
            };
        }
        match super::Answer::parse(bytes) {
            Some(answer) => {
                self.record(upstream, true);
                Attempt::Answer(answer)
            }
            None => {
                self.record(upstream, false);
                Attempt::Failed {
                    error: Error::unavailable(format!(
                        "upstream {} answered HTTP {status} with no JSON-RPC response",
                        upstream.name
                    )),
                    retry_after: None,
                }
            }
        }
    }
}

fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// An upstream URL as errors and logs show it: scheme, host and port, so
/// that an API key in its path, query or user part is never repeated.
pub(super) fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", u.scheme()),
            (Some(host), None) => format!("{}://{host}", u.scheme()),
            _ => "(an upstream without a host)".to_owned(),
        },
        Err(_) => "(an upstream URL that does not parse)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Upstream, error_chain, http_client, shown};
    use bytes::Bytes;
    use http_body_util::Full;
    use std::time::Duration;

    #[tokio::test]
    async fn a_stalled_tls_handshake_is_a_connect_error_within_the_connect_timeout() {
        // Accepts connections and never answers: the TCP connect succeeds,
        // the TLS handshake waits forever.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let client = http_client(Duration::from_millis(300), Duration::from_secs(60)).unwrap();
        let request = hyper::Request::post(format!("https://127.0.0.1:{port}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let error = tokio::time::timeout(Duration::from_secs(10), client.request(request))
            .await
            .expect("the connect is bounded")
            .unwrap_err();
        assert!(error.is_connect(), "{error:?}");
        assert!(
            error_chain(&error).contains("connecting took longer than 300 ms"),
            "{}",
            error_chain(&error)
        );
    }

    #[test]
    fn a_user_part_travels_as_basic_credentials_not_in_the_uri() {
        let upstream = Upstream::new("https://project:s%3Acret@rpc.example/v3/KEY").unwrap();
        assert_eq!(upstream.uri.to_string(), "https://rpc.example/v3/KEY");
        // base64("project:s:cret")
        assert_eq!(
            upstream.authorization.as_ref().map(|v| v.to_str().unwrap()),
            Some("Basic cHJvamVjdDpzOmNyZXQ=")
        );
        assert!(upstream.authorization.unwrap().is_sensitive());
        let plain = Upstream::new("http://127.0.0.1:8545").unwrap();
        assert_eq!(plain.uri.to_string(), "http://127.0.0.1:8545/");
        assert!(plain.authorization.is_none());
        let error = Upstream::new("ws://127.0.0.1:8546").err().unwrap().to_string();
        assert_eq!(
            error,
            "upstream ws://127.0.0.1:8546: only http and https URLs are supported"
        );
    }

    #[test]
    fn upstreams_are_shown_without_their_keys() {
        assert_eq!(
            shown("https://user:pw@eth-mainnet.example/v2/SECRETKEY?apikey=S"),
            "https://eth-mainnet.example"
        );
        assert_eq!(shown("http://127.0.0.1:8545/"), "http://127.0.0.1:8545");
        assert_eq!(shown("not a url"), "(an upstream URL that does not parse)");
    }
}
