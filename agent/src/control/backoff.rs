//! Reconnect delays (PROTOCOL.md §1): exponential 1 s → 2 s → 4 s … capped at
//! 30 s, each with ±20 % jitter; reset after a successful `auth.login`.

use std::time::Duration;

use rand::Rng;

/// First delay.
pub const BASE: Duration = Duration::from_secs(1);
/// Largest delay before jitter.
pub const CAP: Duration = Duration::from_secs(30);
/// Jitter: each delay is multiplied by a uniform factor in `1 ± JITTER`.
pub const JITTER: f64 = 0.2;

/// Exponential backoff state.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// A fresh backoff: the next delay is about [`BASE`].
    pub fn new() -> Self {
        Self { attempt: 0 }
    }

    /// The delay before the next attempt, s: `min(BASE·2^n, CAP)·(1 ± JITTER)` where
    /// `n` counts the delays handed out since the last reset.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal();
        self.attempt = self.attempt.saturating_add(1);
        let factor = rand::rng().random_range((1.0 - JITTER)..=(1.0 + JITTER));
        nominal.mul_f64(factor)
    }

    /// The delay before jitter for the next attempt.
    pub fn nominal(&self) -> Duration {
        let exp = self.attempt.min(16);
        BASE.saturating_mul(1u32 << exp).min(CAP)
    }

    /// Back to [`BASE`] (after a successful login).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Jump to the cap (a refused login is not retried faster than [`CAP`]).
    pub fn saturate(&mut self) {
        self.attempt = 16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter() {
        let mut b = Backoff::new();
        let nominal = [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0];
        for n in nominal {
            let d = b.next_delay().as_secs_f64();
            assert!(d >= n * 0.8 - 1e-9 && d <= n * 1.2 + 1e-9, "{d} vs {n}");
        }
        for _ in 0..1000 {
            let d = b.next_delay();
            assert!(d >= CAP.mul_f64(0.8) && d <= CAP.mul_f64(1.2), "{d:?}");
        }
    }

    #[test]
    fn jitter_actually_varies() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new();
            seen.insert(b.next_delay().as_micros());
        }
        assert!(seen.len() > 10);
    }

    #[test]
    fn reset_and_saturate() {
        let mut b = Backoff::new();
        for _ in 0..4 {
            b.next_delay();
        }
        assert_eq!(b.nominal(), Duration::from_secs(16));
        b.reset();
        assert_eq!(b.nominal(), BASE);
        b.saturate();
        assert_eq!(b.nominal(), CAP);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.nominal(), CAP);
    }
}
