//! MPEG-TS packet headers (ISO/IEC 13818-1 §2.4.3.2) and the continuity-count check of
//! ETSI TR 101 290 §5.2.1 (priority 1.4 Continuity_count_error).
//!
//! CONTRACT (fill in the bodies; keep these signatures).

/// TS packet size in bytes.
pub const TS_PACKET_SIZE: usize = 188;

/// Counts TR 101 290 1.4 continuity errors over a TS byte stream fed in arbitrary chunks.
/// Rules: per PID, CC increments (mod 16) on packets with payload; packets without
/// payload do not increment; one duplicate packet is allowed; a set
/// discontinuity_indicator resets the expectation; PID 0x1FFF (null) is not checked.
#[derive(Debug, Default)]
pub struct ContinuityChecker {}

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
        todo!()
    }

    /// Feed bytes; packets may straddle calls.
    pub fn push(&mut self, data: &[u8]) {
        let _ = data;
        todo!()
    }

    /// Counts so far.
    pub fn report(&self) -> ContinuityReport {
        todo!()
    }
}
