//! A lost source does not end the stream (issue 7): slate within 500 ms, no TS
//! continuity errors, back to the source with no PTS gap over one frame and audio
//! and video still together; a media file that ends goes to the slate, one that
//! loops does not.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use braid_pipelines::{Essence, SourceEvent, StreamPlan};
use common::*;
use gst::prelude::*;

const MS: u64 = 1_000_000;

/// Drop every buffer leaving `element` while `on` is set: a source that stops
/// delivering without an error (an HDMI grabber whose signal went away).
fn gate(pipeline: &gst::Pipeline, element: &str, on: Arc<AtomicBool>) {
    let pad = pipeline
        .by_name(element)
        .unwrap()
        .static_pad("src")
        .unwrap();
    let el = pipeline.by_name(element).unwrap();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if std::env::var("GATE_DEBUG").is_ok() {
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                let rt = el
                    .clock()
                    .map(|c| (c.time() - el.base_time().unwrap()).mseconds())
                    .unwrap_or(0);
                eprintln!(
                    "gate {} pts {} rt {}",
                    el.name(),
                    b.pts().unwrap().mseconds(),
                    rt
                );
            }
        }
        if on.load(Ordering::SeqCst) {
            gst::PadProbeReturn::Drop
        } else {
            gst::PadProbeReturn::Ok
        }
    });
}

fn running_time(p: &gst::Pipeline) -> u64 {
    (p.clock().unwrap().time() - p.base_time().unwrap()).nseconds()
}

/// Index of the first buffer of `seen` at or after `from` (ns) with `from_source`.
fn first(seen: &[Seen], from: u64, from_source: bool) -> Option<usize> {
    seen.iter()
        .position(|s| s.pts >= from && s.from_source == from_source)
}

fn strictly_increasing(name: &str, seen: &[Seen]) {
    for w in seen.windows(2) {
        assert!(w[1].pts > w[0].pts, "{name} PTS not increasing: {w:?}");
    }
}

fn lost_and_restored(events: &[(Duration, SourceEvent)], essence: Essence) -> (bool, bool) {
    let lost = events
        .iter()
        .any(|(_, e)| matches!(e, SourceEvent::Lost { essence: x, .. } if *x == essence));
    let restored = events
        .iter()
        .any(|(_, e)| matches!(e, SourceEvent::Restored { essence: x, .. } if *x == essence));
    (lost, restored)
}

#[test]
fn stalled_source_goes_to_slate_within_500ms_and_comes_back_in_sync() {
    init();
    let fps = 25u64;
    let frame = 1_000 * MS / fps;
    let plan = StreamPlan::from_start(
        &start(payload(
            "loss1",
            serde_json::json!({"mode": "test", "resolution": "320x240", "framerate": fps}),
            "h264",
            Some("aac"),
        )),
        None,
    )
    .unwrap();
    let out = tmp("loss1.ts");
    let stalled = Arc::new(AtomicBool::new(false));
    let mut installed = false;
    let (mut stall_rt, mut resume_rt) = (None, None);
    let log = run_supervised(&plan, &out, Duration::from_secs(7), |p, t| {
        if !installed {
            gate(p, "vsrc", stalled.clone());
            gate(p, "asrc", stalled.clone());
            installed = true;
        }
        if t >= Duration::from_secs(2) && stall_rt.is_none() {
            stalled.store(true, Ordering::SeqCst);
            stall_rt = Some(running_time(p));
        }
        if t >= Duration::from_millis(4500) && resume_rt.is_none() {
            stalled.store(false, Ordering::SeqCst);
            resume_rt = Some(running_time(p));
        }
    });
    let (stall_rt, resume_rt) = (stall_rt.unwrap(), resume_rt.unwrap());
    println!("events {:?}", log.events);

    // Both essences went to the slate and came back, each reported once.
    for essence in [Essence::Video, Essence::Audio] {
        assert_eq!(
            lost_and_restored(&log.events, essence),
            (true, true),
            "{essence:?}: {:?}",
            log.events
        );
    }
    assert_eq!(log.events.len(), 4, "{:?}", log.events);
    strictly_increasing("video", &log.video);
    strictly_increasing("audio", &log.audio);

    // Slate on air within 500 ms of the source stopping (in running time, the
    // stream's own clock; measured figures are printed).
    for (name, seen) in [("video", &log.video), ("audio", &log.audio)] {
        let s = first(seen, stall_rt, false).expect("slate buffers");
        let switch_ms = (seen[s].pts - stall_rt) / MS;
        let hole_ms = (seen[s].pts - seen[s - 1].pts) / MS;
        println!(
            "{name}: slate {switch_ms} ms after the stall (switch input PTS step {hole_ms} ms)"
        );
        assert!(switch_ms <= 500, "{name}: slate after {switch_ms} ms");
        assert!(seen[s - 1].from_source);
    }

    // What the encoders get has no hole at all, across both switches: every video
    // frame one frame interval after the last, every audio buffer right after the
    // last (the constant-rate stages fill the switch timeout and the switch back).
    let steps: Vec<u64> = log
        .video_out
        .windows(2)
        .map(|w| w[1].pts - w[0].pts)
        .collect();
    let (vmin, vmax) = (*steps.iter().min().unwrap(), *steps.iter().max().unwrap());
    println!(
        "encoder input video steps {}..{} ms over {} frames",
        vmin / MS,
        vmax / MS,
        log.video_out.len()
    );
    assert!(
        vmin + MS >= frame && vmax <= frame + MS,
        "video steps {vmin}..{vmax} ns"
    );
    let worst_audio = log
        .audio_out
        .windows(2)
        .map(|w| (w[1].pts as i64 - (w[0].pts + w[0].dur) as i64).abs())
        .max()
        .unwrap();
    println!(
        "encoder input audio: largest hole or overlap {} us",
        worst_audio / 1000
    );
    assert!(
        worst_audio <= MS as i64,
        "audio hole of {} us",
        worst_audio / 1000
    );

    // Back on the source, in sync: both essences resume at the running time they
    // were captured at, within one frame of the moment the source came back and of
    // each other.
    let back = |seen: &[Seen]| {
        let s = first(seen, stall_rt, false).unwrap();
        s + seen[s..]
            .iter()
            .position(|b| b.from_source)
            .expect("source back")
    };
    let (v, a) = (back(&log.video), back(&log.audio));
    let (vr, ar) = (log.video[v].pts, log.audio[a].pts);
    println!(
        "source back at {} ms: video {} ms, audio {} ms",
        resume_rt / MS,
        vr / MS,
        ar / MS
    );
    assert!(
        vr.abs_diff(ar) < frame,
        "A/V apart by {} ms",
        vr.abs_diff(ar) / MS
    );
    assert!(vr + frame > resume_rt && vr < resume_rt + 2 * frame);
    assert!(ar + frame > resume_rt && ar < resume_rt + 2 * frame);

    // The TS: no continuity errors, video PTS strictly increasing, no hole beyond
    // the switch.
    let (cc, packets) = continuity(&out);
    assert_eq!(cc, 0, "continuity errors in {packets} packets");
    let pts = video_pts(&out);
    for w in pts.windows(2) {
        assert!(w[1] > w[0] && w[1] - w[0] < 0.5, "TS video PTS step {w:?}");
    }
    let probed = ffprobe(&out);
    assert_eq!(probed[0].codec, "h264");
    assert_eq!(probed[1].codec, "aac");
}

#[test]
fn media_file_that_ends_goes_to_slate_and_stays_on_air() {
    init();
    let dir = tmp("media-end");
    std::fs::create_dir_all(&dir).unwrap();
    make_media(&dir.join("clip.mp4"), 2, 320, 240, 25);
    let plan = StreamPlan::from_start(
        &start(payload(
            "end1",
            serde_json::json!({"mode": "media", "path": "clip.mp4", "resolution": "320x240", "framerate": 25}),
            "h264",
            Some("aac"),
        )),
        Some(&dir),
    )
    .unwrap();
    let out = dir.join("end1.ts");
    let log = run_supervised(&plan, &out, Duration::from_millis(3800), |_, _| {});
    println!("events {:?}", log.events);
    for (name, seen, essence) in [
        ("video", &log.video, Essence::Video),
        ("audio", &log.audio, Essence::Audio),
    ] {
        let s = seen
            .iter()
            .position(|s| !s.from_source)
            .expect("slate after the end");
        let last_src = seen[s - 1].pts;
        let hole_ms = (seen[s].pts - last_src) / MS;
        println!(
            "{name}: file ends at {} ms, slate {hole_ms} ms later",
            last_src / MS
        );
        assert!(
            hole_ms <= 500,
            "{name}: slate {hole_ms} ms after the last frame"
        );
        assert!(seen[s..].iter().all(|b| !b.from_source));
        assert!(
            seen.last().unwrap().pts > last_src + 1_000 * MS,
            "{name} goes on on the slate"
        );
        let lost = log.events.iter().find_map(|(_, e)| match e {
            SourceEvent::Lost { essence: x, reason } if *x == essence => Some(reason.clone()),
            _ => None,
        });
        assert_eq!(lost.as_deref(), Some("end of stream"), "{:?}", log.events);
    }
    strictly_increasing("video", &log.video);
    let (cc, _) = continuity(&out);
    assert_eq!(cc, 0);
    let pts = video_pts(&out);
    assert!(
        pts.last().unwrap() - pts[0] > 3.0,
        "TS goes on after the file: {pts:?}"
    );
}

#[test]
fn looping_media_file_never_shows_the_slate() {
    init();
    let dir = tmp("media-loop");
    std::fs::create_dir_all(&dir).unwrap();
    make_media(&dir.join("loop.mp4"), 1, 320, 240, 25);
    let plan = StreamPlan::from_start(
        &start(payload(
            "loop1",
            serde_json::json!({"mode": "media", "path": "loop.mp4", "resolution": "320x240",
                               "framerate": 25, "loop": true}),
            "h264",
            Some("opus"),
        )),
        Some(&dir),
    )
    .unwrap();
    let out = dir.join("loop1.ts");
    let log = run_supervised(&plan, &out, Duration::from_millis(3600), |_, _| {});
    println!("events {:?} restarts {}", log.events, log.restarts);
    assert!(log.events.is_empty(), "{:?}", log.events);
    assert!(log.restarts >= 3, "one restart per pass: {}", log.restarts);
    assert!(log.video.iter().all(|s| s.from_source));
    strictly_increasing("video", &log.video);
    let frame = 40 * MS;
    let max_step = log
        .video
        .windows(2)
        .map(|w| w[1].pts - w[0].pts)
        .max()
        .unwrap();
    println!(
        "largest switch input PTS step across loops: {} ms",
        max_step / MS
    );
    assert!(max_step < 2 * frame, "loop seam hole {} ms", max_step / MS);
    // What the encoder gets is one frame after the other across every seam.
    assert!(log
        .video_out
        .windows(2)
        .all(|w| w[1].pts.abs_diff(w[0].pts + frame) <= MS));
    let (cc, _) = continuity(&out);
    assert_eq!(cc, 0);
}
