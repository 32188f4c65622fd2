//! Two-link loopback: x264 → mpegtsmux → ristbondsink → two UDP relays (one drops 5 %
//! of RTP datagrams) → ristbondsrc. The received TS must be byte-identical to the same
//! deterministic encode written straight to memory, recovered by NACK/retransmission
//! (RFC 4585 §6.2.1, TR-06-1 §5.3).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use ristbond_core::ts::ContinuityChecker;

const FRAMES: u32 = 150;
/// The relay drops only while the stream is between 0.5 s and 4.3 s (of 5 s).
/// Losing the very first or very last packets of a stream cannot be repaired by any
/// NACK-based receiver (nothing after them reveals the gap), so the relay is only armed
/// in the middle.
const ARMED_FROM: Duration = Duration::from_millis(500);
const ARMED_UNTIL: Duration = Duration::from_millis(4300);

fn reference_ts() -> Vec<u8> {
    let pipeline = gst::parse::launch(&format!(
        "{} ! appsink name=out sync=false",
        common::encode_chain(FRAMES)
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let data = common::collect_appsink(&pipeline);
    common::run_to_eos(&pipeline, Duration::from_secs(30));
    let data = data.lock().unwrap().clone();
    data
}

#[test]
fn two_links_one_lossy_deliver_the_complete_stream() {
    common::init();
    let reference = reference_ts();
    assert!(reference.len() > 100 * 1316, "reference encode too small");

    // Ports: sender → relay (RP0, RP1) → receiver (R0, R1), RTCP on +1 everywhere.
    let relay_ports = [
        common::free_port_pair(23_000),
        common::free_port_pair(23_100),
    ];
    let recv_ports = [
        common::free_port_pair(23_200),
        common::free_port_pair(23_300),
    ];
    let armed = Arc::new(AtomicBool::new(false));
    let never = Arc::new(AtomicBool::new(false));
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let mut relays = Vec::new();
    for link in 0..2 {
        let (rp, r) = (relay_ports[link], recv_ports[link]);
        let loss = if link == 0 { 0.05 } else { 0.0 };
        relays.push(common::Relay::start(
            addr(rp),
            addr(r),
            loss,
            0x5eed + link as u64,
            armed.clone(),
        ));
        relays.push(common::Relay::start(
            addr(rp + 1),
            addr(r + 1),
            0.0,
            1,
            never.clone(),
        ));
    }

    let receiver = gst::parse::launch(&format!(
        "ristbondsrc name=src links=\"rist://@127.0.0.1:{},rist://@127.0.0.1:{}\" \
         latency=1000 stats-interval=250 idle-timeout=1500 ! appsink name=out sync=false",
        recv_ports[0], recv_ports[1]
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let received = common::collect_appsink(&receiver);
    let receiver_thread = {
        let receiver = receiver.clone();
        std::thread::spawn(move || common::run_to_eos(&receiver, Duration::from_secs(40)))
    };
    std::thread::sleep(Duration::from_millis(300));

    let sender = gst::parse::launch(&format!(
        "{} ! ristbondsink name=sink links=\"rist://127.0.0.1:{},rist://127.0.0.1:{}\" \
         latency=1000 stats-interval=250",
        common::encode_chain(FRAMES),
        relay_ports[0],
        relay_ports[1]
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    {
        let armed = armed.clone();
        let pad = sender.by_name("sink").unwrap().static_pad("sink").unwrap();
        // The sink syncs to the clock, so wall-clock time since the first buffer tracks
        // the stream time.
        let first: Mutex<Option<Instant>> = Mutex::new(None);
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, _| {
                let elapsed = first
                    .lock()
                    .unwrap()
                    .get_or_insert_with(Instant::now)
                    .elapsed();
                armed.store(
                    elapsed >= ARMED_FROM && elapsed < ARMED_UNTIL,
                    Ordering::Relaxed,
                );
                gst::PadProbeReturn::Ok
            },
        );
    }
    let sender_messages = common::run_to_eos(&sender, Duration::from_secs(30));
    let receiver_messages = receiver_thread.join().expect("receiver pipeline");
    let dropped = relays[0].dropped.load(Ordering::Relaxed);
    for (i, r) in relays.iter().enumerate() {
        eprintln!(
            "relay {i}: forwarded {}, dropped {}",
            r.forwarded.load(Ordering::Relaxed),
            r.dropped.load(Ordering::Relaxed)
        );
    }
    drop(relays);

    // The relay really dropped packets, and the receiver recovered all of them.
    assert!(dropped > 5, "relay dropped only {dropped} datagrams");
    let src_stats = common::last_stats(&receiver_messages).expect("src ristbond-stats");
    eprintln!("src stats: {src_stats}");
    assert!(common::u64_field(&src_stats, "packets-recovered") > 0);
    assert_eq!(common::u64_field(&src_stats, "packets-lost"), 0);
    assert!(common::u64_field(&src_stats, "nacks-sent") > 0);
    let src_links = common::links_of(&src_stats);
    assert_eq!(src_links.len(), 2);
    for l in &src_links {
        assert!(l.get::<u64>("received-packets").unwrap() > 50, "{l}");
    }

    let sink_stats = common::last_stats(&sender_messages).expect("sink ristbond-stats");
    eprintln!("sink stats: {sink_stats}");
    assert!(common::u64_field(&sink_stats, "packets-retransmitted") > 0);
    let sink_links = common::links_of(&sink_stats);
    assert_eq!(sink_links.len(), 2);
    for l in &sink_links {
        assert!(l.get::<u64>("sent-packets").unwrap() > 50, "{l}");
        assert_ne!(l.get::<&str>("state").unwrap(), "Probing", "{l}");
    }
    let nacks: u64 = sink_links
        .iter()
        .map(|l| l.get::<u64>("nacks-received").unwrap())
        .sum();
    assert!(nacks > 0);

    let received = received.lock().unwrap();
    if *received != reference {
        let first_diff = received
            .iter()
            .zip(reference.iter())
            .position(|(a, b)| a != b);
        let dir = std::env::temp_dir();
        let _ = std::fs::write(dir.join("ristbond-loopback-received.ts"), &*received);
        let _ = std::fs::write(dir.join("ristbond-loopback-reference.ts"), &reference);
        eprintln!(
            "first difference at byte {first_diff:?}; both streams written to {}",
            dir.display()
        );
    }
    let mut cc = ContinuityChecker::new();
    cc.push(&received);
    let report = cc.report();
    assert_eq!(report.cc_errors, 0, "{report:?}");
    assert_eq!(report.sync_errors, 0, "{report:?}");
    assert_eq!(report.packets as usize, reference.len() / 188, "{report:?}");
    assert!(
        *received == reference,
        "received TS ({} bytes) differs from the reference ({} bytes)",
        received.len(),
        reference.len()
    );
}
