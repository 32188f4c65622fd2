//! `device.status.media_inputs` and `saved_media` (PROTOCOL.md §4): the test
//! pattern, V4L2 capture nodes from `/sys/class/video4linux`, and the files of the
//! media folder with their duration (GStreamer discoverer, cached per file).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use braid_protocol::device::{MediaInput, MediaInputStatus, MediaInputType, SavedMedia};

/// Where the kernel lists V4L2 devices.
pub const SYS_CLASS_V4L: &str = "/sys/class/video4linux";

/// `media_inputs[].device` of the generated test pattern.
pub const TEST_DEVICE: &str = "test";

/// Modes offered by the test pattern (any `WIDTHxHEIGHT@FPS` works; these are
/// the advertised ones).
pub const TEST_CAPABILITIES: &[&str] = &["1920x1080@30", "1280x720@30", "640x360@30"];

/// The media inputs: the test pattern first, then every `/dev/videoN` with its
/// kernel name as label. `busy` holds the devices live streams use (`test` for the
/// test pattern). V4L2 capabilities are not enumerated yet (empty list).
pub fn media_inputs(sys_class_v4l: &Path, busy: &[String]) -> Vec<MediaInput> {
    let status = |device: &str| {
        if busy.iter().any(|b| b == device) {
            MediaInputStatus::Busy
        } else {
            MediaInputStatus::Available
        }
    };
    let mut inputs = vec![MediaInput {
        device: TEST_DEVICE.into(),
        kind: MediaInputType::Test,
        label: "Test pattern".into(),
        capabilities: TEST_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect(),
        status: status(TEST_DEVICE),
    }];
    let mut nodes: Vec<(String, String)> = fs::read_dir(sys_class_v4l)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.starts_with("video").then_some(())?;
            let label = fs::read_to_string(e.path().join("name"))
                .map(|l| l.trim().to_owned())
                .unwrap_or_else(|_| name.clone());
            Some((format!("/dev/{name}"), label))
        })
        .collect();
    nodes.sort();
    for (device, label) in nodes {
        inputs.push(MediaInput {
            status: status(&device),
            device,
            kind: MediaInputType::V4l2,
            label,
            capabilities: Vec::new(),
        });
    }
    inputs
}

/// Lists the media folder, remembering durations so each file is probed once.
#[derive(Default)]
pub struct SavedMediaScanner {
    durations: HashMap<PathBuf, (SystemTime, u64, u64)>,
}

impl SavedMediaScanner {
    /// Regular files directly in `dir`, sorted by name. `duration_s` comes from
    /// GStreamer's discoverer (2 s timeout) when GStreamer is initialised, else 0.
    /// Blocking: call from a blocking thread.
    pub fn scan(&mut self, dir: &Path) -> Vec<SavedMedia> {
        let mut files: Vec<(PathBuf, fs::Metadata)> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                meta.is_file().then(|| (e.path(), meta))
            })
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        self.durations
            .retain(|p, _| files.iter().any(|(f, _)| f == p));
        files
            .into_iter()
            .map(|(path, meta)| {
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                let size = meta.len();
                let duration_s = match self.durations.get(&path) {
                    Some((m, s, d)) if *m == mtime && *s == size => *d,
                    _ => {
                        let d = probe_duration(&path);
                        self.durations.insert(path.clone(), (mtime, size, d));
                        d
                    }
                };
                SavedMedia {
                    name: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    path: path.to_string_lossy().into_owned(),
                    size_mb: size / (1024 * 1024),
                    duration_s,
                }
            })
            .collect()
    }
}

/// Duration of a media file in whole seconds, 0 if unknown or GStreamer is not
/// initialised.
fn probe_duration(path: &Path) -> u64 {
    if !gst::INITIALIZED.load(std::sync::atomic::Ordering::SeqCst) {
        return 0;
    }
    let Ok(abs) = path.canonicalize() else {
        return 0;
    };
    let Ok(uri) = gst::glib::filename_to_uri(&abs, None) else {
        return 0;
    };
    let Ok(discoverer) = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(2)) else {
        return 0;
    };
    match discoverer.discover_uri(&uri) {
        Ok(info) => info.duration().map(|d| d.seconds()).unwrap_or(0),
        Err(e) => {
            tracing::debug!("{}: no duration: {e}", path.display());
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pattern_and_v4l2_nodes() {
        let root = tempfile::tempdir().unwrap();
        let v = root.path().join("video0");
        fs::create_dir_all(&v).unwrap();
        fs::write(v.join("name"), "USB Video: HDMI\n").unwrap();
        let inputs = media_inputs(root.path(), &["test".to_owned()]);
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs[0].kind, MediaInputType::Test);
        assert_eq!(inputs[0].status, MediaInputStatus::Busy);
        assert_eq!(inputs[1].device, "/dev/video0");
        assert_eq!(inputs[1].label, "USB Video: HDMI");
        assert_eq!(inputs[1].status, MediaInputStatus::Available);
    }

    #[test]
    fn saved_media_lists_files_with_sizes() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("b.bin"), vec![0u8; 3 * 1024 * 1024]).unwrap();
        fs::write(dir.path().join("a.txt"), b"x").unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let list = SavedMediaScanner::default().scan(dir.path());
        let got: Vec<_> = list.iter().map(|m| (m.name.as_str(), m.size_mb)).collect();
        assert_eq!(got, vec![("a.txt", 0), ("b.bin", 3)]);
        assert!(SavedMediaScanner::default()
            .scan(&dir.path().join("missing"))
            .is_empty());
    }
}
