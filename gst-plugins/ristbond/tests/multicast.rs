//! Multicast links (`rist://GROUP:PORT?miface=IF`, `rist://@GROUP:PORT?miface=IF`) end
//! to end, over the network-namespace test bed of `common::netns` (two namespaces, two
//! veth pairs; see iface.rs).
//!
//! TX's multicast route (224.0.0.0/4) goes through `ta`, so a socket that names no
//! interface sends the groups there; `miface=` must override it. The receivers join
//! their groups on the RX interface the packets arrive on. The interfaces' `tx_packets`
//! counters, against the sink's per-link RTP counts, show which interface carried
//! what. Besides our sink and source, GStreamer's `ristsrc` (`address=GROUP
//! multicast-iface=IF`) receives our multicast and GStreamer's `ristsink` sends
//! multicast to ours: both send their RTCP to GROUP:PORT+1, where the other side joined.
//!
//! Needs root (namespaces); otherwise these tests print "skipped: needs root" and pass.
//! The unknown-interface error test needs nothing.

mod common;

use std::time::{Duration, Instant};

use common::netns::*;
use gst::prelude::*;
use ristbond_core::ts::ContinuityChecker;

/// Frames of the test encode (30 fps): 3 s of stream, ~190 RTP packets/s.
const MC_FRAMES: u32 = 90;

/// Packets an interface may send besides a link's traffic: IGMP membership reports when
/// a socket joins (2, RFC 3376 robustness) and leaves (2), and one spare.
const IGMP_ALLOWANCE: u64 = 5;

/// The two test groups (link 0, link 1); RTP on [`PORTS`], RTCP on + 1.
const GROUPS: [&str; 2] = ["239.201.1.1", "239.201.1.2"];

#[test]
fn miface_picks_the_interface_each_multicast_link_leaves_by() {
    if !can_run("miface_picks_the_interface_each_multicast_link_leaves_by") {
        return;
    }
    let bed = TestBed::new('m');
    bed.route_multicast(0);
    // miface= needs no privilege (IP_MULTICAST_IF, unlike SO_BINDTODEVICE): the sender
    // runs as a user without any capability.
    let sink_links = format!(
        "rist://{}:{}?miface={}&ttl=2,rist://{}:{}?miface={}",
        GROUPS[0], PORTS[0], bed.tx_if[0], GROUPS[1], PORTS[1], bed.tx_if[1]
    );
    let src_links = format!(
        "rist://@{}:{}?miface={},rist://@{}:{}?miface={}",
        GROUPS[0], PORTS[0], bed.rx_if[0], GROUPS[1], PORTS[1], bed.rx_if[1]
    );
    let run = run_links(&bed, MC_FRAMES, As::User, &sink_links, &src_links, || {});
    assert_eq!(run.send_errors, [0, 0]);
    assert_complete(&run);
    let links = common::links_of(&run.sink_stats);
    for (i, link) in links.iter().enumerate() {
        // The receiver's RTCP reached the sink through the group (GROUP:PORT+1, joined
        // on miface): without it the link would not be live.
        assert_eq!(link.get::<&str>("state"), Ok("Live"), "{link}");
        assert_eq!(
            link.get::<&str>("interface"),
            Ok(bed.tx_if[i].as_str()),
            "{link}"
        );
    }
    assert_each_link_left_by_its_interface(&bed, &run);
}

#[test]
fn without_miface_multicast_follows_the_route() {
    if !can_run("without_miface_multicast_follows_the_route") {
        return;
    }
    // The negative control of the test above: same groups, no miface= on the sender,
    // so both links take TX's multicast route (ta); the receiver joins both on ra.
    let bed = TestBed::new('n');
    bed.route_multicast(0);
    let sink_links = format!(
        "rist://{}:{},rist://{}:{}",
        GROUPS[0], PORTS[0], GROUPS[1], PORTS[1]
    );
    let src_links = format!(
        "rist://@{}:{}?miface={},rist://@{}:{}?miface={}",
        GROUPS[0], PORTS[0], bed.rx_if[0], GROUPS[1], PORTS[1], bed.rx_if[0]
    );
    let run = run_links(&bed, MC_FRAMES, As::User, &sink_links, &src_links, || {});
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
        run.tx_packets[1] <= IGMP_ALLOWANCE,
        "{} (not the multicast route) sent {} packets",
        bed.tx_if[1],
        run.tx_packets[1]
    );
}

#[test]
fn multicast_link_comes_back_when_its_miface_is_created_again() {
    if !can_run("multicast_link_comes_back_when_its_miface_is_created_again") {
        return;
    }
    // A modem reset under a multicast link: link 1's interface disappears for 1 s and
    // one of the same name comes back (another index). Its sends fail (ENETUNREACH)
    // and the sink reopens the link on the new interface. (The receiver's link 1 was
    // joined on the old rb and does not rejoin: link 0 and the failover resends carry
    // the stream.)
    let bed = TestBed::new('k');
    bed.route_multicast(0);
    let sink_links = format!(
        "rist://{}:{}?miface={},rist://{}:{}?miface={}",
        GROUPS[0], PORTS[0], bed.tx_if[0], GROUPS[1], PORTS[1], bed.tx_if[1]
    );
    let src_links = format!(
        "rist://@{}:{}?miface={},rist://@{}:{}?miface={}",
        GROUPS[0], PORTS[0], bed.rx_if[0], GROUPS[1], PORTS[1], bed.rx_if[1]
    );
    let before = bed.tx_packets();
    let run = run_links(&bed, 150, As::User, &sink_links, &src_links, || {
        bed.wait_streaming(1, before, 20, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(500));
        bed.del_pair(1);
        std::thread::sleep(Duration::from_millis(1000));
        bed.add_pair(1);
    });
    // Counted since the reopen (a reopened link starts over, so the failed sends on the
    // old interface are not counted): it carried media on the new interface (Probing,
    // then Down for want of RTCP), which sent them.
    assert_eq!(run.send_errors[1], 0, "link 1 was not reopened");
    assert!(
        run.rtp_sent[1] >= 5,
        "link 1 after the reopen: {:?}",
        run.rtp_sent
    );
    assert!(
        run.tx_after[1] >= run.rtp_sent[1],
        "the new {} sent {} packets, link 1 {} RTP packets since it came back",
        bed.tx_if[1],
        run.tx_after[1],
        run.rtp_sent[1]
    );
    assert_complete(&run);
}

#[test]
fn ipv6_multicast_links_leave_by_their_miface() {
    if !can_run("ipv6_multicast_links_leave_by_their_miface") {
        return;
    }
    // IPv6 groups (ff15::/16: transient, site-local scope), IPV6_MULTICAST_IF and
    // IPV6_JOIN_GROUP by interface index; TX has no IPv6 multicast route at all, so
    // only miface= makes the links work.
    let bed = TestBed::new('6');
    bed.enable_ipv6();
    let groups = ["ff15::201:1", "ff15::201:2"];
    let sink_links = format!(
        "rist://[{}]:{}?miface={},rist://[{}]:{}?miface={}",
        groups[0], PORTS[0], bed.tx_if[0], groups[1], PORTS[1], bed.tx_if[1]
    );
    let src_links = format!(
        "rist://@[{}]:{}?miface={},rist://@[{}]:{}?miface={}",
        groups[0], PORTS[0], bed.rx_if[0], groups[1], PORTS[1], bed.rx_if[1]
    );
    let run = run_links(&bed, MC_FRAMES, As::User, &sink_links, &src_links, || {});
    assert_eq!(run.send_errors, [0, 0]);
    assert_complete(&run);
    let links = common::links_of(&run.sink_stats);
    for (i, link) in links.iter().enumerate() {
        assert_eq!(link.get::<&str>("state"), Ok("Live"), "{link}");
        assert!(run.rtp_received[i] >= run.rtp_sent[i] * 9 / 10);
        // Each interface carried its own link's RTP (plus RTCP, ND and MLD), and not
        // the other's.
        assert!(
            run.tx_packets[i] >= run.rtp_sent[i]
                && run.tx_packets[i] < run.rtp_sent[i] + run.rtp_sent[1 - i] / 2,
            "{} sent {} packets, link {i} {:?} RTP packets",
            bed.tx_if[i],
            run.tx_packets[i],
            run.rtp_sent
        );
    }
}

/// TX's `tx_packets` on interface `i` while `f` runs.
fn counted<T>(bed: &TestBed, i: usize, f: impl FnOnce() -> T) -> (T, u64) {
    let before = bed.tx_packets()[i];
    let out = f();
    (out, bed.tx_packets()[i].saturating_sub(before))
}

/// Wait until something in RX listens on `port` and `port + 1`, or `proc` exited.
fn wait_listening(bed: &TestBed, work: &Work, proc: &mut Proc, port: u16, log: &str) {
    let ready_by = Instant::now() + Duration::from_secs(30);
    while !(bed.rx_listens(port) && bed.rx_listens(port + 1)) {
        if let Some(status) = proc.0.try_wait().unwrap() {
            panic!("receiver exited ({status}):\n{}", work.log(log));
        }
        assert!(
            Instant::now() < ready_by,
            "receiver not listening after 30 s:\n{}",
            work.log(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The TS `received` is sound (no sync or continuity errors) and is `sent`, allowing
/// `slack` TS packets missing at the start (a receiver that locks on late).
fn assert_same_ts(what: &str, sent: &[u8], received: &[u8], slack: usize) {
    let mut cc = ContinuityChecker::new();
    cc.push(received);
    let report = cc.report();
    eprintln!(
        "{what}: sent {} bytes, received {} bytes, {report:?}",
        sent.len(),
        received.len()
    );
    assert!(sent.len() > 200 * 1316, "{what}: encode too small");
    assert_eq!(report.sync_errors, 0, "{what}: {report:?}");
    assert_eq!(report.cc_errors, 0, "{what}: {report:?}");
    assert!(
        received.len() + slack * 188 >= sent.len() && sent.ends_with(received),
        "{what}: received TS ({} bytes) is not the sent TS ({} bytes) or its tail",
        received.len(),
        sent.len()
    );
}

#[test]
fn gstreamer_ristsrc_receives_multicast_from_ristbondsink() {
    if !can_run("gstreamer_ristsrc_receives_multicast_from_ristbondsink") {
        return;
    }
    common::init();
    assert!(
        gst::ElementFactory::find("ristsrc").is_some(),
        "ristsrc (gstreamer1.0-plugins-bad) is not installed"
    );
    // Our sink sends on tb (miface=), not the routed ta; GStreamer's ristsrc joins on
    // rb and sends its RTCP to GROUP:PORT+1 there, where our sink joined on tb.
    let bed = TestBed::new('g');
    bed.route_multicast(0);
    let work = Work::new();
    let (group, port) = (GROUPS[0], PORTS[0]);
    let received = work.path("received.ts");
    // filesink unbuffered: ristsrc never ends, the receiver is killed.
    let mut receiver = work.launch(
        &bed.rx,
        As::Root,
        &format!(
            "ristsrc address={group} port={port} multicast-iface={} receiver-buffer=500 \
             ! rtpmp2tdepay ! filesink buffer-mode=2 location={}",
            bed.rx_if[1],
            received.display()
        ),
        "receiver.log",
    );
    wait_listening(&bed, &work, &mut receiver, port, "receiver.log");
    let sent = work.writable(As::User).join("sent.ts");
    let (status, tb_packets) = counted(&bed, 1, || {
        let mut sender = work.launch(
            &bed.tx,
            As::User,
            &format!(
                "{} ! tee name=t t. ! queue ! ristbondsink name=sink \
                 links=rist://{group}:{port}?miface={} latency=500 stats-interval=500 \
                 t. ! queue ! filesink location={}",
                common::encode_chain(MC_FRAMES),
                bed.tx_if[1],
                sent.display()
            ),
            "sender.log",
        );
        sender.wait("sender", Duration::from_secs(60))
    });
    assert!(
        status.success(),
        "sender failed:\n{}",
        work.log("sender.log")
    );
    // Let ristsrc's jitter buffer (500 ms) drain into the file.
    std::thread::sleep(Duration::from_millis(1500));
    if let Some(status) = receiver.0.try_wait().unwrap() {
        panic!("ristsrc exited ({status}):\n{}", work.log("receiver.log"));
    }
    drop(receiver);

    let stats = last_stats(&work.log("sender.log"));
    eprintln!("sink stats: {stats}");
    let links = common::links_of(&stats);
    // ristsrc's receiver reports (to the group, port + 1) reached our sink.
    assert_eq!(links[0].get::<&str>("state"), Ok("Live"), "{}", links[0]);
    let rtp_sent = common::u64_field(&links[0], "sent-packets");
    assert!(
        tb_packets >= rtp_sent,
        "{} sent {tb_packets} packets, the link {rtp_sent} RTP packets",
        bed.tx_if[1]
    );
    assert_same_ts(
        "ristbondsink -> ristsrc multicast",
        &std::fs::read(&sent).expect("sent.ts"),
        &std::fs::read(&received).expect("received.ts"),
        0,
    );
}

#[test]
fn ristbondsrc_receives_multicast_from_gstreamer_ristsink() {
    if !can_run("ristbondsrc_receives_multicast_from_gstreamer_ristsink") {
        return;
    }
    common::init();
    assert!(
        gst::ElementFactory::find("ristsink").is_some(),
        "ristsink (gstreamer1.0-plugins-bad) is not installed"
    );
    // GStreamer's ristsink sends the group on tb (its multicast-iface, and TX's
    // multicast route); our source joins on rb and sends RTCP to GROUP:PORT+1.
    let bed = TestBed::new('h');
    bed.route_multicast(1);
    let work = Work::new();
    let (group, port) = (GROUPS[1], PORTS[1]);
    let received = work.path("received.ts");
    let mut receiver = work.launch(
        &bed.rx,
        As::Root,
        &format!(
            "ristbondsrc links=rist://@{group}:{port}?miface={} latency=500 \
             stats-interval=500 idle-timeout=1500 ! filesink location={}",
            bed.rx_if[1],
            received.display()
        ),
        "receiver.log",
    );
    wait_listening(&bed, &work, &mut receiver, port, "receiver.log");
    let sent = work.path("sent.ts");
    // ristsink (1.22) never posts EOS: the sender runs until our source ends at its
    // idle timeout, then is killed.
    let sender = work.launch(
        &bed.tx,
        As::Root,
        &format!(
            "{} ! tee name=t t. ! queue ! rtpmp2tpay ! ristsink address={group} port={port} \
             multicast-iface={} sender-buffer=500 t. ! queue ! filesink location={}",
            common::encode_chain(MC_FRAMES),
            bed.tx_if[1],
            sent.display()
        ),
        "sender.log",
    );
    let status = receiver.wait("ristbondsrc (idle-timeout EOS)", Duration::from_secs(60));
    drop(sender);
    assert!(
        status.success(),
        "receiver failed ({status}):\n{}",
        work.log("receiver.log")
    );
    let stats = last_stats(&work.log("receiver.log"));
    eprintln!("src stats: {stats}");
    let links = common::links_of(&stats);
    assert!(
        common::u64_field(&links[0], "received-packets") > 200,
        "{stats}"
    );
    assert_same_ts(
        "ristsink multicast -> ristbondsrc",
        &std::fs::read(&sent).expect("sent.ts"),
        &std::fs::read(&received).expect("received.ts"),
        0,
    );
}

#[test]
fn unknown_multicast_interface_is_an_element_error_naming_it() {
    common::init();
    let port = common::free_port_pair(24_700);
    for (factory, value) in [
        (
            "ristbondsink",
            format!("rist://239.201.9.9:{port}?miface=doesnotexist0"),
        ),
        (
            "ristbondsrc",
            format!("rist://@239.201.9.9:{port}?miface=doesnotexist0"),
        ),
    ] {
        let pipeline = gst::Pipeline::new();
        let element = gst::ElementFactory::make(factory)
            .property("links", &value)
            .build()
            .unwrap();
        pipeline.add(&element).unwrap();
        if factory == "ristbondsrc" {
            let fakesink = gst::ElementFactory::make("fakesink").build().unwrap();
            pipeline.add(&fakesink).unwrap();
            element.link(&fakesink).unwrap();
        }
        let err = common::start_error(&pipeline)
            .unwrap_or_else(|| panic!("{factory} {value}: must fail"));
        eprintln!("{factory}: {err}");
        assert!(err.contains("\"doesnotexist0\""), "{factory}: {err}");
        assert!(err.contains("miface="), "{factory}: {err}");
        assert!(
            err.contains("no such network interface"),
            "{factory}: {err}"
        );
    }
}
