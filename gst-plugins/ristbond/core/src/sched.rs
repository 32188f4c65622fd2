//! Capacity-driven link scheduling: per-link estimates (RTT, queueing delay, loss,
//! capacity), link states with hysteresis and the pacing rule that spreads original
//! packets over links in proportion to their estimated capacity.
//!
//! Everything here is sans-IO: every function takes `now`.
//!
//! - **Feedback**: any RTCP from the receiver on a link marks it heard; the RTT comes
//!   from RR LSR/DLSR (RFC 3550 §6.4.1), which the receiver computes per link from the
//!   SR sent on that link, so it includes that link's uplink queueing delay (RTP and
//!   RTCP of a link share the modem's queue).
//! - **Loss** per link is attributed by the sender: a NACKed original counts against
//!   the link it was sent on (TR-06-1 receivers report one loss figure for the whole
//!   flow, not per link). Windows of ≥ 250 ms and ≥ 50 originals, weighted 0.2.
//! - **Capacity** (pacing rate) per link, delay-based: queueing delay = the smallest
//!   of the last 4 RTT samples (about 400 ms at the 100 ms RTCP interval; a jittery
//!   radio link rarely has 4 high samples in a row) minus the windowed minimum RTT
//!   (30 s, so a standing queue does not become the new base). H =
//!   `max(40 ms, min_rtt / 2)`. The thresholds carry a jitter allowance J = 1.5 ×
//!   the mean curvature of the RTT (|rtt[i] − 2·rtt[i−1] + rtt[i−2]|, EWMA 1/16):
//!   radio jitter that keeps packets in order raises the filtered RTT with the packet
//!   rate just as a queue does, but it comes and goes from one sample to the next,
//!   while a queue growing or draining at a steady rate has no curvature. The link
//!   is over capacity when the queue is above H and *growing* (the least-squares
//!   slope of the queueing delay over the last second exceeds J per second: jitter
//!   averages out of a 1 s slope, a capacity fall does not), or when it stands above
//!   H + J. Then the rate drops by 15 %; the first queue after slow start, or one
//!   deeper than 2H + J, takes the rate to 0.9 × the capacity the queue's growth
//!   reveals (what was sent divided by 1 + the growth rate over the last 300 ms, a
//!   draining queue's negative growth included; at most −70 % in slow start, −40 %
//!   otherwise). A deep queue that does not drain while the link loses ≥ 40 % of
//!   what it is sent (a full drop-tail queue: the capacity fell) cuts by 40–55 % at
//!   once. One decrease per episode: the next needs the *current* filtered RTT plus
//!   100 ms (the queue ahead of the new rate must drain before the RTT can show it)
//!   and a queue still growing, or the base RTT + 600 ms and a queue still above
//!   H + J. A storm's rate hold (below) does not stop a decrease for a queue deeper
//!   than 2H + J. Between the thresholds the rate is held. Below
//!   `max(15 ms, min_rtt / 5) + J`, when the link is the constraint (it carried
//!   ≥ 75 % of its rate, or originals wait in the pacing queue), a Live link grows:
//!   ×1.25 per sample in slow start (until the first queue), +5 % per 100 ms back up
//!   to the capacity measured at the last decrease, then +1 % per 100 ms (+2 % with
//!   a backlog) to probe beyond it; never above 1.5 × what it carried since the
//!   last sample (a backlog of a moment, a key frame, is no evidence of capacity).
//!   (A lower gate lets unused links inflate their estimates, and the shares go
//!   wrong when the input rises: twice the deadline drops at 85 % load in the sim.)
//! - **States**: `Probing` (no feedback yet, or recovering), `Live`, `Degraded` (loss
//!   above `failover_loss_rate` or smoothed RTT above `failover_rtt`), `Down` (no
//!   RTCP for `max(250 ms, 2.5 × the usual RTCP gap)`, at most 2 s). Degraded → Live
//!   needs 2 s below 0.5 × / 0.8 × the thresholds; Down → Probing on the first
//!   feedback, Probing → Live after 500 ms of steady feedback. Feedback back within
//!   200 ms of going Down (a blip: two RTCP reports lost on a lossy, jittery path)
//!   returns the link to Live at once with its estimates.
//! - **Pacing and share**: each link has a virtual clock `next_free`; a packet may go
//!   on a link whose clock is at most 5 ms ahead of now; sending advances the clock by
//!   `bits / rate`. Among eligible links the sender picks by smooth weighted
//!   round-robin with the usable rates as weights, so every link runs at the same
//!   fraction of its capacity (a weak link carries little, a dead one nothing) and
//!   keeps headroom while the input is below the aggregate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::LinkId;

/// Tunables of the bonding scheduler: PROTOCOL.md §5 `bonding_config.scheduler`, plus
/// rate limits. Hot-reloadable ([`crate::sender::Sender::set_scheduler`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// `discard_deadline_ms`: an original not sent within this age of its arrival is
    /// dropped (counted in `packets_dropped_deadline`). Default 200 ms.
    pub discard_deadline: Duration,
    /// `storm_enabled`: when a link goes Down, duplicate every original on all other
    /// usable links for `storm_duration`. Default off.
    pub storm_enabled: bool,
    /// `storm_duration_ms`. Default 2000 ms.
    pub storm_duration: Duration,
    /// `critical_broadcast`: send RTP packets carrying PAT, PMT or the start of a key
    /// frame (random access indicator, ISO/IEC 13818-1 §2.4.3.5) on every usable link.
    /// Default off.
    pub critical_broadcast: bool,
    /// `redundancy_enabled`: use spare capacity for duplicates. Default off.
    pub redundancy_enabled: bool,
    /// `redundancy_spare_ratio` (0–1): share of the spare capacity (sum of usable link
    /// rates minus the input rate) spent on duplicates. Default 0.5.
    pub redundancy_spare_ratio: f64,
    /// `failover_rtt_ms`: smoothed RTT above which a link is Degraded. Default 1500 ms.
    pub failover_rtt: Duration,
    /// `failover_loss_rate` (0–1): attributed loss above which a link is Degraded.
    /// Default 0.5 (attributed loss includes NACKs caused by cross-link reordering and
    /// short congestion bursts, so lower values make healthy links flap).
    pub failover_loss_rate: f64,
    /// Rate of a link before any estimate, bps. Default 10 Mbit/s (optimistic: a
    /// key frame must not wait behind a pessimistic start; delay feedback corrects it).
    pub initial_rate_bps: f64,
    /// Lowest rate estimate, bps. Default 100 kbit/s.
    pub min_rate_bps: f64,
    /// Highest rate estimate, bps. Default 500 Mbit/s.
    pub max_rate_bps: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            discard_deadline: Duration::from_millis(200),
            storm_enabled: false,
            storm_duration: Duration::from_millis(2000),
            critical_broadcast: false,
            redundancy_enabled: false,
            redundancy_spare_ratio: 0.5,
            failover_rtt: Duration::from_millis(1500),
            failover_loss_rate: 0.5,
            initial_rate_bps: 10_000_000.0,
            min_rate_bps: 100_000.0,
            max_rate_bps: 500_000_000.0,
        }
    }
}

/// State of one link (docs/elements.md `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No feedback yet, or feedback returned after Down and is not steady yet.
    Probing,
    /// Healthy: carries originals in proportion to its capacity.
    Live,
    /// Usable but lossy or slow: carries a quarter of its capacity.
    Degraded,
    /// No feedback: carries nothing.
    Down,
}

impl LinkState {
    /// Name used in `ristbond-stats` and events: `Probing`, `Live`, `Degraded`, `Down`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Probing => "Probing",
            LinkState::Live => "Live",
            LinkState::Degraded => "Degraded",
            LinkState::Down => "Down",
        }
    }
}

/// A link changed state (for `ristbond-link-state` messages and agent events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTransition {
    /// The link.
    pub link: LinkId,
    /// Previous state.
    pub from: LinkState,
    /// New state.
    pub to: LinkState,
    /// When it changed.
    pub at: Instant,
}

/// Shortest dead-link silence.
const MIN_DEAD_AFTER: Duration = Duration::from_millis(250);
/// Longest dead-link silence.
const MAX_DEAD_AFTER: Duration = Duration::from_secs(2);
/// How long a new link carries media without any feedback before it counts as Down.
const INITIAL_GRACE: Duration = Duration::from_secs(1);
/// Steady feedback needed to re-admit a recovering link.
const READMIT_AFTER: Duration = Duration::from_millis(500);
/// A Down link whose feedback returns within this is back at once (a blip).
const BLIP: Duration = Duration::from_millis(200);
/// Time below the thresholds needed to leave Degraded.
const RECOVER_AFTER: Duration = Duration::from_secs(2);
/// How far ahead of now a link's pacing clock may be and still take a packet.
pub(crate) const PACING_SLACK: Duration = Duration::from_millis(5);
/// Window of the minimum RTT.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(30);
/// Share of its rate a Degraded link carries.
const DEGRADED_SHARE: f64 = 0.25;
/// RTT samples kept for the jitter filter (the queueing delay is their minimum).
const RTT_FILTER: usize = 4;
/// After a decrease, how long a draining queue is left alone (beyond one RTT).
const DRAIN_WAIT: Duration = Duration::from_millis(600);
/// Window over which the queue's growth rate is measured (for the capacity it
/// reveals).
const GROWTH_WINDOW: Duration = Duration::from_millis(300);
/// Window of the queueing-delay trend (least-squares slope), long enough that jitter
/// averages out of it.
const TREND_WINDOW: Duration = Duration::from_secs(1);

/// Jitter allowance added to the queueing-delay thresholds, in units of the RTT's
/// mean curvature.
const JITTER_ALLOWANCE: f64 = 1.5;

/// Least-squares slope of (time, value) samples, value units per second; `None`
/// with fewer than 4 samples or less than 300 ms of span.
fn trend_slope(samples: &VecDeque<(Instant, f64)>) -> Option<f64> {
    let (&(t0, _), &(t1, _)) = (samples.front()?, samples.back()?);
    if samples.len() < 4 || t1.saturating_duration_since(t0) < Duration::from_millis(300) {
        return None;
    }
    let n = samples.len() as f64;
    let xs = samples
        .iter()
        .map(|&(t, v)| (t.saturating_duration_since(t0).as_secs_f64(), v));
    let (sx, sy) = xs.clone().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (sxy, sxx) = xs.fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Estimates and pacing clock of one link.
#[derive(Debug, Clone)]
pub(crate) struct LinkEstimator {
    pub(crate) id: LinkId,
    state: LinkState,
    state_since: Instant,
    /// Whether the link was ever Down (a recovering Probing link carries no media).
    was_down: bool,
    last_heard: Option<Instant>,
    /// EWMA of the gap between RTCP arrivals.
    rtcp_gap: Option<Duration>,
    srtt: Option<Duration>,
    recent_rtt: VecDeque<Duration>,
    /// EWMA of the RTT's curvature |rtt[i] − 2·rtt[i−1] + rtt[i−2]|, s: jitter that a
    /// queue growing or draining at a steady rate does not add to.
    rtt_curvature: f64,
    /// Filtered queueing delay samples over [`TREND_WINDOW`]: (when, delay in s);
    /// the last [`GROWTH_WINDOW`] of them give the growth rate.
    qdelay_trend: VecDeque<(Instant, f64)>,
    /// Capacity measured at the last decrease (or the highest rate reached since),
    /// bps: the level the rate climbs back to quickly.
    last_max_bps: f64,
    /// Per-second minima over [`MIN_RTT_WINDOW`]: (bucket start, min).
    rtt_minima: VecDeque<(Instant, Duration)>,
    /// Attributed loss, EWMA (0..=1).
    loss: f64,

    loss_sent: u64,
    loss_lost: u64,
    loss_since: Instant,
    /// Pacing rate = capacity estimate, bps.
    rate_bps: f64,
    slow_start: bool,
    last_decrease: Option<Instant>,
    /// Bytes sent since `tx_since` (rate measurement between RTT samples).
    tx_bytes: u64,
    tx_since: Instant,
    /// Last measured send rate, bps.
    tx_rate_bps: f64,
    /// Since when the link has been below the Degraded thresholds.
    healthy_since: Option<Instant>,
    /// Pacing clock.
    pub(crate) next_free: Instant,
    /// Rates are not lowered before this (storm duplicates load the links on purpose).
    hold_rate_until: Option<Instant>,
}

impl LinkEstimator {
    pub(crate) fn new(id: LinkId, cfg: &SchedulerConfig, now: Instant) -> Self {
        Self {
            id,
            state: LinkState::Probing,
            state_since: now,
            was_down: false,
            last_heard: None,
            rtcp_gap: None,
            srtt: None,
            recent_rtt: VecDeque::new(),
            rtt_curvature: 0.0,
            qdelay_trend: VecDeque::new(),
            last_max_bps: 0.0,
            rtt_minima: VecDeque::new(),
            loss: 0.0,
            loss_sent: 0,
            loss_lost: 0,
            loss_since: now,
            rate_bps: cfg.initial_rate_bps,
            slow_start: true,
            last_decrease: None,
            tx_bytes: 0,
            tx_since: now,
            tx_rate_bps: 0.0,
            healthy_since: None,
            next_free: now,
            hold_rate_until: None,
        }
    }

    pub(crate) fn state(&self) -> LinkState {
        self.state
    }

    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub(crate) fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }

    pub(crate) fn loss(&self) -> f64 {
        self.loss
    }

    /// Capacity estimate, bps.
    pub(crate) fn rate_bps(&self) -> f64 {
        self.rate_bps
    }

    /// Rate the pacer uses: 0 when the link may not carry originals.
    pub(crate) fn usable_rate_bps(&self) -> f64 {
        match self.state {
            LinkState::Live => self.rate_bps,
            LinkState::Degraded => self.rate_bps * DEGRADED_SHARE,
            LinkState::Probing if !self.was_down => self.rate_bps,
            LinkState::Probing | LinkState::Down => 0.0,
        }
    }

    /// Whether the link may carry repairs and duplicates.
    pub(crate) fn usable(&self) -> bool {
        self.usable_rate_bps() > 0.0
    }

    /// How long RTCP silence makes this link Down.
    pub(crate) fn dead_after(&self) -> Duration {
        self.rtcp_gap
            .map_or(MIN_DEAD_AFTER, |g| g.mul_f64(2.5))
            .clamp(MIN_DEAD_AFTER, MAX_DEAD_AFTER)
    }

    /// One-way delay estimate used to rank links (half the smoothed RTT, 0 unknown).
    pub(crate) fn owd(&self) -> Duration {
        self.srtt.map_or(Duration::ZERO, |r| r / 2)
    }

    /// The smallest RTT seen in the last 30 s.
    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        self.rtt_minima.iter().map(|&(_, d)| d).min()
    }

    /// Any valid RTCP datagram arrived on the link.
    pub(crate) fn on_feedback(&mut self, now: Instant) {
        if let Some(prev) = self.last_heard {
            let gap = now.saturating_duration_since(prev);
            // Ignore the silence of an outage: it is not the usual cadence.
            if gap < MAX_DEAD_AFTER {
                self.rtcp_gap = Some(match self.rtcp_gap {
                    None => gap,
                    Some(g) => (g * 7 + gap) / 8,
                });
            }
        }
        self.last_heard = Some(now);
    }

    /// Bytes put on the wire on this link (originals, repairs, duplicates): counted,
    /// and the pacing clock advanced by their transmission time at the link's rate.
    pub(crate) fn on_sent(&mut self, bytes: usize, original: bool, now: Instant) {
        self.tx_bytes += bytes as u64;
        if original {
            self.loss_sent += 1;
        }
        // Not usable (Down, recovering) yet sent on: blind mode or a repair; pace at
        // the last estimate.
        let usable = self.usable_rate_bps();
        let rate = if usable > 0.0 { usable } else { self.rate_bps };
        let cost = Duration::from_secs_f64(bytes as f64 * 8.0 / rate.max(1.0));
        let base = self
            .next_free
            .max(now.checked_sub(PACING_SLACK).unwrap_or(now));
        self.next_free = base + cost;
    }

    /// An original sent on this link was NACKed (first NACK for it only).
    pub(crate) fn on_lost(&mut self) {
        self.loss_lost += 1;
    }

    /// Share of the originals sent in the current loss window that were NACKed
    /// (0..=1; NACKs lag the sends, so an early window reads low, a late one high).
    fn window_loss(&self) -> f64 {
        (self.loss_lost as f64 / self.loss_sent.max(1) as f64).min(1.0)
    }

    /// Keep rates from being lowered until `until` (a storm: the failover resend and
    /// the storm copies load the links left for a short time).
    pub(crate) fn hold_rate(&mut self, until: Instant) {
        self.hold_rate_until = Some(self.hold_rate_until.map_or(until, |t| t.max(until)));
    }

    /// An RTT sample from RR LSR/DLSR: update RTT figures and the rate.
    /// `backlog`: originals are waiting in the sender's pacing queue (the links
    /// together are the constraint), so a link without a queue grows fast.
    pub(crate) fn on_rtt(
        &mut self,
        rtt: Duration,
        backlog: bool,
        cfg: &SchedulerConfig,
        now: Instant,
    ) {
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        });
        if let [.., a, b] = self.recent_rtt.make_contiguous() {
            let second = a.as_secs_f64() - 2.0 * b.as_secs_f64() + rtt.as_secs_f64();
            self.rtt_curvature += (second.abs() - self.rtt_curvature) / 16.0;
        }
        self.recent_rtt.push_back(rtt);
        while self.recent_rtt.len() > RTT_FILTER {
            self.recent_rtt.pop_front();
        }
        match self.rtt_minima.back_mut() {
            Some((start, min))
                if now.saturating_duration_since(*start) < Duration::from_secs(1) =>
            {
                *min = (*min).min(rtt);
            }
            _ => self.rtt_minima.push_back((now, rtt)),
        }
        while self
            .rtt_minima
            .front()
            .is_some_and(|&(t, _)| now.saturating_duration_since(t) > MIN_RTT_WINDOW)
        {
            self.rtt_minima.pop_front();
        }
        self.update_rate(backlog, cfg, now);
    }

    fn update_rate(&mut self, backlog: bool, cfg: &SchedulerConfig, now: Instant) {
        let elapsed = now.saturating_duration_since(self.tx_since);
        if elapsed < Duration::from_millis(50) {
            return;
        }
        self.tx_rate_bps = self.tx_bytes as f64 * 8.0 / elapsed.as_secs_f64();
        self.tx_bytes = 0;
        self.tx_since = now;
        let (Some(min_rtt), Some(&filtered)) = (self.min_rtt(), self.recent_rtt.iter().min())
        else {
            return;
        };
        let qdelay = filtered.saturating_sub(min_rtt);
        // Jitter allowance J: delay that comes and goes with the radio, not with the
        // queue (in-order jitter raises the filtered RTT with the packet rate, as a
        // queue would, but it has curvature and a queue does not).
        let jitter = Duration::from_secs_f64(JITTER_ALLOWANCE * self.rtt_curvature);
        let high_base = (min_rtt / 2).max(Duration::from_millis(40));
        let high = high_base + jitter;
        let low = (min_rtt / 5).max(Duration::from_millis(15)) + jitter;
        let deep = high_base * 2 + jitter;
        let held = self.hold_rate_until.is_some_and(|t| now < t);
        // The filtered queueing delay over the last second.
        self.qdelay_trend.push_back((now, qdelay.as_secs_f64()));
        while self
            .qdelay_trend
            .front()
            .is_some_and(|&(t, _)| now.saturating_duration_since(t) > TREND_WINDOW)
        {
            self.qdelay_trend.pop_front();
        }
        // Queue growth rate (s of queue per s) over ~300 ms: sending at `tx` into a
        // link of capacity C grows the queue by tx/C - 1 per second.
        let growth = self
            .qdelay_trend
            .iter()
            .find(|&&(t, _)| now.saturating_duration_since(t) <= GROWTH_WINDOW)
            .map_or(0.0, |&(t, q)| {
                let dt = now.saturating_duration_since(t).as_secs_f64();
                if dt >= 0.1 {
                    (qdelay.as_secs_f64() - q) / dt
                } else {
                    0.0
                }
            });
        // A queue growing by more than the jitter allowance per second (the trend's
        // slope; jitter averages out of it).
        let growing = match trend_slope(&self.qdelay_trend) {
            Some(slope) => slope > jitter.as_secs_f64(),
            // Too few samples for a trend: the short window decides.
            None => growth > 0.0,
        };
        if qdelay > high || (qdelay > high_base && growing) {
            // One decrease per episode: after one, wait a round trip while the queue
            // still grows; while it stands or drains (the decrease works), wait for
            // the filter to see it, and only beyond the jitter allowance.
            let settled = self.last_decrease.is_none_or(|t| {
                let since = now.saturating_duration_since(t);
                (growing && since > filtered + Duration::from_millis(100))
                    || (qdelay > high && since > min_rtt + DRAIN_WAIT)
            });
            // A storm holds the rates against the brief load of its copies, not
            // against a deep queue: a link whose estimate was never tested at the
            // rate the failover now asks of it would overflow for the whole hold.
            if settled && (!held || qdelay > deep) {
                // Mild overshoot: back off 15 %. The first queue after slow start, or
                // a deep one (capacity fell): go to 0.9 × the capacity the queue's
                // growth reveals, by at most −70 % (slow start) or −40 % per step.
                let capacity = self.tx_rate_bps.max(1.0) / (1.0 + growth.max(-0.5));
                // A deep queue that does not drain while the link loses a large
                // share of what it is sent is a full drop-tail queue fed far above
                // capacity (the capacity fell): a full queue no longer grows, so
                // the growth underrates the excess; cut by 40-55 % at once
                // (`capacity_fall_is_followed_*` in the simulation: a 3 → 0.4 Mbit/s
                // fall is followed within 2.5 s). The share lost is the last loss
                // window's (NACKs of the link's originals over those sent; the
                // EWMA lags by seconds) or the EWMA, whichever is higher.
                let window_loss = if self.loss_sent >= 20 {
                    self.window_loss()
                } else {
                    0.0
                };
                let dropped = window_loss.max(self.loss);
                let overflowing = qdelay > deep
                    && dropped >= 0.4
                    && trend_slope(&self.qdelay_trend).is_none_or(|sl| sl > -0.03);
                let factor = if self.slow_start {
                    (capacity / self.rate_bps * 0.9).clamp(0.3, 0.85)
                } else if overflowing {
                    (0.9 * (1.0 - dropped)).clamp(0.45, 0.6)
                } else if qdelay > deep {
                    (capacity / self.rate_bps * 0.9).clamp(0.6, 0.85)
                } else {
                    0.85
                };
                // The level to come back to quickly: what the link really carried.
                self.last_max_bps = capacity.min(self.rate_bps);
                self.rate_bps = (self.rate_bps * factor).max(cfg.min_rate_bps);
                self.slow_start = false;
                self.last_decrease = Some(now);
            }
        } else if qdelay > low {
            // Queue forming: stop probing, hold the rate.
            self.slow_start = false;
        } else if self.state == LinkState::Live
            && (self.tx_rate_bps >= 0.75 * self.rate_bps || backlog)
        {
            // Per 100 ms: slow start ×1.25 per sample; back to the level held before
            // the last decrease at 5 %; beyond it, probe gently (1 %, 2 % while
            // originals wait in the pacing queue).
            let steps = (elapsed.as_secs_f64() / 0.1).min(3.0);
            let factor = if self.slow_start {
                1.25
            } else if self.rate_bps < 0.95 * self.last_max_bps {
                1.0 + 0.05 * steps
            } else if backlog {
                1.0 + 0.02 * steps
            } else {
                1.0 + 0.01 * steps
            };
            // Never more than 1.5 × what the link carried over the interval: a rate
            // the link was not asked to carry is not evidence (a backlog of a moment,
            // e.g. a key frame, would otherwise inflate every link's estimate).
            let evidence = (self.tx_rate_bps * 1.5).max(self.rate_bps);
            self.rate_bps = (self.rate_bps * factor).min(evidence).min(cfg.max_rate_bps);
            if self.rate_bps > self.last_max_bps {
                self.last_max_bps = self.rate_bps;
            }
        }
    }

    /// Run the state machine; returns the transition if the state changed.
    pub(crate) fn tick(&mut self, cfg: &SchedulerConfig, now: Instant) -> Option<LinkTransition> {
        // Loss EWMA over windows of ≥ 250 ms with enough packets.
        if now.saturating_duration_since(self.loss_since) >= Duration::from_millis(250)
            && self.loss_sent >= 50
        {
            let sample = self.window_loss();
            self.loss = 0.8 * self.loss + 0.2 * sample;

            self.loss_sent = 0;
            self.loss_lost = 0;
            self.loss_since = now;
        }
        let silent = self
            .last_heard
            .map(|t| now.saturating_duration_since(t) > self.dead_after());
        let bad =
            self.loss > cfg.failover_loss_rate || self.srtt.is_some_and(|r| r > cfg.failover_rtt);
        let good = self.loss < cfg.failover_loss_rate * 0.5
            && self.srtt.is_none_or(|r| r < cfg.failover_rtt.mul_f64(0.8));
        if good {
            self.healthy_since.get_or_insert(now);
        } else {
            self.healthy_since = None;
        }
        let healthy_for = self
            .healthy_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        // Feedback back within a blip (two RTCP reports lost on a lossy, jittery
        // path look like a dead link for a moment): the link returns at once with
        // its estimates, without the re-admission wait.
        let blip =
            self.state == LinkState::Down && now.saturating_duration_since(self.state_since) < BLIP;
        let next = match (self.state, silent) {
            (LinkState::Down, Some(false)) if blip && bad => LinkState::Degraded,
            (LinkState::Down, Some(false)) if blip => LinkState::Live,
            (LinkState::Down, Some(false)) => LinkState::Probing,
            (LinkState::Down, _) => LinkState::Down,
            (_, Some(true)) => LinkState::Down,
            (LinkState::Probing, Some(false)) if !self.was_down => {
                if bad {
                    LinkState::Degraded
                } else {
                    LinkState::Live
                }
            }
            (LinkState::Probing, Some(false)) => {
                if now.saturating_duration_since(self.state_since) >= READMIT_AFTER {
                    if bad {
                        LinkState::Degraded
                    } else {
                        LinkState::Live
                    }
                } else {
                    LinkState::Probing
                }
            }
            // Never heard from: give up after the initial grace period.
            (LinkState::Probing, None)
                if now.saturating_duration_since(self.state_since) > INITIAL_GRACE =>
            {
                LinkState::Down
            }
            (LinkState::Probing, None) => LinkState::Probing,
            (LinkState::Live, _) if bad => LinkState::Degraded,
            (LinkState::Degraded, _) if healthy_for >= RECOVER_AFTER => LinkState::Live,
            (s, _) => s,
        };
        if next == self.state {
            return None;
        }
        let t = LinkTransition {
            link: self.id,
            from: self.state,
            to: next,
            at: now,
        };
        if next == LinkState::Down {
            self.was_down = true;
        }
        if self.state == LinkState::Down && !blip {
            // Recovering: start again from half the old estimate, probing up.
            self.rate_bps = (self.rate_bps * 0.5).max(cfg.min_rate_bps);
            self.slow_start = true;
            self.recent_rtt.clear();
            self.rtt_curvature = 0.0;
            self.rtt_minima.clear();
            self.qdelay_trend.clear();
            self.srtt = None;
            self.last_max_bps = 0.0;
        }
        if next == LinkState::Degraded || next == LinkState::Live {
            self.healthy_since = None;
        }
        self.state = next;
        self.state_since = now;
        self.next_free = self.next_free.max(now);
        Some(t)
    }
}
