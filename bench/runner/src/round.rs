//! One *round*: several runs (systems × scenarios) at the same time, each over its own
//! emulated links in one `braid-linkemu` process, each as a separate sender and
//! receiver process (so CPU time is attributable). Sequence: emulator → receivers →
//! (lead-in) → senders → senders reach EOS → linger → receivers stop → emulator report.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::procs::Proc;
use crate::scenario::RunSpec;
use crate::systems::{System, FPS};
use crate::util::{cpu_ms, unix_ms};

/// Emulator epoch → sender start.
pub const LEAD_IN_MS: u64 = 2000;
/// Stats interval of `ristbondsink` (resolution of the detection times).
pub const STATS_INTERVAL_MS: u32 = 50;

/// Where the binaries and files are.
#[derive(Debug, Clone)]
pub struct Env {
    /// `braid-bench` (this executable).
    pub bench_bin: PathBuf,
    /// `braid-linkemu`.
    pub emu_bin: PathBuf,
    /// Mahimahi traces.
    pub traces_dir: Option<PathBuf>,
    /// Logs, configs and per-round output.
    pub work_dir: PathBuf,
    /// First port tried.
    pub port_base: u16,
    /// Picture size of the live source.
    pub picture: (u32, u32),
}

/// CPU use of a process over the measurement window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuWindow {
    /// Window length (s).
    pub seconds: f64,
    /// CPU time in the window (ms, user + system).
    pub cpu_ms: f64,
    /// Share of one core (%).
    pub percent: f64,
}

/// Everything recorded about one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// What was run.
    pub spec: RunSpec,
    /// Emulator time 0 (UNIX ms); 0 without emulator.
    pub emu_epoch_unix_ms: f64,
    /// When the sender was started (UNIX ms).
    pub sender_start_unix_ms: f64,
    /// The sender's `summary` line.
    pub sender: Value,
    /// The sender's `link-state` and `bitrate` lines.
    pub sender_events: Vec<Value>,
    /// The receiver's `summary` line.
    pub receiver: Value,
    /// Emulator counters of the links this run used (forward/reverse), in link order.
    pub emulator_links: Vec<Value>,
    /// Sender CPU over the window.
    pub sender_cpu: CpuWindow,
    /// Receiver CPU over the window.
    pub receiver_cpu: CpuWindow,
    /// Things that went wrong (process failures, missing lines).
    pub failures: Vec<String>,
    /// The exact pipelines.
    pub sender_pipeline: String,
    /// The exact pipelines.
    pub receiver_pipeline: String,
}

/// Emulator figures of a round.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmulatorCpu {
    /// CPU share over the window (% of one core).
    pub percent: f64,
    /// Datagrams per second relayed (forward + reverse) over the whole run.
    pub datagrams_per_s: f64,
    /// Payload bit/s relayed forward over the whole run.
    pub forward_bps: f64,
}

fn port_pair_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
}

/// Even ports `count` pairs long, all free now, from `*next` on; advances `*next`.
fn take_ports(next: &mut u16, count: usize) -> Result<Vec<u16>> {
    let mut out = Vec::new();
    while out.len() < count {
        if *next > 64_000 {
            bail!("no free UDP port pairs left");
        }
        if port_pair_free(*next) {
            out.push(*next);
        }
        *next += 2;
    }
    Ok(out)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

struct Planned {
    spec: RunSpec,
    /// Emulator listen (sender side) RTP addresses, per used link.
    dests: Vec<SocketAddr>,
    /// Receiver RTP addresses, per used link.
    listen: Vec<SocketAddr>,
    /// Index of this run's first link in the emulator config.
    emu_first: usize,
}

fn emulator_toml(plans: &[Planned], traces_dir: Option<&Path>) -> Result<String> {
    let mut t = String::from("seed = 1\n");
    if let Some(dir) = traces_dir {
        t += &format!("traces_dir = {:?}\n", dir.display().to_string());
    }
    for p in plans {
        for (k, &i) in p.spec.used_links().iter().enumerate() {
            let l = &p.spec.links[i];
            t += "\n[[link]]\n";
            t += &format!("name = \"{}-L{}\"\n", p.spec.id, i + 1);
            t += &format!(
                "listen = \"{}\"\nforward = \"{}\"\n",
                p.dests[k], p.listen[k]
            );
            match (&l.rate_bps, &l.trace) {
                (Some(bps), _) => t += &format!("rate_bps = {bps}\n"),
                (None, Some(trace)) => {
                    if traces_dir.is_none() {
                        bail!(
                            "scenario {} needs trace {trace} but no traces directory was found",
                            p.spec.scenario
                        );
                    }
                    t += &format!("trace = {trace:?}\n");
                }
                (None, None) => bail!("link {} of {} has no capacity", i + 1, p.spec.id),
            }
            t += &format!(
                "delay_ms = {}\njitter_ms = {}\nloss = {}\nqueue_ms = {}\n",
                l.rtt_ms / 2.0,
                l.jitter_ms,
                l.loss,
                l.queue_ms
            );
            if let Some((mean_loss, mean_burst)) = l.ge {
                t += &format!(
                    "gilbert_elliott = {{ mean_loss = {mean_loss}, mean_burst = {mean_burst} }}\n"
                );
            }
            t += &format!(
                "reverse = {{ delay_ms = {}, loss = {} }}\n",
                l.rtt_ms / 2.0,
                l.reverse_loss
            );
            // Same seed for the same link position in every run: systems see the same
            // loss pattern for the same traffic.
            t += &format!("seed = {}\n", 1000 + i);
            if !l.events.is_empty() {
                let evs: Vec<String> = l
                    .events
                    .iter()
                    .map(|(at, action)| {
                        format!("{{ at_ms = {}, action = {action:?} }}", at + LEAD_IN_MS)
                    })
                    .collect();
                t += &format!("events = [{}]\n", evs.join(", "));
            }
        }
    }
    Ok(t)
}

/// Run `specs` concurrently. Process failures are recorded in the results, not
/// returned as errors; an error means the round could not run at all.
pub fn run_round(
    env: &Env,
    name: &str,
    specs: &[RunSpec],
) -> Result<(Vec<RunResult>, Option<EmulatorCpu>)> {
    let dir = env.work_dir.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut next_port = env.port_base;
    let mut plans = Vec::new();
    let mut emu_links = 0usize;
    for spec in specs {
        let n = spec.used_links().len().max(1);
        let emulated = !spec.links.is_empty();
        let listen: Vec<SocketAddr> = take_ports(&mut next_port, n)?
            .into_iter()
            .map(addr)
            .collect();
        let dests = if emulated {
            take_ports(&mut next_port, n)?
                .into_iter()
                .map(addr)
                .collect()
        } else {
            listen.clone()
        };
        plans.push(Planned {
            spec: spec.clone(),
            dests,
            listen,
            emu_first: emu_links,
        });
        if emulated {
            emu_links += n;
        }
    }

    // 1. Emulator.
    let mut emulator = None;
    let mut epoch = unix_ms();
    if emu_links > 0 {
        let toml = emulator_toml(&plans, env.traces_dir.as_deref())?;
        let cfg = dir.join("links.toml");
        std::fs::write(&cfg, toml)?;
        let mut cmd = Command::new(&env.emu_bin);
        cmd.arg("--config").arg(&cfg).arg("--stdin-eof");
        let mut emu = Proc::spawn("linkemu", cmd, &dir)?;
        let ready = emu
            .wait_event("ready", Duration::from_secs(10))
            .with_context(|| {
                format!(
                    "emulator did not start; see {}",
                    dir.join("linkemu.log").display()
                )
            })?;
        epoch = ready["epoch_unix_ms"].as_f64().unwrap_or(epoch);
        emulator = Some(emu);
    }

    // 2. Receivers.
    let mut receivers = Vec::new();
    for p in &plans {
        let mut cmd = Command::new(&env.bench_bin);
        cmd.args([
            "recv",
            "--system",
            p.spec.system.name(),
            "--listen",
            &list(&p.listen),
        ])
        .args(["--latency-ms", &p.spec.latency_ms.to_string()])
        .arg("--stdin-eof");
        let mut r = Proc::spawn(&format!("{}-recv", p.spec.id), cmd, &dir)?;
        r.wait_event("started", Duration::from_secs(15));
        receivers.push(r);
    }

    // 3. Senders, at epoch + lead-in.
    let wait = epoch + LEAD_IN_MS as f64 - unix_ms();
    if wait > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(wait / 1000.0));
    }
    let mut senders = Vec::new();
    let mut sender_start = Vec::new();
    for p in &plans {
        let mut cmd = Command::new(&env.bench_bin);
        cmd.args([
            "send",
            "--system",
            p.spec.system.name(),
            "--dest",
            &list(&p.dests),
        ])
        .args(["--latency-ms", &p.spec.latency_ms.to_string()])
        .args(["--stats-interval-ms", &STATS_INTERVAL_MS.to_string()])
        .args(["--bitrate-kbps", &p.spec.bitrate_kbps.to_string()])
        .args([
            "--frames",
            &(p.spec.duration_s * u64::from(FPS)).to_string(),
        ])
        .args([
            "--width",
            &env.picture.0.to_string(),
            "--height",
            &env.picture.1.to_string(),
        ])
        .args(["--braid-config", &p.spec.braid_config])
        .arg("--stdin-eof");
        if let Some(file) = &p.spec.file {
            cmd.args(["--file", file]);
        }
        if let Some((min, max)) = p.spec.adaptive {
            cmd.args(["--adaptive", &format!("{min}:{max}")]);
        }
        sender_start.push(unix_ms());
        senders.push(Proc::spawn(&format!("{}-send", p.spec.id), cmd, &dir)?);
    }

    // 4. CPU window: from 3 s after the start to 1 s before the planned end.
    let started = Instant::now();
    let max_duration = plans.iter().map(|p| p.spec.duration_s).max().unwrap_or(0);
    let window_start = Duration::from_secs(3.min(max_duration / 4));
    let window_end = Duration::from_secs(
        max_duration
            .saturating_sub(1)
            .max(window_start.as_secs() + 1),
    );
    let sample = |procs: &[&Proc]| -> Vec<Option<f64>> {
        procs
            .iter()
            .map(|p| cpu_ms(p.pid()).map(|(u, s)| u + s))
            .collect()
    };
    let mut cpu_a: Option<(Instant, Vec<Option<f64>>)> = None;
    let mut cpu_b: Option<(Instant, Vec<Option<f64>>)> = None;
    let timeout = Duration::from_secs(max_duration + 40);
    let linger = plans
        .iter()
        .map(|p| p.spec.latency_ms)
        .max()
        .unwrap_or(1000);
    loop {
        let elapsed = started.elapsed();
        if cpu_a.is_none() && elapsed >= window_start {
            let procs: Vec<&Proc> = senders
                .iter()
                .chain(receivers.iter())
                .chain(emulator.iter())
                .collect();
            cpu_a = Some((Instant::now(), sample(&procs)));
        }
        if cpu_b.is_none() && elapsed >= window_end {
            let procs: Vec<&Proc> = senders
                .iter()
                .chain(receivers.iter())
                .chain(emulator.iter())
                .collect();
            cpu_b = Some((Instant::now(), sample(&procs)));
        }
        if senders.iter_mut().all(Proc::exited) || elapsed > timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut failures: Vec<Vec<String>> = vec![Vec::new(); plans.len()];
    for (i, s) in senders.iter_mut().enumerate() {
        if s.finish(Duration::from_secs(1)).is_none() {
            failures[i].push(format!(
                "sender {} did not finish within {timeout:?}: killed",
                s.name
            ));
        }
    }
    // 5. Let the last retransmissions arrive, then stop the receivers.
    std::thread::sleep(Duration::from_millis(u64::from(linger) + 1000));
    for r in receivers.iter_mut() {
        r.close_stdin();
    }
    for (i, r) in receivers.iter_mut().enumerate() {
        if r.finish(Duration::from_secs(15)).is_none() {
            failures[i].push(format!("receiver {} did not stop: killed", r.name));
        }
    }
    // 6. Emulator report.
    let mut emu_report = Value::Null;
    if let Some(mut emu) = emulator.take() {
        emu.close_stdin();
        emu.finish(Duration::from_secs(5));
        emu_report = emu
            .wait_event("report", Duration::ZERO)
            .unwrap_or(Value::Null);
    }

    let n = plans.len();
    let window = |k: usize| -> CpuWindow {
        match (&cpu_a, &cpu_b) {
            (Some((ta, a)), Some((tb, b))) => {
                match (a.get(k).copied().flatten(), b.get(k).copied().flatten()) {
                    (Some(x), Some(y)) => {
                        let seconds = tb.duration_since(*ta).as_secs_f64();
                        CpuWindow {
                            seconds,
                            cpu_ms: y - x,
                            percent: (y - x) / 10.0 / seconds.max(1e-3),
                        }
                    }
                    _ => CpuWindow::default(),
                }
            }
            _ => CpuWindow::default(),
        }
    };
    let emulator_cpu = (emu_links > 0).then(|| {
        let w = window(2 * n);
        let links = emu_report["links"].as_array().cloned().unwrap_or_default();
        let secs = emu_report["duration_ms"].as_f64().unwrap_or(1.0) / 1000.0;
        let count = |dir: &str, key: &str| -> f64 {
            links
                .iter()
                .map(|l| l[dir][key].as_f64().unwrap_or(0.0))
                .sum()
        };
        EmulatorCpu {
            percent: w.percent,
            datagrams_per_s: (count("forward", "received") + count("reverse", "received")) / secs,
            forward_bps: count("forward", "delivered_bytes") * 8.0 / secs,
        }
    });

    let mut results = Vec::new();
    for (i, p) in plans.into_iter().enumerate() {
        let sender_lines = senders[i].lines();
        let receiver_lines = receivers[i].lines();
        let find = |lines: &[Value], ev: &str| lines.iter().find(|v| v["event"] == ev).cloned();
        let sender = find(&sender_lines, "summary").unwrap_or(Value::Null);
        let receiver = find(&receiver_lines, "summary").unwrap_or(Value::Null);
        if sender.is_null() {
            failures[i].push(format!(
                "sender {} wrote no summary; see {}",
                p.spec.id,
                dir.display()
            ));
        }
        if receiver.is_null() {
            failures[i].push(format!(
                "receiver {} wrote no summary; see {}",
                p.spec.id,
                dir.display()
            ));
        }
        for (role, v) in [("sender", &sender), ("receiver", &receiver)] {
            for e in v["errors"].as_array().into_iter().flatten() {
                if let Some(e) = e.as_str() {
                    failures[i].push(format!("{role}: {e}"));
                }
            }
        }
        let n_links = p.spec.used_links().len();
        let emulator_links = emu_report["links"]
            .as_array()
            .map(|l| l.iter().skip(p.emu_first).take(n_links).cloned().collect())
            .unwrap_or_default();
        results.push(RunResult {
            emu_epoch_unix_ms: if emu_links > 0 { epoch } else { 0.0 },
            sender_start_unix_ms: sender_start[i],
            sender_pipeline: find(&sender_lines, "started")
                .and_then(|v| v["pipeline"].as_str().map(str::to_owned))
                .unwrap_or_default(),
            receiver_pipeline: find(&receiver_lines, "started")
                .and_then(|v| v["pipeline"].as_str().map(str::to_owned))
                .unwrap_or_default(),
            sender_events: sender_lines
                .into_iter()
                .filter(|v| v["event"] == "link-state" || v["event"] == "bitrate")
                .collect(),
            sender,
            receiver,
            emulator_links,
            sender_cpu: window(i),
            receiver_cpu: window(n + i),
            failures: std::mem::take(&mut failures[i]),
            spec: p.spec,
        });
    }
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&json!(results))?,
    )?;
    Ok((results, emulator_cpu))
}

/// Whether `system`'s elements exist in this GStreamer installation.
pub fn available(system: System) -> bool {
    let need: &[&str] = match system {
        System::Braid => &["ristbondsink", "ristbondsrc"],
        System::GstRr | System::GstBroadcast | System::RistSingle => {
            &["ristsink", "ristsrc", "rtpmp2tpay"]
        }
        System::Udp => &["udpsink", "udpsrc"],
        System::SourceOnly => &["fakesink"],
    };
    need.iter().all(|f| gst::ElementFactory::find(f).is_some())
}
