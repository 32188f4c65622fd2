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
    /// First, an update installed by `agent.update` under the state directory
    /// (`[update] binary_path`) is started in this process's place (exec, same
    /// arguments) unless it is superseded by a later package install.
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
    /// Check that this binary can run with CONFIG (config, GStreamer, elements);
    /// `agent.update` runs a downloaded binary this way before installing it.
    Preflight {
        /// TOML config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Before the service starts (systemd `ExecStartPre=-<binary_path>.prev
    /// update-guard`, packaged: `/var/lib/braid/bin/braid-agent.prev`): count the
    /// starts of a freshly installed update and roll it back after 3 starts
    /// without a login. Exits 0 unless the config or the state is unreadable.
    UpdateGuard {
        /// TOML config file (for `agent.state_dir`).
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Delete the update `agent.update` installed (`[update] binary_path`, its
    /// `.prev` and `.base`, a pending update marker) so that the packaged binary
    /// runs: the package's postinst runs this after every install or upgrade
    /// (a package install supersedes an earlier remote update).
    #[command(hide = true)]
    UpdateSupersede {
        /// TOML config file (for `agent.state_dir`, `update.binary_path`).
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
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
    /// Print the media capabilities of this machine (encoders, audio codecs, source
    /// fallback) as a JSON array of strings (the agent's capabilities helper).
    #[command(hide = true)]
    Capabilities,
    /// Probe one saved media file with GStreamer's discoverer and print
    /// `{"duration_s":N}` or `{"error":"…"}` (the agent's probe helper).
    #[command(hide = true)]
    ProbeMedia {
        /// The file.
        file: PathBuf,
    },
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
        Cmd::Run {
            config,
            wait_for_config,
        } => {
            // A packaged install runs the update that agent.update put in the
            // state directory: exec it (does not return) or say why not.
            braid_agent::update::launch::launch(&config);
            let options = braid_agent::agent::RunOptions { wait_for_config };
            match runtime()?.block_on(braid_agent::agent::run_with(&config, options))? {
                braid_agent::agent::Exit::Stopped => Ok(0),
                braid_agent::agent::Exit::Restart => Ok(braid_agent::update::RESTART_EXIT_CODE),
            }
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
        Cmd::Preflight { config } => {
            braid_agent::agent::preflight(&config)?;
            Ok(0)
        }
        Cmd::UpdateGuard { config } => {
            // Only the state dir matters: read it leniently, so that the guard
            // works with any config the new binary may trip over.
            let paths = braid_agent::update::launch::Paths::read(
                &config,
                std::env::var_os(braid_agent::config::STATE_DIR_ENV).as_deref(),
            )
            .map_err(anyhow::Error::msg)?;
            let outcome = braid_agent::update::guard(&paths.state_dir)?;
            tracing::info!(?outcome, "update-guard");
            Ok(0)
        }
        Cmd::UpdateSupersede { config } => {
            let paths = braid_agent::update::launch::Paths::read(
                &config,
                std::env::var_os(braid_agent::config::STATE_DIR_ENV).as_deref(),
            )
            .map_err(anyhow::Error::msg)?;
            let had = paths.binary_path.exists();
            braid_agent::update::launch::remove_superseded(&paths)
                .map_err(|e| anyhow::anyhow!("removing {}: {e}", paths.binary_path.display()))?;
            if had {
                println!(
                    "braid-agent: removed the remote update {} (superseded by the package)",
                    paths.binary_path.display()
                );
            }
            Ok(0)
        }
        Cmd::Receive { config } => {
            runtime()?.block_on(braid_agent::receive::run(&config))?;
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
        Cmd::Capabilities => {
            braid_agent::media::init()?;
            println!(
                "{}",
                serde_json::to_string(&braid_pipelines::capabilities())?
            );
            Ok(0)
        }
        Cmd::ProbeMedia { file } => {
            braid_agent::media::init()?;
            println!("{}", braid_agent::device::media::probe_answer(&file));
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
