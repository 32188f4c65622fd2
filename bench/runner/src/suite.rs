//! The suite: `full` (`make bench`), `quick`, and `smoke` (CI). Runs the rounds of
//! every scenario and keeps everything in [`SuiteResults`] (saved as JSON, rendered by
//! `report`).

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::analysis::{derive, Derived};
use crate::procs::Proc;
use crate::round::{available, run_round, EmulatorCpu, Env, RunResult};
use crate::scenario::{
    b1_links, b2_links, b3_links, b4_links, braid_config, Bisection, RunSpec, Timing, COMPARED,
    FULL, QUICK,
};
use crate::systems::System;
use crate::util::{cpu_ms, unix_ms};

/// Which suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every scenario with the durations.
    Full,
    /// Every scenario, short runs.
    Quick,
    /// CI smoke: B1 and B2, Braid only, short, loose thresholds.
    Smoke,
}

/// The machine and software the figures come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// `/proc/cpuinfo` model name.
    pub cpu_model: String,
    /// Online CPUs.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// GStreamer version.
    pub gstreamer: String,
    /// `rustc --version`.
    pub rustc: String,
    /// `git describe` of the tree.
    pub commit: String,
    /// Build profile of the binaries.
    pub profile: String,
    /// `/proc/loadavg` before the suite.
    pub load_before: String,
    /// `/proc/loadavg` after the suite.
    pub load_after: String,
}

/// The emulator relaying a fixed load on its own (CPU figure of the method section).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmulatorSelfTest {
    /// Offered payload rate (bit/s).
    pub offered_bps: f64,
    /// Payload rate that came out (bit/s).
    pub delivered_bps: f64,
    /// Datagrams per second offered.
    pub datagrams_per_s: f64,
    /// Emulator CPU (% of one core).
    pub cpu_percent: f64,
    /// Seconds measured.
    pub seconds: f64,
}

/// Everything a suite run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteResults {
    /// Mode.
    pub mode: Mode,
    /// Timing used.
    pub timing: Timing,
    /// Start (UNIX ms).
    pub started_unix_ms: f64,
    /// Wall time of the suite (s).
    pub wall_s: f64,
    /// Machine.
    pub machine: Machine,
    /// Emulator CPU at ~20 Mbit/s.
    pub emulator_selftest: Option<EmulatorSelfTest>,
    /// B1 search per system.
    pub b1: Vec<(System, Bisection)>,
    /// Every run.
    pub runs: Vec<RunResult>,
    /// Emulator CPU per round.
    pub emulator_rounds: Vec<(String, EmulatorCpu)>,
    /// Systems or scenarios skipped, with the reason.
    pub skipped: Vec<String>,
}

impl SuiteResults {
    /// Runs of `scenario`, with their derived figures.
    pub fn scenario(
        &self,
        scenario: &str,
        traces_dir: Option<&Path>,
    ) -> Vec<(&RunResult, Derived)> {
        self.runs
            .iter()
            .filter(|r| r.spec.scenario == scenario)
            .map(|r| (r, derive(r, traces_dir)))
            .collect()
    }
}

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.lines().next().unwrap_or("").trim().to_owned())
        .unwrap_or_default()
}

/// Describe this machine.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Machine {
        cpu_model: cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into()),
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        gstreamer: gst::version_string().to_string(),
        rustc: first_line("rustc", &["--version"]),
        commit: first_line("git", &["describe", "--always", "--dirty"]),
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .into(),
        load_before: load(),
        load_after: String::new(),
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn spec(
    id: String,
    scenario: &str,
    system: System,
    bitrate_kbps: u32,
    latency_ms: u32,
    duration_s: u64,
) -> RunSpec {
    RunSpec {
        id,
        scenario: scenario.into(),
        system,
        links: b1_links(),
        single_link: 2,
        bitrate_kbps,
        adaptive: None,
        latency_ms,
        duration_s,
        file: None,
        braid_config: braid_config(),
    }
}

/// Run the emulator on one 100 Mbit/s link (RTT 40 ms, 1 % loss) with `offered_bps` of
/// 1328-byte datagrams for `seconds`, and measure its CPU.
pub fn emulator_selftest(env: &Env, offered_bps: f64, seconds: f64) -> Result<EmulatorSelfTest> {
    let dir = env.work_dir.join("emulator-selftest");
    std::fs::create_dir_all(&dir)?;
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    let mut listen_port = env.port_base;
    let listen = loop {
        if UdpSocket::bind(("127.0.0.1", listen_port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", listen_port + 1)).is_ok()
        {
            break listen_port;
        }
        listen_port += 2;
    };
    // The receiver needs an even port too: rebind until we have one with a free odd neighbour.
    let (rx, rx_port) = {
        let mut p = listen + 2;
        loop {
            if let (Ok(a), Ok(_b)) = (
                UdpSocket::bind(("127.0.0.1", p)),
                UdpSocket::bind(("127.0.0.1", p + 1)),
            ) {
                drop(rx);
                break (a, p);
            }
            p += 2;
        }
    };
    let mut cmd = Command::new(&env.emu_bin);
    cmd.args([
        "--listen",
        &format!("127.0.0.1:{listen}"),
        "--forward",
        &format!("127.0.0.1:{rx_port}"),
    ])
    .args([
        "--rate-bps",
        "100000000",
        "--delay-ms",
        "20",
        "--loss",
        "0.01",
        "--queue-ms",
        "200",
    ])
    .arg("--stdin-eof");
    let mut emu = Proc::spawn("linkemu", cmd, &dir)?;
    emu.wait_event("ready", Duration::from_secs(10))
        .context("emulator did not start")?;
    rx.set_read_timeout(Some(Duration::from_millis(100)))?;
    let counter = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let (mut bytes, start) = (0u64, Instant::now());
        while start.elapsed() < Duration::from_secs_f64(seconds + 1.0) {
            if let Ok(n) = rx.recv(&mut buf) {
                bytes += n as u64;
            }
        }
        bytes
    });
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    let payload = [0x47u8; 1328];
    let per_second = offered_bps / (1328.0 * 8.0);
    let start = Instant::now();
    let mut sent = 0u64;
    let cpu0 = cpu_ms(emu.pid());
    while start.elapsed().as_secs_f64() < seconds {
        let due = (start.elapsed().as_secs_f64() * per_second) as u64;
        while sent < due {
            let _ = tx.send_to(&payload, ("127.0.0.1", listen));
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu1 = cpu_ms(emu.pid());
    let delivered = counter.join().unwrap_or(0);
    emu.close_stdin();
    emu.finish(Duration::from_secs(5));
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => (b.0 + b.1 - a.0 - a.1) / 10.0 / elapsed,
        _ => 0.0,
    };
    Ok(EmulatorSelfTest {
        offered_bps: sent as f64 * 1328.0 * 8.0 / elapsed,
        delivered_bps: delivered as f64 * 8.0 / elapsed,
        datagrams_per_s: sent as f64 / elapsed,
        cpu_percent: cpu,
        seconds: elapsed,
    })
}

/// B1 result of `system` (kbit/s), or `fallback` when it has none.
fn b1_rate(b1: &[(System, Bisection)], system: System, fallback: u32) -> u32 {
    b1.iter()
        .find(|(s, _)| *s == system)
        .and_then(|(_, b)| b.best_clean)
        .unwrap_or(fallback)
}

/// Which scenarios and systems a suite run covers (`--only`, `--systems`); empty
/// lists mean all. A partial run does not rewrite docs/benchmarks.md.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Scenario ids (`B1` … `B6`).
    pub scenarios: Vec<String>,
    /// Systems compared.
    pub systems: Vec<System>,
}

impl Selection {
    /// Whether scenario `id` runs.
    pub fn wants(&self, id: &str) -> bool {
        self.scenarios.is_empty() || self.scenarios.iter().any(|s| s.eq_ignore_ascii_case(id))
    }

    /// Whether every scenario and system runs.
    pub fn is_all(&self) -> bool {
        self.scenarios.is_empty() && self.systems.is_empty()
    }
}

/// Run the suite (`mode`) over the scenarios and systems of `sel`; `progress` gets
/// one line per step. Errors: a round that cannot start (ports, binaries, GStreamer).
pub fn run(
    env: &Env,
    mode: Mode,
    sel: &Selection,
    progress: &mut dyn FnMut(&str),
) -> Result<SuiteResults> {
    let timing = if mode == Mode::Full { FULL } else { QUICK };
    let started = Instant::now();
    let mut res = SuiteResults {
        mode,
        timing,
        started_unix_ms: unix_ms(),
        wall_s: 0.0,
        machine: machine(),
        emulator_selftest: None,
        b1: Vec::new(),
        runs: Vec::new(),
        emulator_rounds: Vec::new(),
        skipped: Vec::new(),
    };
    let round = |res: &mut SuiteResults,
                 name: &str,
                 specs: Vec<RunSpec>,
                 progress: &mut dyn FnMut(&str)|
     -> Result<Vec<RunResult>> {
        let specs: Vec<RunSpec> = specs
            .into_iter()
            .filter(|s| sel.wants(&s.scenario))
            .collect();
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        progress(&format!(
            "round {name}: {} ({} s)",
            specs
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            specs.iter().map(|s| s.duration_s).max().unwrap_or(0)
        ));
        let (results, emu) = run_round(env, name, &specs)?;
        if let Some(e) = emu {
            res.emulator_rounds.push((name.to_owned(), e));
        }
        for r in &results {
            let d = derive(r, env.traces_dir.as_deref());
            progress(&format!(
                "  {}: sent {:.0} kbit/s, delivered {:.0} kbit/s, lost {} TS ({:.4} %), cc {}, max gap {:.0} ms{}{}",
                r.spec.id,
                d.sent_kbps,
                d.delivered_kbps,
                d.lost_ts,
                d.residual_loss * 100.0,
                d.cc_errors,
                d.max_gap_ms,
                d.detect_ms.map_or(String::new(), |m| format!(", detect {m:.0} ms")),
                if r.failures.is_empty() { String::new() } else { format!(", FAILURES: {}", r.failures.join("; ")) }
            ));
        }
        res.runs.extend(results.iter().cloned());
        Ok(results)
    };

    if mode == Mode::Smoke {
        let (dur, down, up) = (25, 8, 16);
        let mut s1 = spec(
            "S1-braid".into(),
            "S1",
            System::Braid,
            SMOKE_B1_KBPS,
            1000,
            dur,
        );
        s1.links = b1_links();
        let mut s2 = spec(
            "S2-braid".into(),
            "S2",
            System::Braid,
            SMOKE_B2_KBPS,
            1000,
            dur,
        );
        s2.links = b2_links(down, up);
        round(&mut res, "smoke", vec![s1, s2], progress)?;
        res.wall_s = started.elapsed().as_secs_f64();
        res.machine.load_after = load();
        return Ok(res);
    }

    let systems: Vec<System> = COMPARED
        .into_iter()
        .filter(|s| sel.systems.is_empty() || sel.systems.contains(s))
        .filter(|s| {
            let ok = available(*s);
            if !ok {
                res.skipped
                    .push(format!("{s}: its GStreamer elements are not installed"));
            }
            ok
        })
        .collect();

    progress("emulator self-test at 20 Mbit/s");
    let selftest = if sel.is_all() {
        emulator_selftest(env, 20e6, if mode == Mode::Full { 20.0 } else { 8.0 })
    } else {
        Err(anyhow::anyhow!("not run in a partial run"))
    };
    match selftest {
        Ok(t) => {
            progress(&format!(
                "  emulator: {:.1} % of one core at {:.1} Mbit/s",
                t.cpu_percent,
                t.offered_bps / 1e6
            ));
            res.emulator_selftest = Some(t);
        }
        Err(e) => res.skipped.push(format!("emulator self-test: {e:#}")),
    }

    // B1: bisection, all systems at once in each round.
    let mut b1: Vec<(System, Bisection)> =
        systems.iter().map(|s| (*s, Bisection::default())).collect();
    for k in 0..timing.b1_rounds {
        let specs: Vec<RunSpec> = b1
            .iter()
            .filter_map(|(s, b)| {
                b.next()
                    .map(|kbps| spec(format!("B1-{s}-{kbps}"), "B1", *s, kbps, 1000, timing.b1_s))
            })
            .collect();
        if specs.is_empty() {
            break;
        }
        let results = round(&mut res, &format!("b1-{}", k + 1), specs, progress)?;
        for r in &results {
            let clean = derive(r, None).clean;
            if let Some((_, b)) = b1.iter_mut().find(|(s, _)| *s == r.spec.system) {
                b.record(r.spec.bitrate_kbps, clean);
            }
        }
    }
    res.b1 = b1.clone();

    // B2: each system at min(its B1 rate, 5 Mbit/s) (1 Mbit/s without a clean B1 rate).
    let (b2_s, down, up) = timing.b2;
    let specs = systems
        .iter()
        .map(|s| {
            let kbps = b1_rate(&b1, *s, 1000).min(5000);
            let mut r = spec(format!("B2-{s}"), "B2", *s, kbps, 1000, b2_s);
            r.links = b2_links(down, up);
            r
        })
        .collect();
    round(&mut res, "b2", specs, progress)?;

    // B3: traces; Braid adaptive, the others at a fixed 3 Mbit/s.
    match &env.traces_dir {
        Some(_) => {
            let specs = systems
                .iter()
                .map(|s| {
                    let mut r = spec(
                        format!("B3-{s}"),
                        "B3",
                        *s,
                        B3_FIXED_KBPS,
                        1000,
                        timing.b3_s,
                    );
                    r.links = b3_links();
                    r.single_link = 0;
                    if *s == System::Braid {
                        r.adaptive = Some(B3_ADAPTIVE_KBPS);
                    }
                    r
                })
                .collect();
            round(&mut res, "b3", specs, progress)?;
        }
        None => res
            .skipped
            .push("B3: no shared/traces directory found (set BRAID_TRACES_DIR)".into()),
    }

    // B4: two lossy, jittery 5 Mbit/s links at 4 Mbit/s, latency 1000 ms.
    let specs = systems
        .iter()
        .map(|s| {
            let mut r = spec(format!("B4-{s}"), "B4", *s, 4000, 1000, timing.b45_s);
            r.links = b4_links();
            r.single_link = 0;
            r
        })
        .collect();
    round(&mut res, "b4", specs, progress)?;

    // B5: B1 at latency 300 ms, each system at its B1 rate.
    let specs = systems
        .iter()
        .map(|s| {
            spec(
                format!("B5-{s}"),
                "B5",
                *s,
                b1_rate(&b1, *s, 1000),
                300,
                timing.b45_s,
            )
        })
        .collect();
    round(&mut res, "b5", specs, progress)?;

    // B6: loopback, one system at a time, replaying one encoded clip.
    if !sel.wants("B6") {
        res.wall_s = started.elapsed().as_secs_f64();
        res.machine.load_after = load();
        return Ok(res);
    }
    let clip = env.work_dir.join("b6-clip.ts");
    progress(&format!(
        "B6: encoding a {} s clip at {B6_KBPS} kbit/s",
        timing.b6_s + 2
    ));
    encode_clip(&clip, B6_KBPS, timing.b6_s + 2, env.picture)?;
    let mut b6_systems = vec![System::SourceOnly, System::Udp];
    b6_systems.extend(
        systems
            .iter()
            .filter(|s| matches!(s, System::Braid | System::RistSingle)),
    );
    for s in b6_systems {
        let mut r = spec(format!("B6-{s}"), "B6", s, B6_KBPS, 1000, timing.b6_s);
        r.links = Vec::new();
        r.file = Some(clip.display().to_string());
        round(&mut res, &format!("b6-{s}"), vec![r], progress)?;
    }

    res.wall_s = started.elapsed().as_secs_f64();
    res.machine.load_after = load();
    Ok(res)
}

/// Smoke S1 bitrate (kbit/s): fits the B1 links even with equal weights per link.
pub const SMOKE_B1_KBPS: u32 = 3000;
/// Smoke S2 bitrate (kbit/s): fits links 1 + 2 even with equal weights.
pub const SMOKE_B2_KBPS: u32 = 2500;
/// B3 bitrate of the non-adaptive systems (kbit/s).
pub const B3_FIXED_KBPS: u32 = 3000;
/// B3 adaptive range of Braid (kbit/s).
pub const B3_ADAPTIVE_KBPS: (u32, u32) = (500, 25_000);
/// B6 clip bitrate (kbit/s).
pub const B6_KBPS: u32 = 10_000;

fn encode_clip(path: &Path, kbps: u32, seconds: u64, picture: (u32, u32)) -> Result<()> {
    crate::init_gst()?;
    let desc = format!(
        "videotestsrc num-buffers={} pattern=smpte horizontal-speed=4 \
         ! video/x-raw,format=I420,width={},height={},framerate={}/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={} \
         ! h264parse ! mpegtsmux alignment=7 ! filesink location=\"{}\"",
        seconds * u64::from(crate::systems::FPS),
        picture.0,
        picture.1,
        crate::systems::FPS,
        2 * crate::systems::FPS,
        path.display()
    );
    let p = gst::parse::launch(&desc)?;
    use gst::prelude::*;
    p.set_state(gst::State::Playing)?;
    let bus = p.bus().context("bus")?;
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(300),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null)?;
    match msg.map(|m| m.type_()) {
        Some(gst::MessageType::Eos) => Ok(()),
        _ => anyhow::bail!("encoding the B6 clip failed"),
    }
}

/// Smoke verdicts: (passed, lines).
pub fn smoke_verdict(res: &SuiteResults) -> (bool, Vec<String>) {
    let mut ok = true;
    let mut lines = Vec::new();
    let mut check = |cond: bool, what: String| {
        ok &= cond;
        lines.push(format!("{} {what}", if cond { "ok  " } else { "FAIL" }));
    };
    for (r, d) in res.scenario("S1", None) {
        check(
            r.failures.is_empty(),
            format!("S1 processes ran cleanly {:?}", r.failures),
        );
        check(
            d.received_ts > 0,
            format!("S1 received {} TS packets", d.received_ts),
        );
        check(
            d.cc_errors == 0,
            format!("S1 continuity errors: {} (want 0)", d.cc_errors),
        );
        check(
            d.lost_ts == d.lost_at_ends,
            format!(
                "S1 lost TS packets inside the stream: {} of {} (want 0; {} at its start/end not counted)",
                d.lost_ts - d.lost_at_ends,
                d.sent_ts,
                d.lost_at_ends
            ),
        );
        check(
            d.max_gap_ms <= SMOKE_MAX_GAP_MS,
            format!(
                "S1 longest output gap {:.0} ms (want <= {SMOKE_MAX_GAP_MS} ms)",
                d.max_gap_ms
            ),
        );
    }
    for (r, d) in res.scenario("S2", None) {
        check(
            r.failures.is_empty(),
            format!("S2 processes ran cleanly {:?}", r.failures),
        );
        check(
            d.received_ts > 0,
            format!("S2 received {} TS packets", d.received_ts),
        );
        check(
            d.cc_errors == 0,
            format!("S2 continuity errors: {} (want 0)", d.cc_errors),
        );
        check(
            d.detect_ms.is_some_and(|m| m <= SMOKE_DETECT_MS),
            format!(
                "S2 dead link reported Down after {:?} ms (want <= {SMOKE_DETECT_MS} ms)",
                d.detect_ms.map(|m| m.round())
            ),
        );
        check(
            d.readmit_ms.is_some_and(|m| m <= SMOKE_READMIT_MS),
            format!(
                "S2 link re-admitted after {:?} ms (want <= {SMOKE_READMIT_MS} ms)",
                d.readmit_ms.map(|m| m.round())
            ),
        );
        check(
            d.max_gap_ms <= SMOKE_MAX_GAP_MS,
            format!(
                "S2 longest output gap {:.0} ms (want <= {SMOKE_MAX_GAP_MS} ms)",
                d.max_gap_ms
            ),
        );
        check(
            d.lost_ts == d.lost_at_ends,
            format!(
                "S2 lost TS packets inside the stream: {} of {} (want 0; {} at its start/end not counted)",
                d.lost_ts - d.lost_at_ends,
                d.sent_ts,
                d.lost_at_ends
            ),
        );
    }
    let ran = !lines.is_empty();
    if !ran {
        ok = false;
        lines.push("FAIL no smoke runs".into());
    }
    (ok, lines)
}

/// Smoke: longest tolerated output gap (ms).
pub const SMOKE_MAX_GAP_MS: f64 = 1000.0;
/// Smoke: dead-link detection bound (ms): the sink declares a link Down 250 ms after
/// its last feedback; 4× that leaves room for a loaded CI machine.
pub const SMOKE_DETECT_MS: f64 = 1000.0;
/// Smoke: re-admission bound after the link returns (ms): 500 ms of steady feedback
/// plus a round trip, with the same margin.
pub const SMOKE_READMIT_MS: f64 = 3000.0;
