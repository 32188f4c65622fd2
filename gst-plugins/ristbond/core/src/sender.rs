//! The bonding sender (TR-06-1 §5.2, §5.3; RFC 3550 §6.4.1 sender reports).
//!
//! - Originals: one RTP sequence space and SSRC (even) over all links. Payloads wait
//!   in a pacing queue and leave on the link the capacity scheduler picks
//!   ([`crate::sched`]: rate per link from RTT/queueing delay, the eligible link where
//!   the packet arrives first). A payload still queued after
//!   [`SchedulerConfig::discard_deadline`] is dropped (counted); sequence numbers are
//!   assigned when a payload leaves, so a dropped payload leaves no gap to NACK.
//! - Link states Probing / Live / Degraded / Down with hysteresis ([`crate::sched`]);
//!   transitions come out of [`Sender::poll_transition`]. When a link goes Down, what
//!   it carried since shortly before its last feedback and that no repair has
//!   already covered is resent on the other links (retransmission SSRC), paced, as
//!   they have room after the originals waiting (an original never waits for a
//!   resend; a resend that can no longer arrive within the buffer is given up, NACKs
//!   still cover it), and with `storm_enabled` for `storm_duration` every
//!   original is also copied on each usable link that has spare capacity (its pacing
//!   clock allows a packet now); copies are paced like originals.
//! - `critical_broadcast`: payloads with PAT, PMT or key-frame packets
//!   ([`crate::critical`]) go on every usable link. `redundancy_enabled`: a share of the
//!   spare capacity carries copies of originals on idle links.
//! - Retransmission buffer: every sent datagram is kept for
//!   [`SenderConfig::retransmit_buffer`]. A NACK (generic RFC 4585 or RIST range)
//!   resends it verbatim with SSRC | 1 (TR-06-1 §5.3.2) on the *best link*: among the
//!   proven links (Live, else Degraded; any usable link when none is proven) whose
//!   pacing clock allows a packet now, the one where it arrives first. Repairs are
//!   paced like originals and go before them: with no link free, a repair waits in
//!   NACK order (a burst of repairs sent at once would overflow the network queue
//!   of the links it lands on, which the loss burst that caused the NACKs usually
//!   just filled); one that can no longer arrive within the buffer is given up
//!   (`retransmits_expired`). The same
//!   sequence number is not resent again within a guard of `max(10 ms, rtt/2)` (capped
//!   at 250 ms), so one loss NACKed on two links costs one repair. A later repeat
//!   request for the same number (its repair was lost) prefers another link than the
//!   previous repair used. The first NACK of an original counts as a loss of the link
//!   that carried it (per-link loss estimate).
//! - NACK sequence numbers are extended against the newest sent packet; numbers
//!   outside the buffer count as `retransmit_misses`. At most 4096 numbers are
//!   honoured per RTCP datagram. NACKs naming another media SSRC are ignored (0 and
//!   `ssrc | 1` are accepted).
//! - RTCP: SR + SDES CNAME on every link every [`SenderConfig::rtcp_interval`], and
//!   immediately when a link is added (librist receivers wait for SDES before accepting
//!   data). RTT per link from RR LSR/DLSR (RFC 3550 §6.4.1). RIST RTT echo requests are
//!   answered (TR-06-1 §5.2.6).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::critical::CriticalClassifier;
use crate::rtcp::{self, Echo, NtpClock, Packet, ReportBlock, SdesChunk, SenderReport};
use crate::sched::{LinkEstimator, PACING_SLACK};
pub use crate::sched::{LinkState, LinkTransition, SchedulerConfig};
use crate::{rtp, seq, Channel, Error, LinkId, Transmit};

/// Shortest repeat guard for retransmitting one sequence number.
const MIN_RTX_GUARD: Duration = Duration::from_millis(10);
/// Longest repeat guard for retransmitting one sequence number (half the RTT of the
/// link the repair goes on, otherwise).
const MAX_RTX_GUARD: Duration = Duration::from_millis(250);
/// Longest repeat guard after a failover resend (until it can have arrived, otherwise).
const MAX_FAILOVER_GUARD: Duration = Duration::from_millis(500);
/// RTT samples above this are treated as garbage (bad LSR/DLSR).
const MAX_RTT: Duration = Duration::from_secs(30);
/// Most sequence numbers honoured from one RTCP datagram (librist uses the same cap).
const MAX_NACKED_PER_DATAGRAM: usize = 4096;
/// Pacing queue bound (payloads); beyond it the oldest is dropped.
const MAX_PENDING: usize = 16_384;
/// Age of the oldest queued original beyond which the links are the constraint.
const BACKLOG_AGE: Duration = Duration::from_millis(20);
/// Extra age, beyond the dead-link silence and RTT, of what is resent when a link dies.
const FAILOVER_MARGIN: Duration = Duration::from_millis(100);

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
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStats {
    /// Link id.
    pub id: LinkId,
    /// Link state (scheduler).
    pub state: LinkState,
    /// Original RTP packets sent on this link.
    pub sent_packets: u64,
    /// RTP bytes (UDP payload) sent on this link: originals, retransmissions, copies.
    pub sent_bytes: u64,
    /// Retransmitted RTP packets sent on this link.
    pub retransmitted_packets: u64,
    /// Copies of originals sent on this link (critical broadcast, storm, redundancy).
    pub duplicated_packets: u64,
    /// NACKed sequence numbers received on this link's RTCP.
    pub nacks_received: u64,
    /// Smoothed round-trip time from RR LSR/DLSR (RFC 3550 §6.4.1), ms; `None` until measured.
    pub rtt_ms: Option<f64>,
    /// Loss of originals sent on this link, from NACKs (0..=1, EWMA).
    pub loss_rate: f64,
    /// Estimated capacity (pacing rate), bit/s.
    pub capacity_bps: u64,
}

/// Aggregate counters of a [`Sender`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderStats {
    /// Original RTP packets sent (all links).
    pub packets_sent: u64,
    /// Retransmitted RTP packets sent (all links), including failover resends.
    pub packets_retransmitted: u64,
    /// Payloads dropped because they could not be sent before their deadline (or with
    /// no link at all).
    pub packets_dropped_deadline: u64,
    /// NACKed packets no longer in the retransmission buffer.
    pub retransmit_misses: u64,
    /// Per-link figures, in link-id order.
    pub links: Vec<LinkStats>,
    /// NACKed packets not resent because the same sequence number was resent within the
    /// repeat guard (`max(10 ms, rtt/2)`), e.g. one loss NACKed on two links.
    pub retransmits_suppressed: u64,
    /// Packets resent proactively because the link that carried them went Down (sent
    /// after the originals waiting, as the links left have room).
    pub packets_resent_failover: u64,
    /// Failover resends given up: no room before they could reach the receiver
    /// within the retransmission buffer (a NACK can still ask for them).
    pub failover_resends_expired: u64,
    /// NACKed packets not resent: they waited for room on a link until they could no
    /// longer reach the receiver within the retransmission buffer.
    pub retransmits_expired: u64,
    /// Copies of originals sent (critical broadcast, storm, redundancy).
    pub packets_duplicated: u64,
    /// Usable aggregate capacity for the encoder: sum of the Live links' rates and a
    /// quarter of the Degraded ones', bit/s; 0 before any link had feedback.
    pub available_bitrate_bps: u64,
    /// Payloads waiting in the pacing queue.
    pub queued_packets: u64,
}

#[derive(Debug)]
struct SentPacket {
    sent_at: Instant,
    datagram: Vec<u8>,
    /// Link that carried the original.
    link: LinkId,
    /// Whether a NACK for it was already counted as a loss of `link`.
    nacked: bool,
    /// When and on which link this sequence number was last retransmitted.
    last_retransmit: Option<(Instant, LinkId)>,
    /// When the last retransmission, if it was a failover resend, is expected at the
    /// receiver: after the target link's pacing queue (its clock) and one-way delay.
    failover_arrival: Option<Instant>,
    /// Whether a repair of it waits in [`Sender::repairs`].
    repair_queued: bool,
}

/// A packet of a link that went Down, waiting to be resent on another
/// ([`Sender::pump_failover`]).
#[derive(Debug)]
struct FailoverResend {
    /// Extended sequence number.
    seq: u64,
    /// The link that died.
    dead: LinkId,
    queued_at: Instant,
}

/// A NACKed packet waiting for room on a link ([`Sender::pump_repairs`]).
#[derive(Debug)]
struct Repair {
    /// Extended sequence number.
    seq: u64,
    /// The link of the previous repair of this packet, avoided when possible.
    avoid: Option<LinkId>,
}

/// A payload waiting for a link.
#[derive(Debug)]
struct Pending {
    payload: Vec<u8>,
    rtp_timestamp: u32,
    queued_at: Instant,
    critical: bool,
}

#[derive(Debug)]
struct LinkEntry {
    stats: LinkStats,
    next_sr: Instant,
    est: LinkEstimator,
}

/// The bonding sender state machine. One RTP sequence space and SSRC across all links.
#[derive(Debug)]
pub struct Sender {
    config: SenderConfig,
    sched: SchedulerConfig,
    clock: NtpClock,
    /// Extended sequence number of the next original packet.
    next_seq: u64,
    links: BTreeMap<LinkId, LinkEntry>,
    /// Sent packets, contiguous in sequence, oldest first.
    history: VecDeque<SentPacket>,
    /// Extended sequence number of `history[0]`.
    history_first: u64,
    pending: VecDeque<Pending>,
    /// Failover resends waiting for room on the links left (after the originals).
    failover: VecDeque<FailoverResend>,
    /// Failover resends dropped because they could no longer arrive in time.
    failover_expired: u64,
    /// NACKed packets waiting for a link with room, oldest NACK first (they go before
    /// originals).
    repairs: VecDeque<Repair>,
    /// Repairs dropped because they could no longer arrive in time.
    repairs_expired: u64,
    queue: VecDeque<Transmit>,
    transitions: VecDeque<LinkTransition>,
    classifier: CriticalClassifier,
    storm_until: Option<Instant>,
    /// Smooth weighted round-robin state of originals, per link.
    wrr: BTreeMap<LinkId, f64>,
    /// Input rate (payload bytes), bps, EWMA; and its measurement window.
    input_bps: f64,
    input_bytes: u64,
    input_since: Instant,
    /// Bytes of copies the redundancy budget allows right now.
    dup_credit: f64,
    dup_credit_at: Instant,
    packets_sent: u64,
    packets_retransmitted: u64,
    packets_dropped: u64,
    retransmit_misses: u64,
    retransmits_suppressed: u64,
    packets_resent_failover: u64,
    packets_duplicated: u64,
    payload_octets: u64,
    /// Last RTP timestamp sent and when, for SR timestamp extrapolation.
    last_rtp: Option<(u32, Instant)>,
}

impl Sender {
    /// Anchor the NTP wall clock of RTCP timestamps (SR NTP time, LSR/DLSR, RIST
    /// echo): `now` is `since_unix` after the Unix epoch. By default the Sender reads
    /// the system clock once when it is made; a deterministic simulation sets it
    /// (RFC 3550 §4: only differences of these timestamps matter to the peer).
    pub fn anchor_wall_clock(&mut self, now: Instant, since_unix: Duration) {
        self.clock = NtpClock::anchored(now, since_unix);
    }

    /// A sender with no links yet and the default [`SchedulerConfig`]. An odd
    /// `config.ssrc` has its LSB cleared (the LSB marks retransmissions). The first
    /// sequence number is 0.
    pub fn new(config: SenderConfig, now: Instant) -> Self {
        Self::with_initial_seq(config, 0, now)
    }

    /// Like [`Sender::new`] with the first RTP sequence number given (RFC 3550 §5.1
    /// recommends a random one; tests start near 65535 to cross the wrap).
    pub fn with_initial_seq(mut config: SenderConfig, initial_seq: u16, now: Instant) -> Self {
        config.ssrc &= !1;
        let first = seq::FIRST_CYCLE + u64::from(initial_seq);
        Self {
            config,
            sched: SchedulerConfig::default(),
            clock: NtpClock::new(now),
            next_seq: first,
            links: BTreeMap::new(),
            history: VecDeque::new(),
            history_first: first,
            pending: VecDeque::new(),
            failover: VecDeque::new(),
            failover_expired: 0,
            repairs: VecDeque::new(),
            repairs_expired: 0,
            queue: VecDeque::new(),
            transitions: VecDeque::new(),
            classifier: CriticalClassifier::new(),
            storm_until: None,
            wrr: BTreeMap::new(),
            input_bps: 0.0,
            input_bytes: 0,
            input_since: now,
            dup_credit: 0.0,
            dup_credit_at: now,
            packets_sent: 0,
            packets_retransmitted: 0,
            packets_dropped: 0,
            retransmit_misses: 0,
            retransmits_suppressed: 0,
            packets_resent_failover: 0,
            packets_duplicated: 0,
            payload_octets: 0,
            last_rtp: None,
        }
    }

    /// SSRC of original packets (even).
    pub fn ssrc(&self) -> u32 {
        self.config.ssrc
    }

    /// The scheduler settings in force.
    pub fn scheduler(&self) -> &SchedulerConfig {
        &self.sched
    }

    /// Replace the scheduler settings (hot reload, PROTOCOL.md §5 `config.update`);
    /// estimates and link states are kept.
    pub fn set_scheduler(&mut self, sched: SchedulerConfig) {
        self.sched = sched;
    }

    /// Add a link (state Probing, rate `initial_rate_bps`). Adding an existing id does
    /// nothing. A new link gets an SR + SDES right away (a `Transmit` on its RTCP
    /// channel).
    pub fn add_link(&mut self, id: LinkId, now: Instant) {
        if self.links.contains_key(&id) {
            return;
        }
        self.links.insert(
            id,
            LinkEntry {
                stats: LinkStats {
                    id,
                    state: LinkState::Probing,
                    sent_packets: 0,
                    sent_bytes: 0,
                    retransmitted_packets: 0,
                    duplicated_packets: 0,
                    nacks_received: 0,
                    rtt_ms: None,
                    loss_rate: 0.0,
                    capacity_bps: 0,
                },
                next_sr: now + self.config.rtcp_interval,
                est: LinkEstimator::new(id, &self.sched, now),
            },
        );
        let sr = self.sr_compound(now, &[]);
        self.queue.push_back(Transmit {
            link: id,
            channel: Channel::Rtcp,
            data: sr,
        });
    }

    /// Remove a link; queued work for it is dropped. Errors: [`Error::UnknownLink`].
    pub fn remove_link(&mut self, id: LinkId) -> Result<(), Error> {
        self.links.remove(&id).ok_or(Error::UnknownLink(id))?;
        self.wrr.remove(&id);
        self.queue.retain(|t| t.link != id);
        Ok(())
    }

    /// Queue one RTP payload (1..=7 whole 188-byte TS packets) with its 90 kHz RTP
    /// timestamp; it leaves (gets its sequence number, is kept for retransmission) as
    /// soon as a link may take it. Errors: [`Error::BadPayloadSize`]. With no link at
    /// all the payload is counted as dropped, not an error.
    pub fn send_payload(
        &mut self,
        payload: &[u8],
        rtp_timestamp: u32,
        now: Instant,
    ) -> Result<(), Error> {
        rtp::check_payload_size(payload.len())?;
        if self.links.is_empty() {
            self.packets_dropped += 1;
            return Ok(());
        }
        self.expire(now);
        let critical = self.sched.critical_broadcast && self.classifier.is_critical(payload);
        self.input_bytes += payload.len() as u64;
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            self.packets_dropped += 1;
        }
        self.pending.push_back(Pending {
            payload: payload.to_vec(),
            rtp_timestamp,
            queued_at: now,
            critical,
        });
        self.pump(now);
        Ok(())
    }

    /// Feed one RTCP datagram received on `link` (RR, NACKs, SDES...). Retransmissions
    /// it asks for become `Transmit`s. Errors: [`Error::Malformed`], [`Error::UnknownLink`].
    pub fn handle_rtcp(
        &mut self,
        link: LinkId,
        datagram: &[u8],
        now: Instant,
    ) -> Result<(), Error> {
        if !self.links.contains_key(&link) {
            return Err(Error::UnknownLink(link));
        }
        let packets = rtcp::parse_compound(datagram)?;
        self.expire(now);
        if let Some(l) = self.links.get_mut(&link) {
            l.est.on_feedback(now);
        }
        self.update_states(now);
        let mut nacked = 0usize;
        for p in packets {
            match p {
                Packet::Rr(rr) => self.handle_report_blocks(link, &rr.reports, now),
                Packet::Sr(sr) => self.handle_report_blocks(link, &sr.reports, now),
                Packet::GenericNack(n) if self.nack_is_for_us(n.media_ssrc) => {
                    for s in n.lost {
                        if nacked >= MAX_NACKED_PER_DATAGRAM {
                            break;
                        }
                        nacked += 1;
                        self.retransmit(link, s, now);
                    }
                }
                Packet::RangeNack(n) if self.nack_is_for_us(n.ssrc) => {
                    for s in n.seqs() {
                        if nacked >= MAX_NACKED_PER_DATAGRAM {
                            break;
                        }
                        nacked += 1;
                        self.retransmit(link, s, now);
                    }
                }
                Packet::EchoRequest(e) => {
                    let data = self.sr_compound(
                        now,
                        &[Packet::EchoResponse(Echo {
                            ssrc: e.ssrc,
                            timestamp: e.timestamp,
                            delay_us: 0,
                        })],
                    );
                    self.queue.push_back(Transmit {
                        link,
                        channel: Channel::Rtcp,
                        data,
                    });
                }
                _ => {}
            }
        }
        self.pump(now);
        Ok(())
    }

    /// Next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    /// Next link state change, if any (oldest first).
    pub fn poll_transition(&mut self) -> Option<LinkTransition> {
        self.transitions.pop_front()
    }

    /// True when a link state change waits for [`Sender::poll_transition`] (lets an
    /// I/O layer wake the thread that reports them only when there is one).
    pub fn has_transition(&self) -> bool {
        !self.transitions.is_empty()
    }

    /// When [`Sender::handle_timeout`] must be called next (next SR, pacing, deadline
    /// of the oldest queued payload, dead-link check).
    ///
    /// The end of a packet's retransmission window is not a timer: it would wake the
    /// caller once per packet sent. The history is trimmed instead whenever the sender
    /// is called (every payload, RTCP datagram and timeout; SRs keep the timeouts
    /// coming), and always before a NACK is looked up, so no packet older than
    /// [`SenderConfig::retransmit_buffer`] is ever resent.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        for l in self.links.values() {
            consider(l.next_sr);
            if l.est.state() != LinkState::Down {
                if let Some(h) = l.est.last_heard() {
                    consider(h + l.est.dead_after() + Duration::from_millis(1));
                }
            }
        }
        if let (true, Some(r)) = (self.pending.is_empty(), self.failover.front()) {
            if let Some(free) = self
                .failover_candidates(Some(r.dead))
                .iter()
                .map(|(_, l)| l.est.next_free)
                .min()
            {
                consider(free.checked_sub(PACING_SLACK).unwrap_or(free));
            }
        }
        if !self.repairs.is_empty() {
            if let Some(free) = self
                .repair_candidates()
                .iter()
                .map(|(_, l)| l.est.next_free)
                .min()
            {
                consider(free.checked_sub(PACING_SLACK).unwrap_or(free));
            }
        }
        if !self.pending.is_empty() {
            let blind = !self.links.values().any(|l| l.est.usable());
            if let Some(free) = self
                .links
                .values()
                .filter(|l| blind || l.est.usable())
                .map(|l| l.est.next_free)
                .min()
            {
                consider(free.checked_sub(PACING_SLACK).unwrap_or(free));
            }
        }
        if let Some(front) = self.pending.front() {
            consider(front.queued_at + self.sched.discard_deadline);
        }
        t
    }

    /// Run timers due at `now`: sender reports, buffer expiry, link states, pacing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        let due: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.next_sr <= now)
            .map(|(&id, _)| id)
            .collect();
        if !due.is_empty() {
            let sr = self.sr_compound(now, &[]);
            for id in due {
                if let Some(l) = self.links.get_mut(&id) {
                    l.next_sr += self.config.rtcp_interval;
                    if l.next_sr <= now {
                        l.next_sr = now + self.config.rtcp_interval;
                    }
                }
                self.queue.push_back(Transmit {
                    link: id,
                    channel: Channel::Rtcp,
                    data: sr.clone(),
                });
            }
        }
        self.pump(now);
    }

    /// Current counters.
    pub fn stats(&self) -> SenderStats {
        SenderStats {
            packets_sent: self.packets_sent,
            packets_retransmitted: self.packets_retransmitted,
            packets_dropped_deadline: self.packets_dropped,
            retransmit_misses: self.retransmit_misses,
            retransmits_suppressed: self.retransmits_suppressed,
            packets_resent_failover: self.packets_resent_failover,
            failover_resends_expired: self.failover_expired,
            retransmits_expired: self.repairs_expired,
            packets_duplicated: self.packets_duplicated,
            available_bitrate_bps: self.available_bitrate_bps(),
            queued_packets: self.pending.len() as u64,
            links: self
                .links
                .values()
                .map(|l| LinkStats {
                    state: l.est.state(),
                    rtt_ms: l.est.srtt().map(|d| d.as_secs_f64() * 1000.0),
                    loss_rate: l.est.loss(),
                    capacity_bps: l.est.rate_bps() as u64,
                    ..l.stats.clone()
                })
                .collect(),
        }
    }

    /// Usable aggregate capacity, bit/s (see [`SenderStats::available_bitrate_bps`]).
    pub fn available_bitrate_bps(&self) -> u64 {
        self.links
            .values()
            .filter(|l| matches!(l.est.state(), LinkState::Live | LinkState::Degraded))
            .map(|l| l.est.usable_rate_bps())
            .sum::<f64>() as u64
    }

    /// Link states, estimates and pacing: send what may leave now.
    fn pump(&mut self, now: Instant) {
        self.update_states(now);
        self.update_input_rate(now);
        // Deadline: drop what waited too long.
        while self.pending.front().is_some_and(|p| {
            now.saturating_duration_since(p.queued_at) >= self.sched.discard_deadline
        }) {
            self.pending.pop_front();
            self.packets_dropped += 1;
        }
        self.pump_repairs(now);
        while !self.pending.is_empty() {
            let Some(link) = self.pick_original(now) else {
                break;
            };
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            self.send_original(p, link, now);
        }
        if self.pending.is_empty() {
            self.pump_failover(now);
        }
    }

    fn update_states(&mut self, now: Instant) {
        let mut downs = Vec::new();
        for l in self.links.values_mut() {
            if let Some(t) = l.est.tick(&self.sched, now) {
                if t.to == LinkState::Down {
                    downs.push(t.link);
                }
                self.transitions.push_back(t);
            }
        }
        for id in downs {
            self.on_link_down(id, now);
        }
    }

    fn update_input_rate(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.input_since);
        if elapsed >= Duration::from_millis(100) {
            let sample = self.input_bytes as f64 * 8.0 / elapsed.as_secs_f64();
            self.input_bps = 0.7 * self.input_bps + 0.3 * sample;
            self.input_bytes = 0;
            self.input_since = now;
        }
        if self.sched.redundancy_enabled {
            let dt = now
                .saturating_duration_since(self.dup_credit_at)
                .as_secs_f64();
            let capacity: f64 = self.links.values().map(|l| l.est.usable_rate_bps()).sum();
            let spare = (capacity - self.input_bps).max(0.0);
            let ratio = self.sched.redundancy_spare_ratio.clamp(0.0, 1.0);
            // At most 50 ms worth of copies in the budget.
            self.dup_credit =
                (self.dup_credit + spare * ratio * dt / 8.0).min(spare * ratio * 0.05 / 8.0);
        } else {
            self.dup_credit = 0.0;
        }
        self.dup_credit_at = now;
    }

    /// The link for the next original: smooth weighted round-robin (weights: usable
    /// rates) among the usable links whose pacing clock allows a packet now. Links
    /// never heard from only take what the proven ones cannot. With no usable link
    /// (everything Down or recovering), all links are tried ("blind").
    fn pick_original(&mut self, now: Instant) -> Option<LinkId> {
        let horizon = now + PACING_SLACK;
        let blind = !self.links.values().any(|l| l.est.usable());
        let proven = self.links.values().any(|l| {
            matches!(l.est.state(), LinkState::Live | LinkState::Degraded)
                && l.est.next_free <= horizon
        });
        let eligible: Vec<(LinkId, f64)> = self
            .links
            .iter()
            .filter(|(_, l)| l.est.next_free <= horizon)
            .filter(|(_, l)| {
                if blind {
                    true
                } else if proven {
                    matches!(l.est.state(), LinkState::Live | LinkState::Degraded)
                } else {
                    l.est.usable()
                }
            })
            .map(|(&id, l)| (id, l.est.usable_rate_bps().max(l.est.rate_bps() * 0.01)))
            .collect();
        let total: f64 = eligible.iter().map(|&(_, w)| w).sum();
        let mut best: Option<(LinkId, f64)> = None;
        for &(id, w) in &eligible {
            let c = self.wrr.entry(id).or_insert(0.0);
            *c += w;
            if best.is_none_or(|(_, b)| *c > b) {
                best = Some((id, *c));
            }
        }
        let (id, _) = best?;
        if let Some(c) = self.wrr.get_mut(&id) {
            *c -= total;
        }
        Some(id)
    }

    fn send_original(&mut self, p: Pending, link: LinkId, now: Instant) {
        let Ok(datagram) = rtp::build(
            self.next_seq as u16,
            p.rtp_timestamp,
            self.config.ssrc,
            &p.payload,
        ) else {
            self.packets_dropped += 1;
            return;
        };
        if let Some(l) = self.links.get_mut(&link) {
            l.stats.sent_packets += 1;
            l.stats.sent_bytes += datagram.len() as u64;
            l.est.on_sent(datagram.len(), true, now);
        }
        self.packets_sent += 1;
        self.payload_octets += p.payload.len() as u64;
        self.last_rtp = Some((p.rtp_timestamp, now));

        // Copies on other links: critical broadcast on every usable link, storm on
        // the usable links with spare capacity, redundancy on one idle link while
        // the budget lasts.
        let storm = self.storm_until.is_some_and(|t| now < t);
        let copies: Vec<LinkId> = if p.critical {
            self.links
                .iter()
                .filter(|(&id, l)| id != link && l.est.usable())
                .map(|(&id, _)| id)
                .collect()
        } else if storm {
            // Storm copies use the spare capacity of the other links only: copying
            // every original onto links that already carry their share (the dead
            // link's share included) overflows their queues and loses more than
            // it protects (B2 in docs/benchmarks.md).
            self.links
                .iter()
                .filter(|(&id, l)| {
                    id != link && l.est.usable() && l.est.next_free <= now + PACING_SLACK
                })
                .map(|(&id, _)| id)
                .collect()
        } else if self.sched.redundancy_enabled && self.dup_credit >= datagram.len() as f64 {
            self.links
                .iter()
                .filter(|(&id, l)| id != link && l.est.usable() && l.est.next_free <= now)
                .min_by_key(|(_, l)| l.est.owd())
                .map(|(&id, _)| vec![id])
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        for id in copies {
            if let Some(l) = self.links.get_mut(&id) {
                l.stats.duplicated_packets += 1;
                l.stats.sent_bytes += datagram.len() as u64;
                l.est.on_sent(datagram.len(), false, now);
            }
            if !p.critical && !storm {
                self.dup_credit -= datagram.len() as f64;
            }
            self.packets_duplicated += 1;
            self.queue.push_back(Transmit {
                link: id,
                channel: Channel::Rtp,
                data: datagram.clone(),
            });
        }

        self.queue.push_back(Transmit {
            link,
            channel: Channel::Rtp,
            data: datagram.clone(),
        });
        if self.history.is_empty() {
            self.history_first = self.next_seq;
        }
        self.history.push_back(SentPacket {
            sent_at: now,
            datagram,
            link,
            nacked: false,
            last_retransmit: None,
            failover_arrival: None,
            repair_queued: false,
        });
        self.next_seq += 1;
    }

    /// A link went Down: resend what it carried recently on the others; start a storm.
    fn on_link_down(&mut self, id: LinkId, now: Instant) {
        let Some(l) = self.links.get(&id) else {
            return;
        };
        let window = l.est.dead_after() + l.est.srtt().unwrap_or_default() + FAILOVER_MARGIN;
        let since = now.checked_sub(window).unwrap_or(now);
        if self.sched.storm_enabled {
            let until = now + self.sched.storm_duration;
            self.storm_until = Some(until);
            for l in self.links.values_mut() {
                l.est.hold_rate(until + Duration::from_millis(500));
            }
        }
        let first = self
            .history
            .iter()
            .rposition(|p| p.sent_at < since)
            .map_or(0, |i| i + 1);
        for index in first..self.history.len() {
            let entry = &self.history[index];
            // Not carried by the dead link, or already repaired on another link.
            if entry.link != id || entry.last_retransmit.is_some_and(|(_, l)| l != id) {
                continue;
            }
            self.failover.push_back(FailoverResend {
                seq: self.history_first + index as u64,
                dead: id,
                queued_at: now,
            });
        }
    }

    /// Links that may carry a resend (failover of `except`'s packets, or a repair):
    /// the usable links other than `except`; only the proven ones (Live, Degraded)
    /// when there are any (a link never heard from may be dead: the resend would be
    /// lost again).
    fn failover_candidates(&self, except: Option<LinkId>) -> Vec<(LinkId, &LinkEntry)> {
        let usable: Vec<(LinkId, &LinkEntry)> = self
            .links
            .iter()
            .filter(|&(&id, l)| Some(id) != except && l.est.usable())
            .map(|(&id, l)| (id, l))
            .collect();
        let proven = |l: &LinkEntry| matches!(l.est.state(), LinkState::Live | LinkState::Degraded);
        if usable.iter().any(|(_, l)| proven(l)) {
            usable.into_iter().filter(|(_, l)| proven(l)).collect()
        } else {
            usable
        }
    }

    /// The link for a failover resend of `dead`'s packet: a candidate whose pacing
    /// clock allows a packet now, the earliest arrival first.
    fn failover_target(&self, dead: LinkId, now: Instant) -> Option<LinkId> {
        let horizon = now + PACING_SLACK;
        self.failover_candidates(Some(dead))
            .into_iter()
            .filter(|(_, l)| l.est.next_free <= horizon)
            .min_by_key(|&(id, l)| (l.est.next_free.max(now) + l.est.owd(), id))
            .map(|(id, _)| id)
    }

    /// Send queued failover resends while a link other than the dead one has room
    /// (its pacing clock allows a packet now). Called after the originals: a resend
    /// never makes an original wait. A resend is skipped when the packet was repaired
    /// since it was queued (a NACK came first), and dropped when it can no longer
    /// reach the receiver within the retransmission buffer (its NACKs still can).
    fn pump_failover(&mut self, now: Instant) {
        while let Some(r) = self.failover.front() {
            let (seq, dead, queued_at) = (r.seq, r.dead, r.queued_at);
            let Some(index) = seq.checked_sub(self.history_first).map(|i| i as usize) else {
                self.failover.pop_front();
                self.failover_expired += 1;
                continue;
            };
            let Some(entry) = self.history.get(index) else {
                self.failover.pop_front();
                continue;
            };
            if entry.last_retransmit.is_some_and(|(t, _)| t >= queued_at) {
                self.failover.pop_front();
                continue;
            }
            let Some(target) = self.failover_target(dead, now) else {
                return;
            };
            let owd = self
                .links
                .get(&target)
                .map_or(Duration::ZERO, |l| l.est.owd());
            if entry.sent_at + self.config.retransmit_buffer <= now + owd {
                self.failover.pop_front();
                self.failover_expired += 1;
                continue;
            }
            self.failover.pop_front();
            let entry = &mut self.history[index];
            entry.last_retransmit = Some((now, target));
            let data = rtp::to_retransmission(&entry.datagram);
            if let Some(l) = self.links.get_mut(&target) {
                l.stats.retransmitted_packets += 1;
                l.stats.sent_bytes += data.len() as u64;
                l.est.on_sent(data.len(), false, now);
                entry.failover_arrival = Some(l.est.next_free.max(now) + l.est.owd());
            }
            self.packets_retransmitted += 1;
            self.packets_resent_failover += 1;
            self.queue.push_back(Transmit {
                link: target,
                channel: Channel::Rtp,
                data,
            });
        }
    }

    /// Drop history older than the retransmission buffer.
    fn expire(&mut self, now: Instant) {
        while let Some(front) = self.history.front() {
            if front.sent_at + self.config.retransmit_buffer > now {
                break;
            }
            self.history.pop_front();
            self.history_first += 1;
        }
        // Repairs and failover resends whose packet left the buffer (links busy all
        // the while).
        while self
            .repairs
            .front()
            .is_some_and(|r| r.seq < self.history_first)
        {
            self.repairs.pop_front();
            self.repairs_expired += 1;
        }
        while self
            .failover
            .front()
            .is_some_and(|r| r.seq < self.history_first)
        {
            self.failover.pop_front();
            self.failover_expired += 1;
        }
    }

    fn nack_is_for_us(&self, media_ssrc: u32) -> bool {
        media_ssrc == 0 || rtp::flow_ssrc(media_ssrc) == self.config.ssrc
    }

    fn handle_report_blocks(&mut self, link: LinkId, blocks: &[ReportBlock], now: Instant) {
        let ours = self.config.ssrc;
        let a = rtcp::ntp_short(self.clock.ntp(now));
        let backlog = self
            .pending
            .front()
            .is_some_and(|p| now.saturating_duration_since(p.queued_at) > BACKLOG_AGE);
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        for b in blocks.iter().filter(|b| rtp::flow_ssrc(b.ssrc) == ours) {
            if b.lsr == 0 {
                continue;
            }
            // RFC 3550 §6.4.1: RTT = A - LSR - DLSR, in 1/65536 s.
            let rtt = rtcp::short_to_duration(a.wrapping_sub(b.lsr).wrapping_sub(b.dlsr));
            if rtt > MAX_RTT {
                continue;
            }
            l.est.on_rtt(rtt, backlog, &self.sched, now);
        }
    }

    fn retransmit(&mut self, nack_link: LinkId, seq16: u16, now: Instant) {
        if let Some(l) = self.links.get_mut(&nack_link) {
            l.stats.nacks_received += 1;
        }
        let newest = self.next_seq.wrapping_sub(1);
        let ext = seq::extend_near(newest, seq16);
        if self.history.is_empty() || ext < self.history_first || ext > newest {
            self.retransmit_misses += 1;
            return;
        }
        let index = (ext - self.history_first) as usize;
        let Some((previous, failover_arrival, original_link, nacked)) = self
            .history
            .get(index)
            .map(|e| (e.last_retransmit, e.failover_arrival, e.link, e.nacked))
        else {
            self.retransmit_misses += 1;
            return;
        };
        if !nacked {
            if let Some(l) = self.links.get_mut(&original_link) {
                l.est.on_lost();
            }
            if let Some(e) = self.history.get_mut(index) {
                e.nacked = true;
            }
        }
        // A repeated request means the previous repair (or its NACK) was lost: the
        // repair prefers a different link for diversity.
        let avoid = previous.map(|(_, l)| l);
        let rtx_guard = avoid
            .and_then(|l| self.links.get(&l))
            .and_then(|l| l.est.srtt())
            .map_or(MIN_RTX_GUARD, |rtt| {
                (rtt / 2).clamp(MIN_RTX_GUARD, MAX_RTX_GUARD)
            });
        // After a failover resend, a repeated request written by the receiver before
        // the resend could have reached it (its expected arrival, plus the NACK's way
        // back) says nothing about it: the resends of a dead link's packets wait
        // behind the pacing queues of the links left, often longer than half an RTT,
        // and answering would send each packet twice onto links that are already
        // the constraint (B2: deadline drops after the cut).
        if let Some((t, _)) = previous {
            let guard_end = match failover_arrival {
                Some(arrival) => {
                    let back = self
                        .links
                        .get(&nack_link)
                        .map_or(Duration::ZERO, |l| l.est.owd());
                    (arrival + back).clamp(t + MIN_RTX_GUARD, t + MAX_FAILOVER_GUARD)
                }
                None => t + rtx_guard,
            };
            if now < guard_end {
                self.retransmits_suppressed += 1;
                return;
            }
        }
        if self.history.get(index).is_some_and(|e| e.repair_queued) {
            // Its repair is still waiting for room: one copy is enough.
            self.retransmits_suppressed += 1;
            return;
        }
        // Sent at once when a link has room and no older repair waits; otherwise
        // queued. A burst of repairs sent at once would land in the network queue of
        // a link that is already full (the loss burst that caused the NACKs) and
        // overflow it again.
        if self.repairs.is_empty() {
            if let Some(target) = self.repair_target(now, avoid) {
                self.send_repair(index, target, now);
                return;
            }
        }
        if let Some(e) = self.history.get_mut(index) {
            e.repair_queued = true;
        }
        self.repairs.push_back(Repair { seq: ext, avoid });
    }

    /// Send queued repairs, oldest first, while a link has room (its pacing clock
    /// allows a packet now); the link is chosen as for an immediate repair. Called
    /// before the originals: a repair is due sooner than an original is. A repair that
    /// can no longer reach the receiver within the retransmission buffer is dropped
    /// (`retransmits_expired`).
    fn pump_repairs(&mut self, now: Instant) {
        while let Some(r) = self.repairs.front() {
            let (seq, avoid) = (r.seq, r.avoid);
            let Some(index) = seq
                .checked_sub(self.history_first)
                .map(|i| i as usize)
                .filter(|&i| i < self.history.len())
            else {
                self.repairs.pop_front();
                self.repairs_expired += 1;
                continue;
            };
            let Some(target) = self.repair_target(now, avoid) else {
                return;
            };
            self.repairs.pop_front();
            let owd = self
                .links
                .get(&target)
                .map_or(Duration::ZERO, |l| l.est.owd());
            let entry = &mut self.history[index];
            entry.repair_queued = false;
            if entry.sent_at + self.config.retransmit_buffer <= now + owd {
                self.repairs_expired += 1;
                continue;
            }
            self.send_repair(index, target, now);
        }
    }

    /// The link for a repair now: a link whose pacing clock allows a packet, among the
    /// proven ones (Live, Degraded) when there are any (a link never heard from may
    /// be dead: the repair would be lost again), else among the usable ones, else
    /// (blind) any; the earliest arrival first, other than `avoid` if possible.
    fn repair_target(&self, now: Instant, avoid: Option<LinkId>) -> Option<LinkId> {
        let horizon = now + PACING_SLACK;
        self.repair_candidates()
            .into_iter()
            .filter(|(_, l)| l.est.next_free <= horizon)
            .min_by_key(|&(id, l)| {
                // A Degraded link (heavy loss, or a long RTT) only when no Live one
                // has room: a repair sent into the loss that caused it is lost again.
                let degraded = l.est.state() == LinkState::Degraded;
                let arrival = l.est.next_free.max(now) + l.est.owd();
                (degraded, Some(id) == avoid, arrival, id)
            })
            .map(|(id, _)| id)
    }

    /// Links that may carry a repair: [`Sender::failover_candidates`] of all links,
    /// or every link when none is usable ("blind", as for originals).
    fn repair_candidates(&self) -> Vec<(LinkId, &LinkEntry)> {
        if self.links.values().any(|l| l.est.usable()) {
            self.failover_candidates(None)
        } else {
            self.links.iter().map(|(&id, l)| (id, l)).collect()
        }
    }

    /// Resend history entry `index` on `target` now, as a RIST retransmission.
    fn send_repair(&mut self, index: usize, target: LinkId, now: Instant) {
        let Some(entry) = self.history.get_mut(index) else {
            return;
        };
        entry.last_retransmit = Some((now, target));
        entry.failover_arrival = None;
        entry.repair_queued = false;
        let data = rtp::to_retransmission(&entry.datagram);
        if let Some(l) = self.links.get_mut(&target) {
            l.stats.retransmitted_packets += 1;
            l.stats.sent_bytes += data.len() as u64;
            l.est.on_sent(data.len(), false, now);
        }
        self.packets_retransmitted += 1;
        self.queue.push_back(Transmit {
            link: target,
            channel: Channel::Rtp,
            data,
        });
    }

    /// SR + SDES CNAME (+ `extra`) as one compound datagram.
    fn sr_compound(&self, now: Instant, extra: &[Packet]) -> Vec<u8> {
        let rtp_timestamp = match self.last_rtp {
            Some((ts, at)) => ts.wrapping_add(rtp_ticks(now.saturating_duration_since(at))),
            None => rtp_ticks(self.clock.elapsed(now)),
        };
        let mut packets = vec![
            Packet::Sr(SenderReport {
                ssrc: self.config.ssrc,
                ntp_timestamp: self.clock.ntp(now),
                rtp_timestamp,
                packet_count: self.packets_sent as u32,
                octet_count: self.payload_octets as u32,
                reports: Vec::new(),
            }),
            Packet::Sdes(vec![SdesChunk {
                ssrc: self.config.ssrc,
                cname: self.config.cname.clone(),
            }]),
        ];
        packets.extend_from_slice(extra);
        rtcp::write_compound(&packets)
    }
}

/// A duration in 90 kHz RTP ticks, wrapping.
fn rtp_ticks(d: Duration) -> u32 {
    (d.as_nanos() * u128::from(rtp::CLOCK_RATE) / 1_000_000_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::{GenericNack, NackRange, RangeNack, ReceiverReport};

    const SSRC: u32 = 0x5eed_0000;

    fn config() -> SenderConfig {
        SenderConfig {
            ssrc: SSRC,
            cname: "sender".into(),
            retransmit_buffer: Duration::from_millis(1000),
            rtcp_interval: Duration::from_millis(100),
        }
    }

    fn payload() -> Vec<u8> {
        let mut p = vec![0u8; 188 * 7];
        p[0] = 0x47;
        p
    }

    fn drain(s: &mut Sender) -> Vec<Transmit> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    /// Queue `n` payloads at `t0` and run the pacing timers until all have left;
    /// returns everything sent and the time reached.
    fn send_all(s: &mut Sender, n: u32, t0: Instant) -> (Vec<Transmit>, Instant) {
        for i in 0..n {
            s.send_payload(&payload(), i, t0).unwrap();
        }
        let mut out = drain(s);
        let mut t = t0;
        while s.stats().queued_packets > 0 {
            t = s.poll_timeout().unwrap().max(t);
            s.handle_timeout(t);
            out.extend(drain(s));
        }
        (out, t)
    }

    fn rtp_of(t: &[Transmit]) -> Vec<(LinkId, u16, u32)> {
        t.iter()
            .filter(|t| t.channel == Channel::Rtp)
            .map(|t| {
                let p = rtp::parse(&t.data).unwrap();
                (t.link, p.seq, p.ssrc)
            })
            .collect()
    }

    fn nack(seqs: &[u16]) -> Vec<u8> {
        rtcp::write_compound(&[
            Packet::Rr(ReceiverReport {
                ssrc: 77,
                reports: vec![],
            }),
            Packet::GenericNack(GenericNack {
                sender_ssrc: 77,
                media_ssrc: SSRC,
                lost: seqs.to_vec(),
            }),
        ])
    }

    #[test]
    fn new_link_gets_sr_and_sdes_immediately() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(), t0);
        s.add_link(3, t0);
        let out = drain(&mut s);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].channel, Channel::Rtcp);
        let pkts = rtcp::parse_compound(&out[0].data).unwrap();
        assert!(matches!(&pkts[0], Packet::Sr(sr) if sr.ssrc == SSRC));
        assert!(matches!(&pkts[1], Packet::Sdes(c) if c[0].cname == "sender"));
    }

    #[test]
    fn paced_over_links_in_one_sequence_space() {
        let t0 = Instant::now();
        let mut s = Sender::with_initial_seq(config(), 65534, t0);
        s.set_scheduler(SchedulerConfig {
            initial_rate_bps: 2_000_000.0,
            ..SchedulerConfig::default()
        });
        s.add_link(0, t0);
        s.add_link(1, t0);
        drain(&mut s);
        // Two links at the initial 2 Mbit/s: 5 ms of slack each lets ~1 packet
        // (1328 bytes = 5.3 ms) go at once per link; the rest waits for pacing.
        for i in 0..4 {
            s.send_payload(&payload(), i * 3000, t0).unwrap();
        }
        let sent = rtp_of(&drain(&mut s));
        assert_eq!(sent, vec![(0, 65534, SSRC), (1, 65535, SSRC)]);
        assert_eq!(s.stats().queued_packets, 2);
        let next = s.poll_timeout().unwrap();
        assert!(
            next > t0 && next <= t0 + Duration::from_millis(6),
            "{next:?}"
        );
        s.handle_timeout(next);
        let mut sent = rtp_of(&drain(&mut s));
        assert_eq!(
            sent.iter().map(|&(_, q, _)| q).collect::<Vec<_>>(),
            vec![0, 1]
        );
        sent.sort();
        assert_eq!(
            sent.iter()
                .map(|&(l, _, ssrc)| (l, ssrc))
                .collect::<Vec<_>>(),
            vec![(0, SSRC), (1, SSRC)],
            "one packet per link"
        );
        let st = s.stats();
        assert_eq!(st.packets_sent, 4);
        assert_eq!(st.links[0].sent_packets, 2);
        assert_eq!(st.links[1].sent_bytes, 2 * (12 + 7 * 188));
    }

    #[test]
    fn payloads_past_the_deadline_are_dropped_without_a_sequence_gap() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(), t0);
        s.set_scheduler(SchedulerConfig {
            initial_rate_bps: 2_000_000.0,
            ..SchedulerConfig::default()
        });
        s.add_link(0, t0);
        drain(&mut s);
        // 2 Mbit/s link, 100 payloads at once: ~530 ms of sending; the default
        // deadline is 200 ms.
        for _ in 0..100 {
            s.send_payload(&payload(), 0, t0).unwrap();
        }
        let mut t = t0;
        let mut seqs = Vec::new();
        while let Some(next) = s.poll_timeout() {
            if next > t0 + Duration::from_millis(400) {
                break;
            }
            t = next.max(t);
            s.handle_timeout(t);
            seqs.extend(rtp_of(&drain(&mut s)).into_iter().map(|(_, q, _)| q));
        }
        let st = s.stats();
        assert!(st.packets_dropped_deadline > 40, "{st:?}");
        assert_eq!(st.packets_sent + st.packets_dropped_deadline, 100);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "contiguous");
    }

    #[test]
    fn no_link_counts_drop_and_keeps_sequence() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(), t0);
        s.send_payload(&payload(), 0, t0).unwrap();
        assert_eq!(s.stats().packets_dropped_deadline, 1);
        assert_eq!(
            s.send_payload(&[0u8; 10], 0, t0),
            Err(Error::BadPayloadSize(10))
        );
        s.add_link(0, t0);
        s.send_payload(&payload(), 0, t0).unwrap();
        assert_eq!(rtp_of(&drain(&mut s)), vec![(0, 0, SSRC)]);
    }

    #[test]
    fn generic_nack_retransmits_with_ssrc_lsb_and_guard() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(), t0);
        s.add_link(0, t0);
        s.add_link(1, t0);
        let (_, t) = send_all(&mut s, 10, t0);
        let t1 = t + Duration::from_millis(50);
        s.handle_rtcp(1, &nack(&[3, 4]), t1).unwrap();
        let rtx = rtp_of(&drain(&mut s));
        // Link 1 is the only live link (heard from): both go there.
        assert_eq!(rtx, vec![(1, 3, SSRC | 1), (1, 4, SSRC | 1)]);
        // The same NACK on the other link 2 ms later is suppressed by the guard.
        s.handle_rtcp(0, &nack(&[3, 4]), t1 + Duration::from_millis(2))
            .unwrap();
        assert!(rtp_of(&drain(&mut s)).is_empty());
        // After the guard it is honoured again.
        s.handle_rtcp(0, &nack(&[3]), t1 + Duration::from_millis(30))
            .unwrap();
        assert_eq!(rtp_of(&drain(&mut s)).len(), 1);
        let st = s.stats();
        assert_eq!(st.packets_retransmitted, 3);
        assert_eq!(st.retransmits_suppressed, 2);
        assert_eq!(st.links[1].nacks_received, 2);
        assert_eq!(st.links[0].nacks_received, 3);
    }

    /// A burst of NACKs is not sent at once: repairs leave as the link's pacing clock
    /// allows (about one 1328-byte packet per 1.06 ms at the 10 Mbit/s start), before
    /// any original waiting, in NACK order; the ones that can no longer arrive within
    /// the retransmission buffer are dropped and counted.
    #[test]
    fn repairs_are_paced_before_originals_and_expire_with_the_buffer() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(), t0);
        s.add_link(0, t0);
        let (_, t) = send_all(&mut s, 60, t0);
        let t1 = t + Duration::from_millis(100);
        s.handle_timeout(t1);
        drain(&mut s);
        let nacked: Vec<u16> = (10..50).collect();
        s.handle_rtcp(0, &nack(&nacked), t1).unwrap();
        // Only what fits in the pacing slack (5 ms) leaves at once.
        let mut out: Vec<(Instant, (LinkId, u16, u32))> = rtp_of(&drain(&mut s))
            .into_iter()
            .map(|r| (t1, r))
            .collect();
        assert!(
            (1..=8).contains(&out.len()),
            "{} repairs at once",
            out.len()
        );
        // New payloads wait behind the queued repairs.
        for i in 0..5 {
            s.send_payload(&payload(), 1000 + i, t1).unwrap();
        }
        out.extend(rtp_of(&drain(&mut s)).into_iter().map(|r| (t1, r)));
        let mut now = t1;
        while out.len() < nacked.len() + 5 && now < t1 + Duration::from_millis(200) {
            now = s.poll_timeout().unwrap().max(now);
            s.handle_timeout(now);
            out.extend(rtp_of(&drain(&mut s)).into_iter().map(|r| (now, r)));
        }
        let seqs: Vec<u16> = out.iter().map(|(_, r)| r.1).collect();
        let ssrcs: Vec<u32> = out.iter().map(|(_, r)| r.2).collect();
        assert_eq!(
            &seqs[..nacked.len()],
            &nacked[..],
            "repairs first, in order"
        );
        assert!(ssrcs[..nacked.len()].iter().all(|&x| x == SSRC | 1));
        assert_eq!(&seqs[nacked.len()..], &[60, 61, 62, 63, 64]);
        // Paced: 40 repairs of 1328 bytes at 10 Mbit/s take about 42 ms.
        let last_repair = out[nacked.len() - 1].0;
        let spread = last_repair.saturating_duration_since(t1);
        assert!(
            spread >= Duration::from_millis(30),
            "40 repairs within {spread:?}"
        );
        // Repairs NACKed just before their packets leave the buffer, the oldest
        // behind 20 others: each is sent in time, given up when it no longer can be
        // (counted), or a miss.
        let before = s.stats();
        let mut late = (t0 + Duration::from_millis(985)).max(now);
        s.handle_rtcp(0, &nack(&(20..40).collect::<Vec<u16>>()), late)
            .unwrap();
        s.handle_rtcp(0, &nack(&(0..20).collect::<Vec<u16>>()), late)
            .unwrap();
        drain(&mut s);
        while late < t0 + Duration::from_millis(1200) {
            late = s
                .poll_timeout()
                .unwrap()
                .max(late + Duration::from_millis(1));
            s.handle_timeout(late);
            drain(&mut s);
        }
        let st = s.stats();
        let sent = st.packets_retransmitted - before.packets_retransmitted;
        let expired = st.retransmits_expired - before.retransmits_expired;
        let missed = st.retransmit_misses - before.retransmit_misses;
        assert!(expired > 0, "{st:?}");
        assert_eq!(sent + expired + missed, 40, "{st:?}");
    }

    /// Two links at 2 Mbit/s, both Live; 20 payloads sent over both; then link 1
    /// falls silent until it is Down. Returns the sender, the sequence numbers link 1
    /// carried (now queued for failover resends) and the time reached.
    fn link_1_down() -> (Sender, Vec<u16>, Instant) {
        let t0 = Instant::now();
        let mut s = Sender::new(config(), t0);
        s.set_scheduler(SchedulerConfig {
            initial_rate_bps: 2_000_000.0,
            ..SchedulerConfig::default()
        });
        s.add_link(0, t0);
        s.add_link(1, t0);
        // Both links heard every 50 ms for 600 ms: Live.
        let mut t = t0;
        while t < t0 + Duration::from_millis(600) {
            t += Duration::from_millis(50);
            s.handle_rtcp(0, &nack(&[]), t).unwrap();
            s.handle_rtcp(1, &nack(&[]), t).unwrap();
            s.handle_timeout(t);
        }
        drain(&mut s);
        let (sent, mut t) = send_all(&mut s, 20, t);
        let on_link1: Vec<u16> = rtp_of(&sent)
            .iter()
            .filter(|&&(l, _, _)| l == 1)
            .map(|&(_, q, _)| q)
            .collect();
        assert!(on_link1.len() >= 5, "{on_link1:?}");
        // Link 1 falls silent; link 0 keeps reporting until link 1 is Down.
        for step in 1.. {
            if s.stats().links[1].state == LinkState::Down {
                break;
            }
            t += Duration::from_millis(10);
            if step % 5 == 0 {
                s.handle_rtcp(0, &nack(&[]), t).unwrap();
            }
            s.handle_timeout(t);
            assert!(t < t0 + Duration::from_secs(3), "link 1 never went Down");
        }
        (s, on_link1, t)
    }

    #[test]
    fn failover_resends_are_paced_after_originals_and_guarded() {
        let (mut s, on_link1, mut t) = link_1_down();
        // The resends are paced on link 0 (2 Mbit/s: ~5.4 ms a packet), not sent all
        // at once, and an original that arrives meanwhile goes before them.
        let down_at = t;
        let mut out = rtp_of(&drain(&mut s));
        let first_batch = out.len();
        assert!(first_batch < on_link1.len(), "{first_batch} resent at once");
        s.send_payload(&payload(), 99, t).unwrap();
        let mut last_resend_at = t;
        while out.len() < on_link1.len() + 1 {
            t = s.poll_timeout().unwrap().max(t);
            s.handle_timeout(t);
            let sent = rtp_of(&drain(&mut s));
            if sent.iter().any(|&(_, _, ssrc)| ssrc == SSRC | 1) {
                last_resend_at = t;
            }
            out.extend(sent);
            assert!(t < down_at + Duration::from_secs(1), "{out:?}");
        }
        assert_eq!(out[first_batch].2, SSRC, "the original goes first: {out:?}");
        let resent: Vec<u16> = out
            .iter()
            .filter(|&&(l, _, ssrc)| l == 0 && ssrc == SSRC | 1)
            .map(|&(_, q, _)| q)
            .collect();
        assert_eq!(resent, on_link1);
        assert_eq!(s.stats().packets_resent_failover, on_link1.len() as u64);
        assert!(last_resend_at - down_at >= Duration::from_millis(20));
        // A NACK for the last one written before that resend can have arrived (the
        // receiver's retry timer knows nothing of it) is not a loss report.
        let last = *on_link1.last().unwrap();
        let suppressed = s.stats().retransmits_suppressed;
        s.handle_rtcp(0, &nack(&[last]), last_resend_at + Duration::from_millis(5))
            .unwrap();
        assert!(rtp_of(&drain(&mut s)).is_empty(), "answered too early");
        assert_eq!(s.stats().retransmits_suppressed, suppressed + 1);
        // Once it can have arrived and a NACK come back, a NACK is honoured.
        let later = last_resend_at + Duration::from_millis(100);
        s.handle_rtcp(0, &nack(&[last]), later).unwrap();
        assert_eq!(rtp_of(&drain(&mut s)), vec![(0, last, SSRC | 1)]);
    }

    #[test]
    fn failover_resends_wait_for_originals_and_expire_with_the_buffer() {
        let (mut s, on_link1, mut t) = link_1_down();
        let down_at = t;
        let mut out = rtp_of(&drain(&mut s));
        // Originals at twice what link 0 (2 Mbit/s) carries, for 1.2 s: the pacing
        // queue never empties, so no failover resend goes after the first packets.
        let first_batch = out.len();
        let mut next_payload = t;
        let mut next_report = t;
        while t < down_at + Duration::from_millis(1200) {
            if next_report <= t {
                // Link 0 stays heard from.
                s.handle_rtcp(0, &nack(&[]), t).unwrap();
                next_report += Duration::from_millis(50);
            }
            while next_payload <= t {
                s.send_payload(&payload(), 0, next_payload).unwrap();
                next_payload += Duration::from_micros(2700);
            }
            t = s
                .poll_timeout()
                .unwrap()
                .max(t)
                .min(next_payload)
                .min(next_report);
            s.handle_timeout(t);
            out.extend(rtp_of(&drain(&mut s)));
        }
        let resends = out[first_batch..]
            .iter()
            .filter(|&&(_, _, ssrc)| ssrc == SSRC | 1)
            .count();
        assert_eq!(resends, 0, "a resend went while originals waited");
        let st = s.stats();
        assert!(
            st.packets_dropped_deadline > 0,
            "the link was not saturated: {st:?} {}",
            out.len()
        );
        // Each queued resend either went in the first batch or expired with the
        // retransmission buffer (1000 ms).
        assert_eq!(
            st.packets_resent_failover + st.failover_resends_expired,
            on_link1.len() as u64
        );
        assert!(st.failover_resends_expired > 0);
    }

    #[test]
    fn range_nack_and_misses() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(), t0);
        s.add_link(0, t0);
        let (_, t0) = send_all(&mut s, 5, t0);
        let n = rtcp::write_compound(&[Packet::RangeNack(RangeNack {
            ssrc: SSRC,
            ranges: vec![NackRange { start: 3, extra: 3 }],
        })]);
        s.handle_rtcp(0, &n, t0).unwrap();
        // 3 and 4 exist; 5 and 6 were never sent. The repairs are paced: they leave
        // as the link's pacing clock allows, within a few ms.
        let mut repairs = rtp_of(&drain(&mut s));
        let mut t = t0;
        while repairs.len() < 2 && t < t0 + Duration::from_millis(20) {
            t = s.poll_timeout().unwrap().max(t);
            s.handle_timeout(t);
            repairs.extend(rtp_of(&drain(&mut s)));
        }
        assert_eq!(repairs.iter().map(|r| r.1).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(s.stats().retransmit_misses, 2);
        // After the buffer expires, everything misses.
        let late = t0 + Duration::from_millis(1001);
        s.handle_timeout(late);
        s.handle_rtcp(0, &nack(&[0]), late).unwrap();
        assert_eq!(s.stats().retransmit_misses, 3);
        // A NACK for another SSRC is ignored.
        let other = rtcp::write_compound(&[Packet::GenericNack(GenericNack {
            sender_ssrc: 1,
            media_ssrc: 0x1234_5678,
            lost: vec![1],
        })]);
        s.handle_rtcp(0, &other, late).unwrap();
        assert_eq!(s.stats().retransmit_misses, 3);
    }

    #[test]
    fn rtt_from_rr_and_best_link_choice() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(), t0);
        s.add_link(0, t0);
        s.add_link(1, t0);
        let srs = drain(&mut s);
        let lsr_of = |t: &Transmit| match &rtcp::parse_compound(&t.data).unwrap()[0] {
            Packet::Sr(sr) => rtcp::ntp_short(sr.ntp_timestamp),
            _ => panic!("no SR"),
        };
        let rr = |lsr: u32, dlsr_ms: u64| {
            rtcp::write_compound(&[Packet::Rr(ReceiverReport {
                ssrc: 9,
                reports: vec![ReportBlock {
                    ssrc: SSRC,
                    fraction_lost: 64,
                    lsr,
                    dlsr: rtcp::duration_to_short(Duration::from_millis(dlsr_ms)),
                    ..ReportBlock::default()
                }],
            })])
        };
        // Link 0: RR 100 ms after the SR with DLSR 20 ms -> RTT 80 ms.
        s.handle_rtcp(0, &rr(lsr_of(&srs[0]), 20), t0 + Duration::from_millis(100))
            .unwrap();
        // Link 1: RTT 30 ms.
        s.handle_rtcp(1, &rr(lsr_of(&srs[1]), 70), t0 + Duration::from_millis(100))
            .unwrap();
        let st = s.stats();
        let rtt0 = st.links[0].rtt_ms.unwrap();
        let rtt1 = st.links[1].rtt_ms.unwrap();
        assert!((rtt0 - 80.0).abs() < 0.5, "{rtt0}");
        assert!((rtt1 - 30.0).abs() < 0.5, "{rtt1}");
        // Loss is attributed from NACKs, not from the RR's flow-wide fraction lost.
        assert_eq!(st.links[0].loss_rate, 0.0);
        // A NACK on link 0 is answered on link 1 (lower RTT, live).
        let t = t0 + Duration::from_millis(110);
        s.send_payload(&payload(), 0, t).unwrap();
        drain(&mut s);
        s.handle_rtcp(0, &nack(&[0]), t).unwrap();
        assert_eq!(rtp_of(&drain(&mut s)), vec![(1, 0, SSRC | 1)]);
        // Two seconds later link 1 is no longer live; only link 0 is heard from now.
        let t2 = t + Duration::from_millis(1500);
        s.send_payload(&payload(), 0, t2).unwrap();
        drain(&mut s);
        s.handle_rtcp(0, &nack(&[1]), t2).unwrap();
        assert_eq!(rtp_of(&drain(&mut s)), vec![(0, 1, SSRC | 1)]);
    }

    #[test]
    fn periodic_sr_on_every_link_and_timeouts() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(), t0);
        assert_eq!(s.poll_timeout(), None);
        s.add_link(0, t0);
        s.add_link(5, t0);
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(100)));
        s.handle_timeout(t0 + Duration::from_millis(100));
        let out = drain(&mut s);
        assert_eq!(out.iter().map(|t| t.link).collect::<Vec<_>>(), vec![0, 5]);
        assert!(out.iter().all(|t| t.channel == Channel::Rtcp));
        s.remove_link(5).unwrap();
        assert_eq!(s.remove_link(5), Err(Error::UnknownLink(5)));
        assert_eq!(
            s.handle_rtcp(5, &nack(&[0]), t0),
            Err(Error::UnknownLink(5))
        );
        assert!(matches!(
            s.handle_rtcp(0, &[1, 2, 3], t0),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn echo_request_is_answered() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(), t0);
        s.add_link(0, t0);
        drain(&mut s);
        let req = rtcp::write_compound(&[Packet::EchoRequest(Echo {
            ssrc: SSRC,
            timestamp: 42,
            delay_us: 0,
        })]);
        s.handle_rtcp(0, &req, t0).unwrap();
        let out = drain(&mut s);
        let pkts = rtcp::parse_compound(&out[0].data).unwrap();
        assert!(pkts
            .iter()
            .any(|p| matches!(p, Packet::EchoResponse(e) if e.timestamp == 42)));
    }
}
