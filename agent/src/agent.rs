//! `braid-agent run`: load the config, start the stream manager and the control
//! task, stop gracefully on SIGTERM or SIGINT (ARCHITECTURE.md "Data flow on the
//! sender": CancellationToken + TaskTracker).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ALLOW_INSECURE_ENV};
use crate::control::{self, ControlParams};
use crate::device::{self, events::EventSink, DeviceOptions};
use crate::streams::{self, StreamsConfig};

/// Longest the graceful stop may take before the agent exits anyway.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// Capacity of the stream report channel.
const REPORTS: usize = 256;

/// How `braid-agent run` ended (without error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM/SIGINT: exit 0.
    Stopped,
    /// Stopped to be restarted into another binary (after `agent.update` with
    /// `restart_after`, or an update rollback): exit
    /// [`crate::update::RESTART_EXIT_CODE`] so that systemd starts the binary again.
    Restart,
}

/// Load the config file, apply the environment and `<state_dir>/remote-config.toml`
/// (keys set by `config.set`). Errors: the file or the overrides are invalid.
pub fn load_config(config_path: &Path) -> anyhow::Result<Config> {
    let mut config = Config::load(config_path)?;
    config.apply_env(|k| std::env::var(k).ok());
    config.apply_remote()?;
    Ok(config)
}

/// `braid-agent preflight`: what a freshly downloaded binary must pass before
/// `agent.update` installs it: the config loads, GStreamer initialises and our
/// elements are registered. Prints [`crate::update::PREFLIGHT_OK`] on success.
pub fn preflight(config_path: &Path) -> anyhow::Result<()> {
    let config = load_config(config_path)?;
    let allow_insecure = std::env::var(ALLOW_INSECURE_ENV).is_ok_and(|v| v == "1");
    control::connect::Endpoint::new(&config, allow_insecure)?;
    crate::media::init()?;
    for element in ["ristbondsink", "mpegtsmux"] {
        anyhow::ensure!(
            gst::ElementFactory::find(element).is_some(),
            "GStreamer element {element} is missing"
        );
    }
    println!(
        "{} version={}",
        crate::update::PREFLIGHT_OK,
        control::AGENT_VERSION
    );
    Ok(())
}

/// Run the agent with the config file at `config_path` until SIGTERM/SIGINT or a
/// restart request. Errors: config, GStreamer initialisation, or a control-plane
/// setting that can never work (`ws://` without `BRAID_ALLOW_INSECURE=1`, bad TLS
/// settings, no identity).
pub async fn run(config_path: &Path) -> anyhow::Result<Exit> {
    let config = load_config(config_path)?;
    let allow_insecure = std::env::var(ALLOW_INSECURE_ENV).is_ok_and(|v| v == "1");
    // Refuse unusable endpoints before starting anything.
    control::connect::Endpoint::new(&config, allow_insecure)?;
    crate::media::init()?;
    tracing::info!(
        config = %config_path.display(),
        state_dir = %config.agent.state_dir.display(),
        url = %config.control_plane.url,
        "braid-agent {} starting",
        control::AGENT_VERSION
    );

    // Events queued by a previous run are replayed from <state_dir>/events/.
    let events = crate::events::Events::open(&config.agent.state_dir);
    let update = crate::update::UpdateHandle::startup(&config, config_path, allow_insecure);
    if update.restart_requested() {
        tracing::warn!("update rolled back at start: exiting to be restarted");
        return Ok(Exit::Restart);
    }
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (reports_tx, reports_rx) = mpsc::channel(REPORTS);
    let streams = streams::spawn_with(
        StreamsConfig {
            media_dir: Some(config.agent.media_dir.clone()),
            source_lost_timeout: config
                .streams
                .source_lost_timeout_s
                .map(Duration::from_secs),
        },
        reports_tx.clone(),
        cancel.clone(),
        &tracker,
    );
    let device = device::spawn(
        DeviceOptions::new(&config.agent.media_dir),
        EventSink::new(events.tx()),
        Some(streams.clone()),
        cancel.clone(),
        &tracker,
    );
    let login_timeout = Duration::from_secs(config.update.login_timeout_s);
    let mut control = tracker.spawn(control::run(ControlParams {
        config,
        allow_insecure,
        streams,
        reports: reports_rx,
        events,
        cancel: cancel.clone(),
        update: update.clone(),
        device,
    }));
    tokio::spawn(update.clone().watch_trial(login_timeout));
    let restart = update.restart_token();
    tracker.close();

    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let early = tokio::select! {
        _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); None }
        _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); None }
        _ = restart.cancelled() => { tracing::info!("restart requested: stopping"); None }
        result = &mut control => Some(result),
    };
    cancel.cancel();
    if tokio::time::timeout(SHUTDOWN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("graceful stop took longer than {SHUTDOWN_TIMEOUT:?}; exiting");
    }
    let exit = if update.restart_requested() {
        Exit::Restart
    } else {
        Exit::Stopped
    };
    match early {
        Some(Ok(Ok(()))) | None => {
            tracing::info!(?exit, "stopped");
            Ok(exit)
        }
        Some(Ok(Err(e))) => Err(e.into()),
        Some(Err(e)) => Err(anyhow::anyhow!("control task failed: {e}")),
    }
}
