//! Encoder feedback (issue "bonded transport": the sink posts the usable aggregate
//! bitrate; the agent sets the encoder's bitrate within [min, max]).
//!
//! [`BitrateController`] turns the sink's `available-bitrate` (bps, docs/elements.md)
//! into an encoder target (kbit/s): a drop is followed at once (within the next
//! sample, i.e. within 1 s of a capacity drop), a rise is followed by at most +10 % per
//! second so the encoder does not chase short capacity spikes. The target leaves
//! room for MPEG-TS/RTP/UDP overhead and repairs (`headroom`).

use std::time::{Duration, Instant};

/// Encoder bitrate controller; sans-IO (time passed in).
#[derive(Debug, Clone)]
pub struct BitrateController {
    min_kbps: u32,
    max_kbps: u32,
    headroom: f64,
    current_kbps: u32,
    last_change: Option<Instant>,
}

/// Largest relative increase per second.
const MAX_RISE_PER_SECOND: f64 = 0.10;
/// Changes smaller than this share of the current bitrate are not made.
const DEADBAND: f64 = 0.03;

impl BitrateController {
    /// Controller starting at `start_kbps`, bounded by `[min_kbps, max_kbps]` (swapped
    /// if given the wrong way round). `headroom` (0–1) is the share of the available
    /// bitrate kept free for TS/RTP overhead and retransmissions (0.2 is a good value).
    pub fn new(start_kbps: u32, min_kbps: u32, max_kbps: u32, headroom: f64) -> Self {
        let (min_kbps, max_kbps) = (min_kbps.min(max_kbps), min_kbps.max(max_kbps));
        Self {
            min_kbps,
            max_kbps,
            headroom: headroom.clamp(0.0, 0.9),
            current_kbps: start_kbps.clamp(min_kbps, max_kbps),
            last_change: None,
        }
    }

    /// The bitrate last decided, kbit/s.
    pub fn current_kbps(&self) -> u32 {
        self.current_kbps
    }

    /// Feed the aggregate available bitrate (bps) measured at `now`; returns the new
    /// encoder bitrate (kbit/s) when it should change. `0` (unknown) changes nothing.
    pub fn update(&mut self, available_bps: u64, now: Instant) -> Option<u32> {
        if available_bps == 0 {
            return None;
        }
        let usable_kbps = available_bps as f64 * (1.0 - self.headroom) / 1000.0;
        let target = usable_kbps.clamp(f64::from(self.min_kbps), f64::from(self.max_kbps));
        let current = f64::from(self.current_kbps);
        let next = if target < current {
            target
        } else {
            let since = self
                .last_change
                .map_or(Duration::from_secs(1), |t| now.saturating_duration_since(t))
                .min(Duration::from_secs(2));
            target.min(current * (1.0 + MAX_RISE_PER_SECOND * since.as_secs_f64()))
        };
        if (next - current).abs() < current * DEADBAND {
            return None;
        }
        self.current_kbps = next.round() as u32;
        self.last_change = Some(now);
        Some(self.current_kbps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_at_once_and_climbs_back_slowly_within_bounds() {
        let t0 = Instant::now();
        let mut c = BitrateController::new(4000, 1000, 8000, 0.2);
        // Capacity falls to 2.5 Mbit/s: follow at once (2000 kbit/s after headroom).
        assert_eq!(c.update(2_500_000, t0), Some(2000));
        // Below min: clamp.
        assert_eq!(c.update(500_000, t0 + Duration::from_secs(1)), Some(1000));
        // Capacity returns: at most +10 %/s.
        let mut t = t0 + Duration::from_secs(1);
        let mut seen = vec![];
        for _ in 0..40 {
            t += Duration::from_secs(1);
            if let Some(k) = c.update(20_000_000, t) {
                seen.push(k);
            }
        }
        assert!(seen
            .windows(2)
            .all(|w| w[1] as f64 <= w[0] as f64 * 1.1 + 1.0));
        assert_eq!(c.current_kbps(), 8000, "capped at max");
        // Small wobbles are ignored.
        assert_eq!(c.update(9_950_000, t + Duration::from_secs(1)), None);
        assert_eq!(c.update(0, t + Duration::from_secs(2)), None);
    }
}
