//! 16-bit RTP sequence numbers: wrapping comparison and extension to 64 bits (RFC 3550 §A.1).
//!
//! RTP carries a 16-bit sequence number that wraps at 65535 → 0. Both ends of a RIST
//! flow work internally with *extended* sequence numbers (`u64`, never wrapping) whose
//! low 16 bits always equal the wire value. The extension rule is the one of RFC 3550
//! §A.1: a new value is placed in the 65536-cycle that makes it closest to a reference
//! (normally the highest extended number seen so far).

/// Signed distance `a - b` on the 16-bit circle, in packets, in `-32768..=32767`
/// (RFC 1982 serial-number arithmetic as used by RFC 3550 §A.1).
///
/// `diff(1, 65535) == 2`, `diff(65535, 1) == -2`.
pub fn diff(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

/// `true` when `a` comes strictly before `b` on the 16-bit circle (`diff(a, b) < 0`).
pub fn is_before(a: u16, b: u16) -> bool {
    diff(a, b) < 0
}

/// Extend the 16-bit `seq` to the 64-bit value congruent to it (mod 65536) that is
/// closest to `reference` (an extended sequence number). When the closest candidate
/// would be negative, the next one up is returned, so the result never underflows.
///
/// `extend_near(0x1_FFFF, 0x0000) == 0x2_0000` (forward across the wrap),
/// `extend_near(0x2_0001, 0xFFFF) == 0x1_FFFF` (backward across the wrap).
pub fn extend_near(reference: u64, seq: u16) -> u64 {
    let d = diff(seq, reference as u16) as i64;
    let candidate = reference as i64 + d;
    if candidate < 0 {
        (candidate + 0x1_0000) as u64
    } else {
        candidate as u64
    }
}

/// Extended sequence number of the first packet a fresh [`SeqExtender`] sees: the wire
/// value placed in cycle 1 (`0x1_0000 + seq`), so that packets reordered *before* the
/// first one still get a non-negative extended number.
pub const FIRST_CYCLE: u64 = 0x1_0000;

/// Tracks the highest sequence number seen and extends new 16-bit values relative to it
/// (RFC 3550 §A.1 `cycles` + `max_seq`, without the probation logic, which the
/// receiver does itself).
#[derive(Debug, Clone, Default)]
pub struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    /// An extender that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// An extender whose highest extended value is `highest` (e.g. after a resync).
    pub fn starting_at(highest: u64) -> Self {
        Self {
            highest: Some(highest),
        }
    }

    /// Extend `seq` (see [`extend_near`]) and raise the highest value if it is newer.
    /// The very first value lands in cycle 1 ([`FIRST_CYCLE`]).
    pub fn extend(&mut self, seq: u16) -> u64 {
        let ext = self.peek(seq);
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// What [`SeqExtender::extend`] would return, without updating anything.
    pub fn peek(&self, seq: u16) -> u64 {
        match self.highest {
            Some(h) => extend_near(h, seq),
            None => FIRST_CYCLE + u64::from(seq),
        }
    }

    /// Highest extended sequence number seen, if any.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn diff_and_order_across_wrap() {
        assert_eq!(diff(1, 65535), 2);
        assert_eq!(diff(65535, 1), -2);
        assert_eq!(diff(5, 5), 0);
        assert!(is_before(65535, 0));
        assert!(!is_before(0, 65535));
        assert!(is_before(10, 11));
    }

    #[test]
    fn extend_near_examples() {
        assert_eq!(extend_near(0x1_FFFF, 0x0000), 0x2_0000);
        assert_eq!(extend_near(0x2_0001, 0xFFFF), 0x1_FFFF);
        assert_eq!(extend_near(0x1_0005, 0x0005), 0x1_0005);
        // Never negative: closest would be -1, so the next cycle is used.
        assert_eq!(extend_near(0, 0xFFFF), 0xFFFF);
    }

    #[test]
    fn extender_first_packet_in_cycle_one_and_reordered_before_it() {
        let mut e = SeqExtender::new();
        assert_eq!(e.extend(0), FIRST_CYCLE);
        // A packet sent before the first one arrives later: still representable.
        assert_eq!(e.extend(65535), FIRST_CYCLE - 1);
        assert_eq!(e.highest(), Some(FIRST_CYCLE));
        assert_eq!(e.extend(1), FIRST_CYCLE + 1);
    }

    proptest! {
        /// Walking forward in steps below 32768 (with wrap), the extended value grows by
        /// exactly the step and keeps the wire value in its low 16 bits.
        #[test]
        fn extension_tracks_forward_walk_across_wraps(start in any::<u16>(), steps in proptest::collection::vec(0u16..32767, 1..200)) {
            let mut e = SeqExtender::new();
            let mut wire = start;
            let mut expected = e.extend(start);
            for s in steps {
                wire = wire.wrapping_add(s);
                expected += u64::from(s);
                let got = e.extend(wire);
                prop_assert_eq!(got, expected);
                prop_assert_eq!(got as u16, wire);
            }
        }

        /// Any value within ±32767 of the reference is recovered exactly.
        #[test]
        fn extend_near_recovers_within_half_range(reference in 40_000u64..1_000_000_000, delta in -32767i64..=32767) {
            let truth = (reference as i64 + delta) as u64;
            prop_assert_eq!(extend_near(reference, truth as u16), truth);
        }

        /// Reordered arrivals around a wrap (permutation of a window) still extend to the
        /// true values.
        #[test]
        fn reordered_window_across_wrap(start in 65_000u16..=65535, perm in Just((0u64..600).collect::<Vec<_>>()).prop_shuffle()) {
            let mut e = SeqExtender::starting_at(FIRST_CYCLE + u64::from(start));
            for off in perm {
                let truth = FIRST_CYCLE + u64::from(start) + off;
                prop_assert_eq!(e.extend(truth as u16), truth);
            }
        }
    }
}
