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

use anyhow::Context;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use moat_common_types::backoff::Backoff;
use moat_common_types::{Error, ErrorCode};
use rand::Rng;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::config::RpcConfig;

mod jsonrpc;
mod upstreams;

pub use jsonrpc::{Answer, Body, Request, codes, error_response, json_rpc_code, parse_body, too_deep};
pub use upstreams::Chain;
use upstreams::{Attempt, Upstream};

/// The pause between attempts of a read method on another upstream, unless
/// the upstream said how long to wait (`Retry-After`).
const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));

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

pub struct RpcProxy {
    chains: HashMap<String, Chain>,
    methods: HashSet<String>,
    http: upstreams::HttpClient,
    config: RpcConfig,
    /// Results of immutable calls, by chain, method and params as sent.
    cache: Mutex<HashMap<String, Box<str>>>,
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
                    .map(|url| Upstream::new(url))
                    .collect::<anyhow::Result<_>>()
                    .with_context(|| format!("rpc.chains.{name}.upstreams"))?;
                Ok((
                    name.clone(),
                    Chain {
                        name: name.clone(),
                        chain_id: c.chain_id,
                        upstreams,
                    },
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        let http = upstreams::http_client(config.timeout.min(Duration::from_secs(5)), Duration::from_secs(60))?;
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

    fn check_params(&self, method: &str, params: Option<&RawValue>) -> Result<(), Error> {
        let Some(params) = params.filter(|_| method == "eth_getLogs") else {
            return Ok(());
        };
        // JSON text a tree parser refuses (a lone surrogate escape) is
        // refused here, since its range cannot be read.
        let params: Value = serde_json::from_str(params.get())
            .map_err(|e| Error::invalid_argument(format!("eth_getLogs params are not readable JSON: {e}")))?;
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
    /// `params` and `id` are JSON text as the client sent it; absent params
    /// are sent as `[]`.
    pub async fn call(
        &self,
        chain_name: &str,
        method: &str,
        params: Option<&RawValue>,
        id: &RawValue,
    ) -> Result<Answer, Error> {
        let chain = self.chain(chain_name)?;
        self.check_method(method)?;
        let params = params.filter(|p| p.get() != "null");
        if let Some(p) = params
            && !matches!(jsonrpc::json_kind(p.get()), "an array" | "an object")
        {
            return Err(Error::invalid_argument("params must be an array or an object"));
        }
        self.check_params(method, params)?;
        let cache_key = IMMUTABLE
            .contains(&method)
            .then(|| format!("{chain_name}|{method}|{}", params.map_or("[]", RawValue::get)));
        if let Some(key) = &cache_key {
            let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(result) = cache.get(key) {
                return Ok(Answer::result(id, result));
            }
        }
        if chain.upstreams.is_empty() {
            return Err(Error::unavailable(format!(
                "no upstream is configured for chain '{chain_name}'"
            )));
        }
        let body = jsonrpc::request_body(id, method, params);
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
            match self.send(upstream, body.clone()).await {
                Attempt::Answer(answer) => {
                    if writes && answer.is_error() {
                        return Ok(self.resent(upstream, params, id, answer).await);
                    }
                    if let Some(key) = cache_key
                        && let Some(result) = answer.result_text()
                    {
                        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        if cache.len() >= CACHE_CAPACITY {
                            cache.clear();
                        }
                        cache.insert(key, result.into());
                    }
                    return Ok(answer);
                }
                Attempt::Unreachable(reason) => {
                    last_error = Error::unavailable(format!("upstream {} unreachable: {reason}", upstream.name));
                }
                Attempt::Failed { error, retry_after } => {
                    if writes {
                        return Err(error);
                    }
                    last_error = error;
                    let pause = retry_after.unwrap_or_else(|| RETRY_BACKOFF.pause(attempt));
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
    async fn resent(&self, upstream: &Upstream, params: Option<&RawValue>, id: &RawValue, refusal: Answer) -> Answer {
        let message = refusal
            .value()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        let raw = params.and_then(|p| serde_json::from_str::<Value>(p.get()).ok());
        let Some(hash) = raw.as_ref().and_then(|p| p[0].as_str()).and_then(transaction_hash) else {
            return refusal;
        };
        let known = DUPLICATE_SEND.iter().any(|m| message.contains(m));
        let nonce_used = USED_NONCE.iter().any(|m| message.contains(m));
        if !known && !nonce_used {
            return refusal;
        }
        if nonce_used {
            let lookup = json!({"jsonrpc": "2.0", "id": 0, "method": "eth_getTransactionByHash", "params": [hash]});
            match self.send(upstream, lookup.to_string().into()).await {
                Attempt::Answer(found) if found.result_text().is_some() => {}
                _ => return refusal,
            }
        }
        tracing::info!(upstream = %upstream.name, %hash, node = %message, "resent transaction answered with its hash");
        Answer::result(id, &serde_json::to_string(&hash).expect("a string is JSON"))
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
        let one = RawValue::from_string("1".into()).unwrap();
        let err = p.call("xyz", "eth_blockNumber", None, &one).await.unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (ErrorCode::FailedPrecondition, "Chain 'xyz' is not configured")
        );
        let err = p
            .call("ethereum", "debug_traceTransaction", None, &one)
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
                Some(&RawValue::from_string(r#"[{"fromBlock": "0x1", "toBlock": "0x1000"}]"#.into()).unwrap()),
                &one,
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.message,
            "eth_getLogs block range 4095 exceeds the limit of 100 blocks"
        );
        let err = p
            .call(
                "ethereum",
                "eth_getLogs",
                Some(&RawValue::from_string(r#"[{"address":"\ud800"}]"#.into()).unwrap()),
                &one,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument);
        assert!(
            err.message.starts_with("eth_getLogs params are not readable JSON: "),
            "{}",
            err.message
        );
        let err = p.call("ethereum", "eth_blockNumber", None, &one).await.unwrap_err();
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
