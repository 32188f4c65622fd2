//! The bonding sender (TR-06-1 §5.2, §5.3; RFC 3550 §6.4.1 sender reports).
//!
//! - Originals: one RTP sequence space and SSRC (even) over all links; each packet goes
//!   to one link chosen by smooth weighted round-robin (private `sched` module).
//! - Retransmission buffer: every sent datagram is kept for
//!   [`SenderConfig::retransmit_buffer`]. A NACK (generic RFC 4585 or RIST range)
//!   resends it verbatim with SSRC | 1 (TR-06-1 §5.3.2) on the *best live link*: the
//!   lowest smoothed RTT among links heard from (any RTCP) within the last
//!   1 s, else the link the NACK came on. The same sequence number is not resent again
//!   within a guard of `max(10 ms, rtt/2)` (capped at 250 ms), so one loss NACKed on two
//!   links costs one repair. A later repeat request for the same number (its repair
//!   was lost) prefers another live link than the previous repair used.
//! - NACK sequence numbers are extended against the newest sent packet; numbers
//!   outside the buffer count as `retransmit_misses`. At most 4096 numbers are
//!   honoured per RTCP datagram. NACKs naming another media SSRC are ignored (0 and
//!   `ssrc | 1` are accepted).
//! - RTCP: SR + SDES CNAME on every link every [`SenderConfig::rtcp_interval`], and
//!   immediately when a link is added (librist receivers wait for SDES before accepting
//!   data). RTT per link from RR LSR/DLSR (RFC 3550 §6.4.1), smoothed with gain 1/8.
//!   RIST RTT echo requests are answered (TR-06-1 §5.2.6).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::rtcp::{self, Echo, NtpClock, Packet, ReportBlock, SdesChunk, SenderReport};
use crate::sched::WeightedRoundRobin;
use crate::{rtp, seq, Channel, Error, LinkId, Transmit};

/// A link is "live" for retransmissions if any RTCP arrived on it this recently.
const LIVE_WINDOW: Duration = Duration::from_secs(1);
/// Shortest repeat guard for retransmitting one sequence number.
const MIN_RTX_GUARD: Duration = Duration::from_millis(10);
/// Longest repeat guard for retransmitting one sequence number.
const MAX_RTX_GUARD: Duration = Duration::from_millis(250);
/// RTT samples above this are treated as garbage (bad LSR/DLSR).
const MAX_RTT: Duration = Duration::from_secs(30);
/// Most sequence numbers honoured from one RTCP datagram (librist uses the same cap).
const MAX_NACKED_PER_DATAGRAM: usize = 4096;

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
    /// NACKed packets not resent because the same sequence number was resent within the
    /// repeat guard (`max(10 ms, rtt/2)`), e.g. one loss NACKed on two links.
    pub retransmits_suppressed: u64,
}

#[derive(Debug)]
struct SentPacket {
    sent_at: Instant,
    datagram: Vec<u8>,
    /// When and on which link this sequence number was last retransmitted.
    last_retransmit: Option<(Instant, LinkId)>,
}

#[derive(Debug)]
struct LinkState {
    stats: LinkStats,
    next_sr: Instant,
    last_heard: Option<Instant>,
    srtt: Option<Duration>,
}

/// The bonding sender state machine. One RTP sequence space and SSRC across all links.
#[derive(Debug)]
pub struct Sender {
    config: SenderConfig,
    clock: NtpClock,
    /// Extended sequence number of the next original packet.
    next_seq: u64,
    links: BTreeMap<LinkId, LinkState>,
    sched: WeightedRoundRobin,
    /// Sent packets, contiguous in sequence, oldest first.
    history: VecDeque<SentPacket>,
    /// Extended sequence number of `history[0]`.
    history_first: u64,
    queue: VecDeque<Transmit>,
    packets_sent: u64,
    packets_retransmitted: u64,
    packets_dropped: u64,
    retransmit_misses: u64,
    retransmits_suppressed: u64,
    payload_octets: u64,
    /// Last RTP timestamp sent and when, for SR timestamp extrapolation.
    last_rtp: Option<(u32, Instant)>,
}

impl Sender {
    /// A sender with no links yet. An odd `config.ssrc` has its LSB cleared (the LSB
    /// marks retransmissions). The first sequence number is 0.
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
            clock: NtpClock::new(now),
            next_seq: first,
            links: BTreeMap::new(),
            sched: WeightedRoundRobin::default(),
            history: VecDeque::new(),
            history_first: first,
            queue: VecDeque::new(),
            packets_sent: 0,
            packets_retransmitted: 0,
            packets_dropped: 0,
            retransmit_misses: 0,
            retransmits_suppressed: 0,
            payload_octets: 0,
            last_rtp: None,
        }
    }

    /// SSRC of original packets (even).
    pub fn ssrc(&self) -> u32 {
        self.config.ssrc
    }

    /// Add a link with a scheduling weight (>= 1); packets are spread over links in
    /// proportion to their weights (smooth weighted round-robin).
    /// Adding an existing id only changes its weight. A new link gets an SR + SDES
    /// right away (a `Transmit` on its RTCP channel).
    pub fn add_link(&mut self, id: LinkId, weight: u32, now: Instant) {
        let weight = weight.max(1);
        self.sched.set(id, weight);
        if let Some(l) = self.links.get_mut(&id) {
            l.stats.weight = weight;
            return;
        }
        self.links.insert(
            id,
            LinkState {
                stats: LinkStats {
                    id,
                    weight,
                    ..LinkStats::default()
                },
                next_sr: now + self.config.rtcp_interval,
                last_heard: None,
                srtt: None,
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
        self.sched.remove(id);
        self.queue.retain(|t| t.link != id);
        Ok(())
    }

    /// Packetize one RTP payload (1..=7 whole 188-byte TS packets) with its 90 kHz RTP
    /// timestamp, assign the next sequence number, keep it for retransmission and
    /// schedule it on one link. Errors: [`Error::BadPayloadSize`]; with no link the
    /// packet is counted as dropped, not an error.
    pub fn send_payload(
        &mut self,
        payload: &[u8],
        rtp_timestamp: u32,
        now: Instant,
    ) -> Result<(), Error> {
        rtp::check_payload_size(payload.len())?;
        self.expire(now);
        let Some(link) = self.sched.pick() else {
            // No sequence number is used up, so the receiver sees no gap.
            self.packets_dropped += 1;
            return Ok(());
        };
        let datagram = rtp::build(
            self.next_seq as u16,
            rtp_timestamp,
            self.config.ssrc,
            payload,
        )?;
        if let Some(l) = self.links.get_mut(&link) {
            l.stats.sent_packets += 1;
            l.stats.sent_bytes += datagram.len() as u64;
        }
        self.packets_sent += 1;
        self.payload_octets += payload.len() as u64;
        self.last_rtp = Some((rtp_timestamp, now));
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
            last_retransmit: None,
        });
        self.next_seq += 1;
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
            l.last_heard = Some(now);
        }
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
        Ok(())
    }

    /// Next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    /// When [`Sender::handle_timeout`] must be called next (next SR, buffer expiry).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self
            .history
            .front()
            .map(|p| p.sent_at + self.config.retransmit_buffer);
        let sr = self.links.values().map(|l| l.next_sr).min();
        match (expiry, sr) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Run timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        let due: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.next_sr <= now)
            .map(|(&id, _)| id)
            .collect();
        if due.is_empty() {
            return;
        }
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

    /// Current counters.
    pub fn stats(&self) -> SenderStats {
        SenderStats {
            packets_sent: self.packets_sent,
            packets_retransmitted: self.packets_retransmitted,
            packets_dropped_deadline: self.packets_dropped,
            retransmit_misses: self.retransmit_misses,
            retransmits_suppressed: self.retransmits_suppressed,
            links: self
                .links
                .values()
                .map(|l| LinkStats {
                    rtt_ms: l.srtt.map(|d| d.as_secs_f64() * 1000.0),
                    weight: self.sched.weight(l.stats.id).unwrap_or(l.stats.weight),
                    ..l.stats.clone()
                })
                .collect(),
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
    }

    fn nack_is_for_us(&self, media_ssrc: u32) -> bool {
        media_ssrc == 0 || rtp::flow_ssrc(media_ssrc) == self.config.ssrc
    }

    fn handle_report_blocks(&mut self, link: LinkId, blocks: &[ReportBlock], now: Instant) {
        let ours = self.config.ssrc;
        let a = rtcp::ntp_short(self.clock.ntp(now));
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        for b in blocks.iter().filter(|b| rtp::flow_ssrc(b.ssrc) == ours) {
            l.stats.loss_rate = f64::from(b.fraction_lost) / 256.0;
            if b.lsr == 0 {
                continue;
            }
            // RFC 3550 §6.4.1: RTT = A - LSR - DLSR, in 1/65536 s.
            let rtt = rtcp::short_to_duration(a.wrapping_sub(b.lsr).wrapping_sub(b.dlsr));
            if rtt > MAX_RTT {
                continue;
            }
            l.srtt = Some(match l.srtt {
                None => rtt,
                Some(s) => (s * 7 + rtt) / 8,
            });
        }
    }

    /// Best link for a retransmission: lowest smoothed RTT among live links, other
    /// than `avoid` when another live link exists.
    fn best_live_link(&self, now: Instant, avoid: Option<LinkId>) -> Option<LinkId> {
        let mut live: Vec<(Duration, LinkId)> = self
            .links
            .iter()
            .filter(|(_, l)| {
                l.last_heard
                    .is_some_and(|t| now.saturating_duration_since(t) <= LIVE_WINDOW)
            })
            .map(|(&id, l)| (l.srtt.unwrap_or(Duration::MAX), id))
            .collect();
        live.sort();
        live.iter()
            .find(|&&(_, id)| Some(id) != avoid)
            .or(live.first())
            .map(|&(_, id)| id)
    }

    fn retransmit(&mut self, nack_link: LinkId, seq16: u16, now: Instant) {
        if let Some(l) = self.links.get_mut(&nack_link) {
            l.stats.nacks_received += 1;
        }
        let newest = self.next_seq - 1;
        let ext = seq::extend_near(newest, seq16);
        if ext < self.history_first || ext > newest || self.history.is_empty() {
            self.retransmit_misses += 1;
            return;
        }
        let index = (ext - self.history_first) as usize;
        let Some(previous) = self.history.get(index).map(|e| e.last_retransmit) else {
            self.retransmit_misses += 1;
            return;
        };
        // A repeated request means the previous repair (or its NACK) was lost: prefer a
        // different live link for link diversity.
        let target = self
            .best_live_link(now, previous.map(|(_, l)| l))
            .unwrap_or(nack_link);
        let guard = self
            .links
            .get(&target)
            .and_then(|l| l.srtt)
            .map_or(MIN_RTX_GUARD, |rtt| {
                (rtt / 2).clamp(MIN_RTX_GUARD, MAX_RTX_GUARD)
            });
        if previous.is_some_and(|(t, _)| now.saturating_duration_since(t) < guard) {
            self.retransmits_suppressed += 1;
            return;
        }
        let Some(entry) = self.history.get_mut(index) else {
            return;
        };
        entry.last_retransmit = Some((now, target));
        let data = rtp::to_retransmission(&entry.datagram);
        if let Some(l) = self.links.get_mut(&target) {
            l.stats.retransmitted_packets += 1;
            l.stats.sent_bytes += data.len() as u64;
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
        s.add_link(3, 1, t0);
        let out = drain(&mut s);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].channel, Channel::Rtcp);
        let pkts = rtcp::parse_compound(&out[0].data).unwrap();
        assert!(matches!(&pkts[0], Packet::Sr(sr) if sr.ssrc == SSRC));
        assert!(matches!(&pkts[1], Packet::Sdes(c) if c[0].cname == "sender"));
    }

    #[test]
    fn round_robin_and_one_sequence_space() {
        let t0 = Instant::now();
        let mut s = Sender::with_initial_seq(config(), 65534, t0);
        s.add_link(0, 1, t0);
        s.add_link(1, 1, t0);
        drain(&mut s);
        for i in 0..4 {
            s.send_payload(&payload(), i * 3000, t0).unwrap();
        }
        let sent = rtp_of(&drain(&mut s));
        assert_eq!(
            sent,
            vec![
                (0, 65534, SSRC),
                (1, 65535, SSRC),
                (0, 0, SSRC),
                (1, 1, SSRC)
            ]
        );
        let st = s.stats();
        assert_eq!(st.packets_sent, 4);
        assert_eq!(st.links[0].sent_packets, 2);
        assert_eq!(st.links[1].sent_bytes, 2 * (12 + 7 * 188));
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
        s.add_link(0, 1, t0);
        s.send_payload(&payload(), 0, t0).unwrap();
        assert_eq!(rtp_of(&drain(&mut s)), vec![(0, 0, SSRC)]);
    }

    #[test]
    fn generic_nack_retransmits_with_ssrc_lsb_and_guard() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(), t0);
        s.add_link(0, 1, t0);
        s.add_link(1, 1, t0);
        for i in 0..10 {
            s.send_payload(&payload(), i, t0).unwrap();
        }
        drain(&mut s);
        let t1 = t0 + Duration::from_millis(50);
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

    #[test]
    fn range_nack_and_misses() {
        let t0 = Instant::now();
        let mut s = Sender::new(config(), t0);
        s.add_link(0, 1, t0);
        for i in 0..5 {
            s.send_payload(&payload(), i, t0).unwrap();
        }
        drain(&mut s);
        let n = rtcp::write_compound(&[Packet::RangeNack(RangeNack {
            ssrc: SSRC,
            ranges: vec![NackRange { start: 3, extra: 3 }],
        })]);
        s.handle_rtcp(0, &n, t0).unwrap();
        // 3 and 4 exist; 5 and 6 were never sent.
        assert_eq!(rtp_of(&drain(&mut s)).len(), 2);
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
        s.add_link(0, 1, t0);
        s.add_link(1, 1, t0);
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
        assert_eq!(st.links[0].loss_rate, 0.25);
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
        s.add_link(0, 1, t0);
        s.add_link(5, 2, t0);
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(100)));
        s.handle_timeout(t0 + Duration::from_millis(100));
        let out = drain(&mut s);
        assert_eq!(out.iter().map(|t| t.link).collect::<Vec<_>>(), vec![0, 5]);
        assert!(out.iter().all(|t| t.channel == Channel::Rtcp));
        assert_eq!(s.stats().links[1].weight, 2);
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
        s.add_link(0, 1, t0);
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
