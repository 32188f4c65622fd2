//! Device status (ARCHITECTURE.md "Device status"): everything in a
//! `device.status` payload (PROTOCOL.md §4) except the stream state, which the
//! control task knows, and the watchers that make it timely.
//!
//! - [`modem`]: ModemManager over the system D-Bus (zbus typed proxies).
//! - [`net`]: network interfaces (`/sys/class/net`, `getifaddrs`), rtnetlink watch.
//! - [`v4l`]: V4L2 capture devices and their modes, `/dev` hotplug watch.
//! - [`media`]: the saved media folder (GStreamer discoverer).
//! - [`system`]: CPU, memory, uptime, SoC temperature.
//! - [`links`]: a live stream's links follow their modems.
//! - [`notify`]: change → `device.status` within 1 s, rate-limited.
//! - [`events`]: where device events (`modem`, `device`, `link`) are raised.
//!
//! [`spawn`] starts the watchers and returns a [`DeviceHandle`]: the
//! [`StatusCollector`] the control task calls for each report and the change
//! receiver it waits on.

pub mod events;
pub mod inputs;
pub mod links;
pub mod media;
pub mod modem;
pub mod net;
pub mod notify;
pub mod system;
pub mod v4l;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use braid_protocol::device::{DeviceStatus, ModemManagerState, StreamState};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use events::EventSink;
use media::{MediaProbe, SavedMediaScanner};
use modem::{ManagerStatus, ModemSnapshot, ModemWatcher};
use notify::ChangeNotifier;
use system::SystemSampler;
use v4l::CaptureLister;

use crate::streams::StreamsHandle;

/// Filesystem roots the collectors read; tests point them at fakes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysPaths {
    /// `/sys/class/net`.
    pub sys_class_net: PathBuf,
    /// `/sys/class/video4linux`.
    pub sys_class_v4l: PathBuf,
    /// `/dev` (V4L2 nodes are `<dev>/videoN`).
    pub dev: PathBuf,
    /// `/proc` (who holds a capture device).
    pub proc: PathBuf,
}

impl Default for SysPaths {
    fn default() -> Self {
        Self {
            sys_class_net: net::SYS_CLASS_NET.into(),
            sys_class_v4l: v4l::SYS_CLASS_V4L.into(),
            dev: v4l::DEV_DIR.into(),
            proc: "/proc".into(),
        }
    }
}

/// Collects `device.status` payloads; keeps CPU, media-probe and capture-device
/// state between calls, and reads the latest modem snapshot. Blocking (sysfs
/// reads, device and media probing): use from a blocking thread.
pub struct StatusCollector {
    media_dir: PathBuf,
    paths: SysPaths,
    system: SystemSampler,
    media: SavedMediaScanner,
    capture: CaptureLister,
    modems: watch::Receiver<ModemSnapshot>,
}

impl StatusCollector {
    /// A collector listing `media_dir` in `saved_media`, reading `paths`, with the
    /// modems of `modems`.
    pub fn new(media_dir: &Path, paths: SysPaths, modems: watch::Receiver<ModemSnapshot>) -> Self {
        Self::with_probe(media_dir, paths, modems, MediaProbe::InProcess)
    }

    /// As [`StatusCollector::new`], probing saved media as `probe` says.
    pub fn with_probe(
        media_dir: &Path,
        paths: SysPaths,
        modems: watch::Receiver<ModemSnapshot>,
        probe: MediaProbe,
    ) -> Self {
        Self {
            media_dir: media_dir.to_owned(),
            paths,
            system: SystemSampler::new(),
            media: SavedMediaScanner::new(probe),
            capture: CaptureLister::default(),
            modems,
        }
    }

    /// One `device.status` payload. `busy_inputs` are the input devices live
    /// streams use (`test`, `/dev/video0`); `stream_state` is the aggregate state.
    pub fn collect(&mut self, stream_state: StreamState, busy_inputs: &[String]) -> DeviceStatus {
        let figures = self.system.sample();
        let snapshot = self.modems.borrow().clone();
        let mut network_interfaces = net::interfaces(&self.paths.sys_class_net, &net::addresses());
        net::join_modems(&mut network_interfaces, &snapshot);
        let mut media_inputs = vec![inputs::test_pattern(busy_inputs)];
        media_inputs.extend(self.capture.list(
            &self.paths.sys_class_v4l,
            &self.paths.dev,
            &self.paths.proc,
            busy_inputs,
        ));
        DeviceStatus {
            network_interfaces,
            media_inputs,
            saved_media: self.media.scan(&self.media_dir),
            stream_state,
            cpu_percent: figures.cpu_percent,
            mem_used_mb: figures.mem_used_mb,
            uptime_s: figures.uptime_s,
            temperature_c: figures.temperature_c,
            modem_manager: match snapshot.manager {
                ManagerStatus::Unknown => None,
                ManagerStatus::Running => Some(ModemManagerState::Running),
                ManagerStatus::Absent(_) => Some(ModemManagerState::Absent),
            },
        }
    }
}

/// What [`spawn`] needs.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    /// `agent.media_dir`.
    pub media_dir: PathBuf,
    /// Filesystem roots (real ones by default).
    pub paths: SysPaths,
    /// Follow ModemManager on the system bus (off: no modem figures, no modem
    /// events; `modem_manager` stays absent from `device.status`).
    pub modems: bool,
    /// Where saved media are probed.
    pub media_probe: MediaProbe,
}

impl DeviceOptions {
    /// The real system, modems on, listing `media_dir`; saved media are probed by
    /// a helper process when this is the `braid-agent` binary (see [`media`]).
    pub fn new(media_dir: &Path) -> Self {
        let helper = crate::helper_exe();
        Self {
            media_dir: media_dir.to_owned(),
            paths: SysPaths::default(),
            modems: true,
            media_probe: helper.map_or(MediaProbe::InProcess, MediaProbe::Helper),
        }
    }
}

/// The device side as the control task sees it; cheap to clone.
#[derive(Clone)]
pub struct DeviceHandle {
    collector: Arc<Mutex<StatusCollector>>,
    changes: ChangeNotifier,
    modems: watch::Receiver<ModemSnapshot>,
}

impl DeviceHandle {
    /// The collector (lock it on a blocking thread; collection blocks).
    pub fn collector(&self) -> Arc<Mutex<StatusCollector>> {
        self.collector.clone()
    }

    /// Moves each time `device.status` should be sent now (PROTOCOL.md §4 "within
    /// 1 s of a change"); rate-limited by [`notify`].
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The latest modem snapshot, and its changes.
    pub fn modems(&self) -> watch::Receiver<ModemSnapshot> {
        self.modems.clone()
    }
}

/// Start the device watchers — ModemManager (when `options.modems`), rtnetlink,
/// `/dev` hotplug, and the link guard when `streams` is given — tracked by
/// `tracker` and stopped by `cancel`. Events go to `events`. Must be called on a
/// tokio runtime.
pub fn spawn(
    options: DeviceOptions,
    events: EventSink,
    streams: Option<StreamsHandle>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> DeviceHandle {
    let changes = ChangeNotifier::spawn(cancel.clone());
    let (modems_tx, modems_rx) = watch::channel(ModemSnapshot::default());
    if options.modems {
        let watcher = ModemWatcher::new(
            modems_tx,
            changes.clone(),
            events.clone(),
            options.paths.sys_class_net.clone(),
        );
        tracker.spawn(watcher.run(cancel.clone()));
    }
    tracker.spawn(net::watch(
        options.paths.sys_class_net.clone(),
        changes.clone(),
        cancel.clone(),
    ));
    tracker.spawn(v4l::watch(
        options.paths.sys_class_v4l.clone(),
        options.paths.dev.clone(),
        changes.clone(),
        events.clone(),
        cancel.clone(),
    ));
    if let Some(streams) = streams {
        tracker.spawn(links::run(streams, modems_rx.clone(), events, cancel));
    }
    let collector = StatusCollector::with_probe(
        &options.media_dir,
        options.paths,
        modems_rx.clone(),
        options.media_probe,
    );
    DeviceHandle {
        collector: Arc::new(Mutex::new(collector)),
        changes,
        modems: modems_rx,
    }
}

/// One `device.status` payload of this machine as pretty JSON (`braid-agent
/// devices`): the watchers run for 1.5 s first so that ModemManager's modems are
/// in it. Errors: JSON encoding only.
pub async fn report_once(media_dir: &Path) -> anyhow::Result<String> {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let handle = spawn(
        DeviceOptions::new(media_dir),
        EventSink::log_only(),
        None,
        cancel.clone(),
        &tracker,
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let collector = handle.collector();
    let status = tokio::task::spawn_blocking(move || {
        collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .collect(StreamState::Idle, &[])
    })
    .await?;
    cancel.cancel();
    tracker.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), tracker.wait()).await;
    Ok(serde_json::to_string_pretty(&status)?)
}
