//! Collector configuration (`config/collector.toml`, `MOAT_COLLECTOR__…`).

use std::num::NonZeroUsize;
use std::time::Duration;

use moat_common_types::config::{ConfigError, Validate};
use moat_common_types::infra::{ListenConfig, NatsConfig, StreamConfig};
use serde::{Deserialize, Serialize};

use crate::venues::Kind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Address of `/health`, `/metrics` and `/status`.
    pub http: ListenConfig,
    pub nats: NatsConfig,
    pub stream: StreamConfig,
    pub publisher: PublisherConfig,
    pub sim: SimConfig,
    /// Live venue connections; each entry is one connector.
    pub venues: Vec<VenueConfig>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            http: ListenConfig::any(8080),
            nats: NatsConfig::default(),
            stream: StreamConfig::default(),
            publisher: PublisherConfig::default(),
            sim: SimConfig::default(),
            venues: Vec::new(),
        }
    }
}

/// One venue connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VenueConfig {
    /// Protocol: `binance` (spot; Binance.US too), `binance-futures`
    /// (USDⓈ-M), `okx` (v5: spot, swaps and dated futures by instrument id)
    /// or `coinbase` (Exchange feed, product ids such as BTC-USD); README
    /// lists them all ([`Kind`]).
    pub kind: Kind,
    /// Name in subjects and tables; empty = the venue's own (`binance`).
    pub exchange: String,
    /// WebSocket base URL; empty = the venue's public endpoint.
    pub ws_url: String,
    /// REST base URL; empty = the venue's public endpoint.
    pub rest_url: String,
    /// Venue symbols, e.g. BTCUSDT, or OKX instrument ids (BTC-USDT, UNI-USD-SWAP).
    pub symbols: Vec<String>,
    /// No frame for this long replaces the connection; keep it above the
    /// quietest subscribed symbol's usual silence.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Reconnect before the venue's own connection limit (24 h on Binance).
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// Open interest is polled over REST this often where the venue has no
    /// stream for it (Binance futures); 0 turns polling off.
    #[serde(with = "humantime_serde")]
    pub open_interest_interval: Duration,
    /// Every valid book is published whole this often (a late consumer,
    /// such as a restarted gateway, gets books within it); 0 = only the
    /// venue's own snapshots.
    #[serde(with = "humantime_serde")]
    pub book_snapshot_interval: Duration,
    /// Symbols per WebSocket connection; more are spread over several
    /// connections. 0 = the venue's limit (Binance spot 256 = 1024 streams,
    /// futures 33 = 200 streams, OKX and Coinbase 100).
    pub symbols_per_connection: usize,
}

impl Default for VenueConfig {
    fn default() -> Self {
        VenueConfig {
            kind: Kind::Binance,
            exchange: String::new(),
            ws_url: String::new(),
            rest_url: String::new(),
            symbols: Vec::new(),
            stale_after: Duration::from_secs(30),
            backoff_max: Duration::from_secs(30),
            max_connection_age: Duration::from_secs(82_800),
            open_interest_interval: Duration::from_secs(60),
            book_snapshot_interval: Duration::from_secs(30),
            symbols_per_connection: 0,
        }
    }
}

/// How events go to JetStream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublisherConfig {
    /// Messages whose publish ack is awaited at once.
    pub max_ack_inflight: NonZeroUsize,
    /// Events of one subject carried by one message at most. Events queued
    /// together are batched; at a low rate most messages hold one. Set 1
    /// when several replicas collect the same venue: JetStream then drops
    /// their duplicates event by event.
    pub max_batch_events: usize,
    /// Events held while NATS is slow or down; beyond it the oldest are
    /// dropped and counted, so venue read loops never block.
    pub buffer_capacity: NonZeroUsize,
    /// Fraction of events that carry a trace (a producer span and a
    /// `traceparent` header followed by the storage-writer), 0 to 1.
    pub trace_ratio: f64,
    /// Rounds of atomic batches start at most this often (0 to 1 s). The
    /// server stages each atomic batch in files of its own; a round every
    /// few milliseconds pays that for little. What queues meanwhile joins
    /// the next round, in fewer and larger messages. The live lane does
    /// not wait for rounds, and rounds of one event per message
    /// (`max_batch_events = 1`) are not paced. "0s" starts a round as soon
    /// as a slot is free.
    #[serde(with = "humantime_serde")]
    pub round_interval: Duration,
}

/// The longest `publisher.round_interval` accepted.
pub const MAX_ROUND_INTERVAL: Duration = Duration::from_secs(1);

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            max_ack_inflight: NonZeroUsize::new(4096).expect("not zero"),
            max_batch_events: 1000,
            buffer_capacity: NonZeroUsize::new(100_000).expect("not zero"),
            trace_ratio: 0.001,
            round_interval: Duration::from_millis(50),
        }
    }
}

/// The built-in simulated venue: the generated local exchange (Binance's
/// protocol) on a loopback port, read by the real Binance connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    pub enabled: bool,
    /// Venue name the events carry.
    pub exchange: String,
    /// Normalized spot symbols with their starting price.
    pub symbols: Vec<SimSymbol>,
    /// Trades per second per symbol.
    pub trades_per_second: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSymbol {
    pub symbol: String,
    pub price: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        let s = |symbol: &str, price: &str| SimSymbol {
            symbol: symbol.into(),
            price: price.into(),
        };
        SimConfig {
            enabled: false,
            exchange: "sim".into(),
            symbols: vec![
                s("BTC-USDT", "60000.00"),
                s("ETH-USDT", "3000.00"),
                s("SOL-USDT", "150.000"),
            ],
            trades_per_second: 20,
        }
    }
}

impl Validate for CollectorConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (i, v) in self.venues.iter().enumerate() {
            if v.symbols.is_empty() {
                return Err(ConfigError::invalid(
                    &format!("venues[{i}].symbols"),
                    "[]",
                    "at least one symbol",
                ));
            }
            if v.stale_after < Duration::from_secs(1) {
                return Err(ConfigError::invalid_duration(
                    &format!("venues[{i}].stale_after"),
                    v.stale_after,
                    "at least \"1s\"",
                ));
            }
        }
        self.nats.validate("nats")?;
        self.stream.validate("stream")?;
        let p = &self.publisher;
        if !(0.0..=1.0).contains(&p.trace_ratio) {
            return Err(ConfigError::invalid(
                "publisher.trace_ratio",
                p.trace_ratio,
                "a fraction from 0 to 1",
            ));
        }
        if p.max_batch_events == 0 || p.max_batch_events > 100_000 {
            return Err(ConfigError::invalid(
                "publisher.max_batch_events",
                p.max_batch_events,
                "1 to 100000 events",
            ));
        }
        if p.round_interval > MAX_ROUND_INTERVAL {
            return Err(ConfigError::invalid_duration(
                "publisher.round_interval",
                p.round_interval,
                "at most \"1s\" (events wait for the next round, and a round takes 65,536 events at most)",
            ));
        }
        if self.sim.trades_per_second == 0 || self.sim.trades_per_second > 100_000 {
            return Err(ConfigError::invalid(
                "sim.trades_per_second",
                self.sim.trades_per_second,
                "1 to 100000",
            ));
        }
        for (i, s) in self.sim.symbols.iter().enumerate() {
            if s.symbol.parse::<moat_common_types::symbol::Symbol>().is_err() {
                return Err(ConfigError::invalid(
                    &format!("sim.symbols[{i}].symbol"),
                    format!("\"{}\"", s.symbol),
                    "a normalized symbol like BTC-USDT",
                ));
            }
            if moat_common_types::model::parse_price("price", &s.price).is_err() {
                return Err(ConfigError::invalid(
                    &format!("sim.symbols[{i}].price"),
                    format!("\"{}\"", s.price),
                    "a positive decimal price",
                ));
            }
        }
        Ok(())
    }
}
