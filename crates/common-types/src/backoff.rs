//! The one retry pause every service uses: capped exponential backoff with
//! full jitter (each pause drawn uniformly from zero to the attempt's
//! ceiling), so clients that failed together do not retry together.

use std::time::Duration;

use rand::Rng;

/// Pauses that double from `base` per attempt up to `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap }
    }

    /// The longest pause after `attempt` failures (0 for the first retry):
    /// `base × 2^attempt`, never above `cap`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.base.saturating_mul(1u32 << attempt.min(20)).min(self.cap)
    }

    /// A pause drawn uniformly from zero to [`Backoff::ceiling`].
    pub fn pause(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_micros().min(u64::MAX as u128) as u64;
        Duration::from_micros(rand::rng().random_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap_and_pauses_stay_under_them() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let ceilings: Vec<u128> = (0..8).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(5));
        for attempt in 0..40 {
            assert!(b.pause(attempt) <= b.ceiling(attempt));
        }
        // Jitter: a thousand draws are not all the same.
        let draws: std::collections::BTreeSet<Duration> = (0..1000).map(|_| b.pause(3)).collect();
        assert!(draws.len() > 10, "{draws:?}");
    }
}
