//! The transport section of `docs/benchmarks.md`: method, machine, versions, raw figures
//! per scenario and system, ratios to the issue's targets, and "target missed: measured
//! X" where missed. Only the text between [`BEGIN`] and [`END`] is rewritten; the rest
//! of the file (e.g. the agent's idle-footprint section) is kept byte for byte.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::analysis::Derived;
use crate::round::{RunResult, LEAD_IN_MS, STATS_INTERVAL_MS};
use crate::scenario::{self, B1_AGGREGATE_KBPS, QUEUE_MS};
use crate::suite::{self, Mode, SuiteResults};
use crate::systems::System;

/// Start marker of the generated section.
pub const BEGIN: &str = "<!-- bench:transport:begin -->";
/// End marker of the generated section.
pub const END: &str = "<!-- bench:transport:end -->";

const NEW_FILE_HEAD: &str = "# Benchmarks\n\n";

/// Replace the text between the markers in `existing` with `section` (markers kept).
/// Without markers the section is appended (with markers); with a begin marker but no
/// end marker it is an error (nothing is lost by guessing).
pub fn splice(existing: &str, section: &str) -> Result<String> {
    let block = format!("{BEGIN}\n{}\n{END}", section.trim_end());
    match (existing.find(BEGIN), existing.find(END)) {
        (Some(b), Some(e)) if b < e => Ok(format!("{}{block}{}", &existing[..b], &existing[e + END.len()..])),
        (None, None) => {
            let mut out = existing.to_owned();
            if out.trim().is_empty() {
                out = NEW_FILE_HEAD.to_owned();
            } else if !out.ends_with("\n\n") {
                out.push_str(if out.ends_with('\n') { "\n" } else { "\n\n" });
            }
            out.push_str(&block);
            out.push('\n');
            Ok(out)
        }
        _ => anyhow::bail!("the file has one of the {BEGIN} / {END} markers without the other (or in the wrong order); fix it by hand"),
    }
}

/// Render and splice into `doc` (created if missing).
pub fn write_doc(doc: &Path, res: &SuiteResults, traces: Option<&Path>) -> Result<()> {
    let existing = match std::fs::read_to_string(doc) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", doc.display())),
    };
    let text = splice(&existing, &render(res, traces))?;
    if let Some(dir) = doc.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(doc, text).with_context(|| format!("writing {}", doc.display()))
}

fn mbps(kbps: f64) -> String {
    format!("{:.2}", kbps / 1000.0)
}

fn pct(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x < 0.0001 {
        format!("{:.5} %", x * 100.0)
    } else {
        format!("{:.3} %", x * 100.0)
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |m| format!("{m:.0}"))
}

fn verdict(met: bool, measured: &str) -> String {
    if met {
        format!("met: measured {measured}")
    } else {
        format!("**target missed: measured {measured}**")
    }
}

fn run_of<'a>(
    runs: &'a [(&'a RunResult, Derived)],
    system: System,
) -> Option<&'a (&'a RunResult, Derived)> {
    runs.iter().find(|(r, _)| r.spec.system == system)
}

fn failures_note(out: &mut String, runs: &[(&RunResult, Derived)]) {
    for (r, _) in runs {
        for f in &r.failures {
            let _ = writeln!(out, "- {}: {}", r.spec.id, f.replace('\n', " "));
        }
    }
}

/// An extra table column: a cell from a run and its figures.
type Column = dyn Fn(&RunResult, &Derived) -> String;

/// Standard per-run table.
fn run_table(out: &mut String, runs: &[(&RunResult, Derived)], extra: &[(&str, &Column)]) {
    let mut head = String::from("| system | encoder kbit/s | sent TS Mbit/s | delivered Mbit/s | lost TS packets | residual loss | CC errors | longest output gap ms | late packets | p99 transport delay ms |");
    let mut sep = String::from("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (h, _) in extra {
        head += &format!(" {h} |");
        sep += "---:|";
    }
    let _ = writeln!(out, "{head}\n{sep}");
    for (r, d) in runs {
        let mut row = format!(
            "| {} | {} | {} | {} | {} of {}{} | {} | {} | {:.0} | {} | {:.0} |",
            r.spec.system,
            r.spec.bitrate_kbps,
            mbps(d.sent_kbps),
            mbps(d.delivered_kbps),
            d.lost_ts,
            d.sent_ts,
            if d.lost_at_ends > 0 {
                format!(" ({} at start/end)", d.lost_at_ends)
            } else {
                String::new()
            },
            pct(d.residual_loss),
            d.cc_errors,
            d.max_gap_ms,
            d.late_packets,
            d.lateness.p99_delay_ms
        );
        for (_, f) in extra {
            row += &format!(" {} |", f(r, d));
        }
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out);
    failures_note(out, runs);
}

fn links_table(out: &mut String, links: &[scenario::LinkParams]) {
    let _ = writeln!(out, "| link | capacity | RTT ms | jitter ms | loss fwd | Gilbert-Elliott fwd | loss rev | queue | events (stream time) |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---|---:|---|---|");
    for (i, l) in links.iter().enumerate() {
        let cap = match (&l.rate_bps, &l.trace) {
            (Some(b), _) => format!("{} Mbit/s fixed", *b as f64 / 1e6),
            (_, Some(t)) => format!("trace {t}"),
            _ => "?".into(),
        };
        let ge = l.ge.map_or("-".into(), |(m, b)| {
            format!("mean {}, burst {b} pkts", pct(m))
        });
        let ev = if l.events.is_empty() {
            "-".into()
        } else {
            l.events
                .iter()
                .map(|(t, a)| format!("{a} at {} s", *t as f64 / 1000.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| {} | {cap} | {} | {} | {} | {ge} | {} | {} ms | {ev} |",
            i + 1,
            l.rtt_ms,
            l.jitter_ms,
            pct(l.loss),
            pct(l.reverse_loss),
            l.queue_ms
        );
    }
    let _ = writeln!(out);
}

/// The whole section (without markers).
pub fn render(res: &SuiteResults, traces: Option<&Path>) -> String {
    let mut o = String::new();
    let m = &res.machine;
    let mode = match res.mode {
        Mode::Full => "full (`make bench`)",
        Mode::Quick => {
            "quick (`make bench ARGS=--quick`: shorter runs, coarser B1 search — indicative only)"
        }
        Mode::Smoke => "smoke",
    };
    let _ = writeln!(
        o,
        "## Bonded transport (issue 3): Braid vs GStreamer RIST bonding\n"
    );
    let _ = writeln!(
        o,
        "_Generated by `braid-bench suite` ({mode}), commit `{}`, in {:.0} min. Everything between the \
         `bench:transport` markers is rewritten by `make bench`; edit the harness (`bench/runner`), not this text._\n",
        m.commit,
        res.wall_s / 60.0
    );

    let b1 = res.scenario("B1", traces);
    let b2 = res.scenario("B2", traces);
    let b3 = res.scenario("B3", traces);
    let b4 = res.scenario("B4", traces);
    let b5 = res.scenario("B5", traces);
    let b6 = res.scenario("B6", traces);
    let best = |s: System| {
        res.b1
            .iter()
            .find(|(x, _)| *x == s)
            .and_then(|(_, b)| b.best_clean)
    };

    // ---- Summary against the targets.
    let _ = writeln!(o, "### Results against the targets\n");
    let _ = writeln!(o, "| scenario | target | result |\n|---|---|---|");
    {
        let braid = best(System::Braid);
        let gst_best = [System::GstRr, System::GstBroadcast]
            .iter()
            .filter_map(|s| best(*s))
            .max();
        let measured = match braid {
            Some(k) => format!(
                "Braid clean up to {} Mbit/s = {:.0} % of 17 Mbit/s{}",
                mbps(f64::from(k)),
                f64::from(k) / f64::from(B1_AGGREGATE_KBPS) * 100.0,
                gst_best.map_or(
                    " (GStreamer bonding: clean at no rate tried)".into(),
                    |g| format!(
                        ", {:.1}× GStreamer's best bonding ({} Mbit/s)",
                        f64::from(k) / f64::from(g),
                        mbps(f64::from(g))
                    )
                )
            ),
            None => "Braid clean at no rate tried".into(),
        };
        let met = braid.is_some_and(|k| k >= 14_500)
            && gst_best.is_none_or(|g| braid.unwrap_or(0) >= 7 * g);
        let _ = writeln!(
            o,
            "| B1 | ≥ 85 % of aggregate (≥ 14.5 Mbit/s clean), 7× GStreamer | {} |",
            verdict(met, &measured)
        );
    }
    if let Some((_, d)) = run_of(&b2, System::Braid) {
        let met = d.lost_ts == 0 && d.detect_ms.is_some_and(|x| x <= 300.0);
        let measured = format!(
            "{} lost TS packets, detection {} ms",
            d.lost_ts,
            opt_ms(d.detect_ms)
        );
        let _ = writeln!(
            o,
            "| B2 | zero lost TS packets with `storm_enabled`, detection ≤ 300 ms | {} |",
            verdict(met, &measured)
        );
    }
    if let Some((_, d)) = run_of(&b3, System::Braid) {
        let ratio = d.capacity_kbps.map_or(0.0, |c| d.delivered_kbps / c);
        let met = ratio >= 0.75 && d.residual_loss <= 0.0001;
        let measured = format!(
            "{:.0} % of trace capacity, residual loss {}",
            ratio * 100.0,
            pct(d.residual_loss)
        );
        let _ = writeln!(
            o,
            "| B3 | ≥ 75 % of trace capacity, residual loss ≤ 0.01 % | {} |",
            verdict(met, &measured)
        );
    }
    for (name, runs, what) in [
        ("B4", &b4, "zero residual loss at 4 Mbit/s"),
        ("B5", &b5, "zero residual loss (latency 300 ms)"),
    ] {
        if let Some((r, d)) = run_of(runs, System::Braid) {
            let measured = format!(
                "{} of {} TS packets lost at {} kbit/s",
                d.lost_ts, d.sent_ts, r.spec.bitrate_kbps
            );
            let _ = writeln!(o, "| {name} | {what} | {} |", verdict(d.clean, &measured));
        }
    }
    let cpu = |s: System| run_of(&b6, s).map(|(_, d)| d.cpu_percent);
    if let (Some(braid), Some(udp)) = (cpu(System::Braid), cpu(System::Udp)) {
        let ratio = braid / udp.max(1e-9);
        let base = run_of(&b6, System::SourceOnly).map_or(0.0, |(r, _)| r.sender_cpu.percent);
        let ratio_t = (braid - base) / (udp - base).max(1e-9);
        let measured = format!("{ratio:.2}× (transport only, source subtracted: {ratio_t:.2}×)");
        let _ = writeln!(
            o,
            "| B6 | CPU ≤ 1.3× udpsink/udpsrc | {} |",
            verdict(ratio <= 1.3, &measured)
        );
    }
    let _ = writeln!(o);
    if !res.skipped.is_empty() {
        let _ = writeln!(o, "Skipped: {}.\n", res.skipped.join("; "));
    }

    // ---- Method.
    let _ = writeln!(o, "### Method\n");
    let _ = writeln!(
        o,
        "- **Machine**: {} ({} cores), Linux {}, {}, {}; binaries built `{}`. Load average before / after: {} / {}. \
         The machine is shared (other builds may run at the same time): treat CPU figures as ±20 %.",
        m.cpu_model, m.cores, m.kernel, m.gstreamer, m.rustc, m.profile, m.load_before, m.load_after
    );
    let _ = writeln!(
        o,
        "- **Source**: `videotestsrc is-live=true pattern=smpte horizontal-speed=4` 1280×720 I420 30 fps → \
         `x264enc tune=zerolatency speed-preset=ultrafast bitrate=<scenario> key-int-max=60` → `h264parse` → \
         `mpegtsmux alignment=7` (7 TS packets per RTP datagram, 1328 bytes of RTP, 1356 on the wire). x264 overshoots \
         its setting by a few %: tables give both the encoder setting and the TS rate measured into the transport."
    );
    let _ = writeln!(
        o,
        "- **Processes**: per system and scenario one sender process and one receiver process (`braid-bench send` / \
         `recv`, gstreamer-rs, pipelines below), all systems of a scenario at the same time, each over its own set \
         of emulated links with identical parameters and loss seeds, in one `braid-linkemu` process. The emulator \
         starts first (its clock is t = 0), receivers next, senders at t = {:.1} s; scenario events are given in \
         stream time (from the sender start). After the sender's EOS the sender lingers `latency` ms for \
         retransmissions, the receivers run `latency` + 1 s more, then stop.",
        LEAD_IN_MS as f64 / 1000.0
    );
    let _ = writeln!(
        o,
        "- **Measured at the receiver output** (a pad probe on `fakesink`): TS packets, TR 101 290 1.4 continuity \
         errors (`ristbond_core::ts::ContinuityChecker`), lost TS packets = max(sent − received, packets missing by \
         continuity counters inside the stream + at its start and end), residual loss = lost / sent, delivered \
         bitrate = received TS bytes over the sender's first-to-last send time, the longest gap between output \
         buffers, and *late packets*: sender and receiver log the wall-clock time of every PCR-bearing TS packet \
         (about 25 a second); matched by PCR they give the transport delay, and a packet is late when its delay \
         exceeds the run's smallest by more than the latency (a player starting `latency` behind the fastest packet \
         would skip it); the late share of the PCR packets × packets received, first 2 s left out. A sent TS rate \
         well below the encoder setting means the encoder could not keep up (CPU), not a transport effect. \
         Losses at the very start \
         and end of the stream (before the receiver's first and after its last packet, found by comparing the \
         sender's and receiver's first/last continuity counter per PID) are shown as \"at start/end\": no later \
         packet reveals them to a RIST receiver, and a live feed has no end. *Clean* = no loss inside the stream, \
         no continuity error, no process failure."
    );
    let _ = writeln!(
        o,
        "- **Link states** (B2): from Braid's `ristbond-link-state` bus messages (time they reach the sender's bus; \
         sinks without them: states in `ristbond-stats` every {STATS_INTERVAL_MS} ms); detection = first `Down` of \
         the cut link after the cut, re-admission = first `Live`/`Degraded` after the link returned. GStreamer's \
         `ristsink` has no link states (n/a)."
    );
    let _ = writeln!(
        o,
        "- **CPU**: user + system time of each process from `/proc/<pid>/stat`, sampled 3 s after the sender started \
         and 1 s before its planned end; % of one core."
    );
    let _ = writeln!(
        o,
        "- **Link emulator** (`bench/linkemu`, `braid-linkemu`): userspace UDP relay per link (RTP P and RTCP P+1 \
         share one drop-tail queue, one capacity and one loss process, as on one modem); capacity fixed or from a \
         Mahimahi trace (1500-byte delivery opportunities, unused ones lost, trace repeats); loss applied after the \
         bottleneck; delay RTT/2 each way; jitter uniform ±, without reordering; reverse direction uncapped with \
         delay and its own loss; queue {QUEUE_MS} ms of the link rate (trace mean for traces); capacity and queue \
         count IP datagrams (UDP payload + 28 bytes). One thread, tokio current-thread runtime, deliveries on a 1 ms timer."
    );
    if let Some(t) = &res.emulator_selftest {
        let _ = writeln!(
            o,
            "- **Emulator cost**: relaying {:.1} Mbit/s ({:.0} datagrams/s of 1328 bytes, one link, 1 % loss, 40 ms RTT) \
             it used {:.1} % of one core ({:.1} Mbit/s came out); so it is not the bottleneck at ~20 Mbit/s aggregate.",
            t.offered_bps / 1e6,
            t.datagrams_per_s,
            t.cpu_percent,
            t.delivered_bps / 1e6
        );
    }
    for (name, e) in &res.emulator_rounds {
        if e.forward_bps > 15e6 {
            let _ = writeln!(
                o,
                "  - in round {name}: {:.1} % of one core for {:.1} Mbit/s forward, {:.0} datagrams/s both ways.",
                e.percent,
                e.forward_bps / 1e6,
                e.datagrams_per_s
            );
        }
    }
    let _ = writeln!(
        o,
        "- **Braid configuration**: `latency` = scenario latency on both ends, `ristbondsink stats-interval={STATS_INTERVAL_MS} \
         eos-linger=<latency>`, `config` =\n\n```toml\n{}```\n",
        scenario::braid_config()
    );
    let _ = writeln!(
        o,
        "#### Pipelines (exact, from a B1 run; ports differ per run)\n"
    );
    let mut shown = std::collections::HashSet::new();
    for r in res
        .runs
        .iter()
        .filter(|r| r.spec.scenario == "B1" || r.spec.scenario == "B6")
    {
        if !shown.insert(r.spec.system) || r.sender_pipeline.is_empty() {
            continue;
        }
        let _ = writeln!(
            o,
            "- {} ({}):\n  - sender: `{}`\n  - receiver: `{}`",
            r.spec.system.label(),
            r.spec.system,
            r.sender_pipeline
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            r.receiver_pipeline
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let _ = writeln!(o);

    // ---- B1.
    let _ = writeln!(o, "### B1 — highest clean bitrate over 3 fixed links\n");
    links_table(&mut o, &scenario::b1_links());
    let _ = writeln!(
        o,
        "Bisection per system between {} kbit/s and the 17 Mbit/s aggregate, {} rounds of {} s, latency 1000 ms; \
         a probe passes when the run is clean. Non-bonded `rist-single` uses link 3 (10 Mbit/s) only.\n",
        scenario::B1_FLOOR_KBPS,
        res.timing.b1_rounds,
        res.timing.b1_s
    );
    let _ = writeln!(o, "| system | highest clean encoder bitrate | share of 17 Mbit/s | probes (kbit/s: clean ✓ / not ✗) |\n|---|---:|---:|---|");
    for (s, b) in &res.b1 {
        let probes = b
            .probes
            .iter()
            .map(|(k, c)| format!("{k} {}", if *c { "✓" } else { "✗" }))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            o,
            "| {s} | {} | {} | {probes} |",
            b.best_clean.map_or(
                format!("none ≥ {} kbit/s", scenario::B1_FLOOR_KBPS),
                |k| format!("{k} kbit/s")
            ),
            b.best_clean.map_or("-".into(), |k| format!(
                "{:.0} %",
                f64::from(k) / f64::from(B1_AGGREGATE_KBPS) * 100.0
            ))
        );
    }
    let _ = writeln!(o, "\nEvery B1 run:\n");
    run_table(
        &mut o,
        &b1,
        &[("link share L1/L2/L3", &|_, d: &Derived| {
            d.link_share
                .iter()
                .map(|s| format!("{:.0}", s * 100.0))
                .collect::<Vec<_>>()
                .join("/")
        })],
    );

    // ---- B2.
    let (_, down, up) = res.timing.b2;
    let _ = writeln!(
        o,
        "### B2 — link 3 hard down at t = {down} s, back at t = {up} s\n"
    );
    let _ = writeln!(
        o,
        "B1 links; link 3 (10 Mbit/s) drops everything both ways from {down} s to {up} s. Each system runs at min(its B1 \
         result, 5 Mbit/s) (1 Mbit/s when it had no clean B1 rate), so that the two remaining links (7 Mbit/s) can carry it; \
         `rist-single` runs on link 3 alone (the outage without bonding).\n"
    );
    run_table(
        &mut o,
        &b2,
        &[
            ("time to detect Down ms", &|_, d: &Derived| {
                opt_ms(d.detect_ms)
            }),
            ("time to re-admit ms", &|_, d: &Derived| {
                opt_ms(d.readmit_ms)
            }),
            ("output gaps ≥ 1 s", &|_, d: &Derived| {
                d.stalls_1s.to_string()
            }),
        ],
    );

    // ---- B3.
    let _ = writeln!(o, "### B3 — cellular traces, adaptive bitrate\n");
    if b3.is_empty() {
        let _ = writeln!(o, "Not run (no traces directory).\n");
    } else {
        links_table(&mut o, &scenario::b3_links());
        let _ = writeln!(
            o,
            "Braid adapts: the sink's `available-bitrate` feeds the agent's controller \
             (`ristbond_core::feedback::BitrateController`, headroom 0.2, drops followed at once, rises ≤ 10 %/s), \
             which sets `x264enc bitrate` within {}–{} kbit/s from a start of {} kbit/s. The other \
             systems cannot adapt and run at a fixed {} kbit/s; `rist-single` uses the TMobile link. Capacity = the \
             trace opportunities of the links used over the sender's first-to-last send time.\n",
            suite::B3_ADAPTIVE_KBPS.0,
            suite::B3_ADAPTIVE_KBPS.1,
            suite::B3_FIXED_KBPS,
            suite::B3_FIXED_KBPS
        );
        run_table(
            &mut o,
            &b3,
            &[
                ("trace capacity Mbit/s", &|_, d: &Derived| {
                    d.capacity_kbps.map_or("-".into(), mbps)
                }),
                ("delivered / capacity", &|_, d: &Derived| {
                    d.capacity_kbps.map_or("-".into(), |c| {
                        format!("{:.0} %", d.delivered_kbps / c * 100.0)
                    })
                }),
                ("bitrate changes", &|r: &RunResult, _| {
                    r.sender_events
                        .iter()
                        .filter(|e| e["event"] == "bitrate")
                        .count()
                        .to_string()
                }),
            ],
        );
        if let Some((r, _)) = run_of(&b3, System::Braid) {
            if r.sender["adaptive_feedback_seen"] != true {
                let _ = writeln!(
                    o,
                    "Braid's sink posted no `available-bitrate` in this run, so its encoder stayed at {} kbit/s \
                     (adaptation not measured).\n",
                    suite::B3_FIXED_KBPS
                );
            }
        }
    }

    // ---- B4, B5.
    let _ = writeln!(
        o,
        "### B4 — two lossy, jittery links, 4 Mbit/s, latency 1000 ms\n"
    );
    links_table(&mut o, &scenario::b4_links());
    let _ = writeln!(o, "`rist-single` uses link 1.\n");
    run_table(&mut o, &b4, &[]);
    let _ = writeln!(o, "### B5 — B1 links at latency 300 ms\n");
    let _ = writeln!(
        o,
        "Each system at its B1 result (1 Mbit/s when it had none), latency 300 ms on both ends.\n"
    );
    run_table(&mut o, &b5, &[]);

    // ---- B6.
    let _ = writeln!(o, "### B6 — CPU on loopback, no impairment\n");
    let _ = writeln!(
        o,
        "One system at a time, directly on loopback (no emulator), one link, replaying the same {} kbit/s clip \
         (`filesrc ! tsparse set-timestamps=true alignment=7 ! clocksync`, paced from its PCR) for {} s. *source-only* \
         is that sender pipeline into `fakesink sync=true`: the part of every sender's CPU that is not transport. \
         Packets/s counts 1316-byte TS payloads delivered.\n",
        suite::B6_KBPS,
        res.timing.b6_s
    );
    let _ = writeln!(o, "| system | delivered Mbit/s | packets/s | sender CPU % | receiver CPU % | total CPU % | CPU % per Mbit/s | total vs udp | transport-only vs udp |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = run_of(&b6, System::SourceOnly).map_or(0.0, |(r, _)| r.sender_cpu.percent);
    let udp = run_of(&b6, System::Udp).map(|(_, d)| d.cpu_percent);
    for (r, d) in &b6 {
        let mbit = d.delivered_kbps / 1000.0;
        let pps = d.delivered_kbps * 1000.0 / 8.0 / 1316.0;
        let (vs, vs_t) = match (udp, r.spec.system) {
            (_, System::SourceOnly) | (None, _) => ("-".into(), "-".into()),
            (Some(u), _) => (
                format!("{:.2}×", d.cpu_percent / u.max(1e-9)),
                format!("{:.2}×", (d.cpu_percent - base) / (u - base).max(1e-9)),
            ),
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {vs} | {vs_t} |",
            r.spec.system,
            if r.spec.system == System::SourceOnly {
                "-".into()
            } else {
                format!("{mbit:.2}")
            },
            if r.spec.system == System::SourceOnly {
                "-".into()
            } else {
                format!("{pps:.0}")
            },
            r.sender_cpu.percent,
            r.receiver_cpu.percent,
            d.cpu_percent,
            if mbit > 0.0 {
                format!("{:.2}", d.cpu_percent / mbit)
            } else {
                "-".into()
            },
        );
    }
    let _ = writeln!(o);
    failures_note(&mut o, &b6);
    let _ = writeln!(
        o,
        "Raw data: `target/bench/results-{}.json` (every run: sender/receiver summaries, link-state events, emulator \
         counters); logs per process in `target/bench/<round>/`. Re-render with `braid-bench render`.",
        serde_json::to_value(res.mode).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_keeps_everything_outside_the_markers() {
        let before = "# Benchmarks\n\nintro\n\n<!-- bench:transport:begin -->\nold\nstuff\n<!-- bench:transport:end -->\n\n## Agent idle footprint\n\nkept\n";
        let after = splice(before, "new section\n").unwrap();
        assert_eq!(
            after,
            "# Benchmarks\n\nintro\n\n<!-- bench:transport:begin -->\nnew section\n<!-- bench:transport:end -->\n\n## Agent idle footprint\n\nkept\n"
        );
        // Idempotent.
        assert_eq!(splice(&after, "new section").unwrap(), after);
    }

    #[test]
    fn splice_appends_or_creates() {
        let created = splice("", "s").unwrap();
        assert_eq!(created, format!("# Benchmarks\n\n{BEGIN}\ns\n{END}\n"));
        let appended = splice("# Benchmarks\n\n## Agent idle footprint\nx\n", "s").unwrap();
        assert!(appended.starts_with(
            "# Benchmarks\n\n## Agent idle footprint\nx\n\n<!-- bench:transport:begin -->"
        ));
    }

    #[test]
    fn broken_markers_are_an_error_and_nothing_is_written() {
        assert!(splice(&format!("a\n{BEGIN}\nb\n"), "s").is_err());
        assert!(splice(&format!("{END}\n{BEGIN}\n"), "s").is_err());
        let dir = std::env::temp_dir().join(format!("braid-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let doc = dir.join("benchmarks.md");
        let original = format!("keep me\n{BEGIN}\nno end marker\n");
        std::fs::write(&doc, &original).unwrap();
        let res: SuiteResults = serde_json::from_value(serde_json::json!({
            "mode": "quick", "timing": crate::scenario::QUICK, "started_unix_ms": 0.0, "wall_s": 0.0,
            "machine": crate::suite::Machine::default(), "emulator_selftest": null, "b1": [], "runs": [],
            "emulator_rounds": [], "skipped": []
        }))
        .unwrap();
        assert!(write_doc(&doc, &res, None).is_err());
        assert_eq!(std::fs::read_to_string(&doc).unwrap(), original);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
