//! The bonding receiver (TR-06-1 §5.3; RFC 4585 §6.2.1 NACK; RFC 3550 §6.4.2 RR).
//!
//! CONTRACT (fill in the bodies; keep these signatures, the elements code against them).

use std::time::{Duration, Instant};

use crate::{Error, LinkId, Transmit};

/// Static settings of a [`Receiver`].
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Reorder/recovery buffer: a missing packet is given up this long after its gap
    /// was seen (ms in the elements' `latency` property, TR-06-1 "buffer size").
    pub latency: Duration,
    /// SSRC of our receiver reports.
    pub ssrc: u32,
    /// SDES CNAME sent in every compound RTCP packet.
    pub cname: String,
    /// Interval between receiver reports on every link (RIST keepalive).
    pub rtcp_interval: Duration,
}

/// What the receiver hands to the element, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The payload of one RTP packet (1..=7 TS packets).
    Packet {
        /// Extended (64-bit, never wrapping) sequence number.
        seq: u64,
        /// 90 kHz RTP timestamp of the packet.
        rtp_timestamp: u32,
        /// The RTP payload.
        payload: Vec<u8>,
        /// True when it arrived as a retransmission.
        recovered: bool,
    },
    /// `count` packets starting at extended sequence `first` were not recovered in time.
    Lost {
        /// First lost extended sequence number.
        first: u64,
        /// How many.
        count: u64,
    },
}

/// Per-link receive counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkRxStats {
    /// Link id.
    pub id: LinkId,
    /// RTP packets received on this link (including duplicates and retransmissions).
    pub received_packets: u64,
    /// RTP bytes received on this link.
    pub received_bytes: u64,
}

/// Aggregate receive counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiverStats {
    /// Unique packets delivered in order.
    pub packets_delivered: u64,
    /// Of those, recovered by retransmission.
    pub packets_recovered: u64,
    /// Packets given up after `latency`.
    pub packets_lost: u64,
    /// Duplicate copies dropped (same sequence on several links, or late retransmissions).
    pub duplicates: u64,
    /// Sequence numbers asked for in NACKs (each retry counts).
    pub nacks_sent: u64,
    /// Per-link figures, in link-id order.
    pub links: Vec<LinkRxStats>,
}

/// The bonding receiver state machine: merges links, drops duplicates, reorders within
/// `latency`, and NACKs what is missing.
#[derive(Debug)]
pub struct Receiver {}

impl Receiver {
    /// A receiver with no links yet.
    pub fn new(config: ReceiverConfig, now: Instant) -> Self {
        let _ = (config, now);
        todo!()
    }

    /// Start accepting datagrams on `id`.
    pub fn add_link(&mut self, id: LinkId, now: Instant) {
        let _ = (id, now);
        todo!()
    }

    /// Stop using a link. Errors: [`Error::UnknownLink`].
    pub fn remove_link(&mut self, id: LinkId) -> Result<(), Error> {
        let _ = id;
        todo!()
    }

    /// Feed one RTP datagram received on `link`. Errors: [`Error::Malformed`] (dropped),
    /// [`Error::UnknownLink`].
    pub fn handle_rtp(&mut self, link: LinkId, datagram: &[u8], now: Instant) -> Result<(), Error> {
        let _ = (link, datagram, now);
        todo!()
    }

    /// Feed one RTCP datagram received on `link` (SR, SDES, keepalive).
    pub fn handle_rtcp(&mut self, link: LinkId, datagram: &[u8], now: Instant) -> Result<(), Error> {
        let _ = (link, datagram, now);
        todo!()
    }

    /// Next in-order output that is ready at `now`.
    pub fn poll_output(&mut self, now: Instant) -> Option<Output> {
        let _ = now;
        todo!()
    }

    /// Next RTCP datagram (RR, NACK) to send back to the sender on a link.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!()
    }

    /// When [`Receiver::handle_timeout`] / [`Receiver::poll_output`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// Run timers due at `now` (NACK retries, RR, declaring packets lost).
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Current counters.
    pub fn stats(&self) -> ReceiverStats {
        todo!()
    }
}
