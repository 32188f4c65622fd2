//! A stream whose source goes away stays on air on the slate, reports it as events,
//! and ends with `source_lost` only after `streams.source_lost_timeout_s`
//! (issue 7); `braid-agent pipeline --print` prints what it would run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use braid_agent::streams::{self, StreamReport, StreamsConfig};
use braid_protocol::event::{Category, Severity};
use braid_protocol::stream::{EndReason, StreamStart};
use gst::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const AGENT: &str = env!("CARGO_BIN_EXE_braid-agent");

/// A 2 s H.264 + AAC clip.
fn make_media(path: &Path) {
    braid_agent::media::init().unwrap();
    let desc = format!(
        "videotestsrc num-buffers=50 ! video/x-raw,format=I420,width=320,height=240,framerate=25/1 \
         ! x264enc speed-preset=ultrafast ! h264parse ! queue ! mp4mux name=m ! filesink location={} \
         audiotestsrc num-buffers=96 samplesperbuffer=1000 ! audio/x-raw,rate=48000,channels=2 \
         ! avenc_aac ! aacparse ! queue ! m.",
        path.display()
    );
    let p = gst::parse::launch(&desc).unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap();
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    p.set_state(gst::State::Null).unwrap();
}

fn payload(id: &str, port: u16) -> serde_json::Value {
    serde_json::json!({
        "stream_id": id,
        "source": {"mode": "media", "path": "clip.mp4", "resolution": "320x240", "framerate": 25},
        "encoder": {"codec": "h264", "bitrate_kbps": 400},
        "audio": {"enabled": true, "codec": "aac"},
        "bonding_config": {"version": 1, "links": [{"id": 0, "uri": format!("rist://127.0.0.1:{port}")}]}
    })
}

#[tokio::test]
async fn ended_file_goes_to_slate_then_source_lost_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    make_media(&dir.path().join("clip.mp4"));
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let handle = streams::spawn_with(
        StreamsConfig {
            media_dir: Some(dir.path().to_owned()),
            source_lost_timeout: Some(Duration::from_secs(2)),
        },
        tx,
        cancel.clone(),
        &tracker,
    );
    let start: StreamStart = serde_json::from_value(payload("str_lost", 23400)).unwrap();
    let t0 = Instant::now();
    handle.start(start).await.expect("stream starts");

    let mut events = Vec::new();
    let ended = loop {
        let report = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("reports keep coming")
            .expect("channel open");
        match report {
            StreamReport::Event(e) => events.push((t0.elapsed(), e)),
            StreamReport::Ended(e) => break e,
            StreamReport::Stats(_) => {}
        }
    };
    println!(
        "events {events:?}\nended after {:?}: {ended:?}",
        t0.elapsed()
    );
    let video_lost = events
        .iter()
        .find(|(_, e)| e.message.starts_with("Video source lost (clip.mp4)"))
        .expect("a video source lost event");
    assert_eq!(video_lost.1.severity, Severity::Warning);
    assert_eq!(video_lost.1.category, Category::Stream);
    assert_eq!(video_lost.1.stream_id.as_deref(), Some("str_lost"));
    let details = video_lost.1.details.as_ref().unwrap();
    assert_eq!(details["essence"], "video");
    assert_eq!(details["reason"], "end of stream");
    assert!(
        events
            .iter()
            .any(|(_, e)| e.message.starts_with("Audio source lost (clip.mp4)")),
        "{events:?}"
    );
    // The stream stayed on air on the slate until the timeout, then ended.
    assert_eq!(ended.reason, EndReason::SourceLost);
    assert!(
        ended
            .error
            .as_deref()
            .unwrap()
            .contains("video source lost for 2 s"),
        "{ended:?}"
    );
    let on_slate = t0.elapsed() - video_lost.0;
    assert!(
        on_slate >= Duration::from_secs(2),
        "ended {on_slate:?} after the loss"
    );
    assert!(ended.total_bytes > 0 || ended.duration_s >= 3, "{ended:?}");
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
}

#[test]
fn pipeline_print_prints_the_launch_line() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("stream.json");
    let mut v = payload("str_print", 15000);
    v["source"] = serde_json::json!({"mode": "test", "resolution": "1280x720", "framerate": 30});
    // A whole message is accepted too.
    std::fs::write(
        &json,
        serde_json::json!({"type": "stream.start", "payload": v}).to_string(),
    )
    .unwrap();
    let out = Command::new(AGENT)
        .args(["pipeline", "--print"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(
        line.starts_with("gst-launch-1.0 -e fallbackswitch name=vswitch"),
        "{line}"
    );
    for want in [
        "x264enc name=venc",
        "avenc_aac name=aenc",
        "mpegtsmux name=mux alignment=7",
        "ristbondsink name=bond",
        "videotestsrc name=vsrc is-live=true",
        "width=1280,height=720,framerate=30/1",
    ] {
        assert!(line.contains(want), "{want} in {line}");
    }

    // Refused requests name the field and exit 2.
    v["source"]["resolution"] = "1280by720".into();
    std::fs::write(&json, v.to_string()).unwrap();
    let out = Command::new(AGENT)
        .args(["pipeline", "--print"])
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("source.resolution"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&json, r#"{"stream_id": "x", "source": {"mode": "moon"}}"#).unwrap();
    let out = Command::new(AGENT)
        .args(["pipeline", "--print"])
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("source.mode"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
