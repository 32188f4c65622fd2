//! `saved_media` (PROTOCOL.md §4) with GStreamer's discoverer: a real MP4 made
//! here has its duration; a text file and a truncated recording are listed with
//! an error, and the scan goes on.

use std::time::Duration;

use braid_agent::device::media::{MediaProbe, SavedMediaScanner};
use braid_protocol::device::SavedMedia;
use gst::prelude::*;

/// Encode `seconds` of test pattern into an MP4 at `path`.
fn make_mp4(path: &std::path::Path, seconds: u32) {
    let desc = format!(
        "videotestsrc num-buffers={} ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
         ! x264enc speed-preset=ultrafast ! h264parse ! mp4mux ! filesink location=\"{}\"",
        seconds * 30,
        path.display()
    );
    let pipeline = gst::parse::launch(&desc).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("encoding finished");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    pipeline.set_state(gst::State::Null).unwrap();
}

/// Scan until no probe timed out (at most 3 scans): a timeout is not remembered
/// (the next scan tries the file again), and a loaded machine can time out once.
fn scan_settled(scanner: &mut SavedMediaScanner, dir: &std::path::Path) -> Vec<SavedMedia> {
    let mut list = scanner.scan(dir);
    for _ in 0..2 {
        if !list
            .iter()
            .any(|m| m.error.as_deref() == Some("probe timed out"))
        {
            break;
        }
        list = scanner.scan(dir);
    }
    list
}

#[test]
fn durations_and_per_file_errors() {
    braid_agent::media::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_mp4(&clip, 3);
    std::fs::write(dir.path().join("notes.txt"), "call the studio at 18:00\n").unwrap();
    // The first half of an MP4 whose index (moov) is at the end: unplayable.
    let bytes = std::fs::read(&clip).unwrap();
    std::fs::write(dir.path().join("cut.mp4"), &bytes[..bytes.len() / 2]).unwrap();

    let mut scanner = SavedMediaScanner::default();
    let t0 = std::time::Instant::now();
    let list = scan_settled(&mut scanner, dir.path());
    let names: Vec<_> = list.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["clip.mp4", "cut.mp4", "notes.txt"]);

    let clip = &list[0];
    assert_eq!(clip.duration_s, 3, "{clip:?}");
    assert_eq!(clip.error, None);
    assert_eq!(clip.size_mb, 0);

    let cut = &list[1];
    assert_eq!(cut.duration_s, 0, "{cut:?}");
    assert!(cut.error.is_some(), "{cut:?}");

    let notes = &list[2];
    assert_eq!(notes.duration_s, 0);
    assert_eq!(
        notes.error.as_deref(),
        Some("not a media file"),
        "{notes:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(60));

    // Probes are remembered per file version: a second scan gives the same.
    assert_eq!(scanner.scan(dir.path()), list);

    // The agent's way: the same answers from `braid-agent probe-media` helpers.
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_braid-agent"));
    let mut helper = SavedMediaScanner::new(MediaProbe::Helper(exe));
    assert_eq!(scan_settled(&mut helper, dir.path()), list);
}
