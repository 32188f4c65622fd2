//! `braid-agent`: the field sender daemon (`run`), the development control plane
//! (`devplane`) and a received-TS checker (`verify-ts`); `check-config` validates
//! the config without connecting, `receive` runs a platform-side receiver.

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
        /// When the config cannot be used yet (no URL or enrollment token, a
        /// typo), report why and re-read it every 2 s instead of exiting (the
        /// systemd unit uses this).
        #[arg(long)]
        wait_for_config: bool,
    },
    /// Check the config file without connecting: syntax, keys, values, TLS
    /// settings, and that the agent can log in (credentials or enrollment
    /// token). Prints `config OK: …` or the error with file, line and fix.
    CheckConfig {
        /// TOML config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Receive a bonded RIST stream (platform side): `ristbondsrc` into UDP,
    /// SRT or a file, as described by a receiver config (systemd:
    /// braid-receiver@NAME.service reads /etc/braid/receiver-NAME.conf).
    Receive {
        /// Receiver config file (TOML, see packaging/receiver.conf).
        #[arg(long)]
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
        Cmd::Run {
            config,
            wait_for_config,
        } => {
            let options = braid_agent::agent::RunOptions { wait_for_config };
            runtime()?.block_on(braid_agent::agent::run_with(&config, options))?;
            Ok(0)
        }
        Cmd::CheckConfig { config } => match braid_agent::service::check(&config) {
            Ok(checked) => {
                println!("{}", checked.summary(&config));
                Ok(0)
            }
            Err(e) => {
                // One line on stderr (no log line as well): a person reads this.
                eprintln!("braid-agent: error: {e:#}");
                Ok(1)
            }
        },
        Cmd::Receive { config } => {
            runtime()?.block_on(braid_agent::receive::run(&config))?;
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
