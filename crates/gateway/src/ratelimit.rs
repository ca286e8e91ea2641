//! Token buckets per key (strategy, or strategy and chain).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use moat_common_types::{Error, ErrorCode};

/// How long to wait before retrying, carried by `RESOURCE_EXHAUSTED` errors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryAfter(pub Duration);

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub fn check(&self, key: &str) -> Result<(), RetryAfter> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(RetryAfter(Duration::from_secs_f64((1.0 - *tokens) / self.rate)))
        }
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
