//! Gateway configuration (`config/gateway.toml`, `MOAT_GATEWAY__…`).

use std::time::Duration;

use std::collections::BTreeMap;

use moat_common_types::config::{ConfigError, Validate};
pub use moat_common_types::infra::{ClickHouseConfig, ListenConfig, NatsConfig};
pub use moat_common_types::tls::{ClientTlsConfig, ServerTlsConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub grpc: ListenConfig,
    pub http: ListenConfig,
    pub server: ServerConfig,
    /// TLS of both listeners (gRPC and HTTP). Plaintext only when
    /// `tls.plaintext = true` says so.
    pub tls: ServerTlsConfig,
    pub nats: NatsConfig,
    pub clickhouse: ClickHouseConfig,
    pub state: StateConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub prices: PricesConfig,
    pub rpc: RpcConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            grpc: ListenConfig::any(50051),
            http: ListenConfig::any(9090),
            server: ServerConfig::default(),
            tls: ServerTlsConfig::default(),
            nats: NatsConfig::default(),
            clickhouse: ClickHouseConfig {
                // History queries answer a strategy waiting on them.
                timeout: Duration::from_secs(10),
                ..ClickHouseConfig::default()
            },
            state: StateConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            prices: PricesConfig::default(),
            rpc: RpcConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Longest a request may run; a client's `grpc-timeout` may only shorten it.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Idle keep-alive of client connections (longer than a proxy's usual 60 s).
    #[serde(with = "humantime_serde")]
    pub keepalive_idle: Duration,
    /// Time an HTTP client has from a request's first byte to its last header.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest HTTP JSON-RPC body accepted.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            request_timeout: Duration::from_secs(30),
            keepalive_idle: Duration::from_secs(75),
            header_read_timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// gRPC endpoint of moat-state (`https://` with `tls.ca`).
    pub endpoint: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// TLS to moat-state: its CA, and the gateway's own certificate, which
    /// moat-state checks names the gateway.
    pub tls: ClientTlsConfig,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            endpoint: "http://127.0.0.1:50052".into(),
            timeout: Duration::from_secs(5),
            tls: ClientTlsConfig::default(),
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub strategy_id: String,
    pub token: String,
}

/// Debug output never shows the token.
impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("strategy_id", &self.strategy_id)
            .field("token", &"(hidden)")
            .finish()
    }
}

/// What one strategy may do, within the gateway's allowlists and limits:
/// `[auth.policies.<strategy_id>]`, or `key=value` words after the token
/// in `auth.tokens_file`. A part left out is the gateway's own setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Chains it may call (a subset of `rpc.chains`).
    pub chains: Option<Vec<String>>,
    /// JSON-RPC methods it may call (a subset of `rpc.methods`).
    pub methods: Option<Vec<String>>,
    /// Its own bucket over every call; a rate without a burst gets a
    /// burst of twice the rate.
    pub requests_per_second: Option<f64>,
    pub burst: Option<f64>,
    /// Its own bucket per chain over RPC calls.
    pub rpc_requests_per_second: Option<f64>,
    pub rpc_burst: Option<f64>,
}

impl PolicyConfig {
    /// Takes every part `other` sets.
    pub fn override_with(&mut self, other: PolicyConfig) {
        let PolicyConfig {
            chains,
            methods,
            requests_per_second,
            burst,
            rpc_requests_per_second,
            rpc_burst,
        } = other;
        self.chains = chains.or(self.chains.take());
        self.methods = methods.or(self.methods.take());
        self.requests_per_second = requests_per_second.or(self.requests_per_second);
        self.burst = burst.or(self.burst);
        self.rpc_requests_per_second = rpc_requests_per_second.or(self.rpc_requests_per_second);
        self.rpc_burst = rpc_burst.or(self.rpc_burst);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Per-strategy bearer tokens. Prefer `tokens_file` outside development.
    pub tokens: Vec<TokenConfig>,
    /// A file of `strategy_id token [key=value …]` lines (a mounted
    /// secret); `#` starts a comment. Changes take effect within
    /// `reload_interval`, without a restart.
    pub tokens_file: String,
    /// How often `tokens_file` is checked for changes.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Per-strategy policies, by strategy id.
    pub policies: BTreeMap<String, PolicyConfig>,
    /// Failed authentications from one peer within `failure_window`
    /// before it is refused with RESOURCE_EXHAUSTED for `lockout`; at
    /// least 1 (0 is refused when the config is read).
    pub max_failures: std::num::NonZeroU32,
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    #[serde(with = "humantime_serde")]
    pub lockout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            tokens: Vec::new(),
            tokens_file: String::new(),
            reload_interval: Duration::from_secs(2),
            policies: BTreeMap::new(),
            max_failures: std::num::NonZeroU32::new(10).expect("10 is not zero"),
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Trades buffered per StreamTrades client before it is cut off as too slow.
    pub stream_buffer: std::num::NonZeroUsize,
    /// Token bucket per strategy over every call.
    pub requests_per_second: f64,
    pub burst: f64,
    /// Token bucket per strategy and chain over RPC calls.
    pub rpc_requests_per_second: f64,
    pub rpc_burst: f64,
    /// Share the buckets and the authentication lockout with the other
    /// replicas over NATS, so the limits hold for all of them together.
    pub share: bool,
    /// How often a replica tells the others what it admitted.
    #[serde(with = "humantime_serde")]
    pub share_interval: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            stream_buffer: std::num::NonZeroUsize::new(1024).expect("not zero"),
            requests_per_second: 200.0,
            burst: 400.0,
            rpc_requests_per_second: 50.0,
            rpc_burst: 100.0,
            share: true,
            share_interval: Duration::from_millis(100),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricesConfig {
    /// A source older than this is stale.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Sources further than this many percent from the median are outliers.
    pub outlier_percent: f64,
    /// Quote currencies accepted for a requested quote (USD → USD, USDT, USDC).
    pub quote_aliases: BTreeMap<String, Vec<String>>,
    /// Wrapped tokens per chain: `[prices.wrapped.arbitrum] WETH = "ETH"`;
    /// the `default` table applies to every chain and to calls without one.
    pub wrapped: BTreeMap<String, BTreeMap<String, String>>,
}

impl PricesConfig {
    /// `outlier_percent` as a fraction (2 % → 0.02), exact.
    pub fn outlier_fraction(&self) -> moat_common_types::Decimal {
        moat_common_types::Decimal::try_from(self.outlier_percent)
            .map(|p| p / moat_common_types::Decimal::ONE_HUNDRED)
            .unwrap_or(moat_common_types::Decimal::ZERO)
    }
}

impl Default for PricesConfig {
    fn default() -> Self {
        let mut wrapped = BTreeMap::new();
        wrapped.insert(
            "default".to_owned(),
            BTreeMap::from([
                ("WETH".to_owned(), "ETH".to_owned()),
                ("WBTC".to_owned(), "BTC".to_owned()),
                ("WSOL".to_owned(), "SOL".to_owned()),
            ]),
        );
        wrapped.insert(
            "polygon".to_owned(),
            BTreeMap::from([
                ("WMATIC".to_owned(), "MATIC".to_owned()),
                ("WPOL".to_owned(), "POL".to_owned()),
            ]),
        );
        wrapped.insert(
            "avalanche".to_owned(),
            BTreeMap::from([("WAVAX".to_owned(), "AVAX".to_owned())]),
        );
        wrapped.insert(
            "bsc".to_owned(),
            BTreeMap::from([("WBNB".to_owned(), "BNB".to_owned())]),
        );
        PricesConfig {
            max_age: Duration::from_secs(10),
            outlier_percent: 2.0,
            quote_aliases: BTreeMap::from([(
                "USD".to_owned(),
                vec!["USD".to_owned(), "USDT".to_owned(), "USDC".to_owned()],
            )]),
            wrapped,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    /// A chain left out of the allowlist without deleting its settings.
    pub enabled: bool,
    pub chain_id: u64,
    /// Upstream JSON-RPC URLs, tried in order with failover.
    pub upstreams: Vec<String>,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            enabled: true,
            chain_id: 1,
            upstreams: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    pub methods: Vec<String>,
    pub chains: BTreeMap<String, ChainConfig>,
    /// Per upstream attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts of a read method across upstreams and retries.
    pub max_attempts: u32,
    pub max_batch: usize,
    pub max_response_bytes: usize,
    /// Largest `toBlock - fromBlock` of `eth_getLogs`.
    pub max_log_block_range: u64,
    /// Consecutive failures that eject an upstream, and for how long.
    pub eject_after_failures: u32,
    #[serde(with = "humantime_serde")]
    pub eject: Duration,
    /// How often every upstream is asked `eth_chainId` (0 = never): a dead
    /// upstream or one serving another chain is ejected before a strategy
    /// call finds out.
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
}

impl Default for RpcConfig {
    fn default() -> Self {
        let chains = [
            ("ethereum", 1),
            ("arbitrum", 42161),
            ("base", 8453),
            ("optimism", 10),
            ("polygon", 137),
            ("avalanche", 43114),
            ("bsc", 56),
            ("sonic", 146),
            ("plasma", 9745),
            ("blast", 81457),
            ("mantle", 5000),
            ("berachain", 80094),
        ]
        .into_iter()
        .map(|(name, chain_id)| {
            (
                name.to_owned(),
                ChainConfig {
                    enabled: true,
                    chain_id,
                    upstreams: Vec::new(),
                },
            )
        })
        .collect();
        RpcConfig {
            methods: [
                "eth_call",
                "eth_getBalance",
                "eth_getTransactionCount",
                "eth_getTransactionReceipt",
                "eth_getBlockByNumber",
                "eth_getBlockByHash",
                "eth_blockNumber",
                "eth_chainId",
                "eth_gasPrice",
                "eth_estimateGas",
                "eth_getLogs",
                "eth_getCode",
                "eth_getStorageAt",
                "eth_sendRawTransaction",
                "net_version",
            ]
            .map(String::from)
            .to_vec(),
            chains,
            timeout: Duration::from_secs(10),
            max_attempts: 3,
            max_batch: 100,
            max_response_bytes: 10 * 1024 * 1024,
            max_log_block_range: 10_000,
            eject_after_failures: 3,
            health_check_interval: Duration::from_secs(10),
            eject: Duration::from_secs(30),
        }
    }
}

impl Validate for GatewayConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.tls.validate("tls")?;
        self.state.tls.validate("state.tls", &self.state.endpoint)?;
        self.nats.validate("nats")?;
        self.clickhouse.validate("clickhouse")?;
        for (name, chain) in &self.rpc.chains {
            for (i, url) in chain.upstreams.iter().enumerate() {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::invalid(
                        &format!("rpc.chains.{name}.upstreams[{i}]"),
                        format!("\"{url}\""),
                        "an http:// or https:// URL",
                    ));
                }
            }
        }
        if self.rpc.max_batch == 0 || self.rpc.max_batch > 1000 {
            return Err(ConfigError::invalid("rpc.max_batch", self.rpc.max_batch, "1 to 1000"));
        }
        if self.rpc.timeout.is_zero() {
            return Err(ConfigError::invalid_duration(
                "rpc.timeout",
                self.rpc.timeout,
                "a duration above 0, such as \"10s\"",
            ));
        }
        if self.limits.requests_per_second <= 0.0 || self.limits.burst < 1.0 {
            return Err(ConfigError::invalid(
                "limits.requests_per_second",
                self.limits.requests_per_second,
                "a positive rate with burst of at least 1",
            ));
        }
        if self.limits.rpc_requests_per_second <= 0.0 || self.limits.rpc_burst < 1.0 {
            return Err(ConfigError::invalid(
                "limits.rpc_requests_per_second",
                self.limits.rpc_requests_per_second,
                "a positive rate with rpc_burst of at least 1",
            ));
        }
        if self.limits.share
            && (self.limits.share_interval < Duration::from_millis(10)
                || self.limits.share_interval > Duration::from_secs(10))
        {
            return Err(ConfigError::invalid_duration(
                "limits.share_interval",
                self.limits.share_interval,
                "a duration from 10ms to 10s, such as \"100ms\"",
            ));
        }
        if !(0.0..=100.0).contains(&self.prices.outlier_percent) {
            return Err(ConfigError::invalid(
                "prices.outlier_percent",
                self.prices.outlier_percent,
                "a percentage from 0 to 100",
            ));
        }
        for (i, t) in self.auth.tokens.iter().enumerate() {
            if t.token.len() < crate::tokens::MIN_TOKEN_LEN {
                return Err(ConfigError::invalid(
                    &format!("auth.tokens[{i}].token"),
                    "(hidden)",
                    "a token of at least 16 characters",
                ));
            }
        }
        if self.auth.reload_interval < Duration::from_millis(100) || self.auth.reload_interval > Duration::from_secs(60)
        {
            return Err(ConfigError::invalid_duration(
                "auth.reload_interval",
                self.auth.reload_interval,
                "a duration from 100ms to 60s, such as \"2s\"",
            ));
        }
        for (id, policy) in &self.auth.policies {
            crate::tokens::Policy::from_config(policy, &self.limits)
                .map_err(|e| ConfigError::invalid(&format!("auth.policies.{id}.{}", e.key), e.value, e.expected))?;
        }
        Ok(())
    }
}
