//! Sans-IO model of one direction of one emulated link ("path").
//!
//! A datagram goes through, in order: the link state (a `Down` link drops everything),
//! a drop-tail FIFO of limited size, the bottleneck (fixed rate, Mahimahi trace, or
//! unlimited), the loss process (the radio loses what it transmitted, so lost packets
//! still used capacity), then propagation delay plus jitter. Time is passed in as a
//! [`Duration`] since the emulator's epoch; nothing here reads a clock or touches a
//! socket. Drive it like quinn-proto: [`Path::enqueue`] on arrival, [`Path::poll`] at
//! or after [`Path::next_wakeup`].
//!
//! Sizes: capacity and queue count the IPv4 datagram (UDP payload +
//! [`IP_UDP_OVERHEAD`] bytes), as Mahimahi does with the IP packets of its TUN device;
//! the byte counters count UDP payload.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::loss::{GilbertElliott, LossProcess};
use crate::trace::{Trace, OPPORTUNITY_BYTES};

/// IPv4 (20) + UDP (8) header bytes added to a UDP payload for capacity and queue
/// accounting.
pub const IP_UDP_OVERHEAD: u64 = 28;

/// Smallest queue a `Millis` limit resolves to (two MTU-sized packets), so a slow link
/// with a short queue still holds a packet being served and one waiting.
pub const MIN_QUEUE_BYTES: u64 = 3000;

/// How fast the bottleneck drains the queue.
#[derive(Debug, Clone)]
pub enum Capacity {
    /// No bottleneck: a datagram leaves the queue as it arrives (reverse direction).
    Unlimited,
    /// Constant rate (bit/s of IP datagrams), serialising one datagram after another.
    Fixed {
        /// Rate in bit/s (> 0).
        bps: u64,
    },
    /// Mahimahi trace: at each opportunity [`OPPORTUNITY_BYTES`] × `scale` bytes may
    /// leave; credit an opportunity does not use is lost (as in `mm-link`).
    Trace {
        /// The trace.
        trace: Arc<Trace>,
        /// Link time 0 is this far into the trace.
        offset: Duration,
        /// Multiplier of the bytes per opportunity (1.0 = the trace as recorded).
        scale: f64,
    },
}

impl Capacity {
    /// Nominal rate (bit/s): the fixed rate, or the trace's mean × scale; `None` when
    /// unlimited.
    pub fn nominal_bps(&self) -> Option<f64> {
        match self {
            Capacity::Unlimited => None,
            Capacity::Fixed { bps } => Some(*bps as f64),
            Capacity::Trace { trace, scale, .. } => Some(trace.mean_bps() * scale),
        }
    }
}

/// Size of the drop-tail queue in front of the bottleneck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueLimit {
    /// No limit.
    Unlimited,
    /// At most this many bytes (IP datagrams) waiting.
    Bytes(u64),
    /// This many ms of the nominal rate ([`Capacity::nominal_bps`]), at least
    /// [`MIN_QUEUE_BYTES`]; recomputed when an event changes the rate.
    Millis(u64),
}

/// What a scheduled [`Event`] does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Hard down: queued and in-flight datagrams are lost, arrivals are dropped.
    Down,
    /// Back up.
    Up,
    /// Switch to a fixed rate (bit/s).
    Rate(u64),
    /// Change the bytes-per-opportunity multiplier of a trace link.
    TraceScale(f64),
    /// Change the independent loss probability (0..=1).
    Loss(f64),
    /// Change the one-way propagation delay.
    Delay(Duration),
}

/// An [`Action`] at a time since the emulator's epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When (since the epoch).
    pub at: Duration,
    /// What.
    pub action: Action,
}

/// Settings of one path (one direction of one link).
#[derive(Debug, Clone)]
pub struct PathConfig {
    /// Bottleneck.
    pub capacity: Capacity,
    /// Queue in front of it.
    pub queue: QueueLimit,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Jitter: each datagram's delay is `delay` + uniform(−jitter, +jitter), at least 0.
    pub jitter: Duration,
    /// Allow jitter to reorder datagrams (otherwise a datagram never overtakes the
    /// one before it, as on a FIFO radio bearer).
    pub reorder: bool,
    /// Independent loss probability (0..=1).
    pub loss: f64,
    /// Optional bursty loss on top.
    pub gilbert_elliott: Option<GilbertElliott>,
    /// Seed of the loss and jitter generators.
    pub seed: u64,
    /// Schedule; sorted by the constructor.
    pub events: Vec<Event>,
}

impl Default for PathConfig {
    fn default() -> Self {
        Self {
            capacity: Capacity::Unlimited,
            queue: QueueLimit::Unlimited,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: false,
            loss: 0.0,
            gilbert_elliott: None,
            seed: 1,
            events: Vec::new(),
        }
    }
}

/// Counters of one path; written as JSON at the emulator's exit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Datagrams that arrived at the link.
    pub received: u64,
    /// UDP payload bytes that arrived.
    pub received_bytes: u64,
    /// Datagrams accepted into the queue.
    pub enqueued: u64,
    /// Dropped at the tail of a full queue.
    pub dropped_queue: u64,
    /// Lost by the loss process.
    pub dropped_loss: u64,
    /// Lost because the link was down (arrivals, queued and in flight).
    pub dropped_down: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// UDP payload bytes delivered.
    pub delivered_bytes: u64,
    /// Longest time a datagram waited in the queue (ms).
    pub max_queue_delay_ms: f64,
    /// Most bytes (IP datagrams) ever waiting in the queue.
    pub max_queue_bytes: u64,
}

/// Outcome of [`Path::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Accepted (it may still be lost later).
    Queued,
    /// Dropped at the tail: the queue is full.
    DroppedQueue,
    /// Dropped: the link is down.
    DroppedDown,
}

#[derive(Debug)]
struct Queued<T> {
    item: T,
    payload: u64,
    wire: u64,
    /// Bytes still to serve (trace mode serves a datagram across opportunities).
    left: u64,
    arrival: Duration,
}

#[derive(Debug)]
struct InFlight<T> {
    at: Duration,
    seq: u64,
    payload: u64,
    item: T,
}

impl<T> PartialEq for InFlight<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for InFlight<T> {}
impl<T> PartialOrd for InFlight<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for InFlight<T> {
    /// Reversed: the max-heap pops the earliest (then first-sent) datagram.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One direction of one emulated link, generic over what it carries (`T`: the relay's
/// datagram and its port).
#[derive(Debug)]
pub struct Path<T> {
    capacity: Capacity,
    queue_limit: QueueLimit,
    limit_bytes: Option<u64>,
    delay: Duration,
    jitter: Duration,
    reorder: bool,
    loss: LossProcess,
    jitter_rng: SmallRng,
    events: VecDeque<Event>,
    up: bool,
    queue: VecDeque<Queued<T>>,
    queue_bytes: u64,
    /// Fixed rate: end of the datagram being serialised.
    busy_until: Duration,
    /// Trace: number (trace time) of the next opportunity not yet used.
    next_op: u64,
    inflight: BinaryHeap<InFlight<T>>,
    last_delivery: Duration,
    seq: u64,
    counters: Counters,
}

fn tx_time(wire_bytes: u64, bps: u64) -> Duration {
    Duration::from_nanos(
        (u128::from(wire_bytes) * 8 * 1_000_000_000 / u128::from(bps.max(1))) as u64,
    )
}

fn ceil_ms(t: Duration) -> u64 {
    let ms = t.as_millis() as u64;
    if Duration::from_millis(ms) < t {
        ms + 1
    } else {
        ms
    }
}

impl<T> Path<T> {
    /// A path in state Up at time 0.
    pub fn new(config: PathConfig) -> Self {
        let mut events = config.events;
        events.sort_by_key(|e| e.at);
        let next_op = match &config.capacity {
            Capacity::Trace { trace, offset, .. } => trace.first_at_or_after(ceil_ms(*offset)),
            _ => 0,
        };
        let mut path = Self {
            capacity: config.capacity,
            queue_limit: config.queue,
            limit_bytes: None,
            delay: config.delay,
            jitter: config.jitter,
            reorder: config.reorder,
            loss: LossProcess::new(config.loss, config.gilbert_elliott, config.seed),
            jitter_rng: SmallRng::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15),
            events: events.into(),
            up: true,
            queue: VecDeque::new(),
            queue_bytes: 0,
            busy_until: Duration::ZERO,
            next_op,
            inflight: BinaryHeap::new(),
            last_delivery: Duration::ZERO,
            seq: 0,
            counters: Counters::default(),
        };
        path.limit_bytes = path.compute_limit();
        path
    }

    fn compute_limit(&self) -> Option<u64> {
        match self.queue_limit {
            QueueLimit::Unlimited => None,
            QueueLimit::Bytes(b) => Some(b),
            QueueLimit::Millis(ms) => self
                .capacity
                .nominal_bps()
                .map(|bps| ((bps * ms as f64 / 8000.0) as u64).max(MIN_QUEUE_BYTES)),
        }
    }

    /// Current queue limit in bytes (`None`: unlimited).
    pub fn queue_limit_bytes(&self) -> Option<u64> {
        self.limit_bytes
    }

    /// Whether the link is up at the last time passed in.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A datagram of `payload_bytes` (UDP payload) arrives at `now`.
    pub fn enqueue(&mut self, now: Duration, item: T, payload_bytes: usize) -> Admission {
        self.advance(now);
        let payload = payload_bytes as u64;
        self.counters.received += 1;
        self.counters.received_bytes += payload;
        if !self.up {
            self.counters.dropped_down += 1;
            return Admission::DroppedDown;
        }
        let wire = payload + IP_UDP_OVERHEAD;
        if let Capacity::Unlimited = self.capacity {
            self.counters.enqueued += 1;
            self.depart(now, now, item, payload);
            return Admission::Queued;
        }
        if let Some(limit) = self.limit_bytes {
            if self.queue_bytes + wire > limit {
                self.counters.dropped_queue += 1;
                return Admission::DroppedQueue;
            }
        }
        self.queue.push_back(Queued {
            item,
            payload,
            wire,
            left: wire,
            arrival: now,
        });
        self.queue_bytes += wire;
        self.counters.enqueued += 1;
        self.counters.max_queue_bytes = self.counters.max_queue_bytes.max(self.queue_bytes);
        Admission::Queued
    }

    /// Move time to `now` and append every datagram due by then to `out`, in delivery
    /// order.
    pub fn poll(&mut self, now: Duration, out: &mut Vec<T>) {
        self.advance(now);
        while self.inflight.peek().is_some_and(|f| f.at <= now) {
            let f = self.inflight.pop().expect("peeked");
            self.counters.delivered += 1;
            self.counters.delivered_bytes += f.payload;
            out.push(f.item);
        }
    }

    /// When [`Path::poll`] next has something to do (a delivery, a departure, an
    /// event); `None` when idle with no event left.
    pub fn next_wakeup(&self) -> Option<Duration> {
        let mut next = self.events.front().map(|e| e.at);
        let mut consider = |t: Duration| next = Some(next.map_or(t, |n: Duration| n.min(t)));
        if let Some(f) = self.inflight.peek() {
            consider(f.at);
        }
        if let Some(t) = self.head_departure() {
            consider(t);
        }
        next
    }

    /// When the head of the queue could next make progress (fixed: its departure;
    /// trace: the next opportunity it can use).
    fn head_departure(&self) -> Option<Duration> {
        let head = self.queue.front()?;
        match &self.capacity {
            Capacity::Unlimited => Some(head.arrival),
            Capacity::Fixed { bps } => {
                Some(head.arrival.max(self.busy_until) + tx_time(head.left, *bps))
            }
            Capacity::Trace { trace, offset, .. } => {
                let n = self
                    .next_op
                    .max(Self::op_at_or_after(trace, *offset, head.arrival));
                Some(Self::op_time(trace, *offset, n))
            }
        }
    }

    fn op_at_or_after(trace: &Trace, offset: Duration, t: Duration) -> u64 {
        trace.first_at_or_after(ceil_ms(t + offset))
    }

    fn op_time(trace: &Trace, offset: Duration, n: u64) -> Duration {
        Duration::from_millis(trace.opportunity_ms(n)).saturating_sub(offset)
    }

    /// Serve the queue and apply events up to `now`, in time order.
    fn advance(&mut self, now: Duration) {
        loop {
            let due = self.events.front().map(|e| e.at).filter(|&at| at <= now);
            self.serve(due.unwrap_or(now));
            match due {
                Some(at) => {
                    let event = self.events.pop_front().expect("peeked");
                    self.apply(event.action, at);
                }
                None => break,
            }
        }
    }

    fn serve(&mut self, until: Duration) {
        match self.capacity.clone() {
            Capacity::Unlimited => {}
            Capacity::Fixed { bps } => {
                while let Some(head) = self.queue.front() {
                    let end = head.arrival.max(self.busy_until) + tx_time(head.left, bps);
                    if end > until {
                        break;
                    }
                    self.busy_until = end;
                    let q = self.pop_head();
                    self.depart(end, q.arrival, q.item, q.payload);
                }
            }
            Capacity::Trace {
                trace,
                offset,
                scale,
            } => {
                let credit_per_op = (OPPORTUNITY_BYTES as f64 * scale).round() as u64;
                while let Some(head) = self.queue.front() {
                    self.next_op =
                        self.next_op
                            .max(Self::op_at_or_after(&trace, offset, head.arrival));
                    let op_t = Self::op_time(&trace, offset, self.next_op);
                    if op_t > until {
                        break;
                    }
                    let mut credit = credit_per_op;
                    while credit > 0 {
                        let Some(h) = self.queue.front_mut() else {
                            break;
                        };
                        if h.arrival > op_t {
                            break;
                        }
                        let take = credit.min(h.left);
                        h.left -= take;
                        credit -= take;
                        if h.left == 0 {
                            let q = self.pop_head();
                            self.depart(op_t, q.arrival, q.item, q.payload);
                        }
                    }
                    self.next_op += 1;
                }
            }
        }
    }

    fn pop_head(&mut self) -> Queued<T> {
        let q = self.queue.pop_front().expect("non-empty queue");
        self.queue_bytes -= q.wire;
        q
    }

    /// The datagram leaves the bottleneck at `t`: loss, then delay.
    fn depart(&mut self, t: Duration, arrival: Duration, item: T, payload: u64) {
        let waited = t.saturating_sub(arrival).as_secs_f64() * 1000.0;
        if waited > self.counters.max_queue_delay_ms {
            self.counters.max_queue_delay_ms = waited;
        }
        if self.loss.lose() {
            self.counters.dropped_loss += 1;
            return;
        }
        let mut at = t + self.delay;
        if !self.jitter.is_zero() {
            let j = self.jitter.as_nanos() as i64;
            let d = self.delay.as_nanos() as i64 + self.jitter_rng.random_range(-j..=j);
            at = t + Duration::from_nanos(d.max(0) as u64);
        }
        if !self.reorder {
            at = at.max(self.last_delivery);
            self.last_delivery = at;
        }
        self.seq += 1;
        self.inflight.push(InFlight {
            at,
            seq: self.seq,
            payload,
            item,
        });
    }

    fn apply(&mut self, action: Action, at: Duration) {
        match action {
            Action::Down => {
                self.up = false;
                self.counters.dropped_down += self.queue.len() as u64;
                self.queue.clear();
                self.queue_bytes = 0;
                let before = self.inflight.len();
                self.inflight.retain(|f| f.at <= at);
                self.counters.dropped_down += (before - self.inflight.len()) as u64;
            }
            Action::Up => {
                self.up = true;
                self.busy_until = self.busy_until.max(at);
            }
            Action::Rate(bps) => {
                self.capacity = Capacity::Fixed { bps };
                self.busy_until = self.busy_until.max(at);
                self.limit_bytes = self.compute_limit();
            }
            Action::TraceScale(s) => {
                if let Capacity::Trace { scale, .. } = &mut self.capacity {
                    *scale = s;
                }
                self.limit_bytes = self.compute_limit();
            }
            Action::Loss(p) => self.loss.set_random(p),
            Action::Delay(d) => self.delay = d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drive `path` like the relay does: jump from wakeup to wakeup up to `end`,
    /// returning (delivery time, item) pairs.
    fn drain<T>(path: &mut Path<T>, end: Duration) -> Vec<(Duration, T)> {
        let mut got = Vec::new();
        let mut out = Vec::new();
        while let Some(t) = path.next_wakeup() {
            if t > end {
                break;
            }
            path.poll(t, &mut out);
            got.extend(out.drain(..).map(|i| (t, i)));
        }
        got
    }

    #[test]
    fn fixed_rate_serialises_and_delays() {
        // 1472-byte payloads = 1500-byte datagrams = 1 ms each at 12 Mbit/s.
        let mut p = Path::new(PathConfig {
            capacity: Capacity::Fixed { bps: 12_000_000 },
            delay: ms(20),
            ..Default::default()
        });
        for i in 0..100u32 {
            assert_eq!(p.enqueue(Duration::ZERO, i, 1472), Admission::Queued);
        }
        let got = drain(&mut p, ms(1000));
        assert_eq!(got.len(), 100);
        for (i, (t, item)) in got.iter().enumerate() {
            assert_eq!(*item, i as u32);
            assert_eq!(*t, ms(i as u64 + 1 + 20), "datagram {i}");
        }
        assert_eq!(p.counters().delivered_bytes, 100 * 1472);
        assert!((p.counters().max_queue_delay_ms - 100.0).abs() < 1e-6);
    }

    #[test]
    fn trace_replay_gives_the_trace_throughput() {
        // A bursty synthetic trace: 0, 1 or 3 opportunities per ms, period 10 ms.
        let trace = Arc::new(Trace::parse("1\n1\n2\n2\n2\n5\n6\n6\n6\n9\n10").unwrap());
        let mut p = Path::new(PathConfig {
            capacity: Capacity::Trace {
                trace: trace.clone(),
                offset: ms(3),
                scale: 1.0,
            },
            ..Default::default()
        });
        // Saturate: 4 datagrams of 1356 bytes (RTP of 7 TS packets + headers) every ms.
        let end = ms(5000);
        let mut out = Vec::new();
        let mut delivered_wire = 0u64;
        let mut t = Duration::ZERO;
        while t < end {
            for _ in 0..4 {
                p.enqueue(t, (), 1328);
            }
            p.poll(t, &mut out);
            delivered_wire += out.drain(..).count() as u64 * 1356;
            t += MS;
        }
        // Opportunities strictly before `end` whose time is > 0 in link time.
        let capacity = trace.capacity_bits_between(3, 5003) / 8;
        assert!(
            delivered_wire <= capacity && capacity - delivered_wire < 2 * 1356,
            "delivered {delivered_wire} of {capacity} bytes"
        );
        // With a queue limit the rest is dropped, without one it waits.
        assert_eq!(p.counters().dropped_queue, 0);
    }

    #[test]
    fn real_trace_replay_matches_its_mean() {
        let Some(dir) = crate::find_traces_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
        else {
            eprintln!("skip: no shared/traces directory above the crate");
            return;
        };
        let trace = Arc::new(Trace::load(&dir.join("Verizon-LTE-short.up")).unwrap());
        let mut p = Path::new(PathConfig {
            capacity: Capacity::Trace {
                trace: trace.clone(),
                offset: Duration::ZERO,
                scale: 1.0,
            },
            queue: QueueLimit::Bytes(200_000),
            ..Default::default()
        });
        // Offer 20 Mbit/s of 1500-byte datagrams for one full period (140 s).
        let period = trace.period_ms();
        let mut out = Vec::new();
        let mut delivered = 0u64;
        for t in 0..period {
            for _ in 0..2 {
                p.enqueue(ms(t), (), 1472);
            }
            p.poll(ms(t), &mut out);
            delivered += out.drain(..).count() as u64;
        }
        let want = trace.opportunities_between(0, period);
        let bps = delivered as f64 * 12_000.0 / (period as f64 / 1000.0);
        eprintln!(
            "Verizon-LTE-short: {bps:.0} bit/s delivered, mean {:.0}",
            trace.mean_bps()
        );
        // Every opportunity but those of the queue's first instants is used.
        assert!(
            delivered <= want && want - delivered < 50,
            "{delivered} of {want}"
        );
    }

    #[test]
    fn queue_overflow_drops_the_tail() {
        let mut p = Path::new(PathConfig {
            capacity: Capacity::Fixed { bps: 1_000_000 },
            queue: QueueLimit::Bytes(10_000),
            ..Default::default()
        });
        let verdicts: Vec<_> = (0..20u32)
            .map(|i| p.enqueue(Duration::ZERO, i, 972)) // 1000-byte datagrams
            .collect();
        assert!(verdicts[..10].iter().all(|v| *v == Admission::Queued));
        assert!(verdicts[10..].iter().all(|v| *v == Admission::DroppedQueue));
        let got: Vec<u32> = drain(&mut p, ms(1000))
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(p.counters().dropped_queue, 10);
        assert_eq!(p.counters().max_queue_bytes, 10_000);
        // Once drained there is room again: 8 ms per datagram at 1 Mbit/s.
        assert_eq!(p.enqueue(ms(1000), 99, 972), Admission::Queued);
    }

    #[test]
    fn queue_in_ms_follows_the_rate() {
        let mut p: Path<()> = Path::new(PathConfig {
            capacity: Capacity::Fixed { bps: 8_000_000 },
            queue: QueueLimit::Millis(100),
            events: vec![Event {
                at: ms(10),
                action: Action::Rate(2_000_000),
            }],
            ..Default::default()
        });
        assert_eq!(p.queue_limit_bytes(), Some(100_000));
        p.poll(ms(10), &mut Vec::new());
        assert_eq!(p.queue_limit_bytes(), Some(25_000));
        let tiny: Path<()> = Path::new(PathConfig {
            capacity: Capacity::Fixed { bps: 100_000 },
            queue: QueueLimit::Millis(10),
            ..Default::default()
        });
        assert_eq!(tiny.queue_limit_bytes(), Some(MIN_QUEUE_BYTES));
    }

    #[test]
    fn events_apply_at_their_time() {
        let mut p = Path::new(PathConfig {
            capacity: Capacity::Fixed { bps: 100_000_000 },
            delay: ms(10),
            events: vec![
                Event {
                    at: ms(200),
                    action: Action::Up,
                },
                Event {
                    at: ms(100),
                    action: Action::Down,
                },
            ],
            ..Default::default()
        });
        // Sent at 85 ms: arrives at ~95 ms, before the cut, even if polled late.
        assert_eq!(p.enqueue(ms(85), "early", 100), Admission::Queued);
        // Sent at 95 ms: still in flight at 100 ms: lost with the link.
        assert_eq!(p.enqueue(ms(95), "inflight", 100), Admission::Queued);
        // Nothing polled until after the cut; this arrival is dropped.
        assert_eq!(p.enqueue(ms(150), "down", 100), Admission::DroppedDown);
        assert!(!p.is_up());
        assert_eq!(p.enqueue(ms(250), "after", 100), Admission::Queued);
        assert!(p.is_up());
        let got: Vec<_> = drain(&mut p, ms(1000));
        let names: Vec<_> = got.iter().map(|(_, n)| *n).collect();
        assert_eq!(names, vec!["early", "after"]);
        assert!(got[1].0 >= ms(260) && got[1].0 < ms(261));
        assert_eq!(p.counters().dropped_down, 2);
    }

    #[test]
    fn rate_change_applies_at_its_time() {
        // 1 Mbit/s, then 10 Mbit/s from 1 s; saturated with 1250-byte datagrams.
        let mut p = Path::new(PathConfig {
            capacity: Capacity::Fixed { bps: 1_000_000 },
            events: vec![Event {
                at: ms(1000),
                action: Action::Rate(10_000_000),
            }],
            ..Default::default()
        });
        let mut per_second = [0u64; 2];
        let mut out = Vec::new();
        for t in 0..2000u64 {
            p.enqueue(ms(t), (), 1222); // 1250 bytes on the wire: 10 ms at 1 Mbit/s
            p.poll(ms(t), &mut out);
            per_second[(t / 1000) as usize] += out.drain(..).count() as u64;
        }
        assert!((99..=101).contains(&per_second[0]), "{per_second:?}");
        assert!((995..=1001).contains(&per_second[1]), "{per_second:?}");
    }

    #[test]
    fn gilbert_elliott_on_a_path_hits_its_burst_length() {
        let ge = crate::loss::GilbertElliottConfig::Mean {
            mean_loss: 0.03,
            mean_burst: 5.0,
        }
        .resolve()
        .unwrap();
        let mut p = Path::new(PathConfig {
            gilbert_elliott: Some(ge),
            seed: 5,
            ..Default::default()
        });
        let n = 500_000u64;
        let mut out = Vec::new();
        for i in 0..n {
            p.enqueue(Duration::from_micros(i), i, 100);
        }
        p.poll(Duration::from_secs(10), &mut out);
        // Count bursts of missing sequence numbers.
        let (mut bursts, mut prev) = (0u64, None::<u64>);
        for &i in &out {
            if i != prev.map_or(0, |p| p + 1) {
                bursts += 1;
            }
            prev = Some(i);
        }
        let lost = n - out.len() as u64;
        assert_eq!(lost, p.counters().dropped_loss);
        let mean_burst = lost as f64 / bursts as f64;
        let rate = lost as f64 / n as f64;
        assert!((mean_burst - 5.0).abs() < 0.3, "burst {mean_burst}");
        assert!((rate - 0.03).abs() < 0.003, "rate {rate}");
    }

    #[test]
    fn jitter_keeps_order_unless_reordering_is_allowed() {
        for reorder in [false, true] {
            let mut p = Path::new(PathConfig {
                delay: ms(40),
                jitter: ms(30),
                reorder,
                seed: 9,
                ..Default::default()
            });
            for i in 0..2000u64 {
                p.enqueue(Duration::from_micros(500 * i), i, 100);
            }
            let got = drain(&mut p, Duration::from_secs(5));
            assert_eq!(got.len(), 2000);
            let in_order = got.windows(2).all(|w| w[0].1 < w[1].1);
            assert_eq!(in_order, !reorder, "reorder={reorder}");
            for (t, i) in &got {
                let sent = Duration::from_micros(500 * i);
                let d = *t - sent;
                assert!(d >= ms(10), "delay {d:?} below delay - jitter");
                if reorder {
                    assert!(d <= ms(70), "delay {d:?} above delay + jitter");
                }
            }
        }
    }
}
