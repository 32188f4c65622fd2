//! Shared helpers of the pipeline run tests: payloads, a supervised run into a TS
//! file, ffprobe and a PMT reader.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_pipelines::{Action, Output, SourceEvent, StreamPlan, Supervisor};
use braid_protocol::stream::StreamStart;
use gst::prelude::*;

pub fn init() {
    braid_pipelines::register_elements().unwrap();
    if gst::ElementFactory::find("ristbondsink").is_none() {
        gstristbond::plugin_register_static().unwrap();
    }
}

pub fn start(json: serde_json::Value) -> StreamStart {
    serde_json::from_value(json).expect("test payload parses")
}

/// A `stream.start` with one (unused) link: tests write to a file instead.
pub fn payload(
    id: &str,
    source: serde_json::Value,
    codec: &str,
    audio: Option<&str>,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "stream_id": id,
        "source": source,
        "encoder": {"codec": codec, "bitrate_kbps": 400, "keyint_max": 25},
        "destinations": [],
        "bonding_config": {"version": 1, "links": [{"id": 0, "uri": "rist://127.0.0.1:15000"}]}
    });
    if let Some(codec) = audio {
        v["audio"] = serde_json::json!({"enabled": true, "codec": codec, "bitrate_kbps": 64});
    }
    v
}

/// Write a short media file (H.264 + AAC in MP4) with GStreamer: `secs` seconds of
/// `w`×`h` at `fps`, with a 440 Hz tone.
pub fn make_media(path: &Path, secs: u32, w: u32, h: u32, fps: u32) {
    let frames = secs * fps;
    let samples = 48_000 * secs;
    let desc = format!(
        "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 \
         ! x264enc speed-preset=ultrafast key-int-max={fps} ! h264parse ! queue ! mp4mux name=m ! filesink location={} \
         audiotestsrc samplesperbuffer=1000 num-buffers={} freq=440 ! audio/x-raw,rate=48000,channels=2 ! avenc_aac ! aacparse ! queue ! m.",
        path.display(),
        samples / 1000
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
        .expect("media file written in time");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    p.set_state(gst::State::Null).unwrap();
}

/// One buffer seen after a switch: running time (PTS, ns) and whether it came from
/// the source (else the slate).
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub pts: u64,
    /// Buffer duration, ns (0 when unset).
    pub dur: u64,
    pub from_source: bool,
}

/// What a supervised run produced.
#[derive(Debug, Default)]
pub struct RunLog {
    /// Source events with the wall time since PLAYING.
    pub events: Vec<(Duration, SourceEvent)>,
    /// Switch messages: (wall time since PLAYING, essence, on-source, running time).
    pub switches: Vec<(Duration, String, bool, u64)>,
    /// Buffers out of the video switch.
    pub video: Vec<Seen>,
    /// Buffers into the video encoder (after the constant-rate stage).
    pub video_out: Vec<Seen>,
    /// Buffers into the audio encoder (after the constant-rate stage).
    pub audio_out: Vec<Seen>,
    /// Buffers out of the audio switch.
    pub audio: Vec<Seen>,
    /// Restarts run.
    pub restarts: usize,
}

/// Record every buffer leaving `at` (default: the switch) and whether the switch's
/// source input was active.
fn record_switch(
    pipeline: &gst::Pipeline,
    switch: &str,
    at: Option<&str>,
    out: Arc<Mutex<Vec<Seen>>>,
) {
    let Some(sw) = pipeline.by_name(switch) else {
        return;
    };
    let at = at
        .and_then(|n| pipeline.by_name(n))
        .unwrap_or_else(|| sw.clone());
    let primary = sw
        .sink_pads()
        .into_iter()
        .find(|p| p.property::<u32>("priority") == 0)
        .unwrap();
    let sw2 = sw.clone();
    at.static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let Some(gst::PadProbeData::Buffer(buf)) = &info.data {
                let seg = pad.sticky_event::<gst::event::Segment>(0);
                let rt = seg
                    .and_then(|s| s.segment().clone().downcast::<gst::ClockTime>().ok())
                    .and_then(|s| s.to_running_time(buf.pts()?))
                    .map(|t| t.nseconds())
                    .unwrap_or(0);
                let active = sw2.property::<Option<gst::Pad>>("active-pad");
                out.lock().unwrap().push(Seen {
                    pts: rt,
                    dur: buf.duration().map(|d| d.nseconds()).unwrap_or(0),
                    from_source: active.as_ref() == Some(&primary),
                });
            }
            gst::PadProbeReturn::Ok
        });
}

/// Build `plan` into a TS file, run it supervised for `dur`, calling `during` with
/// the pipeline and the time since PLAYING on every loop turn, then stop with EOS.
pub fn run_supervised(
    plan: &StreamPlan,
    out: &Path,
    dur: Duration,
    mut during: impl FnMut(&gst::Pipeline, Duration),
) -> RunLog {
    init();
    let mut plan = plan.clone();
    plan.output = Output::File(out.to_owned());
    let pipeline = plan.build().expect("pipeline builds");
    let mut sup = Supervisor::attach(&plan, &pipeline).expect("supervisor attaches");
    let video = Arc::new(Mutex::new(Vec::new()));
    let audio = Arc::new(Mutex::new(Vec::new()));
    let video_out = Arc::new(Mutex::new(Vec::new()));
    record_switch(&pipeline, "vswitch", None, video.clone());
    record_switch(
        &pipeline,
        "vswitch",
        Some("vswitch_rate"),
        video_out.clone(),
    );
    record_switch(&pipeline, "aswitch", None, audio.clone());
    let audio_out = Arc::new(Mutex::new(Vec::new()));
    record_switch(
        &pipeline,
        "aswitch",
        Some("aswitch_rate"),
        audio_out.clone(),
    );
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).expect("PLAYING");
    let t0 = Instant::now();
    let mut log = RunLog::default();
    let mut pending: Vec<(Instant, braid_pipelines::RestartJob)> = Vec::new();
    let mut last_poll = Instant::now();
    let handle = |actions: Vec<Action>,
                  log: &mut RunLog,
                  pending: &mut Vec<(Instant, braid_pipelines::RestartJob)>| {
        for a in actions {
            match a {
                Action::Report(ev) => log.events.push((t0.elapsed(), ev)),
                Action::Restart { delay, job } => pending.push((Instant::now() + delay, job)),
            }
        }
    };
    while t0.elapsed() < dur {
        during(&pipeline, t0.elapsed());
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(10)) {
            if let gst::MessageView::Element(e) = msg.view() {
                if let Some(s) = e.structure() {
                    if s.name() == braid_pipelines::SWITCH_MESSAGE {
                        log.switches.push((
                            t0.elapsed(),
                            s.get::<String>("essence").unwrap(),
                            s.get::<bool>("on-source").unwrap(),
                            s.get::<u64>("running-time").unwrap(),
                        ));
                    }
                }
            }
            match sup.on_message(&msg, Instant::now()) {
                Some(actions) => handle(actions, &mut log, &mut pending),
                None => {
                    if let gst::MessageView::Error(e) = msg.view() {
                        panic!("pipeline error: {} ({:?})", e.error(), e.debug());
                    }
                    if let gst::MessageView::Eos(_) = msg.view() {
                        panic!("unexpected EOS at {:?}", t0.elapsed());
                    }
                }
            }
        }
        let now = Instant::now();
        let due: Vec<_> = pending.iter().filter(|(t, _)| *t <= now).cloned().collect();
        pending.retain(|(t, _)| *t > now);
        for (_, job) in due {
            let result = job.run();
            log.restarts += 1;
            let actions = sup.restart_done(job.branch, result, Instant::now());
            handle(actions, &mut log, &mut pending);
        }
        if last_poll.elapsed() >= Duration::from_secs(1) {
            last_poll = Instant::now();
            let actions = sup.poll(Instant::now());
            handle(actions, &mut log, &mut pending);
        }
    }
    assert!(
        braid_pipelines::send_eos(&pipeline),
        "EOS sent after the switches"
    );
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS reaches the file sink");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("error while draining: {} ({:?})", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    log.video = video.lock().unwrap().clone();
    log.video_out = video_out.lock().unwrap().clone();
    log.audio_out = audio_out.lock().unwrap().clone();
    log.audio = audio.lock().unwrap().clone();
    log
}

/// ffprobe's view of one stream.
#[derive(Debug, Clone)]
pub struct Probed {
    pub codec: String,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub r_frame_rate: String,
    pub packets: usize,
    pub sample_rate: Option<String>,
}

/// `ffprobe -show_streams -count_packets` of a file, video first.
pub fn ffprobe(path: &Path) -> Vec<Probed> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_packets",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut streams: Vec<Probed> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Probed {
            codec: s["codec_name"].as_str().unwrap_or("").to_owned(),
            width: s["width"].as_u64(),
            height: s["height"].as_u64(),
            r_frame_rate: s["r_frame_rate"].as_str().unwrap_or("").to_owned(),
            packets: s["nb_read_packets"]
                .as_str()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            sample_rate: s["sample_rate"].as_str().map(str::to_owned),
        })
        .collect();
    streams.sort_by_key(|s| s.width.is_none());
    streams
}

/// Video packet PTS of a TS, seconds, in order.
pub fn video_pts(path: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let mut v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Elementary streams of the PMT of a TS: (stream_type, has an `Opus` registration
/// descriptor).
pub fn pmt_streams(path: &Path) -> Vec<(u8, bool)> {
    let data = std::fs::read(path).unwrap();
    let packets: Vec<&[u8]> = data.chunks(188).filter(|p| p.len() == 188).collect();
    let section = |pid: u16| -> Option<Vec<u8>> {
        for p in &packets {
            let this = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
            if this != pid || p[1] & 0x40 == 0 {
                continue;
            }
            let mut off = 4;
            if p[3] & 0x20 != 0 {
                off += 1 + usize::from(p[4]);
            }
            let pointer = usize::from(p[off]);
            let s = &p[off + 1 + pointer..];
            let len = (usize::from(s[1] & 0x0f) << 8) | usize::from(s[2]);
            return Some(s[..(3 + len).min(s.len())].to_vec());
        }
        None
    };
    let pat = section(0).expect("a PAT");
    let pmt_pid = (u16::from(pat[10] & 0x1f) << 8) | u16::from(pat[11]);
    let pmt = section(pmt_pid).expect("a PMT");
    let section_end = pmt.len() - 4; // CRC
    let info_len = (usize::from(pmt[10] & 0x0f) << 8) | usize::from(pmt[11]);
    let mut i = 12 + info_len;
    let mut out = Vec::new();
    while i + 5 <= section_end {
        let stype = pmt[i];
        let es_len = (usize::from(pmt[i + 3] & 0x0f) << 8) | usize::from(pmt[i + 4]);
        let desc = &pmt[i + 5..(i + 5 + es_len).min(section_end)];
        let opus = desc.windows(6).any(|w| w[0] == 0x05 && &w[2..6] == b"Opus");
        out.push((stype, opus));
        i += 5 + es_len;
    }
    out
}

/// TS continuity check with the project's checker: (cc_errors, packets).
pub fn continuity(path: &Path) -> (u64, u64) {
    let mut c = ristbond_core::ts::ContinuityChecker::new();
    c.push(&std::fs::read(path).unwrap());
    let r = c.report();
    assert_eq!(r.sync_errors, 0, "TS sync errors in {}", path.display());
    (r.cc_errors, r.packets)
}

pub fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("braid-pipelines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}
