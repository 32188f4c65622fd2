//! Scenarios B1–B6 of issue 3 and the CI smoke, as data: links (emulator parameters),
//! bitrate, latency, duration, Braid's `[scheduler]` table.
//!
//! Link delays are given as RTTs (the "30/50/80 ms" are the RTTs of the
//! dead-link detection target): the emulator delays each direction by RTT / 2.
//! Loss applies to both directions (independent processes): a modem loses RTCP and
//! NACKs too.

use serde::{Deserialize, Serialize};

use crate::systems::System;

/// One emulated link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkParams {
    /// Short name for the report (e.g. "2 Mbit/s").
    pub label: String,
    /// Fixed capacity (bit/s of IP datagrams), or
    pub rate_bps: Option<u64>,
    /// a Mahimahi trace file name in the traces directory.
    pub trace: Option<String>,
    /// Round-trip propagation delay (ms): RTT/2 each way.
    pub rtt_ms: f64,
    /// Forward jitter (ms, ± uniform, no reordering).
    pub jitter_ms: f64,
    /// Independent loss, forward.
    pub loss: f64,
    /// Gilbert-Elliott (mean loss, mean burst in packets), forward.
    pub ge: Option<(f64, f64)>,
    /// Independent loss, reverse.
    pub reverse_loss: f64,
    /// Drop-tail queue (ms of the link's rate).
    pub queue_ms: u64,
    /// Schedule: (ms since the stream start, emulator action).
    pub events: Vec<(u64, String)>,
}

impl LinkParams {
    fn fixed(mbps: f64, rtt_ms: f64, loss: f64) -> Self {
        Self {
            label: format!("{mbps} Mbit/s, RTT {rtt_ms} ms"),
            rate_bps: Some((mbps * 1e6) as u64),
            trace: None,
            rtt_ms,
            jitter_ms: 0.0,
            loss,
            ge: None,
            reverse_loss: loss,
            queue_ms: QUEUE_MS,
            events: Vec::new(),
        }
    }

    fn traced(file: &str, rtt_ms: f64, loss: f64) -> Self {
        Self {
            label: format!("{}, RTT {rtt_ms} ms", file.trim_end_matches(".up")),
            rate_bps: None,
            trace: Some(file.to_owned()),
            ..Self::fixed(1.0, rtt_ms, loss)
        }
    }
}

/// Queue of every emulated link (ms of its rate; for traces, of the trace mean).
pub const QUEUE_MS: u64 = 300;

/// Aggregate capacity of the B1 links (kbit/s).
pub const B1_AGGREGATE_KBPS: u32 = 17_000;

/// The B1 links: 2, 5, 10 Mbit/s; RTT 30/50/80 ms; 1 % loss.
pub fn b1_links() -> Vec<LinkParams> {
    vec![
        LinkParams::fixed(2.0, 30.0, 0.01),
        LinkParams::fixed(5.0, 50.0, 0.01),
        LinkParams::fixed(10.0, 80.0, 0.01),
    ]
}

/// B2: B1 with link 3 hard down from `down_s` to `up_s` (stream time).
pub fn b2_links(down_s: u64, up_s: u64) -> Vec<LinkParams> {
    let mut links = b1_links();
    links[2].events = vec![(down_s * 1000, "down".into()), (up_s * 1000, "up".into())];
    links
}

/// B3: TMobile-LTE-short, Verizon-LTE-short, ATT-LTE-driving; RTT 40 ms; 0.5 % loss.
pub fn b3_links() -> Vec<LinkParams> {
    [
        "TMobile-LTE-short.up",
        "Verizon-LTE-short.up",
        "ATT-LTE-driving.up",
    ]
    .iter()
    .map(|f| LinkParams::traced(f, 40.0, 0.005))
    .collect()
}

/// B4: two 5 Mbit/s links, RTT 60 ms, ±30 ms jitter (one-way, no reordering), 5 % loss:
/// 3 % independent + 2 % in Gilbert-Elliott bursts of 4 packets on average (forward),
/// 3 % independent (reverse).
pub fn b4_links() -> Vec<LinkParams> {
    (0..2)
        .map(|_| LinkParams {
            label: "5 Mbit/s, RTT 60 ms ±30 ms, 5 % loss".into(),
            jitter_ms: 30.0,
            loss: 0.03,
            ge: Some((0.02, 4.0)),
            reverse_loss: 0.03,
            ..LinkParams::fixed(5.0, 60.0, 0.0)
        })
        .collect()
}

/// Braid's `config` for every scenario: fast failover on, the rest at the sink's
/// defaults (PROTOCOL.md §5 `scheduler`).
pub fn braid_config() -> String {
    "version = 1\n[scheduler]\nstorm_enabled = true\n".to_owned()
}

/// One system's run in a scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// Unique within a suite run, e.g. `B1-braid-8500`.
    pub id: String,
    /// Scenario id (`B1`…`B6`, `S1`, `S2`).
    pub scenario: String,
    /// Transport.
    pub system: System,
    /// Links of the scenario (empty: B6 loopback without emulator).
    pub links: Vec<LinkParams>,
    /// The link a non-bonded system uses.
    pub single_link: usize,
    /// Encoder bitrate (kbit/s) at start.
    pub bitrate_kbps: u32,
    /// Adaptive range (kbit/s) for Braid in B3.
    pub adaptive: Option<(u32, u32)>,
    /// Latency / buffer (ms) on both ends.
    pub latency_ms: u32,
    /// Stream duration (s).
    pub duration_s: u64,
    /// Replay this TS file instead of encoding live (B6).
    pub file: Option<String>,
    /// `ristbondsink config`.
    pub braid_config: String,
}

impl RunSpec {
    /// Links this run's system uses (indexes into `links`).
    pub fn used_links(&self) -> Vec<usize> {
        if self.links.is_empty() {
            Vec::new()
        } else if self.system.bonded() {
            (0..self.links.len()).collect()
        } else {
            vec![self.single_link]
        }
    }
}

/// Durations and search depth of a suite mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// B1 run length (s).
    pub b1_s: u64,
    /// B1 bisection rounds.
    pub b1_rounds: u32,
    /// B2 run length and cut/restore times (s).
    pub b2: (u64, u64, u64),
    /// B3 run length (s).
    pub b3_s: u64,
    /// B4 and B5 run length (s).
    pub b45_s: u64,
    /// B6 run length per system (s).
    pub b6_s: u64,
}

/// `make bench`: the figures (B1 over 60 s).
pub const FULL: Timing = Timing {
    b1_s: 60,
    b1_rounds: 5,
    b2: (60, 20, 40),
    b3_s: 120,
    b45_s: 60,
    b6_s: 30,
};

/// `--quick`: same scenarios, shorter runs, coarser search (for iteration).
pub const QUICK: Timing = Timing {
    b1_s: 20,
    b1_rounds: 3,
    b2: (30, 10, 20),
    b3_s: 30,
    b45_s: 20,
    b6_s: 10,
};

/// Systems compared in B1–B5.
pub const COMPARED: [System; 4] = [
    System::Braid,
    System::GstRr,
    System::GstBroadcast,
    System::RistSingle,
];

/// B1 search range (kbit/s): from this floor up to the aggregate capacity.
pub const B1_FLOOR_KBPS: u32 = 500;

/// State of one system's B1 bisection.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bisection {
    /// Highest bitrate that ran clean.
    pub best_clean: Option<u32>,
    /// Lowest bitrate that did not.
    pub lowest_failed: Option<u32>,
    /// (kbit/s, clean) in the order tried.
    pub probes: Vec<(u32, bool)>,
}

impl Bisection {
    /// Next bitrate to try: the middle of the open interval, rounded to 50 kbit/s;
    /// `None` when the interval is narrower than 250 kbit/s or the floor failed.
    pub fn next(&self) -> Option<u32> {
        let lo = self.best_clean.unwrap_or(0);
        let hi = self.lowest_failed.unwrap_or(B1_AGGREGATE_KBPS);
        if self.lowest_failed.is_some_and(|f| f <= B1_FLOOR_KBPS) || hi.saturating_sub(lo) < 250 {
            return None;
        }
        let mid = (lo + hi) / 2;
        Some((mid / 50 * 50).max(B1_FLOOR_KBPS))
    }

    /// Record the outcome of a probe.
    pub fn record(&mut self, kbps: u32, clean: bool) {
        self.probes.push((kbps, clean));
        if clean {
            self.best_clean = Some(self.best_clean.map_or(kbps, |b| b.max(kbps)));
        } else {
            self.lowest_failed = Some(self.lowest_failed.map_or(kbps, |f| f.min(kbps)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisection_converges_on_the_threshold() {
        for threshold in [600u32, 2_000, 6_100, 14_800, 16_900] {
            let mut b = Bisection::default();
            for _ in 0..8 {
                let Some(k) = b.next() else { break };
                b.record(k, k <= threshold);
            }
            let best = b.best_clean.unwrap();
            assert!(
                best <= threshold && threshold - best < 300,
                "{threshold}: {b:?}"
            );
        }
        // Never clean: stops at the floor.
        let mut b = Bisection::default();
        for _ in 0..20 {
            let Some(k) = b.next() else { break };
            b.record(k, false);
        }
        assert_eq!(b.best_clean, None);
        assert_eq!(b.lowest_failed, Some(B1_FLOOR_KBPS));
        assert!(b.probes.len() < 10);
    }

    #[test]
    fn scenario_links() {
        assert_eq!(
            b1_links().iter().map(|l| l.rate_bps.unwrap()).sum::<u64>(),
            17_000_000
        );
        assert_eq!(
            b2_links(20, 40)[2].events,
            vec![(20_000, "down".into()), (40_000, "up".into())]
        );
        assert_eq!(b3_links().len(), 3);
        let b4 = &b4_links()[0];
        assert!((b4.loss + b4.ge.unwrap().0 - 0.05).abs() < 1e-9);
    }
}
