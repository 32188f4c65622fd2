//! `thumbnail` and `health` of a live stream over the real control connection
//! (PROTOCOL.md §4): a stream started with `thumbnails: true` sends a 320×180 JPEG
//! (decoded here by GStreamer's `jpegdec`) about every 10 s; `health` comes right
//! after login and every 15 s, counting the live stream.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use braid_agent::devplane::ports::{PortPool, PortRange};
use braid_agent::devplane::receiver::Receiver;
use braid_protocol::health::{Health, HealthStatus};
use braid_protocol::thumbnail::Thumbnail;
use common::*;
use gst::prelude::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

/// Decode a JPEG with `jpegdec`; returns its size.
fn jpeg_size(jpeg: &[u8]) -> (i32, i32) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.jpg");
    std::fs::write(&file, jpeg).unwrap();
    let desc = format!(
        "filesrc location={} ! jpegdec ! fakesink name=out",
        file.display()
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Paused).unwrap();
    let (res, _, _) = pipeline.state(gst::ClockTime::from_seconds(10));
    res.expect("jpegdec prerolls on the thumbnail");
    let caps = pipeline
        .by_name("out")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .current_caps()
        .unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    let s = caps.structure(0).unwrap();
    (s.get("width").unwrap(), s.get("height").unwrap())
}

#[tokio::test]
async fn thumbnails_every_10_s_and_health_every_15_s() {
    braid_agent::media::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut pool = PortPool::new(PortRange {
        first: 24000,
        last: 24998,
    });
    let ports = pool.allocate(1).expect("a free port pair");
    let rx = Receiver::start(&ports, 400, &dir.path().join("out.ts")).unwrap();
    let mut plane = TestPlane::start().await;
    let config = write_config(
        dir.path(),
        &plane.url(),
        &pinned(&plane.identity.pin),
        Some("enr_t"),
    );
    let agent = Agent::run(&config, &dir.path().join("state"), &[]);
    let mut conn = plane.accept(T).await;
    conn.accept_login("snd_t", Some("dk_t"), &session_token("t"))
        .await;
    let first_health: Health = conn.recv_type("health", T).await.decode().unwrap();
    let health_at = Instant::now();
    assert_eq!(first_health.status, HealthStatus::Ok);
    assert_eq!(first_health.streams_live, 0);
    assert!(first_health.capabilities.iter().any(|c| c == "thumbnails"));
    // The media capabilities come from the `braid-agent capabilities` helper: the
    // idle agent has not loaded GStreamer's registry (issue 5, idle RSS); the first
    // stream.start does.
    assert!(
        first_health
            .capabilities
            .iter()
            .any(|c| c.starts_with("encoder-h264:")),
        "{:?}",
        first_health.capabilities
    );
    assert!(
        !agent.log().contains("GStreamer 1."),
        "GStreamer initialised while idle:\n{}",
        agent.log()
    );

    let id = conn
        .request(
            "stream.start",
            json!({
                "stream_id": "str_thumb",
                "source": {"mode": "test", "resolution": "640x360", "framerate": 25},
                "encoder": {"codec": "h264", "bitrate_kbps": 500},
                "bonding_config": {"version": 1, "links": [
                    {"id": 0, "uri": format!("rist://127.0.0.1:{}", ports[0])}]},
                "thumbnails": true
            }),
        )
        .await;
    let resp = conn.response("stream.start", &id, T).await;
    assert_eq!(resp.payload["success"], json!(true), "{}", agent.log());
    assert!(agent.log().contains("GStreamer 1."), "{}", agent.log());

    // Thumbnails: the first soon after the start, the next about 10 s later.
    let mut thumbs = Vec::new();
    let mut health = None;
    let deadline = Instant::now() + Duration::from_secs(40);
    while thumbs.len() < 2 || health.is_none() {
        assert!(Instant::now() < deadline, "{}", agent.log());
        let env = conn.recv(T).await.expect("connection stays up");
        match env.msg_type.as_str() {
            "thumbnail" => {
                let t: Thumbnail = env.decode().unwrap();
                thumbs.push((Instant::now(), t));
            }
            "health" => {
                health = Some((Instant::now(), env.decode::<Health>().unwrap()));
            }
            _ => {}
        }
    }
    for (_, t) in &thumbs {
        assert_eq!(t.stream_id, "str_thumb");
        assert_eq!((t.width, t.height, t.format.as_str()), (320, 180, "jpeg"));
        let jpeg = base64::engine::general_purpose::STANDARD
            .decode(&t.data)
            .expect("standard base64");
        assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
        assert_eq!(jpeg_size(&jpeg), (320, 180));
    }
    let spacing = thumbs[1].0 - thumbs[0].0;
    assert!(
        spacing > Duration::from_secs(8) && spacing < Duration::from_secs(13),
        "thumbnails {spacing:?} apart"
    );

    // health: 15 s after the first, counting the live stream.
    let (at, h) = health.unwrap();
    let gap = at - health_at;
    assert!(
        gap > Duration::from_secs(13) && gap < Duration::from_secs(18),
        "health {gap:?} apart"
    );
    assert_eq!(h.streams_live, 1);
    assert_eq!(h.status, HealthStatus::Ok, "{h:?}");
    assert!(h.uptime_s >= 14, "{h:?}");
    assert_eq!(h.event_backlog, 0, "events are confirmed by Pong: {h:?}");
    drop(rx);
}
