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

/// Run the agent with the config file at `config_path` until SIGTERM/SIGINT.
/// Errors: config (file, line and fix), GStreamer initialisation, or a
/// control-plane setting that can never work (`ws://` without
/// `BRAID_ALLOW_INSECURE=1`, bad TLS settings, no identity).
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    run_with(config_path, RunOptions::default()).await
}

/// [`run`] with options. Under systemd (`NOTIFY_SOCKET`) it reports `READY=1`
/// after the first connect attempt, `STATUS=` lines, `WATCHDOG=1` when the
/// unit has `WatchdogSec=`, and `STOPPING=1` ([`crate::notify`]).
pub async fn run_with(config_path: &Path, options: RunOptions) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let Checked {
        config,
        allow_insecure,
        ..
    } = if options.wait_for_config {
        tokio::select! {
            checked = service::wait_for_config(config_path) => checked,
            _ = sigterm.recv() => { notify::stopping(); tracing::info!("SIGTERM: stopping"); return Ok(()) }
            _ = sigint.recv() => { notify::stopping(); tracing::info!("SIGINT: stopping"); return Ok(()) }
        }
    } else {
        service::check(config_path)?
    };
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
    let mut control = tracker.spawn(control::run(ControlParams {
        config,
        allow_insecure,
        streams,
        reports: reports_rx,
        events,
        cancel: cancel.clone(),
        device,
        state: state_tx,
    }));
    tracker.close();

    let early = tokio::select! {
        _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); None }
        _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); None }
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
    match early {
        Some(Ok(Ok(()))) | None => {
            tracing::info!("stopped");
            Ok(())
        }
        Some(Ok(Err(e))) => Err(e.into()),
        Some(Err(e)) => Err(anyhow::anyhow!("control task failed: {e}")),
    }
}
