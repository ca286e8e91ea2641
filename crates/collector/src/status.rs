//! Connection and stream status behind `/status` and the venue health checks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    pub symbol: String,
    pub last_event_ms: i64,
}

/// Shared status of one venue connection.
#[derive(Debug, Clone)]
pub struct StreamStatus {
    pub exchange: String,
    inner: Arc<Mutex<BTreeMap<String, i64>>>,
    connected: Arc<std::sync::atomic::AtomicBool>,
}

impl StreamStatus {
    pub fn new(exchange: &str) -> StreamStatus {
        StreamStatus {
            exchange: exchange.to_owned(),
            inner: Arc::default(),
            connected: Arc::default(),
        }
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Marks `symbol` fresh as of `ts_us` (Unix µs).
    pub fn touch(&self, symbol: &str, ts_us: i64) {
        let mut map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get_mut(symbol) {
            Some(last) => *last = ts_us,
            None => {
                map.insert(symbol.to_owned(), ts_us);
            }
        }
    }

    /// When the newest event on any stream arrived (Unix µs), `None`
    /// before the first.
    pub fn newest_event_us(&self) -> Option<i64> {
        let map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values().max().copied()
    }

    /// Age in ms of the newest event on any stream at `now_us`, `None`
    /// before the first.
    pub fn last_event_age_ms(&self, now_us: i64) -> Option<i64> {
        self.newest_event_us().map(|last| (now_us - last) / 1_000)
    }

    pub fn to_json(&self, now_us: i64) -> serde_json::Value {
        let map = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let streams: Vec<serde_json::Value> = map
            .iter()
            .map(|(symbol, last)| serde_json::json!({"symbol": symbol, "last_event_age_ms": (now_us - last) / 1_000}))
            .collect();
        serde_json::json!({"exchange": self.exchange, "connected": self.is_connected(), "streams": streams})
    }
}
