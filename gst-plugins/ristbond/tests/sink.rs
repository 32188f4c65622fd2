//! `ristbondsink` unit-level tests: properties, start errors, what goes on the wire
//! (RTP per RFC 3550 §5.1 with PT 33, TR-06-1 §5.2; RTCP SR per RFC 3550 §6.4.1).

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use gst::prelude::*;

fn sink_pipeline(props: &[(&str, &str)]) -> gst::Pipeline {
    let pipeline = gst::Pipeline::new();
    let sink = gst::ElementFactory::make("ristbondsink")
        .build()
        .expect("ristbondsink");
    for (k, v) in props {
        sink.set_property_from_str(k, v);
    }
    pipeline.add(&sink).unwrap();
    pipeline
}

#[test]
fn sink_property_defaults() {
    common::init();
    let sink = gst::ElementFactory::make("ristbondsink").build().unwrap();
    assert_eq!(sink.property::<String>("links"), "");
    assert_eq!(sink.property::<u32>("latency"), 1000);
    assert_eq!(sink.property::<u32>("stats-interval"), 1000);
    assert_eq!(sink.property::<String>("config"), "");
    assert_eq!(sink.property::<u32>("eos-linger"), 500);
    assert!(!sink.property::<String>("cname").is_empty());
    assert!(sink.property::<bool>("sync"));

    sink.set_property("links", "rist://127.0.0.1:5000");
    sink.set_property("latency", 250u32);
    sink.set_property("cname", "field-unit-1");
    assert_eq!(sink.property::<String>("links"), "rist://127.0.0.1:5000");
    assert_eq!(sink.property::<u32>("latency"), 250);
    assert_eq!(sink.property::<String>("cname"), "field-unit-1");

    let pspec = sink.find_property("latency").unwrap();
    assert!(pspec.blurb().unwrap().contains("milliseconds"));
    let caps = sink.static_pad("sink").unwrap().pad_template_caps();
    assert_eq!(
        caps.structure(0).unwrap().get::<bool>("systemstream"),
        Ok(true)
    );
}

#[test]
fn sink_without_links_fails_at_start() {
    common::init();
    let err = common::start_error(&sink_pipeline(&[])).expect("start must fail");
    assert!(err.contains("No links"), "{err}");
}

#[test]
fn sink_invalid_toml_config_fails_at_start() {
    common::init();
    let err =
        common::start_error(&sink_pipeline(&[("config", "links = [[[")])).expect("start must fail");
    assert!(err.contains("config"), "{err}");
    assert!(err.contains("TOML"), "{err}");
}

#[test]
fn sink_unsupported_config_version_fails_at_start() {
    common::init();
    let config = "version = 7\n[[links]]\nid = 0\nuri = \"rist://127.0.0.1:15100\"\n";
    let err = common::start_error(&sink_pipeline(&[("config", config)])).expect("must fail");
    assert!(err.contains("version 7"), "{err}");
}

#[test]
fn sink_invalid_links_fail_at_start() {
    common::init();
    for links in [
        "udp://127.0.0.1:5000",
        "rist://127.0.0.1:5001",
        "rist://127.0.0.1",
        "rist://127.0.0.1:5000,,rist://127.0.0.1:5002",
        "rist://@0.0.0.0:5000",
    ] {
        let err = common::start_error(&sink_pipeline(&[("links", links)]))
            .unwrap_or_else(|| panic!("{links} must fail"));
        assert!(err.contains("ink"), "{links}: {err}");
    }
}

#[test]
fn sink_config_links_are_used_when_links_is_empty() {
    common::init();
    let port = common::free_port_pair(21_100);
    let config = format!(
        "version = 1\n[[links]]\nid = 7\nuri = \"rist://127.0.0.1:{port}\"\n\
         [scheduler]\ndiscard_deadline_ms = 200\n"
    );
    let pipeline = sink_pipeline(&[("config", &config)]);
    assert_eq!(common::start_error(&pipeline), None);
}

#[test]
fn sink_unknown_interface_is_a_clear_error() {
    common::init();
    let err = common::start_error(&sink_pipeline(&[(
        "links",
        "rist://127.0.0.1:5000?iface=braidnope0",
    )]))
    .expect("must fail");
    assert!(err.contains("braidnope0"), "{err}");
    assert!(err.contains("SO_BINDTODEVICE"), "{err}");
}

#[test]
fn sink_single_buffer_is_one_rtp_packet() {
    common::init();
    let port = common::free_port_pair(21_200);
    let rtp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let rtcp = UdpSocket::bind(("127.0.0.1", port + 1)).unwrap();
    rtp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    rtcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();

    // The harness starts an element with a sink pad right away: configure it first.
    let sink = gst::ElementFactory::make("ristbondsink")
        .property("links", format!("rist://127.0.0.1:{port}"))
        .property("sync", false)
        .property("eos-linger", 0u32)
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&sink, Some("sink"), None);
    h.set_src_caps_str("video/mpegts,systemstream=true");

    let payload = common::ts_packets(7, 0xab);
    let mut buffer = gst::Buffer::from_slice(payload.clone());
    buffer
        .get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_seconds(1));
    assert_eq!(h.push(buffer), Ok(gst::FlowSuccess::Ok));

    let mut buf = [0u8; 2048];
    let (n, _) = rtp.recv_from(&mut buf).expect("an RTP datagram");
    let pkt = &buf[..n];
    assert_eq!(n, 12 + 1316, "RTP header + 7 TS packets");
    assert_eq!(pkt[0] >> 6, 2, "RTP version 2");
    assert_eq!(pkt[0] & 0x0f, 0, "no CSRC");
    assert_eq!(pkt[1] & 0x7f, 33, "payload type 33 (MP2T)");
    let ssrc = u32::from_be_bytes(pkt[8..12].try_into().unwrap());
    assert_eq!(ssrc & 1, 0, "original packets use an even SSRC");
    assert_eq!(&pkt[12..], &payload[..]);

    // Sender reports (RFC 3550 §6.4.1) arrive on PORT+1.
    let (n, _) = rtcp.recv_from(&mut buf).expect("an RTCP datagram");
    assert!(n >= 28, "SR is at least 28 bytes");
    assert_eq!(buf[0] >> 6, 2);
    assert_eq!(buf[1], 200, "first packet of a compound RTCP is an SR");
    assert_eq!(u32::from_be_bytes(buf[4..8].try_into().unwrap()), ssrc);

    // A buffer of 10 TS packets is cut into 7 + 3.
    let buffer = gst::Buffer::from_slice(common::ts_packets(10, 0xcd));
    assert_eq!(h.push(buffer), Ok(gst::FlowSuccess::Ok));
    let (n1, _) = rtp.recv_from(&mut buf).unwrap();
    let seq1 = u16::from_be_bytes([buf[2], buf[3]]);
    let (n2, _) = rtp.recv_from(&mut buf).unwrap();
    let seq2 = u16::from_be_bytes([buf[2], buf[3]]);
    assert_eq!((n1, n2), (12 + 7 * 188, 12 + 3 * 188));
    assert_eq!(seq2, seq1.wrapping_add(1));

    assert!(h.push_event(gst::event::Eos::new()));
}

#[test]
fn sink_survives_unreachable_destination() {
    // Nobody listens: ICMP port unreachable must not fail the pipeline.
    common::init();
    let port = common::free_port_pair(21_300);
    let pipeline = gst::parse::launch(&format!(
        "{} ! ristbondsink links=rist://127.0.0.1:{port} stats-interval=200 eos-linger=100",
        common::encode_chain(20)
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let messages = common::run_to_eos(&pipeline, Duration::from_secs(20));
    let stats = common::last_stats(&messages).expect("final ristbond-stats");
    assert!(common::u64_field(&stats, "packets-sent") > 0);
    let links = common::links_of(&stats);
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].get::<u32>("id"), Ok(0));
    assert_eq!(links[0].get::<&str>("state"), Ok("Probing"));
}

#[test]
fn sink_eos_linger_is_interrupted_by_shutdown() {
    // unlock() must end the EOS linger at once when the pipeline is stopped.
    common::init();
    let port = common::free_port_pair(21_400);
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src caps=video/mpegts,systemstream=true format=time \
         ! ristbondsink links=rist://127.0.0.1:{port} eos-linger=30000 sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let appsrc = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    appsrc
        .push_buffer(gst::Buffer::from_slice(common::ts_packets(7, 1)))
        .unwrap();
    appsrc.end_of_stream().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "stopping took {:?}",
        t0.elapsed()
    );
}
