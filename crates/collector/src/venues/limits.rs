//! Venue connection limits: how many connections a venue accepts per IP in
//! a time window, and how many symbols one connection may carry. Symbols
//! beyond the per-connection limit are sharded over several connections,
//! and every connection attempt (first connects and reconnects alike) waits
//! for a slot in the venue's window, so a reconnect storm never gets the IP
//! banned.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use super::Kind;

/// The published limits of one venue protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VenueLimits {
    /// Connection attempts allowed per `window` from one IP.
    pub connections: usize,
    pub window: Duration,
    /// Symbols one connection may carry (streams per connection divided by
    /// the streams each symbol needs).
    pub symbols_per_connection: usize,
}

/// Splits `symbols` into connection-sized shards.
pub fn shards(symbols: &[String], per_connection: usize) -> Vec<Vec<String>> {
    symbols.chunks(per_connection.max(1)).map(<[String]>::to_vec).collect()
}

/// A sliding window of connection attempts shared by every connection to
/// one venue in this process.
#[derive(Debug)]
pub struct ConnectionLimiter {
    limit: usize,
    window: Duration,
    attempts: Mutex<VecDeque<Instant>>,
}

impl ConnectionLimiter {
    pub fn new(limit: usize, window: Duration) -> ConnectionLimiter {
        ConnectionLimiter {
            limit: limit.max(1),
            window,
            attempts: Mutex::new(VecDeque::new()),
        }
    }

    /// The process-wide limiter of a venue kind.
    pub fn for_kind(kind: Kind) -> Arc<ConnectionLimiter> {
        static LIMITERS: OnceLock<Mutex<HashMap<Kind, Arc<ConnectionLimiter>>>> = OnceLock::new();
        let mut map = LIMITERS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(kind)
            .or_insert_with(|| {
                let l = kind.limits();
                Arc::new(ConnectionLimiter::new(l.connections, l.window))
            })
            .clone()
    }

    /// Waits until one more attempt fits in the window, and takes it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut attempts = self.attempts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                while attempts.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                    attempts.pop_front();
                }
                if attempts.len() < self.limit {
                    attempts.push_back(now);
                    return;
                }
                self.window - now.duration_since(*attempts.front().expect("the window is full"))
            };
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "venue connection limit reached, waiting"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_sharded_by_the_stream_limit() {
        let symbols: Vec<String> = (0..300).map(|i| format!("S{i}USDT")).collect();
        let spot = shards(&symbols, Kind::Binance.limits().symbols_per_connection);
        assert_eq!(spot.iter().map(Vec::len).collect::<Vec<_>>(), vec![256, 44]);
        // Every spot shard stays within 1024 streams of 4 per symbol.
        assert!(spot.iter().all(|s| s.len() * 4 <= 1024));
        let futures = shards(&symbols, Kind::BinanceFutures.limits().symbols_per_connection);
        assert!(
            futures.iter().all(|s| s.len() * 6 <= 200),
            "futures: 200 streams per connection"
        );
        assert_eq!(futures.iter().map(Vec::len).sum::<usize>(), 300);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_beyond_the_window_wait() {
        let limiter = ConnectionLimiter::new(3, Duration::from_secs(300));
        let started = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "three fit at once");
        limiter.acquire().await;
        assert!(
            started.elapsed() >= Duration::from_secs(300),
            "the fourth waits for the window"
        );
    }
}
