//! Interop smoke test: `ristbondsink` (one link) → GStreamer's own `ristsrc` (RIST
//! Simple Profile, VSF TR-06-1) → tsdemux → avdec_h264: the stream decodes.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gst::prelude::*;

#[test]
fn ristsrc_decodes_what_ristbondsink_sends() {
    common::init();
    if gst::ElementFactory::find("ristsrc").is_none() {
        panic!("ristsrc (gstreamer1.0-plugins-bad) is not installed");
    }
    let port = common::free_port_pair(24_000);
    const FRAMES: u64 = 90;

    let receiver = gst::parse::launch(&format!(
        "ristsrc address=127.0.0.1 port={port} receiver-buffer=300 ! rtpmp2tdepay \
         ! tsdemux ! h264parse ! avdec_h264 ! fakesink name=out sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let frames = Arc::new(AtomicU64::new(0));
    {
        let frames = frames.clone();
        let pad = receiver.by_name("out").unwrap().static_pad("sink").unwrap();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            frames.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    }
    receiver.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let sender = gst::parse::launch(&format!(
        "{} ! ristbondsink links=rist://127.0.0.1:{port} latency=300 stats-interval=200",
        common::encode_chain(FRAMES as u32)
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sender_messages = common::run_to_eos(&sender, Duration::from_secs(20));

    // ristsrc never sends EOS: wait (bounded) for the decoder to catch up.
    let deadline = Instant::now() + Duration::from_secs(3);
    while frames.load(Ordering::Relaxed) < FRAMES && Instant::now() < deadline {
        if let Some(msg) = receiver.bus().unwrap().timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Error],
        ) {
            panic!("receiver error: {msg:?}");
        }
    }
    receiver.set_state(gst::State::Null).unwrap();

    let decoded = frames.load(Ordering::Relaxed);
    eprintln!("decoded {decoded} of {FRAMES} frames");
    assert!(decoded > 0, "ristsrc output did not decode");
    // On loopback without loss nearly everything arrives (the first frames before the
    // first key frame may be skipped by the decoder).
    assert!(
        decoded >= FRAMES * 2 / 3,
        "only {decoded} of {FRAMES} frames decoded"
    );

    let stats = common::last_stats(&sender_messages).expect("sink ristbond-stats");
    eprintln!("sink stats: {stats}");
    assert!(common::u64_field(&stats, "packets-sent") > 0);
}
