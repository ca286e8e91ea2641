//! Shared building blocks of the moat services.
//!
//! The domain API (`model`, `symbol`, `subject`, `error`) is plain Rust: no
//! tonic or axum types cross it. The service plumbing (`config`, `telemetry`,
//! `http`) is shared so that every binary starts, logs, reports health and
//! fails on bad configuration the same way.

pub mod backoff;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod infra;
pub mod model;
pub mod nats;
pub mod proto_conv;
pub mod server;
pub mod subject;
pub mod symbol;
pub mod telemetry;
pub mod tls;

pub use error::{Error, ErrorCode};
pub use model::{Decimal, Exchange, Instrument, Kind, Market, MarketEvent, Side};

/// Current wall-clock time in unix milliseconds.
pub fn now_ms() -> i64 {
    now_us() / 1_000
}

/// A venue's millisecond timestamp in microseconds, the unit of every
/// event timestamp.
pub fn us_from_ms(ms: i64) -> i64 {
    ms.saturating_mul(1_000)
}

/// Current wall-clock time in unix microseconds, the unit of every event
/// timestamp.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}
