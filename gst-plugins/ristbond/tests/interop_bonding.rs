//! Bonded interop with GStreamer's own RIST elements (RIST Simple Profile, VSF
//! TR-06-1; gst-plugins-bad 1.22), two links each way:
//!
//! - `ristbondsink` (2 links) → `ristsrc bonding-addresses=…`;
//! - `ristsink bonding-method=round-robin` (2 links) → `ristbondsrc`.
//!
//! Each received TS must have no continuity errors (TR 101 290 1.4, checked with
//! `ristbond_core::ts::ContinuityChecker`) and must decode (tsdemux → avdec_h264).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use gst::prelude::*;

const FRAMES: u32 = 150;

/// Decode a TS file; returns the number of decoded video frames.
fn decoded_frames(path: &Path) -> u64 {
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! tsdemux ! h264parse ! avdec_h264 ! fakesink name=out sync=false",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let f = frames.clone();
    pipeline
        .by_name("out")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            f.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    common::run_to_eos(&pipeline, Duration::from_secs(30));
    frames.load(std::sync::atomic::Ordering::Relaxed)
}

/// Run a sender whose sink never posts EOS (GStreamer 1.22 `ristsink` does not):
/// until the EOS event leaves the element named `pay`, then 1 s more for the
/// last retransmissions.
fn run_until_eos_event(sender: &gst::Pipeline, pay: &str) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    sender
        .by_name(pay)
        .unwrap()
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data {
                if e.type_() == gst::EventType::Eos {
                    let _ = tx.lock().unwrap().send(());
                }
            }
            gst::PadProbeReturn::Ok
        });
    sender.set_state(gst::State::Playing).unwrap();
    let bus = sender.bus().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.try_recv().is_err() {
        assert!(
            Instant::now() < deadline,
            "sender did not finish within 30 s"
        );
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Error],
        ) {
            let _ = sender.set_state(gst::State::Null);
            panic!("sender error: {msg:?}");
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    sender.set_state(gst::State::Null).unwrap();
}

/// Check the TS received by `receiver` (appsink `out`) after `run_sender` ran:
/// no sync or continuity errors, most frames decode.
fn check_received(receiver: gst::Pipeline, run_sender: impl FnOnce(), what: &str) {
    let data = common::collect_appsink(&receiver);
    receiver.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    run_sender();
    // Neither receiver sends EOS when the sender stops: wait until the data stops
    // growing (the latency buffer drains), bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let len = data.lock().unwrap().len();
        if (len == last && len > 0) || Instant::now() > deadline {
            break;
        }
        last = len;
    }
    if let Some(msg) = receiver
        .bus()
        .unwrap()
        .pop_filtered(&[gst::MessageType::Error])
    {
        panic!("{what}: receiver error: {msg:?}");
    }
    receiver.set_state(gst::State::Null).unwrap();
    let ts = data.lock().unwrap().clone();
    let mut checker = ristbond_core::ts::ContinuityChecker::new();
    checker.push(&ts);
    let report = checker.report();
    eprintln!("{what}: {report:?}");
    assert!(
        report.packets > 1000,
        "{what}: only {} TS packets",
        report.packets
    );
    assert_eq!(report.sync_errors, 0, "{what}: TS sync errors");
    assert_eq!(report.cc_errors, 0, "{what}: TS continuity errors");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.ts");
    std::fs::write(&file, &ts).unwrap();
    let frames = decoded_frames(&file);
    eprintln!("{what}: decoded {frames} of {FRAMES} frames");
    assert!(
        frames >= u64::from(FRAMES) * 2 / 3,
        "{what}: only {frames} of {FRAMES} frames decoded"
    );
}

#[test]
fn ristsrc_bonding_receives_ristbondsink_over_two_links() {
    common::init();
    assert!(
        gst::ElementFactory::find("ristsrc").is_some(),
        "ristsrc (gstreamer1.0-plugins-bad) is not installed"
    );
    let p1 = common::free_port_pair(24_100);
    let p2 = common::free_port_pair(p1 + 2);
    let receiver = gst::parse::launch(&format!(
        "ristsrc bonding-addresses=127.0.0.1:{p1},127.0.0.1:{p2} receiver-buffer=500 \
         ! rtpmp2tdepay ! appsink name=out sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sender = gst::parse::launch(&format!(
        "{} ! ristbondsink links=rist://127.0.0.1:{p1},rist://127.0.0.1:{p2} latency=500 \
         eos-linger=500",
        common::encode_chain(FRAMES)
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    check_received(
        receiver,
        || {
            common::run_to_eos(&sender, Duration::from_secs(30));
        },
        "ristbondsink -> ristsrc (2 links)",
    );
}

#[test]
fn ristbondsrc_receives_ristsink_round_robin_over_two_links() {
    common::init();
    assert!(
        gst::ElementFactory::find("ristsink").is_some(),
        "ristsink (gstreamer1.0-plugins-bad) is not installed"
    );
    let p1 = common::free_port_pair(24_200);
    let p2 = common::free_port_pair(p1 + 2);
    let receiver = gst::parse::launch(&format!(
        "ristbondsrc links=rist://@127.0.0.1:{p1},rist://@127.0.0.1:{p2} latency=500 \
         ! appsink name=out sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sender = gst::parse::launch(&format!(
        "{} ! rtpmp2tpay name=pay ! ristsink bonding-addresses=127.0.0.1:{p1},127.0.0.1:{p2} \
         bonding-method=round-robin sender-buffer=500",
        common::encode_chain(FRAMES)
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    check_received(
        receiver,
        || run_until_eos_event(&sender, "pay"),
        "ristsink round-robin -> ristbondsrc (2 links)",
    );
}
