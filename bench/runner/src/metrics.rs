//! What the receiver role measures on the TS it outputs, without GStreamer: continuity
//! (TR 101 290 1.4 via `ristbond_core::ts::ContinuityChecker`), output gaps, delivered
//! bytes per 100 ms, and lateness from the PCR (ISO/IEC 13818-1 §2.4.3.5).
//!
//! Lateness: every TS packet is given the media time of the last PCR before it; its
//! delay is arrival time minus media time, and its *excess delay* is that minus the
//! smallest delay of the run. A packet is late when its excess delay exceeds the
//! receiver latency (a player buffering `latency` ms behind the earliest packets would
//! have had to skip it). Resolution: the PCR interval of the stream (mpegtsmux: ≤ 40 ms).
//! The first [`STARTUP_MS`] of output are left out of the lateness figures: a live
//! sender pipeline starts with a burst of frames captured while it prerolled.

use ristbond_core::ts::{ContinuityChecker, TS_PACKET_SIZE};
use serde::Serialize;

/// PCR values wrap at 2^33 × 300 ticks of 27 MHz (about 26.5 h).
const PCR_WRAP: u64 = (1u64 << 33) * 300;

/// Output start-up excluded from the lateness figures (ms).
pub const STARTUP_MS: f64 = 2000.0;

/// Gaps at least this long are listed individually as stalls (ms).
pub const STALL_MS: f64 = 300.0;

/// The PCR (27 MHz ticks) of one TS packet, if its adaptation field carries one
/// (ISO/IEC 13818-1 §2.4.3.4–5: PCR_flag, program_clock_reference_base/extension).
pub fn pcr_of(pkt: &[u8]) -> Option<(u16, u64)> {
    if pkt.len() < 12 || pkt[0] != 0x47 {
        return None;
    }
    let afc = (pkt[3] >> 4) & 0x3;
    if afc & 0x2 == 0 || pkt[4] < 7 || pkt[5] & 0x10 == 0 {
        return None;
    }
    let pid = (u16::from(pkt[1] & 0x1f) << 8) | u16::from(pkt[2]);
    let b = &pkt[6..12];
    let base = (u64::from(b[0]) << 25)
        | (u64::from(b[1]) << 17)
        | (u64::from(b[2]) << 9)
        | (u64::from(b[3]) << 1)
        | (u64::from(b[4]) >> 7);
    let ext = (u64::from(b[4] & 1) << 8) | u64::from(b[5]);
    Some((pid, base * 300 + ext))
}

/// First and last continuity counter of every PID (payload packets, null PID excluded).
/// Comparing the sender's with the receiver's tells how many packets were lost at the
/// very start and end of a stream, where no later packet reveals a gap.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct PidEnds {
    /// (PID, first CC, last CC), sorted by PID.
    pub pids: Vec<(u16, u8, u8)>,
}

impl PidEnds {
    /// Note every TS packet of `data` (whole 188-byte packets).
    pub fn push(&mut self, data: &[u8]) {
        for pkt in data.chunks_exact(TS_PACKET_SIZE) {
            if pkt[0] != 0x47 || (pkt[3] >> 4) & 0x1 == 0 {
                continue;
            }
            let pid = (u16::from(pkt[1] & 0x1f) << 8) | u16::from(pkt[2]);
            if pid == 0x1fff {
                continue;
            }
            let cc = pkt[3] & 0x0f;
            match self.pids.binary_search_by_key(&pid, |e| e.0) {
                Ok(i) => self.pids[i].2 = cc,
                Err(i) => self.pids.insert(i, (pid, cc, cc)),
            }
        }
    }

    /// Packets missing at the start and at the end of `received` compared with `sent`
    /// (per PID, modulo 16: a lower bound). PIDs the receiver never saw are skipped.
    pub fn missing_at_ends(sent: &PidEnds, received: &PidEnds) -> (u64, u64) {
        let (mut head, mut tail) = (0u64, 0u64);
        for &(pid, first, last) in &sent.pids {
            if let Some(&(_, rf, rl)) = received.pids.iter().find(|e| e.0 == pid) {
                head += u64::from((rf + 16 - first) % 16);
                tail += u64::from((last + 16 - rl) % 16);
            }
        }
        (head, tail)
    }
}

/// A stall: no output for at least [`STALL_MS`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stall {
    /// When the output stopped (UNIX ms).
    pub start_unix_ms: f64,
    /// How long (ms).
    pub ms: f64,
}

/// Summary of one receiver run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct OutputReport {
    /// TS packets output.
    pub ts_packets: u64,
    /// TS bytes output.
    pub bytes: u64,
    /// Output buffers.
    pub buffers: u64,
    /// TR 101 290 1.4 continuity errors.
    pub cc_errors: u64,
    /// Packets without a sync byte.
    pub sync_errors: u64,
    /// TS packets missing, estimated from continuity-counter jumps (a lower bound: a
    /// jump hides multiples of 16).
    pub cc_missing_packets: u64,
    /// First output (UNIX ms).
    pub first_unix_ms: f64,
    /// Last output (UNIX ms).
    pub last_unix_ms: f64,
    /// Longest time between two output buffers (ms).
    pub max_gap_ms: f64,
    /// Gaps of at least [`STALL_MS`].
    pub stalls: Vec<Stall>,
    /// Packets with an excess delay above the latency (see the module doc).
    pub late_packets: u64,
    /// Largest excess delay (ms).
    pub max_excess_delay_ms: f64,
    /// 99th percentile of the excess delay over packets (ms).
    pub p99_excess_delay_ms: f64,
    /// Whether any PCR was found (lateness is meaningless without).
    pub pcr_found: bool,
    /// Output bytes per 100 ms bin from `first_unix_ms`.
    pub bytes_per_100ms: Vec<u64>,
    /// First/last continuity counters per PID.
    pub pid_ends: PidEnds,
}

/// Accumulates [`OutputReport`] from output buffers.
#[derive(Debug)]
pub struct OutputMeter {
    latency_ms: f64,
    cc: ContinuityChecker,
    pcr_pid: Option<u16>,
    last_pcr: Option<u64>,
    pcr_unwrap: u64,
    /// Per buffer: (arrival ms, media ms of its first packet, packets).
    samples: Vec<(f64, f64, u32)>,
    last_cc: std::collections::HashMap<u16, u8>,
    report: OutputReport,
}

impl OutputMeter {
    /// `latency_ms`: the receiver's latency (the lateness threshold).
    pub fn new(latency_ms: f64) -> Self {
        Self {
            latency_ms,
            cc: ContinuityChecker::new(),
            pcr_pid: None,
            last_pcr: None,
            pcr_unwrap: 0,
            samples: Vec::new(),
            last_cc: Default::default(),
            report: OutputReport::default(),
        }
    }

    /// One output buffer of whole TS packets arrived at `unix_ms`.
    pub fn push(&mut self, unix_ms: f64, data: &[u8]) {
        let r = &mut self.report;
        if r.buffers == 0 {
            r.first_unix_ms = unix_ms;
        } else {
            let gap = unix_ms - r.last_unix_ms;
            if gap > r.max_gap_ms {
                r.max_gap_ms = gap;
            }
            if gap >= STALL_MS {
                r.stalls.push(Stall {
                    start_unix_ms: r.last_unix_ms,
                    ms: gap,
                });
            }
        }
        r.last_unix_ms = unix_ms;
        r.buffers += 1;
        r.bytes += data.len() as u64;
        let bin = ((unix_ms - r.first_unix_ms) / 100.0).max(0.0) as usize;
        if r.bytes_per_100ms.len() <= bin {
            r.bytes_per_100ms.resize(bin + 1, 0);
        }
        r.bytes_per_100ms[bin] += data.len() as u64;
        self.cc.push(data);
        r.pid_ends.push(data);

        let mut media_ms = None;
        let mut packets = 0u32;
        for pkt in data.chunks_exact(TS_PACKET_SIZE) {
            packets += 1;
            self.count_missing(pkt);
            if let Some((pid, pcr)) = pcr_of(pkt) {
                if self.pcr_pid.is_none() {
                    self.pcr_pid = Some(pid);
                }
                if self.pcr_pid == Some(pid) {
                    if let Some(last) = self.last_pcr {
                        // A large backwards step is a wrap of the 33-bit base.
                        if pcr + PCR_WRAP / 2 < last % PCR_WRAP {
                            self.pcr_unwrap += PCR_WRAP;
                        }
                    }
                    let unwrapped = pcr + self.pcr_unwrap;
                    self.last_pcr = Some(unwrapped);
                }
            }
            if media_ms.is_none() {
                media_ms = self.last_pcr.map(|p| p as f64 / 27_000.0);
            }
        }
        if let Some(m) = media_ms {
            if unix_ms - self.report.first_unix_ms >= STARTUP_MS {
                self.samples.push((unix_ms, m, packets));
            }
        }
    }

    /// Lower bound of packets missing per PID from CC jumps (payload packets only).
    fn count_missing(&mut self, pkt: &[u8]) {
        if pkt[0] != 0x47 {
            return;
        }
        let pid = (u16::from(pkt[1] & 0x1f) << 8) | u16::from(pkt[2]);
        let afc = (pkt[3] >> 4) & 0x3;
        if pid == 0x1fff || afc & 0x1 == 0 {
            return;
        }
        let cc = pkt[3] & 0x0f;
        if let Some(last) = self.last_cc.insert(pid, cc) {
            let step = (cc + 16 - last) % 16;
            if step > 1 {
                self.report.cc_missing_packets += u64::from(step - 1);
            }
        }
    }

    /// The report so far.
    pub fn report(&self) -> OutputReport {
        let mut r = self.report.clone();
        let cc = self.cc.report();
        r.ts_packets = cc.packets;
        r.cc_errors = cc.cc_errors;
        r.sync_errors = cc.sync_errors;
        r.pcr_found = !self.samples.is_empty();
        if let Some(min_delay) = self
            .samples
            .iter()
            .map(|(a, m, _)| a - m)
            .min_by(|a, b| a.total_cmp(b))
        {
            let mut excess: Vec<(f64, u32)> = self
                .samples
                .iter()
                .map(|(a, m, n)| (a - m - min_delay, *n))
                .collect();
            r.late_packets = excess
                .iter()
                .filter(|(e, _)| *e > self.latency_ms)
                .map(|(_, n)| u64::from(*n))
                .sum();
            excess.sort_by(|a, b| a.0.total_cmp(&b.0));
            r.max_excess_delay_ms = excess.last().map_or(0.0, |e| e.0);
            let total: u64 = excess.iter().map(|e| u64::from(e.1)).sum();
            let mut seen = 0u64;
            for (e, n) in &excess {
                seen += u64::from(*n);
                if seen * 100 >= total * 99 {
                    r.p99_excess_delay_ms = *e;
                    break;
                }
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TS packet on `pid` with continuity counter `cc` and, optionally, a PCR (27 MHz).
    fn pkt(pid: u16, cc: u8, pcr: Option<u64>) -> Vec<u8> {
        let mut p = vec![0xffu8; 188];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8;
        p[2] = pid as u8;
        match pcr {
            None => p[3] = 0x10 | cc,
            Some(pcr) => {
                p[3] = 0x30 | cc;
                p[4] = 7;
                p[5] = 0x10;
                let (base, ext) = (pcr / 300, pcr % 300);
                p[6] = (base >> 25) as u8;
                p[7] = (base >> 17) as u8;
                p[8] = (base >> 9) as u8;
                p[9] = (base >> 1) as u8;
                p[10] = ((base & 1) << 7) as u8 | 0x7e | (ext >> 8) as u8;
                p[11] = ext as u8;
            }
        }
        p
    }

    #[test]
    fn pcr_round_trip() {
        for pcr in [0u64, 27_000_000, (1 << 33) * 300 - 1, 123_456_789_012] {
            assert_eq!(pcr_of(&pkt(0x100, 0, Some(pcr))), Some((0x100, pcr)));
        }
        assert_eq!(pcr_of(&pkt(0x100, 0, None)), None);
    }

    #[test]
    fn gaps_stalls_and_continuity() {
        let mut m = OutputMeter::new(1000.0);
        let mut cc = 0u8;
        let mut t = 1_000_000.0;
        for i in 0..100 {
            // Skip 3 packets once (CC jump of 4).
            if i == 50 {
                cc = (cc + 3) % 16;
            }
            let buf: Vec<u8> = (0..7)
                .flat_map(|_| {
                    let p = pkt(0x100, cc, None);
                    cc = (cc + 1) % 16;
                    p
                })
                .collect();
            t += if i == 70 { 450.0 } else { 10.0 };
            m.push(t, &buf);
        }
        let r = m.report();
        assert_eq!(r.ts_packets, 700);
        assert_eq!(r.cc_errors, 1);
        assert_eq!(r.cc_missing_packets, 3);
        assert_eq!(r.max_gap_ms, 450.0);
        assert_eq!(r.stalls.len(), 1);
        assert_eq!(r.stalls[0].ms, 450.0);
        assert!(!r.pcr_found);
        assert_eq!(r.bytes, 700 * 188);
        assert_eq!(r.bytes_per_100ms.iter().sum::<u64>(), r.bytes);
    }

    #[test]
    fn losses_at_the_ends() {
        let stream: Vec<Vec<u8>> = (0..40u8)
            .map(|i| pkt(0x100 + u16::from(i % 2), (i / 2) % 16, None))
            .collect();
        let mut sent = PidEnds::default();
        for p in &stream {
            sent.push(p);
        }
        // The receiver misses the first 3 and the last 4 packets.
        let mut received = PidEnds::default();
        for p in &stream[3..36] {
            received.push(p);
        }
        assert_eq!(PidEnds::missing_at_ends(&sent, &received), (3, 4));
        assert_eq!(PidEnds::missing_at_ends(&sent, &sent), (0, 0));
        assert_eq!(sent.pids, vec![(0x100, 0, 3), (0x101, 0, 3)]);
    }

    #[test]
    fn lateness_from_pcr() {
        // One buffer per 10 ms of media time; arrivals 50 ms after their PCR except a
        // block delayed by 1300 ms (late at latency 1000) and one by 600 ms (not late).
        // The first 2 s of output (a start-up burst, 1500 ms late here) do not count.
        let mut m = OutputMeter::new(1000.0);
        let mut cc = 0u8;
        for i in 0..600u64 {
            let media_ms = i as f64 * 10.0;
            let extra = match i {
                0..=9 => 1500.0,
                400..=404 => 1300.0,
                450 => 600.0,
                _ => 0.0,
            };
            let mut buf = pkt(0x100, cc, Some(i * 270_000));
            cc = (cc + 1) % 16;
            for _ in 0..6 {
                buf.extend(pkt(0x100, cc, None));
                cc = (cc + 1) % 16;
            }
            m.push(5_000.0 + media_ms + 50.0 + extra, &buf);
        }
        let r = m.report();
        assert!(r.pcr_found);
        assert_eq!(r.late_packets, 5 * 7);
        assert!((r.max_excess_delay_ms - 1300.0).abs() < 1e-6);
        assert!(r.p99_excess_delay_ms >= 600.0 - 1e-6);
    }
}
