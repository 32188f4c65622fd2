//! What the machine has: element factories, capture devices and their modes, sound
//! cards, media files. [`StreamPlan::from_start_on`](crate::StreamPlan::from_start_on)
//! asks a [`Machine`]; [`SystemMachine`] answers for this machine, tests answer with
//! recorded device lists and an invented set of encoders.

use std::path::Path;
use std::time::Duration;

use crate::v4l2::V4l2Mode;

/// What a media file holds, as far as a plan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaInfo {
    /// The file has a video track.
    pub has_video: bool,
    /// The file has an audio track.
    pub has_audio: bool,
    /// Duration, when known.
    pub duration: Option<Duration>,
}

/// The questions a plan asks about the machine it runs on.
pub trait Machine {
    /// Whether a GStreamer element factory (`x264enc`, `mpph264enc`…) exists.
    fn has_element(&self, factory: &str) -> bool;
    /// Whether a device node or file exists.
    fn exists(&self, path: &Path) -> bool;
    /// The capture modes of a V4L2 device. Errors: cannot open it, nothing usable.
    fn v4l2_modes(&self, device: &Path) -> Result<Vec<V4l2Mode>, String>;
    /// ALSA device of the sound card on the same USB device as a V4L2 node.
    fn sibling_audio(&self, device: &Path) -> Option<String>;
    /// Tracks of a media file. Errors: not a media file GStreamer can read.
    fn media_info(&self, path: &Path) -> Result<MediaInfo, String>;
}

/// This machine: the GStreamer registry, `v4l2src` probing, `/sys`, the
/// discoverer (GStreamer pbutils). Initialises GStreamer (and registers Braid's
/// static elements) on first use.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemMachine;

/// How long the discoverer may take on one media file.
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(10);

impl Machine for SystemMachine {
    fn has_element(&self, factory: &str) -> bool {
        crate::register_elements().is_ok() && gst::ElementFactory::find(factory).is_some()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn v4l2_modes(&self, device: &Path) -> Result<Vec<V4l2Mode>, String> {
        crate::register_elements().map_err(|e| e.to_string())?;
        crate::v4l2::probe_modes(device)
    }

    fn sibling_audio(&self, device: &Path) -> Option<String> {
        crate::sysfs::sibling_sound_card(Path::new("/sys"), device)
    }

    fn media_info(&self, path: &Path) -> Result<MediaInfo, String> {
        crate::register_elements().map_err(|e| e.to_string())?;
        let timeout = gst::ClockTime::from_nseconds(DISCOVER_TIMEOUT.as_nanos() as u64);
        let discoverer =
            gst_pbutils::Discoverer::new(timeout).map_err(|e| format!("no discoverer: {e}"))?;
        let uri = gst::glib::filename_to_uri(path, None)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let info = discoverer
            .discover_uri(&uri)
            .map_err(|e| format!("{} is not a readable media file: {e}", path.display()))?;
        Ok(MediaInfo {
            has_video: !info.video_streams().is_empty(),
            has_audio: !info.audio_streams().is_empty(),
            duration: info.duration().map(|d| Duration::from_nanos(d.nseconds())),
        })
    }
}
