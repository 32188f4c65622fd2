//! MPEG-TS packet headers (ISO/IEC 13818-1 §2.4.3.2) and the continuity-count check of
//! ETSI TR 101 290 §5.2.1 (priority 1.4 Continuity_count_error).

use std::collections::HashMap;

/// TS packet size in bytes.
pub const TS_PACKET_SIZE: usize = 188;

/// TS sync byte (ISO/IEC 13818-1 §2.4.3.3).
pub const SYNC_BYTE: u8 = 0x47;

/// PID of null packets (ISO/IEC 13818-1 Table 2-3).
pub const NULL_PID: u16 = 0x1FFF;

/// The fields of a 4-byte TS packet header (plus the discontinuity indicator of the
/// adaptation field) that the continuity check needs (ISO/IEC 13818-1 §2.4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsHeader {
    /// transport_error_indicator.
    pub transport_error: bool,
    /// payload_unit_start_indicator.
    pub payload_unit_start: bool,
    /// 13-bit PID.
    pub pid: u16,
    /// adaptation_field_control has the payload bit ('01' or '11').
    pub has_payload: bool,
    /// adaptation_field_control has the adaptation-field bit ('10' or '11').
    pub has_adaptation: bool,
    /// discontinuity_indicator of the adaptation field (false without one).
    pub discontinuity: bool,
    /// 4-bit continuity_counter.
    pub continuity_counter: u8,
}

impl TsHeader {
    /// Parse the header of one 188-byte packet; `None` without the 0x47 sync byte or
    /// when `pkt` is shorter than 4 bytes.
    pub fn parse(pkt: &[u8]) -> Option<Self> {
        if pkt.len() < 4 || pkt[0] != SYNC_BYTE {
            return None;
        }
        let afc = (pkt[3] >> 4) & 0x3;
        let has_adaptation = afc & 0x2 != 0;
        // adaptation_field_length at byte 4; the flags byte follows when length > 0.
        let discontinuity = has_adaptation && pkt.len() > 5 && pkt[4] > 0 && pkt[5] & 0x80 != 0;
        Some(Self {
            transport_error: pkt[1] & 0x80 != 0,
            payload_unit_start: pkt[1] & 0x40 != 0,
            pid: (u16::from(pkt[1] & 0x1f) << 8) | u16::from(pkt[2]),
            has_payload: afc & 0x1 != 0,
            has_adaptation,
            discontinuity,
            continuity_counter: pkt[3] & 0x0f,
        })
    }
}

/// Per-PID continuity state.
#[derive(Debug, Default, Clone, Copy)]
struct PidState {
    /// CC of the last packet with payload; `None` until one is seen or after a
    /// discontinuity_indicator.
    last_cc: Option<u8>,
    /// The last payload packet repeated its predecessor's CC (its one allowed duplicate).
    last_was_duplicate: bool,
}

/// Counts TR 101 290 1.4 continuity errors over a TS byte stream fed in arbitrary chunks.
/// Rules: per PID, CC increments (mod 16) on packets with payload; packets without
/// payload do not increment; one duplicate packet is allowed; a set
/// discontinuity_indicator resets the expectation; PID 0x1FFF (null) is not checked.
///
/// Framing is fixed at 188 bytes from the first byte pushed (RTP payloads of a RIST
/// flow are whole packets). A packet without the sync byte counts as a sync error and
/// is not CC-checked; nor is one with transport_error_indicator set (its header is not
/// trustworthy). After an error the expectation restarts from the received CC.
#[derive(Debug, Default)]
pub struct ContinuityChecker {
    partial: Vec<u8>,
    pids: HashMap<u16, PidState>,
    report: ContinuityReport,
}

/// Result of a [`ContinuityChecker`] run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContinuityReport {
    /// TS packets seen.
    pub packets: u64,
    /// Continuity errors (TR 101 290 1.4).
    pub cc_errors: u64,
    /// Packets not starting with the 0x47 sync byte (TR 101 290 1.2 Sync_byte_error).
    pub sync_errors: u64,
    /// Distinct PIDs seen.
    pub pids: usize,
}

impl ContinuityChecker {
    /// A fresh checker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; packets may straddle calls.
    pub fn push(&mut self, mut data: &[u8]) {
        if !self.partial.is_empty() {
            let need = TS_PACKET_SIZE - self.partial.len();
            let take = need.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < TS_PACKET_SIZE {
                return;
            }
            let pkt = std::mem::take(&mut self.partial);
            self.check(&pkt);
        }
        let mut chunks = data.chunks_exact(TS_PACKET_SIZE);
        for pkt in &mut chunks {
            self.check(pkt);
        }
        self.partial.extend_from_slice(chunks.remainder());
    }

    /// Counts so far.
    pub fn report(&self) -> ContinuityReport {
        ContinuityReport {
            pids: self.pids.len(),
            ..self.report.clone()
        }
    }

    fn check(&mut self, pkt: &[u8]) {
        self.report.packets += 1;
        let Some(h) = TsHeader::parse(pkt) else {
            self.report.sync_errors += 1;
            return;
        };
        let state = self.pids.entry(h.pid).or_default();
        if h.pid == NULL_PID || h.transport_error {
            return;
        }
        if h.discontinuity {
            // The CC may jump here (ISO/IEC 13818-1 §2.4.3.5); restart the expectation.
            state.last_cc = if h.has_payload {
                Some(h.continuity_counter)
            } else {
                None
            };
            state.last_was_duplicate = false;
            return;
        }
        if !h.has_payload {
            // Adaptation-only (or reserved '00'): the counter does not advance.
            return;
        }
        let cc = h.continuity_counter;
        match state.last_cc {
            None => {}
            Some(last) if cc == (last + 1) & 0x0f => state.last_was_duplicate = false,
            Some(last) if cc == last && !state.last_was_duplicate => {
                state.last_was_duplicate = true;
            }
            Some(_) => {
                self.report.cc_errors += 1;
                state.last_was_duplicate = false;
            }
        }
        state.last_cc = Some(cc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One TS packet: PID, CC, adaptation_field_control bits, discontinuity flag.
    fn pkt(pid: u16, cc: u8, afc: u8, disc: bool) -> Vec<u8> {
        let mut p = vec![0xffu8; TS_PACKET_SIZE];
        p[0] = SYNC_BYTE;
        p[1] = (pid >> 8) as u8 & 0x1f;
        p[2] = pid as u8;
        p[3] = (afc << 4) | (cc & 0x0f);
        if afc & 0x2 != 0 {
            p[4] = if afc == 0x2 { 183 } else { 1 };
            p[5] = if disc { 0x80 } else { 0x00 };
        }
        p
    }

    fn run(pkts: &[Vec<u8>]) -> ContinuityReport {
        let mut c = ContinuityChecker::new();
        for p in pkts {
            c.push(p);
        }
        c.report()
    }

    #[test]
    fn clean_stream_with_wrap() {
        let pkts: Vec<_> = (0..40).map(|i| pkt(0x100, i as u8, 1, false)).collect();
        let r = run(&pkts);
        assert_eq!(r.packets, 40);
        assert_eq!(r.cc_errors, 0);
        assert_eq!(r.pids, 1);
    }

    #[test]
    fn gap_is_one_error_then_resync() {
        let r = run(&[
            pkt(0x100, 0, 1, false),
            pkt(0x100, 1, 1, false),
            pkt(0x100, 3, 1, false),
            pkt(0x100, 4, 1, false),
        ]);
        assert_eq!(r.cc_errors, 1);
    }

    #[test]
    fn one_duplicate_allowed_two_are_an_error() {
        let r = run(&[
            pkt(0x100, 5, 1, false),
            pkt(0x100, 5, 1, false),
            pkt(0x100, 6, 1, false),
        ]);
        assert_eq!(r.cc_errors, 0);
        let r = run(&[
            pkt(0x100, 5, 1, false),
            pkt(0x100, 5, 1, false),
            pkt(0x100, 5, 1, false),
        ]);
        assert_eq!(r.cc_errors, 1);
    }

    #[test]
    fn adaptation_only_does_not_increment() {
        let r = run(&[
            pkt(0x100, 5, 1, false),
            pkt(0x100, 5, 2, false),
            pkt(0x100, 9, 2, false), // CC of AF-only packets is not checked
            pkt(0x100, 6, 3, false),
        ]);
        assert_eq!(r.cc_errors, 0);
    }

    #[test]
    fn discontinuity_indicator_resets() {
        let r = run(&[
            pkt(0x100, 5, 1, false),
            pkt(0x100, 12, 3, true),
            pkt(0x100, 13, 1, false),
        ]);
        assert_eq!(r.cc_errors, 0);
        // On an adaptation-only packet it also resets the expectation.
        let r = run(&[
            pkt(0x100, 5, 1, false),
            pkt(0x100, 0, 2, true),
            pkt(0x100, 2, 1, false),
            pkt(0x100, 3, 1, false),
        ]);
        assert_eq!(r.cc_errors, 0);
    }

    #[test]
    fn null_pid_and_pids_are_independent() {
        let r = run(&[
            pkt(NULL_PID, 0, 1, false),
            pkt(NULL_PID, 7, 1, false),
            pkt(0x100, 0, 1, false),
            pkt(0x101, 9, 1, false),
            pkt(0x100, 1, 1, false),
            pkt(0x101, 10, 1, false),
        ]);
        assert_eq!(r.cc_errors, 0);
        assert_eq!(r.pids, 3);
    }

    #[test]
    fn sync_errors_counted() {
        let mut bad = pkt(0x100, 1, 1, false);
        bad[0] = 0x00;
        let r = run(&[pkt(0x100, 0, 1, false), bad, pkt(0x100, 2, 1, false)]);
        assert_eq!(r.sync_errors, 1);
        assert_eq!(r.packets, 3);
        // The corrupt packet is lost to the PID, so its successor is discontinuous.
        assert_eq!(r.cc_errors, 1);
    }

    #[test]
    fn packets_straddling_pushes() {
        let stream: Vec<u8> = (0..20u8).flat_map(|i| pkt(0x42, i, 1, false)).collect();
        for split in [1usize, 7, 100, 187, 188, 189, 500] {
            let mut c = ContinuityChecker::new();
            for chunk in stream.chunks(split) {
                c.push(chunk);
            }
            let r = c.report();
            assert_eq!(r.packets, 20, "split {split}");
            assert_eq!(r.cc_errors, 0, "split {split}");
        }
        // And a real error is still found across a split.
        let mut stream = stream;
        stream.extend(pkt(0x42, 9, 1, false));
        let mut c = ContinuityChecker::new();
        for chunk in stream.chunks(50) {
            c.push(chunk);
        }
        assert_eq!(c.report().cc_errors, 1);
    }
}
