//! Interop with librist (Debian `rist-tools` 0.2.7), a second independent RIST Simple
//! Profile (VSF TR-06-1) implementation, in both directions:
//!
//! - `ristbondsink` → `ristreceiver -p 0` → UDP → the test: the TS decodes and has no
//!   continuity errors;
//! - UDP → `ristsender -p 0` → `ristbondsrc`: every frame arrives, no continuity errors.

mod common;

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gst::prelude::*;
use ristbond_core::ts::ContinuityChecker;

const FRAMES: u32 = 150;

/// A librist tool process, killed when dropped.
struct Peer(Child);

impl Peer {
    fn spawn(tool: &str, args: &[&str]) -> Self {
        let child = Command::new(tool)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {tool} (Debian package rist-tools, installed by scripts/setup.sh): {e}")
            });
        Peer(child)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Decode the video of a TS held in memory; returns (frames, continuity errors).
fn decode(ts: &[u8]) -> (u64, u64) {
    let mut checker = ContinuityChecker::new();
    checker.push(ts);
    let report = checker.report();
    assert_eq!(report.sync_errors, 0, "TS sync errors");

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ts).unwrap();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! tsdemux ! h264parse ! avdec_h264 ! fakesink name=out sync=false",
        file.path().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let frames = Arc::new(AtomicU64::new(0));
    let counter = frames.clone();
    pipeline
        .by_name("out")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    common::run_to_eos(&pipeline, Duration::from_secs(30));
    (frames.load(Ordering::Relaxed), report.cc_errors)
}

#[test]
fn ristreceiver_decodes_what_ristbondsink_sends() {
    common::init();
    let port = common::free_port_pair(26_000);
    let out = UdpSocket::bind("127.0.0.1:0").unwrap();
    out.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let out_port = out.local_addr().unwrap().port();
    let _receiver = Peer::spawn(
        "ristreceiver",
        &[
            "-p",
            "0",
            "-i",
            &format!("rist://@127.0.0.1:{port}"),
            "-o",
            &format!("udp://127.0.0.1:{out_port}"),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));

    // Collect what ristreceiver hands out while the sender runs (paced in real time
    // by the sink's clock sync).
    let collector = std::thread::spawn(move || {
        let mut ts = Vec::new();
        let mut buf = [0u8; 2048];
        let mut last = Instant::now();
        while last.elapsed() < Duration::from_secs(3) {
            if let Ok(n) = out.recv(&mut buf) {
                ts.extend_from_slice(&buf[..n]);
                last = Instant::now();
            }
        }
        ts
    });
    let sender = gst::parse::launch(&format!(
        "{} ! ristbondsink links=rist://127.0.0.1:{port} latency=500",
        common::encode_chain(FRAMES)
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    common::run_to_eos(&sender, Duration::from_secs(30));
    let ts = collector.join().unwrap();

    let (frames, cc_errors) = decode(&ts);
    assert_eq!(cc_errors, 0, "continuity errors through ristreceiver");
    // librist drops what arrives before it has locked on to the flow (about 0.4 s
    // here); everything after that must decode.
    assert!(
        frames >= u64::from(FRAMES) * 3 / 4,
        "only {frames} of {FRAMES} frames decoded through ristreceiver"
    );
}

#[test]
fn ristbondsrc_receives_from_ristsender() {
    common::init();
    let port = common::free_port_pair(26_100);
    let input = common::free_port_pair(26_200);
    let receiver = gst::parse::launch(&format!(
        "ristbondsrc links=rist://@127.0.0.1:{port} latency=500 idle-timeout=1500 \
         ! appsink name=out sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let appsink = receiver
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    receiver.set_state(gst::State::Playing).unwrap();
    let _sender = Peer::spawn(
        "ristsender",
        &[
            "-p",
            "0",
            "-i",
            &format!("udp://127.0.0.1:{input}"),
            "-o",
            &format!("rist://127.0.0.1:{port}"),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));

    let source = gst::parse::launch(&format!(
        "{} ! udpsink host=127.0.0.1 port={input} sync=true",
        common::encode_chain(FRAMES)
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    common::run_to_eos(&source, Duration::from_secs(30));

    let mut ts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match appsink.try_pull_sample(gst::ClockTime::from_mseconds(200)) {
            Some(sample) => {
                let buffer = sample.buffer().unwrap().map_readable().unwrap();
                ts.extend_from_slice(&buffer);
            }
            None if appsink.is_eos() => break,
            None => {}
        }
    }
    receiver.set_state(gst::State::Null).unwrap();

    let (frames, cc_errors) = decode(&ts);
    assert_eq!(cc_errors, 0, "continuity errors from ristsender");
    assert_eq!(
        frames,
        u64::from(FRAMES),
        "every frame from ristsender decodes"
    );
}
