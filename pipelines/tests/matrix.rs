//! Every source × encoder × audio combination this machine can run (test and media
//! sources; H.264 and H.265 through x264enc/x265enc; no audio, AAC, Opus), each
//! built from a `stream.start` JSON, run for 2.5 s into a TS file and checked with
//! ffprobe (codec, size, frame rate, frame count, audio codec and rate), a PMT reader
//! (stream types and the Opus registration descriptor) and the TS continuity check.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use braid_pipelines::StreamPlan;
use common::*;

const RUN: Duration = Duration::from_millis(2500);
const FPS: u32 = 25;

/// A 4 s 640×360@30 H.264 + AAC clip, made once per test binary: the media source
/// is scaled, letterboxed and rate-converted to 320×240@25.
fn media_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        init();
        let dir = tmp("matrix-media");
        std::fs::create_dir_all(&dir).unwrap();
        make_media(&dir.join("clip.mp4"), 4, 640, 360, 30);
        dir
    })
}

fn combo(source: &str, codec: &str, audio: Option<&str>) {
    init();
    let id = format!("{source}-{codec}-{}", audio.unwrap_or("none"));
    let src = match source {
        "test" => serde_json::json!({"mode": "test", "resolution": "320x240", "framerate": FPS}),
        _ => {
            serde_json::json!({"mode": "media", "path": "clip.mp4", "resolution": "320x240", "framerate": FPS})
        }
    };
    let dir = (source == "media").then(|| media_dir().as_path());
    let plan = StreamPlan::from_start(&start(payload(&id, src, codec, audio)), dir)
        .unwrap_or_else(|e| panic!("{id}: {e}"));
    let out = tmp(&format!("{id}.ts"));
    let log = run_supervised(&plan, &out, RUN, |_, _| {});
    assert!(log.events.is_empty(), "{id}: {:?}", log.events);

    let streams = ffprobe(&out);
    println!("{id}: {streams:?}");
    let v = &streams[0];
    let want_codec = if codec == "h264" { "h264" } else { "hevc" };
    assert_eq!(v.codec, want_codec, "{id}");
    assert_eq!((v.width, v.height), (Some(320), Some(240)), "{id}");
    assert_eq!(v.r_frame_rate, format!("{FPS}/1"), "{id}");
    let want = (RUN.as_secs_f64() * f64::from(FPS)) as usize;
    assert!(
        v.packets * 100 >= want * 85 && v.packets * 100 <= want * 115,
        "{id}: {} frames for {want} expected",
        v.packets
    );
    let pmt = pmt_streams(&out);
    let vtype = if codec == "h264" { 0x1b } else { 0x24 };
    match audio {
        None => {
            assert_eq!(streams.len(), 1, "{id}");
            assert_eq!(pmt, vec![(vtype, false)], "{id}");
        }
        Some(a) => {
            assert_eq!(streams.len(), 2, "{id}");
            assert_eq!(streams[1].codec, a, "{id}");
            assert_eq!(streams[1].sample_rate.as_deref(), Some("48000"), "{id}");
            assert!(streams[1].packets > 20, "{id}: {:?}", streams[1]);
            let atype = if a == "aac" {
                (0x0f, false)
            } else {
                (0x06, true)
            };
            assert_eq!(pmt, vec![(vtype, false), atype], "{id}");
        }
    }
    let (cc, packets) = continuity(&out);
    assert_eq!(cc, 0, "{id}: continuity errors in {packets} packets");
}

macro_rules! combos {
    ($($name:ident: $source:literal, $codec:literal, $audio:expr;)*) => {
        $(#[test] fn $name() { combo($source, $codec, $audio); })*
    };
}

combos! {
    test_h264_silent: "test", "h264", None;
    test_h264_aac: "test", "h264", Some("aac");
    test_h264_opus: "test", "h264", Some("opus");
    test_h265_silent: "test", "h265", None;
    test_h265_aac: "test", "h265", Some("aac");
    test_h265_opus: "test", "h265", Some("opus");
    media_h264_silent: "media", "h264", None;
    media_h264_aac: "media", "h264", Some("aac");
    media_h264_opus: "media", "h264", Some("opus");
    media_h265_silent: "media", "h265", None;
    media_h265_aac: "media", "h265", Some("aac");
    media_h265_opus: "media", "h265", Some("opus");
}
