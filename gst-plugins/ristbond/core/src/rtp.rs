//! RIST RTP packets (TR-06-1 §5.2): PT 33, 90 kHz clock, even SSRC for originals, `ssrc | 1` for retransmissions.
//!
//! Parsing and building go through the `rtp-types` crate; this module adds the RIST
//! rules on top: payload type 33 (MP2T, RFC 3551 §6), a payload of 1..=7 whole 188-byte
//! MPEG-TS packets, and the SSRC least-significant bit that tells an original (0) from
//! a retransmission (1) (TR-06-1 §5.3.2).

use rtp_types::{RtpPacket, RtpPacketBuilder};

use crate::ts::TS_PACKET_SIZE;
use crate::Error;

/// RTP payload type of MPEG-2 TS (RFC 3551 §6, TR-06-1 §5.2).
pub const PAYLOAD_TYPE_MP2T: u8 = 33;

/// RTP clock rate of payload type 33, Hz (RFC 3551 §6).
pub const CLOCK_RATE: u32 = 90_000;

/// Size of the fixed RTP header, bytes (RFC 3550 §5.1; RIST uses no CSRCs).
pub const HEADER_LEN: usize = 12;

/// Most TS packets per RTP packet (7 × 188 = 1316 bytes fits a 1500-byte MTU).
pub const MAX_TS_PER_PACKET: usize = 7;

/// Check that `len` bytes are 1..=7 whole 188-byte TS packets.
/// Errors: [`Error::BadPayloadSize`].
pub fn check_payload_size(len: usize) -> Result<(), Error> {
    if len == 0 || !len.is_multiple_of(TS_PACKET_SIZE) || len / TS_PACKET_SIZE > MAX_TS_PER_PACKET {
        return Err(Error::BadPayloadSize(len));
    }
    Ok(())
}

/// `true` when `ssrc` marks a retransmission (LSB set, TR-06-1 §5.3.2).
pub fn is_retransmission_ssrc(ssrc: u32) -> bool {
    ssrc & 1 == 1
}

/// The SSRC of the original flow (LSB cleared) for an original or retransmission SSRC.
pub fn flow_ssrc(ssrc: u32) -> u32 {
    ssrc & !1
}

/// One parsed RIST media packet, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RistPacket<'a> {
    /// 16-bit RTP sequence number (shared by all links of the flow).
    pub seq: u16,
    /// 90 kHz RTP timestamp.
    pub timestamp: u32,
    /// SSRC as on the wire (LSB 1 = retransmission).
    pub ssrc: u32,
    /// RTP marker bit (not used by RIST; kept for completeness).
    pub marker: bool,
    /// The payload: 1..=7 whole 188-byte TS packets (header extension and padding
    /// removed).
    pub payload: &'a [u8],
}

impl RistPacket<'_> {
    /// `true` when this packet is a retransmission (SSRC LSB set).
    pub fn is_retransmission(&self) -> bool {
        is_retransmission_ssrc(self.ssrc)
    }

    /// SSRC of the flow (LSB cleared).
    pub fn flow_ssrc(&self) -> u32 {
        flow_ssrc(self.ssrc)
    }
}

/// Parse one RTP datagram of a RIST flow. A header extension (e.g. the GStreamer/RIST
/// sequence-number extension) and padding are accepted and skipped.
/// Errors: [`Error::Malformed`] (not RTP version 2, truncated, payload type not 33),
/// [`Error::BadPayloadSize`].
pub fn parse(datagram: &[u8]) -> Result<RistPacket<'_>, Error> {
    let p = RtpPacket::parse(datagram).map_err(|e| Error::Malformed(format!("RTP: {e}")))?;
    if p.payload_type() != PAYLOAD_TYPE_MP2T {
        return Err(Error::Malformed(format!(
            "RTP payload type {} is not 33 (MP2T)",
            p.payload_type()
        )));
    }
    let start = p.payload_offset();
    let payload = &datagram[start..start + p.payload_len()];
    check_payload_size(payload.len())?;
    Ok(RistPacket {
        seq: p.sequence_number(),
        timestamp: p.timestamp(),
        ssrc: p.ssrc(),
        marker: p.marker_bit(),
        payload,
    })
}

/// Build one RTP datagram: V=2, PT 33, no CSRC, no extension, marker 0.
/// Errors: [`Error::BadPayloadSize`].
pub fn build(seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Result<Vec<u8>, Error> {
    check_payload_size(payload.len())?;
    RtpPacketBuilder::<&[u8], &[u8]>::new()
        .payload_type(PAYLOAD_TYPE_MP2T)
        .sequence_number(seq)
        .timestamp(timestamp)
        .ssrc(ssrc)
        .payload(payload)
        .write_vec()
        .map_err(|e| Error::Malformed(format!("RTP build: {e}")))
}

/// Turn an original datagram (as built by [`build`]) into its retransmission: same
/// bytes, same sequence number and timestamp, SSRC with the LSB set (TR-06-1 §5.3.2).
pub fn to_retransmission(original: &[u8]) -> Vec<u8> {
    let mut out = original.to_vec();
    if out.len() >= HEADER_LEN {
        out[11] |= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts_payload(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n * TS_PACKET_SIZE];
        for (i, chunk) in v.chunks_mut(TS_PACKET_SIZE).enumerate() {
            chunk[0] = 0x47;
            chunk[3] = 0x10 | (i as u8 & 0x0f);
        }
        v
    }

    #[test]
    fn build_has_rist_header() {
        let d = build(0xBEEF, 0x1234_5678, 0xABCD_0002, &ts_payload(7)).unwrap();
        assert_eq!(d.len(), HEADER_LEN + 7 * 188);
        assert_eq!(d[0], 0x80);
        assert_eq!(d[1], 33);
        assert_eq!(&d[2..4], &[0xBE, 0xEF]);
        assert_eq!(&d[4..8], &[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(&d[8..12], &[0xAB, 0xCD, 0x00, 0x02]);
    }

    #[test]
    fn retransmission_sets_ssrc_lsb_only() {
        let d = build(7, 9, 0x1000, &ts_payload(1)).unwrap();
        let r = to_retransmission(&d);
        let p = parse(&r).unwrap();
        assert!(p.is_retransmission());
        assert_eq!(p.ssrc, 0x1001);
        assert_eq!(p.flow_ssrc(), 0x1000);
        assert_eq!((p.seq, p.timestamp), (7, 9));
        assert_eq!(&r[12..], &d[12..]);
    }

    #[test]
    fn rejects_bad_payloads_and_types() {
        assert_eq!(build(0, 0, 0, &[0u8; 100]), Err(Error::BadPayloadSize(100)));
        assert_eq!(build(0, 0, 0, &[]), Err(Error::BadPayloadSize(0)));
        assert_eq!(
            build(0, 0, 0, &ts_payload(8)),
            Err(Error::BadPayloadSize(8 * 188))
        );
        let mut d = build(0, 0, 0, &ts_payload(1)).unwrap();
        d[1] = 96;
        assert!(matches!(parse(&d), Err(Error::Malformed(_))));
        assert!(matches!(parse(&d[..5]), Err(Error::Malformed(_))));
        let mut v1 = build(0, 0, 0, &ts_payload(1)).unwrap();
        v1[0] = 0x40;
        assert!(matches!(parse(&v1), Err(Error::Malformed(_))));
        let short = build(0, 0, 0, &ts_payload(2)).unwrap();
        assert_eq!(
            parse(&short[..short.len() - 1]),
            Err(Error::BadPayloadSize(2 * 188 - 1))
        );
    }

    #[test]
    fn parse_skips_header_extension() {
        // RTP header with X=1 and a one-word extension (like GStreamer's RIST seq ext).
        let mut d = vec![
            0x90, 33, 0, 5, 0, 0, 0, 1, 0, 0, 0, 2, 0x40, 0x00, 0, 1, 0, 0, 0, 3,
        ];
        d.extend_from_slice(&ts_payload(1));
        let p = parse(&d).unwrap();
        assert_eq!(p.seq, 5);
        assert_eq!(p.payload.len(), 188);
    }

    proptest! {
        #[test]
        fn build_parse_round_trip(seq in any::<u16>(), ts in any::<u32>(), ssrc in any::<u32>(), n in 1usize..=7, fill in any::<u8>()) {
            let payload = vec![fill; n * 188];
            let d = build(seq, ts, ssrc, &payload).unwrap();
            let p = parse(&d).unwrap();
            prop_assert_eq!(p.seq, seq);
            prop_assert_eq!(p.timestamp, ts);
            prop_assert_eq!(p.ssrc, ssrc);
            prop_assert_eq!(p.payload, &payload[..]);
            let r = to_retransmission(&d);
            let pr = parse(&r).unwrap();
            prop_assert!(pr.is_retransmission());
            prop_assert_eq!(pr.flow_ssrc(), ssrc & !1);
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let _ = parse(&data);
        }
    }
}
