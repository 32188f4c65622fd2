//! `?iface=` (SO_BINDTODEVICE) end to end, over real network namespaces and veth pairs.
//!
//! Test bed (one per test, names carry the test's pid and a tag, removed by a Drop
//! guard even when the test panics):
//!
//! ```text
//!   namespace TX                                   namespace RX
//!   ta (10.201.1.1/24) ===== veth pair A ===== ra (10.201.1.2/24)
//!   tb (10.201.2.1/24) ===== veth pair B ===== rb (10.201.2.2/24)
//!                                               lo: 10.201.0.1/32 (the receiver)
//!   routes to 10.201.0.1: via ra on ta metric 10, via rb on tb metric 20
//! ```
//!
//! As on a field unit with one default route per modem, the receiver is reachable over
//! both interfaces, and without SO_BINDTODEVICE every packet takes the best route (ta).
//! The sender (`gst-launch-1.0 … ! ristbondsink`) runs in TX and the receiver
//! (`ristbondsrc ! filesink`) in RX, both with `GST_PLUGIN_PATH` at the plugin built for
//! these tests. The interfaces' `tx_packets` counters, compared with the sink's per-link
//! RTP counts, show which interface carried each link's RTP and RTCP.
//!
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for `ip netns`): otherwise these tests
//! print "skipped: needs root" and pass. The unknown-interface error tests need nothing.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use gst::prelude::*;
use ristbond_core::ts::ContinuityChecker;

/// Receiver address (on RX's loopback) and the two link ports (RTCP on port + 1).
const RX_ADDR: &str = "10.201.0.1";
const PORTS: [u16; 2] = [5000, 5002];
/// Frames of the test encode (30 fps): 5 s of stream at 2 Mbit/s, ~190 RTP packets/s.
const FRAMES: u32 = 150;

/// Write a line to the real stderr, past libtest's output capture, so a skip is visible
/// in a plain `cargo test` run.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Effective capability set of this process (`CapEff` of /proc/self/status).
fn effective_caps() -> u64 {
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
fn can_run(test: &str) -> bool {
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
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `COMMAND…` inside namespace `ns`, return its stdout; panic on failure.
fn in_ns(ns: &str, command: &[&str]) -> String {
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
const NS_PREFIX: &str = "braidif-";

/// Delete namespaces a killed earlier run of this test left behind (its pid is gone).
fn remove_stale_namespaces() {
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
struct TestBed {
    tx: String,
    rx: String,
    /// Interface names in TX (link 0, link 1).
    tx_if: [String; 2],
    /// Interface names in RX (link 0, link 1).
    rx_if: [String; 2],
}

impl TestBed {
    /// Build the test bed; `tag` (one letter) tells the tests of one run apart.
    fn new(tag: char) -> TestBed {
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
    fn add_pair(&self, i: usize) {
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

    /// Delete veth pair `i` (both ends, and TX's route through it), as when a modem's
    /// interface disappears.
    fn del_pair(&self, i: usize) {
        ip(&["-n", &self.tx, "link", "del", &self.tx_if[i]]);
    }

    /// `tx_packets` of TX's interfaces (link 0, link 1).
    fn tx_packets(&self) -> [u64; 2] {
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
    fn rx_listens(&self, port: u16) -> bool {
        let table = in_ns(&self.rx, &["cat", "/proc/net/udp"]);
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
struct Proc(Child);

impl Proc {
    /// Wait at most `timeout` for the exit; panics (after killing it) on timeout.
    fn wait(&mut self, what: &str, timeout: Duration) -> std::process::ExitStatus {
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
fn built_plugin() -> PathBuf {
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
enum As {
    /// root, as the test.
    Root,
    /// User `nobody` with CAP_NET_RAW as its only capability (ambient), as
    /// systemd/braid-agent.service runs the agent (`User=braid`,
    /// `AmbientCapabilities=CAP_NET_RAW`), set up with the same `setpriv` line as
    /// scripts/deb-test.sh.
    UserWithNetRaw,
}

/// uid and gid of `nobody` / `nogroup` on Debian.
const NOBODY: u32 = 65_534;

/// `setpriv` arguments that turn root into [`As::UserWithNetRaw`].
const SETPRIV_USER: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+net_raw",
    "--ambient-caps=-all,+net_raw",
    "--bounding-set=-all,+net_raw",
    "--",
];

/// A folder holding only our plugin (the deps folder holds unrelated libraries), a
/// private GStreamer registry, and the pipelines' files and logs. Readable by everyone
/// (the plugin is a copy, the target folder may not be); `user/` is `nobody`'s.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Folder `who` can write to.
    fn writable(&self, who: As) -> PathBuf {
        match who {
            As::Root => self.dir.path().to_owned(),
            As::UserWithNetRaw => self.path("user"),
        }
    }

    /// Start `gst-launch-1.0 -m PIPELINE` as `who` in namespace `ns`, output to `log`.
    /// `pipeline` is split at spaces, so no value may contain one.
    fn launch(&self, ns: &str, who: As, pipeline: &str, log: &str) -> Proc {
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
        if who == As::UserWithNetRaw {
            cmd.args(SETPRIV_USER);
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

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

/// The last `ristbond-stats` element message `gst-launch-1.0 -m` printed in `log`.
fn last_stats(log: &str) -> gst::Structure {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("(element): ristbond-stats"))
        .unwrap_or_else(|| panic!("no ristbond-stats message in:\n{log}"));
    let text = line.split_once("(element): ").unwrap().1;
    gst::Structure::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Per-link field `name` of a `ristbond-stats` structure, in link order.
fn per_link(stats: &gst::Structure, name: &str) -> [u64; 2] {
    let links = common::links_of(stats);
    assert_eq!(links.len(), 2, "{stats}");
    [0, 1].map(|i| common::u64_field(&links[i], name))
}

/// What one sender/receiver run gave.
struct Run {
    /// `tx_packets` of TX's interfaces grown during the run (link 0's, link 1's).
    tx_packets: [u64; 2],
    /// `tx_packets` of TX's interfaces at the end (an interface created during the run
    /// counts from 0).
    tx_after: [u64; 2],
    /// The sink's last `ristbond-stats`.
    sink_stats: gst::Structure,
    /// RTP datagrams the sink sent per link (originals, retransmissions, copies).
    rtp_sent: [u64; 2],
    /// RTP datagrams the source received per link.
    rtp_received: [u64; 2],
    /// Datagrams the kernel refused to send, per link (`send-errors`).
    send_errors: [u64; 2],
    /// Wall-clock time the sender ran, s.
    sender_secs: f64,
    /// TS the muxer produced (teed before the sink) and TS the source delivered.
    sent_ts: Vec<u8>,
    received_ts: Vec<u8>,
}

/// Run `frames` of the test encode through `ristbondsink` (as `sender`) with
/// `sink_query[i]` appended to link i's URI (TX), into `ristbondsrc` (as root) with
/// `src_query[i]` appended to its link i (RX); `during` runs once the sender started.
fn run(
    bed: &TestBed,
    frames: u32,
    sender: As,
    sink_query: [&str; 2],
    src_query: [&str; 2],
    during: impl FnOnce(),
) -> Run {
    common::init();
    let work = Work::new();
    let src_links = format!(
        "rist://@{RX_ADDR}:{}{},rist://@{RX_ADDR}:{}{}",
        PORTS[0], src_query[0], PORTS[1], src_query[1]
    );
    let sink_links = format!(
        "rist://{RX_ADDR}:{}{},rist://{RX_ADDR}:{}{}",
        PORTS[0], sink_query[0], PORTS[1], sink_query[1]
    );
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
            common::encode_chain(frames),
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
fn assert_complete(run: &Run) {
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

#[test]
fn bound_links_each_leave_by_their_own_interface() {
    if !can_run("bound_links_each_leave_by_their_own_interface") {
        return;
    }
    let bed = TestBed::new('s');
    // The sender runs with the agent unit's privileges: an ordinary user whose only
    // capability is CAP_NET_RAW. (Linux >= 5.7 lets any process bind a fresh socket
    // to a device; older kernels, like some vendor BSP kernels of ARM boards, need
    // CAP_NET_RAW.)
    let caps = in_ns(
        &bed.tx,
        &[
            SETPRIV_USER,
            &["grep", "-E", "^(Uid|CapEff):", "/proc/self/status"],
        ]
        .concat(),
    );
    assert!(caps.contains(&format!("Uid:\t{NOBODY}\t")), "{caps}");
    assert!(caps.contains("CapEff:\t0000000000002000"), "{caps}");
    let query = [0, 1].map(|i| format!("?iface={}", bed.tx_if[i]));
    let run = run(
        &bed,
        FRAMES,
        As::UserWithNetRaw,
        [&query[0], &query[1]],
        ["", ""],
        || {},
    );
    assert_eq!(run.send_errors, [0, 0]);
    assert_complete(&run);

    let total: u64 = run.rtp_sent.iter().sum();
    for i in 0..2 {
        let other = 1 - i;
        // Both links are alike: each carries a fair share of the stream.
        assert!(
            run.rtp_sent[i] * 5 >= total,
            "link {i} carried {} of {total} RTP packets",
            run.rtp_sent[i]
        );
        assert!(run.rtp_received[i] >= run.rtp_sent[i] * 9 / 10);
        // Interface i carried link i's RTP and its RTCP (compound SR + SDES every
        // 100 ms, so at least a few per second), and nothing of the other link's RTP.
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

#[test]
fn unbound_links_all_leave_by_the_routed_interface() {
    if !can_run("unbound_links_all_leave_by_the_routed_interface") {
        return;
    }
    // The negative control of the test above: same pipelines without `?iface=`.
    let bed = TestBed::new('u');
    let run = run(&bed, FRAMES, As::Root, ["", ""], ["", ""], || {});
    assert_eq!(run.send_errors, [0, 0]);
    assert_complete(&run);
    let total: u64 = run.rtp_sent.iter().sum();
    assert!(
        run.rtp_sent.iter().all(|&n| n * 5 >= total),
        "both links carry media: {:?}",
        run.rtp_sent
    );
    assert!(
        run.tx_packets[0] >= total,
        "{} sent {} packets, fewer than the {total} RTP packets of both links",
        bed.tx_if[0],
        run.tx_packets[0]
    );
    assert!(
        run.tx_packets[1] <= 5,
        "{} (not the best route) sent {} packets",
        bed.tx_if[1],
        run.tx_packets[1]
    );
}

#[test]
fn bound_receiver_link_ignores_its_port_on_another_interface() {
    if !can_run("bound_receiver_link_ignores_its_port_on_another_interface") {
        return;
    }
    // The sender is unbound, so both links arrive on ra. The receiver's link 0 is bound
    // to ra (where its packets arrive) and link 1 to rb (where they do not).
    let bed = TestBed::new('r');
    let query = [0, 1].map(|i| format!("?iface={}", bed.rx_if[i]));
    let run = run(
        &bed,
        FRAMES,
        As::Root,
        ["", ""],
        [&query[0], &query[1]],
        || {},
    );
    assert_eq!(run.send_errors, [0, 0]);
    assert!(
        run.tx_packets[1] <= 5,
        "{} sent {} packets",
        bed.tx_if[1],
        run.tx_packets[1]
    );
    // Link 1's sender was heard of by nobody, yet it sent media (1 s of probing).
    assert!(run.rtp_sent[1] >= 10, "link 1 sent {:?}", run.rtp_sent);
    assert_eq!(
        run.rtp_received[1], 0,
        "the receiver link bound to {} took packets that arrived on {}",
        bed.rx_if[1], bed.rx_if[0]
    );
    assert!(
        run.rtp_received[0] >= run.rtp_sent[0] * 9 / 10,
        "received {:?} of {:?}",
        run.rtp_received,
        run.rtp_sent
    );
}

/// Start error of `factory` (with a fakesink after a source) with `property` = `value`.
fn start_error_of(factory: &str, property: &str, value: &str) -> String {
    common::init();
    let pipeline = gst::Pipeline::new();
    let element = gst::ElementFactory::make(factory)
        .property(property, value)
        .build()
        .unwrap();
    let fakesink = gst::ElementFactory::make("fakesink").build().unwrap();
    pipeline.add(&element).unwrap();
    if factory == "ristbondsrc" {
        pipeline.add(&fakesink).unwrap();
        element.link(&fakesink).unwrap();
    }
    common::start_error(&pipeline).unwrap_or_else(|| panic!("{factory} {value}: must fail"))
}

#[test]
fn unknown_interface_is_an_element_error_naming_it() {
    let port = common::free_port_pair(24_400);
    for (factory, property, value) in [
        (
            "ristbondsink",
            "links",
            format!("rist://127.0.0.1:{port}?iface=doesnotexist0"),
        ),
        (
            "ristbondsink",
            "config",
            format!(
                "version = 1\n[[links]]\nid = 3\nuri = \"rist://127.0.0.1:{port}\"\n\
                 interface = \"doesnotexist0\"\n"
            ),
        ),
        (
            "ristbondsrc",
            "links",
            format!("rist://@127.0.0.1:{port}?iface=doesnotexist0"),
        ),
    ] {
        let err = start_error_of(factory, property, &value);
        eprintln!("{factory}: {err}");
        assert!(err.contains("\"doesnotexist0\""), "{factory}: {err}");
        assert!(
            err.contains("no such network interface"),
            "{factory}: {err}"
        );
        assert!(err.contains("SO_BINDTODEVICE"), "{factory}: {err}");
        assert!(err.contains("RTP socket"), "{factory}: {err}");
    }
}

#[test]
fn overlong_interface_name_is_refused_not_truncated() {
    // SO_BINDTODEVICE would silently cut the name at 15 bytes (IFNAMSIZ - 1), which may
    // name another interface; the elements refuse it instead.
    let port = common::free_port_pair(24_500);
    for (factory, value) in [
        (
            "ristbondsink",
            format!("rist://127.0.0.1:{port}?iface=lo-but-far-too-long"),
        ),
        (
            "ristbondsrc",
            format!("rist://@127.0.0.1:{port}?iface=lo-but-far-too-long"),
        ),
    ] {
        let err = start_error_of(factory, "links", &value);
        assert!(err.contains("\"lo-but-far-too-long\""), "{factory}: {err}");
        assert!(err.contains("invalid interface name"), "{factory}: {err}");
        assert!(err.contains("15 bytes"), "{factory}: {err}");
    }
}

#[test]
fn live_link_on_unknown_interface_is_refused_and_the_running_links_go_on() {
    // The agent's `stream.links.update` sets `links` while PLAYING; a modem interface
    // that is not up yet must be a warning naming it, and the links already running
    // must keep the stream.
    common::init();
    let port = common::free_port_pair(24_600);
    let other = common::free_port_pair(port + 2);
    let rtp = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let rtp_other = std::net::UdpSocket::bind(("127.0.0.1", other)).unwrap();
    for s in [&rtp, &rtp_other] {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    }
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src caps=video/mpegts,systemstream=true format=time \
         ! ristbondsink name=sink links=rist://127.0.0.1:{port} eos-linger=0 sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let appsrc = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut buf = [0u8; 2048];
    appsrc
        .push_buffer(gst::Buffer::from_slice(common::ts_packets(7, 1)))
        .unwrap();
    rtp.recv_from(&mut buf).expect("RTP before the update");

    let links = format!("rist://127.0.0.1:{port},rist://127.0.0.1:{other}?iface=doesnotexist0");
    pipeline
        .by_name("sink")
        .unwrap()
        .set_property("links", &links);
    let bus = pipeline.bus().unwrap();
    let warning = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(5),
            &[gst::MessageType::Warning, gst::MessageType::Error],
        )
        .expect("a warning for the refused update");
    let text = match warning.view() {
        gst::MessageView::Warning(w) => format!("{} {:?}", w.error(), w.debug()),
        other => panic!("expected a warning, got {other:?}"),
    };
    assert!(text.contains("\"doesnotexist0\""), "{text}");
    assert!(text.contains("no such network interface"), "{text}");
    assert!(
        !text.contains("ErrorMessage"),
        "a plain text, not a Debug dump: {text}"
    );

    // The running link still carries the stream, the refused one carries nothing.
    for i in 0..20 {
        appsrc
            .push_buffer(gst::Buffer::from_slice(common::ts_packets(7, 0x80 | i)))
            .unwrap();
    }
    let mut fills = Vec::new();
    while fills.len() < 20 {
        let (n, _) = rtp
            .recv_from(&mut buf)
            .expect("RTP after the refused update");
        if n == 12 + 1316 {
            fills.push(buf[12 + 4]);
        }
    }
    assert!(
        fills.contains(&0x93),
        "the last buffer went out: {fills:x?}"
    );
    rtp_other
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        rtp_other.recv_from(&mut buf).is_err(),
        "the refused link sent"
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn bound_link_comes_back_when_its_interface_is_created_again() {
    if !can_run("bound_link_comes_back_when_its_interface_is_created_again") {
        return;
    }
    // A modem reset: link 1's interface disappears for 1 s and an interface of the same
    // name comes back (another index). The sink reopens the link on it.
    let bed = TestBed::new('c');
    let query = [0, 1].map(|i| format!("?iface={}", bed.tx_if[i]));
    let run = run(
        &bed,
        240,
        As::Root,
        [&query[0], &query[1]],
        ["", ""],
        || {
            std::thread::sleep(Duration::from_millis(1500));
            bed.del_pair(1);
            std::thread::sleep(Duration::from_millis(1000));
            bed.add_pair(1);
        },
    );
    // The reopened link may count a few errors (ENETUNREACH) if it opened after the
    // interface came back but before its address and route did, as with a real modem.
    let links = common::links_of(&run.sink_stats);
    assert_eq!(links[1].get::<&str>("state"), Ok("Live"), "{}", links[1]);
    // Counted since the reopen (a reopened link starts over).
    assert!(
        run.rtp_sent[1] >= 50,
        "link 1 after the reopen: {:?}",
        run.rtp_sent
    );
    assert!(
        run.tx_after[1] > run.rtp_sent[1],
        "the new {} sent {} packets, link 1 {} RTP packets since it came back",
        bed.tx_if[1],
        run.tx_after[1],
        run.rtp_sent[1]
    );
    assert_complete(&run);
}
