//! `device.status.saved_media` (PROTOCOL.md §4): the files of the configured media
//! folder (`agent.media_dir`) with size and duration (GStreamer's discoverer,
//! `gst_pbutils::Discoverer`, probed once per file version). A file that cannot be
//! read or is not media is listed with an `error`; nothing here fails the report.
//!
//! In the daemon the probe runs in a short-lived helper process (`braid-agent
//! probe-media FILE`, [`MediaProbe::Helper`]): the discoverer's typefinding and
//! autoplugging load dozens of GStreamer plugins (libav, rsvg, flite…) that stay
//! mapped for the life of a process — about 45 MiB of RSS for one MP4
//! (docs/benchmarks.md "Agent idle footprint") — and a demuxer crash on a bad file
//! then costs a probe, not the agent.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use braid_protocol::device::SavedMedia;

/// Longest the discoverer may look at one file (a busy sender's CPU makes even a
/// small file slow to type).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The error of a probe that ran out of time: not remembered, the next scan tries
/// the file again.
const TIMED_OUT: &str = "probe timed out";

/// Outcome of probing one file version.
type Probe = Result<u64, String>;

/// Where the discoverer runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MediaProbe {
    /// In this process (tests, tools).
    #[default]
    InProcess,
    /// In `EXE probe-media FILE` (the `braid-agent` binary), killed after
    /// [`HELPER_TIMEOUT`].
    Helper(PathBuf),
}

/// Longest a probe helper may run.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// Lists the media folder, remembering each file's probe by (mtime, size).
#[derive(Default)]
pub struct SavedMediaScanner {
    probes: HashMap<PathBuf, (SystemTime, u64, Probe)>,
    how: MediaProbe,
}

impl SavedMediaScanner {
    /// A scanner probing as `how` says.
    pub fn new(how: MediaProbe) -> Self {
        Self {
            probes: HashMap::new(),
            how,
        }
    }

    /// Regular files directly in `dir` (hidden files and sub-folders left out),
    /// sorted by name. `duration_s` in whole seconds from the discoverer when
    /// GStreamer is initialised (else 0, no error); `error` says why a file has no
    /// duration: unreadable, not a media file, probe timed out. A missing folder
    /// lists nothing. Blocking: call from a blocking thread.
    pub fn scan(&mut self, dir: &Path) -> Vec<SavedMedia> {
        let mut files: Vec<(PathBuf, fs::Metadata)> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                let meta = fs::metadata(e.path()).ok()?;
                meta.is_file().then(|| (e.path(), meta))
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        self.probes.retain(|p, _| files.iter().any(|(f, _)| f == p));
        files
            .into_iter()
            .map(|(path, meta)| {
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                let size = meta.len();
                let probe = match self.probes.get(&path) {
                    Some((m, s, p)) if *m == mtime && *s == size => p.clone(),
                    _ => {
                        let p = match &self.how {
                            MediaProbe::InProcess => probe(&path),
                            MediaProbe::Helper(exe) => probe_with_helper(exe, &path),
                        };
                        // Without GStreamer, or after a timeout (a busy moment), nothing
                        // was learnt: ask again next time.
                        let learnt = p.as_ref().err().is_none_or(|e| e != TIMED_OUT);
                        if learnt && (gst_ready() || matches!(self.how, MediaProbe::Helper(_))) {
                            self.probes.insert(path.clone(), (mtime, size, p.clone()));
                        }
                        p
                    }
                };
                let (duration_s, error) = match probe {
                    Ok(d) => (d, None),
                    Err(e) => (0, Some(e)),
                };
                SavedMedia {
                    name: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    path: path.to_string_lossy().into_owned(),
                    size_mb: size / (1024 * 1024),
                    duration_s,
                    error,
                }
            })
            .collect()
    }
}

fn gst_ready() -> bool {
    gst::INITIALIZED.load(std::sync::atomic::Ordering::SeqCst)
}

/// The answer of `braid-agent probe-media FILE` on stdout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeAnswer {
    /// Duration, whole seconds, when probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `braid-agent probe-media FILE`: probe in this process (GStreamer must be
/// initialised) and give the answer as one JSON line.
pub fn probe_answer(path: &Path) -> String {
    let answer = match probe(path) {
        Ok(d) => ProbeAnswer {
            duration_s: Some(d),
            error: None,
        },
        Err(e) => ProbeAnswer {
            duration_s: None,
            error: Some(e),
        },
    };
    serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into())
}

/// Probe `path` with `exe probe-media`, killed after [`HELPER_TIMEOUT`].
fn probe_with_helper(exe: &Path, path: &Path) -> Probe {
    if let Err(e) = fs::File::open(path) {
        return Err(format!("cannot read: {e}"));
    }
    let mut child = std::process::Command::new(exe)
        .arg("probe-media")
        .arg(path)
        .env("BRAID_LOG", "error")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot probe: {} probe-media: {e}", exe.display()))?;
    if crate::wait_helper(&mut child, HELPER_TIMEOUT).is_none() {
        return Err(TIMED_OUT.to_owned());
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read;
        let _ = stdout.read_to_string(&mut out);
    }
    match serde_json::from_str::<ProbeAnswer>(out.trim()) {
        Ok(ProbeAnswer {
            duration_s: Some(d),
            ..
        }) => Ok(d),
        Ok(ProbeAnswer { error: Some(e), .. }) => Err(e),
        _ => Err("cannot probe: the probe helper failed (crashed on this file?)".to_owned()),
    }
}

/// Duration of a media file in whole seconds. Errors: the file cannot be opened,
/// the discoverer cannot type it (`not a media file`) or times out. Without
/// GStreamer initialised: `Ok(0)` once the file is readable.
fn probe(path: &Path) -> Probe {
    if let Err(e) = fs::File::open(path) {
        return Err(match e.kind() {
            std::io::ErrorKind::PermissionDenied => "cannot read: permission denied".to_owned(),
            _ => format!("cannot read: {e}"),
        });
    }
    if !gst_ready() {
        return Ok(0);
    }
    let abs = path
        .canonicalize()
        .map_err(|e| format!("cannot read: {e}"))?;
    let uri = gst::glib::filename_to_uri(&abs, None).map_err(|e| e.to_string())?;
    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_nseconds(
        PROBE_TIMEOUT.as_nanos() as u64,
    ))
    .map_err(|e| format!("discoverer: {e}"))?;
    match discoverer.discover_uri(&uri) {
        Ok(info) => match info.result() {
            gst_pbutils::DiscovererResult::Timeout => Err(TIMED_OUT.to_owned()),
            gst_pbutils::DiscovererResult::MissingPlugins => {
                Err("cannot decode: a GStreamer plugin is missing".to_owned())
            }
            _ if info.audio_streams().is_empty() && info.video_streams().is_empty() => {
                Err("not a media file (no audio or video stream)".to_owned())
            }
            _ => Ok(info.duration().map(|d| d.seconds()).unwrap_or(0)),
        },
        Err(e) => {
            tracing::debug!("{}: discoverer: {e}", path.display());
            if e.matches(gst::StreamError::TypeNotFound)
                || e.matches(gst::StreamError::WrongType)
                || e.matches(gst::CoreError::MissingPlugin)
            {
                Err("not a media file".to_owned())
            } else {
                Err(format!("cannot probe: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_files_with_sizes_without_gstreamer() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("b.bin"), vec![0u8; 3 * 1024 * 1024]).unwrap();
        fs::write(dir.path().join("a.txt"), b"x").unwrap();
        fs::write(dir.path().join(".partial"), b"x").unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let list = SavedMediaScanner::default().scan(dir.path());
        let got: Vec<_> = list.iter().map(|m| (m.name.as_str(), m.size_mb)).collect();
        assert_eq!(got, vec![("a.txt", 0), ("b.bin", 3)]);
        assert!(SavedMediaScanner::default()
            .scan(&dir.path().join("missing"))
            .is_empty());
    }
}
