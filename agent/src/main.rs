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
    /// Check that this binary can run with CONFIG (config, GStreamer, elements);
    /// `agent.update` runs a downloaded binary this way before installing it.
    Preflight {
        /// TOML config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Before the service starts (systemd `ExecStartPre=-<binary>.prev
    /// update-guard`): count the starts of a freshly installed update and roll it
    /// back after 3 starts without a login. Exits 0 unless the state is unreadable.
    UpdateGuard {
        /// TOML config file (for `agent.state_dir`).
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
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
        Cmd::Run { config } => match runtime()?.block_on(braid_agent::agent::run(&config))? {
            braid_agent::agent::Exit::Stopped => Ok(0),
            braid_agent::agent::Exit::Restart => Ok(braid_agent::update::RESTART_EXIT_CODE),
        },
        Cmd::Preflight { config } => {
            braid_agent::agent::preflight(&config)?;
            Ok(0)
        }
        Cmd::UpdateGuard { config } => {
            let config = braid_agent::agent::load_config(&config)?;
            let outcome = braid_agent::update::guard(&config.agent.state_dir)?;
            tracing::info!(?outcome, "update-guard");
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
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
