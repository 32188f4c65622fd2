//! `braid-agent`: the field sender daemon (`run`), the development control plane
//! (`devplane`) and a received-TS checker (`verify-ts`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use braid_agent::config::DEFAULT_CONFIG_PATH;

/// Braid field video sender agent.
#[derive(Debug, Parser)]
#[command(name = "braid-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the agent: connect to the control plane and carry out its requests.
    Run {
        /// TOML config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Run a development control plane (WSS, self-signed, pinned) with an
    /// in-process receiver; prints `demo: OK …` or `demo: FAIL …` per stream.
    Devplane(braid_agent::devplane::Options),
    /// Decode a received MPEG-TS file and check its continuity counters.
    VerifyTs {
        /// The TS file.
        file: PathBuf,
    },
    /// Print the pipeline a `stream.start` (PROTOCOL.md §5) would run on this
    /// machine, as a `gst-launch-1.0` command line.
    Pipeline {
        /// JSON file with the `stream.start` payload (or a whole message with a
        /// `payload`).
        #[arg(long, value_name = "STREAM_JSON")]
        print: PathBuf,
        /// Media folder `source.path` must lie in (default: `agent.media_dir` of
        /// `--config`, else /var/lib/braid/media).
        #[arg(long)]
        media_dir: Option<PathBuf>,
        /// Agent config to take `agent.media_dir` from.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("BRAID_LOG")
                .or_else(|_| EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("braid-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Cmd) -> anyhow::Result<u8> {
    match command {
        Cmd::Run { config } => {
            runtime()?.block_on(braid_agent::agent::run(&config))?;
            Ok(0)
        }
        Cmd::Devplane(opts) => {
            let code = runtime()?.block_on(braid_agent::devplane::run(opts))?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Cmd::VerifyTs { file } => {
            braid_agent::media::init()?;
            let v = braid_agent::media::verify_ts(&file)?;
            println!(
                "verify-ts: frames={} cc_errors={} ts_packets={} bytes={} file={}",
                v.frames,
                v.cc_errors,
                v.ts_packets,
                v.bytes,
                file.display()
            );
            Ok(if v.cc_errors == 0 { 0 } else { 1 })
        }
        Cmd::Pipeline {
            print,
            media_dir,
            config,
        } => print_pipeline(&print, media_dir, config),
    }
}

/// `braid-agent pipeline --print`: exit 0 with the line on stdout, 2 when the
/// request is refused (the field and reason on stderr).
fn print_pipeline(
    file: &std::path::Path,
    media_dir: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<u8> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    if let Some(payload) = value.get_mut("payload") {
        value = payload.take();
    }
    let start: braid_protocol::stream::StreamStart = match serde_path_to_error::deserialize(value) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("braid-agent: invalid {}: {}", e.path(), e.inner());
            return Ok(2);
        }
    };
    let media_dir = match (media_dir, config) {
        (Some(dir), _) => dir,
        (None, Some(config)) => braid_agent::config::Config::load(&config)?.agent.media_dir,
        (None, None) => PathBuf::from("/var/lib/braid/media"),
    };
    braid_agent::media::init()?;
    match braid_pipelines::StreamPlan::from_start(&start, Some(&media_dir)) {
        Ok(plan) => {
            println!("{}", plan.launch_line());
            Ok(0)
        }
        Err(e) => {
            eprintln!("braid-agent: {e}");
            Ok(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
