//! The EVM JSON-RPC proxy: chain and method allowlists, upstream failover
//! with ejection, retries for read methods, caching of immutable answers.
//!
//! Only URLs from the configuration are ever called: the chain name selects
//! a configured upstream list and nothing in a request can name a host.
//! `eth_sendRawTransaction` moves to the next upstream only when the first
//! could not be reached at all (the transaction cannot have been sent);
//! after a timeout it is not repeated, and the error says it may have been
//! broadcast. When a client resends a transaction the node already has
//! ("already known", or "nonce too low" once it is mined), the gateway
//! answers with the transaction's hash instead of a second failure: the
//! client's intent is fulfilled.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use moat_common_types::{Error, ErrorCode};
use rand::Rng;
use serde_json::{Value, json};

use crate::config::RpcConfig;

/// JSON-RPC error codes used by the gateway itself.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_ALLOWED: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    pub const LIMIT_EXCEEDED: i64 = -32005;
}

/// One request object of a JSON-RPC body: the id to answer with, and the
/// method and params, or why the object is not a request.
#[derive(Debug)]
pub struct Request {
    pub id: Value,
    pub call: Result<(String, Value), Error>,
}

/// A JSON-RPC body: one request or a batch.
#[derive(Debug)]
pub enum Body {
    One(Request),
    Batch(Vec<Request>),
}

/// Parses a JSON-RPC body. A body that is not UTF-8 JSON, or a batch that
/// is empty or longer than `max_batch`, is refused whole with its JSON-RPC
/// code; an object that is not a request is refused on its own.
pub fn parse_body(body: &[u8], max_batch: usize) -> Result<Body, (i64, Error)> {
    let refuse = |code, message: String| (code, Error::invalid_argument(message));
    let text = std::str::from_utf8(body).map_err(|e| refuse(codes::PARSE_ERROR, format!("body is not UTF-8: {e}")))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| refuse(codes::PARSE_ERROR, format!("body is not JSON: {e}")))?;
    match value {
        Value::Array(items) => {
            if items.is_empty() || items.len() > max_batch {
                return Err(refuse(
                    codes::INVALID_REQUEST,
                    format!("batch of {} calls: expected 1 to {max_batch}", items.len()),
                ));
            }
            Ok(Body::Batch(items.into_iter().map(request).collect()))
        }
        item => Ok(Body::One(request(item))),
    }
}

fn request(mut item: Value) -> Request {
    let id = item.get_mut("id").map_or(Value::Null, Value::take);
    let method = item.get("method").and_then(Value::as_str).map(str::to_owned);
    let call = match (method, item.get_mut("params")) {
        (None, _) => Err(Error::invalid_argument("request has no \"method\" string")),
        (Some(method), None | Some(Value::Null)) => Ok((method, json!([]))),
        (Some(method), Some(params @ (Value::Array(_) | Value::Object(_)))) => Ok((method, params.take())),
        (Some(_), Some(other)) => Err(Error::invalid_argument(format!(
            "\"params\" is {}: expected an array or an object",
            json_kind(other)
        ))),
    };
    Request { id, call }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Methods whose answers never change for the same parameters.
const IMMUTABLE: &[&str] = &[
    "eth_chainId",
    "net_version",
    "eth_getBlockByHash",
    "eth_getTransactionReceipt",
];
const CACHE_CAPACITY: usize = 10_000;

/// Refusals of `eth_sendRawTransaction` meaning the node already holds this
/// very transaction (geth, erigon, nethermind, besu wording).
const DUPLICATE_SEND: &[&str] = &[
    "already known",
    "known transaction",
    "already imported",
    "already exists",
];
/// Refusals meaning the nonce is used: a resend of a mined transaction, or
/// another transaction with the same nonce (told apart by looking it up).
const USED_NONCE: &[&str] = &[
    "nonce too low",
    "correct nonce",
    "nonce has already been used",
    "oldnonce",
];

/// The hash of a signed raw transaction (`0x…`): keccak-256 of its bytes.
pub fn transaction_hash(raw: &str) -> Option<String> {
    use sha3::Digest;
    let bytes = hex::decode(raw.strip_prefix("0x").unwrap_or(raw)).ok()?;
    Some(format!("0x{}", hex::encode(sha3::Keccak256::digest(&bytes))))
}

struct Upstream {
    url: String,
    consecutive_failures: AtomicU32,
    ejected_until: Mutex<Option<Instant>>,
}

impl Upstream {
    fn ejected(&self, now: Instant) -> bool {
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
    upstreams: Vec<Upstream>,
}

pub struct RpcProxy {
    chains: HashMap<String, Chain>,
    methods: HashSet<String>,
    http: reqwest::Client,
    config: RpcConfig,
    cache: Mutex<HashMap<String, Value>>,
}

/// What an upstream attempt ended with.
enum Attempt {
    Answer(Value),
    /// Not delivered at all (connection refused, DNS): safe to try elsewhere.
    Unreachable(String),
    /// Sent but no usable answer (timeout, 5xx, garbage): maybe processed.
    Failed {
        error: Error,
        retry_after: Option<Duration>,
    },
}

impl RpcProxy {
    pub fn new(config: &RpcConfig) -> anyhow::Result<RpcProxy> {
        let chains = config
            .chains
            .iter()
            .filter(|(_, c)| c.enabled)
            .map(|(name, c)| {
                let upstreams = c
                    .upstreams
                    .iter()
                    .map(|url| Upstream {
                        url: url.clone(),
                        consecutive_failures: AtomicU32::new(0),
                        ejected_until: Mutex::new(None),
                    })
                    .collect();
                (
                    name.clone(),
                    Chain {
                        name: name.clone(),
                        chain_id: c.chain_id,
                        upstreams,
                    },
                )
            })
            .collect();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.timeout_ms.min(5_000)))
            .timeout(Duration::from_millis(config.timeout_ms))
            .pool_idle_timeout(Duration::from_secs(60))
            // Redirects could lead anywhere; upstreams are fixed by config.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(RpcProxy {
            chains,
            methods: config.methods.iter().cloned().collect(),
            http,
            config: config.clone(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn chain(&self, name: &str) -> Result<&Chain, Error> {
        self.chains.get(name).ok_or_else(|| {
            Error::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "Chain '{}' is not configured",
                    name.chars().take(64).collect::<String>()
                ),
            )
        })
    }

    pub fn check_method(&self, method: &str) -> Result<(), Error> {
        if self.methods.contains(method) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::PermissionDenied,
                format!(
                    "method '{}' is not allowed",
                    method.chars().take(64).collect::<String>()
                ),
            ))
        }
    }

    pub fn max_batch(&self) -> usize {
        self.config.max_batch
    }

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
                            upstream = %upstream.url,
                            expected = chain.chain_id,
                            answered = ?id,
                            "upstream serves another chain: ejected"
                        );
                        *upstream
                            .ejected_until
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(Instant::now() + Duration::from_millis(self.config.eject_ms));
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

    fn check_params(&self, method: &str, params: &Value) -> Result<(), Error> {
        if method != "eth_getLogs" {
            return Ok(());
        }
        let filter = params.get(0).unwrap_or(&Value::Null);
        let block = |key: &str| {
            filter
                .get(key)
                .and_then(Value::as_str)
                .and_then(|s| s.strip_prefix("0x"))
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        };
        if let (Some(from), Some(to)) = (block("fromBlock"), block("toBlock"))
            && to.saturating_sub(from) > self.config.max_log_block_range
        {
            return Err(Error::invalid_argument(format!(
                "eth_getLogs block range {} exceeds the limit of {} blocks",
                to - from,
                self.config.max_log_block_range
            )));
        }
        Ok(())
    }

    /// Proxies one JSON-RPC call and returns the upstream's response object
    /// (which may carry a JSON-RPC `error`). Gateway refusals are `Err`.
    pub async fn call(&self, chain_name: &str, method: &str, params: Value, id: Value) -> Result<Value, Error> {
        let chain = self.chain(chain_name)?;
        self.check_method(method)?;
        if !(params.is_array() || params.is_object() || params.is_null()) {
            return Err(Error::invalid_argument("params must be an array or an object"));
        }
        self.check_params(method, &params)?;
        let cache_key = IMMUTABLE
            .contains(&method)
            .then(|| format!("{chain_name}|{method}|{params}"));
        if let Some(key) = &cache_key {
            let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(result) = cache.get(key) {
                return Ok(json!({"jsonrpc": "2.0", "id": id, "result": result}));
            }
        }
        if chain.upstreams.is_empty() {
            return Err(Error::unavailable(format!(
                "no upstream is configured for chain '{chain_name}'"
            )));
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": if params.is_null() { json!([]) } else { params }});
        let writes = method == "eth_sendRawTransaction";
        let max_attempts = if writes {
            chain.upstreams.len() as u32
        } else {
            self.config.max_attempts.max(1)
        };
        let start = rand::rng().random_range(0..chain.upstreams.len());
        let mut last_error = Error::unavailable("no upstream attempt was made");
        for attempt in 0..max_attempts {
            let upstream = self.pick(chain, start + attempt as usize);
            match self.send(upstream, &body).await {
                Attempt::Answer(response) => {
                    if writes && response.get("error").is_some() {
                        return Ok(self.resent(upstream, &body, response).await);
                    }
                    if let (Some(key), Some(result)) = (&cache_key, response.get("result"))
                        && !result.is_null()
                    {
                        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        if cache.len() >= CACHE_CAPACITY {
                            cache.clear();
                        }
                        cache.insert(key.clone(), result.clone());
                    }
                    return Ok(response);
                }
                Attempt::Unreachable(reason) => {
                    last_error = Error::unavailable(format!("upstream {} unreachable: {reason}", upstream.url));
                }
                Attempt::Failed { error, retry_after } => {
                    if writes {
                        return Err(error);
                    }
                    last_error = error;
                    let pause = retry_after.unwrap_or_else(|| {
                        let cap = 50u64 << attempt.min(6);
                        Duration::from_millis(rand::rng().random_range(0..=cap))
                    });
                    if attempt + 1 < max_attempts {
                        tokio::time::sleep(pause.min(Duration::from_secs(2))).await;
                    }
                }
            }
        }
        Err(last_error)
    }

    /// The answer to an `eth_sendRawTransaction` the node refused: when the
    /// refusal says the transaction is already known, or its nonce is used
    /// and the node has the transaction itself, the client gets its hash,
    /// as if this were the first send. Any other refusal is passed through.
    async fn resent(&self, upstream: &Upstream, request: &Value, refusal: Value) -> Value {
        let message = refusal["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let Some(hash) = request["params"][0].as_str().and_then(transaction_hash) else {
            return refusal;
        };
        let known = DUPLICATE_SEND.iter().any(|m| message.contains(m));
        let nonce_used = USED_NONCE.iter().any(|m| message.contains(m));
        if !known && !nonce_used {
            return refusal;
        }
        if nonce_used {
            let lookup = json!({"jsonrpc": "2.0", "id": 0, "method": "eth_getTransactionByHash", "params": [hash]});
            match self.send(upstream, &lookup).await {
                Attempt::Answer(found) if found.get("result").is_some_and(|r| !r.is_null()) => {}
                _ => return refusal,
            }
        }
        tracing::info!(upstream = %upstream.url, %hash, node = %message, "resent transaction answered with its hash");
        json!({"jsonrpc": "2.0", "id": request["id"], "result": hash})
    }

    /// The `n`-th upstream in rotation that is not ejected; when all are
    /// ejected, the one whose ejection ends first (a probe).
    fn pick<'a>(&self, chain: &'a Chain, n: usize) -> &'a Upstream {
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

    fn record(&self, upstream: &Upstream, ok: bool) {
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
            tracing::warn!(upstream = %upstream.url, failures, "upstream ejected");
            *upstream
                .ejected_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(Instant::now() + Duration::from_millis(self.config.eject_ms));
        }
    }

    async fn send(&self, upstream: &Upstream, body: &Value) -> Attempt {
        let timeout_ms = self.config.timeout_ms;
        let response = match self.http.post(&upstream.url).json(body).send().await {
            Ok(r) => r,
            Err(e) => {
                self.record(upstream, false);
                if e.is_connect() {
                    return Attempt::Unreachable(error_chain(&e));
                }
                let error = if e.is_timeout() {
                    Error::new(
                        ErrorCode::DeadlineExceeded,
                        format!("upstream {} did not answer within {timeout_ms} ms", upstream.url),
                    )
                } else {
                    Error::unavailable(format!("upstream {} failed: {}", upstream.url, error_chain(&e)))
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
                    format!("upstream {} is rate limiting (429)", upstream.url),
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
                    error: Error::unavailable(format!("reading the answer of {}: {}", upstream.url, error_chain(&e))),
                    retry_after: None,
                };
            }
        };
        if status.is_server_error() {
            self.record(upstream, false);
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            return Attempt::Failed {
                error: Error::unavailable(format!("upstream {} answered HTTP {status}: {text}", upstream.url)),
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
                        upstream.url
                    )),
                    retry_after: None,
                }
            }
        }
    }
}

/// `error: cause: cause` — reqwest hides the interesting part in sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A JSON-RPC error response for `id`.
pub fn error_response(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The JSON-RPC code answering a gateway refusal.
pub fn json_rpc_code(error: &Error) -> i64 {
    match error.code {
        ErrorCode::PermissionDenied => codes::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidArgument => codes::INVALID_PARAMS,
        ErrorCode::ResourceExhausted => codes::LIMIT_EXCEEDED,
        ErrorCode::FailedPrecondition => codes::INVALID_REQUEST,
        _ => codes::INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> RpcProxy {
        let config = RpcConfig {
            max_log_block_range: 100,
            ..RpcConfig::default()
        };
        RpcProxy::new(&config).unwrap()
    }

    #[tokio::test]
    async fn refusals_say_exactly_what_is_wrong() {
        let p = proxy();
        let err = p.call("xyz", "eth_blockNumber", json!([]), json!(1)).await.unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (ErrorCode::FailedPrecondition, "Chain 'xyz' is not configured")
        );
        let err = p
            .call("ethereum", "debug_traceTransaction", json!([]), json!(1))
            .await
            .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (
                ErrorCode::PermissionDenied,
                "method 'debug_traceTransaction' is not allowed"
            )
        );
        let err = p
            .call(
                "ethereum",
                "eth_getLogs",
                json!([{"fromBlock": "0x1", "toBlock": "0x1000"}]),
                json!(1),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "eth_getLogs block range 4095 exceeds the limit of 100 blocks"
        );
        let err = p
            .call("ethereum", "eth_blockNumber", json!([]), json!(1))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert!(err.message.contains("no upstream is configured"), "{}", err.message);
    }

    #[test]
    fn transaction_hash_is_keccak_of_the_raw_bytes() {
        // Keccak-256 of no bytes: the constant Ethereum calls the empty hash.
        assert_eq!(
            transaction_hash("0x").as_deref(),
            Some("0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
        );
        // A transfer signed by eth-account (web3.py), and the hash it reported.
        assert_eq!(
            transaction_hash("0xf86580847735940082520894ffcf8fdee72ac11b5c542428b35eef5769c409f08230398026a0c113452f1e8ecfbcacf03bdaf1ea35379f82139933d445fbfa37bf2d82fee399a07c3f1c14adafee08b9ceab44ea59de8c2824ba3ff26e638f8c62629a4dc42c3a").as_deref(),
            Some("0x881322762b4c6339da553ba19fe4702ef327b3fe452243761970a04a2102840a")
        );
        assert_eq!(transaction_hash("0xzz"), None);
    }

    #[test]
    fn every_default_chain_has_its_id() {
        let p = proxy();
        assert_eq!(p.chain("ethereum").unwrap().chain_id, 1);
        assert_eq!(p.chain("arbitrum").unwrap().chain_id, 42161);
        assert_eq!(p.chain("berachain").unwrap().chain_id, 80094);
        assert_eq!(p.upstream_health().len(), 12);
    }
}
