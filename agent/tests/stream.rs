//! Streams driven over the control connection, received by an in-process
//! `ristbondsrc` pipeline (PROTOCOL.md §4, §5): start → stats every second →
//! stop → ended; and a control-plane restart that does not interrupt the media.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_agent::devplane::ports::{PortPool, PortRange};
use braid_agent::devplane::receiver::{Receiver, ReceiverReport};
use braid_protocol::device::DeviceStatus;
use braid_protocol::stream::StreamStats;
use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

fn start_payload(stream_id: &str, ports: &[u16]) -> serde_json::Value {
    let links: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"id": i, "uri": format!("rist://127.0.0.1:{p}")}))
        .collect();
    json!({
        "stream_id": stream_id,
        "source": {"mode": "test", "resolution": "320x240", "framerate": 30},
        "encoder": {"codec": "h264", "bitrate_kbps": 600, "tune": "zerolatency", "keyint_max": 30},
        "bonding_config": {"version": 1, "links": links}
    })
}

/// A receiver on two fresh even port pairs of `range`.
fn receiver(range: (u16, u16), out: &Path) -> (Receiver, Vec<u16>) {
    braid_agent::media::init().unwrap();
    let mut pool = PortPool::new(PortRange {
        first: range.0,
        last: range.1,
    });
    let ports = pool.allocate(2).expect("two free port pairs");
    (
        Receiver::start(&ports, 400, out).expect("receiver starts"),
        ports,
    )
}

/// Connect an agent to a fresh plane and log it in; returns both.
async fn logged_in_agent(dir: &Path) -> (TestPlane, TestConn, Agent) {
    let mut plane = TestPlane::start().await;
    let config = write_config(
        dir,
        &plane.url(),
        &pinned(&plane.identity.pin),
        Some("enr_s"),
    );
    let agent = Agent::run(&config, &dir.join("state"), &[]);
    let mut conn = plane.accept(T).await;
    conn.accept_login("snd_s", Some("dk_s"), &session_token("s"))
        .await;
    conn.recv_type("health", T).await;
    (plane, conn, agent)
}

#[tokio::test]
async fn stream_start_stats_stop_ended() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ts");
    let (rx, ports) = receiver((21000, 21998), &out);
    let (_plane, mut conn, agent) = logged_in_agent(dir.path()).await;

    let id = conn
        .request("stream.start", start_payload("str_t1", &ports))
        .await;
    let resp = conn.response("stream.start", &id, T).await;
    assert_eq!(
        resp.payload["success"],
        json!(true),
        "{:?}\n{}",
        resp.payload,
        agent.log()
    );
    assert_eq!(resp.payload["stream_id"], json!("str_t1"));

    // A second start of the same id is refused.
    let id = conn
        .request("stream.start", start_payload("str_t1", &ports))
        .await;
    let resp = conn.response("stream.start", &id, T).await;
    assert_eq!(resp.payload["error"]["code"], json!("already_running"));

    // stream.stats about every second, and device.status says live.
    let mut arrivals = Vec::new();
    let mut last: Option<StreamStats> = None;
    let mut saw_live_status = false;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let Some(env) = conn.recv(T).await else {
            panic!("connection lost")
        };
        match env.msg_type.as_str() {
            "stream.stats" => {
                let stats: StreamStats = env.decode().unwrap();
                assert_eq!(stats.stream_id, "str_t1");
                arrivals.push(Instant::now());
                last = Some(stats);
            }
            "device.status" => {
                let status: DeviceStatus = env.decode().unwrap();
                if serde_json::to_value(status.stream_state).unwrap() == json!("live") {
                    saw_live_status = true;
                    assert!(status.media_inputs.iter().any(|m| m.device == "test"
                        && serde_json::to_value(m.status).unwrap() == json!("busy")));
                }
            }
            _ => {}
        }
    }
    assert!(arrivals.len() >= 3, "stats: {}", arrivals.len());
    let spacing =
        (*arrivals.last().unwrap() - arrivals[0]).as_secs_f64() / (arrivals.len() - 1) as f64;
    assert!((0.7..=1.4).contains(&spacing), "stats every {spacing} s");
    assert!(saw_live_status, "device.status with stream_state live");
    let last = last.unwrap();
    assert_eq!(last.links.len(), 2);
    assert!(last.links.iter().all(|l| l.sent_bytes > 0), "{last:?}");
    assert!(last.output.packets_sent > 0);

    // stop → response + ended(user_stop).
    let id = conn
        .request(
            "stream.stop",
            json!({"stream_id": "str_t1", "reason": "user_request"}),
        )
        .await;
    let (mut response, mut ended) = (None, None);
    while response.is_none() || ended.is_none() {
        let env = conn.recv(T).await.expect("connection lost");
        if env.msg_type == "stream.stop.response" && env.id == id {
            response = Some(env);
        } else if env.msg_type == "stream.ended" {
            ended = Some(env);
        }
    }
    assert_eq!(response.unwrap().payload["success"], json!(true));
    let ended = ended.unwrap();
    assert_eq!(ended.payload["stream_id"], json!("str_t1"));
    assert_eq!(ended.payload["reason"], json!("user_stop"));
    assert!(ended.payload["total_bytes"].as_u64().unwrap() > 0);

    let report = tokio::task::spawn_blocking(move || rx.finish(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(report.link_packets.len(), 2, "{report:?}");
    assert!(
        report.link_packets.iter().all(|p| *p > 0),
        "both links carried packets: {report:?}"
    );
    let verdict = tokio::task::spawn_blocking(move || braid_agent::media::verify_ts(&out))
        .await
        .unwrap()
        .expect("received TS decodes");
    assert!(verdict.frames > 30, "{verdict:?}");
}

/// Sample the receiver's delivered-packet counter every 200 ms.
fn sampler(
    report: Arc<Mutex<ReceiverReport>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<(Instant, u64)>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            samples.push((Instant::now(), report.lock().unwrap().delivered));
            std::thread::sleep(Duration::from_millis(200));
        }
        samples
    })
}

#[tokio::test]
async fn control_plane_restart_does_not_interrupt_a_live_stream() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ts");
    let (rx, ports) = receiver((22000, 22998), &out);
    let (plane, mut conn, mut agent) = logged_in_agent(dir.path()).await;

    let id = conn
        .request("stream.start", start_payload("str_t2", &ports))
        .await;
    let resp = conn.response("stream.start", &id, T).await;
    assert_eq!(resp.payload["success"], json!(true), "{:?}", resp.payload);
    let before: StreamStats = conn.recv_type("stream.stats", T).await.decode().unwrap();
    conn.recv_type("stream.stats", T).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let samples = sampler(rx.report_handle(), stop.clone());

    // The control plane disappears for 3 s, then comes back on the same address.
    let (addr, identity) = plane.stop();
    drop(conn);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut plane = TestPlane::start_on(addr, identity).await;
    let mut conn = plane.accept(T).await;
    let login = conn.accept_login("snd_s", None, &session_token("s2")).await;
    assert_eq!(login.sender_id.as_deref(), Some("snd_s"));
    let after: StreamStats = conn.recv_type("stream.stats", T).await.decode().unwrap();
    assert_eq!(after.stream_id, "str_t2");
    assert!(
        after.uptime_s > before.uptime_s + 2,
        "same stream, still running: {before:?} → {after:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let samples = samples.join().unwrap();

    // The receiver's delivered count kept rising throughout (stats every ~1 s).
    let mut last_rise = samples[0].0;
    let mut max_gap = Duration::ZERO;
    for w in samples.windows(2) {
        if w[1].1 > w[0].1 {
            max_gap = max_gap.max(w[1].0 - last_rise);
            last_rise = w[1].0;
        }
    }
    max_gap = max_gap.max(samples.last().unwrap().0 - last_rise);
    let span = samples.last().unwrap().0 - samples[0].0;
    assert!(span > Duration::from_secs(4), "{span:?}");
    assert!(
        max_gap < Duration::from_millis(2500),
        "media stalled for {max_gap:?}: {samples:?}"
    );

    // SIGTERM: the stream stops with reason shutdown, reported before exit 0.
    agent.terminate();
    let ended = conn.recv_type("stream.ended", T).await;
    assert_eq!(ended.payload["stream_id"], json!("str_t2"));
    assert_eq!(ended.payload["reason"], json!("shutdown"));
    let status = agent.wait_exit(T).await.expect("agent exits");
    assert!(status.success(), "{status:?}\n{}", agent.log());
    drop(rx);
}
