//! `braid-agent run`: load the config, start the stream manager and the control
//! task, stop gracefully on SIGTERM or SIGINT (ARCHITECTURE.md "Data flow on the
//! sender": CancellationToken + TaskTracker).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{self, ConnectionState, ControlParams};
use crate::device::{self, events::EventSink, DeviceOptions};
use crate::notify;
use crate::service::{self, Checked};
use crate::streams::{self, StreamsConfig};

/// Longest the graceful stop may take before the agent exits anyway.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// Capacity of the stream report channel.
const REPORTS: usize = 256;

/// Options of `braid-agent run`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Instead of exiting on an unusable config, wait for it to be fixed
    /// ([`service::wait_for_config`]; the systemd unit uses this).
    pub wait_for_config: bool,
}

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

/// `braid-agent preflight`: what a freshly downloaded binary must pass before
/// `agent.update` installs it: the config loads, GStreamer initialises and our
/// elements are registered. Prints [`crate::update::PREFLIGHT_OK`] on success.
pub fn preflight(config_path: &Path) -> anyhow::Result<()> {
    service::check(config_path)?;
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
/// restart request. Errors: config (file, line and fix), or a control-plane
/// setting that can never work (`ws://` without `BRAID_ALLOW_INSECURE=1`, bad TLS
/// settings, no identity).
pub async fn run(config_path: &Path) -> anyhow::Result<Exit> {
    run_with(config_path, RunOptions::default()).await
}

/// [`run`] with options. Under systemd (`NOTIFY_SOCKET`) it reports `READY=1`
/// after the first connect attempt, `STATUS=` lines, `WATCHDOG=1` when the
/// unit has `WatchdogSec=`, and `STOPPING=1` ([`crate::notify`]).
pub async fn run_with(config_path: &Path, options: RunOptions) -> anyhow::Result<Exit> {
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let Checked {
        config,
        allow_insecure,
        ..
    } = if options.wait_for_config {
        tokio::select! {
            checked = service::wait_for_config(config_path) => checked,
            _ = sigterm.recv() => { notify::stopping(); tracing::info!("SIGTERM: stopping"); return Ok(Exit::Stopped) }
            _ = sigint.recv() => { notify::stopping(); tracing::info!("SIGINT: stopping"); return Ok(Exit::Stopped) }
        }
    } else {
        service::check(config_path)?
    };
    // GStreamer is initialised at the first stream.start (crate::media::init), not
    // here: an idle sender does not carry the plugin registry in its heap.
    tracing::info!(
        config = %config_path.display(),
        state_dir = %config.agent.state_dir.display(),
        url = %config.control_plane.url,
        "braid-agent {} starting",
        control::AGENT_VERSION
    );

    // auth.login carries the media capabilities: find them (a helper process
    // loading GStreamer's registry) before the first connect, off the async workers.
    let capabilities = tokio::task::spawn_blocking(control::capabilities)
        .await
        .context("finding the media capabilities")?;
    tracing::info!(?capabilities, "capabilities");

    // Events queued by a previous run are replayed from <state_dir>/events/.
    let events = crate::events::Events::open(&config.agent.state_dir);
    let update = crate::update::UpdateHandle::startup(&config, config_path, allow_insecure);
    if update.restart_requested() {
        tracing::warn!("update rolled back at start: exiting to be restarted");
        return Ok(Exit::Restart);
    }
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (state_tx, state_rx) = watch::channel(ConnectionState::Starting);
    tracker.spawn(service::report(state_rx, cancel.clone()));
    notify::spawn_watchdog(&tracker, cancel.clone());
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
        state: state_tx,
    }));
    tokio::spawn(update.clone().watch_trial(login_timeout));
    let restart = update.restart_token();
    tracker.close();

    let early = tokio::select! {
        _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); None }
        _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); None }
        _ = restart.cancelled() => { tracing::info!("restart requested: stopping"); None }
        result = &mut control => Some(result),
    };
    notify::stopping();
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
