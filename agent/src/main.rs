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
    /// Print one `device.status` payload (JSON) as the agent would send it, after
    /// watching ModemManager for a moment; with `--v4l2-record DIR`, also write the
    /// V4L2 answers of every `/dev/videoN` as JSON recordings (for a field report or
    /// a test fixture).
    Devices {
        /// `agent.media_dir` to list.
        #[arg(long, default_value = "/var/lib/braid/media")]
        media_dir: PathBuf,
        /// Write `videoN.json` recordings here.
        #[arg(long)]
        v4l2_record: Option<PathBuf>,
    },
    /// Decode a received MPEG-TS file and check its continuity counters.
    VerifyTs {
        /// The TS file.
        file: PathBuf,
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
        Cmd::Devices {
            media_dir,
            v4l2_record,
        } => {
            braid_agent::media::init()?;
            let json = runtime()?.block_on(braid_agent::device::report_once(&media_dir))?;
            println!("{json}");
            if let Some(dir) = v4l2_record {
                for file in braid_agent::device::v4l::record_all(&dir)? {
                    eprintln!("recorded {}", file.display());
                }
            }
            Ok(0)
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
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
