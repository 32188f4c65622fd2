//! Figures derived from one [`RunResult`]: loss, continuity, bitrate, gaps, lateness,
//! link-state timing (B2) and trace capacity (B3).

use std::path::Path;

use linkemu::trace::Trace;
use serde::{Deserialize, Serialize};

use crate::metrics::{Lateness, PidEnds};
use crate::round::{RunResult, LEAD_IN_MS};

/// Derived figures of one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Derived {
    /// TS packets handed to the sender's transport.
    pub sent_ts: u64,
    /// TS packets the receiver output.
    pub received_ts: u64,
    /// Lost TS packets: max(sent − received, packets missing by continuity counters
    /// inside the stream + at its start + at its end).
    pub lost_ts: u64,
    /// Of those, missing before the receiver's first / after its last packet (per-PID
    /// continuity counters of sender and receiver compared, see `metrics::PidEnds`,
    /// rounded up to whole 7-packet datagrams when the counts allow).
    pub lost_at_ends: u64,
    /// `lost_ts / sent_ts`.
    pub residual_loss: f64,
    /// TR 101 290 1.4 continuity errors at the receiver.
    pub cc_errors: u64,
    /// TS bitrate into the sender's transport (kbit/s).
    pub sent_kbps: f64,
    /// TS bitrate out of the receiver (kbit/s): received bytes over the sender's
    /// first-to-last send time.
    pub delivered_kbps: f64,
    /// Longest output gap (ms).
    pub max_gap_ms: f64,
    /// Output gaps of 1 s or more.
    pub stalls_1s: usize,
    /// Late TS packets, estimated: the late share of the PCR packets × packets received
    /// (see `metrics::Lateness`).
    pub late_packets: u64,
    /// Transport delay figures from the matched PCR packets.
    pub lateness: Lateness,
    /// No loss inside the stream (losses at its very start/end excepted), no continuity
    /// error, no failure, and something arrived.
    pub clean: bool,
    /// B2: ms from the link cut to the sender reporting it `Down`.
    pub detect_ms: Option<f64>,
    /// B2: ms from the link's return to the sender reporting it `Live`/`Degraded`.
    pub readmit_ms: Option<f64>,
    /// Capacity of the used links over the sender's window (kbit/s, IP level).
    pub capacity_kbps: Option<f64>,
    /// Share of the forward datagrams each used link delivered.
    pub link_share: Vec<f64>,
    /// Sender + receiver CPU (% of one core) over the window.
    pub cpu_percent: f64,
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Compute [`Derived`]; `traces_dir` resolves trace links for the capacity figure.
pub fn derive(r: &RunResult, traces_dir: Option<&Path>) -> Derived {
    let out = &r.receiver["output"];
    let sent_ts = r.sender["ts_packets"].as_u64().unwrap_or(0);
    let received_ts = out["ts_packets"].as_u64().unwrap_or(0);
    let cc_missing = out["cc_missing_packets"].as_u64().unwrap_or(0);
    let ends =
        |v: &serde_json::Value| serde_json::from_value::<PidEnds>(v.clone()).unwrap_or_default();
    let (head, tail) =
        PidEnds::missing_at_ends(&ends(&r.sender["pid_ends"]), &ends(&out["pid_ends"]));
    // Datagrams carry 7 TS packets, some without payload (no CC step): a loss at an
    // end may hide up to 6 packets more than the CC difference shows.
    let diff = sent_ts.saturating_sub(received_ts);
    let per_end = |n: u64| n.div_ceil(7) * 7;
    let lost_at_ends = (head + tail).max(
        diff.saturating_sub(cc_missing)
            .min(per_end(head) + per_end(tail)),
    );
    let lost_ts = diff.max(cc_missing + head + tail);
    let times = |v: &serde_json::Value| {
        serde_json::from_value::<Vec<(u64, f64)>>(v.clone()).unwrap_or_default()
    };
    let lateness = Lateness::measure(
        &times(&r.sender["pcr_times"]),
        &times(&out["pcr_times"]),
        f64::from(r.spec.latency_ms),
    );
    let cc_errors = out["cc_errors"].as_u64().unwrap_or(0);
    let span = |a: f64, b: f64| ((b - a) / 1000.0).max(1e-3);
    let (first, last) = (f(&r.sender["first_unix_ms"]), f(&r.sender["last_unix_ms"]));
    let sent_kbps = f(&r.sender["ts_bytes"]) * 8.0 / span(first, last) / 1000.0;
    let delivered_kbps = f(&out["bytes"]) * 8.0 / span(first, last) / 1000.0;
    let stalls_1s = out["stalls"]
        .as_array()
        .map_or(0, |s| s.iter().filter(|s| f(&s["ms"]) >= 1000.0).count());

    // B2 timing: the first "down" event of a used link.
    let (mut detect_ms, mut readmit_ms) = (None, None);
    for (id, &i) in r.spec.used_links().iter().enumerate() {
        let events = &r.spec.links[i].events;
        let at = |what: &str| {
            events
                .iter()
                .find(|(_, a)| a == what)
                .map(|(t, _)| r.emu_epoch_unix_ms + (LEAD_IN_MS + t) as f64)
        };
        let Some(cut) = at("down") else { continue };
        let state_after = |since: f64, states: &[&str]| {
            r.sender_events.iter().find_map(|e| {
                let t = f(&e["unix_ms"]);
                (e["event"] == "link-state"
                    && e["link"].as_u64() == Some(id as u64)
                    && t >= since
                    && states.contains(&e["state"].as_str().unwrap_or("")))
                .then_some(t - since)
            })
        };
        detect_ms = state_after(cut, &["Down"]);
        if let Some(up) = at("up") {
            readmit_ms = state_after(up, &["Live", "Degraded"]);
        }
        break;
    }

    // Capacity of trace / fixed links over the sender's window (emulator time).
    let capacity_kbps = (!r.spec.links.is_empty() && last > first).then(|| {
        let t0 = (first - r.emu_epoch_unix_ms).max(0.0) as u64;
        let t1 = (last - r.emu_epoch_unix_ms).max(0.0) as u64;
        let mut bits = 0.0;
        for &i in &r.spec.used_links() {
            let l = &r.spec.links[i];
            match (&l.rate_bps, &l.trace, traces_dir) {
                (Some(bps), _, _) => bits += *bps as f64 * (t1 - t0) as f64 / 1000.0,
                (None, Some(file), Some(dir)) => {
                    if let Ok(trace) = Trace::load(&dir.join(file)) {
                        bits += trace.capacity_bits_between(t0, t1) as f64;
                    }
                }
                _ => {}
            }
        }
        bits / ((t1 - t0) as f64 / 1000.0).max(1e-3) / 1000.0
    });

    let delivered: Vec<f64> = r
        .emulator_links
        .iter()
        .map(|l| f(&l["forward"]["delivered"]))
        .collect();
    let total: f64 = delivered.iter().sum();
    let link_share = delivered
        .iter()
        .map(|d| if total > 0.0 { d / total } else { 0.0 })
        .collect();

    Derived {
        sent_ts,
        received_ts,
        lost_ts,
        lost_at_ends,
        residual_loss: if sent_ts > 0 {
            lost_ts as f64 / sent_ts as f64
        } else {
            1.0
        },
        cc_errors,
        sent_kbps,
        delivered_kbps,
        max_gap_ms: f(&out["max_gap_ms"]),
        stalls_1s,
        late_packets: (lateness.late_share * received_ts as f64).round() as u64,
        lateness,
        clean: lost_ts == lost_at_ends
            && cc_errors == 0
            && r.failures.is_empty()
            && received_ts > 0,
        detect_ms,
        readmit_ms,
        capacity_kbps,
        link_share,
        cpu_percent: r.sender_cpu.percent + r.receiver_cpu.percent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round::CpuWindow;
    use crate::scenario::{b2_links, RunSpec};
    use crate::systems::System;
    use serde_json::json;

    fn result() -> RunResult {
        RunResult {
            spec: RunSpec {
                id: "B2-braid".into(),
                scenario: "B2".into(),
                system: System::Braid,
                links: b2_links(20, 40),
                single_link: 2,
                bitrate_kbps: 5000,
                adaptive: None,
                latency_ms: 1000,
                duration_s: 60,
                file: None,
                braid_config: String::new(),
            },
            emu_epoch_unix_ms: 1_000_000.0,
            sender_start_unix_ms: 1_002_000.0,
            sender: json!({"ts_packets": 1000, "ts_bytes": 188000, "first_unix_ms": 1_002_000.0, "last_unix_ms": 1_062_000.0,
                "pid_ends": {"pids": [[0, 1, 5], [256, 1, 9]]}}),
            sender_events: vec![
                json!({"event": "link-state", "unix_ms": 1_002_300.0, "link": 2, "state": "Live"}),
                json!({"event": "link-state", "unix_ms": 1_022_250.0, "link": 2, "state": "Down"}),
                json!({"event": "link-state", "unix_ms": 1_042_400.0, "link": 2, "state": "Probing"}),
                json!({"event": "link-state", "unix_ms": 1_042_900.0, "link": 2, "state": "Live"}),
            ],
            receiver: json!({"output": {"ts_packets": 990, "cc_errors": 2, "cc_missing_packets": 12,
                "bytes": 990 * 188, "first_unix_ms": 1_002_100.0, "last_unix_ms": 1_062_100.0,
                "max_gap_ms": 1200.0, "stalls": [{"start_unix_ms": 1.0, "ms": 1200.0}, {"start_unix_ms": 2.0, "ms": 400.0}],
                "pcr_times": [],
                "pid_ends": {"pids": [[0, 1, 5], [256, 3, 8]]}}}),
            emulator_links: vec![
                json!({"forward": {"delivered": 100}}),
                json!({"forward": {"delivered": 300}}),
                json!({"forward": {"delivered": 600}}),
            ],
            sender_cpu: CpuWindow {
                seconds: 10.0,
                cpu_ms: 1000.0,
                percent: 10.0,
            },
            receiver_cpu: CpuWindow {
                seconds: 10.0,
                cpu_ms: 500.0,
                percent: 5.0,
            },
            failures: vec![],
            sender_pipeline: String::new(),
            receiver_pipeline: String::new(),
        }
    }

    #[test]
    fn a_lost_last_datagram_is_a_loss_at_the_end() {
        let mut r = result();
        r.sender = json!({"ts_packets": 1000, "ts_bytes": 188000, "first_unix_ms": 1.0, "last_unix_ms": 2.0,
            "pid_ends": {"pids": [[0, 1, 8], [65, 1, 1]]}});
        // The last datagram (6 video packets with payload + 1 adaptation-only) is missing.
        r.receiver = json!({"output": {"ts_packets": 993, "cc_errors": 0, "cc_missing_packets": 0,
            "pid_ends": {"pids": [[0, 1, 8], [65, 1, 11]]}}});
        let d = derive(&r, None);
        assert_eq!((d.lost_ts, d.lost_at_ends), (7, 7));
        assert!(d.clean);
        // One more inside the stream: not clean.
        r.receiver["output"]["ts_packets"] = json!(986);
        r.receiver["output"]["cc_missing_packets"] = json!(7);
        r.receiver["output"]["cc_errors"] = json!(1);
        let d = derive(&r, None);
        assert_eq!((d.lost_ts, d.lost_at_ends), (14, 7));
        assert!(!d.clean);
    }

    #[test]
    fn b2_figures() {
        let d = derive(&result(), None);
        // CC jumps say 12 inside, the ends 2 + 1 more: more than the count difference.
        assert_eq!(d.lost_ts, 15);
        assert_eq!(d.lost_at_ends, 3);
        assert!(!d.clean);
        assert_eq!(d.stalls_1s, 1);
        assert_eq!(d.detect_ms, Some(250.0));
        assert_eq!(d.readmit_ms, Some(900.0));
        assert_eq!(d.link_share, vec![0.1, 0.3, 0.6]);
        assert!((d.capacity_kbps.unwrap() - 17_000.0).abs() < 1.0);
        assert!((d.sent_kbps - 188.0 * 8.0 * 1000.0 / 60.0 / 1000.0).abs() < 1e-6);
        assert_eq!(d.cpu_percent, 15.0);
    }
}
