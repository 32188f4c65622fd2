//! Helpers shared by `ristbondsink` and `ristbondsrc`: constants of the profile,
//! socket creation, random identifiers.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::{Condvar, MutexGuard};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

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
    /// ephemeral port.
    pub local: Option<SocketAddr>,
}

/// Longest network interface name Linux accepts, bytes (`IFNAMSIZ` - 1, linux/if.h).
/// `SO_BINDTODEVICE` silently truncates a longer name, which could bind another interface.
pub const MAX_IFACE_NAME: usize = 15;

/// What went wrong while creating a socket, for an element error naming the cause.
#[derive(Debug)]
pub enum SocketError {
    /// `SO_BINDTODEVICE` failed, or the interface name is not one Linux accepts.
    BindDevice(io::Error),
    /// `bind()` failed.
    Bind(SocketAddr, io::Error),
    /// Anything else (socket(), options).
    Other(io::Error),
}

/// Create a UDP socket as described by `bind`, with large buffers and `read_timeout`.
/// SO_REUSEADDR is left off, so a port already in use is an error.
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
    // Without an explicit local address, bind the wildcard address with an ephemeral
    // port now, so the socket can receive (RTCP answers) before it first sends.
    let local = bind.local.unwrap_or(match bind.domain_of {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    });
    socket
        .bind(&local.into())
        .map_err(|e| SocketError::Bind(local, e))?;
    socket
        .set_read_timeout(Some(read_timeout))
        .map_err(SocketError::Other)?;
    Ok(socket.into())
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
