//! `braidthumbnail` in real pipelines: cadence by running time, 320×180 JPEGs that
//! GStreamer's own `jpegdec` decodes, letterboxing, `location`, and the element
//! loaded from the built shared library by `gst-launch-1.0`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use gst::prelude::*;
use gst_video::prelude::*;

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstbraidthumbnail::plugin_register_static().unwrap();
    });
}

/// Run `desc` to EOS; return the `braid-thumbnail` messages.
fn run(desc: &str) -> Vec<gst::Structure> {
    init();
    let pipeline = gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    loop {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(60))
            .expect("pipeline finished in time");
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{desc}: {} {:?}", e.error(), e.debug()),
            gst::MessageView::Element(e) => {
                let s = e.structure().unwrap();
                if s.name() == "braid-thumbnail" {
                    out.push(s.to_owned());
                }
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    out
}

fn jpeg_of(s: &gst::StructureRef) -> Vec<u8> {
    let buf = s.get::<gst::Buffer>("jpeg").unwrap();
    let bytes = buf.map_readable().unwrap().as_slice().to_vec();
    bytes
}

/// Decode a JPEG with GStreamer's `jpegdec` to packed RGB: (width, height, pixels).
fn decode(jpeg: &[u8]) -> (u32, u32, Vec<u8>) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.jpg");
    std::fs::write(&file, jpeg).unwrap();
    let desc = format!(
        "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format=RGB ! appsink name=out sync=false",
        file.display()
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink
        .try_pull_sample(gst::ClockTime::from_seconds(10))
        .expect("jpegdec decoded the thumbnail");
    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
    let buf = sample.buffer().unwrap();
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info).unwrap();
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).unwrap();
    let mut rgb = Vec::new();
    for row in 0..info.height() as usize {
        rgb.extend_from_slice(&data[row * stride..row * stride + info.width() as usize * 3]);
    }
    drop(frame);
    pipeline.set_state(gst::State::Null).unwrap();
    (info.width(), info.height(), rgb)
}

fn pixel(rgb: &[u8], width: u32, x: u32, y: u32) -> [u8; 3] {
    let i = ((y * width + x) * 3) as usize;
    [rgb[i], rgb[i + 1], rgb[i + 2]]
}

fn is_black(p: [u8; 3]) -> bool {
    p.iter().all(|&c| c < 24)
}

#[test]
fn keeps_one_frame_per_interval_of_running_time() {
    // 60 frames at 30 fps = 2 s of running time, pushed as fast as possible.
    let msgs = run(
        "videotestsrc num-buffers=60 ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 \
         ! braidthumbnail interval=500 sync=false",
    );
    let times: Vec<u64> = msgs
        .iter()
        .map(|s| s.get::<u64>("running-time").unwrap() / 1_000_000)
        .collect();
    assert_eq!(
        times,
        [0, 500, 1000, 1500],
        "kept frames by running time (ms)"
    );
    for s in &msgs {
        assert_eq!(s.get::<u32>("width").unwrap(), 320);
        assert_eq!(s.get::<u32>("height").unwrap(), 180);
        let jpeg = jpeg_of(s);
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "JPEG SOI");
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xff, 0xd9], "JPEG EOI");
        assert!(jpeg.len() > 1000 && jpeg.len() < 100_000, "{}", jpeg.len());
    }
    // Default interval: 10 s, so 2 s of video give just the first frame.
    let msgs = run(
        "videotestsrc num-buffers=60 ! video/x-raw,width=640,height=360,framerate=30/1 \
         ! braidthumbnail sync=false",
    );
    assert_eq!(msgs.len(), 1);
    // interval=0 keeps every frame.
    let msgs = run(
        "videotestsrc num-buffers=5 ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! braidthumbnail interval=0 sync=false",
    );
    assert_eq!(msgs.len(), 5);
}

#[test]
fn a_4_3_picture_is_pillarboxed_and_16_9_fills_the_frame() {
    // White 4:3 frames: black bars left and right of a 240×180 picture.
    let msgs = run(
        "videotestsrc num-buffers=1 pattern=white ! video/x-raw,format=YUY2,width=640,height=480,framerate=25/1 \
         ! braidthumbnail sync=false",
    );
    let (w, h, rgb) = decode(&jpeg_of(&msgs[0]));
    assert_eq!((w, h), (320, 180));
    assert!(
        is_black(pixel(&rgb, w, 10, 90)),
        "{:?}",
        pixel(&rgb, w, 10, 90)
    );
    assert!(is_black(pixel(&rgb, w, 310, 90)));
    assert!(
        pixel(&rgb, w, 160, 90).iter().all(|&c| c > 230),
        "white centre"
    );
    assert!(
        pixel(&rgb, w, 50, 90).iter().all(|&c| c > 230),
        "picture starts at x=40"
    );

    // Stretched when asked.
    let msgs = run(
        "videotestsrc num-buffers=1 pattern=white ! video/x-raw,width=640,height=480,framerate=25/1 \
         ! braidthumbnail add-borders=false sync=false",
    );
    let (w, _, rgb) = decode(&jpeg_of(&msgs[0]));
    assert!(pixel(&rgb, w, 5, 90).iter().all(|&c| c > 230));

    // 16:9 RGB input fills 320×180 edge to edge; other sizes are honoured.
    let msgs = run(
        "videotestsrc num-buffers=1 pattern=white ! video/x-raw,format=BGRx,width=1920,height=1080,framerate=25/1 \
         ! braidthumbnail width=160 height=90 quality=90 sync=false",
    );
    let (w, h, rgb) = decode(&jpeg_of(&msgs[0]));
    assert_eq!((w, h), (160, 90));
    assert!(pixel(&rgb, w, 1, 45).iter().all(|&c| c > 230));
}

#[test]
fn location_gets_the_last_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("last.jpg");
    let msgs = run(&format!(
        "videotestsrc num-buffers=40 ! video/x-raw,width=640,height=360,framerate=20/1 \
         ! braidthumbnail interval=1000 post-messages=false location={} sync=false",
        file.display()
    ));
    assert!(msgs.is_empty(), "post-messages=false");
    let jpeg = std::fs::read(&file).expect("location written");
    let (w, h, _) = decode(&jpeg);
    assert_eq!((w, h), (320, 180));
    assert!(!dir.path().join("last.jpg.tmp").exists());
}

/// Where cargo put the cdylib: `target/<profile>` or its `deps/`.
fn built_plugin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        let so = dir.join("libgstbraidthumbnail.so");
        if so.exists() {
            return so;
        }
    }
    panic!(
        "libgstbraidthumbnail.so not built next to {}",
        exe.display()
    );
}

#[test]
fn usable_from_gst_launch_with_the_shared_library() {
    let dir = tempfile::tempdir().unwrap();
    // Only our plugin on the path (the deps folder holds unrelated libraries).
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::os::unix::fs::symlink(built_plugin(), plugins.join("libgstbraidthumbnail.so")).unwrap();
    let out = dir.path().join("thumb.jpg");
    let env = |cmd: &mut Command| {
        cmd.env("GST_PLUGIN_PATH", &plugins)
            .env("GST_REGISTRY", dir.path().join("registry.bin"));
    };
    let mut inspect = Command::new("gst-inspect-1.0");
    inspect.arg("braidthumbnail");
    env(&mut inspect);
    let text = String::from_utf8_lossy(&inspect.output().unwrap().stdout).into_owned();
    for prop in [
        "interval",
        "width",
        "height",
        "quality",
        "add-borders",
        "location",
    ] {
        assert!(text.contains(prop), "gst-inspect lists {prop}:\n{text}");
    }
    let mut launch = Command::new("timeout");
    launch
        .args([
            "60",
            "gst-launch-1.0",
            "-q",
            "videotestsrc",
            "num-buffers=30",
            "!",
        ])
        .arg("video/x-raw,width=1280,height=720,framerate=30/1")
        .args(["!", "braidthumbnail", "interval=100"])
        .arg(format!("location={}", out.display()));
    env(&mut launch);
    let status = launch.status().unwrap();
    assert!(status.success(), "{status:?}");
    let (w, h, _) = decode(&std::fs::read(&out).unwrap());
    assert_eq!((w, h), (320, 180));
    wait_gone(&out.with_extension("jpg.tmp"), Duration::from_secs(1));
}

fn wait_gone(p: &Path, _t: Duration) {
    assert!(!p.exists(), "{} left behind", p.display());
}
