//! What the receiver role measures on the TS it outputs, without GStreamer: continuity
//! (TR 101 290 1.4 via `ristbond_core::ts::ContinuityChecker`), output gaps, delivered
//! bytes per 100 ms, and lateness from the PCR (ISO/IEC 13818-1 §2.4.3.5).
//!
//! Lateness (transport delay): both the sender (into its transport) and the receiver
//! (out of its transport) log the wall-clock time of every PCR-bearing TS packet
//! ([`PcrLog`]); matched by PCR value (same machine, same clock) they give each such
//! packet's delay through the transport. A packet is *late* when its delay exceeds the
//! run's smallest delay by more than the latency: a player that started `latency` ms
//! behind the fastest packet would have had to skip it. Receivers with a fixed-delay
//! buffer (GStreamer's `ristsrc`) and in-order-as-soon-as-possible ones (`ristbondsrc`)
//! are judged alike. The first [`STARTUP_MS`] of the stream are left out (start-up).

use ristbond_core::ts::{ContinuityChecker, TS_PACKET_SIZE};
use serde::Serialize;

/// Stream start-up excluded from the lateness figures (ms after the first send).
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
    /// (PCR, arrival UNIX ms) of every PCR-bearing packet output.
    pub pcr_times: Vec<(u64, f64)>,
    /// Output bytes per 100 ms bin from `first_unix_ms`.
    pub bytes_per_100ms: Vec<u64>,
    /// First/last continuity counters per PID.
    pub pid_ends: PidEnds,
}

/// Accumulates [`OutputReport`] from output buffers.
#[derive(Debug)]
pub struct OutputMeter {
    cc: ContinuityChecker,
    pcr: PcrLog,
    last_cc: std::collections::HashMap<u16, u8>,
    report: OutputReport,
}

impl OutputMeter {
    /// A fresh meter.
    pub fn new() -> Self {
        Self {
            cc: ContinuityChecker::new(),
            pcr: PcrLog::default(),
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

        for pkt in data.chunks_exact(TS_PACKET_SIZE) {
            self.count_missing(pkt);
        }
        self.pcr.push(unix_ms, data);
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
        r.pcr_times = self.pcr.times.clone();
        r
    }
}

impl Default for OutputMeter {
    fn default() -> Self {
        Self::new()
    }
}

/// Wall-clock times of the PCR-bearing packets of one PID (the first PID seen with a
/// PCR), keyed by PCR value (27 MHz, as carried).
#[derive(Debug, Clone, Default)]
pub struct PcrLog {
    pid: Option<u16>,
    /// (PCR, UNIX ms).
    pub times: Vec<(u64, f64)>,
}

impl PcrLog {
    /// Note the PCR packets of `data` seen at `unix_ms`.
    pub fn push(&mut self, unix_ms: f64, data: &[u8]) {
        for pkt in data.chunks_exact(TS_PACKET_SIZE) {
            if let Some((pid, pcr)) = pcr_of(pkt) {
                if *self.pid.get_or_insert(pid) == pid {
                    self.times.push((pcr, unix_ms));
                }
            }
        }
    }
}

/// Transport delay figures of one run (see the module doc).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Lateness {
    /// PCR packets matched between sender and receiver (after start-up).
    pub samples: usize,
    /// Smallest transport delay (ms).
    pub min_delay_ms: f64,
    /// 99th percentile of the transport delay (ms).
    pub p99_delay_ms: f64,
    /// Largest transport delay (ms).
    pub max_delay_ms: f64,
    /// Share of samples whose delay exceeds the minimum by more than the latency.
    pub late_share: f64,
}

impl Lateness {
    /// Match `sent` and `received` (PCR, UNIX ms) logs; `latency_ms` is the threshold.
    /// PCR values repeat only after 26.5 h, so they identify packets within a run.
    pub fn measure(sent: &[(u64, f64)], received: &[(u64, f64)], latency_ms: f64) -> Self {
        let Some(start) = sent.first().map(|s| s.1) else {
            return Self::default();
        };
        let sent: std::collections::HashMap<u64, f64> = sent.iter().copied().collect();
        let mut delays: Vec<f64> = received
            .iter()
            .filter_map(|(pcr, at)| {
                sent.get(pcr)
                    .filter(|&&t| t - start >= STARTUP_MS)
                    .map(|t| at - t)
            })
            .collect();
        if delays.is_empty() {
            return Self::default();
        }
        delays.sort_by(f64::total_cmp);
        let min = delays[0];
        let late = delays.iter().filter(|d| **d - min > latency_ms).count();
        let p99 = delays[((delays.len() - 1) as f64 * 0.99).round() as usize];
        Self {
            samples: delays.len(),
            min_delay_ms: min,
            p99_delay_ms: p99,
            max_delay_ms: delays[delays.len() - 1],
            late_share: late as f64 / delays.len() as f64,
        }
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
        let mut m = OutputMeter::new();
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
        assert!(r.pcr_times.is_empty());
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
    fn lateness_from_matched_pcrs() {
        // A PCR every 10 ms; transport delay 50 ms except a block of 1300 ms (late at
        // latency 1000) and one of 600 ms (not late); the first 2 s are start-up.
        let mut sent = PcrLog::default();
        let mut meter = OutputMeter::new();
        for i in 0..600u64 {
            let t = 10_000.0 + i as f64 * 10.0;
            let p = pkt(0x100, (i % 16) as u8, Some(i * 270_000));
            sent.push(t, &p);
            let delay = match i {
                0..=9 => 3000.0,
                400..=404 => 1300.0,
                450 => 600.0,
                _ => 50.0,
            };
            meter.push(t + delay, &p);
        }
        let r = meter.report();
        assert_eq!(r.pcr_times.len(), 600);
        let l = Lateness::measure(&sent.times, &r.pcr_times, 1000.0);
        assert_eq!(l.samples, 400);
        assert_eq!(l.min_delay_ms, 50.0);
        assert_eq!(l.max_delay_ms, 1300.0);
        assert!((l.late_share - 5.0 / 400.0).abs() < 1e-12);
        assert!(l.p99_delay_ms >= 600.0);
        // Nothing matched: nothing measured.
        assert_eq!(
            Lateness::measure(&[], &r.pcr_times, 1000.0),
            Lateness::default()
        );
    }
}
