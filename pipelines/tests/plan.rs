//! `stream.start` → plan → launch description / shell line / running pipeline.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use braid_pipelines::{PlanError, StreamPlan};
use braid_protocol::stream::StreamStart;
use gst::prelude::*;

fn start(json: serde_json::Value) -> StreamStart {
    serde_json::from_value(json).expect("test payload parses")
}

fn base(links: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "stream_id": "str_test1",
        "source": {"mode": "test", "resolution": "320x240", "framerate": 30},
        "encoder": {"bitrate_kbps": 800, "tune": "zerolatency", "keyint_max": 30},
        "destinations": [],
        "bonding_config": {"version": 1, "links": links,
                           "scheduler": {"discard_deadline_ms": 200}}
    })
}

fn two_links(p1: u16, p2: u16) -> serde_json::Value {
    serde_json::json!([
        {"id": 0, "uri": format!("rist://127.0.0.1:{p1}")},
        {"id": 1, "uri": format!("rist://127.0.0.1:{p2}")}
    ])
}

fn field_of(err: PlanError) -> String {
    match err {
        PlanError::Invalid { field, .. }
        | PlanError::NotFound { field, .. }
        | PlanError::Unsupported { field, .. } => field,
    }
}

/// A change to a valid payload that must make it invalid.
type Mutation = Box<dyn Fn(&mut serde_json::Value)>;

#[test]
fn invalid_fields_are_named() {
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "source.resolution",
            Box::new(|v| v["source"]["resolution"] = "1280by720".into()),
        ),
        (
            "source.resolution",
            Box::new(|v| v["source"]["resolution"] = "1281x720".into()),
        ),
        (
            "source.framerate",
            Box::new(|v| v["source"]["framerate"] = 0.into()),
        ),
        (
            "encoder.bitrate_kbps",
            Box::new(|v| v["encoder"]["bitrate_kbps"] = 5.into()),
        ),
        (
            "encoder.tune",
            Box::new(|v| v["encoder"]["tune"] = "fast please".into()),
        ),
        (
            "source.device",
            Box::new(|v| {
                v["source"] =
                    serde_json::json!({"mode": "v4l2", "resolution": "640x480", "framerate": 30})
            }),
        ),
        (
            "source.device",
            Box::new(|v| v["source"]["device"] = "/dev/video-none".into()),
        ),
        (
            "bonding_config.links",
            Box::new(|v| v["bonding_config"]["links"] = serde_json::json!([])),
        ),
        (
            "bonding_config.links[1].uri",
            Box::new(|v| v["bonding_config"]["links"][1]["uri"] = "rist://127.0.0.1:15001".into()),
        ),
        (
            "bonding_config.links[1].id",
            Box::new(|v| v["bonding_config"]["links"][1]["id"] = 0.into()),
        ),
        (
            "bonding_config.links[0].interface",
            Box::new(|v| v["bonding_config"]["links"][0]["interface"] = "wwan0; rm -rf /".into()),
        ),
        (
            "audio.codec",
            Box::new(|v| v["audio"] = serde_json::json!({"enabled": true, "codec": "mp3"})),
        ),
        ("stream_id", Box::new(|v| v["stream_id"] = "a b".into())),
    ];
    for (field, mutate) in cases {
        let mut v = base(two_links(15000, 15002));
        if field == "source.device" && v["source"]["mode"] == "test" {
            v["source"]["mode"] = "v4l2".into();
        }
        mutate(&mut v);
        let err = StreamPlan::from_start(&start(v.clone()), None)
            .expect_err(&format!("{field} must be refused: {v}"));
        assert_eq!(field_of(err), field, "payload {v}");
    }
}

#[test]
fn missing_media_is_not_found_and_escapes_are_refused() {
    let dir = std::env::temp_dir();
    let mut v = base(two_links(15000, 15002));
    v["source"] = serde_json::json!({"mode": "media", "path": "nope.mp4", "resolution": "640x360", "framerate": 25});
    let err = StreamPlan::from_start(&start(v.clone()), Some(&dir)).unwrap_err();
    assert!(matches!(err, PlanError::NotFound { .. }), "{err:?}");
    v["source"]["path"] = "../etc/passwd".into();
    let err = StreamPlan::from_start(&start(v), Some(&dir)).unwrap_err();
    assert!(matches!(err, PlanError::Invalid { .. }), "{err:?}");
}

#[test]
fn interface_becomes_iface_query() {
    let mut v = base(two_links(15000, 15002));
    v["bonding_config"]["links"][0]["interface"] = "wwan0".into();
    let plan = StreamPlan::from_start(&start(v), None).unwrap();
    assert_eq!(
        plan.links_property(),
        "rist://127.0.0.1:15000?iface=wwan0,rist://127.0.0.1:15002"
    );
}

/// The printed shell line, split by a real shell, gives back exactly the words of the
/// description the agent parses.
#[test]
fn shell_line_round_trips_through_sh() {
    let mut v = base(two_links(15000, 15002));
    v["audio"] = serde_json::json!({"enabled": true, "codec": "aac", "bitrate_kbps": 96});
    let plan = StreamPlan::from_start(&start(v), None).unwrap();
    let line = plan.launch_line();
    let args = line.strip_prefix("gst-launch-1.0 -e ").unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s\\n' {args}"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let words: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split_terminator('\n')
        .map(str::to_owned)
        .collect::<Vec<_>>();
    // TOML values span lines; compare the re-joined text instead of per-line words.
    assert_eq!(
        words.join("\n").replace('\n', " "),
        plan.launch_description().replace('\n', " ")
    );
}

fn init() {
    gst::init().unwrap();
    if gst::ElementFactory::find("ristbondsink").is_none() {
        gstristbond::plugin_register_static().unwrap();
    }
}

/// A plan builds into a real pipeline that sends RTP on both links.
#[test]
fn pipeline_runs_and_sends_on_both_links() {
    init();
    let socks: Vec<UdpSocket> = (0..2)
        .map(|_| {
            // Find a free even port pair.
            loop {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                let port = s.local_addr().unwrap().port();
                if port.is_multiple_of(2) && port < 65534 {
                    if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) {
                        drop(rtcp);
                        break s;
                    }
                }
            }
        })
        .collect();
    let ports: Vec<u16> = socks
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let mut v = base(two_links(ports[0], ports[1]));
    v["audio"] = serde_json::json!({"enabled": true, "codec": "aac"});
    let plan = StreamPlan::from_start(&start(v), None).unwrap();
    let pipeline = plan.build().expect("pipeline builds");
    pipeline.set_state(gst::State::Playing).unwrap();

    let mut counts = [0u32; 2];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline && counts.iter().any(|&c| c < 10) {
        for (i, s) in socks.iter().enumerate() {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            if let Ok(n) = s.recv(&mut buf) {
                assert!(n >= 12 + 188, "RTP datagram of {n} bytes");
                assert_eq!(buf[1] & 0x7f, 33, "payload type MP2T");
                counts[i] += 1;
            }
        }
        if let Some(msg) = pipeline
            .bus()
            .unwrap()
            .pop_filtered(&[gst::MessageType::Error])
        {
            panic!("pipeline error: {msg:?}");
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        counts.iter().all(|&c| c >= 10),
        "RTP on both links: {counts:?}"
    );
}
