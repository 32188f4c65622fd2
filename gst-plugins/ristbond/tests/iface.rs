//! `?iface=` (SO_BINDTODEVICE) end to end, over real network namespaces and veth pairs.
//!
//! Test bed (one per test, names carry the test's pid and a tag, removed by a Drop
//! guard even when the test panics):
//!
//! ```text
//!   namespace TX                                   namespace RX
//!   ta (10.201.1.1/24) ===== veth pair A ===== ra (10.201.1.2/24)
//!   tb (10.201.2.1/24) ===== veth pair B ===== rb (10.201.2.2/24)
//!                                               lo: 10.201.0.1/32 (the receiver)
//!   routes to 10.201.0.1: via ra on ta metric 10, via rb on tb metric 20
//! ```
//!
//! As on a field unit with one default route per modem, the receiver is reachable over
//! both interfaces, and without SO_BINDTODEVICE every packet takes the best route (ta).
//! The sender (`gst-launch-1.0 … ! ristbondsink`) runs in TX and the receiver
//! (`ristbondsrc ! filesink`) in RX, both with `GST_PLUGIN_PATH` at the plugin built for
//! these tests. The interfaces' `tx_packets` counters, compared with the sink's per-link
//! RTP counts, show which interface carried each link's RTP and RTCP.
//!
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for `ip netns`): otherwise these tests
//! print "skipped: needs root" and pass. The unknown-interface error tests need nothing.

mod common;

use std::time::Duration;

use common::netns::*;
use gst::prelude::*;

#[test]
fn bound_links_each_leave_by_their_own_interface() {
    if !can_run("bound_links_each_leave_by_their_own_interface") {
        return;
    }
    let bed = TestBed::new('s');
    // The sender runs with the agent unit's privileges: an ordinary user whose only
    // capability is CAP_NET_RAW. (Linux >= 5.7 lets any process bind a fresh socket
    // to a device; older kernels, like some vendor BSP kernels of ARM boards, need
    // CAP_NET_RAW.)
    let caps = in_ns(
        &bed.tx,
        &[
            SETPRIV_USER,
            &["grep", "-E", "^(Uid|CapEff):", "/proc/self/status"],
        ]
        .concat(),
    );
    assert!(caps.contains(&format!("Uid:\t{NOBODY}\t")), "{caps}");
    assert!(caps.contains("CapEff:\t0000000000002000"), "{caps}");
    let query = [0, 1].map(|i| format!("?iface={}", bed.tx_if[i]));
    let run = run(
        &bed,
        FRAMES,
        As::UserWithNetRaw,
        [&query[0], &query[1]],
        ["", ""],
        || {},
    );
    assert_eq!(run.send_errors, [0, 0]);
    assert_complete(&run);

    assert_each_link_left_by_its_interface(&bed, &run);
}

#[test]
fn unbound_links_all_leave_by_the_routed_interface() {
    if !can_run("unbound_links_all_leave_by_the_routed_interface") {
        return;
    }
    // The negative control of the test above: same pipelines without `?iface=`.
    let bed = TestBed::new('u');
    let run = run(&bed, FRAMES, As::Root, ["", ""], ["", ""], || {});
    assert_eq!(run.send_errors, [0, 0]);
    assert_complete(&run);
    let total: u64 = run.rtp_sent.iter().sum();
    assert!(
        run.rtp_sent.iter().all(|&n| n * 5 >= total),
        "both links carry media: {:?}",
        run.rtp_sent
    );
    assert!(
        run.tx_packets[0] >= total,
        "{} sent {} packets, fewer than the {total} RTP packets of both links",
        bed.tx_if[0],
        run.tx_packets[0]
    );
    assert!(
        run.tx_packets[1] <= 5,
        "{} (not the best route) sent {} packets",
        bed.tx_if[1],
        run.tx_packets[1]
    );
}

#[test]
fn bound_receiver_link_ignores_its_port_on_another_interface() {
    if !can_run("bound_receiver_link_ignores_its_port_on_another_interface") {
        return;
    }
    // The sender is unbound, so both links arrive on ra. The receiver's link 0 is bound
    // to ra (where its packets arrive) and link 1 to rb (where they do not).
    let bed = TestBed::new('r');
    let query = [0, 1].map(|i| format!("?iface={}", bed.rx_if[i]));
    let run = run(
        &bed,
        FRAMES,
        As::Root,
        ["", ""],
        [&query[0], &query[1]],
        || {},
    );
    assert_eq!(run.send_errors, [0, 0]);
    assert!(
        run.tx_packets[1] <= 5,
        "{} sent {} packets",
        bed.tx_if[1],
        run.tx_packets[1]
    );
    // Link 1's sender was heard of by nobody, yet it sent media (1 s of probing).
    assert!(run.rtp_sent[1] >= 10, "link 1 sent {:?}", run.rtp_sent);
    assert_eq!(
        run.rtp_received[1], 0,
        "the receiver link bound to {} took packets that arrived on {}",
        bed.rx_if[1], bed.rx_if[0]
    );
    assert!(
        run.rtp_received[0] >= run.rtp_sent[0] * 9 / 10,
        "received {:?} of {:?}",
        run.rtp_received,
        run.rtp_sent
    );
}

/// Start error of `factory` (with a fakesink after a source) with `property` = `value`.
fn start_error_of(factory: &str, property: &str, value: &str) -> String {
    common::init();
    let pipeline = gst::Pipeline::new();
    let element = gst::ElementFactory::make(factory)
        .property(property, value)
        .build()
        .unwrap();
    let fakesink = gst::ElementFactory::make("fakesink").build().unwrap();
    pipeline.add(&element).unwrap();
    if factory == "ristbondsrc" {
        pipeline.add(&fakesink).unwrap();
        element.link(&fakesink).unwrap();
    }
    common::start_error(&pipeline).unwrap_or_else(|| panic!("{factory} {value}: must fail"))
}

#[test]
fn unknown_interface_is_an_element_error_naming_it() {
    let port = common::free_port_pair(24_400);
    for (factory, property, value) in [
        (
            "ristbondsink",
            "links",
            format!("rist://127.0.0.1:{port}?iface=doesnotexist0"),
        ),
        (
            "ristbondsink",
            "config",
            format!(
                "version = 1\n[[links]]\nid = 3\nuri = \"rist://127.0.0.1:{port}\"\n\
                 interface = \"doesnotexist0\"\n"
            ),
        ),
        (
            "ristbondsrc",
            "links",
            format!("rist://@127.0.0.1:{port}?iface=doesnotexist0"),
        ),
    ] {
        let err = start_error_of(factory, property, &value);
        eprintln!("{factory}: {err}");
        assert!(err.contains("\"doesnotexist0\""), "{factory}: {err}");
        assert!(
            err.contains("no such network interface"),
            "{factory}: {err}"
        );
        assert!(err.contains("SO_BINDTODEVICE"), "{factory}: {err}");
        assert!(err.contains("RTP socket"), "{factory}: {err}");
    }
}

#[test]
fn overlong_interface_name_is_refused_not_truncated() {
    // SO_BINDTODEVICE would silently cut the name at 15 bytes (IFNAMSIZ - 1), which may
    // name another interface; the elements refuse it instead.
    let port = common::free_port_pair(24_500);
    for (factory, value) in [
        (
            "ristbondsink",
            format!("rist://127.0.0.1:{port}?iface=lo-but-far-too-long"),
        ),
        (
            "ristbondsrc",
            format!("rist://@127.0.0.1:{port}?iface=lo-but-far-too-long"),
        ),
    ] {
        let err = start_error_of(factory, "links", &value);
        assert!(err.contains("\"lo-but-far-too-long\""), "{factory}: {err}");
        assert!(err.contains("invalid interface name"), "{factory}: {err}");
        assert!(err.contains("15 bytes"), "{factory}: {err}");
    }
}

#[test]
fn live_link_on_unknown_interface_is_refused_and_the_running_links_go_on() {
    // The agent's `stream.links.update` sets `links` while PLAYING; a modem interface
    // that is not up yet must be a warning naming it, and the links already running
    // must keep the stream.
    common::init();
    let port = common::free_port_pair(24_600);
    let other = common::free_port_pair(port + 2);
    let rtp = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let rtp_other = std::net::UdpSocket::bind(("127.0.0.1", other)).unwrap();
    for s in [&rtp, &rtp_other] {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    }
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src caps=video/mpegts,systemstream=true format=time \
         ! ristbondsink name=sink links=rist://127.0.0.1:{port} eos-linger=0 sync=false"
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
    let mut buf = [0u8; 2048];
    appsrc
        .push_buffer(gst::Buffer::from_slice(common::ts_packets(7, 1)))
        .unwrap();
    rtp.recv_from(&mut buf).expect("RTP before the update");

    let links = format!("rist://127.0.0.1:{port},rist://127.0.0.1:{other}?iface=doesnotexist0");
    pipeline
        .by_name("sink")
        .unwrap()
        .set_property("links", &links);
    let bus = pipeline.bus().unwrap();
    let warning = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(5),
            &[gst::MessageType::Warning, gst::MessageType::Error],
        )
        .expect("a warning for the refused update");
    let text = match warning.view() {
        gst::MessageView::Warning(w) => format!("{} {:?}", w.error(), w.debug()),
        other => panic!("expected a warning, got {other:?}"),
    };
    assert!(text.contains("\"doesnotexist0\""), "{text}");
    assert!(text.contains("no such network interface"), "{text}");
    assert!(
        !text.contains("ErrorMessage"),
        "a plain text, not a Debug dump: {text}"
    );

    // The running link still carries the stream, the refused one carries nothing.
    for i in 0..20 {
        appsrc
            .push_buffer(gst::Buffer::from_slice(common::ts_packets(7, 0x80 | i)))
            .unwrap();
    }
    let mut fills = Vec::new();
    while fills.len() < 20 {
        let (n, _) = rtp
            .recv_from(&mut buf)
            .expect("RTP after the refused update");
        if n == 12 + 1316 {
            fills.push(buf[12 + 4]);
        }
    }
    assert!(
        fills.contains(&0x93),
        "the last buffer went out: {fills:x?}"
    );
    rtp_other
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        rtp_other.recv_from(&mut buf).is_err(),
        "the refused link sent"
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn bound_link_comes_back_when_its_interface_is_created_again() {
    if !can_run("bound_link_comes_back_when_its_interface_is_created_again") {
        return;
    }
    // A modem reset: link 1's interface disappears for 1 s and an interface of the same
    // name comes back (another index). The sink reopens the link on it.
    let bed = TestBed::new('c');
    let query = [0, 1].map(|i| format!("?iface={}", bed.tx_if[i]));
    let before = bed.tx_packets();
    let run = run(
        &bed,
        240,
        As::Root,
        [&query[0], &query[1]],
        ["", ""],
        || {
            bed.wait_streaming(1, before, 20, Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(500));
            bed.del_pair(1);
            std::thread::sleep(Duration::from_millis(1000));
            bed.add_pair(1);
        },
    );
    // The reopened link may count a few errors (ENETUNREACH) if it opened after the
    // interface came back but before its address and route did, as with a real modem.
    let links = common::links_of(&run.sink_stats);
    assert_eq!(links[1].get::<&str>("state"), Ok("Live"), "{}", links[1]);
    // Counted since the reopen (a reopened link starts over).
    assert!(
        run.rtp_sent[1] >= 50,
        "link 1 after the reopen: {:?}",
        run.rtp_sent
    );
    assert!(
        run.tx_after[1] > run.rtp_sent[1],
        "the new {} sent {} packets, link 1 {} RTP packets since it came back",
        bed.tx_if[1],
        run.tx_after[1],
        run.rtp_sent[1]
    );
    assert_complete(&run);
}
