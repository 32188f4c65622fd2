//! Which RTP payloads are *critical* for `critical_broadcast` (PROTOCOL.md §5): those
//! carrying the PAT, a PMT, or a packet of a key frame. A decoder that misses one of
//! these loses the whole GOP (or the whole program), so they are worth a copy on every
//! link.
//!
//! The classifier follows the TS (ISO/IEC 13818-1): the PAT (PID 0, §2.4.4.3) lists the
//! PMT PIDs; a key frame starts at a packet with payload_unit_start_indicator and the
//! adaptation field's random_access_indicator set (§2.4.3.5; `mpegtsmux` sets it on
//! IDR/IRAP access units) and lasts until the next payload unit start on that PID.

use std::collections::BTreeSet;

use crate::ts::{TsHeader, TS_PACKET_SIZE};

/// PID of the program association table.
const PAT_PID: u16 = 0;

/// Streaming classifier of RTP payloads (1..=7 TS packets each).
#[derive(Debug, Default, Clone)]
pub struct CriticalClassifier {
    pmt_pids: BTreeSet<u16>,
    /// PIDs currently inside a key frame's access unit.
    in_key_frame: BTreeSet<u16>,
}

impl CriticalClassifier {
    /// A classifier that knows no PMT yet (it learns them from the PAT).
    pub fn new() -> Self {
        Self::default()
    }

    /// Classify one payload: `true` if any of its TS packets is PAT, PMT or part of a
    /// key frame. Bytes that are not whole sync-aligned TS packets are ignored.
    pub fn is_critical(&mut self, payload: &[u8]) -> bool {
        let mut critical = false;
        for pkt in payload.chunks_exact(TS_PACKET_SIZE) {
            let Some(h) = TsHeader::parse(pkt) else {
                continue;
            };
            if h.pid == PAT_PID {
                if h.payload_unit_start {
                    self.read_pat(pkt, &h);
                }
                critical = true;
                continue;
            }
            if self.pmt_pids.contains(&h.pid) {
                critical = true;
                continue;
            }
            if h.payload_unit_start {
                if random_access(pkt, &h) {
                    self.in_key_frame.insert(h.pid);
                } else {
                    self.in_key_frame.remove(&h.pid);
                }
            }
            if self.in_key_frame.contains(&h.pid) {
                critical = true;
            }
        }
        critical
    }

    /// PMT PIDs from a PAT section that starts in this packet (single-packet PATs, as
    /// every muxer writes for a handful of programs).
    fn read_pat(&mut self, pkt: &[u8], h: &TsHeader) {
        let mut i = 4;
        if h.has_adaptation {
            i += 1 + usize::from(pkt[4]);
        }
        if !h.has_payload || i >= pkt.len() {
            return;
        }
        i += 1 + usize::from(pkt[i]); // pointer_field
                                      // table_id(1) section_length(2) ts_id(2) version(1) section(1) last(1)
        if i + 8 > pkt.len() || pkt[i] != 0x00 {
            return;
        }
        let section_length = (usize::from(pkt[i + 1] & 0x0f) << 8) | usize::from(pkt[i + 2]);
        let end = (i + 3 + section_length).saturating_sub(4).min(pkt.len()); // minus CRC
        let mut j = i + 8;
        let mut pids = BTreeSet::new();
        while j + 4 <= end {
            let program = (u16::from(pkt[j]) << 8) | u16::from(pkt[j + 1]);
            let pid = (u16::from(pkt[j + 2] & 0x1f) << 8) | u16::from(pkt[j + 3]);
            if program != 0 {
                pids.insert(pid);
            }
            j += 4;
        }
        if !pids.is_empty() {
            self.pmt_pids = pids;
        }
    }
}

/// random_access_indicator of the adaptation field.
fn random_access(pkt: &[u8], h: &TsHeader) -> bool {
    h.has_adaptation && pkt.len() > 5 && pkt[4] > 0 && pkt[5] & 0x40 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(pid: u16, pusi: bool, rai: bool) -> Vec<u8> {
        let mut p = vec![0xffu8; TS_PACKET_SIZE];
        p[0] = 0x47;
        p[1] = (if pusi { 0x40 } else { 0 }) | (pid >> 8) as u8;
        p[2] = pid as u8;
        if rai {
            p[3] = 0x30;
            p[4] = 1;
            p[5] = 0x40;
        } else {
            p[3] = 0x10;
        }
        p
    }

    fn pat(pmt_pid: u16) -> Vec<u8> {
        let mut p = ts(0, true, false);
        let section = [
            0x00, // pointer
            0x00,
            0xb0,
            0x0d, // table 0, length 13
            0x00,
            0x01,
            0xc1,
            0x00,
            0x00, // ts id, version, section numbers
            0x00,
            0x01,
            0xe0 | (pmt_pid >> 8) as u8,
            pmt_pid as u8, // program 1
            0,
            0,
            0,
            0, // CRC (not checked)
        ];
        p[4..4 + section.len()].copy_from_slice(&section);
        p
    }

    #[test]
    fn pat_pmt_and_key_frames_are_critical() {
        let mut c = CriticalClassifier::new();
        assert!(c.is_critical(&pat(0x1000)));
        assert!(c.is_critical(&ts(0x1000, true, false)), "PMT");
        assert!(!c.is_critical(&ts(0x41, true, false)), "P frame start");
        assert!(!c.is_critical(&ts(0x41, false, false)), "P frame body");
        assert!(c.is_critical(&ts(0x41, true, true)), "key frame start");
        assert!(c.is_critical(&ts(0x41, false, false)), "key frame body");
        assert!(!c.is_critical(&ts(0x42, false, false)), "other PID");
        assert!(!c.is_critical(&ts(0x41, true, false)), "next access unit");
        let mut seven = ts(0x41, false, false).repeat(6);
        seven.extend(ts(0x41, true, true));
        assert!(c.is_critical(&seven), "any packet of the payload counts");
        assert!(!c.is_critical(&[0u8; 10]), "garbage is not critical");
    }
}
