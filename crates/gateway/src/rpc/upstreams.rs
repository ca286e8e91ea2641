//! The upstreams of each chain: picking one, sending a call to it, counting
//! its failures toward ejection, and the periodic `eth_chainId` check.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use moat_common_types::{Error, ErrorCode};
use serde_json::{Value, json};

use super::RpcProxy;
pub(super) struct Upstream {
    /// Where calls go, parsed once (not on every call); it may hold an
    /// API key, so it is never shown.
    pub(super) url: reqwest::Url,
    /// How errors and logs name it: scheme, host and port only.
    pub(super) name: String,
    pub(super) consecutive_failures: AtomicU32,
    pub(super) ejected_until: Mutex<Option<Instant>>,
}

impl Upstream {
    pub(super) fn new(url: &str) -> anyhow::Result<Upstream> {
        let name = shown(url);
        Ok(Upstream {
            url: reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("upstream {name} is no URL: {e}"))?,
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
    Answer(Value),
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
        let probe = json!({"jsonrpc": "2.0", "id": 0, "method": "eth_chainId", "params": []});
        let checks = self.chains.values().flat_map(|chain| {
            let probe = &probe;
            chain.upstreams.iter().map(move |upstream| async move {
                if let Attempt::Answer(answer) = self.send(upstream, probe).await {
                    let id = answer["result"]
                        .as_str()
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

    pub(super) async fn send(&self, upstream: &Upstream, body: &Value) -> Attempt {
        let timeout_ms = self.config.timeout.as_millis();
        let response = match self.http.post(upstream.url.clone()).json(body).send().await {
            Ok(r) => r,
            Err(e) => {
                self.record(upstream, false);
                if e.is_connect() {
                    return Attempt::Unreachable(error_chain(&e.without_url()));
                }
                let error = if e.is_timeout() {
                    Error::new(
                        ErrorCode::DeadlineExceeded,
                        format!("upstream {} did not answer within {timeout_ms} ms", upstream.name),
                    )
                } else {
                    Error::unavailable(format!(
                        "upstream {} failed: {}",
                        upstream.name,
                        error_chain(&e.without_url())
                    ))
                };
                return Attempt::Failed {
                    error,
                    retry_after: None,
                };
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
        if let Some(len) = response.content_length()
            && len as usize > self.config.max_response_bytes
        {
            return Attempt::Failed {
                error: Error::unavailable(format!(
                    "upstream response of {len} bytes exceeds the limit of {} bytes",
                    self.config.max_response_bytes
                )),
                retry_after: None,
            };
        }
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                self.record(upstream, false);
                return Attempt::Failed {
                    error: Error::unavailable(format!(
                        "reading the answer of {}: {}",
                        upstream.name,
                        error_chain(&e.without_url())
                    )),
                    retry_after: None,
                };
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
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) if value.is_object() => {
                self.record(upstream, true);
                Attempt::Answer(value)
            }
            _ => {
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

/// An upstream URL as errors and logs show it: scheme, host and port, so
/// that an API key in its path, query or user part is never repeated.
pub(super) fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
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
    use super::shown;

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
