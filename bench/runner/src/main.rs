//! `braid-bench`: the benchmark harness of Braid's bonded transport (issue 3, B1–B6).
//!
//! ```text
//! braid-bench suite [--quick | --smoke] [--doc docs/benchmarks.md]   # make bench / CI smoke
//! braid-bench suite --only B4 --systems braid                       # iterate on one scenario
//! braid-bench render --results target/bench/results-full.json --doc docs/benchmarks.md
//! braid-bench send --system braid --dest 127.0.0.1:30000,... [...]  # roles, started by the suite
//! braid-bench recv --system braid --listen 127.0.0.1:31000,... [...]
//! ```
//!
//! The suite starts `braid-linkemu` (next to this executable) and one sender and one
//! receiver process per system and scenario; see `docs/benchmarks.md` for the method.

mod analysis;
mod gstjson;
mod metrics;
mod procs;
mod recv;
mod report;
mod round;
mod scenario;
mod send;
mod suite;
mod systems;
mod util;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use crate::systems::{Source, System};

/// Benchmark harness of Braid's bonded RIST transport.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the scenarios and write the report.
    Suite {
        /// Shorter runs and a coarser B1 search (for iteration).
        #[arg(long, conflicts_with = "smoke")]
        quick: bool,
        /// CI smoke: B1 and B2 short, Braid only; exit status 1 when a check fails.
        #[arg(long)]
        smoke: bool,
        /// Markdown file whose transport section (between the bench:transport
        /// markers) is rewritten; not written in smoke mode.
        #[arg(long, default_value = "docs/benchmarks.md")]
        doc: PathBuf,
        /// Logs, configs and results.
        #[arg(long, default_value = "target/bench")]
        work_dir: PathBuf,
        /// First UDP port used.
        #[arg(long, default_value_t = 28_000)]
        port_base: u16,
        /// Mahimahi traces (default: $BRAID_TRACES_DIR, else shared/traces above the
        /// working directory).
        #[arg(long)]
        traces_dir: Option<PathBuf>,
        /// Run only these scenarios (e.g. `B1,B4`); the doc is not rewritten.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Compare only these systems; the doc is not rewritten.
        #[arg(long, value_delimiter = ',')]
        systems: Vec<System>,
    },
    /// Re-render the report from a saved results file.
    Render {
        /// `results-<mode>.json` written by `suite`.
        #[arg(long)]
        results: PathBuf,
        /// Markdown file to update.
        #[arg(long, default_value = "docs/benchmarks.md")]
        doc: PathBuf,
        /// Mahimahi traces (for B3 capacities).
        #[arg(long)]
        traces_dir: Option<PathBuf>,
    },
    /// Sender role (started by the suite).
    Send {
        /// Transport.
        #[arg(long)]
        system: System,
        /// RTP destination of every link, comma-separated.
        #[arg(long, value_delimiter = ',')]
        dest: Vec<SocketAddr>,
        /// Latency / retransmission buffer (ms).
        #[arg(long, default_value_t = 1000)]
        latency_ms: u32,
        /// ristbondsink stats-interval (ms).
        #[arg(long, default_value_t = 50)]
        stats_interval_ms: u32,
        /// Encoder bitrate (kbit/s).
        #[arg(long, default_value_t = 4000)]
        bitrate_kbps: u32,
        /// Frames (30 fps) before EOS.
        #[arg(long, default_value_t = 900)]
        frames: u64,
        /// Picture width.
        #[arg(long, default_value_t = 1280)]
        width: u32,
        /// Picture height.
        #[arg(long, default_value_t = 720)]
        height: u32,
        /// Replay this TS file instead of encoding.
        #[arg(long)]
        file: Option<String>,
        /// ristbondsink config (TOML).
        #[arg(long, default_value = "")]
        braid_config: String,
        /// Adaptive bitrate MIN:MAX (kbit/s) from the sink's available-bitrate.
        #[arg(long)]
        adaptive: Option<String>,
        /// Share of available-bitrate kept free for overhead and repairs
        /// (ristbond_core::feedback::BitrateController headroom).
        #[arg(long, default_value_t = 0.2)]
        headroom: f64,
        /// Stop (before EOS) when standard input reaches end of file.
        #[arg(long)]
        stdin_eof: bool,
    },
    /// Receiver role (started by the suite; stops when stdin closes).
    Recv {
        /// Transport.
        #[arg(long)]
        system: System,
        /// RTP address to bind per link, comma-separated.
        #[arg(long, value_delimiter = ',')]
        listen: Vec<SocketAddr>,
        /// Latency / receive buffer (ms).
        #[arg(long, default_value_t = 1000)]
        latency_ms: u32,
        /// Stop when standard input reaches end of file (how the suite stops it).
        #[arg(long)]
        stdin_eof: bool,
        /// Stop after this many seconds.
        #[arg(long)]
        duration_s: Option<f64>,
    },
}

/// Initialise GStreamer and register the ristbond plugin from this binary (no
/// GST_PLUGIN_PATH needed).
pub fn init_gst() -> Result<()> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        gst::init().map_err(|e| e.to_string())?;
        gstristbond::plugin_register_static().map_err(|e| e.to_string())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

fn parse_adaptive(s: &str) -> Result<(u32, u32)> {
    let (a, b) = s
        .split_once(':')
        .context("--adaptive wants MIN:MAX (kbit/s)")?;
    let (min, max): (u32, u32) = (a.parse()?, b.parse()?);
    if min == 0 || min > max {
        bail!("--adaptive {s}: need 0 < MIN <= MAX");
    }
    Ok((min, max))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Send {
            system,
            dest,
            latency_ms,
            stats_interval_ms,
            bitrate_kbps,
            frames,
            width,
            height,
            file,
            braid_config,
            adaptive,
            headroom,
            stdin_eof,
        } => {
            if dest.is_empty() && system != System::SourceOnly {
                bail!("--dest is empty");
            }
            let source = match file {
                Some(f) => Source::File(f),
                None => Source::Live {
                    bitrate_kbps,
                    frames,
                    width,
                    height,
                },
            };
            send::run(&send::SendArgs {
                system,
                dests: dest,
                latency_ms,
                stats_interval_ms,
                braid_config,
                source,
                adaptive: adaptive.as_deref().map(parse_adaptive).transpose()?,
                headroom,
                linger_ms: latency_ms,
                stdin_eof,
            })
        }
        Cmd::Recv {
            system,
            listen,
            latency_ms,
            stdin_eof,
            duration_s,
        } => {
            if listen.is_empty() && system != System::SourceOnly {
                bail!("--listen is empty");
            }
            let duration = duration_s.map(std::time::Duration::from_secs_f64);
            recv::run(system, &listen, latency_ms, stdin_eof, duration)
        }
        Cmd::Suite {
            quick,
            smoke,
            doc,
            work_dir,
            port_base,
            traces_dir,
            only,
            systems,
        } => {
            init_gst()?;
            let sel = suite::Selection {
                scenarios: only,
                systems,
            };
            let mode = if smoke {
                suite::Mode::Smoke
            } else if quick {
                suite::Mode::Quick
            } else {
                suite::Mode::Full
            };
            let exe = std::env::current_exe()?;
            let emu_bin = exe.with_file_name("braid-linkemu");
            if !emu_bin.exists() {
                bail!(
                    "{} not found: build it with `cargo build -p braid-linkemu`",
                    emu_bin.display()
                );
            }
            std::fs::create_dir_all(&work_dir)?;
            let cwd = std::env::current_dir()?;
            let env = round::Env {
                bench_bin: exe,
                emu_bin,
                traces_dir: traces_dir.or_else(|| linkemu::find_traces_dir(&cwd)),
                work_dir: work_dir.canonicalize()?,
                port_base,
                picture: (1280, 720),
            };
            let results = suite::run(&env, mode, &sel, &mut |line| eprintln!("bench: {line}"))?;
            let name = format!(
                "results-{}.json",
                serde_json::to_value(mode)?.as_str().unwrap_or("run")
            );
            let path = env.work_dir.join(name);
            std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
            eprintln!("bench: results in {}", path.display());
            if mode == suite::Mode::Smoke {
                let (ok, lines) = suite::smoke_verdict(&results);
                for l in &lines {
                    println!("bench-smoke: {l}");
                }
                if !ok {
                    bail!(
                        "bench smoke failed (logs in {})",
                        env.work_dir.join("smoke").display()
                    );
                }
                println!("bench-smoke: OK ({:.0} s)", results.wall_s);
                return Ok(());
            }
            if !sel.is_all() {
                eprintln!(
                    "bench: partial run (--only/--systems): {} not rewritten",
                    doc.display()
                );
                return Ok(());
            }
            report::write_doc(&doc, &results, env.traces_dir.as_deref())?;
            eprintln!("bench: wrote {}", doc.display());
            Ok(())
        }
        Cmd::Render {
            results,
            doc,
            traces_dir,
        } => {
            let text = std::fs::read_to_string(&results)
                .with_context(|| format!("reading {}", results.display()))?;
            let res: suite::SuiteResults = serde_json::from_str(&text)?;
            let traces =
                traces_dir.or_else(|| linkemu::find_traces_dir(&std::env::current_dir().ok()?));
            report::write_doc(&doc, &res, traces.as_deref())?;
            Ok(())
        }
    }
}
