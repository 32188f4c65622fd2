//! `ristbondsrc` unit-level tests: properties, start errors, reception from a plain
//! UDP sender, idle-timeout EOS.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use gst::prelude::*;

fn src_pipeline(links: &str) -> gst::Pipeline {
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("ristbondsrc")
        .property("links", links)
        .build()
        .unwrap();
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    pipeline.add_many([&src, &sink]).unwrap();
    src.link(&sink).unwrap();
    pipeline
}

#[test]
fn src_property_defaults() {
    common::init();
    let src = gst::ElementFactory::make("ristbondsrc").build().unwrap();
    assert_eq!(src.property::<String>("links"), "");
    assert_eq!(src.property::<u32>("latency"), 1000);
    assert_eq!(src.property::<u32>("stats-interval"), 1000);
    assert_eq!(src.property::<u32>("idle-timeout"), 0);
    assert!(!src.property::<String>("cname").is_empty());
    assert!(src.property::<bool>("do-timestamp"));
    let caps = src.static_pad("src").unwrap().pad_template_caps();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.name(), "video/mpegts");
    assert_eq!(s.get::<i32>("packetsize"), Ok(188));
}

#[test]
fn src_without_links_fails_at_start() {
    common::init();
    let err = common::start_error(&src_pipeline("")).expect("must fail");
    assert!(err.contains("No links"), "{err}");
}

#[test]
fn src_destination_uri_is_rejected() {
    common::init();
    let err = common::start_error(&src_pipeline("rist://127.0.0.1:5000")).expect("must fail");
    assert!(err.contains("listen"), "{err}");
}

#[test]
fn src_port_in_use_is_a_clear_error() {
    common::init();
    let port = common::free_port_pair(22_100);
    let _taken = UdpSocket::bind(("127.0.0.1", port + 1)).unwrap();
    let err = common::start_error(&src_pipeline(&format!("rist://@127.0.0.1:{port}")))
        .expect("must fail");
    assert!(err.contains(&(port + 1).to_string()), "{err}");
    assert!(err.contains("RTCP"), "{err}");
}

/// A hand-made RTP packet (RFC 3550 §5.1) with PT 33.
fn rtp_packet(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 33];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[test]
fn src_outputs_plain_rtp_in_order_and_ends_on_idle_timeout() {
    common::init();
    let port = common::free_port_pair(22_200);
    let pipeline = gst::parse::launch(&format!(
        "ristbondsrc links=rist://@127.0.0.1:{port} latency=200 idle-timeout=500 \
         stats-interval=100 ! appsink name=out sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let received = common::collect_appsink(&pipeline);

    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Packets 0..20, with 5 and 6 swapped and 9 duplicated.
        let mut order: Vec<u16> = (0..20).collect();
        order.swap(5, 6);
        order.insert(10, 9);
        for seq in order {
            let payload = common::ts_packets(7, seq as u8);
            socket
                .send_to(
                    &rtp_packet(1000 + seq, 0x1234_5670, &payload),
                    ("127.0.0.1", port),
                )
                .unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let messages = common::run_to_eos(&pipeline, Duration::from_secs(10));
    sender.join().unwrap();

    let received = received.lock().unwrap();
    let expected: Vec<u8> = (0..20u16)
        .flat_map(|seq| common::ts_packets(7, seq as u8))
        .collect();
    assert_eq!(received.len(), expected.len());
    assert!(*received == expected, "payloads in sequence order");

    let stats = common::last_stats(&messages).expect("ristbond-stats");
    assert_eq!(common::u64_field(&stats, "packets-delivered"), 20);
    assert_eq!(common::u64_field(&stats, "packets-lost"), 0);
    assert_eq!(common::u64_field(&stats, "duplicates"), 1);
    let links = common::links_of(&stats);
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].get::<u64>("received-packets"), Ok(21));
}

#[test]
fn src_stops_promptly_while_waiting_for_data() {
    // unlock() must wake create() when nothing arrives.
    common::init();
    let port = common::free_port_pair(22_300);
    let pipeline = src_pipeline(&format!("rist://@127.0.0.1:{port}"));
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "stopping took {:?}",
        t0.elapsed()
    );
    // The ports are free again.
    UdpSocket::bind(("127.0.0.1", port)).expect("RTP port released");
    UdpSocket::bind(("127.0.0.1", port + 1)).expect("RTCP port released");
}
