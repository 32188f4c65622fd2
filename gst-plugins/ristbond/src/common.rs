//! Helpers shared by `ristbondsink` and `ristbondsrc`: constants of the profile,
//! socket creation, random identifiers.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::{Condvar, MutexGuard};
use std::time::{Duration, Instant};

use ristbond_core::link::LinkUri;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

/// Bytes of one MPEG-TS packet (ISO/IEC 13818-1 §2.4.3.2).
pub const TS_PACKET_SIZE: usize = ristbond_core::ts::TS_PACKET_SIZE;

/// Largest RTP payload: 7 TS packets = 1316 bytes (TR-06-1 §5.2, SMPTE 2022-2 practice).
pub const MAX_PAYLOAD: usize = 7 * TS_PACKET_SIZE;

/// Interval between compound RTCP packets (SR or RR + SDES) on every link. RIST uses RTCP
/// as keepalive and for RTT measurement, so it is sent far more often than RFC 3550 §6.2
/// would (TR-06-1 §5.2.3: at least every 100 ms is recommended).
pub const RTCP_INTERVAL: Duration = Duration::from_millis(100);

/// Read timeout of the receive threads: how quickly they notice `stop`.
pub const RECV_POLL: Duration = Duration::from_millis(50);

/// Longest wait of the timer threads between checks of `stop`.
pub const TIMER_POLL: Duration = Duration::from_millis(100);

/// Largest UDP datagram we read.
pub const MAX_DATAGRAM: usize = 65_536;

/// Socket buffer size we ask for (the kernel caps it at `net.core.{r,w}mem_max`), bytes.
pub const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Default RTCP SDES CNAME (RFC 3550 §6.5.1): the host name, or `braid` if unknown.
pub fn default_cname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "braid".to_owned())
}

/// A random 32-bit value (SSRC, RTP timestamp offset; RFC 3550 §8.1 asks for random
/// choices). Uses the std hasher's per-process random keys; no cryptographic strength
/// is needed.
pub fn random_u32() -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    hasher.finish() as u32
}

/// Resolve `host:port` to its first socket address.
pub fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    // Literal IPv6 hosts may be written in brackets.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")))
}

/// Where a UDP socket is bound.
pub struct Bind<'a> {
    /// Address family to use when nothing is bound explicitly.
    pub domain_of: SocketAddr,
    /// Network interface (SO_BINDTODEVICE; needs CAP_NET_RAW).
    pub iface: Option<&'a str>,
    /// Local address to bind; `None` = wildcard address of `domain_of`'s family,
    /// ephemeral port. A socket that joins a multicast group binds GROUP:PORT here.
    pub local: Option<SocketAddr>,
    /// Multicast settings of a link to or on a multicast group; `None` for unicast.
    pub multicast: Option<Multicast<'a>>,
}

/// Multicast settings of one socket of a multicast link (`rist://GROUP:PORT`,
/// `rist://@GROUP:PORT`; core/src/link.rs).
#[derive(Debug, Clone, Copy)]
pub struct Multicast<'a> {
    /// The multicast interface (`miface=`, else `iface=`); `None`: the kernel picks the
    /// interface by its routes (a `224.0.0.0/4` / `ff00::/8` route must exist).
    pub iface: Option<&'a McastIface>,
    /// TTL (IPv4 `IP_MULTICAST_TTL`) / hop limit (IPv6 `IPV6_MULTICAST_HOPS`) of what
    /// the socket sends, 1..=255.
    pub ttl: u8,
    /// Group to join (`IP_ADD_MEMBERSHIP` / `IPV6_JOIN_GROUP`) on `iface`, after binding
    /// [`Bind::local`] with `SO_REUSEADDR` (several receivers of one group on one host
    /// share the port); `None` for a socket that only sends.
    pub join: Option<IpAddr>,
}

/// A multicast interface looked up by name: what `IP_MULTICAST_IF`, `IPV6_MULTICAST_IF`
/// and the group joins need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McastIface {
    /// Interface name as given (at most [`MAX_IFACE_NAME`] bytes).
    pub name: String,
    /// Interface index (`if_nametoindex`), > 0.
    pub index: u32,
    /// Its first IPv4 address: IPv4 `IP_MULTICAST_IF` is set with it (socket2 only has
    /// the address form; the kernel maps the address to the interface, ip(7)), and it
    /// is the source address of what is sent. `None`: the interface has IPv6 only.
    pub ipv4: Option<Ipv4Addr>,
}

/// Look up multicast interface `name` among the interfaces of this network namespace
/// that have an IP address. Errors: `InvalidInput` for a name Linux would not take
/// (see [`udp_socket`]), `ENODEV` ([`ENODEV`]) when no interface of that name has an
/// address (Linux lists only those; one that exists without an address is told apart
/// through /sys/class/net and reported as `AddrNotAvailable`).
pub fn lookup_multicast_iface(name: &str) -> io::Result<McastIface> {
    check_iface_name(name)?;
    let mut found: Option<McastIface> = None;
    for i in if_addrs::get_if_addrs()? {
        if i.name != name {
            continue;
        }
        let Some(index) = i.index else { continue };
        let entry = found.get_or_insert(McastIface {
            name: name.to_owned(),
            index,
            ipv4: None,
        });
        if let (None, IpAddr::V4(v4)) = (entry.ipv4, i.ip()) {
            entry.ipv4 = Some(v4);
        }
    }
    found.ok_or_else(|| {
        if std::path::Path::new("/sys/class/net").join(name).exists() {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "the interface has no IP address",
            )
        } else {
            io::Error::from_raw_os_error(ENODEV)
        }
    })
}

/// Text of an element error for a multicast interface that cannot be used (given as
/// `key`, `miface=` or `iface=`): names the interface and the cause, like
/// [`bind_device_error_text`].
pub fn multicast_iface_error_text(iface: &str, key: &str, err: &io::Error) -> String {
    let cause = if err.raw_os_error() == Some(ENODEV) {
        "no such network interface"
    } else if err.kind() == io::ErrorKind::InvalidInput && err.raw_os_error().is_none() {
        "invalid interface name"
    } else if err.kind() == io::ErrorKind::AddrNotAvailable && err.raw_os_error().is_none() {
        "the interface has no IP address"
    } else {
        "failed"
    };
    format!("cannot use multicast interface {iface:?} ({key}): {cause} ({err})")
}

/// The multicast interface of link `uri` when it sends to or listens on a multicast
/// group (`multicast`), looked up with [`lookup_multicast_iface`]: `Ok(None)` for a
/// unicast link or a multicast link without `miface=`/`iface=` (the route decides).
/// Errors: the text of an element error naming the link, the interface, the key it was
/// given with and the cause ([`multicast_iface_error_text`]).
pub fn link_multicast_iface(uri: &LinkUri, multicast: bool) -> Result<Option<McastIface>, String> {
    let Some(name) = uri.multicast_iface().filter(|_| multicast) else {
        return Ok(None);
    };
    lookup_multicast_iface(name).map(Some).map_err(|err| {
        let key = if uri.miface.is_some() {
            "miface="
        } else {
            "iface="
        };
        format!(
            "Link {}: {}",
            uri.uri,
            multicast_iface_error_text(name, key, &err)
        )
    })
}

/// Longest network interface name Linux accepts, bytes (`IFNAMSIZ` - 1, linux/if.h).
/// `SO_BINDTODEVICE` silently truncates a longer name, which could bind another interface.
pub use ristbond_core::link::MAX_IFACE_NAME;

/// What went wrong while creating a socket, for an element error naming the cause.
#[derive(Debug)]
pub enum SocketError {
    /// `SO_BINDTODEVICE` failed, or the interface name is not one Linux accepts.
    BindDevice(io::Error),
    /// `bind()` failed.
    Bind(SocketAddr, io::Error),
    /// Anything else (socket(), options).
    Other(io::Error),
    /// A multicast option or the group join failed; the text names the group, the
    /// interface and the cause.
    Multicast(String),
}

/// Create a UDP socket as described by `bind`, with large buffers and `read_timeout`.
/// SO_REUSEADDR is left off, so a port already in use is an error; except on a socket
/// that joins a multicast group, where several receivers may share GROUP:PORT.
///
/// Multicast ([`Bind::multicast`]): the outgoing interface is set (`IP_MULTICAST_IF`
/// with the interface's IPv4 address, `IPV6_MULTICAST_IF` with its index), the TTL /
/// hop limit, and multicast loopback off (as GStreamer's `ristsink`/`ristsrc`
/// `multicast-loopback` default: our own packets are not delivered back to us). A
/// joining socket also gets `IP_MULTICAST_ALL` off, so it receives the group only from
/// the interface it joined on, not from every interface any process joined it on.
pub fn udp_socket(bind: &Bind<'_>, read_timeout: Duration) -> Result<UdpSocket, SocketError> {
    let domain = Domain::for_address(bind.local.unwrap_or(bind.domain_of));
    let socket =
        Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(SocketError::Other)?;
    // Best effort: the kernel may cap or refuse larger buffers.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    if let Some(iface) = bind.iface {
        check_iface_name(iface).map_err(SocketError::BindDevice)?;
        socket
            .bind_device(Some(iface.as_bytes()))
            .map_err(SocketError::BindDevice)?;
    }
    if let Some(mc) = &bind.multicast {
        set_multicast_options(&socket, domain, mc).map_err(SocketError::Multicast)?;
    }
    // Without an explicit local address, bind the wildcard address with an ephemeral
    // port now, so the socket can receive (RTCP answers) before it first sends.
    let local = bind.local.unwrap_or(match bind.domain_of {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    });
    socket
        .bind(&local.into())
        .map_err(|e| SocketError::Bind(local, e))?;
    if let Some(Multicast {
        iface,
        join: Some(group),
        ..
    }) = &bind.multicast
    {
        join_group(&socket, *group, *iface).map_err(SocketError::Multicast)?;
    }
    socket
        .set_read_timeout(Some(read_timeout))
        .map_err(SocketError::Other)?;
    Ok(socket.into())
}

/// Outgoing interface, TTL, loopback and (for a joining socket) `SO_REUSEADDR` and
/// `IP_MULTICAST_ALL`, before `bind()`. The error is the text of a [`SocketError`].
fn set_multicast_options(
    socket: &Socket,
    domain: Domain,
    mc: &Multicast<'_>,
) -> Result<(), String> {
    let what = |option: &str, err: io::Error| format!("cannot set {option}: {err}");
    let v4 = domain == Domain::IPV4;
    if let Some(iface) = mc.iface {
        if v4 {
            let addr = iface.ipv4.ok_or_else(|| {
                format!(
                    "cannot send IPv4 multicast on interface {:?} (miface=): it has no IPv4 \
                     address",
                    iface.name
                )
            })?;
            socket.set_multicast_if_v4(&addr).map_err(|e| {
                format!(
                    "cannot send multicast on interface {:?} (miface=, IP_MULTICAST_IF {addr}): \
                     {e}",
                    iface.name
                )
            })?;
        } else {
            socket.set_multicast_if_v6(iface.index).map_err(|e| {
                format!(
                    "cannot send multicast on interface {:?} (miface=, IPV6_MULTICAST_IF): {e}",
                    iface.name
                )
            })?;
        }
    }
    let ttl = u32::from(mc.ttl);
    if v4 {
        socket
            .set_multicast_ttl_v4(ttl)
            .map_err(|e| what("IP_MULTICAST_TTL", e))?;
        socket
            .set_multicast_loop_v4(false)
            .map_err(|e| what("IP_MULTICAST_LOOP", e))?;
    } else {
        socket
            .set_multicast_hops_v6(ttl)
            .map_err(|e| what("IPV6_MULTICAST_HOPS", e))?;
        socket
            .set_multicast_loop_v6(false)
            .map_err(|e| what("IPV6_MULTICAST_LOOP", e))?;
    }
    if mc.join.is_some() {
        socket
            .set_reuse_address(true)
            .map_err(|e| what("SO_REUSEADDR", e))?;
        if v4 {
            socket
                .set_multicast_all_v4(false)
                .map_err(|e| what("IP_MULTICAST_ALL", e))?;
        } else {
            socket
                .set_multicast_all_v6(false)
                .map_err(|e| what("IPV6_MULTICAST_ALL", e))?;
        }
    }
    Ok(())
}

/// Join `group` on `iface` (by index), or on the interface the kernel's route to the
/// group names when `iface` is `None`.
fn join_group(socket: &Socket, group: IpAddr, iface: Option<&McastIface>) -> Result<(), String> {
    let index = iface.map_or(0, |i| i.index);
    let result = match group {
        IpAddr::V4(g) => socket.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(index)),
        IpAddr::V6(g) => socket.join_multicast_v6(&g, index),
    };
    result.map_err(|e| match iface {
        Some(i) => format!(
            "cannot join multicast group {group} on interface {:?} (miface=): {e}",
            i.name
        ),
        None if e.raw_os_error() == Some(ENODEV) => format!(
            "cannot join multicast group {group}: no route to it ({e}); set miface= or add \
             a multicast route (ip route add {} dev IF)",
            if group.is_ipv4() {
                "224.0.0.0/4"
            } else {
                "ff00::/8"
            }
        ),
        None => format!("cannot join multicast group {group}: {e}"),
    })
}

/// Refuse names the kernel would not take as they are: empty, longer than
/// [`MAX_IFACE_NAME`] bytes (`SO_BINDTODEVICE` would truncate them), or containing `/`,
/// whitespace or NUL (never valid, `dev_valid_name()` in net/core/dev.c).
fn check_iface_name(iface: &str) -> io::Result<()> {
    let why = if iface.is_empty() {
        "the name is empty"
    } else if iface.len() > MAX_IFACE_NAME {
        "Linux interface names are at most 15 bytes (IFNAMSIZ)"
    } else if iface
        .chars()
        .any(|c| c == '/' || c == '\0' || c.is_whitespace())
    {
        "the name contains '/', whitespace or NUL"
    } else {
        return Ok(());
    };
    Err(io::Error::new(io::ErrorKind::InvalidInput, why))
}

/// `ENODEV` on Linux (asm-generic/errno-base.h, the same on every architecture): no such
/// device. `SO_BINDTODEVICE` on a missing interface, and a send on a socket bound to an
/// interface that has since been deleted.
pub const ENODEV: i32 = 19;

/// `ENETUNREACH` on Linux (asm-generic/errno.h, the same on x86-64 and arm64): what a
/// multicast send with `IP_MULTICAST_IF` gets once that interface (or its address) is
/// gone; with an outgoing interface set, the kernel needs no route, so on such a link
/// it means the interface went away.
pub const ENETUNREACH: i32 = 101;

/// Text of an element error for a failed `SO_BINDTODEVICE` on `iface`, naming the likely
/// cause: `ENODEV` (no such interface, e.g. the modem is not up yet), `EPERM` (the
/// process lacks `CAP_NET_RAW`, see the systemd unit's `AmbientCapabilities`), or a
/// name refused by [`udp_socket`] before the call.
pub fn bind_device_error_text(iface: &str, err: &io::Error) -> String {
    let cause = if err.raw_os_error() == Some(ENODEV) {
        "no such network interface"
    } else if err.kind() == io::ErrorKind::PermissionDenied {
        "the process lacks CAP_NET_RAW"
    } else if err.kind() == io::ErrorKind::InvalidInput && err.raw_os_error().is_none() {
        "invalid interface name"
    } else {
        "failed"
    };
    format!("cannot bind to network interface {iface:?} (SO_BINDTODEVICE): {cause} ({err})")
}

/// When an element's timer thread will next wake by itself (`None` while it runs).
/// The threads that feed the protocol core wake it early only when a core timer moved
/// before that: a needless wake-up is a context switch per packet.
#[derive(Debug, Default)]
pub struct TimerDeadline(Option<Instant>);

impl TimerDeadline {
    /// The timer thread is about to wait until `deadline`.
    pub fn arm(&mut self, deadline: Instant) {
        self.0 = Some(deadline);
    }

    /// The timer thread is running again (it looks at every timer before it waits).
    pub fn disarm(&mut self) {
        self.0 = None;
    }

    /// True when the core's next timer, `next`, is due before the timer thread wakes
    /// by itself, so it must be woken now.
    pub fn moved_before(&self, next: Option<Instant>) -> bool {
        matches!((next, self.0), (Some(t), Some(d)) if t < d)
    }
}

/// True for errors of a read with timeout that only mean "nothing arrived".
pub fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Convert nanoseconds to 90 kHz RTP timestamp units (RFC 3550 §5.1, TR-06-1 §5.2),
/// wrapping modulo 2^32.
pub fn ns_to_rtp90(ns: u64) -> u32 {
    ((ns as u128 * 90_000 / 1_000_000_000) & 0xffff_ffff) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_schedule_moves_on_and_catches_up() {
        let t0 = Instant::now();
        assert!(StatsSchedule::new(0, t0).is_none());
        let mut s = StatsSchedule::new(1000, t0).unwrap();
        assert!(!s.due(t0 + Duration::from_millis(999)));
        assert!(s.due(t0 + Duration::from_millis(1000)));
        assert_eq!(s.next(), t0 + Duration::from_millis(2000));
        // Five intervals late: one message, then one interval from now.
        let late = t0 + Duration::from_millis(7000);
        assert!(s.due(late));
        assert!(!s.due(late));
        assert_eq!(s.next(), late + Duration::from_millis(1000));
    }

    #[test]
    fn rtp_clock() {
        assert_eq!(ns_to_rtp90(0), 0);
        assert_eq!(ns_to_rtp90(1_000_000_000), 90_000);
        assert_eq!(ns_to_rtp90(1_000_000), 90);
        // 2^32 / 90000 s ≈ 13.25 h: wraps.
        let wrap_ns = (1u128 << 32) * 1_000_000_000 / 90_000;
        assert!(ns_to_rtp90(wrap_ns as u64 + 1_000_000) < 200);
    }

    #[test]
    fn bad_interface_names_are_refused_before_the_kernel_sees_them() {
        for name in ["", "wwan0-is-far-too-long", "a/b", "wwan 0", "nul\0"] {
            let err = check_iface_name(name).unwrap_err();
            let text = bind_device_error_text(name, &err);
            assert!(text.contains("invalid interface name"), "{text}");
        }
        assert!(check_iface_name("wwan0").is_ok());
        assert!(check_iface_name("a23456789012345").is_ok());
    }

    #[test]
    fn bind_device_errors_name_the_cause() {
        let enodev = bind_device_error_text("wwan9", &io::Error::from_raw_os_error(19));
        assert!(enodev.contains("\"wwan9\""), "{enodev}");
        assert!(enodev.contains("no such network interface"), "{enodev}");
        let eperm = bind_device_error_text("wwan0", &io::Error::from_raw_os_error(1));
        assert!(eperm.contains("CAP_NET_RAW"), "{eperm}");
    }

    #[test]
    fn multicast_interfaces_are_looked_up_by_name() {
        let lo = lookup_multicast_iface("lo").expect("lo exists");
        assert!(lo.index > 0);
        assert_eq!(lo.ipv4, Some(Ipv4Addr::LOCALHOST));
        let err = lookup_multicast_iface("doesnotexist0").unwrap_err();
        let text = multicast_iface_error_text("doesnotexist0", "miface=", &err);
        assert!(text.contains("\"doesnotexist0\" (miface=)"), "{text}");
        assert!(text.contains("no such network interface"), "{text}");
        let err = lookup_multicast_iface("a/b").unwrap_err();
        let text = multicast_iface_error_text("a/b", "miface=", &err);
        assert!(text.contains("invalid interface name"), "{text}");
        let none = io::Error::new(io::ErrorKind::AddrNotAvailable, "x");
        assert!(multicast_iface_error_text("d0", "iface=", &none).contains("no IP address"));
    }

    #[test]
    fn timer_thread_is_woken_only_for_an_earlier_timer() {
        let now = Instant::now();
        let mut d = TimerDeadline::default();
        // Running: it will look at every timer before it waits.
        assert!(!d.moved_before(Some(now)));
        d.arm(now + Duration::from_millis(100));
        assert!(d.moved_before(Some(now + Duration::from_millis(20))));
        assert!(!d.moved_before(Some(now + Duration::from_millis(100))));
        assert!(!d.moved_before(None));
        d.disarm();
        assert!(!d.moved_before(Some(now)));
    }

    #[test]
    fn random_values_differ() {
        let a: Vec<u32> = (0..8).map(|_| random_u32()).collect();
        assert!(a.windows(2).any(|w| w[0] != w[1]));
    }
}

/// When the next periodic `ristbond-stats` message is due (docs/elements.md); built
/// from the `stats-interval` property (ms), `None` when it is 0.
#[derive(Debug, Clone, Copy)]
pub struct StatsSchedule {
    interval: Duration,
    next: Instant,
}

impl StatsSchedule {
    /// First message one `interval_ms` after `now`; `None` for an interval of 0.
    pub fn new(interval_ms: u32, now: Instant) -> Option<Self> {
        (interval_ms > 0).then(|| {
            let interval = Duration::from_millis(interval_ms.into());
            Self {
                interval,
                next: now + interval,
            }
        })
    }

    /// True when a message is due at `now`; the schedule then moves on one interval
    /// (or to `now + interval` if the thread fell more than one interval behind).
    pub fn due(&mut self, now: Instant) -> bool {
        if self.next > now {
            return false;
        }
        self.next += self.interval;
        if self.next <= now {
            self.next = now + self.interval;
        }
        true
    }

    /// When the next message is due.
    pub fn next(&self) -> Instant {
        self.next
    }
}

/// Wait on `cv` until `deadline` at the latest (a timer thread's sleep that data,
/// `unlock` or `stop` can cut short); a poisoned lock is taken over as is.
pub fn wait_until<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    now: Instant,
    deadline: Instant,
) -> MutexGuard<'a, T> {
    cv.wait_timeout(guard, deadline.saturating_duration_since(now))
        .unwrap_or_else(|e| e.into_inner())
        .0
}
