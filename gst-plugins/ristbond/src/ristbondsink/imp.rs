// SPDX-License-Identifier: MPL-2.0

/**
 * element-ristbondsink:
 *
 * RIST Simple Profile (VSF TR-06-1) sender bonded over several UDP links.
 *
 * Every input buffer (`video/mpegts, systemstream=true`) is cut into RTP payloads of at
 * most 7 × 188 bytes, which get one RTP sequence space and SSRC over all links
 * (RTP PT 33, 90 kHz clock from the buffer's running time; RFC 3550). Each packet goes
 * out on one link, chosen by the bonding scheduler of `ristbond-core`. Per link there is
 * an RTP socket sending to HOST:PORT and an RTCP socket sending sender reports + SDES to
 * HOST:PORT+1 and receiving the receiver's RR and NACKs (RFC 4585 §6.2.1 generic NACK,
 * TR-06-1 §5.3.2 range NACK) on the same socket; retransmissions go on the best live
 * link. A `ristbond-stats` element message is posted every `stats-interval` ms
 * (see `docs/elements.md`).
 *
 * At EOS the element keeps answering NACKs for `eos-linger` ms, posts a final
 * `ristbond-stats` message and then lets EOS through.
 *
 * ## Example pipeline
 * ```bash
 * gst-launch-1.0 -e videotestsrc num-buffers=300 \
 *   ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 \
 *   ! x264enc tune=zerolatency bitrate=4000 key-int-max=60 ! h264parse \
 *   ! mpegtsmux alignment=7 \
 *   ! ristbondsink links="rist://127.0.0.1:15000,rist://127.0.0.1:15002"
 * ```
 *
 * Since: plugin 0.1
 */
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use ristbond_core::link::LinkUri;
use ristbond_core::sender::{SchedulerConfig, Sender, SenderConfig, SenderStats};
use ristbond_core::{Channel, LinkId, Transmit};
use serde::Deserialize;

use crate::common::{self, Bind, Multicast, SocketError, MAX_PAYLOAD, TS_PACKET_SIZE};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "ristbondsink",
        gst::DebugColorFlags::empty(),
        Some("RIST bonding sender"),
    )
});

const DEFAULT_LINKS: &str = "";
const DEFAULT_LATENCY_MS: u32 = 1000;
const DEFAULT_STATS_INTERVAL_MS: u32 = 1000;
const DEFAULT_CONFIG: &str = "";
const DEFAULT_EOS_LINGER_MS: u32 = 500;

#[derive(Debug, Clone)]
struct Settings {
    links: String,
    latency_ms: u32,
    stats_interval_ms: u32,
    config: String,
    cname: String,
    eos_linger_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            links: DEFAULT_LINKS.to_owned(),
            latency_ms: DEFAULT_LATENCY_MS,
            stats_interval_ms: DEFAULT_STATS_INTERVAL_MS,
            config: DEFAULT_CONFIG.to_owned(),
            cname: common::default_cname(),
            eos_linger_ms: DEFAULT_EOS_LINGER_MS,
        }
    }
}

/// The part of `bonding_config` (PROTOCOL.md §5, TOML) the element uses. Unknown
/// top-level keys are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
struct BondingConfig {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    links: Vec<ConfigLink>,
    #[serde(default)]
    scheduler: Option<SchedulerToml>,
}

/// `bonding_config.scheduler` (PROTOCOL.md §5); absent fields keep their defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchedulerToml {
    storm_enabled: Option<bool>,
    storm_duration_ms: Option<u32>,
    discard_deadline_ms: Option<u32>,
    redundancy_enabled: Option<bool>,
    redundancy_spare_ratio: Option<f64>,
    critical_broadcast: Option<bool>,
    failover_rtt_ms: Option<u32>,
    failover_loss_rate: Option<f64>,
}

impl SchedulerToml {
    /// The core's settings; ratios outside 0..=1 are an error naming the field.
    fn to_config(&self) -> Result<SchedulerConfig, String> {
        let mut c = SchedulerConfig::default();
        let ms = |v: u32| Duration::from_millis(v.into());
        let ratio = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(format!("scheduler.{name} = {v} is not within 0..=1"))
            }
        };
        if let Some(v) = self.storm_enabled {
            c.storm_enabled = v;
        }
        if let Some(v) = self.storm_duration_ms {
            c.storm_duration = ms(v);
        }
        if let Some(v) = self.discard_deadline_ms {
            if v == 0 {
                return Err("scheduler.discard_deadline_ms must be > 0".into());
            }
            c.discard_deadline = ms(v);
        }
        if let Some(v) = self.redundancy_enabled {
            c.redundancy_enabled = v;
        }
        if let Some(v) = self.redundancy_spare_ratio {
            c.redundancy_spare_ratio = ratio("redundancy_spare_ratio", v)?;
        }
        if let Some(v) = self.critical_broadcast {
            c.critical_broadcast = v;
        }
        if let Some(v) = self.failover_rtt_ms {
            c.failover_rtt = ms(v);
        }
        if let Some(v) = self.failover_loss_rate {
            c.failover_loss_rate = ratio("failover_loss_rate", v)?;
        }
        Ok(c)
    }
}

#[derive(Debug, Deserialize)]
struct ConfigLink {
    id: u32,
    uri: String,
    #[serde(default)]
    interface: Option<String>,
}

/// A setting or link the element refuses: the error kind and the text, kept apart so the
/// same text becomes an element error at start or a warning message for a change made
/// while running.
#[derive(Debug)]
struct Refusal {
    kind: gst::ResourceError,
    text: String,
}

/// `refusal!(KIND, "format", args…)`: a [`Refusal`] of `KIND` with the formatted text.
macro_rules! refusal {
    ($kind:expr, $($fmt:tt)+) => {
        Refusal { kind: $kind, text: format!($($fmt)+) }
    };
}

impl From<Refusal> for gst::ErrorMessage {
    fn from(r: Refusal) -> Self {
        gst::error_msg!(r.kind, ("{}", r.text))
    }
}

/// One configured link, before sockets exist.
#[derive(Debug, Clone, PartialEq)]
struct LinkSpec {
    id: LinkId,
    uri: LinkUri,
}

/// Sockets and counters of one running link.
#[derive(Debug)]
struct LinkIo {
    id: LinkId,
    uri: String,
    /// `iface=`, else the multicast interface (`miface=`); empty when neither is set.
    iface: String,
    /// The link sends to a multicast group on a named interface (`miface=`/`iface=`).
    multicast_iface: bool,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    rtp_dest: SocketAddr,
    rtcp_dest: SocketAddr,
    send_errors: AtomicU64,
    /// The spec it was opened from (to diff live config changes).
    spec: LinkSpec,
    /// Set to end this link's RTCP thread (link removed while running).
    stop: AtomicBool,
    /// A send failed with `ENODEV`: the interface this link is bound to (`iface=`) is
    /// gone; or, on a multicast link with a multicast interface (`miface=`), with
    /// `ENETUNREACH`: that interface or its address is gone. Its sockets stay bound to the old interface index even when an interface
    /// of the same name comes back (modem reset), so the timer thread reopens the link.
    device_gone: AtomicBool,
}

/// The protocol state shared by `render()` and the link threads.
#[derive(Debug)]
struct Core {
    sender: Sender,
    /// When the next periodic `ristbond-stats` is due (`None`: stats-interval 0).
    stats: Option<common::StatsSchedule>,
    /// When the timer thread will next wake by itself.
    timer_deadline: common::TimerDeadline,
}

impl Core {
    /// True when the timer thread must be woken before its own deadline: a core timer
    /// (SR, pacing, dead-link check) moved before it, or a link state change waits to
    /// be posted. Checked after every payload and RTCP datagram, so the common case
    /// (nothing changed) costs no wake-up and no context switch.
    fn timer_thread_needed(&self) -> bool {
        self.sender.has_transition() || self.timer_deadline.moved_before(self.sender.poll_timeout())
    }
}

#[derive(Debug)]
struct Shared {
    links: RwLock<Vec<Arc<LinkIo>>>,
    /// RTCP threads of links added while running (joined at stop or removal).
    link_threads: Mutex<Vec<(LinkId, JoinHandle<()>)>>,
    core: Mutex<Core>,
    /// Wakes the timer thread when the core's timeout may have moved.
    wake: Condvar,
    stop: AtomicBool,
    /// Held while the link set is changed (live config, reopening a link whose
    /// interface came back), so two changes never interleave.
    reconfigure: Mutex<()>,
}

/// Running state, from `start()` to `stop()`.
#[derive(Debug)]
struct State {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Whole TS packets and a partial one carried over from the previous buffer.
    pending: Vec<u8>,
    /// Random RTP timestamp offset (RFC 3550 §5.1).
    rtp_offset: u32,
    /// Clock for buffers without a timestamp.
    started: Instant,
}

/// Implementation of `ristbondsink`.
#[derive(Default)]
pub struct RistBondSink {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Set between `unlock()` and `unlock_stop()`: interrupts the EOS linger.
    flushing: Mutex<bool>,
    flushing_cond: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn links(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<LinkIo>>> {
        self.links.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Send datagrams; errors are counted per link and logged, never fatal (nobody may
    /// listen yet, a modem may be down).
    fn send(&self, obj: &gst::Object, transmits: Vec<Transmit>) {
        let links = self.links();
        for t in transmits {
            let Some(link) = links.iter().find(|l| l.id == t.link) else {
                gst::warning!(CAT, obj = obj, "transmit for unknown link {}", t.link);
                continue;
            };
            let (socket, dest) = match t.channel {
                Channel::Rtp => (&link.rtp, link.rtp_dest),
                Channel::Rtcp => (&link.rtcp, link.rtcp_dest),
            };
            if let Err(err) = socket.send_to(&t.data, dest) {
                let gone = match err.raw_os_error() {
                    Some(common::ENODEV) => !link.iface.is_empty(),
                    Some(common::ENETUNREACH) => link.multicast_iface,
                    _ => false,
                };
                if gone {
                    link.device_gone.store(true, Ordering::Release);
                }
                let n = link.send_errors.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_power_of_two() {
                    gst::debug!(
                        CAT,
                        obj = obj,
                        "link {} ({}): send {:?} to {dest} failed ({n} errors so far): {err}",
                        link.id,
                        link.uri,
                        t.channel
                    );
                }
            }
        }
    }

    /// Build the `ristbond-stats` structure (docs/elements.md).
    fn stats_structure(&self, core: &Core) -> gst::Structure {
        let stats: SenderStats = core.sender.stats();
        let links: Vec<gst::Structure> = self
            .links()
            .iter()
            .map(|link| {
                let ls = stats.links.iter().find(|s| s.id == link.id);
                let loss_rate = ls.map(|s| s.loss_rate).unwrap_or(0.0);
                let state = ls.map_or("Probing", |s| s.state.as_str());
                gst::Structure::builder("ristbond-link")
                    .field("id", link.id)
                    .field("uri", link.uri.as_str())
                    .field("interface", link.iface.as_str())
                    .field("state", state)
                    .field("rtt-ms", ls.and_then(|s| s.rtt_ms).unwrap_or(0.0))
                    .field("loss-rate", loss_rate)
                    .field("capacity-bps", ls.map(|s| s.capacity_bps).unwrap_or(0))
                    .field(
                        "duplicated-packets",
                        ls.map(|s| s.duplicated_packets).unwrap_or(0),
                    )
                    .field("sent-packets", ls.map(|s| s.sent_packets).unwrap_or(0))
                    .field("sent-bytes", ls.map(|s| s.sent_bytes).unwrap_or(0))
                    .field(
                        "retransmitted-packets",
                        ls.map(|s| s.retransmitted_packets).unwrap_or(0),
                    )
                    .field("nacks-received", ls.map(|s| s.nacks_received).unwrap_or(0))
                    .field("send-errors", link.send_errors.load(Ordering::Relaxed))
                    .build()
            })
            .collect();
        let bytes_sent: u64 = stats.links.iter().map(|l| l.sent_bytes).sum();
        gst::Structure::builder("ristbond-stats")
            .field("packets-sent", stats.packets_sent)
            .field("packets-retransmitted", stats.packets_retransmitted)
            .field("packets-dropped-deadline", stats.packets_dropped_deadline)
            .field("bytes-sent", bytes_sent)
            .field("packets-duplicated", stats.packets_duplicated)
            .field("packets-resent-failover", stats.packets_resent_failover)
            .field("failover-resends-expired", stats.failover_resends_expired)
            .field("retransmits-expired", stats.retransmits_expired)
            .field("packets-queued", stats.queued_packets)
            .field("available-bitrate", stats.available_bitrate_bps)
            .field("links", gst::Array::new(links))
            .build()
    }
}

fn drain(sender: &mut Sender) -> Vec<Transmit> {
    std::iter::from_fn(|| sender.poll_transmit()).collect()
}

fn post_stats(element: &super::RistBondSink, s: gst::Structure) {
    let msg = gst::message::Element::builder(s).src(element).build();
    let _ = element.post_message(msg);
}

/// Post a `ristbond-link-state` message (docs/elements.md) for a link state change.
fn post_transition(
    element: &super::RistBondSink,
    shared: &Shared,
    t: ristbond_core::sender::LinkTransition,
) {
    let (uri, iface) = shared
        .links()
        .iter()
        .find(|l| l.id == t.link)
        .map(|l| (l.uri.clone(), l.iface.clone()))
        .unwrap_or_default();
    gst::info!(
        CAT,
        obj = element,
        "link {} ({uri}): {} -> {}",
        t.link,
        t.from.as_str(),
        t.to.as_str()
    );
    let s = gst::Structure::builder("ristbond-link-state")
        .field("id", t.link)
        .field("uri", uri)
        .field("interface", iface)
        .field("from", t.from.as_str())
        .field("to", t.to.as_str())
        .build();
    let _ = element.post_message(gst::message::Element::builder(s).src(element).build());
}

/// Timer thread: runs the core's timers (sender reports, buffer expiry), sends what they
/// produce and posts periodic stats.
fn timer_thread(shared: Arc<Shared>, element: glib::WeakRef<super::RistBondSink>) {
    let mut core = lock(&shared.core);
    let mut next_reopen = Instant::now();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        if now >= next_reopen
            && shared
                .links()
                .iter()
                .any(|l| l.device_gone.load(Ordering::Acquire))
        {
            next_reopen = now + REOPEN_INTERVAL;
            drop(core);
            let Some(element) = element.upgrade() else {
                return;
            };
            element.imp().reopen_gone_links(&shared);
            core = lock(&shared.core);
            continue;
        }
        if core.sender.poll_timeout().is_some_and(|t| t <= now) {
            core.sender.handle_timeout(now);
        }
        let transmits = drain(&mut core.sender);
        let transitions: Vec<_> = std::iter::from_fn(|| core.sender.poll_transition()).collect();
        let due = core.stats.as_mut().is_some_and(|s| s.due(now));
        let stats = due.then(|| shared.stats_structure(&core));
        if !transmits.is_empty() || stats.is_some() || !transitions.is_empty() {
            drop(core);
            let Some(element) = element.upgrade() else {
                return;
            };
            shared.send(element.upcast_ref(), transmits);
            for t in transitions {
                post_transition(&element, &shared, t);
            }
            if let Some(s) = stats {
                post_stats(&element, s);
            }
            core = lock(&shared.core);
            continue;
        }
        let mut deadline = now + common::TIMER_POLL;
        if let Some(t) = core.sender.poll_timeout() {
            deadline = deadline.min(t);
        }
        if let Some(schedule) = &core.stats {
            deadline = deadline.min(schedule.next());
        }
        core.timer_deadline.arm(deadline);
        core = common::wait_until(&shared.wake, core, now, deadline);
        core.timer_deadline.disarm();
    }
}

/// How often a link whose interface is gone tries to reopen on it.
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// RTCP thread of one link: feeds RR/NACKs to the core and sends the retransmissions.
fn rtcp_thread(
    shared: Arc<Shared>,
    link: Arc<LinkIo>,
    element: glib::WeakRef<super::RistBondSink>,
) {
    let mut buf = vec![0u8; common::MAX_DATAGRAM];
    while !shared.stop.load(Ordering::Acquire) && !link.stop.load(Ordering::Acquire) {
        let (n, from) = match link.rtcp.recv_from(&mut buf) {
            Ok(r) => r,
            Err(err) if common::is_timeout(&err) => continue,
            Err(err) => {
                // ICMP errors (ECONNREFUSED...) surface here; they are not fatal.
                if let Some(element) = element.upgrade() {
                    gst::trace!(CAT, obj = element, "link {} RTCP receive: {err}", link.id);
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let now = Instant::now();
        let (transmits, wake) = {
            let mut core = lock(&shared.core);
            if let Err(err) = core.sender.handle_rtcp(link.id, &buf[..n], now) {
                if let Some(element) = element.upgrade() {
                    gst::debug!(
                        CAT,
                        obj = element,
                        "link {}: RTCP from {from} dropped: {err}",
                        link.id
                    );
                }
            }
            (drain(&mut core.sender), core.timer_thread_needed())
        };
        if wake {
            shared.wake.notify_one();
        }
        if let Some(element) = element.upgrade() {
            shared.send(element.upcast_ref(), transmits);
        }
    }
}

impl RistBondSink {
    /// The links to use (the `links` property, or `config.links[]` when it is empty)
    /// and the scheduler settings of `config`.
    fn link_specs(&self, settings: &Settings) -> Result<(Vec<LinkSpec>, SchedulerConfig), Refusal> {
        let config: BondingConfig = if settings.config.trim().is_empty() {
            BondingConfig::default()
        } else {
            toml::from_str(&settings.config).map_err(|err| {
                refusal!(
                    gst::ResourceError::Settings,
                    "Invalid `config` (bonding_config TOML): {}",
                    err
                )
            })?
        };
        if let Some(version) = config.version.filter(|v| *v != 1) {
            return Err(refusal!(
                gst::ResourceError::Settings,
                "Unsupported bonding_config version {} (expected 1)",
                version
            ));
        }
        let scheduler = match &config.scheduler {
            Some(t) => t.to_config().map_err(|err| {
                refusal!(
                    gst::ResourceError::Settings,
                    "Invalid `config` (bonding_config TOML): {}",
                    err
                )
            })?,
            None => SchedulerConfig::default(),
        };

        let specs = if !settings.links.trim().is_empty() {
            if !config.links.is_empty() {
                gst::info!(
                    CAT,
                    imp = self,
                    "`links` property set: ignoring bonding_config.links"
                );
            }
            LinkUri::parse_list(&settings.links)
                .map_err(|err| refusal!(gst::ResourceError::Settings, "Invalid `links`: {}", err))?
                .into_iter()
                .enumerate()
                .map(|(i, uri)| LinkSpec {
                    id: i as LinkId,
                    uri,
                })
                .collect::<Vec<_>>()
        } else {
            let mut specs: Vec<LinkSpec> = Vec::new();
            for link in &config.links {
                let mut uri = LinkUri::parse(&link.uri).map_err(|err| {
                    refusal!(
                        gst::ResourceError::Settings,
                        "Invalid bonding_config link {}: {}",
                        link.id,
                        err
                    )
                })?;
                if specs.iter().any(|s| s.id == link.id) {
                    return Err(refusal!(
                        gst::ResourceError::Settings,
                        "Duplicate bonding_config link id {}",
                        link.id
                    ));
                }
                if let Some(iface) = link.interface.as_ref().filter(|i| !i.is_empty()) {
                    uri.iface = Some(iface.clone());
                }
                specs.push(LinkSpec { id: link.id, uri });
            }
            specs
        };

        if specs.is_empty() {
            return Err(refusal!(
                gst::ResourceError::Settings,
                "No links: set `links` (rist://HOST:PORT,...) or `config` with [[links]]"
            ));
        }
        if let Some(s) = specs.iter().find(|s| s.uri.listen) {
            return Err(refusal!(
                gst::ResourceError::Settings,
                "Link {} is a listen URI (rist://@...); ristbondsink needs destinations",
                s.uri.uri
            ));
        }
        Ok((specs, scheduler))
    }

    /// `config` (or `links`) changed while running: reload the scheduler and diff the
    /// links by id (kept links untouched; removed ones stop; new or changed ones are
    /// opened). Errors leave everything as it was and are reported as a warning.
    fn apply_live(&self) {
        let settings = lock(&self.settings).clone();
        let Some(shared) = lock(&self.state).as_ref().map(|s| s.shared.clone()) else {
            return;
        };
        let _reconfigure = lock(&shared.reconfigure);
        let (specs, scheduler) = match self.link_specs(&settings) {
            Ok(v) => v,
            Err(err) => {
                gst::warning!(CAT, imp = self, "live config refused: {err:?}");
                self.post_warning_message(err);
                return;
            }
        };
        let current: Vec<Arc<LinkIo>> = shared.links().clone();
        let removed: Vec<Arc<LinkIo>> = current
            .iter()
            .filter(|l| !specs.iter().any(|s| *s == l.spec))
            .cloned()
            .collect();
        let added: Vec<&LinkSpec> = specs
            .iter()
            .filter(|s| !current.iter().any(|l| l.spec == **s))
            .collect();
        let mut opened = Vec::new();
        for spec in &added {
            match self.open_link(spec) {
                Ok(link) => opened.push(Arc::new(link)),
                Err(err) => {
                    gst::warning!(CAT, imp = self, "live config: link {} refused", spec.id);
                    self.post_warning_message(err);
                    return;
                }
            }
        }
        let (n_opened, n_removed) = (opened.len(), removed.len());
        self.replace_links(&shared, Some(scheduler), removed, opened);
        gst::info!(
            CAT,
            imp = self,
            "live config applied: {n_opened} link(s) added, {n_removed} removed"
        );
    }

    /// Links whose interface is gone (`device_gone`): open each again from its spec;
    /// where that works (an interface of that name is back), the new link replaces the
    /// old one under the same id and starts over as a new link (`Probing`). Where it
    /// does not, the link stays as it is and is tried again later.
    fn reopen_gone_links(&self, shared: &Arc<Shared>) {
        let _reconfigure = lock(&shared.reconfigure);
        let gone: Vec<Arc<LinkIo>> = shared
            .links()
            .iter()
            .filter(|l| l.device_gone.load(Ordering::Acquire))
            .cloned()
            .collect();
        let mut removed = Vec::new();
        let mut opened = Vec::new();
        for old in gone {
            match self.open_link(&old.spec) {
                Ok(link) => {
                    gst::info!(
                        CAT,
                        imp = self,
                        "link {} ({}): interface {} is back, link reopened",
                        old.id,
                        old.uri,
                        old.iface
                    );
                    removed.push(old);
                    opened.push(Arc::new(link));
                }
                Err(err) => gst::debug!(
                    CAT,
                    imp = self,
                    "link {}: interface still gone: {}",
                    old.id,
                    err.text
                ),
            }
        }
        if !opened.is_empty() {
            self.replace_links(shared, None, removed, opened);
        }
    }

    /// Swap `removed` for `opened` in the running link set (the core, the socket list
    /// and the RTCP threads), and set `scheduler` if given. Caller holds `reconfigure`.
    fn replace_links(
        &self,
        shared: &Arc<Shared>,
        scheduler: Option<SchedulerConfig>,
        removed: Vec<Arc<LinkIo>>,
        opened: Vec<Arc<LinkIo>>,
    ) {
        let now = Instant::now();
        {
            let mut core = lock(&shared.core);
            if let Some(scheduler) = scheduler {
                core.sender.set_scheduler(scheduler);
            }
            for l in &removed {
                let _ = core.sender.remove_link(l.id);
            }
            for l in &opened {
                core.sender.add_link(l.id, now);
            }
        }
        {
            let mut links = shared.links.write().unwrap_or_else(|e| e.into_inner());
            links.retain(|l| !removed.iter().any(|r| Arc::ptr_eq(l, r)));
            links.extend(opened.iter().cloned());
            links.sort_by_key(|l| l.id);
        }
        let mut threads = lock(&shared.link_threads);
        for l in &removed {
            l.stop.store(true, Ordering::Release);
        }
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut *threads)
            .into_iter()
            .partition(|(id, _)| removed.iter().any(|r| r.id == *id));
        *threads = kept;
        for l in &opened {
            let (shared2, link, weak) = (shared.clone(), l.clone(), self.obj().downgrade());
            match std::thread::Builder::new()
                .name(format!("ristbondsink-rtcp{}", l.id))
                .spawn(move || rtcp_thread(shared2, link, weak))
            {
                Ok(t) => threads.push((l.id, t)),
                Err(err) => gst::warning!(CAT, imp = self, "cannot start a thread: {err}"),
            }
        }
        drop(threads);
        for (_, t) in gone {
            let _ = t.join();
        }
        shared.wake.notify_all();
    }

    /// Post a refused live change as a warning message with the refusal's own text.
    fn post_warning_message(&self, err: Refusal) {
        let msg = gst::message::Warning::builder(err.kind, &err.text)
            .src(&*self.obj())
            .build();
        let _ = self.obj().post_message(msg);
    }

    fn open_link(&self, spec: &LinkSpec) -> Result<LinkIo, Refusal> {
        let uri = &spec.uri;
        let rtp_dest = common::resolve(&uri.host, uri.port).map_err(|err| {
            refusal!(
                gst::ResourceError::NotFound,
                "Link {}: cannot resolve {}: {}",
                uri.uri,
                uri.host,
                err
            )
        })?;
        let mut rtcp_dest = rtp_dest;
        rtcp_dest.set_port(uri.port + 1);
        let group = rtp_dest.ip().is_multicast().then(|| rtp_dest.ip());
        uri.check_multicast(group.is_some()).map_err(|reason| {
            refusal!(
                gst::ResourceError::Settings,
                "Link {}: {} ({} is {})",
                uri.uri,
                reason,
                uri.host,
                rtp_dest.ip()
            )
        })?;
        let mc_iface = common::link_multicast_iface(uri, group.is_some())
            .map_err(|text| refusal!(gst::ResourceError::OpenWrite, "{}", text))?;
        // Multicast: RTP and RTCP go to the group with the link's interface and TTL; the
        // RTCP socket binds GROUP:PORT+1 and joins the group there, since receivers
        // (GStreamer's ristsrc, ours) send their RTCP to GROUP:PORT+1.
        let multicast = |join: Option<IpAddr>| {
            group.map(|_| Multicast {
                iface: mc_iface.as_ref(),
                ttl: uri.multicast_ttl(),
                join,
            })
        };
        let socket_error = |what: &str, err: SocketError| match err {
            SocketError::BindDevice(err) => refusal!(
                gst::ResourceError::OpenWrite,
                "Link {}: {} socket {}",
                uri.uri,
                what,
                common::bind_device_error_text(uri.iface.as_deref().unwrap_or_default(), &err)
            ),
            SocketError::Bind(addr, err) => refusal!(
                gst::ResourceError::OpenWrite,
                "Link {}: cannot bind {} socket to {}: {}",
                uri.uri,
                what,
                addr,
                err
            ),
            SocketError::Other(err) => refusal!(
                gst::ResourceError::OpenWrite,
                "Link {}: cannot create {} socket: {}",
                uri.uri,
                what,
                err
            ),
            SocketError::Multicast(text) => refusal!(
                gst::ResourceError::OpenWrite,
                "Link {}: {} socket: {}",
                uri.uri,
                what,
                text
            ),
        };
        let rtp = common::udp_socket(
            &Bind {
                domain_of: rtp_dest,
                iface: uri.iface.as_deref(),
                local: uri.local,
                multicast: multicast(None),
            },
            common::RECV_POLL,
        )
        .map_err(|e| socket_error("RTP", e))?;
        // With local=IP:PORT (PORT ≠ 0), RTCP is bound to PORT+1, like the remote side.
        // On a multicast link RTCP binds GROUP:PORT+1 (local= applies to RTP only).
        let rtcp_local = match group {
            Some(_) => Some(rtcp_dest),
            None => uri.local.map(|mut a| {
                if a.port() != 0 {
                    a.set_port(a.port().wrapping_add(1));
                }
                a
            }),
        };
        let rtcp = common::udp_socket(
            &Bind {
                domain_of: rtcp_dest,
                iface: uri.iface.as_deref(),
                local: rtcp_local,
                multicast: multicast(group),
            },
            common::RECV_POLL,
        )
        .map_err(|e| socket_error("RTCP", e))?;
        gst::debug!(
            CAT,
            imp = self,
            "link {} ({}): RTP {:?} -> {rtp_dest}, RTCP {:?} <-> {rtcp_dest}",
            spec.id,
            uri.uri,
            rtp.local_addr().ok(),
            rtcp.local_addr().ok()
        );
        Ok(LinkIo {
            id: spec.id,
            uri: uri.uri.clone(),
            iface: uri
                .iface
                .clone()
                .or_else(|| mc_iface.as_ref().map(|i| i.name.clone()))
                .unwrap_or_default(),
            multicast_iface: mc_iface.is_some(),
            rtp,
            rtcp,
            rtp_dest,
            rtcp_dest,
            send_errors: AtomicU64::new(0),
            spec: spec.clone(),
            stop: AtomicBool::new(false),
            device_gone: AtomicBool::new(false),
        })
    }

    /// Send whole TS packets of `data` as RTP payloads of ≤ 7 packets.
    fn send_packets(&self, state: &State, data: &[u8], rtp_timestamp: u32) {
        debug_assert_eq!(data.len() % TS_PACKET_SIZE, 0);
        if data.is_empty() {
            return;
        }
        let shared = &state.shared;
        let now = Instant::now();
        let (transmits, wake) = {
            let mut core = lock(&shared.core);
            for chunk in data.chunks(MAX_PAYLOAD) {
                if let Err(err) = core.sender.send_payload(chunk, rtp_timestamp, now) {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "payload of {} bytes dropped: {err}",
                        chunk.len()
                    );
                }
            }
            (drain(&mut core.sender), core.timer_thread_needed())
        };
        if wake {
            shared.wake.notify_one();
        }
        shared.send(self.obj().upcast_ref(), transmits);
    }

    fn rtp_timestamp(&self, state: &State, buffer: &gst::BufferRef) -> u32 {
        let segment = self.obj().segment();
        let running_time = segment.downcast_ref::<gst::format::Time>().and_then(|seg| {
            buffer
                .pts()
                .or(buffer.dts())
                .and_then(|ts| seg.to_running_time(ts))
        });
        let ns = running_time
            .map(|t| t.nseconds())
            .unwrap_or_else(|| state.started.elapsed().as_nanos() as u64);
        common::ns_to_rtp90(ns).wrapping_add(state.rtp_offset)
    }

    /// EOS: send what is left, answer NACKs for `eos-linger` ms, post final stats.
    fn linger_at_eos(&self) {
        let linger = Duration::from_millis(lock(&self.settings).eos_linger_ms.into());
        let shared = {
            let mut state = lock(&self.state);
            let Some(state) = state.as_mut() else {
                return;
            };
            let whole = state.pending.len() / TS_PACKET_SIZE * TS_PACKET_SIZE;
            if state.pending.len() > whole {
                gst::warning!(
                    CAT,
                    imp = self,
                    "dropping {} trailing bytes (not a whole TS packet) at EOS",
                    state.pending.len() - whole
                );
            }
            let pending = std::mem::take(&mut state.pending);
            let ts = common::ns_to_rtp90(state.started.elapsed().as_nanos() as u64)
                .wrapping_add(state.rtp_offset);
            self.send_packets(state, &pending[..whole], ts);
            state.shared.clone()
        };
        gst::debug!(CAT, imp = self, "EOS: answering NACKs for {linger:?}");
        let deadline = Instant::now() + linger;
        let mut flushing = lock(&self.flushing);
        while !*flushing {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            flushing = self
                .flushing_cond
                .wait_timeout(flushing, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(flushing);
        let s = {
            let core = lock(&shared.core);
            shared.stats_structure(&core)
        };
        post_stats(&self.obj(), s);
    }
}

#[glib::object_subclass]
impl ObjectSubclass for RistBondSink {
    const NAME: &'static str = "GstRistBondSink";
    type Type = super::RistBondSink;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for RistBondSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("links")
                    .nick("Links")
                    .blurb(
                        "Comma-separated destinations rist://HOST:PORT[?iface=IF][&local=IP[:PORT]] \
                         (PORT even: RTP on PORT, RTCP on PORT+1; iface binds with SO_BINDTODEVICE, \
                         needs CAP_NET_RAW). A multicast HOST takes [&miface=IF][&ttl=N]: the \
                         interface to send on and join on, the TTL (default 1). \
                         Empty: use config's [[links]]",
                    )
                    .default_value(Some(DEFAULT_LINKS))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Latency")
                    .blurb(
                        "Retransmission buffer in milliseconds: how long sent packets can be \
                         retransmitted (match the receiver's latency)",
                    )
                    .minimum(1)
                    .maximum(60_000)
                    .default_value(DEFAULT_LATENCY_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("stats-interval")
                    .nick("Statistics interval")
                    .blurb(
                        "Period of ristbond-stats element messages in milliseconds (0 = none)",
                    )
                    .maximum(3_600_000)
                    .default_value(DEFAULT_STATS_INTERVAL_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("config")
                    .nick("Bonding config")
                    .blurb(
                        "bonding_config as TOML (version, [[links]] id/uri/interface, [scheduler]); \
                         its links are used when the links property is empty. Invalid TOML fails at start; \
                         set while running it is applied live (links diffed by id, scheduler reloaded)",
                    )
                    .default_value(Some(DEFAULT_CONFIG))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("cname")
                    .nick("CNAME")
                    .blurb("RTCP SDES CNAME (RFC 3550 §6.5.1); default: the host name")
                    .default_value(Some(common::default_cname().as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("eos-linger")
                    .nick("EOS linger")
                    .blurb(
                        "Milliseconds to keep answering NACKs after EOS before letting EOS through \
                         (covers the receiver's last repairs; raise it to about 2 × RTT + 100 on \
                         long-RTT links)",
                    )
                    .maximum(60_000)
                    .default_value(DEFAULT_EOS_LINGER_MS)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        self.set_setting(value, pspec);
        if matches!(pspec.name(), "links" | "config") {
            self.apply_live();
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        self.get_setting(pspec)
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        // A network sender: the default BaseSink sync=true paces output to the clock.
        obj.set_sync(true);
        // Nothing to show in last-sample; do not keep a reference to old buffers.
        obj.set_enable_last_sample(false);
    }
}

impl RistBondSink {
    /// Store a property value in the settings.
    fn set_setting(&self, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        match pspec.name() {
            "links" => {
                settings.links = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
            }
            "latency" => settings.latency_ms = value.get().expect("type checked upstream"),
            "stats-interval" => {
                settings.stats_interval_ms = value.get().expect("type checked upstream")
            }
            "config" => {
                settings.config = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
            }
            "cname" => {
                settings.cname = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(common::default_cname);
            }
            "eos-linger" => settings.eos_linger_ms = value.get().expect("type checked upstream"),
            name => unreachable!("unknown property {name}"),
        }
        gst::debug!(CAT, imp = self, "{} = {:?}", pspec.name(), value);
    }

    /// Read a property value from the settings.
    fn get_setting(&self, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "links" => settings.links.to_value(),
            "latency" => settings.latency_ms.to_value(),
            "stats-interval" => settings.stats_interval_ms.to_value(),
            "config" => settings.config.to_value(),
            "cname" => settings.cname.to_value(),
            "eos-linger" => settings.eos_linger_ms.to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }
}

impl GstObjectImpl for RistBondSink {}

impl ElementImpl for RistBondSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RIST bonding sink",
                "Sink/Network",
                "Sends MPEG-TS as RIST Simple Profile (VSF TR-06-1) bonded over several UDP links",
                "Braid developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::builder("video/mpegts")
                .field("systemstream", true)
                .build();
            vec![gst::PadTemplate::new(
                "sink",
                gst::PadDirection::Sink,
                gst::PadPresence::Always,
                &caps,
            )
            .expect("valid pad template")]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseSinkImpl for RistBondSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let (specs, scheduler) = self.link_specs(&settings)?;
        let links = specs
            .iter()
            .map(|spec| self.open_link(spec).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;

        let now = Instant::now();
        let mut sender = Sender::with_initial_seq(
            SenderConfig {
                // TR-06-1 §5.2: originals use an even SSRC, retransmissions SSRC | 1.
                ssrc: common::random_u32() & !1,
                cname: settings.cname.clone(),
                retransmit_buffer: Duration::from_millis(settings.latency_ms.into()),
                rtcp_interval: common::RTCP_INTERVAL,
            },
            // RFC 3550 §5.1: the initial sequence number is random.
            common::random_u32() as u16,
            now,
        );
        sender.set_scheduler(scheduler);
        for link in &links {
            sender.add_link(link.id, now);
        }
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                sender,
                stats: common::StatsSchedule::new(settings.stats_interval_ms, now),
                timer_deadline: common::TimerDeadline::default(),
            }),
            links: RwLock::new(links),
            link_threads: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            reconfigure: Mutex::new(()),
        });

        let weak = self.obj().downgrade();
        let mut threads = Vec::new();
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|err| {
                    gst::error_msg!(
                        gst::ResourceError::Failed,
                        ("Cannot start a thread: {}", err)
                    )
                })
        };
        let result = (|| {
            {
                let (shared, weak) = (shared.clone(), weak.clone());
                threads.push(spawn(
                    "ristbondsink-timer".into(),
                    Box::new(move || timer_thread(shared, weak)),
                )?);
            }
            let links = shared.links().clone();
            for link in links {
                let (shared2, weak) = (shared.clone(), weak.clone());
                threads.push(spawn(
                    format!("ristbondsink-rtcp{}", link.id),
                    Box::new(move || rtcp_thread(shared2, link, weak)),
                )?);
            }
            Ok(())
        })();
        if let Err(err) = result {
            shared.stop.store(true, Ordering::Release);
            shared.wake.notify_all();
            for t in threads {
                let _ = t.join();
            }
            return Err(err);
        }

        gst::info!(
            CAT,
            imp = self,
            "started with {} link(s), latency {} ms",
            shared.links().len(),
            settings.latency_ms
        );
        *lock(&self.state) = Some(State {
            shared,
            threads,
            pending: Vec::with_capacity(MAX_PAYLOAD * 2),
            rtp_offset: common::random_u32(),
            started: now,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let Some(state) = lock(&self.state).take() else {
            return Ok(());
        };
        state.shared.stop.store(true, Ordering::Release);
        state.shared.wake.notify_all();
        let added = std::mem::take(&mut *lock(&state.shared.link_threads));
        for t in state
            .threads
            .into_iter()
            .chain(added.into_iter().map(|(_, t)| t))
        {
            if t.join().is_err() {
                gst::warning!(CAT, imp = self, "a link thread panicked");
            }
        }
        // Sockets close when the last reference (the joined threads held clones) drops.
        let stats = lock(&state.shared.core).sender.stats();
        gst::info!(CAT, imp = self, "stopped: {stats:?}");
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut guard = lock(&self.state);
        let Some(state) = guard.as_mut() else {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ["Not started"]);
            return Err(gst::FlowError::Error);
        };
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::CoreError::Failed, ["Cannot map buffer"]);
            gst::FlowError::Error
        })?;
        let rtp_timestamp = self.rtp_timestamp(state, buffer);
        let data = map.as_slice();
        if state.pending.is_empty() && data.len() % TS_PACKET_SIZE == 0 {
            // The common case (mpegtsmux alignment=7): no copy.
            self.send_packets(state, data, rtp_timestamp);
        } else {
            if state.pending.is_empty() && data.first() != Some(&0x47) {
                gst::warning!(CAT, imp = self, "buffer does not start with a TS sync byte");
            }
            state.pending.extend_from_slice(data);
            let whole = state.pending.len() / TS_PACKET_SIZE * TS_PACKET_SIZE;
            let pending = std::mem::take(&mut state.pending);
            self.send_packets(state, &pending[..whole], rtp_timestamp);
            state.pending = pending[whole..].to_vec();
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            self.linger_at_eos();
        }
        self.parent_event(event)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.flushing) = true;
        self.flushing_cond.notify_all();
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.flushing) = false;
        Ok(())
    }
}
