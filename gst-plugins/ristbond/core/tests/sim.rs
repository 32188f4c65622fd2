//! Deterministic simulation: a `Sender` and a `Receiver` wired over 2–3 simulated
//! links in virtual time (per-link one-way delay, jitter that reorders, random loss in
//! both directions), with RTCP both ways. Checks that every packet is delivered exactly
//! once and in order across the 16-bit sequence wrap, that NACK repair does the work,
//! and that repair traffic stays proportionate.
//!
//! Two things no receiver can do are kept out of the loss model: the stream's very
//! first packet is never dropped (nothing tells a receiver about packets before the
//! first one it sees), and the sender keeps streaming a short tail after the packets
//! that are checked (a loss is only noticed when a later packet arrives; a live stream
//! always has one).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use ristbond_core::receiver::{Output, Receiver, ReceiverConfig, ReceiverStats};
use ristbond_core::sender::{Sender, SenderConfig, SenderStats};
use ristbond_core::{Channel, LinkId, Transmit};

/// splitmix64: small, deterministic, good enough for loss/jitter draws.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// RTP header size of the datagrams the sender builds.
const HEADER: usize = 12;
/// Packets streamed after the checked ones (see the module doc).
const TAIL: u32 = 20;

#[derive(Clone, Copy)]
struct LinkModel {
    /// One-way delay, ms.
    delay_ms: u64,
    /// Extra uniform delay in [0, jitter_ms] (µs resolution) per datagram; reorders.
    jitter_ms: u64,
    /// Loss probability per datagram, both directions.
    loss: f64,
}

struct Scenario {
    links: Vec<LinkModel>,
    latency_ms: u64,
    packets: u32,
    interval: Duration,
    initial_seq: u16,
    seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Receiver,
    Sender,
}

struct Event {
    at: Instant,
    order: u64,
    dest: Dest,
    t: Transmit,
}

impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.order) == (o.at, o.order)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Event {
    fn cmp(&self, o: &Self) -> Ordering {
        // Min-heap on (time, insertion order).
        (o.at, o.order).cmp(&(self.at, self.order))
    }
}

struct Outcome {
    /// Payload indices in delivery order.
    delivered: Vec<u32>,
    /// Extended sequence numbers in delivery order.
    seqs: Vec<u64>,
    lost: u64,
    recovered_outputs: u64,
    /// Original RTP packets the link model dropped.
    originals_dropped: u64,
    sender: SenderStats,
    receiver: ReceiverStats,
}

fn payload(index: u32) -> Vec<u8> {
    let mut p = vec![0xffu8; 188 * 7];
    for (i, ts) in p.chunks_mut(188).enumerate() {
        ts[0] = 0x47;
        ts[1] = 0x01;
        ts[2] = 0x00;
        ts[3] = 0x10 | ((index as usize * 7 + i) & 0x0f) as u8;
    }
    p[4..8].copy_from_slice(&index.to_be_bytes());
    p
}

fn run(s: &Scenario) -> Outcome {
    let t0 = Instant::now();
    let mut rng = Rng(s.seed);
    let latency = Duration::from_millis(s.latency_ms);
    let mut tx = Sender::with_initial_seq(
        SenderConfig {
            ssrc: 0x0B0A_1D00,
            cname: "sim-sender".into(),
            retransmit_buffer: latency,
            rtcp_interval: Duration::from_millis(100),
        },
        s.initial_seq,
        t0,
    );
    let mut rx = Receiver::new(
        ReceiverConfig {
            latency,
            ssrc: 0x0000_5EED,
            cname: "sim-receiver".into(),
            rtcp_interval: Duration::from_millis(100),
        },
        t0,
    );
    for i in 0..s.links.len() {
        tx.add_link(i as LinkId, 1, t0);
        rx.add_link(i as LinkId, t0);
    }

    let mut heap = BinaryHeap::new();
    let mut order = 0u64;
    let mut out = Outcome {
        delivered: Vec::new(),
        seqs: Vec::new(),
        lost: 0,
        recovered_outputs: 0,
        originals_dropped: 0,
        sender: SenderStats::default(),
        receiver: ReceiverStats::default(),
    };
    let mut sent = 0u32;
    let total = s.packets + TAIL;
    let mut next_payload = t0;
    let end = t0 + s.interval * total + latency + Duration::from_millis(500);
    let mut t = t0;
    let mut stuck = 0;

    loop {
        // Wire everything queued at `t` through the link models.
        let mut transmits: Vec<(Dest, Transmit)> = Vec::new();
        transmits.extend(std::iter::from_fn(|| tx.poll_transmit()).map(|x| (Dest::Receiver, x)));
        transmits.extend(std::iter::from_fn(|| rx.poll_transmit()).map(|x| (Dest::Sender, x)));
        for (dest, x) in transmits {
            let m = s.links[x.link as usize];
            let rtp_to_rx = dest == Dest::Receiver && x.channel == Channel::Rtp;
            let index = rtp_to_rx
                .then(|| u32::from_be_bytes(x.data[HEADER + 4..HEADER + 8].try_into().unwrap()));
            if rng.unit() < m.loss && index != Some(0) {
                let original = rtp_to_rx && x.data[11] & 1 == 0;
                if original && index.is_some_and(|i| i < s.packets) {
                    out.originals_dropped += 1;
                }
                continue;
            }
            let jitter = Duration::from_micros((rng.unit() * m.jitter_ms as f64 * 1000.0) as u64);
            heap.push(Event {
                at: t + Duration::from_millis(m.delay_ms) + jitter,
                order,
                dest,
                t: x,
            });
            order += 1;
        }
        while let Some(o) = rx.poll_output(t) {
            match o {
                Output::Packet {
                    seq,
                    payload,
                    recovered,
                    ..
                } => {
                    out.delivered
                        .push(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                    out.seqs.push(seq);
                    out.recovered_outputs += u64::from(recovered);
                }
                Output::Lost { first, count } => {
                    // Only losses among the checked packets count.
                    let checked_end = out
                        .seqs
                        .first()
                        .map_or(u64::MAX, |f| f + u64::from(s.packets));
                    if first < checked_end {
                        out.lost += count.min(checked_end - first);
                    }
                }
            }
        }

        // Advance virtual time to the next thing that happens.
        let mut next = end;
        if sent < total {
            next = next.min(next_payload);
        }
        if let Some(e) = heap.peek() {
            next = next.min(e.at);
        }
        for d in [tx.poll_timeout(), rx.poll_timeout()].into_iter().flatten() {
            next = next.min(d);
        }
        let next = next.max(t);
        if next == t {
            stuck += 1;
            assert!(stuck < 10_000, "simulation stuck at {:?}", t - t0);
        } else {
            stuck = 0;
        }
        t = next;
        if t >= end {
            break;
        }

        if sent < total && next_payload <= t {
            tx.send_payload(&payload(sent), sent.wrapping_mul(1800), t)
                .unwrap();
            sent += 1;
            next_payload += s.interval;
        }
        while heap.peek().is_some_and(|e| e.at <= t) {
            let e = heap.pop().unwrap();
            let link = e.t.link;
            match (e.dest, e.t.channel) {
                (Dest::Receiver, Channel::Rtp) => rx.handle_rtp(link, &e.t.data, t).unwrap(),
                (Dest::Receiver, Channel::Rtcp) => rx.handle_rtcp(link, &e.t.data, t).unwrap(),
                (Dest::Sender, _) => tx.handle_rtcp(link, &e.t.data, t).unwrap(),
            }
        }
        if tx.poll_timeout().is_some_and(|d| d <= t) {
            tx.handle_timeout(t);
        }
        if rx.poll_timeout().is_some_and(|d| d <= t) {
            rx.handle_timeout(t);
        }
    }
    out.sender = tx.stats();
    out.receiver = rx.stats();
    out
}

fn assert_complete(s: &Scenario, o: &Outcome) {
    let n = s.packets as usize;
    let expected: Vec<u32> = (0..s.packets).collect();
    assert_eq!(o.lost, 0, "packets lost: {}", o.lost);
    assert!(
        o.delivered.len() >= n,
        "delivered only {}",
        o.delivered.len()
    );
    let missing: Vec<u32> = expected
        .iter()
        .copied()
        .filter(|i| !o.delivered[..n].contains(i))
        .collect();
    assert!(
        o.delivered[..n] == expected[..],
        "not exactly once in order; missing {missing:?}"
    );
    assert!(
        o.seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "extended sequence numbers not contiguous"
    );
    // The wire sequence crossed 65535 -> 0.
    let first = o.seqs[0] as u16;
    let last = o.seqs[n - 1] as u16;
    assert!(last < first, "sequence did not wrap: {first} .. {last}");
}

fn three_links() -> Scenario {
    Scenario {
        links: vec![
            LinkModel {
                delay_ms: 20,
                jitter_ms: 5,
                loss: 0.05,
            },
            LinkModel {
                delay_ms: 35,
                jitter_ms: 5,
                loss: 0.05,
            },
            LinkModel {
                delay_ms: 60,
                jitter_ms: 10,
                loss: 0.05,
            },
        ],
        latency_ms: 500,
        packets: 3000,
        interval: Duration::from_millis(1),
        initial_seq: 65535 - 1200,
        seed: 0x5EED_0001,
    }
}

#[test]
fn three_lossy_links_deliver_everything_in_order_across_wrap() {
    let s = three_links();
    let o = run(&s);
    assert_complete(&s, &o);
    // Repair did the work: roughly 5 % of originals were dropped and recovered.
    assert!(o.originals_dropped > 100, "{}", o.originals_dropped);
    assert_eq!(o.receiver.packets_recovered, o.recovered_outputs);
    assert!(o.recovered_outputs >= o.originals_dropped);
    // Repair traffic is proportionate: no NACK storm from cross-link reordering, no
    // double repairs of one loss.
    assert!(
        o.sender.packets_retransmitted <= o.originals_dropped * 3 / 2,
        "retransmitted {} for {} dropped",
        o.sender.packets_retransmitted,
        o.originals_dropped
    );
    assert!(
        o.receiver.nacks_sent <= o.originals_dropped * 2,
        "NACKed {} for {} dropped",
        o.receiver.nacks_sent,
        o.originals_dropped
    );
    // RTT from RR LSR/DLSR matches the simulated path (2 x one-way + jitter).
    for (l, m) in o.sender.links.iter().zip(&s.links) {
        let rtt = l.rtt_ms.expect("RTT measured");
        let lo = 2.0 * m.delay_ms as f64 - 1.0;
        let hi = 2.0 * (m.delay_ms + m.jitter_ms) as f64 + 1.0;
        assert!((lo..=hi).contains(&rtt), "link {} rtt {rtt}", l.id);
    }
}

#[test]
fn one_dead_link_is_repaired_over_the_others() {
    let mut s = three_links();
    s.links[2].loss = 1.0;
    s.seed = 0x5EED_0002;
    let o = run(&s);
    assert_complete(&s, &o);
    // A third of the originals went into the dead link and were all repaired.
    assert!(o.originals_dropped >= u64::from(s.packets) / 3);
    // Repairs never used the dead link (it is never heard from).
    assert_eq!(o.sender.links[2].retransmitted_packets, 0);
    assert!(o.sender.links[2].nacks_received == 0);
    assert_eq!(o.receiver.links[2].received_packets, 0);
}

#[test]
fn tight_latency_200ms_on_40ms_rtt() {
    let s = Scenario {
        links: vec![
            LinkModel {
                delay_ms: 20,
                jitter_ms: 3,
                loss: 0.05,
            },
            LinkModel {
                delay_ms: 25,
                jitter_ms: 3,
                loss: 0.05,
            },
        ],
        latency_ms: 200,
        packets: 2500,
        interval: Duration::from_millis(1),
        initial_seq: 64_000,
        seed: 0x5EED_0003,
    };
    let o = run(&s);
    assert_complete(&s, &o);
    assert!(o.sender.packets_retransmitted > 0);
}

#[test]
fn simulation_is_deterministic() {
    let mut s = three_links();
    s.packets = 500;
    s.initial_seq = 65_300;
    let a = run(&s);
    let b = run(&s);
    assert_eq!(a.originals_dropped, b.originals_dropped);
    assert_eq!(
        a.sender.packets_retransmitted,
        b.sender.packets_retransmitted
    );
    assert_eq!(a.receiver.nacks_sent, b.receiver.nacks_sent);
}
