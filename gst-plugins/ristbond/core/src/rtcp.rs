//! Compound RTCP of RIST Simple Profile: SR/RR/SDES (RFC 3550 §6.4), generic NACK (RFC 4585 §6.2.1), RIST range NACK (TR-06-1 §5.3.2).
//!
//! A RIST peer sends *compound* RTCP datagrams on port P+1 (TR-06-1 §5.1, §5.3):
//!
//! - sender → receiver: SR (PT 200) + SDES CNAME (PT 202), every RTCP interval on every
//!   link; this doubles as the keepalive;
//! - receiver → sender: RR (PT 201) + SDES CNAME, plus retransmission requests, either
//!   the generic NACK (RTPFB PT 205, FMT 1, PID+BLP words; RFC 4585 §6.2.1; what
//!   GStreamer's `ristsrc` sends) or the RIST range NACK (APP PT 204, name `RIST`,
//!   subtype 0, a list of `(start seq, extra count)` words; TR-06-1 §5.3.2.2; what
//!   librist sends);
//! - either way: the RIST RTT echo request/response (APP `RIST` subtypes 2 and 3, a
//!   64-bit NTP timestamp and a 32-bit processing delay in µs; TR-06-1 §5.2.6).
//!
//! SR, RR, SDES, BYE, generic NACK and the APP framing are parsed and written with the
//! `rtcp-types` crate; the APP payloads of RIST are done here. Parsing is tolerant:
//! packet types this profile does not use, and individual packets whose body does not
//! parse, come back as [`Packet::Other`] so that the rest of the compound (typically a
//! NACK) still counts. Only a datagram whose framing is broken (empty, not version 2,
//! a length field running past the end, bad padding) is [`Error::Malformed`].

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtcp_types::{
    App, Bye, Nack, ReceiverReport as RtReceiverReport, ReportBlock as RtReportBlock,
    RtcpPacketParser, RtcpPacketParserExt, RtcpPacketWriter, Sdes as RtSdes,
    SdesChunk as RtSdesChunk, SdesItem, SenderReport as RtSenderReport, TransportFeedback,
};

use crate::Error;

/// RTCP packet type: sender report (RFC 3550 §6.4.1).
pub const PT_SR: u8 = 200;
/// RTCP packet type: receiver report (RFC 3550 §6.4.2).
pub const PT_RR: u8 = 201;
/// RTCP packet type: source description (RFC 3550 §6.5).
pub const PT_SDES: u8 = 202;
/// RTCP packet type: goodbye (RFC 3550 §6.6).
pub const PT_BYE: u8 = 203;
/// RTCP packet type: application-defined (RFC 3550 §6.7); RIST range NACK and echo.
pub const PT_APP: u8 = 204;
/// RTCP packet type: transport-layer feedback (RFC 4585 §6.2); FMT 1 = generic NACK.
pub const PT_RTPFB: u8 = 205;
/// RTPFB feedback message type of the generic NACK (RFC 4585 §6.2.1).
pub const FMT_GENERIC_NACK: u8 = 1;
/// APP name of all RIST-specific RTCP (TR-06-1 §5.3.2.2).
pub const RIST_APP_NAME: [u8; 4] = *b"RIST";
/// RIST APP subtype: range NACK (TR-06-1 §5.3.2.2).
pub const SUBTYPE_RANGE_NACK: u8 = 0;
/// RIST APP subtype: RTT echo request (TR-06-1 §5.2.6).
pub const SUBTYPE_ECHO_REQUEST: u8 = 2;
/// RIST APP subtype: RTT echo response (TR-06-1 §5.2.6).
pub const SUBTYPE_ECHO_RESPONSE: u8 = 3;

/// Most report blocks in one SR/RR (5-bit count, RFC 3550 §6.4.1).
pub const MAX_REPORT_BLOCKS: usize = 31;
/// Longest SDES item value, bytes (8-bit length, RFC 3550 §6.5).
pub const MAX_SDES_VALUE: usize = 255;

/// One reception report block (RFC 3550 §6.4.1), as sent in RR (and SR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// SSRC of the source this block reports on (the RIST sender's, LSB 0).
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, fixed point /256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit on the wire; larger values are clamped).
    pub cumulative_lost: u32,
    /// Extended highest sequence number received (cycles << 16 | seq).
    pub extended_highest_seq: u32,
    /// Interarrival jitter, RTP timestamp units (1/90000 s) (RFC 3550 §A.8).
    pub jitter: u32,
    /// LSR: middle 32 bits of the NTP timestamp of the last SR received, 0 if none.
    pub lsr: u32,
    /// DLSR: delay since that SR was received, units of 1/65536 s.
    pub dlsr: u32,
}

/// Sender report (PT 200, RFC 3550 §6.4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderReport {
    /// SSRC of the sender (original flow SSRC, LSB 0).
    pub ssrc: u32,
    /// 64-bit NTP timestamp (32.32 fixed point seconds since 1900) of this report.
    pub ntp_timestamp: u64,
    /// RTP timestamp (90 kHz) corresponding to `ntp_timestamp`.
    pub rtp_timestamp: u32,
    /// Packets sent since the start (wrapping).
    pub packet_count: u32,
    /// Payload octets sent since the start (wrapping).
    pub octet_count: u32,
    /// Reception report blocks (at most 31).
    pub reports: Vec<ReportBlock>,
}

/// Receiver report (PT 201, RFC 3550 §6.4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverReport {
    /// SSRC of the reporting receiver.
    pub ssrc: u32,
    /// Reception report blocks (at most 31).
    pub reports: Vec<ReportBlock>,
}

/// One SDES chunk reduced to what RIST uses: the CNAME of an SSRC (RFC 3550 §6.5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdesChunk {
    /// SSRC the chunk describes.
    pub ssrc: u32,
    /// CNAME item value (UTF-8, at most 255 bytes; longer values are truncated on write).
    pub cname: String,
}

/// Generic NACK (RTPFB PT 205, FMT 1; RFC 4585 §6.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenericNack {
    /// SSRC of the packet sender (the RIST receiver).
    pub sender_ssrc: u32,
    /// SSRC of the media source (the RIST sender's flow SSRC).
    pub media_ssrc: u32,
    /// Lost sequence numbers. Written as PID+BLP words (the set, sorted by value);
    /// parsed in wire order.
    pub lost: Vec<u16>,
}

/// One record of a RIST range NACK: `start`, `start+1`, …, `start+extra` (wrapping).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackRange {
    /// First missing sequence number.
    pub start: u16,
    /// Number of further consecutive missing packets after `start`.
    pub extra: u16,
}

/// RIST range NACK (APP PT 204, name `RIST`, subtype 0; TR-06-1 §5.3.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeNack {
    /// SSRC field of the APP packet: the media source (flow) SSRC, as librist sends it.
    pub ssrc: u32,
    /// Missing ranges.
    pub ranges: Vec<NackRange>,
}

impl RangeNack {
    /// Build from sequence numbers in sending order, merging runs of consecutive
    /// (wrapping) numbers into one range each.
    pub fn from_seqs(ssrc: u32, seqs: &[u16]) -> Self {
        let mut ranges: Vec<NackRange> = Vec::new();
        for &s in seqs {
            if let Some(last) = ranges.last_mut() {
                if last.start.wrapping_add(last.extra).wrapping_add(1) == s && last.extra < u16::MAX
                {
                    last.extra += 1;
                    continue;
                }
            }
            ranges.push(NackRange { start: s, extra: 0 });
        }
        Self { ssrc, ranges }
    }

    /// All sequence numbers asked for, in record order.
    pub fn seqs(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges
            .iter()
            .flat_map(|r| (0..=u32::from(r.extra)).map(move |i| r.start.wrapping_add(i as u16)))
    }
}

/// RIST RTT echo request or response body (APP `RIST` subtype 2/3; TR-06-1 §5.2.6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Echo {
    /// SSRC field of the APP packet.
    pub ssrc: u32,
    /// 64-bit NTP timestamp set by the requester and echoed verbatim.
    pub timestamp: u64,
    /// Processing delay at the responder, µs (0 in requests).
    pub delay_us: u32,
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Sender report.
    Sr(SenderReport),
    /// Receiver report.
    Rr(ReceiverReport),
    /// Source description (CNAMEs).
    Sdes(Vec<SdesChunk>),
    /// Goodbye: the SSRCs leaving.
    Bye(Vec<u32>),
    /// Generic NACK (RFC 4585).
    GenericNack(GenericNack),
    /// RIST range NACK.
    RangeNack(RangeNack),
    /// RIST RTT echo request.
    EchoRequest(Echo),
    /// RIST RTT echo response.
    EchoResponse(Echo),
    /// Anything else (unknown type, other feedback, other APP), or a packet whose body
    /// did not parse. Ignored on write.
    Other {
        /// RTCP packet type.
        packet_type: u8,
        /// The 5-bit count/subtype/FMT field.
        subtype: u8,
    },
}

fn malformed(msg: impl Into<String>) -> Error {
    Error::Malformed(format!("RTCP: {}", msg.into()))
}

/// Split a compound RTCP datagram and parse every packet in it.
/// Errors: [`Error::Malformed`] when the framing is broken (see the module doc).
pub fn parse_compound(data: &[u8]) -> Result<Vec<Packet>, Error> {
    if data.is_empty() {
        return Err(malformed("empty datagram"));
    }
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let rest = &data[off..];
        if rest.len() < 4 {
            return Err(malformed(format!("{} trailing bytes", rest.len())));
        }
        if rest[0] >> 6 != 2 {
            return Err(malformed(format!(
                "version {} at offset {off}",
                rest[0] >> 6
            )));
        }
        let len = 4 * (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1);
        if len > rest.len() {
            return Err(malformed(format!(
                "packet at offset {off} claims {len} bytes, {} left",
                rest.len()
            )));
        }
        let pkt = &rest[..len];
        if pkt[0] & 0x20 != 0 {
            let pad = usize::from(pkt[len - 1]);
            if pad == 0 || pad > len - 4 {
                return Err(malformed(format!("bad padding {pad} at offset {off}")));
            }
        }
        out.push(parse_one(pkt));
        off += len;
    }
    Ok(out)
}

fn other(pkt: &[u8]) -> Packet {
    Packet::Other {
        packet_type: pkt[1],
        subtype: pkt[0] & 0x1f,
    }
}

fn convert_block(b: &RtReportBlock<'_>) -> ReportBlock {
    ReportBlock {
        ssrc: b.ssrc(),
        fraction_lost: b.fraction_lost(),
        cumulative_lost: b.cumulative_lost(),
        extended_highest_seq: b.extended_sequence_number(),
        jitter: b.interarrival_jitter(),
        lsr: b.last_sender_report_timestamp(),
        dlsr: b.delay_since_last_sender_report_timestamp(),
    }
}

/// Parse one framed packet (length already checked); never fails, see [`Packet::Other`].
fn parse_one(pkt: &[u8]) -> Packet {
    let parsed = match pkt[1] {
        PT_SR => RtSenderReport::parse(pkt).ok().map(|sr| {
            Packet::Sr(SenderReport {
                ssrc: sr.ssrc(),
                ntp_timestamp: sr.ntp_timestamp(),
                rtp_timestamp: sr.rtp_timestamp(),
                packet_count: sr.packet_count(),
                octet_count: sr.octet_count(),
                reports: sr.report_blocks().map(|b| convert_block(&b)).collect(),
            })
        }),
        PT_RR => RtReceiverReport::parse(pkt).ok().map(|rr| {
            Packet::Rr(ReceiverReport {
                ssrc: rr.ssrc(),
                reports: rr.report_blocks().map(|b| convert_block(&b)).collect(),
            })
        }),
        PT_SDES => parse_sdes(pkt).map(Packet::Sdes),
        PT_BYE => Bye::parse(pkt)
            .ok()
            .map(|bye| Packet::Bye(bye.ssrcs().collect())),
        PT_RTPFB => TransportFeedback::parse(pkt).ok().and_then(|fb| {
            if fb.count() != FMT_GENERIC_NACK {
                return None;
            }
            let nack = fb.parse_fci::<Nack>().ok()?;
            Some(Packet::GenericNack(GenericNack {
                sender_ssrc: fb.sender_ssrc(),
                media_ssrc: fb.media_ssrc(),
                lost: nack.entries().collect(),
            }))
        }),
        PT_APP => App::parse(pkt)
            .ok()
            .and_then(|app| parse_rist_app(&app, pkt)),
        _ => None,
    };
    parsed.unwrap_or_else(|| other(pkt))
}

/// SDES chunks (RFC 3550 §6.5): SSRC, items (type, length, value), a null octet and
/// padding to the next 32-bit boundary. Parsed here rather than with `rtcp-types`,
/// whose 0.3 parser eats the leading zero bytes of a following chunk's SSRC.
fn parse_sdes(pkt: &[u8]) -> Option<Vec<SdesChunk>> {
    let pad = if pkt[0] & 0x20 != 0 {
        usize::from(pkt[pkt.len() - 1])
    } else {
        0
    };
    let body = pkt.get(4..pkt.len().checked_sub(pad)?)?;
    let count = usize::from(pkt[0] & 0x1f);
    let mut chunks = Vec::with_capacity(count);
    let mut off = 0;
    for _ in 0..count {
        let ssrc = u32::from_be_bytes(body.get(off..off + 4)?.try_into().ok()?);
        off += 4;
        let mut cname = None;
        loop {
            let item_type = *body.get(off)?;
            if item_type == 0 {
                off = (off + 1).next_multiple_of(4);
                break;
            }
            let len = usize::from(*body.get(off + 1)?);
            let value = body.get(off + 2..off + 2 + len)?;
            if item_type == SdesItem::CNAME && cname.is_none() {
                cname = Some(String::from_utf8_lossy(value).into_owned());
            }
            off += 2 + len;
        }
        if let Some(cname) = cname {
            chunks.push(SdesChunk { ssrc, cname });
        }
    }
    Some(chunks)
}

fn parse_rist_app(app: &App<'_>, pkt: &[u8]) -> Option<Packet> {
    if app.name() != RIST_APP_NAME {
        return None;
    }
    let pad = if pkt[0] & 0x20 != 0 {
        usize::from(pkt[pkt.len() - 1])
    } else {
        0
    };
    // Framing guarantees pad <= len - 4; the APP header needs 12 bytes.
    let end = pkt.len().checked_sub(pad)?;
    let body = pkt.get(12..end)?;
    let ssrc = app.ssrc();
    match app.subtype() {
        SUBTYPE_RANGE_NACK => {
            let ranges = body
                .chunks_exact(4)
                .map(|w| NackRange {
                    start: u16::from_be_bytes([w[0], w[1]]),
                    extra: u16::from_be_bytes([w[2], w[3]]),
                })
                .collect();
            Some(Packet::RangeNack(RangeNack { ssrc, ranges }))
        }
        SUBTYPE_ECHO_REQUEST | SUBTYPE_ECHO_RESPONSE => {
            if body.len() < 8 {
                return None;
            }
            let timestamp = u64::from_be_bytes(body[0..8].try_into().ok()?);
            let delay_us = body
                .get(8..12)
                .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
                .unwrap_or(0);
            let echo = Echo {
                ssrc,
                timestamp,
                delay_us,
            };
            Some(if app.subtype() == SUBTYPE_ECHO_REQUEST {
                Packet::EchoRequest(echo)
            } else {
                Packet::EchoResponse(echo)
            })
        }
        _ => None,
    }
}

fn block_builder(b: &ReportBlock) -> rtcp_types::ReportBlockBuilder {
    RtReportBlock::builder(b.ssrc)
        .fraction_lost(b.fraction_lost)
        .cumulative_lost(b.cumulative_lost.min(0x00ff_ffff))
        .extended_sequence_number(b.extended_highest_seq)
        .interarrival_jitter(b.jitter)
        .last_sender_report_timestamp(b.lsr)
        .delay_since_last_sender_report_timestamp(b.dlsr)
}

/// Cut `s` to at most [`MAX_SDES_VALUE`] bytes on a character boundary.
fn truncate_cname(s: &str) -> &str {
    if s.len() <= MAX_SDES_VALUE {
        return s;
    }
    let mut end = MAX_SDES_VALUE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn append(out: &mut Vec<u8>, w: &dyn RtcpPacketWriter) {
    match w.calculate_size() {
        Ok(size) => {
            let start = out.len();
            out.resize(start + size, 0);
            let written = w.write_into_unchecked(&mut out[start..]);
            out.truncate(start + written);
        }
        Err(e) => debug_assert!(false, "RTCP writer rejected sanitised input: {e}"),
    }
}

fn append_app(out: &mut Vec<u8>, ssrc: u32, subtype: u8, body: &[u8]) {
    let name = std::str::from_utf8(&RIST_APP_NAME).unwrap_or("RIST");
    append(out, &App::builder(ssrc, name).subtype(subtype).data(body));
}

/// Write packets back to back as one compound datagram. Inputs are sanitised rather
/// than rejected: at most 31 report blocks, CNAMEs cut to 255 bytes, cumulative loss
/// clamped to 24 bits; [`Packet::Other`] is skipped. RFC 3550 §6.1 wants an SR or RR
/// first; callers put it there.
pub fn write_compound(packets: &[Packet]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for p in packets {
        match p {
            Packet::Sr(sr) => {
                let mut b = RtSenderReport::builder(sr.ssrc)
                    .ntp_timestamp(sr.ntp_timestamp)
                    .rtp_timestamp(sr.rtp_timestamp)
                    .packet_count(sr.packet_count)
                    .octet_count(sr.octet_count);
                for rb in sr.reports.iter().take(MAX_REPORT_BLOCKS) {
                    b = b.add_report_block(block_builder(rb));
                }
                append(&mut out, &b);
            }
            Packet::Rr(rr) => {
                let mut b = RtReceiverReport::builder(rr.ssrc);
                for rb in rr.reports.iter().take(MAX_REPORT_BLOCKS) {
                    b = b.add_report_block(block_builder(rb));
                }
                append(&mut out, &b);
            }
            Packet::Sdes(chunks) => {
                let mut b = RtSdes::builder();
                for c in chunks.iter().take(31) {
                    b = b.add_chunk(
                        RtSdesChunk::builder(c.ssrc)
                            .add_item(SdesItem::builder(SdesItem::CNAME, truncate_cname(&c.cname))),
                    );
                }
                append(&mut out, &b);
            }
            Packet::Bye(ssrcs) => {
                let mut b = Bye::builder();
                for &s in ssrcs.iter().take(31) {
                    b = b.add_source(s);
                }
                append(&mut out, &b);
            }
            Packet::GenericNack(n) => {
                let mut fci = Nack::builder();
                for &s in &n.lost {
                    fci = fci.add_rtp_sequence(s);
                }
                let b = TransportFeedback::builder(&fci)
                    .sender_ssrc(n.sender_ssrc)
                    .media_ssrc(n.media_ssrc);
                append(&mut out, &b);
            }
            Packet::RangeNack(n) => {
                let body: Vec<u8> = n
                    .ranges
                    .iter()
                    .flat_map(|r| {
                        let [a, b] = r.start.to_be_bytes();
                        let [c, d] = r.extra.to_be_bytes();
                        [a, b, c, d]
                    })
                    .collect();
                append_app(&mut out, n.ssrc, SUBTYPE_RANGE_NACK, &body);
            }
            Packet::EchoRequest(e) | Packet::EchoResponse(e) => {
                let subtype = if matches!(p, Packet::EchoRequest(_)) {
                    SUBTYPE_ECHO_REQUEST
                } else {
                    SUBTYPE_ECHO_RESPONSE
                };
                let mut body = [0u8; 12];
                body[..8].copy_from_slice(&e.timestamp.to_be_bytes());
                body[8..].copy_from_slice(&e.delay_us.to_be_bytes());
                append_app(&mut out, e.ssrc, subtype, &body);
            }
            Packet::Other { .. } => {}
        }
    }
    out
}

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// Convert a duration to 32.32 fixed-point NTP units.
pub fn duration_to_ntp(d: Duration) -> u64 {
    (d.as_secs() << 32) + ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

/// Convert 32.32 fixed-point NTP units to a duration.
pub fn ntp_to_duration(ntp: u64) -> Duration {
    let secs = ntp >> 32;
    let frac = ntp & 0xffff_ffff;
    Duration::new(secs, ((frac * 1_000_000_000) >> 32) as u32)
}

/// The middle 32 bits of a 64-bit NTP timestamp (16.16 fixed point), as used by LSR
/// and DLSR (RFC 3550 §6.4.1).
pub fn ntp_short(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Convert a duration to 16.16 fixed-point units of 1/65536 s (DLSR), saturating.
pub fn duration_to_short(d: Duration) -> u32 {
    let v = duration_to_ntp(d) >> 16;
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Convert 16.16 fixed-point units of 1/65536 s to a duration.
pub fn short_to_duration(v: u32) -> Duration {
    ntp_to_duration(u64::from(v) << 16)
}

/// Maps monotonic [`Instant`]s to 64-bit NTP wall-clock timestamps: the wall clock is
/// read once at construction, later values are that plus monotonic elapsed time, so
/// round-trip computations never see wall-clock jumps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NtpClock {
    base: Instant,
    base_ntp: u64,
}

impl NtpClock {
    /// Capture the wall clock now (the only clock read of this crate).
    pub(crate) fn new(now: Instant) -> Self {
        let since_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::anchored(now, since_unix)
    }

    /// A clock whose instant `now` is `since_unix` after the Unix epoch (a caller
    /// that reads the wall clock itself, or a deterministic simulation).
    pub(crate) fn anchored(now: Instant, since_unix: Duration) -> Self {
        Self {
            base: now,
            base_ntp: duration_to_ntp(since_unix + Duration::from_secs(NTP_UNIX_OFFSET_S)),
        }
    }

    /// NTP timestamp of `t` (instants before construction map to the base).
    pub(crate) fn ntp(&self, t: Instant) -> u64 {
        self.base_ntp
            .wrapping_add(duration_to_ntp(t.saturating_duration_since(self.base)))
    }

    /// Time since construction.
    pub(crate) fn elapsed(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_compound() -> Vec<Packet> {
        vec![
            Packet::Rr(ReceiverReport {
                ssrc: 0x1111_0000,
                reports: vec![ReportBlock {
                    ssrc: 0x2222_0000,
                    fraction_lost: 12,
                    cumulative_lost: 345,
                    extended_highest_seq: 0x0001_0010,
                    jitter: 77,
                    lsr: 0xdead_beef,
                    dlsr: 0x0001_8000,
                }],
            }),
            Packet::Sdes(vec![SdesChunk {
                ssrc: 0x1111_0000,
                cname: "receiver@braid".into(),
            }]),
            Packet::GenericNack(GenericNack {
                sender_ssrc: 0x1111_0000,
                media_ssrc: 0x2222_0000,
                lost: vec![10, 11, 12, 30, 100],
            }),
            Packet::RangeNack(RangeNack::from_seqs(0x2222_0000, &[65534, 65535, 0, 1, 9])),
            Packet::EchoRequest(Echo {
                ssrc: 0x1111_0000,
                timestamp: 0x0102_0304_0506_0708,
                delay_us: 0,
            }),
        ]
    }

    #[test]
    fn compound_round_trip() {
        let pkts = sample_compound();
        let bytes = write_compound(&pkts);
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(parse_compound(&bytes).unwrap(), pkts);
    }

    #[test]
    fn generic_nack_wire_format() {
        // RFC 4585 §6.2.1: PID 10, BLP bits for 11, 12 (bits 0,1) and 26 (bit 15).
        let bytes = write_compound(&[Packet::GenericNack(GenericNack {
            sender_ssrc: 1,
            media_ssrc: 2,
            lost: vec![10, 11, 12, 26],
        })]);
        assert_eq!(
            bytes,
            vec![0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 10, 0x80, 0x03]
        );
    }

    #[test]
    fn range_nack_wire_format_like_librist() {
        let bytes = write_compound(&[Packet::RangeNack(RangeNack {
            ssrc: 0xAABB_CC00,
            ranges: vec![NackRange {
                start: 0x1234,
                extra: 3,
            }],
        })]);
        // V=2 subtype 0, PT 204, length 3 words, SSRC, "RIST", start, extra.
        assert_eq!(
            bytes,
            vec![0x80, 204, 0, 3, 0xAA, 0xBB, 0xCC, 0x00, b'R', b'I', b'S', b'T', 0x12, 0x34, 0, 3]
        );
        let Packet::RangeNack(n) = &parse_compound(&bytes).unwrap()[0] else {
            panic!("not a range NACK");
        };
        assert_eq!(
            n.seqs().collect::<Vec<_>>(),
            vec![0x1234, 0x1235, 0x1236, 0x1237]
        );
    }

    #[test]
    fn range_nack_from_seqs_merges_runs_across_wrap() {
        let n = RangeNack::from_seqs(0, &[65534, 65535, 0, 1, 9, 10, 3]);
        assert_eq!(
            n.ranges,
            vec![
                NackRange {
                    start: 65534,
                    extra: 3
                },
                NackRange { start: 9, extra: 1 },
                NackRange { start: 3, extra: 0 },
            ]
        );
        assert_eq!(
            n.seqs().collect::<Vec<_>>(),
            vec![65534, 65535, 0, 1, 9, 10, 3]
        );
    }

    #[test]
    fn echo_wire_format_like_librist() {
        let bytes = write_compound(&[Packet::EchoResponse(Echo {
            ssrc: 5,
            timestamp: 0x1122_3344_5566_7788,
            delay_us: 9,
        })]);
        assert_eq!(bytes.len(), 24);
        assert_eq!(&bytes[..4], &[0x83, 204, 0, 5]);
        assert_eq!(&bytes[8..12], b"RIST");
    }

    #[test]
    fn unknown_packets_are_skipped_not_fatal() {
        let mut bytes = Vec::new();
        // An XR-like unknown type 207 with one word of body.
        bytes.extend_from_slice(&[0x80, 207, 0, 1, 0, 0, 0, 9]);
        // A PLI (PSFB 206 FMT 1) and a TWCC-ish RTPFB FMT 15.
        bytes.extend_from_slice(&[0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
        bytes.extend_from_slice(&[0x8f, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
        // A non-RIST APP.
        bytes.extend_from_slice(&[0x80, 204, 0, 2, 0, 0, 0, 1, b'A', b'B', b'C', b'D']);
        bytes.extend_from_slice(&write_compound(&[Packet::GenericNack(GenericNack {
            sender_ssrc: 1,
            media_ssrc: 2,
            lost: vec![5],
        })]));
        let pkts = parse_compound(&bytes).unwrap();
        assert_eq!(pkts.len(), 5);
        assert_eq!(
            pkts[0],
            Packet::Other {
                packet_type: 207,
                subtype: 0
            }
        );
        assert!(matches!(
            pkts[1],
            Packet::Other {
                packet_type: 206,
                ..
            }
        ));
        assert!(matches!(
            pkts[2],
            Packet::Other {
                packet_type: 205,
                subtype: 15
            }
        ));
        assert!(matches!(
            pkts[3],
            Packet::Other {
                packet_type: 204,
                ..
            }
        ));
        assert!(matches!(&pkts[4], Packet::GenericNack(n) if n.lost == vec![5]));
    }

    #[test]
    fn malformed_framing_is_rejected() {
        assert!(matches!(parse_compound(&[]), Err(Error::Malformed(_))));
        assert!(matches!(
            parse_compound(&[0x80, 200]),
            Err(Error::Malformed(_))
        ));
        // Version 1.
        assert!(matches!(
            parse_compound(&[0x40, 201, 0, 1, 0, 0, 0, 1]),
            Err(Error::Malformed(_))
        ));
        // Length runs past the end.
        assert!(matches!(
            parse_compound(&[0x80, 201, 0, 5, 0, 0, 0, 1]),
            Err(Error::Malformed(_))
        ));
        // Trailing garbage after a valid packet.
        assert!(matches!(
            parse_compound(&[0x80, 201, 0, 1, 0, 0, 0, 1, 0x80]),
            Err(Error::Malformed(_))
        ));
        // Padding larger than the packet.
        assert!(matches!(
            parse_compound(&[0xa0, 201, 0, 1, 0, 0, 0, 99]),
            Err(Error::Malformed(_))
        ));
        // Version error in the second packet.
        assert!(matches!(
            parse_compound(&[0x80, 201, 0, 1, 0, 0, 0, 1, 0x00, 201, 0, 1, 0, 0, 0, 1]),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn long_cname_is_truncated_on_char_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let bytes = write_compound(&[Packet::Sdes(vec![SdesChunk {
            ssrc: 1,
            cname: long,
        }])]);
        let Packet::Sdes(c) = &parse_compound(&bytes).unwrap()[0] else {
            panic!("no SDES");
        };
        assert_eq!(c[0].cname.len(), 254);
    }

    #[test]
    fn ntp_conversions() {
        assert_eq!(
            duration_to_ntp(Duration::from_millis(1500)),
            (1 << 32) + (1 << 31)
        );
        assert_eq!(
            ntp_to_duration((3 << 32) + (1 << 30)),
            Duration::from_millis(3250)
        );
        assert_eq!(duration_to_short(Duration::from_millis(500)), 0x8000);
        assert_eq!(short_to_duration(0x0001_4000), Duration::from_millis(1250));
        assert_eq!(ntp_short(0x1234_5678_9abc_def0), 0x5678_9abc);
        let t0 = Instant::now();
        let c = NtpClock::new(t0);
        let d = c
            .ntp(t0 + Duration::from_millis(250))
            .wrapping_sub(c.ntp(t0));
        assert_eq!(d, duration_to_ntp(Duration::from_millis(250)));
    }

    fn arb_block() -> impl Strategy<Value = ReportBlock> {
        (
            any::<u32>(),
            any::<u8>(),
            0u32..=0x00ff_ffff,
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(
                |(ssrc, fraction_lost, cumulative_lost, ehs, jitter, lsr, dlsr)| ReportBlock {
                    ssrc,
                    fraction_lost,
                    cumulative_lost,
                    extended_highest_seq: ehs,
                    jitter,
                    lsr,
                    dlsr,
                },
            )
    }

    fn arb_packet() -> impl Strategy<Value = Packet> {
        let blocks = || proptest::collection::vec(arb_block(), 0..4);
        prop_oneof![
            (
                any::<u32>(),
                any::<u64>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                blocks()
            )
                .prop_map(|(ssrc, ntp, rtp, pc, oc, reports)| Packet::Sr(
                    SenderReport {
                        ssrc,
                        ntp_timestamp: ntp,
                        rtp_timestamp: rtp,
                        packet_count: pc,
                        octet_count: oc,
                        reports
                    }
                )),
            (any::<u32>(), blocks())
                .prop_map(|(ssrc, reports)| Packet::Rr(ReceiverReport { ssrc, reports })),
            proptest::collection::vec((any::<u32>(), "[a-zA-Z0-9@._-]{1,40}"), 1..3).prop_map(
                |v| Packet::Sdes(
                    v.into_iter()
                        .map(|(ssrc, cname)| SdesChunk { ssrc, cname })
                        .collect()
                )
            ),
            proptest::collection::vec(any::<u32>(), 1..5).prop_map(Packet::Bye),
            (
                any::<u32>(),
                any::<u32>(),
                proptest::collection::btree_set(any::<u16>(), 1..60)
            )
                .prop_map(|(s, m, set)| Packet::GenericNack(GenericNack {
                    sender_ssrc: s,
                    media_ssrc: m,
                    lost: set.into_iter().collect()
                })),
            (
                any::<u32>(),
                proptest::collection::vec((any::<u16>(), 0u16..300), 0..20)
            )
                .prop_map(|(ssrc, r)| Packet::RangeNack(RangeNack {
                    ssrc,
                    ranges: r
                        .into_iter()
                        .map(|(start, extra)| NackRange { start, extra })
                        .collect()
                })),
            (any::<u32>(), any::<u64>()).prop_map(|(ssrc, timestamp)| Packet::EchoRequest(Echo {
                ssrc,
                timestamp,
                delay_us: 0
            })),
            (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(ssrc, timestamp, delay_us)| {
                Packet::EchoResponse(Echo {
                    ssrc,
                    timestamp,
                    delay_us,
                })
            }),
        ]
    }

    proptest! {
        #[test]
        fn build_parse_round_trip(pkts in proptest::collection::vec(arb_packet(), 1..6)) {
            let bytes = write_compound(&pkts);
            prop_assert_eq!(parse_compound(&bytes).unwrap(), pkts);
        }

        #[test]
        fn parse_never_panics_on_garbage(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_compound(&data);
        }

        /// Valid framing with random bodies: never panics, never rejects the datagram.
        #[test]
        fn parse_tolerates_random_bodies(
            pkts in proptest::collection::vec(
                (any::<u8>(), 200u8..=207, proptest::collection::vec(any::<u8>(), 0..12)),
                1..5,
            )
        ) {
            let mut bytes = Vec::new();
            for (first, pt, words) in &pkts {
                let body_len = words.len() / 4 * 4;
                // V=2, no padding bit, random count.
                bytes.push(0x80 | (first & 0x1f));
                bytes.push(*pt);
                bytes.extend_from_slice(&((body_len / 4) as u16).to_be_bytes());
                bytes.extend_from_slice(&words[..body_len]);
            }
            let parsed = parse_compound(&bytes).unwrap();
            prop_assert_eq!(parsed.len(), pkts.len());
        }
    }
}
