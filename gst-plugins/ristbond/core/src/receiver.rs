//! The bonding receiver (TR-06-1 §5.3; RFC 4585 §6.2.1 NACK; RFC 3550 §6.4.2 RR).
//!
//! Design (all times are virtual: passed in, never read):
//!
//! - **Merge and de-duplicate**: every link feeds one sequence space (extended to 64 bits,
//!   RFC 3550 §A.1); a sequence number already delivered or held is a duplicate
//!   (the same packet on two links, or a late retransmission) and is dropped.
//! - **In-order, minimal delay**: a packet is handed out as soon as every earlier
//!   sequence number was handed out or declared lost; nothing waits for a fixed delay.
//!   The one exception is the *start-up window* of a stream (latency/4, clamped to
//!   [5 ms, 250 ms], from its first packet): packets of a bonded stream's first
//!   instants may arrive on a slower link after later ones, and a packet older than
//!   the first one seen moves the start back (the numbers in between become gaps).
//! - **Gaps**: when a packet arrives beyond the highest so far, every skipped number
//!   becomes a gap with a deadline of `latency` from now; at the deadline it is
//!   declared lost ([`Output::Lost`], consecutive ones merged).
//! - **NACK timing**: packets of a bonded stream arrive reordered across links with
//!   different delays, so the first NACK of a gap waits a *reorder allowance*: 1.25 ×
//!   an estimate of how late out-of-order originals fill gaps (fast attack: half the
//!   excess of a larger sample; slow decay: 1/64 of the shortfall of a smaller one),
//!   clamped to [5 ms, latency/4]. Retries follow every `srtt + 2 × rttvar` of the
//!   NACK→repair time (RFC 6298 §2 smoothing, sampled only on gaps repaired after
//!   exactly one NACK; before any sample 1.25 × the echo RTT, else 50 ms), clamped
//!   to [20 ms, latency/2]; at most 10 NACKs per gap, none after its deadline.
//! - **NACK sending**: all NACKs due at one instant go out as one compound RR + SDES +
//!   generic NACK (RFC 4585 §6.2.1; understood by GStreamer and librist senders),
//!   at most 300 numbers per datagram. It goes on the preferred link: among links
//!   heard from (RTP or RTCP) within 1 s, the lowest RIST echo RTT, else the one heard
//!   from most recently. When the batch holds a retry, it goes on the two preferred
//!   links, so one lost NACK does not cost another round trip (the sender's repeat
//!   guard turns the two copies into one repair).
//! - **RTCP**: once the sender SSRC is known, every `rtcp_interval` each link gets
//!   RR (report block: pre-repair loss of originals, extended highest sequence, this
//!   link's interarrival jitter, LSR/DLSR of the last SR) + SDES CNAME + a RIST RTT
//!   echo request (TR-06-1 §5.2.6). Echo requests from the sender are answered.
//! - **Sender restart**: an original packet with a new SSRC (LSB ignored) restarts at
//!   once (the old SSRC is then ignored); a sequence jump larger than what the packet
//!   rate and the silence can explain (at least 3000) must be confirmed by a second
//!   packet near the first. Either way the buffered packets of the old stream are
//!   flushed in order (holes as lost) and the new stream starts at a fresh 65536-cycle
//!   of the extended space, so output sequence numbers stay increasing and no
//!   phantom losses are reported.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::rtcp::{
    self, Echo, GenericNack, NtpClock, Packet, ReceiverReport, ReportBlock, SdesChunk,
};
use crate::seq::{self, SeqExtender};
use crate::{rtp, Channel, Error, LinkId, Transmit};

/// Lower clamp of the reorder allowance before a first NACK.
const MIN_REORDER_ALLOWANCE: Duration = Duration::from_millis(5);
/// Shortest interval between NACKs of one gap.
const MIN_RETRY_INTERVAL: Duration = Duration::from_millis(20);
/// Retry interval before any RTT or repair-time measurement.
const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(50);
/// Most NACKs sent for one gap.
const MAX_NACK_RETRIES: u32 = 10;
/// Most sequence numbers in one generic NACK packet (keeps the datagram < 1500 bytes
/// even when every FCI word carries a single number).
const MAX_NACKS_PER_PACKET: usize = 300;
/// Smallest sequence jump treated as a possible sender restart (RFC 3550 §A.1
/// MAX_DROPOUT).
const MIN_DROPOUT: u64 = 3000;
/// Largest jump ever treated as an ordinary gap (half the 16-bit space, minus margin).
const MAX_DROPOUT: u64 = 30_000;
/// A packet confirms a pending restart when within this distance of the candidate.
const PROBATION_WINDOW: i16 = 512;
/// Packets stashed while a restart awaits confirmation.
const MAX_STASH: usize = 64;
/// A link counts as live for NACKs if anything arrived on it this recently.
const LIVE_WINDOW: Duration = Duration::from_secs(1);
/// Echo RTT samples above this are garbage.
const MAX_RTT: Duration = Duration::from_secs(30);
/// Old SSRCs remembered (and ignored) after a restart.
const MAX_RETIRED_SSRCS: usize = 8;

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
    /// Current reorder allowance before a first NACK, ms (see the module doc).
    pub reorder_allowance_ms: f64,
    /// Current interval between NACK retries of one gap, ms.
    pub nack_retry_interval_ms: f64,
    /// Sender restarts detected (SSRC change or confirmed sequence jump).
    pub resyncs: u64,
}

#[derive(Debug)]
struct RxLink {
    stats: LinkRxStats,
    last_heard: Option<Instant>,
    next_rr: Instant,
    /// LSR (middle 32 bits of the SR's NTP time) and arrival of the last SR.
    last_sr: Option<(u32, Instant)>,
    /// Smoothed RTT from RIST echo request/response on this link.
    echo_rtt: Option<Duration>,
    /// RFC 3550 §A.8 interarrival jitter of originals on this link, 90 kHz ticks.
    jitter: f64,
    last_transit: Option<u32>,
    /// RR interval accounting (RFC 3550 §A.3).
    expected_prior: u64,
    received_prior: u64,
}

#[derive(Debug)]
struct Gap {
    first_seen: Instant,
    deadline: Instant,
    next_nack: Option<Instant>,
    retries: u32,
    last_nack: Option<Instant>,
}

#[derive(Debug)]
struct Held {
    rtp_timestamp: u32,
    payload: Vec<u8>,
    recovered: bool,
}

/// A parsed media packet on its way into the buffer (also what a pending restart
/// stashes until confirmed).
#[derive(Debug)]
struct Incoming {
    link: LinkId,
    seq: u16,
    rtp_timestamp: u32,
    payload: Vec<u8>,
    recovered: bool,
}

#[derive(Debug)]
struct Probation {
    last_seq: u16,
    stash: Vec<Incoming>,
}

/// The sequence state of one sender incarnation ("epoch").
#[derive(Debug)]
struct Epoch {
    ext: SeqExtender,
    /// Extended number of the first packet, and when it arrived.
    first: u64,
    started: Instant,
    /// Start-up window: until then nothing is handed out, and a packet older than the
    /// first one moves the start back (the stream's first packets may arrive late on
    /// a slower link).
    hold_until: Instant,
    highest_at: Instant,
    /// Unique originals received (RR accounting).
    originals: u64,
}

/// The bonding receiver state machine: merges links, drops duplicates, reorders within
/// `latency`, and NACKs what is missing.
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    clock: NtpClock,
    links: BTreeMap<LinkId, RxLink>,
    sender_ssrc: Option<u32>,
    retired_ssrcs: VecDeque<u32>,
    epoch: Option<Epoch>,
    /// Extended number the next fresh epoch's first packet is placed in (cycle base).
    next_epoch_base: u64,
    /// Next extended sequence number to hand out.
    next_out: u64,
    held: BTreeMap<u64, Held>,
    missing: BTreeMap<u64, Gap>,
    nack_timers: BTreeSet<(Instant, u64)>,
    probation: Option<Probation>,
    pending_out: VecDeque<Output>,
    tx: VecDeque<Transmit>,
    reorder_est: Duration,
    /// NACK→repair time: smoothed value and mean deviation (RFC 6298 §2 style).
    repair: Option<(Duration, Duration)>,
    last_now: Instant,
    stats: ReceiverStats,
}

impl Receiver {
    /// Anchor the NTP wall clock of RTCP timestamps (SR NTP time, LSR/DLSR, RIST
    /// echo): `now` is `since_unix` after the Unix epoch. By default the Receiver reads
    /// the system clock once when it is made; a deterministic simulation sets it
    /// (RFC 3550 §4: only differences of these timestamps matter to the peer).
    pub fn anchor_wall_clock(&mut self, now: Instant, since_unix: Duration) {
        self.clock = NtpClock::anchored(now, since_unix);
    }

    /// A receiver with no links yet.
    pub fn new(config: ReceiverConfig, now: Instant) -> Self {
        Self {
            config,
            clock: NtpClock::new(now),
            links: BTreeMap::new(),
            sender_ssrc: None,
            retired_ssrcs: VecDeque::new(),
            epoch: None,
            next_epoch_base: seq::FIRST_CYCLE,
            next_out: 0,
            held: BTreeMap::new(),
            missing: BTreeMap::new(),
            nack_timers: BTreeSet::new(),
            probation: None,
            pending_out: VecDeque::new(),
            tx: VecDeque::new(),
            reorder_est: Duration::ZERO,
            repair: None,
            last_now: now,
            stats: ReceiverStats::default(),
        }
    }

    /// Start accepting datagrams on `id` (adding an existing id does nothing).
    pub fn add_link(&mut self, id: LinkId, now: Instant) {
        self.links.entry(id).or_insert_with(|| RxLink {
            stats: LinkRxStats {
                id,
                ..LinkRxStats::default()
            },
            last_heard: None,
            next_rr: now,
            last_sr: None,
            echo_rtt: None,
            jitter: 0.0,
            last_transit: None,
            expected_prior: 0,
            received_prior: 0,
        });
    }

    /// Stop using a link. Errors: [`Error::UnknownLink`].
    pub fn remove_link(&mut self, id: LinkId) -> Result<(), Error> {
        self.links.remove(&id).ok_or(Error::UnknownLink(id))?;
        self.tx.retain(|t| t.link != id);
        Ok(())
    }

    /// Feed one RTP datagram received on `link`. Errors: [`Error::Malformed`] (dropped),
    /// [`Error::UnknownLink`].
    pub fn handle_rtp(&mut self, link: LinkId, datagram: &[u8], now: Instant) -> Result<(), Error> {
        self.touch(now);
        let l = self.links.get_mut(&link).ok_or(Error::UnknownLink(link))?;
        let p = rtp::parse(datagram)?;
        l.stats.received_packets += 1;
        l.stats.received_bytes += datagram.len() as u64;
        l.last_heard = Some(now);

        let flow = p.flow_ssrc();
        if self.retired_ssrcs.contains(&flow) {
            return Ok(());
        }
        match self.sender_ssrc {
            None => self.sender_ssrc = Some(flow),
            Some(s) if s != flow => {
                if p.is_retransmission() {
                    // A repair for a stream we are not following.
                    return Ok(());
                }
                self.retired_ssrcs.push_back(s);
                if self.retired_ssrcs.len() > MAX_RETIRED_SSRCS {
                    self.retired_ssrcs.pop_front();
                }
                self.sender_ssrc = Some(flow);
                self.resync();
            }
            Some(_) => {}
        }
        self.process(
            Incoming {
                link,
                seq: p.seq,
                rtp_timestamp: p.timestamp,
                payload: p.payload.to_vec(),
                recovered: p.is_retransmission(),
            },
            now,
        );
        Ok(())
    }

    /// Feed one RTCP datagram received on `link` (SR, SDES, keepalive).
    pub fn handle_rtcp(
        &mut self,
        link: LinkId,
        datagram: &[u8],
        now: Instant,
    ) -> Result<(), Error> {
        self.touch(now);
        if !self.links.contains_key(&link) {
            return Err(Error::UnknownLink(link));
        }
        let packets = rtcp::parse_compound(datagram)?;
        if let Some(l) = self.links.get_mut(&link) {
            l.last_heard = Some(now);
        }
        for p in packets {
            match p {
                Packet::Sr(sr) => {
                    let flow = rtp::flow_ssrc(sr.ssrc);
                    if self.retired_ssrcs.contains(&flow) {
                        continue;
                    }
                    if self.sender_ssrc.is_none() {
                        self.sender_ssrc = Some(flow);
                    }
                    if self.sender_ssrc == Some(flow) {
                        if let Some(l) = self.links.get_mut(&link) {
                            l.last_sr = Some((rtcp::ntp_short(sr.ntp_timestamp), now));
                        }
                    }
                }
                Packet::EchoRequest(e) => {
                    let resp = Packet::EchoResponse(Echo {
                        ssrc: e.ssrc,
                        timestamp: e.timestamp,
                        delay_us: 0,
                    });
                    let data = self.rr_compound(link, now, false, vec![resp]);
                    self.tx.push_back(Transmit {
                        link,
                        channel: Channel::Rtcp,
                        data,
                    });
                }
                Packet::EchoResponse(e) => {
                    let elapsed = self.clock.ntp(now).wrapping_sub(e.timestamp);
                    let rtt = rtcp::ntp_to_duration(elapsed)
                        .saturating_sub(Duration::from_micros(u64::from(e.delay_us)));
                    if let (true, Some(l)) = (rtt < MAX_RTT, self.links.get_mut(&link)) {
                        l.echo_rtt = Some(match l.echo_rtt {
                            None => rtt,
                            Some(s) => (s * 7 + rtt) / 8,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Next in-order output that is ready at `now`. Call until `None` after every
    /// `handle_*` call and timeout.
    pub fn poll_output(&mut self, now: Instant) -> Option<Output> {
        self.touch(now);
        let out = self
            .pending_out
            .pop_front()
            .or_else(|| self.next_ready(now))?;
        match &out {
            Output::Packet { recovered, .. } => {
                self.stats.packets_delivered += 1;
                if *recovered {
                    self.stats.packets_recovered += 1;
                }
            }
            Output::Lost { count, .. } => self.stats.packets_lost += count,
        }
        Some(out)
    }

    /// True when [`Receiver::poll_output`] at `now` would return something: a packet
    /// next in order, or a gap at the head whose deadline has passed. Does not change
    /// any state; lets an I/O layer wake its output thread only when there is output.
    pub fn has_output(&self, now: Instant) -> bool {
        if !self.pending_out.is_empty() {
            return true;
        }
        if self.epoch.as_ref().is_none_or(|e| e.hold_until > now) {
            return false;
        }
        self.held.contains_key(&self.next_out)
            || self
                .missing
                .get(&self.next_out)
                .is_some_and(|g| g.deadline <= now)
    }

    /// Next RTCP datagram (RR, NACK) to send back to the sender on a link.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.pop_front()
    }

    /// When [`Receiver::handle_timeout`] / [`Receiver::poll_output`] must be called next.
    ///
    /// Only true timers are announced (NACK retries, receiver reports, the head-of-line
    /// loss deadline, the end of the start-up window), each consumed by
    /// `handle_timeout`, so a time in the past never repeats. Output that becomes
    /// ready *because of* a `handle_*` call is not announced: drain `poll_output`
    /// after every `handle_*` call.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hold = self
            .epoch
            .as_ref()
            .map(|e| e.hold_until)
            .filter(|&h| h > self.last_now);
        let nack = self.nack_timers.first().map(|&(t, _)| t);
        let head = self.missing.get(&self.next_out).map(|g| g.deadline);
        let rr = self.links.values().map(|l| l.next_rr).min();
        [hold, nack, head, rr].into_iter().flatten().min()
    }

    /// Run timers due at `now` (NACK retries, RR, declaring packets lost).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.touch(now);
        self.send_due_nacks(now);
        if let Some(lost) = self.take_expired_head(now) {
            self.pending_out.push_back(lost);
        }
        let due: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.next_rr <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            if let Some(l) = self.links.get_mut(&id) {
                l.next_rr += self.config.rtcp_interval;
                if l.next_rr <= now {
                    l.next_rr = now + self.config.rtcp_interval;
                }
            }
            if self.sender_ssrc.is_none() {
                continue;
            }
            let echo = Packet::EchoRequest(Echo {
                ssrc: self.sender_ssrc.unwrap_or(0),
                timestamp: self.clock.ntp(now),
                delay_us: 0,
            });
            let data = self.rr_compound(id, now, true, vec![echo]);
            self.tx.push_back(Transmit {
                link: id,
                channel: Channel::Rtcp,
                data,
            });
        }
    }

    /// Current counters.
    pub fn stats(&self) -> ReceiverStats {
        ReceiverStats {
            links: self.links.values().map(|l| l.stats.clone()).collect(),
            reorder_allowance_ms: self.reorder_allowance().as_secs_f64() * 1000.0,
            nack_retry_interval_ms: self.retry_interval().as_secs_f64() * 1000.0,
            ..self.stats.clone()
        }
    }

    fn touch(&mut self, now: Instant) {
        if now > self.last_now {
            self.last_now = now;
        }
    }

    /// Start-up window of a new stream: latency/4 clamped to [5 ms, 250 ms].
    fn startup_hold(&self) -> Duration {
        (self.config.latency / 4).clamp(MIN_REORDER_ALLOWANCE, Duration::from_millis(250))
    }

    fn reorder_allowance(&self) -> Duration {
        let max = (self.config.latency / 4).max(MIN_REORDER_ALLOWANCE);
        (self.reorder_est + self.reorder_est / 4).clamp(MIN_REORDER_ALLOWANCE, max)
    }

    fn retry_interval(&self) -> Duration {
        let echo = self.links.values().filter_map(|l| l.echo_rtt).min();
        let base = match (self.repair, echo) {
            (Some((srtt, var)), _) => srtt + var * 2,
            (None, Some(rtt)) => rtt + rtt / 4,
            (None, None) => DEFAULT_RETRY_INTERVAL,
        };
        let max = (self.config.latency / 2).max(MIN_RETRY_INTERVAL);
        base.clamp(MIN_RETRY_INTERVAL, max)
    }

    /// Largest forward gap (or backward distance) explained by `silence` at the
    /// current packet rate.
    fn plausible_jump(&self, silence: Duration) -> u64 {
        let Some(e) = &self.epoch else {
            return MIN_DROPOUT;
        };
        let span = e.highest_at.saturating_duration_since(e.started);
        let rate = if span >= Duration::from_millis(100) {
            e.ext.highest().unwrap_or(e.first).saturating_sub(e.first) as f64 / span.as_secs_f64()
        } else {
            0.0
        };
        let extra = (rate * silence.as_secs_f64() * 2.0) as u64;
        (MIN_DROPOUT + extra).min(MAX_DROPOUT)
    }

    fn process(&mut self, pkt: Incoming, now: Instant) {
        let Some(epoch) = &self.epoch else {
            // First packet of a stream (or after a resync).
            let ext = self.next_epoch_base + u64::from(pkt.seq);
            self.epoch = Some(Epoch {
                ext: SeqExtender::starting_at(ext),
                first: ext,
                started: now,
                hold_until: now + self.startup_hold(),
                highest_at: now,
                originals: 0,
            });
            self.next_out = ext;
            self.accept(ext, pkt, now);
            return;
        };
        let ext = epoch.ext.peek(pkt.seq);
        let highest = epoch.ext.highest().unwrap_or(ext);
        let holding = now < epoch.hold_until;
        let silence = now.saturating_duration_since(epoch.highest_at);
        let forward_jump = ext > highest && ext - highest > self.plausible_jump(silence);
        let backward_jump = ext < self.next_out
            && self.next_out - ext > self.plausible_jump(self.config.latency + silence);
        if forward_jump || backward_jump {
            self.probation_step(pkt, now);
            return;
        }
        if holding && ext < self.next_out {
            // Still in the start-up window: an earlier packet moves the start back.
            for m in ext + 1..self.next_out {
                self.add_gap(m, now);
            }
            self.next_out = ext;
            if let Some(e) = &mut self.epoch {
                e.first = ext;
            }
            self.accept(ext, pkt, now);
            return;
        }
        if ext < self.next_out || self.held.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        if ext > highest {
            for m in highest + 1..ext {
                self.add_gap(m, now);
            }
            if let Some(e) = &mut self.epoch {
                e.ext.extend(pkt.seq);
                e.highest_at = now;
            }
        } else if let Some(gap) = self.missing.remove(&ext) {
            if let Some(t) = gap.next_nack {
                self.nack_timers.remove(&(t, ext));
            }
            if pkt.recovered {
                if let (1, Some(asked)) = (gap.retries, gap.last_nack) {
                    let r = now.saturating_duration_since(asked);
                    self.repair = Some(match self.repair {
                        None => (r, r / 2),
                        Some((srtt, var)) => {
                            let dev = srtt.abs_diff(r);
                            ((srtt * 7 + r) / 8, (var * 3 + dev) / 4)
                        }
                    });
                }
            } else {
                let sample = now.saturating_duration_since(gap.first_seen);
                self.reorder_est = if sample > self.reorder_est {
                    self.reorder_est + (sample - self.reorder_est) / 2
                } else {
                    self.reorder_est - (self.reorder_est - sample) / 64
                };
            }
        }
        self.accept(ext, pkt, now);
    }

    /// Hold a new unique packet and do the RR/jitter accounting.
    fn accept(&mut self, ext: u64, pkt: Incoming, now: Instant) {
        if !pkt.recovered {
            if let Some(e) = &mut self.epoch {
                e.originals += 1;
            }
            let arrival = (self.clock.elapsed(now).as_nanos() * u128::from(rtp::CLOCK_RATE)
                / 1_000_000_000) as u32;
            let transit = arrival.wrapping_sub(pkt.rtp_timestamp);
            if let Some(l) = self.links.get_mut(&pkt.link) {
                if let Some(prev) = l.last_transit {
                    let d = f64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
                    l.jitter += (d - l.jitter) / 16.0;
                }
                l.last_transit = Some(transit);
            }
        }
        self.held.insert(
            ext,
            Held {
                rtp_timestamp: pkt.rtp_timestamp,
                payload: pkt.payload,
                recovered: pkt.recovered,
            },
        );
    }

    fn add_gap(&mut self, m: u64, now: Instant) {
        let deadline = now + self.config.latency;
        let first = now + self.reorder_allowance();
        let next_nack = (first < deadline).then_some(first);
        if let Some(t) = next_nack {
            self.nack_timers.insert((t, m));
        }
        self.missing.insert(
            m,
            Gap {
                first_seen: now,
                deadline,
                next_nack,
                retries: 0,
                last_nack: None,
            },
        );
    }

    fn probation_step(&mut self, pkt: Incoming, now: Instant) {
        let confirmed = match &mut self.probation {
            Some(p) if seq::diff(pkt.seq, p.last_seq).abs() <= PROBATION_WINDOW => {
                p.last_seq = pkt.seq;
                if p.stash.len() < MAX_STASH {
                    p.stash.push(pkt);
                }
                true
            }
            _ => {
                self.probation = Some(Probation {
                    last_seq: pkt.seq,
                    stash: vec![pkt],
                });
                false
            }
        };
        if confirmed {
            let stash = self.probation.take().map(|p| p.stash).unwrap_or_default();
            self.resync();
            for p in stash {
                self.process(p, now);
            }
        }
    }

    /// Flush the current stream in order (holes as lost) and start a fresh epoch.
    fn resync(&mut self) {
        self.stats.resyncs += 1;
        self.probation = None;
        let Some(epoch) = self.epoch.take() else {
            return;
        };
        let highest = epoch.ext.highest().unwrap_or(epoch.first);
        let mut m = self.next_out;
        while m <= highest {
            if let Some(h) = self.held.remove(&m) {
                self.pending_out.push_back(Output::Packet {
                    seq: m,
                    rtp_timestamp: h.rtp_timestamp,
                    payload: h.payload,
                    recovered: h.recovered,
                });
                m += 1;
            } else {
                let first = m;
                while m <= highest && !self.held.contains_key(&m) {
                    m += 1;
                }
                self.pending_out.push_back(Output::Lost {
                    first,
                    count: m - first,
                });
            }
        }
        self.held.clear();
        self.missing.clear();
        self.nack_timers.clear();
        self.next_out = highest + 1;
        self.next_epoch_base = ((highest >> 16) + 2) << 16;
        for l in self.links.values_mut() {
            l.last_transit = None;
            l.jitter = 0.0;
            l.expected_prior = 0;
            l.received_prior = 0;
        }
    }

    fn next_ready(&mut self, now: Instant) -> Option<Output> {
        if self.epoch.as_ref()?.hold_until > now {
            return None;
        }
        let n = self.next_out;
        if let Some(h) = self.held.remove(&n) {
            self.next_out += 1;
            return Some(Output::Packet {
                seq: n,
                rtp_timestamp: h.rtp_timestamp,
                payload: h.payload,
                recovered: h.recovered,
            });
        }
        self.take_expired_head(now)
    }

    /// When the next number to hand out is a gap past its deadline, declare it and the
    /// expired gaps right after it lost (one [`Output::Lost`]).
    fn take_expired_head(&mut self, now: Instant) -> Option<Output> {
        if self.epoch.as_ref()?.hold_until > now {
            return None;
        }
        let n = self.next_out;
        let mut m = n;
        while let Some(g) = self.missing.get(&m) {
            if g.deadline > now {
                break;
            }
            if let Some(t) = g.next_nack {
                self.nack_timers.remove(&(t, m));
            }
            self.missing.remove(&m);
            m += 1;
        }
        if m == n {
            return None;
        }
        self.next_out = m;
        Some(Output::Lost {
            first: n,
            count: m - n,
        })
    }

    fn send_due_nacks(&mut self, now: Instant) {
        let interval = self.retry_interval();
        let mut due: Vec<u64> = Vec::new();
        let mut retry = false;
        while let Some(&(t, m)) = self.nack_timers.first() {
            if t > now {
                break;
            }
            self.nack_timers.pop_first();
            let Some(g) = self.missing.get_mut(&m) else {
                continue;
            };
            g.next_nack = None;
            if g.deadline <= now {
                continue;
            }
            g.retries += 1;
            retry |= g.retries > 1;
            g.last_nack = Some(now);
            due.push(m);
            let next = now + interval;
            if g.retries < MAX_NACK_RETRIES && next < g.deadline {
                g.next_nack = Some(next);
                self.nack_timers.insert((next, m));
            }
        }
        if due.is_empty() {
            return;
        }
        let Some(media_ssrc) = self.sender_ssrc else {
            return;
        };
        // First requests go on the preferred link; if any number is a retry (its
        // earlier NACK or repair was lost), the NACK goes on the two preferred links so
        // that one lost NACK cannot cost another round trip. The sender's repeat guard
        // turns the two copies into one repair.
        let links = self.nack_links(now);
        let copies = if retry { 2 } else { 1 };
        due.sort_unstable();
        self.stats.nacks_sent += due.len() as u64;
        for chunk in due.chunks(MAX_NACKS_PER_PACKET) {
            for &link in links.iter().take(copies) {
                let nack = Packet::GenericNack(GenericNack {
                    sender_ssrc: self.config.ssrc,
                    media_ssrc,
                    lost: chunk.iter().map(|&m| m as u16).collect(),
                });
                let data = self.rr_compound(link, now, false, vec![nack]);
                self.tx.push_back(Transmit {
                    link,
                    channel: Channel::Rtcp,
                    data,
                });
            }
        }
    }

    /// Links in NACK preference order: those heard from within the last second, by
    /// lowest echo RTT (links without one after, most recently heard first); then the
    /// others, most recently heard first.
    fn nack_links(&self, now: Instant) -> Vec<LinkId> {
        let mut ranked: Vec<(bool, Duration, std::cmp::Reverse<Option<Instant>>, LinkId)> = self
            .links
            .iter()
            .map(|(&id, l)| {
                let live = l
                    .last_heard
                    .is_some_and(|t| now.saturating_duration_since(t) <= LIVE_WINDOW);
                let rtt = l.echo_rtt.filter(|_| live).unwrap_or(Duration::MAX);
                (!live, rtt, std::cmp::Reverse(l.last_heard), id)
            })
            .collect();
        ranked.sort();
        ranked.into_iter().map(|(.., id)| id).collect()
    }

    /// RR (with a block for the sender when known) + SDES CNAME + `extra`. The loss
    /// fraction covers the time since this link's last periodic RR; only periodic RRs
    /// (`periodic`) start a new interval, so RRs riding on NACKs do not chop it up.
    fn rr_compound(
        &mut self,
        link: LinkId,
        now: Instant,
        periodic: bool,
        extra: Vec<Packet>,
    ) -> Vec<u8> {
        let mut reports = Vec::new();
        if let (Some(sender), Some(e)) = (self.sender_ssrc, &self.epoch) {
            let highest = e.ext.highest().unwrap_or(e.first);
            let expected = highest + 1 - e.first;
            let received = e.originals;
            let cycle_base = (e.first >> 16) << 16;
            let fallback_sr = self
                .links
                .values()
                .filter_map(|l| l.last_sr)
                .max_by_key(|&(_, at)| at);
            if let Some(l) = self.links.get_mut(&link) {
                let exp_int = expected.saturating_sub(l.expected_prior);
                let rec_int = received.saturating_sub(l.received_prior);
                if periodic {
                    l.expected_prior = expected;
                    l.received_prior = received;
                }
                let lost_int = exp_int.saturating_sub(rec_int);
                let fraction_lost = (lost_int << 8)
                    .checked_div(exp_int)
                    .map_or(0, |f| f.min(255) as u8);
                let (lsr, dlsr) = match l.last_sr.or(fallback_sr) {
                    Some((lsr, at)) => (
                        lsr,
                        rtcp::duration_to_short(now.saturating_duration_since(at)),
                    ),
                    None => (0, 0),
                };
                reports.push(ReportBlock {
                    ssrc: sender,
                    fraction_lost,
                    cumulative_lost: expected.saturating_sub(received).min(0x7f_ffff) as u32,
                    extended_highest_seq: (highest - cycle_base) as u32,
                    jitter: l.jitter as u32,
                    lsr,
                    dlsr,
                });
            }
        }
        let mut packets = vec![
            Packet::Rr(ReceiverReport {
                ssrc: self.config.ssrc,
                reports,
            }),
            Packet::Sdes(vec![SdesChunk {
                ssrc: self.config.ssrc,
                cname: self.config.cname.clone(),
            }]),
        ];
        packets.extend(extra);
        rtcp::write_compound(&packets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SENDER: u32 = 0xABC0_0000;
    const MS: Duration = Duration::from_millis(1);

    fn config(latency_ms: u64) -> ReceiverConfig {
        ReceiverConfig {
            latency: Duration::from_millis(latency_ms),
            ssrc: 0x0000_0700,
            cname: "rx".into(),
            rtcp_interval: Duration::from_millis(100),
        }
    }

    fn rx(latency_ms: u64, links: &[LinkId], t0: Instant) -> Receiver {
        let mut r = Receiver::new(config(latency_ms), t0);
        for &l in links {
            r.add_link(l, t0);
        }
        r
    }

    fn pkt_ssrc(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut payload = vec![0u8; 188];
        payload[0] = 0x47;
        payload[1..3].copy_from_slice(&seq.to_be_bytes());
        rtp::build(seq, u32::from(seq) * 90, ssrc, &payload).unwrap()
    }

    fn pkt(seq: u16) -> Vec<u8> {
        pkt_ssrc(seq, SENDER)
    }

    fn rtx(seq: u16) -> Vec<u8> {
        rtp::to_retransmission(&pkt(seq))
    }

    /// Outputs as (wire seq, recovered) for packets and (first wire seq, count) for losses.
    #[derive(Debug, PartialEq, Eq)]
    enum O {
        P(u16, bool),
        L(u16, u64),
    }

    /// Drain the output at `now`, checking before every call that
    /// [`Receiver::has_output`] predicts what [`Receiver::poll_output`] returns.
    fn outputs(r: &mut Receiver, now: Instant) -> Vec<O> {
        std::iter::from_fn(|| {
            let predicted = r.has_output(now);
            let out = r.poll_output(now);
            assert_eq!(predicted, out.is_some(), "has_output disagrees: {out:?}");
            out
        })
        .map(|o| match o {
            Output::Packet {
                seq,
                payload,
                recovered,
                ..
            } => {
                assert_eq!(&payload[1..3], &(seq as u16).to_be_bytes());
                O::P(seq as u16, recovered)
            }
            Output::Lost { first, count } => O::L(first as u16, count),
        })
        .collect()
    }

    /// Feed the stream's first packet on link 0 at `t0` and wait out the start-up
    /// window; returns the time delivery starts (steady state from then on).
    fn started(r: &mut Receiver, first: u16, t0: Instant) -> Instant {
        r.handle_rtp(0, &pkt(first), t0).unwrap();
        assert!(
            outputs(r, t0).is_empty(),
            "nothing before the start-up window ends"
        );
        let t = t0 + r.startup_hold();
        timers_before(r, t);
        assert_eq!(r.poll_timeout(), Some(t));
        r.handle_timeout(t);
        assert_eq!(outputs(r, t), vec![O::P(first, false)]);
        std::iter::from_fn(|| r.poll_transmit()).for_each(drop);
        t
    }

    /// Run every timer due before `until` (receiver reports); no output may appear.
    fn timers_before(r: &mut Receiver, until: Instant) {
        while let Some(d) = r.poll_timeout().filter(|&d| d < until) {
            r.handle_timeout(d);
            assert!(outputs(r, d).is_empty());
        }
    }

    /// Sequence numbers NACKed in the transmits, with the link they go on.
    fn nacks(r: &mut Receiver) -> Vec<(LinkId, Vec<u16>)> {
        std::iter::from_fn(|| r.poll_transmit())
            .filter_map(|t| {
                let lost: Vec<u16> = rtcp::parse_compound(&t.data)
                    .unwrap()
                    .into_iter()
                    .filter_map(|p| match p {
                        Packet::GenericNack(n) => {
                            assert_eq!(n.media_ssrc, SENDER);
                            Some(n.lost)
                        }
                        _ => None,
                    })
                    .flatten()
                    .collect();
                (!lost.is_empty()).then_some((t.link, lost))
            })
            .collect()
    }

    /// Run timers in 1 ms steps over `[from, until]`, collecting NACKs (time, seqs).
    fn run_until(r: &mut Receiver, from: Instant, until: Instant) -> Vec<(Instant, Vec<u16>)> {
        let mut out = Vec::new();
        let mut t = from;
        while t <= until {
            if r.poll_timeout().is_some_and(|d| d <= t) {
                r.handle_timeout(t);
            }
            for (_, n) in nacks(r) {
                out.push((t, n));
            }
            t += MS;
        }
        out
    }

    #[test]
    fn startup_window_lets_earlier_packets_move_the_start_back() {
        let t0 = Instant::now();
        let mut r = rx(1000, &[0, 1], t0);
        r.handle_rtp(0, &pkt(12), t0).unwrap();
        r.handle_rtp(1, &pkt(10), t0 + 40 * MS).unwrap(); // 11 now missing
        assert!(outputs(&mut r, t0 + 40 * MS).is_empty());
        r.handle_rtp(1, &pkt(11), t0 + 60 * MS).unwrap();
        let t = t0 + r.startup_hold();
        timers_before(&mut r, t);
        assert_eq!(r.poll_timeout(), Some(t));
        assert_eq!(
            outputs(&mut r, t),
            vec![O::P(10, false), O::P(11, false), O::P(12, false)]
        );
        // After the window an older packet is just late.
        r.handle_rtp(0, &pkt(9), t + MS).unwrap();
        assert!(outputs(&mut r, t + MS).is_empty());
        assert_eq!(r.stats().duplicates, 1);
    }

    #[test]
    fn in_order_packets_are_delivered_immediately() {
        let t0 = Instant::now();
        let mut r = rx(1000, &[0], t0);
        let t = started(&mut r, 9, t0);
        for s in 10..13 {
            r.handle_rtp(0, &pkt(s), t).unwrap();
            assert_eq!(outputs(&mut r, t), vec![O::P(s, false)]);
        }
        let st = r.stats();
        assert_eq!(st.packets_delivered, 4);
        assert_eq!(st.links[0].received_packets, 4);
        assert_eq!(st.links[0].received_bytes, 4 * (12 + 188));
    }

    #[test]
    fn duplicates_across_links_and_late_retransmissions_are_dropped() {
        let t0 = Instant::now();
        let mut r = rx(1000, &[0, 1], t0);
        let t = started(&mut r, 0, t0);
        r.handle_rtp(0, &pkt(1), t).unwrap();
        r.handle_rtp(1, &pkt(1), t).unwrap();
        r.handle_rtp(1, &pkt(2), t).unwrap();
        assert_eq!(outputs(&mut r, t), vec![O::P(1, false), O::P(2, false)]);
        r.handle_rtp(0, &rtx(2), t + MS).unwrap();
        r.handle_rtp(0, &pkt(4), t + MS).unwrap();
        r.handle_rtp(1, &pkt(4), t + MS).unwrap();
        assert!(outputs(&mut r, t + MS).is_empty());
        assert_eq!(r.stats().duplicates, 3);
    }

    #[test]
    fn gap_is_nacked_after_reorder_allowance_and_repaired() {
        let t0 = Instant::now();
        let mut r = rx(1000, &[0, 1], t0);
        let t = started(&mut r, 100, t0);
        r.handle_rtp(1, &pkt(102), t + MS).unwrap();
        assert!(outputs(&mut r, t + MS).is_empty());
        // Nothing before the 5 ms allowance.
        assert!(run_until(&mut r, t + MS, t + 5 * MS).is_empty());
        let n = run_until(&mut r, t + 6 * MS, t + 6 * MS);
        assert_eq!(n, vec![(t + 6 * MS, vec![101])]);
        r.handle_rtp(0, &rtx(101), t + 40 * MS).unwrap();
        assert_eq!(
            outputs(&mut r, t + 40 * MS),
            vec![O::P(101, true), O::P(102, false)]
        );
        let st = r.stats();
        assert_eq!(st.packets_recovered, 1);
        assert_eq!(st.nacks_sent, 1);
        // One clean repair sample of 34 ms (deviation 17 ms): retries every 34 + 2 × 17.
        assert!((st.nack_retry_interval_ms - 68.0).abs() < 0.01, "{st:?}");
    }

    #[test]
    fn nacks_go_to_the_most_recently_heard_link_without_echo_rtt() {
        let t0 = Instant::now();
        let mut r = rx(1000, &[0, 1, 2], t0);
        let t = started(&mut r, 0, t0);
        r.handle_rtp(2, &pkt(1), t).unwrap();
        r.handle_rtp(1, &pkt(3), t + MS).unwrap();
        r.handle_timeout(t + 10 * MS);
        assert_eq!(nacks(&mut r), vec![(1, vec![2])]);
    }

    #[test]
    fn nacks_go_to_the_live_link_with_the_lowest_echo_rtt() {
        let t0 = Instant::now();
        let mut r = rx(1000, &[0, 1, 2], t0);
        let t = started(&mut r, 0, t0);
        // Periodic RRs carry echo requests; answer them with different delays.
        r.handle_timeout(t + 100 * MS);
        let reqs: Vec<(LinkId, Echo)> = std::iter::from_fn(|| r.poll_transmit())
            .filter_map(|x| {
                rtcp::parse_compound(&x.data)
                    .unwrap()
                    .into_iter()
                    .find_map(|p| match p {
                        Packet::EchoRequest(e) => Some((x.link, e)),
                        _ => None,
                    })
            })
            .collect();
        assert_eq!(reqs.len(), 3);
        for (link, e) in reqs {
            let resp = rtcp::write_compound(&[Packet::EchoResponse(e)]);
            let delay = [80, 30, 50][link as usize] * MS;
            r.handle_rtcp(link, &resp, t + 100 * MS + delay).unwrap();
        }
        r.handle_rtp(2, &pkt(2), t + 200 * MS).unwrap();
        r.handle_timeout(t + 210 * MS);
        assert_eq!(nacks(&mut r), vec![(1, vec![1])]);
    }

    #[test]
    fn unrepaired_gap_is_lost_after_latency_with_bounded_retries() {
        let t0 = Instant::now();
        let mut r = rx(200, &[0], t0);
        let t = started(&mut r, 65534, t0);
        r.handle_rtp(0, &pkt(1), t).unwrap(); // 65535 and 0 missing (wrap)
        assert!(outputs(&mut r, t).is_empty());
        let n = run_until(&mut r, t, t + 199 * MS);
        // First NACK after 5 ms, then every 50 ms (no RTT known yet).
        let times: Vec<u64> = n
            .iter()
            .map(|(x, _)| x.duration_since(t).as_millis() as u64)
            .collect();
        assert_eq!(times, vec![5, 55, 105, 155]);
        assert!(n.iter().all(|(_, s)| s == &vec![0, 65535]));
        assert!(outputs(&mut r, t + 199 * MS).is_empty());
        // Next due: the head-of-line deadline.
        assert_eq!(r.poll_timeout(), Some(t + 200 * MS));
        assert_eq!(
            outputs(&mut r, t + 200 * MS),
            vec![O::L(65535, 2), O::P(1, false)]
        );
        let st = r.stats();
        assert_eq!(st.packets_lost, 2);
        assert_eq!(st.nacks_sent, 8);
    }

    #[test]
    fn timers_are_consumed_even_if_output_is_not_drained() {
        // An element's timer thread calls handle_timeout but leaves poll_output to the
        // streaming thread: a due time must never repeat (no busy loop).
        fn run_timers(r: &mut Receiver, from: Instant, until: Instant) -> Instant {
            let mut last = from;
            while let Some(d) = r.poll_timeout().filter(|&d| d <= until) {
                let d = d.max(last);
                r.handle_timeout(d);
                assert!(r.poll_timeout().is_none_or(|n| n > d), "due time repeats");
                last = d;
            }
            last
        }
        let t0 = Instant::now();
        let mut r = rx(200, &[0], t0);
        r.handle_rtp(0, &pkt(0), t0).unwrap();
        r.handle_rtp(0, &pkt(2), t0).unwrap();
        let t = run_timers(&mut r, t0, t0 + 60 * MS);
        assert_eq!(outputs(&mut r, t), vec![O::P(0, false)]);
        // Gap 1 passes its deadline while nobody polls output: handle_timeout
        // declares it, and the deadline is not announced again.
        let t = run_timers(&mut r, t, t0 + 400 * MS);
        assert_eq!(outputs(&mut r, t), vec![O::L(1, 1), O::P(2, false)]);
    }

    #[test]
    fn retries_stop_after_the_maximum() {
        let t0 = Instant::now();
        let mut r = rx(5000, &[0], t0);
        let t = started(&mut r, 0, t0);
        r.handle_rtp(0, &pkt(2), t).unwrap();
        let n = run_until(&mut r, t, t + 4000 * MS);
        assert_eq!(n.len(), MAX_NACK_RETRIES as usize);
        assert_eq!(r.stats().nacks_sent, u64::from(MAX_NACK_RETRIES));
    }

    #[test]
    fn reordered_original_within_allowance_causes_no_nack_and_allowance_adapts() {
        let t0 = Instant::now();
        let mut r = rx(1000, &[0, 1], t0);
        let t1 = started(&mut r, 0, t0);
        r.handle_rtp(0, &pkt(2), t1).unwrap();
        r.handle_rtp(1, &pkt(1), t1 + 3 * MS).unwrap();
        assert!(run_until(&mut r, t1, t1 + 50 * MS).is_empty());
        assert_eq!(outputs(&mut r, t1 + 50 * MS).len(), 2);
        // A slow link lagging by 40 ms: the first late fills cause NACKs, then the
        // allowance grows past the lag and the NACKs stop.
        let mut t = t1 + 100 * MS;
        let mut nacked_late = 0;
        for i in 0..40u16 {
            let fast = 3 + 2 * i;
            r.handle_rtp(0, &pkt(fast + 1), t).unwrap();
            let n = run_until(&mut r, t, t + 39 * MS);
            if i >= 20 {
                nacked_late += n.len();
            }
            r.handle_rtp(1, &pkt(fast), t + 40 * MS).unwrap();
            outputs(&mut r, t + 40 * MS);
            t += 41 * MS;
        }
        assert_eq!(nacked_late, 0);
        let allowance = r.stats().reorder_allowance_ms;
        assert!((40.0..=250.0).contains(&allowance), "{allowance}");
    }

    #[test]
    fn ssrc_change_resyncs_without_phantom_losses() {
        let t0 = Instant::now();
        let mut r = rx(1000, &[0], t0);
        let t = started(&mut r, 500, t0);
        r.handle_rtp(0, &pkt(502), t).unwrap();
        assert!(outputs(&mut r, t).is_empty());
        // New sender SSRC, random sequence start.
        let other = 0x1234_0000;
        r.handle_rtp(0, &pkt_ssrc(40_000, other), t + MS).unwrap();
        r.handle_rtp(0, &pkt_ssrc(40_001, other), t + MS).unwrap();
        let mut got: Vec<Output> = std::iter::from_fn(|| r.poll_output(t + MS)).collect();
        // The new stream starts after its own start-up window.
        let t2 = t + MS + r.startup_hold();
        got.extend(std::iter::from_fn(|| r.poll_output(t2)));
        // Old stream flushed (501 lost, 502 delivered), then the new one, increasing.
        let seqs: Vec<u64> = got
            .iter()
            .map(|o| match o {
                Output::Packet { seq, .. } | Output::Lost { first: seq, .. } => *seq,
            })
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert!(matches!(got[0], Output::Lost { count: 1, .. }));
        assert_eq!(got.len(), 4);
        // Stragglers of the old SSRC are ignored; no gap NACKs at all.
        r.handle_rtp(0, &pkt(503), t2).unwrap();
        assert!(run_until(&mut r, t2, t2 + 300 * MS).is_empty());
        assert_eq!(r.stats().packets_lost, 1);
        assert_eq!(r.stats().resyncs, 1);
    }

    #[test]
    fn huge_jump_needs_confirmation_then_resyncs() {
        let t0 = Instant::now();
        let mut r = rx(1000, &[0], t0);
        let t = started(&mut r, 0, t0);
        for s in 1..10 {
            r.handle_rtp(0, &pkt(s), t).unwrap();
        }
        assert_eq!(outputs(&mut r, t).len(), 9);
        // A single stray far-away packet changes nothing.
        r.handle_rtp(0, &pkt(30_000), t + MS).unwrap();
        r.handle_rtp(0, &pkt(10), t + MS).unwrap();
        assert_eq!(outputs(&mut r, t + MS), vec![O::P(10, false)]);
        // A restart with the same SSRC: two packets agree.
        r.handle_rtp(0, &pkt(20_000), t + 2 * MS).unwrap();
        r.handle_rtp(0, &pkt(20_001), t + 2 * MS).unwrap();
        let t2 = t + 2 * MS + r.startup_hold();
        assert_eq!(
            outputs(&mut r, t2),
            vec![O::P(20_000, false), O::P(20_001, false)]
        );
        assert!(run_until(&mut r, t2, t2 + 1100 * MS).is_empty());
        assert_eq!(r.stats().packets_lost, 0);
        assert_eq!(r.stats().resyncs, 1);
    }

    #[test]
    fn receiver_reports_per_link_with_lsr_and_loss() {
        let t0 = Instant::now();
        let mut r = rx(1000, &[0, 1], t0);
        // No sender known: no RR.
        r.handle_timeout(t0);
        assert!(r.poll_transmit().is_none());
        let sr = rtcp::write_compound(&[Packet::Sr(rtcp::SenderReport {
            ssrc: SENDER,
            ntp_timestamp: 0x0000_1234_5678_0000,
            ..rtcp::SenderReport::default()
        })]);
        r.handle_rtcp(0, &sr, t0).unwrap();
        for s in [0u16, 1, 3] {
            r.handle_rtp(1, &pkt(s), t0).unwrap();
        }
        r.handle_timeout(t0 + 100 * MS);
        // The periodic reports (the NACK for seq 2 also carries an RR; skip it).
        let out: Vec<Transmit> = std::iter::from_fn(|| r.poll_transmit())
            .filter(|t| {
                rtcp::parse_compound(&t.data)
                    .unwrap()
                    .iter()
                    .any(|p| matches!(p, Packet::EchoRequest(_)))
            })
            .collect();
        assert_eq!(out.iter().map(|t| t.link).collect::<Vec<_>>(), vec![0, 1]);
        for t in &out {
            let pkts = rtcp::parse_compound(&t.data).unwrap();
            let Packet::Rr(rr) = &pkts[0] else {
                panic!("RR first")
            };
            let b = rr.reports[0];
            assert_eq!(b.ssrc, SENDER);
            assert_eq!(b.lsr, 0x1234_5678);
            assert_eq!(b.dlsr, rtcp::duration_to_short(100 * MS));
            assert_eq!(b.cumulative_lost, 1);
            assert_eq!(b.fraction_lost, 64);
            assert_eq!(b.extended_highest_seq, 3);
            assert!(matches!(&pkts[1], Packet::Sdes(c) if c[0].cname == "rx"));
            assert!(matches!(pkts[2], Packet::EchoRequest(_)));
        }
    }

    #[test]
    fn echo_request_from_sender_is_answered() {
        let t0 = Instant::now();
        let mut r = rx(1000, &[0], t0);
        let req = rtcp::write_compound(&[Packet::EchoRequest(Echo {
            ssrc: SENDER,
            timestamp: 77,
            delay_us: 0,
        })]);
        r.handle_rtcp(0, &req, t0).unwrap();
        let t = r.poll_transmit().unwrap();
        assert_eq!((t.link, t.channel), (0, Channel::Rtcp));
        assert!(rtcp::parse_compound(&t.data)
            .unwrap()
            .iter()
            .any(|p| matches!(p, Packet::EchoResponse(e) if e.timestamp == 77)));
    }

    #[test]
    fn errors() {
        let t0 = Instant::now();
        let mut r = rx(1000, &[0], t0);
        assert_eq!(r.handle_rtp(9, &pkt(0), t0), Err(Error::UnknownLink(9)));
        assert_eq!(
            r.handle_rtcp(9, &[0x80, 201, 0, 1, 0, 0, 0, 0], t0),
            Err(Error::UnknownLink(9))
        );
        assert!(matches!(
            r.handle_rtp(0, &[0u8; 5], t0),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            r.handle_rtcp(0, &[0u8; 5], t0),
            Err(Error::Malformed(_))
        ));
        assert_eq!(r.remove_link(0), Ok(()));
        assert_eq!(r.remove_link(0), Err(Error::UnknownLink(0)));
    }

    proptest! {
        /// Any permutation of arrivals, with duplicates and retransmission copies, all
        /// within the latency: every packet comes out exactly once, in order, none lost.
        /// (Arrivals happen after the start-up window, so the stream's first packet is
        /// fed first: a receiver cannot know of packets before the first it sees.)
        #[test]
        fn exactly_once_in_order(
            start in any::<u16>(),
            n in 2usize..120,
            order in proptest::collection::vec(any::<u32>(), 240),
            dups in proptest::collection::vec((any::<u16>(), any::<bool>(), any::<u8>()), 0..60),
            gaps in proptest::collection::vec(0u64..4, 240),
        ) {
            let t0 = Instant::now();
            let mut r = rx(1000, &[0, 1, 2], t0);
            let mut got: Vec<u16> = Vec::new();
            let mut t = started(&mut r, start, t0);
            got.push(start);
            let mut rest: Vec<(u32, u16)> = (1..n as u16).map(|i| (order[i as usize], i)).collect();
            rest.sort();
            let mut arrivals: Vec<(u16, bool, LinkId)> =
                rest.iter().map(|&(k, i)| (i, false, (k % 3) as LinkId)).collect();
            for &(pos, as_rtx, link) in &dups {
                let at = usize::from(pos) % (arrivals.len() + 1);
                let s = (u32::from(pos) % n as u32) as u16;
                arrivals.insert(at, (s, as_rtx, LinkId::from(link % 3)));
            }
            for (i, &(off, as_rtx, link)) in arrivals.iter().enumerate() {
                t += Duration::from_millis(gaps[i % gaps.len()]);
                let s = start.wrapping_add(off);
                let d = if as_rtx { rtp::to_retransmission(&pkt(s)) } else { pkt(s) };
                r.handle_rtp(link, &d, t).unwrap();
                if r.poll_timeout().is_some_and(|d| d <= t) {
                    r.handle_timeout(t);
                }
                while let Some(o) = r.poll_output(t) {
                    match o {
                        Output::Packet { seq, .. } => got.push(seq as u16),
                        Output::Lost { .. } => prop_assert!(false, "lost within latency"),
                    }
                }
            }
            let expected: Vec<u16> = (0..n as u16).map(|i| start.wrapping_add(i)).collect();
            prop_assert_eq!(got, expected);
            let st = r.stats();
            prop_assert_eq!(st.packets_delivered, n as u64);
            prop_assert_eq!(st.packets_lost, 0);
            prop_assert_eq!(st.duplicates, dups.len() as u64);
        }
    }
}
