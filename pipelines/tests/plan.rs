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

/// A machine with chosen elements, recorded capture devices and sound cards.
struct FakeMachine {
    elements: Vec<&'static str>,
    /// Device node → recorded caps file under tests/fixtures.
    devices: Vec<(&'static str, &'static str)>,
    /// Device node → ALSA device of its sibling card.
    cards: Vec<(&'static str, &'static str)>,
}

impl FakeMachine {
    fn software() -> Self {
        FakeMachine {
            elements: vec![
                "x264enc",
                "x265enc",
                "avenc_aac",
                "opusenc",
                "alsasrc",
                "jpegdec",
            ],
            devices: vec![
                ("/dev/video0", "ms2109-hdmi-grabber.caps"),
                ("/dev/video2", "c920-webcam.caps"),
            ],
            cards: vec![("/dev/video0", "hw:CARD=MS2109,DEV=0")],
        }
    }
}

fn recorded_caps(file: &str) -> gst::Caps {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(file),
    )
    .unwrap();
    let mut caps = gst::Caps::new_empty();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        caps.get_mut().unwrap().append(
            line.parse::<gst::Caps>()
                .unwrap_or_else(|e| panic!("{line}: {e}")),
        );
    }
    caps
}

impl braid_pipelines::Machine for FakeMachine {
    fn has_element(&self, factory: &str) -> bool {
        self.elements.contains(&factory)
    }
    fn exists(&self, path: &std::path::Path) -> bool {
        self.devices
            .iter()
            .any(|(d, _)| std::path::Path::new(d) == path)
    }
    fn v4l2_modes(
        &self,
        device: &std::path::Path,
    ) -> Result<Vec<braid_pipelines::v4l2::V4l2Mode>, String> {
        let (_, file) = self
            .devices
            .iter()
            .find(|(d, _)| std::path::Path::new(d) == device)
            .ok_or("no such device")?;
        Ok(braid_pipelines::v4l2::modes_from_caps(&recorded_caps(file)))
    }
    fn sibling_audio(&self, device: &std::path::Path) -> Option<String> {
        self.cards
            .iter()
            .find(|(d, _)| std::path::Path::new(d) == device)
            .map(|(_, c)| (*c).to_owned())
    }
    fn media_info(&self, _: &std::path::Path) -> Result<braid_pipelines::MediaInfo, String> {
        Err("no media here".into())
    }
}

fn v4l2_payload(device: &str, res: &str, fps: u32) -> serde_json::Value {
    let mut v = base(two_links(15000, 15002));
    v["source"] =
        serde_json::json!({"mode": "v4l2", "device": device, "resolution": res, "framerate": fps});
    v
}

fn plan_on(v: serde_json::Value, m: &FakeMachine) -> Result<StreamPlan, PlanError> {
    StreamPlan::from_start_on(&start(v), None, m)
}

/// The recorded lists parse into the modes the devices have.
#[test]
fn recorded_capability_lists_parse() {
    gst::init().unwrap();
    let grabber =
        braid_pipelines::v4l2::modes_from_caps(&recorded_caps("ms2109-hdmi-grabber.caps"));
    assert_eq!(grabber.len(), 11);
    let webcam = braid_pipelines::v4l2::modes_from_caps(&recorded_caps("c920-webcam.caps"));
    assert_eq!(webcam.len(), 10, "the H.264 mode is not a capture choice");
}

/// MJPEG-only-at-full-rate HDMI grabber and a YUYV webcam: the mode chosen for each
/// request, as the launch line shows it.
#[test]
fn v4l2_negotiation_on_recorded_devices() {
    gst::init().unwrap();
    let m = FakeMachine::software();
    let cases = [
        // (device, request, fps, expected caps after v4l2src, decoder)
        (
            "/dev/video0",
            "1920x1080",
            30,
            "image/jpeg,width=1920,height=1080,framerate=30/1",
            Some("jpegdec"),
        ),
        // 25 is listed: exact rate, no rate conversion work.
        (
            "/dev/video0",
            "1920x1080",
            25,
            "image/jpeg,width=1920,height=1080,framerate=25/1",
            Some("jpegdec"),
        ),
        // 720p60 only in MJPEG.
        (
            "/dev/video0",
            "1280x720",
            60,
            "image/jpeg,width=1280,height=720,framerate=60/1",
            Some("jpegdec"),
        ),
        // Raw YUYV reaches 640x480@30: no decoder.
        (
            "/dev/video0",
            "640x480",
            30,
            "video/x-raw,format=YUY2,width=640,height=480,framerate=30/1",
            None,
        ),
        // Not offered: 1280x720@30 is (MJPEG); 1024x576 downscales from the smallest larger.
        (
            "/dev/video0",
            "1024x576",
            30,
            "image/jpeg,width=1024,height=768,framerate=30/1",
            Some("jpegdec"),
        ),
        // Webcam: YUYV 1080p only at 5/s, so 1080p30 is MJPEG.
        (
            "/dev/video2",
            "1920x1080",
            30,
            "image/jpeg,width=1920,height=1080,framerate=30/1",
            Some("jpegdec"),
        ),
        // ... and 1080p5 is raw.
        (
            "/dev/video2",
            "1920x1080",
            5,
            "video/x-raw,format=YUY2,width=1920,height=1080,framerate=5/1",
            None,
        ),
        // 720p at 10/s: raw wins at the same size and rate.
        (
            "/dev/video2",
            "1280x720",
            10,
            "video/x-raw,format=YUY2,width=1280,height=720,framerate=10/1",
            None,
        ),
        // 640x360@30 raw exists.
        (
            "/dev/video2",
            "640x360",
            30,
            "video/x-raw,format=YUY2,width=640,height=360,framerate=30/1",
            None,
        ),
        // 25/s is not listed at 640x360: the next rate above (30), videorate drops.
        (
            "/dev/video2",
            "640x360",
            25,
            "video/x-raw,format=YUY2,width=640,height=360,framerate=30/1",
            None,
        ),
    ];
    for (dev, res, fps, caps, dec) in cases {
        let plan = plan_on(v4l2_payload(dev, res, fps), &m)
            .unwrap_or_else(|e| panic!("{dev} {res}@{fps}: {e}"));
        let desc = plan.launch_description();
        let expect = match dec {
            Some(d) => format!("! {caps} ! {d} ! deinterlace !"),
            None => format!("! {caps} ! deinterlace !"),
        };
        assert!(
            desc.contains(&expect),
            "{dev} {res}@{fps}: want `{expect}` in\n{desc}"
        );
        assert!(
            desc.contains(&format!("v4l2src name=vsrc device={dev} !")),
            "{desc}"
        );
    }
    // A hardware JPEG decoder is preferred when the machine has one.
    let mut m = FakeMachine::software();
    m.elements.push("mppjpegdec");
    let desc = plan_on(v4l2_payload("/dev/video0", "1920x1080", 30), &m)
        .unwrap()
        .launch_description();
    assert!(
        desc.contains("framerate=30/1 ! mppjpegdec ! deinterlace"),
        "{desc}"
    );
}

/// Encoders by availability, each with its documented properties; the raw format
/// fed to hardware encoders is NV12.
#[test]
fn encoders_by_availability_launch_lines() {
    gst::init().unwrap();
    let mut v = base(two_links(15000, 15002));
    v["encoder"] = serde_json::json!({"codec": "h264", "bitrate_kbps": 4000, "keyint_max": 60});
    v["source"]["resolution"] = "1920x1080".into();
    let cases: [(&[&str], &str, &[&str]); 5] = [
        (
            &["mpph264enc", "v4l2h264enc", "x264enc"],
            "h264",
            &["mpph264enc name=venc rc-mode=cbr bps=4000000 gop=60 header-mode=each-idr ! video/x-h264,stream-format=byte-stream,alignment=au ! h264parse config-interval=-1", "format=NV12"],
        ),
        (
            &["mpph265enc", "x265enc"],
            "h265",
            &["mpph265enc name=venc rc-mode=cbr bps=4000000 gop=60 header-mode=each-idr ! video/x-h265,stream-format=byte-stream,alignment=au ! h265parse config-interval=-1"],
        ),
        (
            &["v4l2h264enc", "x264enc"],
            "h264",
            &["v4l2h264enc name=venc extra-controls=\"controls,video_bitrate=4000000,video_bitrate_mode=1,video_gop_size=60,repeat_sequence_header=1,h264_i_frame_period=60\" ! video/x-h264,stream-format=byte-stream,alignment=au,level=(string)4 ! h264parse", "format=NV12"],
        ),
        (
            &["v4l2h265enc", "x265enc"],
            "h265",
            &["v4l2h265enc name=venc extra-controls=\"controls,video_bitrate=4000000,video_bitrate_mode=1,video_gop_size=60,repeat_sequence_header=1\" ! video/x-h265"],
        ),
        (
            &["x264enc"],
            "h264",
            &["x264enc name=venc tune=zerolatency speed-preset=superfast bitrate=4000 key-int-max=60 option-string=scenecut=0", "format=I420"],
        ),
    ];
    for (elements, codec, wants) in cases {
        let m = FakeMachine {
            elements: elements.to_vec(),
            devices: vec![],
            cards: vec![],
        };
        let mut v = v.clone();
        v["encoder"]["codec"] = codec.into();
        let plan = plan_on(v, &m).unwrap();
        let desc = plan.launch_description();
        for want in wants {
            assert!(
                desc.contains(want),
                "{elements:?}: want `{want}` in\n{desc}"
            );
        }
    }
    // No encoder for the codec at all.
    let m = FakeMachine {
        elements: vec!["x264enc"],
        devices: vec![],
        cards: vec![],
    };
    v["encoder"]["codec"] = "h265".into();
    let err = plan_on(v, &m).unwrap_err();
    assert!(
        matches!(&err, PlanError::Unsupported { field, reason } if field == "encoder.codec" && reason.contains("x265enc")),
        "{err:?}"
    );
}

/// Audio inputs: the grabber's own card, an explicit device, a missing card.
#[test]
fn v4l2_audio_from_the_sibling_card_or_audio_device() {
    gst::init().unwrap();
    let m = FakeMachine::software();
    let mut v = v4l2_payload("/dev/video0", "1280x720", 30);
    v["audio"] = serde_json::json!({"enabled": true, "codec": "aac"});
    let desc = plan_on(v.clone(), &m).unwrap().launch_description();
    assert!(
        desc.contains(
            "alsasrc name=asrc device=\"hw:CARD=MS2109,DEV=0\" provide-clock=false ! audioconvert"
        ),
        "{desc}"
    );
    // The webcam has no sibling card: name one, or it is not found.
    let mut v2 = v4l2_payload("/dev/video2", "1280x720", 30);
    v2["audio"] = serde_json::json!({"enabled": true, "codec": "opus"});
    let err = plan_on(v2.clone(), &m).unwrap_err();
    assert!(
        matches!(&err, PlanError::NotFound { field, .. } if field == "audio.device"),
        "{err:?}"
    );
    v2["audio"]["device"] = "hw:1,0".into();
    let desc = plan_on(v2.clone(), &m).unwrap().launch_description();
    assert!(
        desc.contains("alsasrc name=asrc device=\"hw:1,0\""),
        "{desc}"
    );
    v2["audio"]["device"] = "hw:1,0; reboot".into();
    let err = plan_on(v2, &m).unwrap_err();
    assert!(
        matches!(&err, PlanError::Invalid { field, .. } if field == "audio.device"),
        "{err:?}"
    );
    // Looping is for media only.
    v["source"]["loop"] = true.into();
    let err = plan_on(v, &m).unwrap_err();
    assert!(
        matches!(&err, PlanError::Invalid { field, .. } if field == "source.loop"),
        "{err:?}"
    );
}

/// A V4L2 + ALSA plan parses with the real elements (v4l2src, jpegdec, alsasrc…):
/// every property name and value of the description exists, at NULL state (no
/// device is opened), and the switches give the source priority 0.
#[test]
fn v4l2_plan_builds_with_real_elements() {
    init();
    if gst::ElementFactory::find("alsasrc").is_none() {
        panic!("alsasrc missing: scripts/setup.sh installs gstreamer1.0-alsa");
    }
    let m = FakeMachine::software();
    let mut v = v4l2_payload("/dev/video0", "1920x1080", 30);
    v["audio"] = serde_json::json!({"enabled": true, "codec": "aac"});
    let plan = plan_on(v, &m).unwrap();
    let pipeline = plan.build().expect("the description parses");
    let vsrc = pipeline.by_name("vsrc").unwrap();
    assert_eq!(vsrc.property::<String>("device"), "/dev/video0");
    let asrc = pipeline.by_name("asrc").unwrap();
    assert!(!asrc.property::<bool>("provide-clock"));
    for switch in ["vswitch", "aswitch"] {
        let sw = pipeline.by_name(switch).unwrap();
        let prios: Vec<u32> = sw
            .sink_pads()
            .iter()
            .map(|p| p.property::<u32>("priority"))
            .collect();
        assert_eq!(prios.len(), 2);
        let primary = sw
            .sink_pads()
            .into_iter()
            .find(|p| p.property::<u32>("priority") == 0)
            .unwrap();
        let feeder = primary.peer().unwrap().parent_element().unwrap();
        assert!(
            feeder.name().ends_with("src_q"),
            "{switch}: {}",
            feeder.name()
        );
    }
    braid_pipelines::Supervisor::attach(&plan, &pipeline).expect("supervisor attaches");
}

/// `capabilities()` names this machine's software encoders and audio codecs.
#[test]
fn capabilities_of_this_machine() {
    init();
    let caps = braid_pipelines::capabilities();
    for want in [
        "video-h264",
        "encoder-h264:x264enc",
        "video-h265",
        "encoder-h265:x265enc",
        "audio-aac",
        "audio-opus",
        "source-fallback",
    ] {
        assert!(caps.iter().any(|c| c == want), "{want} in {caps:?}");
    }
    assert!(!caps.iter().any(|c| c == "hw-encoder"), "{caps:?}");
}
