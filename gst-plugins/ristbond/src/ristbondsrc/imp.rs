// SPDX-License-Identifier: MPL-2.0

/**
 * element-ristbondsrc:
 *
 * RIST Simple Profile (VSF TR-06-1) receiver merging several UDP links.
 *
 * Per link it listens for RTP on BIND_IP:PORT and RTCP on BIND_IP:PORT+1. Packets of
 * all links form one RTP sequence space: duplicates are dropped, packets are reordered
 * within `latency` ms, and gaps are NACKed (RFC 4585 §6.2.1 generic NACK) to the
 * address the sender's RTCP came from on that link, together with receiver reports and
 * SDES (RFC 3550 §6.4.2). Until a link has seen RTCP from the sender, nothing is sent
 * on it; a link on a multicast group (`rist://@GROUP:PORT?miface=IF`) joins the group
 * on IF and sends its RTCP to GROUP:PORT+1 from the start, as GStreamer's `ristsrc`. The output is `video/mpegts, systemstream=true, packetsize=188`; the source is
 * live and timestamps buffers with the running time at which they leave the element.
 *
 * A `ristbond-stats` element message is posted every `stats-interval` ms
 * (see `docs/elements.md`). With `idle-timeout` > 0 the element sends EOS once data
 * has flowed and then nothing arrived for that long.
 *
 * ## Example pipeline
 * ```bash
 * gst-launch-1.0 ristbondsrc links="rist://@0.0.0.0:15000,rist://@0.0.0.0:15002" \
 *   ! filesink location=out.ts
 * ```
 *
 * Since: plugin 0.1
 */
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use ristbond_core::link::LinkUri;
use ristbond_core::receiver::{Output, Receiver, ReceiverConfig};
use ristbond_core::{Channel, LinkId, Transmit};

use crate::common::{self, Bind, Multicast, SocketError};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "ristbondsrc",
        gst::DebugColorFlags::empty(),
        Some("RIST bonding receiver"),
    )
});

const DEFAULT_LINKS: &str = "";
const DEFAULT_LATENCY_MS: u32 = 1000;
const DEFAULT_STATS_INTERVAL_MS: u32 = 1000;
const DEFAULT_IDLE_TIMEOUT_MS: u32 = 0;

/// Most RTP payloads merged into one output buffer (7 × 188 bytes each).
const MAX_PAYLOADS_PER_BUFFER: usize = 32;

#[derive(Debug, Clone)]
struct Settings {
    links: String,
    latency_ms: u32,
    stats_interval_ms: u32,
    cname: String,
    idle_timeout_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            links: DEFAULT_LINKS.to_owned(),
            latency_ms: DEFAULT_LATENCY_MS,
            stats_interval_ms: DEFAULT_STATS_INTERVAL_MS,
            cname: common::default_cname(),
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
        }
    }
}

/// Sockets of one running link.
#[derive(Debug)]
struct LinkIo {
    id: LinkId,
    uri: String,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    /// On a multicast link (`rist://@GROUP:PORT`), GROUP:PORT+1: RTCP goes to the group,
    /// where the sender joined (as GStreamer's `ristsrc` does), from the start and
    /// whatever address the sender's RTCP comes from. `None` on a unicast link: RTCP
    /// goes to where the sender's RTCP came from.
    rtcp_group: Option<SocketAddr>,
}

/// The protocol state shared by `create()` and the link threads.
#[derive(Debug)]
struct Core {
    receiver: Receiver,
    /// Where the sender's RTCP came from, per link (same order as `Shared::links`):
    /// RR and NACKs go there.
    rtcp_peers: Vec<Option<SocketAddr>>,
    /// When the last RTP datagram arrived (for `idle-timeout`).
    last_rtp: Option<Instant>,
    /// When the next periodic `ristbond-stats` is due (`None`: stats-interval 0).
    stats: Option<common::StatsSchedule>,
    /// Set by `unlock()`: `create()` returns `Flushing`.
    flushing: bool,
    /// Packets given up since the last output buffer: mark it DISCONT.
    discont: bool,
    /// `idle-timeout` expired: flush what is held, then EOS.
    draining: bool,
    /// When the timer thread will next wake by itself.
    timer_deadline: common::TimerDeadline,
}

#[derive(Debug)]
struct Shared {
    links: Vec<LinkIo>,
    core: Mutex<Core>,
    /// Wakes `create()`: output became ready, or unlock/stop. Signalled only when
    /// there is something to do, so an in-order packet costs one wake-up of the
    /// streaming thread, not one of every thread.
    wake: Condvar,
    /// Wakes the timer thread: a receiver timer (NACK retry, RR, gap deadline) is now
    /// due before `Core::timer_deadline`, or stop.
    timer_wake: Condvar,
    stop: AtomicBool,
    /// RTCP datagrams dropped because the link's sender address is not known yet.
    rtcp_unaddressed: AtomicU64,
    /// Packets reported lost by the core (`Output::Lost`).
    lost: AtomicU64,
}

/// Running state, from `start()` to `stop()`.
#[derive(Debug)]
struct State {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    idle_timeout: Option<Duration>,
    latency: Duration,
}

/// Implementation of `ristbondsrc`.
#[derive(Default)]
pub struct RistBondSrc {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn drain(receiver: &mut Receiver) -> Vec<Transmit> {
    std::iter::from_fn(|| receiver.poll_transmit()).collect()
}

/// A datagram addressed and ready to go, resolved under the core lock.
struct Outgoing {
    index: usize,
    dest: SocketAddr,
    data: Vec<u8>,
}

impl Shared {
    /// Run due timers and collect what the core wants to send (RTCP to each link's
    /// known sender address; dropped while unknown).
    fn service(&self, core: &mut Core, now: Instant) -> Vec<Outgoing> {
        if core.receiver.poll_timeout().is_some_and(|t| t <= now) {
            core.receiver.handle_timeout(now);
        }
        let mut out = Vec::new();
        for t in drain(&mut core.receiver) {
            let Some(index) = self.links.iter().position(|l| l.id == t.link) else {
                continue;
            };
            match (t.channel, core.rtcp_peers[index]) {
                (Channel::Rtcp, Some(dest)) => out.push(Outgoing {
                    index,
                    dest,
                    data: t.data,
                }),
                (Channel::Rtcp, None) => {
                    self.rtcp_unaddressed.fetch_add(1, Ordering::Relaxed);
                }
                (Channel::Rtp, _) => {}
            }
        }
        out
    }

    fn send(&self, obj: &gst::Object, out: Vec<Outgoing>) {
        for o in out {
            let link = &self.links[o.index];
            if let Err(err) = link.rtcp.send_to(&o.data, o.dest) {
                gst::debug!(
                    CAT,
                    obj = obj,
                    "link {}: RTCP to {} failed: {err}",
                    link.id,
                    o.dest
                );
            }
        }
    }

    /// Build the `ristbond-stats` structure (docs/elements.md).
    fn stats_structure(&self, core: &Core) -> gst::Structure {
        let stats = core.receiver.stats();
        let links: Vec<gst::Structure> = self
            .links
            .iter()
            .enumerate()
            .map(|(i, link)| {
                let ls = stats.links.iter().find(|s| s.id == link.id);
                gst::Structure::builder("ristbond-link")
                    .field("id", link.id)
                    .field("uri", link.uri.as_str())
                    .field(
                        "received-packets",
                        ls.map(|s| s.received_packets).unwrap_or(0),
                    )
                    .field("received-bytes", ls.map(|s| s.received_bytes).unwrap_or(0))
                    .field(
                        "sender-address",
                        core.rtcp_peers[i]
                            .map(|a| a.to_string())
                            .unwrap_or_default(),
                    )
                    .build()
            })
            .collect();
        gst::Structure::builder("ristbond-stats")
            .field("packets-delivered", stats.packets_delivered)
            .field("packets-recovered", stats.packets_recovered)
            .field("packets-lost", stats.packets_lost)
            .field("duplicates", stats.duplicates)
            .field("nacks-sent", stats.nacks_sent)
            .field("links", gst::Array::new(links))
            .build()
    }
}

fn post_stats(element: &super::RistBondSrc, s: gst::Structure) {
    let msg = gst::message::Element::builder(s).src(element).build();
    let _ = element.post_message(msg);
}

/// Timer thread: NACK retries and receiver reports keep going even while downstream
/// is not pulling; posts periodic stats.
fn timer_thread(shared: Arc<Shared>, element: glib::WeakRef<super::RistBondSrc>) {
    let mut core = lock(&shared.core);
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let out = shared.service(&mut core, now);
        let due = core.stats.as_mut().is_some_and(|s| s.due(now));
        let stats = due.then(|| shared.stats_structure(&core));
        // Output may have become ready (a gap given up): let create() look.
        if core.receiver.has_output(now) {
            shared.wake.notify_one();
        }
        if !out.is_empty() || stats.is_some() {
            drop(core);
            let Some(element) = element.upgrade() else {
                return;
            };
            shared.send(element.upcast_ref(), out);
            if let Some(s) = stats {
                post_stats(&element, s);
            }
            core = lock(&shared.core);
            continue;
        }
        let mut deadline = now + common::TIMER_POLL;
        if let Some(t) = core.receiver.poll_timeout() {
            deadline = deadline.min(t);
        }
        if let Some(schedule) = &core.stats {
            deadline = deadline.min(schedule.next());
        }
        core.timer_deadline.arm(deadline);
        core = common::wait_until(&shared.timer_wake, core, now, deadline);
        core.timer_deadline.disarm();
    }
}

/// Receive thread of one socket (RTP or RTCP) of one link.
fn recv_thread(
    shared: Arc<Shared>,
    index: usize,
    channel: Channel,
    element: glib::WeakRef<super::RistBondSrc>,
) {
    let mut buf = vec![0u8; common::MAX_DATAGRAM];
    let link = &shared.links[index];
    let socket = match channel {
        Channel::Rtp => &link.rtp,
        Channel::Rtcp => &link.rtcp,
    };
    while !shared.stop.load(Ordering::Acquire) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(err) if common::is_timeout(&err) => continue,
            Err(err) => {
                if let Some(element) = element.upgrade() {
                    gst::trace!(CAT, obj = element, "link {} receive: {err}", link.id);
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let now = Instant::now();
        let (result, out, wake_output, wake_timer) = {
            let mut core = lock(&shared.core);
            let result = match channel {
                Channel::Rtp => {
                    core.last_rtp = Some(now);
                    core.receiver.handle_rtp(link.id, &buf[..n], now)
                }
                Channel::Rtcp => {
                    let result = core.receiver.handle_rtcp(link.id, &buf[..n], now);
                    if result.is_ok()
                        && link.rtcp_group.is_none()
                        && core.rtcp_peers[index] != Some(from)
                    {
                        core.rtcp_peers[index] = Some(from);
                        if let Some(element) = element.upgrade() {
                            gst::info!(
                                CAT,
                                obj = element,
                                "link {}: sender RTCP address {from}",
                                link.id
                            );
                        }
                    }
                    result
                }
            };
            let out = shared.service(&mut core, now);
            let wake_output = core.receiver.has_output(now);
            let wake_timer = core
                .timer_deadline
                .moved_before(core.receiver.poll_timeout());
            (result, out, wake_output, wake_timer)
        };
        // Signalled after the lock is released, so the woken thread does not block
        // on it again at once (each wasted wake-up is a context switch per packet).
        if wake_output {
            shared.wake.notify_one();
        }
        if wake_timer {
            shared.timer_wake.notify_one();
        }
        let Some(element) = element.upgrade() else {
            continue;
        };
        if let Err(err) = result {
            gst::debug!(
                CAT,
                obj = element,
                "link {}: {channel:?} datagram from {from} dropped: {err}",
                link.id
            );
        }
        shared.send(element.upcast_ref(), out);
    }
}

impl RistBondSrc {
    fn open_link(&self, id: LinkId, uri: &LinkUri) -> Result<LinkIo, gst::ErrorMessage> {
        if !uri.listen {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                (
                    "Link {} is not a listen URI: ristbondsrc needs rist://@BIND_IP:PORT",
                    uri.uri
                )
            ));
        }
        let rtp_addr = common::resolve(&uri.host, uri.port).map_err(|err| {
            gst::error_msg!(
                gst::ResourceError::NotFound,
                ("Link {}: cannot resolve {}: {}", uri.uri, uri.host, err)
            )
        })?;
        let mut rtcp_addr = rtp_addr;
        rtcp_addr.set_port(uri.port + 1);
        let group = rtp_addr.ip().is_multicast().then(|| rtp_addr.ip());
        uri.check_multicast(group.is_some()).map_err(|reason| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                (
                    "Link {}: {} ({} is not a multicast group)",
                    uri.uri,
                    reason,
                    rtp_addr.ip()
                )
            )
        })?;
        let mc_iface = common::link_multicast_iface(uri, group.is_some())
            .map_err(|text| gst::error_msg!(gst::ResourceError::OpenRead, ("{}", text)))?;
        let socket_error = |what: &str, err: SocketError| match err {
            SocketError::BindDevice(err) => gst::error_msg!(
                gst::ResourceError::OpenRead,
                (
                    "Link {}: {} socket {}",
                    uri.uri,
                    what,
                    common::bind_device_error_text(uri.iface.as_deref().unwrap_or_default(), &err)
                )
            ),
            SocketError::Bind(addr, err) => gst::error_msg!(
                gst::ResourceError::OpenRead,
                (
                    "Link {}: cannot bind {} port {} ({}): {}",
                    uri.uri,
                    what,
                    addr.port(),
                    addr,
                    err
                )
            ),
            SocketError::Other(err) => gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("Link {}: cannot create {} socket: {}", uri.uri, what, err)
            ),
            SocketError::Multicast(text) => gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("Link {}: {} socket: {}", uri.uri, what, text)
            ),
        };
        let open = |addr: SocketAddr, what: &str| {
            common::udp_socket(
                &Bind {
                    domain_of: addr,
                    iface: uri.iface.as_deref(),
                    local: Some(addr),
                    // Both sockets bind GROUP:PORT(+1) and join the group on the link's
                    // multicast interface; RTCP is also sent from there.
                    multicast: group.map(|g| Multicast {
                        iface: mc_iface.as_ref(),
                        ttl: uri.multicast_ttl(),
                        join: Some(g),
                    }),
                },
                common::RECV_POLL,
            )
            .map_err(|e| socket_error(what, e))
        };
        let rtp = open(rtp_addr, "RTP")?;
        let rtcp = open(rtcp_addr, "RTCP")?;
        gst::debug!(
            CAT,
            imp = self,
            "link {id} ({}): RTP on {rtp_addr}, RTCP on {rtcp_addr}",
            uri.uri
        );
        Ok(LinkIo {
            id,
            uri: uri.uri.clone(),
            rtp,
            rtcp,
            rtcp_group: group.map(|_| rtcp_addr),
        })
    }
}

#[glib::object_subclass]
impl ObjectSubclass for RistBondSrc {
    const NAME: &'static str = "GstRistBondSrc";
    type Type = super::RistBondSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for RistBondSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("links")
                    .nick("Links")
                    .blurb(
                        "Comma-separated listen addresses rist://@BIND_IP:PORT[?iface=IF] \
                         (PORT even: RTP on PORT, RTCP on PORT+1). A multicast BIND_IP takes \
                         [&miface=IF][&ttl=N]: the interface to join the group on and send \
                         RTCP to GROUP:PORT+1 on, the TTL (default 1)",
                    )
                    .default_value(Some(DEFAULT_LINKS))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Latency")
                    .blurb(
                        "Reorder / recovery buffer in milliseconds: how long a missing packet \
                         is waited for (and NACKed) before it is given up",
                    )
                    .minimum(1)
                    .maximum(60_000)
                    .default_value(DEFAULT_LATENCY_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("stats-interval")
                    .nick("Statistics interval")
                    .blurb("Period of ristbond-stats element messages in milliseconds (0 = none)")
                    .maximum(3_600_000)
                    .default_value(DEFAULT_STATS_INTERVAL_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("cname")
                    .nick("CNAME")
                    .blurb("RTCP SDES CNAME (RFC 3550 §6.5.1); default: the host name")
                    .default_value(Some(common::default_cname().as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("idle-timeout")
                    .nick("Idle timeout")
                    .blurb(
                        "Send EOS after this many milliseconds without RTP once data has \
                         flowed (0 = never)",
                    )
                    .default_value(DEFAULT_IDLE_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
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
            "cname" => {
                settings.cname = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(common::default_cname);
            }
            "idle-timeout" => {
                settings.idle_timeout_ms = value.get().expect("type checked upstream")
            }
            name => unreachable!("unknown property {name}"),
        }
        gst::debug!(CAT, imp = self, "{} = {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "links" => settings.links.to_value(),
            "latency" => settings.latency_ms.to_value(),
            "stats-interval" => settings.stats_interval_ms.to_value(),
            "cname" => settings.cname.to_value(),
            "idle-timeout" => settings.idle_timeout_ms.to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_live(true);
        obj.set_format(gst::Format::Time);
        obj.set_do_timestamp(true);
    }
}

impl GstObjectImpl for RistBondSrc {}

impl ElementImpl for RistBondSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RIST bonding source",
                "Source/Network",
                "Receives RIST Simple Profile (VSF TR-06-1) MPEG-TS merged from several UDP links",
                "Braid developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::builder("video/mpegts")
                .field("systemstream", true)
                .field("packetsize", 188i32)
                .build();
            vec![gst::PadTemplate::new(
                "src",
                gst::PadDirection::Src,
                gst::PadPresence::Always,
                &caps,
            )
            .expect("valid pad template")]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseSrcImpl for RistBondSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        if settings.links.trim().is_empty() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("No links: set `links` (rist://@BIND_IP:PORT,...)")
            ));
        }
        let uris = LinkUri::parse_list(&settings.links).map_err(|err| {
            gst::error_msg!(gst::ResourceError::Settings, ("Invalid `links`: {}", err))
        })?;
        let links = uris
            .iter()
            .enumerate()
            .map(|(i, uri)| self.open_link(i as LinkId, uri))
            .collect::<Result<Vec<_>, _>>()?;

        let now = Instant::now();
        let mut receiver = Receiver::new(
            ReceiverConfig {
                latency: Duration::from_millis(settings.latency_ms.into()),
                ssrc: common::random_u32(),
                cname: settings.cname.clone(),
                rtcp_interval: common::RTCP_INTERVAL,
            },
            now,
        );
        for link in &links {
            receiver.add_link(link.id, now);
        }
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                receiver,
                rtcp_peers: links.iter().map(|l| l.rtcp_group).collect(),
                last_rtp: None,
                stats: common::StatsSchedule::new(settings.stats_interval_ms, now),
                flushing: false,
                discont: false,
                draining: false,
                timer_deadline: common::TimerDeadline::default(),
            }),
            links,
            wake: Condvar::new(),
            timer_wake: Condvar::new(),
            stop: AtomicBool::new(false),
            rtcp_unaddressed: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        });

        let weak = self.obj().downgrade();
        let mut threads = Vec::new();
        let mut spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map(|t| threads.push(t))
                .map_err(|err| {
                    gst::error_msg!(
                        gst::ResourceError::Failed,
                        ("Cannot start a thread: {}", err)
                    )
                })
        };
        let mut result = {
            let (shared, weak) = (shared.clone(), weak.clone());
            spawn(
                "ristbondsrc-timer".into(),
                Box::new(move || timer_thread(shared, weak)),
            )
        };
        for index in 0..shared.links.len() {
            for channel in [Channel::Rtp, Channel::Rtcp] {
                if result.is_ok() {
                    let (shared2, weak) = (shared.clone(), weak.clone());
                    result = spawn(
                        format!("ristbondsrc-{channel:?}{}", shared.links[index].id).to_lowercase(),
                        Box::new(move || recv_thread(shared2, index, channel, weak)),
                    );
                }
            }
        }
        if let Err(err) = result {
            shared.stop.store(true, Ordering::Release);
            shared.wake.notify_all();
            shared.timer_wake.notify_all();
            for t in threads {
                let _ = t.join();
            }
            return Err(err);
        }

        gst::info!(
            CAT,
            imp = self,
            "listening on {} link(s), latency {} ms",
            shared.links.len(),
            settings.latency_ms
        );
        *lock(&self.state) = Some(State {
            shared,
            threads,
            idle_timeout: (settings.idle_timeout_ms > 0)
                .then(|| Duration::from_millis(settings.idle_timeout_ms.into())),
            latency: Duration::from_millis(settings.latency_ms.into()),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let Some(state) = lock(&self.state).take() else {
            return Ok(());
        };
        state.shared.stop.store(true, Ordering::Release);
        state.shared.wake.notify_all();
        state.shared.timer_wake.notify_all();
        for t in state.threads {
            if t.join().is_err() {
                gst::warning!(CAT, imp = self, "a link thread panicked");
            }
        }
        let s = state.shared.stats_structure(&lock(&state.shared.core));
        gst::info!(
            CAT,
            imp = self,
            "stopped: {s}, {} RTCP packets dropped before the sender's address was known",
            state.shared.rtcp_unaddressed.load(Ordering::Relaxed)
        );
        Ok(())
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            // Packets may be held for up to `latency` while a gap is being repaired.
            let latency = gst::ClockTime::from_mseconds(lock(&self.settings).latency_ms.into());
            q.set(true, latency, gst::ClockTime::NONE);
            return true;
        }
        BaseSrcImplExt::parent_query(self, query)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(state) = lock(&self.state).as_ref() {
            lock(&state.shared.core).flushing = true;
            state.shared.wake.notify_all();
        }
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(state) = lock(&self.state).as_ref() {
            lock(&state.shared.core).flushing = false;
        }
        Ok(())
    }
}

impl PushSrcImpl for RistBondSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let (shared, idle_timeout, latency) = match lock(&self.state).as_ref() {
            Some(state) => (state.shared.clone(), state.idle_timeout, state.latency),
            None => {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ["Not started"]);
                return Err(gst::FlowError::Error);
            }
        };
        let mut core = lock(&shared.core);
        loop {
            if core.flushing {
                return Err(gst::FlowError::Flushing);
            }
            let mut now = Instant::now();
            if core.draining {
                // Nothing more will arrive: act as if `latency` had passed, so held
                // packets come out and open gaps are given up.
                now += latency * 2;
            }
            let out = shared.service(&mut core, now);
            if !out.is_empty() {
                drop(core);
                shared.send(self.obj().upcast_ref(), out);
                core = lock(&shared.core);
                continue;
            }

            let mut data: Vec<u8> = Vec::new();
            let mut payloads = 0;
            let mut first_seq = None;
            while payloads < MAX_PAYLOADS_PER_BUFFER {
                match core.receiver.poll_output(now) {
                    Some(Output::Packet { payload, seq, .. }) => {
                        first_seq.get_or_insert(seq);
                        data.extend_from_slice(&payload);
                        payloads += 1;
                    }
                    Some(Output::Lost { first, count }) => {
                        shared.lost.fetch_add(count, Ordering::Relaxed);
                        core.discont = true;
                        gst::debug!(
                            CAT,
                            imp = self,
                            "lost {count} packet(s) from sequence {first} ({} in total)",
                            shared.lost.load(Ordering::Relaxed)
                        );
                        if !data.is_empty() {
                            // Keep the gap visible: the data after it starts a new buffer.
                            break;
                        }
                    }
                    None => break,
                }
            }
            if !data.is_empty() {
                let discont = std::mem::take(&mut core.discont);
                drop(core);
                let mut buffer = gst::Buffer::from_mut_slice(data);
                if discont {
                    buffer
                        .get_mut()
                        .expect("new buffer is writable")
                        .set_flags(gst::BufferFlags::DISCONT);
                }
                gst::log!(
                    CAT,
                    imp = self,
                    "pushing {payloads} payload(s) from sequence {first_seq:?}"
                );
                return Ok(CreateSuccess::NewBuffer(buffer));
            }

            if core.draining {
                gst::info!(CAT, imp = self, "end of stream (idle-timeout)");
                let s = shared.stats_structure(&core);
                drop(core);
                post_stats(&self.obj(), s);
                return Err(gst::FlowError::Eos);
            }
            let mut deadline = now + common::TIMER_POLL;
            if let Some(t) = core.receiver.poll_timeout() {
                deadline = deadline.min(t);
            }
            if let (Some(idle), Some(last)) = (idle_timeout, core.last_rtp) {
                let idle_deadline = last + idle;
                if idle_deadline <= now {
                    gst::info!(CAT, imp = self, "no data for {idle:?}: draining");
                    core.draining = true;
                    continue;
                }
                deadline = deadline.min(idle_deadline);
            }
            core = common::wait_until(&shared.wake, core, now, deadline);
        }
    }
}
