//! Token buckets per key (strategy, or strategy and chain).
//!
//! Replicas of the gateway share their buckets through [`crate::share`]:
//! each bucket counts the calls it admitted ([`RateLimiter::take_used`]) so
//! that the others can spend them too ([`RateLimiter::spend_remote`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use moat_common_types::{Error, ErrorCode};

/// How long to wait before retrying, carried by `RESOURCE_EXHAUSTED` errors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryAfter(pub Duration);

/// A bucket's refill rate (calls per second) and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub burst: f64,
}

impl Limit {
    pub fn of(rate: f64, burst: f64) -> Limit {
        Limit { rate, burst }
    }
}

struct Bucket {
    tokens: f64,
    /// The limit of the last call that used this bucket.
    limit: Limit,
    last: Instant,
    /// Calls admitted here since the last [`RateLimiter::take_used`].
    used: u32,
}

pub struct RateLimiter {
    /// The limit of keys whose strategy has none of its own.
    default: Limit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            default: Limit { rate, burst },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket of `key`, refilled up to `now` under `limit` (the
    /// bucket's own when `None`).
    fn bucket<'a>(
        &self,
        buckets: &'a mut HashMap<String, Bucket>,
        key: &str,
        limit: Option<Limit>,
        now: Instant,
    ) -> &'a mut Bucket {
        // The key is copied only the first time it is seen.
        if !buckets.contains_key(key) {
            let limit = limit.unwrap_or(self.default);
            buckets.insert(
                key.to_owned(),
                Bucket {
                    tokens: limit.burst,
                    limit,
                    last: now,
                    used: 0,
                },
            );
        }
        let bucket = buckets.get_mut(key).expect("inserted above");
        if let Some(limit) = limit {
            bucket.limit = limit;
        }
        bucket.tokens = (bucket.tokens + now.saturating_duration_since(bucket.last).as_secs_f64() * bucket.limit.rate)
            .min(bucket.limit.burst);
        bucket.last = now;
        bucket
    }

    /// Takes one token for `key` under the default limit, or says how long
    /// until one is available.
    pub fn check(&self, key: &str) -> Result<(), RetryAfter> {
        self.check_with(key, None)
    }

    /// [`RateLimiter::check`] under `limit` when it is given (a strategy's
    /// own), else the default.
    pub fn check_with(&self, key: &str, limit: Option<Limit>) -> Result<(), RetryAfter> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = self.bucket(&mut buckets, key, Some(limit.unwrap_or(self.default)), now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.used = bucket.used.saturating_add(1);
            Ok(())
        } else {
            Err(RetryAfter(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / bucket.limit.rate,
            )))
        }
    }

    /// The calls admitted per key since the last time, for the other
    /// replicas; the counts start again from zero.
    pub fn take_used(&self) -> Vec<(String, u32)> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets
            .iter_mut()
            .filter(|(_, b)| b.used > 0)
            .map(|(key, b)| (key.clone(), std::mem::take(&mut b.used)))
            .collect()
    }

    /// Spends `calls` tokens of `key` that another replica admitted. The
    /// bucket may go below zero (to minus one burst at most), so that the
    /// replicas together admit the configured rate, not one rate each.
    pub fn spend_remote(&self, key: &str, calls: u32) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = self.bucket(&mut buckets, key, None, now);
        bucket.tokens = (bucket.tokens - f64::from(calls)).max(-bucket.limit.burst);
    }
}

/// The client-facing error of a refused call. The wait is rounded up to
/// the next hundredth of a second, so a client that waits as told finds a
/// token (never "retry after 0.00s").
pub fn limited(retry: RetryAfter) -> Error {
    let seconds = ((retry.0.as_secs_f64() * 100.0).ceil() / 100.0).max(0.01);
    Error::new(
        ErrorCode::ResourceExhausted,
        format!("Rate limited, retry after {seconds:.2}s"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_another_replica_admitted_are_spent_here() {
        let limiter = RateLimiter::new(10.0, 5.0);
        limiter.spend_remote("a", 3);
        for _ in 0..2 {
            assert!(limiter.check("a").is_ok());
        }
        assert!(limiter.check("a").is_err(), "5 of burst 5 spent, 3 of them elsewhere");
        // Far more than a burst elsewhere: the wait is bounded by two bursts' refill.
        limiter.spend_remote("a", 1_000);
        let RetryAfter(wait) = limiter.check("a").unwrap_err();
        assert!(
            wait > Duration::from_millis(500) && wait <= Duration::from_millis(600),
            "{wait:?}"
        );
        assert_eq!(
            limiter.take_used(),
            [("a".to_owned(), 2)],
            "remote calls are not reported again"
        );
    }

    #[test]
    fn a_strategy_limit_replaces_the_default() {
        let limiter = RateLimiter::new(1000.0, 1000.0);
        let own = Some(Limit::of(1.0, 2.0));
        for _ in 0..2 {
            assert!(limiter.check_with("slow", own).is_ok());
        }
        let RetryAfter(wait) = limiter.check_with("slow", own).unwrap_err();
        assert!(wait > Duration::from_millis(900), "refilled at 1/s: {wait:?}");
        for _ in 0..100 {
            assert!(limiter.check("fast").is_ok(), "other keys keep the default");
        }
    }

    #[test]
    fn burst_then_refusal_with_a_retry_time() {
        let limiter = RateLimiter::new(10.0, 3.0);
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let retry = limiter.check("a").unwrap_err();
        assert!(
            retry.0 > Duration::ZERO && retry.0 <= Duration::from_millis(100),
            "{retry:?}"
        );
        assert!(limiter.check("b").is_ok(), "keys have separate buckets");
        assert_eq!(
            {
                let mut used = limiter.take_used();
                used.sort();
                used
            },
            [("a".to_owned(), 3), ("b".to_owned(), 1)],
            "admitted calls only"
        );
        assert!(limiter.take_used().is_empty(), "counted once");
        assert_eq!(
            limited(RetryAfter(Duration::from_millis(250))).message,
            "Rate limited, retry after 0.25s"
        );
        // Waits under a hundredth are rounded up, never shown as 0.00s.
        for (wait, shown) in [
            (Duration::from_micros(300), "0.01s"),
            (Duration::from_millis(121), "0.13s"),
        ] {
            let message = limited(RetryAfter(wait)).message;
            assert_eq!(message, format!("Rate limited, retry after {shown}"), "{wait:?}");
        }
    }
}
