//! Chaos (issue 4): during a live bonded stream, the control plane is killed and
//! restarted 50 times at random moments while real triggers raise events (a link
//! blocked and unblocked by a relay, oversized frames from the control plane, the
//! connection itself coming and going). The stream never stops (the receiver's
//! delivered-packet count keeps rising), and every event the agent queued (its log
//! says `event queued: … seq=N id=…`) reaches the control plane, in order, none
//! lost; a re-delivery only ever happens on a later connection, with the same
//! envelope id. Then the agent is SIGKILLed with events queued while the control
//! plane is away: they arrive after it restarts.
//!
//! Seed: `BRAID_CHAOS_SEED` (printed); restarts: `BRAID_CHAOS_RESTARTS` (default 50).

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_agent::devplane::ports::{PortPool, PortRange};
use braid_agent::devplane::receiver::{Receiver, ReceiverReport};
use common::*;
use futures_util::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const T: Duration = Duration::from_secs(20);

/// A UDP relay for one socket pair of a link (RTP on P, RTCP on P+1), both ways;
/// everything is dropped while `blocked` is set (a link that dies and comes back).
struct LinkRelay {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl LinkRelay {
    fn start(front: [UdpSocket; 2], target_port: u16, blocked: Arc<AtomicBool>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (i, front) in front.into_iter().enumerate() {
            let target: SocketAddr = ([127, 0, 0, 1], target_port + i as u16).into();
            let back = UdpSocket::bind("127.0.0.1:0").unwrap();
            for s in [&front, &back] {
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            }
            let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
            for dir in 0..2 {
                let (front, back) = (front.try_clone().unwrap(), back.try_clone().unwrap());
                let (client, stop, blocked) = (client.clone(), stop.clone(), blocked.clone());
                threads.push(std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65_536];
                    while !stop.load(Ordering::Relaxed) {
                        if dir == 0 {
                            let Ok((n, from)) = front.recv_from(&mut buf) else {
                                continue;
                            };
                            *client.lock().unwrap() = Some(from);
                            if !blocked.load(Ordering::Relaxed) {
                                let _ = back.send_to(&buf[..n], target);
                            }
                        } else {
                            let Ok((n, _)) = back.recv_from(&mut buf) else {
                                continue;
                            };
                            let to = *client.lock().unwrap();
                            if let (Some(to), false) = (to, blocked.load(Ordering::Relaxed)) {
                                let _ = front.send_to(&buf[..n], to);
                            }
                        }
                    }
                }));
            }
        }
        Self { stop, threads }
    }
}

impl Drop for LinkRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One `event` frame as the control plane saw it.
#[derive(Debug, Clone)]
struct Seen {
    conn: usize,
    id: String,
    message: String,
}

/// Everything the played control plane recorded, over all connections.
#[derive(Default)]
struct Record {
    events: Vec<Seen>,
    ended: Vec<serde_json::Value>,
    thumbnails: usize,
    healths: usize,
}

/// `(seq, id, message)` of every `event queued:` line of an agent log, in order.
fn queued(log: &str) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.split("event queued: ").nth(1) else {
            continue;
        };
        let Some(seq_at) = rest.find(" seq=") else {
            continue;
        };
        let message = rest[..seq_at].to_owned();
        let field = |name: &str| {
            rest.split(&format!(" {name}="))
                .nth(1)
                .map(|v| v.split(' ').next().unwrap_or("").to_owned())
        };
        let seq: u64 = field("seq").unwrap().parse().unwrap();
        out.push((seq, field("id").unwrap(), message));
    }
    out
}

/// Serve one connection: log in, then record every frame until the task is
/// aborted (the "kill"); `oversize` sends one oversized frame at that moment.
async fn serve(
    mut conn: TestConn,
    idx: usize,
    first: bool,
    record: Arc<Mutex<Record>>,
    oversize: Option<(Duration, usize)>,
    start: Option<serde_json::Value>,
    started: Arc<tokio::sync::Notify>,
) {
    let device_key = first.then_some("dk_chaos");
    conn.accept_login("snd_chaos", device_key, &session_token(&format!("c{idx}")))
        .await;
    let mut start_id = None;
    if let Some(payload) = start {
        start_id = Some(conn.request("stream.start", payload).await);
    }
    let oversize_at = oversize.map(|(after, _)| tokio::time::Instant::now() + after);
    let mut oversize = oversize.map(|(_, size)| size);
    loop {
        let wake = oversize_at.unwrap_or_else(|| tokio::time::Instant::now() + T);
        let frame = tokio::select! {
            f = conn.ws.next() => f,
            _ = tokio::time::sleep_until(wake), if oversize.is_some() => {
                let size = oversize.take().unwrap();
                let big = json!({"id": format!("big{idx}"), "type": "stream.stop", "ts": "x",
                    "payload": {"stream_id": "x".repeat(size)}});
                let _ = conn.ws.send(WsMessage::text(big.to_string())).await;
                continue;
            }
        };
        let Some(Ok(frame)) = frame else { return };
        let WsMessage::Text(text) = frame else {
            continue;
        };
        let env: braid_protocol::Envelope = serde_json::from_str(text.as_str()).unwrap();
        let mut r = record.lock().unwrap();
        match env.msg_type.as_str() {
            "event" => r.events.push(Seen {
                conn: idx,
                id: env.id.clone(),
                message: env.payload["message"].as_str().unwrap_or("").to_owned(),
            }),
            "stream.ended" => r.ended.push(serde_json::Value::Object(env.payload.clone())),
            "thumbnail" => r.thumbnails += 1,
            "health" => r.healths += 1,
            "stream.start.response" if Some(&env.id) == start_id.as_ref() => {
                assert_eq!(env.payload["success"], json!(true), "{:?}", env.payload);
                started.notify_one();
            }
            _ => {}
        }
    }
}

/// Largest time the delivered count stood still, over `samples`.
fn max_stall(samples: &[(Instant, u64)]) -> Duration {
    let mut last_rise = samples[0].0;
    let mut max_gap = Duration::ZERO;
    for w in samples.windows(2) {
        if w[1].1 > w[0].1 {
            max_gap = max_gap.max(w[1].0 - last_rise);
            last_rise = w[1].0;
        }
    }
    max_gap.max(samples.last().unwrap().0 - last_rise)
}

/// Check what the plane saw against what the agent queued; returns
/// (unique delivered, re-deliveries).
fn check_delivery(queued: &[(u64, String, String)], seen: &[Seen]) -> (usize, usize) {
    // Within one connection: no id twice, and ids in queue order.
    let order: HashMap<&str, (u64, &str)> = queued
        .iter()
        .map(|(s, id, m)| (id.as_str(), (*s, m.as_str())))
        .collect();
    let mut per_conn: HashMap<usize, Vec<u64>> = HashMap::new();
    for s in seen {
        let (seq, message) = *order
            .get(s.id.as_str())
            .unwrap_or_else(|| panic!("an event the agent never queued: {s:?}"));
        assert_eq!(s.message, message, "same event under the same id");
        per_conn.entry(s.conn).or_default().push(seq);
    }
    for (conn, seqs) in &per_conn {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "connection {conn}: events out of order or repeated: {seqs:?}"
        );
    }
    // Over all connections: the first sightings are exactly the queue, in order.
    let mut first = Vec::new();
    let mut ids = HashSet::new();
    for s in seen {
        if ids.insert(s.id.clone()) {
            first.push(s.id.clone());
        }
    }
    let want: Vec<String> = queued.iter().map(|(_, id, _)| id.clone()).collect();
    if first != want {
        let missing: Vec<_> = queued
            .iter()
            .filter(|(_, id, _)| !ids.contains(id))
            .collect();
        panic!(
            "delivered {} of {} queued events; missing: {missing:?}",
            first.len(),
            want.len()
        );
    }
    (first.len(), seen.len() - first.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_chaos_and_agent_kill_lose_no_event() {
    let seed: u64 = std::env::var("BRAID_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let restarts: usize = std::env::var("BRAID_CHAOS_RESTARTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    eprintln!("chaos: seed {seed}, {restarts} restarts");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let t_begin = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    braid_agent::media::init().unwrap();
    let mut pool = PortPool::new(PortRange {
        first: 23000,
        last: 23998,
    });
    let ports = pool.allocate(2).expect("two free port pairs");
    let rx = Receiver::start(&ports, 400, &dir.path().join("out.ts")).expect("receiver");
    // Link 1 goes through a relay that the test blocks and unblocks.
    let (relay_rtp, relay_rtcp) = udp_pairs(1).pop().unwrap();
    let relay_port = relay_rtp.local_addr().unwrap().port();
    let blocked = Arc::new(AtomicBool::new(false));
    let _relay = LinkRelay::start([relay_rtp, relay_rtcp], ports[1], blocked.clone());

    let plane = TestPlane::start().await;
    let (addr, identity) = (plane.addr, plane.identity.clone());
    let config = write_config(
        dir.path(),
        &plane.url(),
        &pinned(&identity.pin),
        Some("enr_c"),
    );
    let agent = Agent::run(&config, &state, &[("BRAID_LOG", "info")]);
    let start = json!({
        "stream_id": "str_chaos",
        "source": {"mode": "test", "resolution": "320x240", "framerate": 25},
        "encoder": {"codec": "h264", "bitrate_kbps": 500, "keyint_max": 25},
        "bonding_config": {"version": 1, "links": [
            {"id": 0, "uri": format!("rist://127.0.0.1:{}", ports[0])},
            {"id": 1, "uri": format!("rist://127.0.0.1:{relay_port}")}
        ]},
        "thumbnails": true
    });

    let record: Arc<Mutex<Record>> = Arc::default();
    let started = Arc::new(tokio::sync::Notify::new());
    let mut plane = Some(plane);

    // Connection 0: enrol, start the stream, wait until it is live.
    let conn = plane.as_mut().unwrap().accept(T).await;
    let task = tokio::spawn(serve(
        conn,
        0,
        true,
        record.clone(),
        None,
        Some(start),
        started.clone(),
    ));
    tokio::time::timeout(T, started.notified())
        .await
        .unwrap_or_else(|_| panic!("stream did not start:\n{}", agent.log()));

    // The receiver's count, sampled every 200 ms for the whole test.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (report, sampling) = (rx.report_handle(), sampling.clone());
        std::thread::spawn(move || {
            let mut samples: Vec<(Instant, u64)> = Vec::new();
            while sampling.load(Ordering::SeqCst) {
                let r: ReceiverReport = report.lock().unwrap().clone();
                samples.push((Instant::now(), r.delivered));
                std::thread::sleep(Duration::from_millis(200));
            }
            samples
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Link 1 toggles every 5 s while the control plane is killed and restarted.
    let toggling = Arc::new(AtomicBool::new(true));
    let toggles = Arc::new(AtomicU64::new(0));
    let toggler = {
        let (blocked, toggling, toggles) = (blocked.clone(), toggling.clone(), toggles.clone());
        tokio::spawn(async move {
            while toggling.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(5)).await;
                blocked.fetch_xor(true, Ordering::SeqCst);
                toggles.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    let mut task = Some(task);
    let mut oversized_sent = 0;
    for idx in 1..=restarts {
        // Kill: the connection task and the listener go away at once.
        task.take().unwrap().abort();
        plane.take().unwrap().stop();
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..500))).await;
        let mut p = TestPlane::start_on(addr, identity.clone()).await;
        let conn = p.accept(Duration::from_secs(40)).await;
        plane = Some(p);
        let up = Duration::from_millis(rng.random_range(0..900));
        let oversize = rng.random_bool(0.6).then(|| {
            (
                up.mul_f64(rng.random_range(0.0..1.0)),
                1_100_000 + idx * 1000,
            )
        });
        if oversize.is_some_and(|(at, _)| at < up) {
            oversized_sent += 1;
        }
        task = Some(tokio::spawn(serve(
            conn,
            idx,
            false,
            record.clone(),
            oversize,
            None,
            started.clone(),
        )));
        tokio::time::sleep(up).await;
    }
    let chaos_s = t_begin.elapsed().as_secs_f64();
    toggling.store(false, Ordering::SeqCst);
    toggler.abort();
    blocked.store(false, Ordering::SeqCst);

    // The last connection stays: everything queued must arrive.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let q = queued(&agent.log());
        let seen: HashSet<String> = record
            .lock()
            .unwrap()
            .events
            .iter()
            .map(|s| s.id.clone())
            .collect();
        if q.iter().all(|(_, id, _)| seen.contains(id))
            && Instant::now() > t_begin + Duration::from_secs(1)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events still missing after 30 s:\n{}",
            agent.log()
        );
    }
    sampling.store(false, Ordering::SeqCst);
    let samples = tokio::task::spawn_blocking(move || sampler.join().unwrap())
        .await
        .unwrap();

    let log = agent.log();
    let q = queued(&log);
    let (delivered, redelivered) = check_delivery(&q, &record.lock().unwrap().events);
    let count = |needle: &str| q.iter().filter(|(_, _, m)| m.contains(needle)).count();
    let (links_down, links_up) = (count("Link 1 (") - count(") up"), count(") up"));
    let oversized = count("Oversized frame rejected");
    let manager = count("anager");
    let stall = max_stall(&samples);
    {
        let r = record.lock().unwrap();
        eprintln!(
            "chaos: {restarts} restarts in {chaos_s:.1} s; events queued {} (link down {links_down}, up {links_up}, \
             oversized {oversized} of {oversized_sent} sent, manager {manager}), delivered {delivered}, re-delivered {redelivered}; \
             link toggles {}; receiver delivered {} packets, longest stall {stall:?}; thumbnails {}, health {}",
            q.len(),
            toggles.load(Ordering::SeqCst),
            samples.last().unwrap().1,
            r.thumbnails,
            r.healths,
        );
        assert!(r.ended.is_empty(), "the stream never ends: {:?}", r.ended);
        assert!(
            stall < Duration::from_millis(2500),
            "media stalled {stall:?}"
        );
        assert!(samples.last().unwrap().1 > samples[0].1 + 1000);
        assert!(
            links_down >= 3 && links_up >= 3,
            "link toggles raise down/up pairs"
        );
        assert!(
            oversized >= oversized_sent / 2,
            "oversized frames raise protocol events"
        );
        assert!(r.thumbnails >= 1, "a thumbnail of the live stream arrived");
        assert!(!log.contains("stream ended"), "{log}");
    }

    // --- The agent is SIGKILLed with events queued while the plane is away. ---
    // First let link 1 settle up (the flap filter would rightly swallow a down
    // within 2 s of an up), then take the plane away and block the link.
    let settle = Instant::now() + T;
    while queued(&agent.log())
        .iter()
        .rev()
        .find(|(_, _, m)| m.starts_with("Link 1 ("))
        .is_some_and(|(_, _, m)| !m.ends_with(") up"))
    {
        assert!(Instant::now() < settle, "link 1 did not come back up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    task.take().unwrap().abort();
    plane.take().unwrap().stop();
    let before = queued(&agent.log()).len();
    blocked.store(true, Ordering::SeqCst);
    // Link 1 goes down and, 2.5 s later, up again: two events queued while away.
    let wait_for = |agent: &Agent, suffix: &str| {
        let deadline = Instant::now() + T;
        loop {
            let q = queued(&agent.log());
            if q[before..].iter().any(|(_, _, m)| m.ends_with(suffix)) {
                return q;
            }
            assert!(
                Instant::now() < deadline,
                "no link event `{suffix}` while away:\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    tokio::task::block_in_place(|| wait_for(&agent, ") down"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    blocked.store(false, Ordering::SeqCst);
    let q_killed = tokio::task::block_in_place(|| wait_for(&agent, ") up"));
    let pending: Vec<String> = q_killed[before..]
        .iter()
        .map(|(_, id, _)| id.clone())
        .collect();
    let journal = std::fs::read_to_string(state.join("events/journal.jsonl")).unwrap();
    for id in &pending {
        assert!(
            journal.contains(id.as_str()),
            "queued event {id} is in the journal"
        );
    }
    drop(agent); // std::process::Child::kill: SIGKILL, no chance to flush anything.
    let t_kill = Instant::now();

    let agent = Agent::run(&config, &state, &[("BRAID_LOG", "info")]);
    let mut p = TestPlane::start_on(addr, identity.clone()).await;
    let mut conn = p.accept(T).await;
    conn.accept_login("snd_chaos", None, &session_token("after-kill"))
        .await;
    // Events written but unconfirmed before the plane went away may come again
    // first (same ids, queued earlier); then the ones queued while it was away.
    let earlier: HashSet<String> = q_killed[..before]
        .iter()
        .map(|(_, id, _)| id.clone())
        .collect();
    let mut got = Vec::new();
    let mut redelivered = 0;
    while got.len() < pending.len() {
        let env = conn.recv_type("event", T).await;
        if earlier.contains(&env.id) && got.is_empty() {
            redelivered += 1;
            continue;
        }
        got.push(env.id);
    }
    assert!(pending.len() >= 2, "link down and up queued while away");
    assert_eq!(
        got, pending,
        "the events queued before SIGKILL arrive, in order ({redelivered} earlier ones re-sent first)"
    );
    eprintln!(
        "chaos: SIGKILL with {} events queued: all delivered {:.1} s after the kill; total {:.1} s",
        pending.len(),
        t_kill.elapsed().as_secs_f64(),
        t_begin.elapsed().as_secs_f64()
    );
    assert!(
        queued(&agent.log())
            .iter()
            .all(|(_, id, _)| !pending.contains(id)),
        "not re-queued, replayed"
    );
    drop(rx);
}
