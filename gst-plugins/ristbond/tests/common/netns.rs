//! Network-namespace test beds for the `?iface=` / `?miface=` tests (iface.rs,
//! multicast.rs): two namespaces joined by two veth pairs, pipelines run as
//! `gst-launch-1.0` children inside them, per-interface packet counters.
//!
//! ```text
//!   namespace TX                                   namespace RX
//!   ta (10.201.1.1/24) ===== veth pair A ===== ra (10.201.1.2/24)
//!   tb (10.201.2.1/24) ===== veth pair B ===== rb (10.201.2.2/24)
//!                                               lo: 10.201.0.1/32 (the receiver)
//!   routes to 10.201.0.1: via ra on ta metric 10, via rb on tb metric 20
//! ```
//!
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for `ip netns`): [`can_run`] says when a
//! test must be skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use ristbond_core::ts::ContinuityChecker;

/// Receiver address (on RX's loopback) and the two link ports (RTCP on port + 1).
pub const RX_ADDR: &str = "10.201.0.1";
pub const PORTS: [u16; 2] = [5000, 5002];
/// Frames of the test encode (30 fps): 5 s of stream at 2 Mbit/s, ~190 RTP packets/s.
pub const FRAMES: u32 = 150;

/// Write a line to the real stderr, past libtest's output capture, so a skip is visible
/// in a plain `cargo test` run.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Effective capability set of this process (`CapEff` of /proc/self/status).
pub fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// True when namespaces and veth pairs can be made here; otherwise says why the test is
/// skipped. Panics when privileged but `ip` is missing (scripts/setup.sh installs
/// iproute2, so that is a broken setup, not a reason to skip).
pub fn can_run(test: &str) -> bool {
    const CAP_NET_ADMIN: u64 = 1 << 12;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    let need = CAP_NET_ADMIN | CAP_SYS_ADMIN;
    if effective_caps() & need != need {
        say(&format!(
            "{test}: skipped: needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for ip netns / veth)"
        ));
        return false;
    }
    let ip = Command::new("ip").arg("-V").output();
    assert!(
        ip.is_ok_and(|o| o.status.success()),
        "`ip` (iproute2) not found: scripts/setup.sh installs it"
    );
    true
}

/// Run `ip ARGS…`, panic with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `COMMAND…` inside namespace `ns`, return its stdout; panic on failure.
pub fn in_ns(ns: &str, command: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(command)
        .output()
        .expect("run ip netns exec");
    assert!(
        out.status.success(),
        "ip netns exec {ns} {}: {}",
        command.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Prefix of our namespace names; followed by `<pid>-<tag>-tx|rx`.
pub const NS_PREFIX: &str = "braidif-";

/// Delete namespaces a killed earlier run of this test left behind (its pid is gone).
pub fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// The two-namespace, two-veth test bed of this file's header. Dropping it deletes
/// both namespaces, which destroys the veth pairs with them.
pub struct TestBed {
    pub tx: String,
    pub rx: String,
    /// Interface names in TX (link 0, link 1).
    pub tx_if: [String; 2],
    /// Interface names in RX (link 0, link 1).
    pub rx_if: [String; 2],
}

impl TestBed {
    /// Build the test bed; `tag` (one letter) tells the tests of one run apart.
    pub fn new(tag: char) -> TestBed {
        remove_stale_namespaces();
        let pid = std::process::id();
        let bed = TestBed {
            tx: format!("{NS_PREFIX}{pid}-{tag}-tx"),
            rx: format!("{NS_PREFIX}{pid}-{tag}-rx"),
            // At most 2 + 1 + 7 bytes: within IFNAMSIZ.
            tx_if: [format!("ta{tag}{pid}"), format!("tb{tag}{pid}")],
            rx_if: [format!("ra{tag}{pid}"), format!("rb{tag}{pid}")],
        };
        // From here on, a failing step still removes what exists.
        ip(&["netns", "add", &bed.tx]);
        ip(&["netns", "add", &bed.rx]);
        for ns in [&bed.tx, &bed.rx] {
            // No IPv6 (its neighbour discovery would add packets to the counters); loose
            // reverse-path filtering (strict would drop the RTCP answers for link B, which
            // arrive on tb although the best route back to the receiver is ta).
            in_ns(
                ns,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                    "net.ipv4.conf.all.rp_filter=2",
                    "net.ipv4.conf.default.rp_filter=2",
                ],
            );
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n",
            &bed.rx,
            "addr",
            "add",
            &format!("{RX_ADDR}/32"),
            "dev",
            "lo",
        ]);
        bed.add_pair(0);
        bed.add_pair(1);
        bed
    }

    /// Create veth pair `i` (A: 10.201.1.0/24, B: 10.201.2.0/24) with its addresses and
    /// TX's route to the receiver through it (metric 10 for A, 20 for B).
    pub fn add_pair(&self, i: usize) {
        let net = ["10.201.1", "10.201.2"][i];
        let (t, r) = (&self.tx_if[i], &self.rx_if[i]);
        ip(&[
            "link", "add", t, "netns", &self.tx, "type", "veth", "peer", "name", r, "netns",
            &self.rx,
        ]);
        ip(&[
            "-n",
            &self.tx,
            "addr",
            "add",
            &format!("{net}.1/24"),
            "dev",
            t,
        ]);
        ip(&[
            "-n",
            &self.rx,
            "addr",
            "add",
            &format!("{net}.2/24"),
            "dev",
            r,
        ]);
        ip(&["-n", &self.tx, "link", "set", t, "up"]);
        ip(&["-n", &self.rx, "link", "set", r, "up"]);
        let (dest, via) = (format!("{RX_ADDR}/32"), format!("{net}.2"));
        let metric = ["10", "20"][i];
        ip(&[
            "-n", &self.tx, "route", "add", &dest, "via", &via, "dev", t, "metric", metric,
        ]);
    }

    /// Route TX's multicast (224.0.0.0/4) through interface `i`: where multicast leaves
    /// when a socket names no interface.
    pub fn route_multicast(&self, i: usize) {
        ip(&[
            "-n",
            &self.tx,
            "route",
            "add",
            "224.0.0.0/4",
            "dev",
            &self.tx_if[i],
        ]);
    }

    /// Turn IPv6 on in both namespaces (`new` turns it off) and give veth pair `i` the
    /// addresses fd00:201:`i+1`::1/64 (TX) and ::2 (RX), without duplicate address
    /// detection so they are usable at once. Neighbour discovery and MLD then add a few
    /// packets to the counters.
    pub fn enable_ipv6(&self) {
        for ns in [&self.tx, &self.rx] {
            in_ns(
                ns,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=0",
                    "net.ipv6.conf.default.disable_ipv6=0",
                ],
            );
        }
        for i in 0..2 {
            for (ns, name, host) in [(&self.tx, &self.tx_if[i], 1), (&self.rx, &self.rx_if[i], 2)] {
                in_ns(
                    ns,
                    &[
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.{name}.disable_ipv6=0"),
                    ],
                );
                ip(&[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("fd00:201:{}::{host}/64", i + 1),
                    "dev",
                    name,
                    "nodad",
                ]);
            }
        }
    }

    /// Delete veth pair `i` (both ends, and TX's route through it), as when a modem's
    /// interface disappears.
    pub fn del_pair(&self, i: usize) {
        ip(&["-n", &self.tx, "link", "del", &self.tx_if[i]]);
    }

    /// Wait until TX interface `i` has sent at least `min` more packets than `from`
    /// (the sender is up and streaming on it), at most `timeout`; panics with the
    /// count otherwise. Tests that pull an interface from under a running sender
    /// call it first: on a loaded machine gst-launch can take seconds to start, and
    /// a sender started after the interface is gone fails, rightly, at start.
    pub fn wait_streaming(&self, i: usize, from: [u64; 2], min: u64, timeout: Duration) {
        let until = Instant::now() + timeout;
        loop {
            let now = self.tx_packets()[i];
            if now >= from[i] + min {
                return;
            }
            assert!(
                Instant::now() < until,
                "{} sent {} packets in {timeout:?}, expected {min}",
                self.tx_if[i],
                now - from[i]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `tx_packets` of TX's interfaces (link 0, link 1).
    pub fn tx_packets(&self) -> [u64; 2] {
        [0, 1].map(|i| {
            in_ns(
                &self.tx,
                &[
                    "cat",
                    &format!("/sys/class/net/{}/statistics/tx_packets", self.tx_if[i]),
                ],
            )
            .trim()
            .parse()
            .expect("tx_packets is a number")
        })
    }

    /// True when something in RX listens on UDP `port` (its /proc/net/udp).
    pub fn rx_listens(&self, port: u16) -> bool {
        // /proc/net/udp6 exists only while IPv6 is enabled in RX (see `enable_ipv6`).
        let table = in_ns(
            &self.rx,
            &[
                "sh",
                "-c",
                "cat /proc/net/udp /proc/net/udp6 2>/dev/null || true",
            ],
        );
        let needle = format!(":{port:04X} ");
        table.lines().skip(1).any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|local| format!("{local} ").contains(&needle))
        })
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        for ns in [&self.tx, &self.rx] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A child process killed (and reaped) when dropped, so a failing test leaves no
/// pipeline running inside a namespace.
pub struct Proc(pub Child);

impl Proc {
    /// Wait at most `timeout` for the exit; panics (after killing it) on timeout.
    pub fn wait(&mut self, what: &str, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where cargo put the plugin's cdylib for these tests: next to the test binary
/// (`target/<profile>/deps`) or one level up.
pub fn built_plugin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("test binary folder");
    [deps, deps.parent().unwrap_or(deps)]
        .iter()
        .map(|d| d.join("libgstristbond.so"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("libgstristbond.so not built next to {}", exe.display()))
}

/// Who runs a pipeline.
#[derive(Clone, Copy, PartialEq)]
pub enum As {
    /// root, as the test.
    Root,
    /// User `nobody` with CAP_NET_RAW as its only capability (ambient), as
    /// systemd/braid-agent.service runs the agent (`User=braid`,
    /// `AmbientCapabilities=CAP_NET_RAW`), set up with the same `setpriv` line as
    /// scripts/deb-test.sh.
    UserWithNetRaw,
    /// User `nobody` without any capability.
    User,
}

/// uid and gid of `nobody` / `nogroup` on Debian.
pub const NOBODY: u32 = 65_534;

/// `setpriv` arguments that turn root into [`As::UserWithNetRaw`].
pub const SETPRIV_USER: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+net_raw",
    "--ambient-caps=-all,+net_raw",
    "--bounding-set=-all,+net_raw",
    "--",
];

/// `setpriv` arguments that turn root into [`As::User`].
pub const SETPRIV_PLAIN_USER: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--bounding-set=-all",
    "--",
];

/// A folder holding only our plugin (the deps folder holds unrelated libraries), a
/// private GStreamer registry, and the pipelines' files and logs. Readable by everyone
/// (the plugin is a copy, the target folder may not be); `user/` is `nobody`'s.
pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(dir.path(), open.clone()).unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        std::fs::set_permissions(dir.path().join("plugins"), open).unwrap();
        let plugin = dir.path().join("plugins").join("libgstristbond.so");
        std::fs::copy(built_plugin(), &plugin).expect("copy the plugin");
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::create_dir(dir.path().join("user")).unwrap();
        std::os::unix::fs::chown(dir.path().join("user"), Some(NOBODY), Some(NOBODY))
            .expect("chown user/ to nobody");
        Work { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Folder `who` can write to.
    pub fn writable(&self, who: As) -> PathBuf {
        match who {
            As::Root => self.dir.path().to_owned(),
            As::UserWithNetRaw | As::User => self.path("user"),
        }
    }

    /// Start `gst-launch-1.0 -m PIPELINE` as `who` in namespace `ns`, output to `log`.
    /// `pipeline` is split at spaces, so no value may contain one.
    pub fn launch(&self, ns: &str, who: As, pipeline: &str, log: &str) -> Proc {
        assert!(
            !self
                .dir
                .path()
                .to_string_lossy()
                .contains(char::is_whitespace),
            "the temp dir path must have no spaces (TMPDIR)"
        );
        let log = std::fs::File::create(self.path(log)).expect("log file");
        let home = self.writable(who);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]);
        match who {
            As::Root => {}
            As::UserWithNetRaw => {
                cmd.args(SETPRIV_USER);
            }
            As::User => {
                cmd.args(SETPRIV_PLAIN_USER);
            }
        }
        let child = cmd
            .args(["gst-launch-1.0", "-m"])
            .args(pipeline.split_whitespace())
            .env("GST_PLUGIN_PATH", self.path("plugins"))
            .env("GST_REGISTRY", home.join("registry.bin"))
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", &home)
            .env_remove("GST_PLUGIN_PATH_1_0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start gst-launch-1.0 under ip netns exec");
        Proc(child)
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

/// The last `ristbond-stats` element message `gst-launch-1.0 -m` printed in `log`.
pub fn last_stats(log: &str) -> gst::Structure {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("(element): ristbond-stats"))
        .unwrap_or_else(|| panic!("no ristbond-stats message in:\n{log}"));
    let text = line.split_once("(element): ").unwrap().1;
    gst::Structure::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Per-link field `name` of a `ristbond-stats` structure, in link order.
pub fn per_link(stats: &gst::Structure, name: &str) -> [u64; 2] {
    let links = super::links_of(stats);
    assert_eq!(links.len(), 2, "{stats}");
    [0, 1].map(|i| super::u64_field(&links[i], name))
}

/// What one sender/receiver run gave.
pub struct Run {
    /// `tx_packets` of TX's interfaces grown during the run (link 0's, link 1's).
    pub tx_packets: [u64; 2],
    /// `tx_packets` of TX's interfaces at the end (an interface created during the run
    /// counts from 0).
    pub tx_after: [u64; 2],
    /// The sink's last `ristbond-stats`.
    pub sink_stats: gst::Structure,
    /// RTP datagrams the sink sent per link (originals, retransmissions, copies).
    pub rtp_sent: [u64; 2],
    /// RTP datagrams the source received per link.
    pub rtp_received: [u64; 2],
    /// Datagrams the kernel refused to send, per link (`send-errors`).
    pub send_errors: [u64; 2],
    /// Wall-clock time the sender ran, s.
    pub sender_secs: f64,
    /// TS the muxer produced (teed before the sink) and TS the source delivered.
    pub sent_ts: Vec<u8>,
    pub received_ts: Vec<u8>,
}

/// Run `frames` of the test encode through `ristbondsink` (as `sender`) with
/// `sink_query[i]` appended to link i's URI (TX), into `ristbondsrc` (as root) with
/// `src_query[i]` appended to its link i (RX); `during` runs once the sender started.
/// The links go to [`RX_ADDR`]:[`PORTS`].
pub fn run(
    bed: &TestBed,
    frames: u32,
    sender: As,
    sink_query: [&str; 2],
    src_query: [&str; 2],
    during: impl FnOnce(),
) -> Run {
    let src_links = format!(
        "rist://@{RX_ADDR}:{}{},rist://@{RX_ADDR}:{}{}",
        PORTS[0], src_query[0], PORTS[1], src_query[1]
    );
    let sink_links = format!(
        "rist://{RX_ADDR}:{}{},rist://{RX_ADDR}:{}{}",
        PORTS[0], sink_query[0], PORTS[1], sink_query[1]
    );
    run_links(bed, frames, sender, &sink_links, &src_links, during)
}

/// [`run`] with the two links' URIs given whole: `sink_links` for `ristbondsink` (TX),
/// `src_links` for `ristbondsrc` (RX), both listening on [`PORTS`] (and + 1).
pub fn run_links(
    bed: &TestBed,
    frames: u32,
    sender: As,
    sink_links: &str,
    src_links: &str,
    during: impl FnOnce(),
) -> Run {
    super::init();
    let work = Work::new();
    let mut receiver = work.launch(
        &bed.rx,
        As::Root,
        &format!(
            "ristbondsrc name=src links={src_links} latency=500 stats-interval=500 \
             idle-timeout=1500 ! filesink location={}",
            work.path("received.ts").display()
        ),
        "receiver.log",
    );
    // The sender starts once all four receiver sockets are bound (the first run here
    // also builds the private GStreamer registry): the stream is then complete.
    let ready_by = Instant::now() + Duration::from_secs(30);
    while !PORTS
        .iter()
        .all(|&p| bed.rx_listens(p) && bed.rx_listens(p + 1))
    {
        if let Some(status) = receiver.0.try_wait().unwrap() {
            panic!(
                "receiver exited ({status}) before listening:\n{}",
                work.log("receiver.log")
            );
        }
        assert!(
            Instant::now() < ready_by,
            "receiver not listening after 30 s:\n{}",
            work.log("receiver.log")
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let before = bed.tx_packets();
    let started = Instant::now();
    let sent_ts = work.writable(sender).join("sent.ts");
    let mut sender = work.launch(
        &bed.tx,
        sender,
        &format!(
            "{} ! tee name=t t. ! queue ! ristbondsink name=sink links={sink_links} \
             stats-interval=500 t. ! queue ! filesink location={}",
            super::encode_chain(frames),
            sent_ts.display()
        ),
        "sender.log",
    );
    during();
    let status = sender.wait("sender", Duration::from_secs(60));
    let sender_secs = started.elapsed().as_secs_f64();
    let after = bed.tx_packets();
    assert!(
        status.success(),
        "sender failed ({status}):\n{}",
        work.log("sender.log")
    );
    let status = receiver.wait("receiver (idle-timeout EOS)", Duration::from_secs(30));
    assert!(
        status.success(),
        "receiver failed ({status}):\n{}",
        work.log("receiver.log")
    );

    let sink_stats = last_stats(&work.log("sender.log"));
    let src_stats = last_stats(&work.log("receiver.log"));
    eprintln!("sink stats: {sink_stats}\nsrc stats: {src_stats}");
    let [o, r, d] = [
        "sent-packets",
        "retransmitted-packets",
        "duplicated-packets",
    ]
    .map(|f| per_link(&sink_stats, f));
    let run = Run {
        tx_packets: [0, 1].map(|i| after[i].saturating_sub(before[i])),
        tx_after: after,
        rtp_sent: [0, 1].map(|i| o[i] + r[i] + d[i]),
        rtp_received: per_link(&src_stats, "received-packets"),
        send_errors: per_link(&sink_stats, "send-errors"),
        sender_secs,
        sent_ts: std::fs::read(&sent_ts).expect("sent.ts"),
        received_ts: std::fs::read(work.path("received.ts")).expect("received.ts"),
        sink_stats,
    };
    eprintln!(
        "tx_packets {:?}, RTP sent per link {:?}, RTP received per link {:?}, send errors {:?}, \
         sender ran {:.1} s",
        run.tx_packets, run.rtp_sent, run.rtp_received, run.send_errors, run.sender_secs
    );
    run
}

/// The received TS is the sent one, byte for byte, with no continuity errors.
pub fn assert_complete(run: &Run) {
    assert_eq!(run.send_errors[0], 0, "link 0 send errors");
    assert!(run.sent_ts.len() > 200 * 1316, "encode too small");
    let mut cc = ContinuityChecker::new();
    cc.push(&run.received_ts);
    let report = cc.report();
    assert_eq!(report.cc_errors, 0, "{report:?}");
    assert_eq!(report.sync_errors, 0, "{report:?}");
    assert!(
        run.received_ts == run.sent_ts,
        "received TS ({} bytes) differs from the sent TS ({} bytes)",
        run.received_ts.len(),
        run.sent_ts.len()
    );
}

/// Each link carried a fair share (≥ 1/5) of the RTP, the receiver got ≥ 90 % of what
/// its link sent, and TX interface i carried link i's RTP and its RTCP (compound SR +
/// SDES every 100 ms: at least 3 packets a second besides the RTP) and nothing of the
/// other link's RTP (fewer extra packets than half of it).
pub fn assert_each_link_left_by_its_interface(bed: &TestBed, run: &Run) {
    let total: u64 = run.rtp_sent.iter().sum();
    for i in 0..2 {
        let other = 1 - i;
        assert!(
            run.rtp_sent[i] * 5 >= total,
            "link {i} carried {} of {total} RTP packets",
            run.rtp_sent[i]
        );
        assert!(run.rtp_received[i] >= run.rtp_sent[i] * 9 / 10);
        let extra = run.tx_packets[i]
            .checked_sub(run.rtp_sent[i])
            .unwrap_or_else(|| {
                panic!(
                    "{} sent {} packets, fewer than link {i}'s {} RTP packets",
                    bed.tx_if[i], run.tx_packets[i], run.rtp_sent[i]
                )
            });
        assert!(
            extra as f64 >= 3.0 * run.sender_secs,
            "{}: only {extra} packets besides link {i}'s RTP: its RTCP left by another interface",
            bed.tx_if[i]
        );
        assert!(
            extra < run.rtp_sent[other] / 2,
            "{}: {extra} packets besides link {i}'s RTP, link {other} sent {} RTP packets: \
             some of them left by this interface",
            bed.tx_if[i],
            run.rtp_sent[other]
        );
    }
}
