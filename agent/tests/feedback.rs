//! Encoder feedback end to end (issue 3): a live stream's two bonded links run
//! through the link emulator (`braid-linkemu` as a library, real UDP sockets);
//! their capacity falls from 3 to 0.4 Mbit/s each and comes back. The agent must
//! lower the encoder bitrate it reports in `stream.stats` below what the links can
//! carry soon after the drop, and climb back when the capacity returns.

mod common;

use std::time::{Duration, Instant, SystemTime};

use braid_agent::devplane::ports::{PortPool, PortRange};
use braid_agent::devplane::receiver::Receiver;
use braid_protocol::stream::StreamStats;
use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(20);
/// Link capacity before and after the drop, bit/s (per link).
const HIGH_BPS: u64 = 3_000_000;
/// Link capacity during the drop, bit/s (per link).
const LOW_BPS: u64 = 400_000;
/// Emulator time of the drop and of the recovery, ms.
const DROP_AT_MS: u64 = 9_000;
const BACK_AT_MS: u64 = 19_000;

/// Run the emulator on its own thread (it needs a current-thread runtime and a
/// `LocalSet`) until the returned sender is dropped; returns the sender-facing RTP
/// ports and the emulator's epoch.
fn emulator(listen: &[u16], forward: &[u16]) -> (std::sync::mpsc::Sender<()>, Instant) {
    let links: String = listen
        .iter()
        .zip(forward)
        .map(|(l, f)| {
            format!(
                "[[link]]\nlisten = \"127.0.0.1:{l}\"\nforward = \"127.0.0.1:{f}\"\n\
                 rate_bps = {HIGH_BPS}\ndelay_ms = 10\nqueue_ms = 300\n\
                 events = [{{ at_ms = {DROP_AT_MS}, action = \"rate\", rate_bps = {LOW_BPS} }},\n\
                           {{ at_ms = {BACK_AT_MS}, action = \"rate\", rate_bps = {HIGH_BPS} }}]\n"
            )
        })
        .collect();
    let config: linkemu::config::EmulatorConfig = toml::from_str(&links).unwrap();
    let specs = config.resolve().unwrap();
    let bound = linkemu::relay::bind(specs).expect("emulator binds");
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let epoch = (Instant::now(), SystemTime::now());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let stop = async move {
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
        };
        let _ = local.block_on(&rt, bound.run(epoch, stop));
    });
    (stop_tx, epoch.0)
}

#[tokio::test]
async fn encoder_bitrate_follows_link_capacity_down_and_back_up() {
    braid_agent::media::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ts");
    let mut pool = PortPool::new(PortRange {
        first: 27000,
        last: 27998,
    });
    let rx_ports = pool.allocate(2).expect("receiver port pairs");
    let emu_ports = pool.allocate(2).expect("emulator port pairs");
    let rx = Receiver::start(&rx_ports, 1000, &out).expect("receiver starts");

    let mut plane = TestPlane::start().await;
    let config = write_config(
        dir.path(),
        &plane.url(),
        &pinned(&plane.identity.pin),
        Some("enr_f"),
    );
    let agent = Agent::run(&config, &dir.path().join("state"), &[]);
    let mut conn = plane.accept(T).await;
    conn.accept_login("snd_f", Some("dk_f"), &session_token("f"))
        .await;
    conn.recv_type("health", T).await;

    let (stop_emulator, epoch) = emulator(&emu_ports, &rx_ports);
    let links: Vec<_> = emu_ports
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"id": i, "uri": format!("rist://127.0.0.1:{p}")}))
        .collect();
    let id = conn
        .request(
            "stream.start",
            json!({
                "stream_id": "str_fb",
                "source": {"mode": "test", "resolution": "320x240", "framerate": 30},
                "encoder": {"codec": "h264", "bitrate_kbps": 2500, "min_bitrate_kbps": 200,
                            "max_bitrate_kbps": 2500, "tune": "zerolatency", "keyint_max": 30},
                "bonding_config": {"version": 1, "links": links}
            }),
        )
        .await;
    let resp = conn.response("stream.start", &id, T).await;
    assert_eq!(
        resp.payload["success"],
        json!(true),
        "{:?}\n{}",
        resp.payload,
        agent.log()
    );

    // (emulator time ms, encoder kbit/s, available capacity the links report).
    let mut samples: Vec<(u64, u32, u64)> = Vec::new();
    let end = epoch + Duration::from_millis(BACK_AT_MS + 18_000);
    while Instant::now() < end {
        let env = conn.recv(T).await.expect("connection lost");
        if env.msg_type == "stream.stats" {
            let stats: StreamStats = env.decode().unwrap();
            let at = epoch.elapsed().as_millis() as u64;
            let capacity: u64 = stats.links.iter().map(|l| l.capacity_bps).sum();
            eprintln!(
                "t={at} ms encoder {} kbit/s, link estimates {capacity} bps",
                stats.encoder_bitrate_kbps
            );
            samples.push((at, stats.encoder_bitrate_kbps, capacity));
        }
    }
    drop(stop_emulator);
    let window = |from: u64, to: u64| samples.iter().filter(move |s| s.0 >= from && s.0 < to);

    // Before the drop the encoder may run at (or near) its maximum.
    let before = window(DROP_AT_MS - 3000, DROP_AT_MS)
        .map(|s| s.1)
        .max()
        .expect("stats before the drop");
    assert!(
        before >= 1500,
        "before the drop: {before} kbit/s\n{samples:?}"
    );
    // Within 4 s of the drop (detection through queueing delay, then the next
    // stats), the encoder is under what the two links carry (2 × 400 kbit/s).
    let low_cap_kbps = (2 * LOW_BPS / 1000) as u32;
    let after_drop: Vec<_> = window(DROP_AT_MS + 4000, BACK_AT_MS).collect();
    assert!(!after_drop.is_empty(), "stats during the drop");
    assert!(
        after_drop.iter().all(|s| s.1 <= low_cap_kbps),
        "encoder above the {low_cap_kbps} kbit/s the links carry: {after_drop:?}"
    );
    // Capacity back: within 18 s the encoder climbs (at most +10 %/s, 6.5-7 %/s
    // measured) to at least twice where it stood when capacity returned, and above
    // what the links carried during the drop. (Where it stood varies from run to run:
    // the drop can take the estimate below the 800 kbit/s the links still carry, to
    // 295 kbit/s in one CI run, so a fixed level reached in 18 s is a coin toss.)
    let at_back = window(BACK_AT_MS - 1000, BACK_AT_MS + 1000)
        .map(|s| s.1)
        .min()
        .expect("stats when capacity returns");
    let recovered = window(BACK_AT_MS, BACK_AT_MS + 18_000)
        .map(|s| s.1)
        .max()
        .unwrap_or(0);
    assert!(
        recovered >= 2 * at_back && recovered > low_cap_kbps,
        "encoder did not climb back: {at_back} kbit/s when capacity returned, max {recovered} kbit/s\n{samples:?}"
    );

    let id = conn
        .request(
            "stream.stop",
            json!({"stream_id": "str_fb", "reason": "user_request"}),
        )
        .await;
    conn.response("stream.stop", &id, T).await;
    let report = tokio::task::spawn_blocking(move || rx.finish(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(
        report.link_packets.iter().all(|p| *p > 0),
        "both links carried packets: {report:?}"
    );
}
