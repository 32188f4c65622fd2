//! Sans-IO core of the RIST Simple Profile (VSF TR-06-1) bonding transport.
//!
//! No sockets, no threads, no clocks: time is passed in as [`std::time::Instant`],
//! datagrams are passed in as byte slices, and everything to send comes back out of
//! `poll_transmit`. The GStreamer elements `ristbondsink`/`ristbondsrc` and the
//! tests drive these state machines (quinn-proto / rtpbin2 style): after every
//! `handle_*` call drain `poll_transmit` (and, on the receiver, `poll_output`); call
//! `handle_timeout` when `poll_timeout` is due. The only clock read is one
//! `SystemTime::now()` in each `new()`, the base of the NTP timestamps in RTCP.
//!
//! - [`seq`]: 16-bit RTP sequence arithmetic and extension (RFC 3550 §A.1).
//! - [`rtp`]: RIST RTP packets: PT 33 MPEG-TS, 90 kHz, SSRC rules (TR-06-1 §5.2).
//! - [`rtcp`]: compound RTCP: SR/RR/SDES (RFC 3550 §6.4), generic NACK
//!   (RFC 4585 §6.2.1), RIST range NACK (TR-06-1 §5.3.2).
//! - [`link`]: `rist://` link URIs of the elements' `links` property.
//! - [`sched`]: capacity estimation per link (RTT, queueing delay, loss), link states
//!   with hysteresis, pacing; [`sender::SchedulerConfig`] holds PROTOCOL.md §5
//!   `scheduler` fields.
//! - [`sender`]: the bonding sender: pacing queue with discard deadline, failover
//!   (resend on link death, storm), critical broadcast, redundancy, retransmission
//!   buffer, SR keepalive.
//! - [`critical`]: PAT/PMT/key-frame detection for `critical_broadcast`.
//! - [`feedback`]: encoder bitrate controller fed by the sink's available bitrate.
//! - [`receiver`]: the bonding receiver: merge, de-duplication, reorder, NACK generation.
//! - [`ts`]: MPEG-TS packet headers and the continuity checker (TR 101 290 §5.2.1, 1.4).

pub mod critical;
pub mod feedback;
pub mod link;
pub mod receiver;
pub mod rtcp;
pub mod rtp;
pub mod sched;
pub mod sender;
pub mod seq;
pub mod ts;

/// Index of one link of a bonded stream, as given by the element (position in `links`,
/// or the `id` of `bonding_config.links[]`). Stable for the link's lifetime.
pub type LinkId = u32;

/// Which of a link's two UDP flows a datagram belongs to (TR-06-1 §5.1: RTP on even
/// port P, RTCP on P+1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// RTP media flow (port P).
    Rtp,
    /// RTCP control flow (port P+1).
    Rtcp,
}

/// One datagram the I/O layer must send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Link to send it on.
    pub link: LinkId,
    /// RTP or RTCP socket of that link.
    pub channel: Channel,
    /// The complete UDP payload.
    pub data: Vec<u8>,
}

/// Errors of the wire parsers and state machines. A malformed datagram is reported and
/// dropped; it never changes state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The datagram is not a valid RTP/RTCP packet of this profile; the text says why.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// The RTP payload is not a whole number (1..=7) of 188-byte TS packets.
    #[error("payload of {0} bytes is not 1..=7 whole 188-byte TS packets")]
    BadPayloadSize(usize),
    /// A link id that was never added (or was removed).
    #[error("unknown link {0}")]
    UnknownLink(LinkId),
    /// A `rist://` URI the element cannot use; the text says why.
    #[error("invalid link URI {uri:?}: {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
}
