//! `device.status.saved_media` (PROTOCOL.md §4): the files of the configured media
//! folder (`agent.media_dir`) with size and duration (GStreamer's discoverer,
//! `gst_pbutils::Discoverer`, probed once per file version). A file that cannot be
//! read or is not media is listed with an `error`; nothing here fails the report.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use braid_protocol::device::SavedMedia;

/// Longest the discoverer may look at one file.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Outcome of probing one file version.
type Probe = Result<u64, String>;

/// Lists the media folder, remembering each file's probe by (mtime, size).
#[derive(Default)]
pub struct SavedMediaScanner {
    probes: HashMap<PathBuf, (SystemTime, u64, Probe)>,
}

impl SavedMediaScanner {
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
                        let p = probe(&path);
                        // Without GStreamer nothing was learnt: ask again next time.
                        if gst_ready() {
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
            gst_pbutils::DiscovererResult::Timeout => Err("probe timed out".to_owned()),
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
