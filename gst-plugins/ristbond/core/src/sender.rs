//! The bonding sender (TR-06-1 §5.2, §5.3; RFC 3550 §6.4.1 sender reports).
//!
//! CONTRACT (fill in the bodies; keep these signatures, the elements code against them).

use std::time::{Duration, Instant};

use crate::{Error, LinkId, Transmit};

/// Static settings of a [`Sender`].
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// SSRC of original packets; must be even (TR-06-1: retransmissions use `ssrc | 1`).
    pub ssrc: u32,
    /// SDES CNAME sent in every compound RTCP packet.
    pub cname: String,
    /// How long sent packets are kept for retransmission (normally the receiver's
    /// `latency`), ms.
    pub retransmit_buffer: Duration,
    /// Interval between sender reports (SR + SDES) on every link; RIST keepalive.
    pub rtcp_interval: Duration,
}

/// Per-link counters and estimates, for `ristbond-stats` (docs/elements.md).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkStats {
    /// Link id.
    pub id: LinkId,
    /// Original RTP packets sent on this link.
    pub sent_packets: u64,
    /// RTP bytes (UDP payload) sent on this link, originals and retransmissions.
    pub sent_bytes: u64,
    /// Retransmitted RTP packets sent on this link.
    pub retransmitted_packets: u64,
    /// NACKed sequence numbers received on this link's RTCP.
    pub nacks_received: u64,
    /// Smoothed round-trip time from RR LSR/DLSR (RFC 3550 §6.4.1), ms; `None` until measured.
    pub rtt_ms: Option<f64>,
    /// Fraction lost reported by the receiver's last RR for this link (0..=1).
    pub loss_rate: f64,
    /// Scheduling weight currently used for this link.
    pub weight: u32,
}

/// Aggregate counters of a [`Sender`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderStats {
    /// Original RTP packets sent (all links).
    pub packets_sent: u64,
    /// Retransmitted RTP packets sent (all links).
    pub packets_retransmitted: u64,
    /// Packets dropped because they could not be sent before their deadline.
    pub packets_dropped_deadline: u64,
    /// NACKed packets no longer in the retransmission buffer.
    pub retransmit_misses: u64,
    /// Per-link figures, in link-id order.
    pub links: Vec<LinkStats>,
}

/// The bonding sender state machine. One RTP sequence space and SSRC across all links.
#[derive(Debug)]
pub struct Sender {}

impl Sender {
    /// A sender with no links yet.
    pub fn new(config: SenderConfig, now: Instant) -> Self {
        let _ = (config, now);
        todo!()
    }

    /// Add a link with a scheduling weight (>= 1); packets are spread over links in
    /// proportion to their weights (smooth weighted round-robin).
    pub fn add_link(&mut self, id: LinkId, weight: u32, now: Instant) {
        let _ = (id, weight, now);
        todo!()
    }

    /// Remove a link; queued work for it is dropped. Errors: [`Error::UnknownLink`].
    pub fn remove_link(&mut self, id: LinkId) -> Result<(), Error> {
        let _ = id;
        todo!()
    }

    /// Packetize one RTP payload (1..=7 whole 188-byte TS packets) with its 90 kHz RTP
    /// timestamp, assign the next sequence number, keep it for retransmission and
    /// schedule it on one link. Errors: [`Error::BadPayloadSize`]; with no link the
    /// packet is counted as dropped, not an error.
    pub fn send_payload(&mut self, payload: &[u8], rtp_timestamp: u32, now: Instant) -> Result<(), Error> {
        let _ = (payload, rtp_timestamp, now);
        todo!()
    }

    /// Feed one RTCP datagram received on `link` (RR, NACKs, SDES...). Retransmissions
    /// it asks for become `Transmit`s. Errors: [`Error::Malformed`], [`Error::UnknownLink`].
    pub fn handle_rtcp(&mut self, link: LinkId, datagram: &[u8], now: Instant) -> Result<(), Error> {
        let _ = (link, datagram, now);
        todo!()
    }

    /// Next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!()
    }

    /// When [`Sender::handle_timeout`] must be called next (next SR, buffer expiry).
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// Run timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Current counters.
    pub fn stats(&self) -> SenderStats {
        todo!()
    }
}
