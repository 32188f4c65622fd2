//! The I/O shell around the sans-IO [`Path`]s: for every link four UDP sockets (RTP and
//! RTCP facing the sender on P/P+1, RTP and RTCP facing the receiver on ephemeral
//! ports), all driven by one thread (a tokio current-thread runtime).
//!
//! Sender → receiver: a datagram arriving on P (P+1) goes through the link's forward
//! path (one queue, capacity and loss process for both ports, as on one modem) and
//! leaves from the receiver-facing RTP (RTCP) socket to R (R+1). Receiver → sender:
//! a datagram arriving on a receiver-facing socket goes through the reverse path and
//! leaves from P (P+1) to the address the sender last used on that port (a datagram
//! from the receiver before the sender spoke on that port is dropped and counted).
//!
//! Timing: deliveries happen on tokio's 1 ms timer, so a datagram may leave up to
//! about 1 ms after its model time.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use crate::config::LinkSpec;
use crate::model::{Counters, Path};

/// Socket buffer size asked for (the kernel may cap it at `net.core.rmem_max`).
const SOCKET_BUFFER_BYTES: usize = 4 << 20;
/// Most datagrams read from one socket before the others get a turn.
const RECV_BATCH: usize = 64;

/// RTP (0) or RTCP (1): index into a link's socket pairs.
type Port = usize;
/// What travels through a path: the port it arrived on and the datagram.
type Datagram = (Port, Vec<u8>);

/// Printed once all sockets are bound (the `ready` line of `braid-linkemu`).
#[derive(Debug, Clone, Serialize)]
pub struct ReadyInfo {
    /// Model time 0 as UNIX time (ms): event times count from here.
    pub epoch_unix_ms: u64,
    /// One per link, in configuration order.
    pub links: Vec<ReadyLink>,
}

/// Addresses of one link.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyLink {
    /// Link name.
    pub name: String,
    /// Sender-facing RTP address (RTCP: port + 1).
    pub listen: SocketAddr,
    /// Receiver RTP address (RTCP: port + 1).
    pub forward: SocketAddr,
    /// Local address the receiver sees RTP come from.
    pub back_rtp: SocketAddr,
    /// Local address the receiver sees RTCP come from (and answers to).
    pub back_rtcp: SocketAddr,
    /// Forward queue limit at start (bytes of IP datagrams; `None`: unlimited).
    pub queue_limit_bytes: Option<u64>,
}

/// Written at exit (the `report` line of `braid-linkemu`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Model time 0 as UNIX time (ms).
    pub epoch_unix_ms: u64,
    /// Time from the epoch to the end of the run (ms).
    pub duration_ms: f64,
    /// CPU time of the emulator process in user mode (ms).
    pub cpu_user_ms: f64,
    /// CPU time in kernel mode (ms).
    pub cpu_system_ms: f64,
    /// One per link, in configuration order.
    pub links: Vec<LinkReport>,
}

/// Counters of one link.
#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    /// Link name.
    pub name: String,
    /// Sender → receiver.
    pub forward: Counters,
    /// Receiver → sender.
    pub reverse: Counters,
    /// Datagrams the kernel refused to send (full socket buffer, unreachable).
    pub send_errors: u64,
    /// Receiver → sender datagrams dropped because the sender had not yet spoken on
    /// that port.
    pub reverse_no_sender: u64,
}

struct LinkIo {
    name: String,
    front: [UdpSocket; 2],
    back: [UdpSocket; 2],
    forward_to: [SocketAddr; 2],
    sender: [Cell<Option<SocketAddr>>; 2],
    send_errors: Cell<u64>,
    reverse_no_sender: Cell<u64>,
}

struct LinkModel {
    fwd: Path<Datagram>,
    rev: Path<Datagram>,
}

/// Bound but not yet running sockets (std sockets, non-blocking).
pub struct Bound {
    specs: Vec<LinkSpec>,
    sockets: Vec<[std::net::UdpSocket; 4]>,
}

fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: unprivileged processes are capped at rmem_max/wmem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Bind every link's sockets. Errors name the address that could not be bound.
pub fn bind(specs: Vec<LinkSpec>) -> io::Result<Bound> {
    let mut sockets = Vec::new();
    for spec in &specs {
        let rtcp = SocketAddr::new(spec.listen.ip(), spec.listen.port() + 1);
        let named = |addr: SocketAddr| {
            udp_socket(addr).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("link {}: cannot bind {addr}: {e}", spec.name),
                )
            })
        };
        let back = SocketAddr::new(spec.bind_back, 0);
        sockets.push([
            named(spec.listen)?,
            named(rtcp)?,
            named(back)?,
            named(back)?,
        ]);
    }
    Ok(Bound { specs, sockets })
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// CPU time (user, system) of this process in ms, from `/proc/self/stat` (fields 14
/// and 15, in USER_HZ = 100 ticks per second on Linux); zeros where unavailable.
pub fn process_cpu_ms() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // The command name (field 2) may hold spaces; fields after ')' are plain.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return (0.0, 0.0);
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            * 10.0
    };
    // rest starts at field 3 (state): utime is field 14 → index 11.
    (tick(11), tick(12))
}

impl Bound {
    /// Addresses to announce; call before [`Bound::run`].
    pub fn ready_info(&self, epoch_unix_ms: u64) -> ReadyInfo {
        ReadyInfo {
            epoch_unix_ms,
            links: self
                .specs
                .iter()
                .zip(&self.sockets)
                .map(|(spec, s)| ReadyLink {
                    name: spec.name.clone(),
                    listen: spec.listen,
                    forward: spec.forward,
                    back_rtp: s[2].local_addr().unwrap_or(spec.forward),
                    back_rtcp: s[3].local_addr().unwrap_or(spec.forward),
                    queue_limit_bytes: Path::<()>::new(spec.forward_path.clone())
                        .queue_limit_bytes(),
                })
                .collect(),
        }
    }

    /// Relay until `stop` completes; `epoch` is model time 0. Must run inside a tokio
    /// `LocalSet` on a current-thread runtime.
    pub async fn run(
        self,
        epoch: (Instant, SystemTime),
        stop: impl Future<Output = ()>,
    ) -> io::Result<Report> {
        let mut ios = Vec::new();
        let mut models = Vec::new();
        for (spec, socks) in self.specs.into_iter().zip(self.sockets) {
            let [a, b, c, d] = socks;
            let rtcp_to = SocketAddr::new(spec.forward.ip(), spec.forward.port() + 1);
            ios.push(LinkIo {
                name: spec.name.clone(),
                front: [UdpSocket::from_std(a)?, UdpSocket::from_std(b)?],
                back: [UdpSocket::from_std(c)?, UdpSocket::from_std(d)?],
                forward_to: [spec.forward, rtcp_to],
                sender: [Cell::new(None), Cell::new(None)],
                send_errors: Cell::new(0),
                reverse_no_sender: Cell::new(0),
            });
            models.push(LinkModel {
                fwd: Path::new(spec.forward_path),
                rev: Path::new(spec.reverse_path),
            });
        }
        let ios = Rc::new(ios);
        let models = Rc::new(RefCell::new(models));
        let wake = Rc::new(Notify::new());
        let start = epoch.0;

        let mut tasks = Vec::new();
        for link in 0..ios.len() {
            for port in 0..2 {
                for facing_sender in [true, false] {
                    let (ios, models, wake) = (ios.clone(), models.clone(), wake.clone());
                    tasks.push(tokio::task::spawn_local(async move {
                        receive_loop(&ios, &models, &wake, start, link, port, facing_sender).await
                    }));
                }
            }
        }
        let timer = {
            let (ios, models, wake) = (ios.clone(), models.clone(), wake.clone());
            tokio::task::spawn_local(async move { deliver_loop(&ios, &models, &wake, start).await })
        };
        stop.await;
        for t in tasks {
            t.abort();
        }
        timer.abort();

        let duration_ms = start.elapsed().as_secs_f64() * 1000.0;
        let (cpu_user_ms, cpu_system_ms) = process_cpu_ms();
        let models = models.borrow();
        Ok(Report {
            epoch_unix_ms: unix_ms(epoch.1),
            duration_ms,
            cpu_user_ms,
            cpu_system_ms,
            links: ios
                .iter()
                .zip(models.iter())
                .map(|(io, m)| LinkReport {
                    name: io.name.clone(),
                    forward: m.fwd.counters().clone(),
                    reverse: m.rev.counters().clone(),
                    send_errors: io.send_errors.get(),
                    reverse_no_sender: io.reverse_no_sender.get(),
                })
                .collect(),
        })
    }
}

async fn receive_loop(
    ios: &[LinkIo],
    models: &RefCell<Vec<LinkModel>>,
    wake: &Notify,
    start: Instant,
    link: usize,
    port: Port,
    facing_sender: bool,
) {
    let io = &ios[link];
    let socket = if facing_sender {
        &io.front[port]
    } else {
        &io.back[port]
    };
    let mut buf = vec![0u8; 65_536];
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        let now = start.elapsed();
        let mut got = 0;
        {
            let mut models = models.borrow_mut();
            let model = &mut models[link];
            while got < RECV_BATCH {
                match socket.try_recv_from(&mut buf) {
                    Ok((n, from)) => {
                        got += 1;
                        let datagram = (port, buf[..n].to_vec());
                        if facing_sender {
                            io.sender[port].set(Some(from));
                            model.fwd.enqueue(now, datagram, n);
                        } else {
                            model.rev.enqueue(now, datagram, n);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ICMP errors of earlier sends (port unreachable) surface here.
                    Err(_) => continue,
                }
            }
        }
        if got > 0 {
            wake.notify_one();
        }
    }
}

async fn deliver_loop(
    ios: &[LinkIo],
    models: &RefCell<Vec<LinkModel>>,
    wake: &Notify,
    start: Instant,
) {
    let mut out = Vec::new();
    loop {
        let now = start.elapsed();
        let mut next: Option<Duration> = None;
        {
            let mut models = models.borrow_mut();
            for (io, model) in ios.iter().zip(models.iter_mut()) {
                model.fwd.poll(now, &mut out);
                for (port, data) in out.drain(..) {
                    if io.back[port]
                        .try_send_to(&data, io.forward_to[port])
                        .is_err()
                    {
                        io.send_errors.set(io.send_errors.get() + 1);
                    }
                }
                model.rev.poll(now, &mut out);
                for (port, data) in out.drain(..) {
                    match io.sender[port].get() {
                        Some(to) => {
                            if io.front[port].try_send_to(&data, to).is_err() {
                                io.send_errors.set(io.send_errors.get() + 1);
                            }
                        }
                        None => io.reverse_no_sender.set(io.reverse_no_sender.get() + 1),
                    }
                }
                for t in [model.fwd.next_wakeup(), model.rev.next_wakeup()]
                    .into_iter()
                    .flatten()
                {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            }
        }
        match next {
            Some(t) => {
                tokio::select! {
                    _ = tokio::time::sleep_until((start + t).into()) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}
