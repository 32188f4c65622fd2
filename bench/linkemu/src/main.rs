//! `braid-linkemu`: emulate one or more links between a RIST sender and receiver.
//!
//! ```text
//! braid-linkemu --config links.toml [--duration-s 60] [--report out.json]
//! braid-linkemu --listen 127.0.0.1:20000 --forward 127.0.0.1:21000 \
//!     --rate-bps 5000000 --delay-ms 20 --loss 0.01 --event 20000:down --event 40000:up
//! ```
//!
//! Prints one JSON line `{"event":"ready",...}` once every socket is bound (addresses,
//! epoch), then runs until SIGINT/SIGTERM, `--duration-s`, or (with `--stdin-eof`) the
//! end of its standard input, and prints `{"event":"report",...}`: per-link counters
//! (received, enqueued, dropped_queue, dropped_loss, dropped_down, delivered, bytes) and
//! the emulator's own CPU time. `--report FILE` also writes the report there.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use clap::Parser;
use linkemu::config::{EmulatorConfig, EventConfig, LinkConfig, ReverseConfig};
use linkemu::loss::GilbertElliottConfig;
use serde_json::json;

/// Userspace trace-driven UDP link emulator (RTP P/P+1 relay per link).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML file with `[[link]]` tables (see the crate documentation).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration_s: Option<f64>,
    /// Stop when standard input reaches end of file (for a parent process).
    #[arg(long)]
    stdin_eof: bool,
    /// Also write the exit report (JSON) to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Base seed of the loss and jitter generators.
    #[arg(long)]
    seed: Option<u64>,
    /// One link from the command line: sender-facing RTP address (even port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Receiver RTP address (even port).
    #[arg(long, requires = "listen")]
    forward: Option<SocketAddr>,
    /// Fixed capacity, bit/s.
    #[arg(long, requires = "listen")]
    rate_bps: Option<u64>,
    /// Mahimahi trace file.
    #[arg(long, requires = "listen")]
    trace: Option<PathBuf>,
    /// Start offset into the trace, ms.
    #[arg(long, default_value_t = 0, requires = "trace")]
    trace_offset_ms: u64,
    /// One-way delay, ms (both directions unless --reverse-delay-ms).
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Jitter, ms (forward).
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Let jitter reorder packets.
    #[arg(long)]
    reorder: bool,
    /// Independent loss probability, forward.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Gilbert-Elliott loss as MEAN_LOSS:MEAN_BURST (e.g. 0.02:4), forward.
    #[arg(long)]
    ge: Option<String>,
    /// Queue size, ms of the rate.
    #[arg(long)]
    queue_ms: Option<u64>,
    /// Queue size, bytes.
    #[arg(long)]
    queue_bytes: Option<u64>,
    /// One-way delay of the reverse direction, ms.
    #[arg(long)]
    reverse_delay_ms: Option<f64>,
    /// Independent loss probability of the reverse direction.
    #[arg(long, default_value_t = 0.0)]
    reverse_loss: f64,
    /// Event AT_MS:ACTION[=VALUE] (down, up, rate=BPS, scale=X, loss=P, delay=MS); repeatable.
    #[arg(long = "event")]
    events: Vec<String>,
}

fn cli_link(cli: &Cli) -> Result<Option<LinkConfig>> {
    let Some(listen) = cli.listen else {
        return Ok(None);
    };
    let forward = cli.forward.context("--listen needs --forward")?;
    let gilbert_elliott = match &cli.ge {
        None => None,
        Some(s) => {
            let (l, b) = s
                .split_once(':')
                .context("--ge wants MEAN_LOSS:MEAN_BURST")?;
            Some(GilbertElliottConfig::Mean {
                mean_loss: l.parse().context("--ge mean loss")?,
                mean_burst: b.parse().context("--ge mean burst")?,
            })
        }
    };
    let events = cli
        .events
        .iter()
        .map(|e| EventConfig::parse_cli(e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(LinkConfig {
        name: Some("cli".into()),
        listen,
        forward,
        rate_bps: cli.rate_bps,
        trace: cli.trace.clone(),
        trace_offset_ms: cli.trace_offset_ms,
        trace_scale: 1.0,
        delay_ms: cli.delay_ms,
        jitter_ms: cli.jitter_ms,
        reorder: cli.reorder,
        loss: cli.loss,
        gilbert_elliott,
        queue_bytes: cli.queue_bytes,
        queue_ms: cli.queue_ms,
        reverse: ReverseConfig {
            delay_ms: cli.reverse_delay_ms,
            loss: cli.reverse_loss,
            gilbert_elliott: None,
        },
        events,
        bind_back: None,
        seed: None,
    }))
}

async fn stop_signal(duration: Option<Duration>, stdin_eof: bool) {
    use tokio::io::AsyncReadExt;
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let timeout = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let eof = async {
        if !stdin_eof {
            return std::future::pending().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = timeout => {}
        _ = eof => {}
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut config = match &cli.config {
        Some(path) => EmulatorConfig::load(path)?,
        None => EmulatorConfig::default(),
    };
    if let Some(seed) = cli.seed {
        config.seed = seed;
    }
    if let Some(link) = cli_link(&cli)? {
        config.links.push(link);
    }
    let specs = config.resolve()?;
    let bound = linkemu::relay::bind(specs)?;
    let epoch = (Instant::now(), SystemTime::now());
    let epoch_unix_ms = epoch
        .1
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let ready = bound.ready_info(epoch_unix_ms);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let duration = cli.duration_s.map(Duration::from_secs_f64);
    let report = local.block_on(&runtime, async {
        let mut line = serde_json::to_value(&ready)?;
        line["event"] = json!("ready");
        // A parent that stopped reading is no reason to stop relaying.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|_| out.flush());
        anyhow::Ok(
            bound
                .run(epoch, stop_signal(duration, cli.stdin_eof))
                .await?,
        )
    })?;
    let mut line = serde_json::to_value(&report)?;
    line["event"] = json!("report");
    if let Some(path) = &cli.report {
        std::fs::write(path, serde_json::to_string_pretty(&line)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let _ = writeln!(std::io::stdout().lock(), "{line}");
    // The stdin reader may still block in its helper thread; do not wait for it.
    runtime.shutdown_background();
    Ok(())
}
