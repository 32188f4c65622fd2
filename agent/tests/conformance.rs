//! Protocol conformance (PROTOCOL.md §2, §3, §5): the test plays the control plane
//! over real WSS (self-signed certificate made here, pinned) against the real
//! agent binary. Every request type with good and bad payloads, frames without
//! an id, the session token refresh on `token_expired` and on an expired token,
//! a refused login (critical event, backoff honoured), and a live stream whose
//! links, scheduler and spec change through `stream.links.update`,
//! `config.update` and `config.set`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use braid_agent::devplane::ports::{PortPool, PortRange};
use braid_agent::devplane::receiver::Receiver;
use braid_protocol::auth::{AuthLogin, AuthLoginResponse, RemoteError};
use braid_protocol::stream::StreamStats;
use braid_protocol::Envelope;
use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

async fn logged_in(dir: &Path, token: &str) -> (TestPlane, TestConn, Agent) {
    let mut plane = TestPlane::start().await;
    let config = write_config(
        dir,
        &plane.url(),
        &pinned(&plane.identity.pin),
        Some("enr_conformance_secret"),
    );
    let agent = Agent::run(&config, &dir.join("state"), &[]);
    let mut conn = plane.accept(T).await;
    conn.accept_login("snd_c", Some("dk_first"), token).await;
    conn.recv_type("health", T).await;
    (plane, conn, agent)
}

/// Send a request and return the payload of its response.
async fn ask(conn: &mut TestConn, msg_type: &str, payload: Value) -> Value {
    let id = conn.request(msg_type, payload).await;
    Value::Object(conn.response(msg_type, &id, T).await.payload)
}

fn error_of(payload: &Value) -> (String, String) {
    assert_eq!(payload["success"], json!(false), "{payload}");
    (
        payload["error"]["code"].as_str().unwrap().to_owned(),
        payload["error"]["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn every_request_type_with_good_and_bad_payloads() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let token = session_token("conf");
    let (_plane, mut conn, agent) = logged_in(dir.path(), &token).await;

    // config.get: running config, no secrets, no streams; `payload: null` reads as {}.
    let id = "get-1";
    conn.send_text(json!({"id": id, "type": "config.get", "ts": "x", "payload": null}).to_string())
        .await;
    let resp = conn.response("config.get", id, T).await;
    assert_eq!(resp.token.as_deref(), Some(token.as_str()));
    let text = serde_json::to_string(&resp.payload).unwrap();
    let resp_payload = Value::Object(resp.payload.clone());
    assert!(!text.contains("enr_conformance_secret"), "{text}");
    assert!(!text.contains("dk_first"), "{text}");
    let config = &resp_payload["config"];
    assert_eq!(resp_payload["success"], json!(true));
    assert!(config["control_plane"]["url"]
        .as_str()
        .unwrap()
        .starts_with("wss://127.0.0.1:"));
    assert_eq!(config["control_plane"]["tls"]["mode"], json!("pinned"));
    assert_eq!(config["agent"]["status_interval_s"], json!(2));
    assert_eq!(config["update"]["login_timeout_s"], json!(120));
    assert_eq!(config["streams"], json!([]));

    // config.set: the get result sent back, with one live key changed and a secret
    // slipped in: applied, persisted (0600), the secret ignored and named.
    let mut wanted = config.clone();
    wanted["agent"]["status_interval_s"] = json!(1);
    wanted["control_plane"]["enrollment_token"] = json!("enr_injected");
    let p = ask(&mut conn, "config.set", json!({"config": wanted})).await;
    assert_eq!(p["success"], json!(true), "{p}");
    assert_eq!(p["agent_changed"], json!(["agent.status_interval_s"]));
    assert_eq!(
        p["ignored_secrets"],
        json!(["config.control_plane.enrollment_token"])
    );
    // The get result had `streams: []` and no stream runs: nothing to do.
    assert_eq!(
        p["streams"],
        json!({"unchanged": [], "hot_applied": [], "restarted": [], "started": [], "stopped": []})
    );
    let remote = state.join("remote-config.toml");
    let text = std::fs::read_to_string(&remote).expect("remote-config.toml written");
    assert!(text.contains("status_interval_s = 1"), "{text}");
    assert!(!text.contains("enr_injected"), "{text}");
    assert_eq!(
        std::fs::metadata(&remote).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // device.status now every second.
    conn.recv_type("device.status", Duration::from_secs(5))
        .await;
    let t0 = Instant::now();
    conn.recv_type("device.status", Duration::from_secs(5))
        .await;
    assert!(
        t0.elapsed() < Duration::from_millis(1700),
        "{:?}",
        t0.elapsed()
    );

    // config.set refusals name the key and change nothing.
    let before = std::fs::read_to_string(&remote).unwrap();
    let p = ask(
        &mut conn,
        "config.set",
        json!({"config": {"control_plane": {"url": "wss://elsewhere.example/agent/ws"},
                          "agent": {"status_interval_s": 7}}}),
    )
    .await;
    let (code, message) = error_of(&p);
    assert_eq!(code, "unsupported");
    assert!(message.contains("config.control_plane.url"), "{message}");
    let p = ask(
        &mut conn,
        "config.set",
        json!({"config": {"agent": {"media_dir": "/elsewhere"}}}),
    )
    .await;
    assert!(error_of(&p).1.contains("config.agent.media_dir"), "{p}");
    let p = ask(
        &mut conn,
        "config.set",
        json!({"config": {"update": {"binary_path": "/etc/passwd"}}}),
    )
    .await;
    assert!(error_of(&p).1.contains("config.update.binary_path"), "{p}");
    let p = ask(
        &mut conn,
        "config.set",
        json!({"config": {"agent": {"status_interval_s": "x"}}}),
    )
    .await;
    let (code, message) = error_of(&p);
    assert_eq!(code, "invalid_payload");
    assert!(
        message.contains("config.agent.status_interval_s"),
        "{message}"
    );
    let p = ask(
        &mut conn,
        "config.set",
        json!({"config": {"agent": {"status_interval_s": 0}}}),
    )
    .await;
    assert_eq!(error_of(&p).0, "invalid_payload");
    let p = ask(&mut conn, "config.set", json!({})).await;
    assert!(error_of(&p).1.contains("config"), "{p}");
    // A stream spec that cannot be planned: refused before anything changes.
    let bad_stream = json!({"stream_id": "s_bad",
        "source": {"mode": "test", "resolution": "huge", "framerate": 30},
        "encoder": {"bitrate_kbps": 500},
        "bonding_config": {"links": [{"id": 0, "uri": "rist://127.0.0.1:15000"}]}});
    let p = ask(
        &mut conn,
        "config.set",
        json!({"config": {"streams": [bad_stream], "agent": {"status_interval_s": 9}}}),
    )
    .await;
    let (code, message) = error_of(&p);
    assert_eq!(code, "invalid_payload");
    assert!(
        message.contains("config.streams[0]") && message.contains("resolution"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&remote).unwrap(), before);

    // config.update: refusals and the no-stream case.
    let p = ask(
        &mut conn,
        "config.update",
        json!({"scheduler": {"discard_deadline_ms": 150}}),
    )
    .await;
    assert_eq!(p, json!({"success": true, "streams": []}));
    let p = ask(
        &mut conn,
        "config.update",
        json!({"stream_id": "str_none", "scheduler": {}}),
    )
    .await;
    assert_eq!(error_of(&p).0, "not_found");
    let p = ask(
        &mut conn,
        "config.update",
        json!({"scheduler": {}, "encoder": {"codec": "h265"}}),
    )
    .await;
    let (code, message) = error_of(&p);
    assert_eq!(code, "unsupported");
    assert!(message.contains("`encoder`"), "{message}");
    let p = ask(
        &mut conn,
        "config.update",
        json!({"scheduler": {"redundancy_spare_ratio": 1.5}}),
    )
    .await;
    let (code, message) = error_of(&p);
    assert_eq!(code, "invalid_payload");
    assert!(
        message.contains("scheduler.redundancy_spare_ratio"),
        "{message}"
    );
    let p = ask(&mut conn, "config.update", json!({"stream_id": "s"})).await;
    assert!(error_of(&p).1.contains("scheduler"), "{p}");

    // stream.links.update.
    let p = ask(
        &mut conn,
        "stream.links.update",
        json!({"stream_id": "str_none", "links": [{"id": 0, "uri": "rist://127.0.0.1:15000"}]}),
    )
    .await;
    assert_eq!(error_of(&p).0, "not_found");
    let p = ask(
        &mut conn,
        "stream.links.update",
        json!({"stream_id": "s", "links": []}),
    )
    .await;
    let (code, message) = error_of(&p);
    assert_eq!(code, "invalid_payload");
    assert!(message.contains("`links`"), "{message}");
    let p = ask(
        &mut conn,
        "stream.links.update",
        json!({"stream_id": "s",
        "links": [{"id": 1, "uri": "rist://h:2"}, {"id": 1, "uri": "rist://h:4"}]}),
    )
    .await;
    assert!(error_of(&p).1.contains("links[1].id"), "{p}");

    // agent.update: refused before any download.
    let sha = "ab".repeat(32);
    let p = ask(
        &mut conn,
        "agent.update",
        json!({"binary_url": "http://127.0.0.1:9/braid-agent", "sha256": sha}),
    )
    .await;
    let (code, message) = error_of(&p);
    assert_eq!(code, "invalid_payload");
    assert!(
        message.contains("binary_url") && message.contains("https://"),
        "{message}"
    );
    let p = ask(
        &mut conn,
        "agent.update",
        json!({"binary_url": "https://127.0.0.1:9/braid-agent", "sha256": "1234"}),
    )
    .await;
    assert!(error_of(&p).1.contains("sha256"), "{p}");

    // secret.rotate: bad, then good (persisted 0600 before the answer).
    let p = ask(&mut conn, "secret.rotate", json!({"device_key": ""})).await;
    assert!(error_of(&p).1.contains("device_key"), "{p}");
    let p = ask(
        &mut conn,
        "secret.rotate",
        json!({"device_key": "dk_rotated"}),
    )
    .await;
    assert_eq!(p, json!({"success": true, "sender_id": "snd_c"}));
    let creds_path = state.join("credentials.json");
    let creds: Value =
        serde_json::from_str(&std::fs::read_to_string(&creds_path).unwrap()).unwrap();
    assert_eq!(
        creds,
        json!({"sender_id": "snd_c", "device_key": "dk_rotated"})
    );
    assert_eq!(
        std::fs::metadata(&creds_path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A control-plane response saying token_expired: re-login on this connection,
    // with the rotated key (the old one is never used again).
    conn.send_text(
        json!({"id": "r-1", "type": "health.response", "ts": "x",
        "payload": {"success": false, "error": {"code": "token_expired", "message": "expired"}}})
        .to_string(),
    )
    .await;
    let relogin = conn.recv_type("auth.login", Duration::from_secs(5)).await;
    assert!(relogin.token.is_none());
    let login: AuthLogin = relogin.decode().unwrap();
    assert_eq!(login.device_key.as_deref(), Some("dk_rotated"));
    assert_eq!(login.enrollment_token, None);
    let second = session_token("second");
    let resp = AuthLoginResponse {
        success: true,
        sender_id: Some("snd_c".into()),
        session_token: Some(second.clone()),
        device_key: None,
        protocol_version: Some(1),
        config: None,
        error: None,
    };
    let mut out = Envelope::new(&resp).unwrap();
    out.id = relogin.id;
    conn.send(&out).await;
    let p = conn.request("config.get", json!({})).await;
    let resp = conn.response("config.get", &p, T).await;
    assert_eq!(
        resp.token.as_deref(),
        Some(second.as_str()),
        "new token in use"
    );

    // Frames the agent cannot answer: no id, unknown type, malformed; a refused
    // message from the control plane is only logged.
    conn.send_text(json!({"type": "config.update", "payload": {}}).to_string())
        .await;
    conn.send_text(json!({"id": "u1", "type": "firmware.flash", "payload": {}}).to_string())
        .await;
    conn.send_text("[1,2,3]".into()).await;
    conn.send_text(
        json!({"id": "r-2", "type": "event.response", "ts": "x",
        "payload": {"success": false, "error": {"code": "rate_limited", "message": "slow down"}}})
        .to_string(),
    )
    .await;
    let p = ask(&mut conn, "config.update", json!({"scheduler": {}})).await;
    assert_eq!(p["success"], json!(true));

    let log = agent.log();
    assert!(
        !log.contains("reconnecting"),
        "one connection throughout:\n{log}"
    );
    assert!(log.contains("the control plane refused a message"), "{log}");
    assert!(
        !log.contains("dk_rotated") && !log.contains("dk_first"),
        "keys never logged"
    );
}

#[tokio::test]
async fn an_expired_token_is_refreshed_at_once_on_the_same_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut plane = TestPlane::start().await;
    let config = write_config(
        dir.path(),
        &plane.url(),
        &pinned(&plane.identity.pin),
        Some("enr_e"),
    );
    let agent = Agent::run(&config, &dir.path().join("state"), &[]);
    let mut conn = plane.accept(T).await;
    // iat an hour ago, exp a minute ago.
    let expired = {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        format!(
            "{}.{}.sig",
            e.encode(r#"{"alg":"HS256"}"#),
            e.encode(format!(r#"{{"iat":{},"exp":{}}}"#, now - 3600, now - 60))
        )
    };
    let t0 = Instant::now();
    conn.accept_login("snd_e", Some("dk_e"), &expired).await;
    let relogin = conn.recv_type("auth.login", Duration::from_secs(5)).await;
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let login: AuthLogin = relogin.decode().unwrap();
    assert_eq!(login.sender_id.as_deref(), Some("snd_e"));
    // No answer to the re-login: the session is given up after 10 s and redialled.
    let mut next = plane.accept(Duration::from_secs(25)).await;
    let login = next
        .accept_login("snd_e", None, &session_token("fresh"))
        .await;
    assert_eq!(login.device_key.as_deref(), Some("dk_e"));
    assert!(
        agent.log().contains("no answer to the re-login"),
        "{}",
        agent.log()
    );
}

#[tokio::test]
async fn a_refused_login_raises_a_critical_event_and_backs_off_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let mut plane = TestPlane::start().await;
    let config = write_config(
        dir.path(),
        &plane.url(),
        &pinned(&plane.identity.pin),
        Some("enr_bad"),
    );
    let _agent = Agent::run(&config, &dir.path().join("state"), &[]);
    let mut conn = plane.accept(T).await;
    let env = conn.recv(T).await.expect("auth.login");
    assert_eq!(env.msg_type, "auth.login");
    let refusal = AuthLoginResponse::refused(
        RemoteError {
            code: "invalid_enrollment_token".into(),
            message: "unknown token".into(),
        },
        1,
    );
    let mut out = Envelope::new(&refusal).unwrap();
    out.id = env.id;
    conn.send(&out).await;
    let refused_at = Instant::now();
    // The agent closes and waits the 30 s cap (±20 %) before dialling again.
    let mut conn = plane.accept(Duration::from_secs(45)).await;
    let waited = refused_at.elapsed();
    assert!(
        waited >= Duration::from_secs(23),
        "retried after {waited:?}"
    );
    conn.accept_login("snd_b", Some("dk_b"), &session_token("b"))
        .await;
    // Other parts (device, modems) may raise events of their own: find ours.
    let event = loop {
        let e = conn.recv_type("event", T).await;
        if e.payload["category"] == json!("manager") {
            break e;
        }
    };
    assert_eq!(
        event.payload["severity"],
        json!("critical"),
        "{:?}",
        event.payload
    );
    let message = event.payload["message"].as_str().unwrap();
    assert!(
        message.starts_with("Manager authentication failed:")
            && message.contains("invalid_enrollment_token"),
        "{message}"
    );
}

fn stream_spec(id: &str, ports: &[u16], bitrate: u32) -> Value {
    let links: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"id": i, "uri": format!("rist://127.0.0.1:{p}")}))
        .collect();
    json!({
        "stream_id": id,
        "source": {"mode": "test", "resolution": "320x240", "framerate": 30},
        "encoder": {"codec": "h264", "bitrate_kbps": bitrate, "tune": "zerolatency", "keyint_max": 30},
        "bonding_config": {"version": 1, "links": links, "scheduler": {"discard_deadline_ms": 200}}
    })
}

/// Wait for the next `stream.stats` of `id` whose output counter passed `after`.
async fn stats_after(conn: &mut TestConn, after: u64) -> StreamStats {
    let deadline = Instant::now() + T;
    loop {
        let env = conn
            .recv_type(
                "stream.stats",
                deadline.saturating_duration_since(Instant::now()),
            )
            .await;
        let stats: StreamStats = env.decode().unwrap();
        if stats.output.packets_sent > after {
            return stats;
        }
    }
}

/// Wait for the next `stream.stats` satisfying `pred`.
async fn stats_until(conn: &mut TestConn, pred: impl Fn(&StreamStats) -> bool) -> StreamStats {
    let deadline = Instant::now() + T;
    loop {
        let env = conn
            .recv_type(
                "stream.stats",
                deadline.saturating_duration_since(Instant::now()),
            )
            .await;
        let stats: StreamStats = env.decode().unwrap();
        if pred(&stats) {
            return stats;
        }
    }
}

/// Collect frames until the response to `id` arrived, returning it and any
/// `stream.ended` payloads seen meanwhile.
async fn response_and_ended(conn: &mut TestConn, msg_type: &str, id: &str) -> (Value, Vec<Value>) {
    let want = format!("{msg_type}.response");
    let mut ended = Vec::new();
    loop {
        let env = conn
            .recv(Duration::from_secs(30))
            .await
            .expect("connection lost");
        if env.msg_type == "stream.ended" {
            ended.push(Value::Object(env.payload));
        } else if env.msg_type == want && env.id == id {
            return (Value::Object(env.payload), ended);
        }
    }
}

#[tokio::test]
async fn live_stream_links_scheduler_and_spec_changes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ts");
    braid_agent::media::init().unwrap();
    let mut pool = PortPool::new(PortRange {
        first: 26000,
        last: 26998,
    });
    let ports = pool.allocate(3).expect("three free port pairs");
    let rx = Receiver::start(&ports, 400, &out).expect("receiver starts");
    let (_plane, mut conn, agent) = logged_in(dir.path(), &session_token("live")).await;

    let p = ask(
        &mut conn,
        "stream.start",
        stream_spec("str_live", &ports[..2], 600),
    )
    .await;
    assert_eq!(p["success"], json!(true), "{p}\n{}", agent.log());
    let first = stats_after(&mut conn, 0).await;
    assert_eq!(first.links.len(), 2);

    // stream.links.update: add link 2; the answer names the links in force.
    let links3 = json!([
        {"id": 0, "uri": format!("rist://127.0.0.1:{}", ports[0])},
        {"id": 1, "uri": format!("rist://127.0.0.1:{}", ports[1])},
        {"id": 2, "uri": format!("rist://127.0.0.1:{}", ports[2])}]);
    let p = ask(
        &mut conn,
        "stream.links.update",
        json!({"stream_id": "str_live", "links": links3}),
    )
    .await;
    assert_eq!(
        p,
        json!({"success": true, "stream_id": "str_live", "links": [0, 1, 2]})
    );
    // The new link carries packets (sender stats), the others go on.
    let s = stats_until(&mut conn, |s| {
        s.links.iter().any(|l| l.id == 2 && l.sent_bytes > 0)
    })
    .await;
    assert!(s.links.iter().all(|l| l.sent_bytes > 0), "{s:?}");
    assert!(
        s.uptime_s >= first.uptime_s,
        "the same stream kept flowing: {s:?}"
    );
    // ... and arrive at the receiver on the third port.
    let report = rx.report_handle();
    let deadline = Instant::now() + T;
    while report
        .lock()
        .unwrap()
        .link_packets
        .get(2)
        .copied()
        .unwrap_or(0)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "link 2 never reached the receiver: {:?}",
            report.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Remove link 1.
    let links02 = json!([links3[0].clone(), links3[2].clone()]);
    let p = ask(
        &mut conn,
        "stream.links.update",
        json!({"stream_id": "str_live", "links": links02}),
    )
    .await;
    assert_eq!(p["links"], json!([0, 2]), "{p}");
    let s = stats_until(&mut conn, |s| {
        s.links.iter().map(|l| l.id).collect::<Vec<_>>() == vec![0, 2]
    })
    .await;
    // The removed link stops: nothing new reaches the receiver on its port.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let on_1 = report.lock().unwrap().link_packets.get(1).copied();
    let on_2 = report.lock().unwrap().link_packets.get(2).copied();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = report.lock().unwrap().clone();
    assert_eq!(
        later.link_packets.get(1).copied(),
        on_1,
        "link 1 still carries: {later:?}"
    );
    assert!(
        later.link_packets.get(2).copied() > on_2,
        "link 2 goes on: {later:?}"
    );

    // config.update: scheduler merged into the live config.
    let p = ask(&mut conn, "config.update",
        json!({"stream_id": "str_live", "scheduler": {"redundancy_enabled": true, "redundancy_spare_ratio": 0.3}})).await;
    assert_eq!(p, json!({"success": true, "streams": ["str_live"]}));
    stats_after(&mut conn, s.output.packets_sent).await;

    // config.get shows the spec in force.
    let p = ask(&mut conn, "config.get", json!({})).await;
    let live = p["config"]["streams"][0].clone();
    assert_eq!(live["stream_id"], json!("str_live"));
    assert_eq!(live["bonding_config"]["links"], links02);
    assert_eq!(
        live["bonding_config"]["scheduler"],
        json!({"discard_deadline_ms": 200, "redundancy_enabled": true, "redundancy_spare_ratio": 0.3})
    );

    // config.set with the same spec: unchanged, nothing ends.
    let id = conn
        .request("config.set", json!({"config": {"streams": [live.clone()]}}))
        .await;
    let (p, ended) = response_and_ended(&mut conn, "config.set", &id).await;
    assert_eq!(p["success"], json!(true), "{p}");
    assert_eq!(p["streams"]["unchanged"], json!(["str_live"]));
    assert!(ended.is_empty());

    // Links only: hot-applied, nothing ends.
    let mut hot = live.clone();
    hot["bonding_config"]["links"] = links3.clone();
    hot["bonding_config"]["scheduler"] = json!({"discard_deadline_ms": 180});
    let id = conn
        .request("config.set", json!({"config": {"streams": [hot.clone()]}}))
        .await;
    let (p, ended) = response_and_ended(&mut conn, "config.set", &id).await;
    assert_eq!(p["streams"]["hot_applied"], json!(["str_live"]), "{p}");
    assert!(ended.is_empty(), "{ended:?}");
    let p = ask(&mut conn, "config.get", json!({})).await;
    assert_eq!(
        p["config"]["streams"][0]["bonding_config"], hot["bonding_config"],
        "scheduler replaced, not merged"
    );
    let s = stats_until(&mut conn, |s| s.links.len() == 3).await;
    assert_eq!(
        s.links.iter().map(|l| l.id).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );

    // Encoder change: restarted (stream.ended reason replaced), then live again.
    let mut restart = hot.clone();
    restart["encoder"]["bitrate_kbps"] = json!(700);
    let id = conn
        .request("config.set", json!({"config": {"streams": [restart]}}))
        .await;
    let (p, ended) = response_and_ended(&mut conn, "config.set", &id).await;
    assert_eq!(p["streams"]["restarted"], json!(["str_live"]), "{p}");
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["reason"], json!("replaced"));
    let s = stats_after(&mut conn, 0).await;
    assert!(s.uptime_s <= 3, "a fresh stream: {s:?}");
    let p = ask(&mut conn, "config.get", json!({})).await;
    assert_eq!(
        p["config"]["streams"][0]["encoder"]["bitrate_kbps"],
        json!(700)
    );

    // Empty set: stopped with user_stop.
    let id = conn
        .request("config.set", json!({"config": {"streams": []}}))
        .await;
    let (p, mut ended) = response_and_ended(&mut conn, "config.set", &id).await;
    assert_eq!(p["streams"]["stopped"], json!(["str_live"]), "{p}");
    if ended.is_empty() {
        ended.push(Value::Object(
            conn.recv_type("stream.ended", T).await.payload,
        ));
    }
    assert_eq!(ended[0]["reason"], json!("user_stop"));

    let report = tokio::task::spawn_blocking(move || rx.finish(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(report.delivered > 0, "{report:?}");
    let verdict = tokio::task::spawn_blocking(move || braid_agent::media::verify_ts(&out))
        .await
        .unwrap()
        .expect("received TS decodes");
    assert!(verdict.frames > 30, "{verdict:?}");
}
