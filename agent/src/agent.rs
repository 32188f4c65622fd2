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

/// Run the agent with the config file at `config_path` until SIGTERM/SIGINT.
/// Errors: config, GStreamer initialisation, or a control-plane setting that can
/// never work (`ws://` without `BRAID_ALLOW_INSECURE=1`, bad TLS settings, no
/// identity).
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let mut config = Config::load(config_path)?;
    config.apply_env(|k| std::env::var(k).ok());
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
        EventSink::new(reports_tx.clone()),
        Some(streams.clone()),
        cancel.clone(),
        &tracker,
    );
    let mut control = tracker.spawn(control::run(ControlParams {
        config,
        allow_insecure,
        streams,
        reports: reports_rx,
        cancel: cancel.clone(),
        device,
    }));
    tracker.close();

    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let early = tokio::select! {
        _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); None }
        _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); None }
        result = &mut control => Some(result),
    };
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
