//! Device status collectors (ARCHITECTURE.md "Device status"): everything in a
//! `device.status` payload (PROTOCOL.md §4) except the stream state, which the
//! control task knows.
//!
//! Not yet: ModemManager figures (carrier, signal), V4L2 capability enumeration,
//! hotplug-triggered reports.

pub mod inputs;
pub mod net;
pub mod system;

use std::path::{Path, PathBuf};

use braid_protocol::device::{DeviceStatus, StreamState};

use inputs::SavedMediaScanner;
use system::SystemSampler;

/// Collects `device.status` payloads; keeps CPU and media-duration state between
/// calls. Blocking (sysfs reads, media probing): use from a blocking thread.
pub struct StatusCollector {
    media_dir: PathBuf,
    system: SystemSampler,
    media: SavedMediaScanner,
}

impl StatusCollector {
    /// A collector listing `media_dir` in `saved_media`.
    pub fn new(media_dir: &Path) -> Self {
        Self {
            media_dir: media_dir.to_owned(),
            system: SystemSampler::new(),
            media: SavedMediaScanner::default(),
        }
    }

    /// One `device.status` payload. `busy_inputs` are the input devices live
    /// streams use (`test`, `/dev/video0`); `stream_state` is the aggregate state.
    pub fn collect(&mut self, stream_state: StreamState, busy_inputs: &[String]) -> DeviceStatus {
        let figures = self.system.sample();
        DeviceStatus {
            network_interfaces: net::interfaces(
                Path::new(net::SYS_CLASS_NET),
                &net::ipv4_addresses(),
            ),
            media_inputs: inputs::media_inputs(Path::new(inputs::SYS_CLASS_V4L), busy_inputs),
            saved_media: self.media.scan(&self.media_dir),
            stream_state,
            cpu_percent: figures.cpu_percent,
            mem_used_mb: figures.mem_used_mb,
            uptime_s: figures.uptime_s,
            temperature_c: figures.temperature_c,
        }
    }
}
