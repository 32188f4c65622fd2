//! The agent's control side against a control plane played by the test, over real
//! TLS and sockets (PROTOCOL.md §1–§3): enrollment, credential logins, invalid
//! payloads, unknown types, TLS pinning, ws:// refusal, reconnect with backoff.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use braid_protocol::device::DeviceStatus;
use braid_protocol::health::Health;
use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(15);

#[tokio::test]
async fn enrollment_then_login_with_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut plane = TestPlane::start().await;
    let config = write_config(
        dir.path(),
        &plane.url(),
        &pinned(&plane.identity.pin),
        Some("enr_test"),
    );

    // First run: enrollment with the token.
    let mut agent = Agent::run(&config, &state, &[]);
    let mut conn = plane.accept(T).await;
    let token = session_token("s1");
    let login = conn.accept_login("snd_test", Some("dk_test"), &token).await;
    assert_eq!(login.enrollment_token.as_deref(), Some("enr_test"));
    assert_eq!((login.sender_id, login.device_key), (None, None));
    assert_eq!(login.protocol_version, 1);
    assert!(!login.hostname.is_empty() && !login.arch.is_empty());

    // After login: health right away and device.status, each with the token.
    let health = conn.recv_type("health", T).await;
    assert_eq!(health.token.as_deref(), Some(token.as_str()));
    let health: Health = health.decode().unwrap();
    assert_eq!(health.protocol_version, 1);
    let status = conn.recv_type("device.status", T).await;
    assert_eq!(status.token.as_deref(), Some(token.as_str()));
    let status: DeviceStatus = status.decode().unwrap();
    assert!(status.network_interfaces.iter().all(|i| i.name != "lo"));
    assert!(status.mem_used_mb > 0 && status.uptime_s > 0);
    assert!(status.media_inputs.iter().any(|m| m.device == "test"));
    // status_interval_s = 2: periodic ones keep coming (a device change may add one
    // sooner, issue 5), so within 5 s there are at least two more.
    let t0 = Instant::now();
    conn.recv_type("device.status", Duration::from_secs(5))
        .await;
    conn.recv_type("device.status", Duration::from_secs(5))
        .await;
    assert!(t0.elapsed() <= Duration::from_secs(5), "{:?}", t0.elapsed());

    // Credentials persisted, 0600.
    let file = state.join("credentials.json");
    let meta = std::fs::metadata(&file).expect("credentials.json written");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        creds,
        json!({"sender_id": "snd_test", "device_key": "dk_test"})
    );

    // Graceful stop on SIGTERM, exit 0.
    agent.terminate();
    let status = agent.wait_exit(T).await.expect("agent exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", agent.log());

    // Second run, same config (still holding the token): credentials, no token.
    let _agent = Agent::run(&config, &state, &[]);
    let mut conn = plane.accept(T).await;
    let login = conn
        .accept_login("snd_test", None, &session_token("s2"))
        .await;
    assert_eq!(
        login.enrollment_token, None,
        "the enrollment token is never sent again"
    );
    assert_eq!(login.sender_id.as_deref(), Some("snd_test"));
    assert_eq!(login.device_key.as_deref(), Some("dk_test"));
    conn.recv_type("health", T).await;
}

#[tokio::test]
async fn invalid_payloads_are_answered_and_unknown_types_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut plane = TestPlane::start().await;
    let config = write_config(
        dir.path(),
        &plane.url(),
        &pinned(&plane.identity.pin),
        Some("enr_x"),
    );
    let agent = Agent::run(&config, &dir.path().join("state"), &[]);
    let mut conn = plane.accept(T).await;
    let token = session_token("s");
    conn.accept_login("snd_x", Some("dk_x"), &token).await;
    conn.recv_type("health", T).await;

    let start = |source: serde_json::Value, encoder: serde_json::Value| {
        json!({
            "stream_id": "str_bad",
            "source": source,
            "encoder": encoder,
            "bonding_config": {"version": 1, "links": [{"id": 0, "uri": "rist://127.0.0.1:15000"}]}
        })
    };

    // Missing source.resolution.
    let id = conn
        .request(
            "stream.start",
            start(
                json!({"mode": "test", "framerate": 30}),
                json!({"bitrate_kbps": 1000}),
            ),
        )
        .await;
    let resp = conn.response("stream.start", &id, T).await;
    assert_eq!(resp.token.as_deref(), Some(token.as_str()));
    assert_eq!(resp.payload["success"], json!(false));
    assert_eq!(resp.payload["error"]["code"], json!("invalid_payload"));
    let message = resp.payload["error"]["message"].as_str().unwrap();
    assert!(message.contains("source.resolution"), "{message}");

    // Bitrate as a string.
    let id = conn
        .request(
            "stream.start",
            start(
                json!({"mode": "test", "resolution": "320x240", "framerate": 30}),
                json!({"bitrate_kbps": "1000"}),
            ),
        )
        .await;
    let resp = conn.response("stream.start", &id, T).await;
    assert_eq!(resp.payload["error"]["code"], json!("invalid_payload"));
    let message = resp.payload["error"]["message"].as_str().unwrap();
    assert!(message.contains("encoder.bitrate_kbps"), "{message}");

    // Unknown type: ignored, no answer, connection stays up. Malformed JSON too.
    conn.request("weather.report", json!({"rain": true})).await;
    conn.request("weather.report", json!({"rain": false})).await;
    conn.send_text("{this is not json".into()).await;

    // A frame over 1 MiB: rejected with a protocol event, connection stays up.
    let big = json!({"id": "big", "type": "stream.stop", "ts": "x", "payload": {"stream_id": "x".repeat(1_200_000)}});
    conn.send_text(big.to_string()).await;
    let event = conn.recv_type("event", T).await;
    assert_eq!(event.payload["category"], json!("protocol"));
    assert_eq!(event.payload["severity"], json!("warning"));

    // A known request is still answered after all that.
    let id = conn.request("config.get", json!({})).await;
    let resp = conn.response("config.get", &id, T).await;
    assert_eq!(resp.payload["success"], json!(true));

    // Still serving: stop of an unknown stream is not_found.
    let id = conn
        .request("stream.stop", json!({"stream_id": "str_none"}))
        .await;
    let resp = conn.response("stream.stop", &id, T).await;
    assert_eq!(resp.payload["success"], json!(false));
    assert_eq!(resp.payload["error"]["code"], json!("not_found"));

    let log = agent.log();
    assert_eq!(
        log.matches("unknown message type ignored").count(),
        1,
        "unknown types are logged once per type:\n{log}"
    );
    assert!(!log.contains("reconnecting"), "{log}");
}

#[tokio::test]
async fn wrong_pin_is_refused_before_any_login() {
    let dir = tempfile::tempdir().unwrap();
    let mut plane = TestPlane::start().await;
    let wrong = "00".repeat(32);
    let config = write_config(dir.path(), &plane.url(), &pinned(&wrong), Some("enr_x"));
    let agent = Agent::run(&config, &dir.path().join("state"), &[]);
    assert!(
        agent.wait_log("certificate pin mismatch", T).await,
        "no clear pin error:\n{}",
        agent.log()
    );
    let log = agent.log();
    assert!(
        log.contains(&"00:".repeat(31)),
        "the configured pin is named:\n{log}"
    );
    assert!(
        *plane.tcp_accepts.lock().unwrap() >= 1,
        "the agent did dial"
    );
    assert!(
        plane.try_accept(Duration::from_millis(500)).await.is_none(),
        "no WebSocket, so no auth.login"
    );
    assert!(!log.contains("sending auth.login"), "{log}");
}

#[tokio::test]
async fn insecure_urls_and_modes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");

    let config = write_config(
        dir.path(),
        "ws://127.0.0.1:9/agent/ws",
        "mode = \"standard\"",
        Some("e"),
    );
    let mut agent = Agent::run(&config, &state, &[]);
    let status = agent.wait_exit(T).await.expect("exits at once");
    assert!(!status.success());
    assert!(
        agent.log().contains("only wss:// is accepted"),
        "{}",
        agent.log()
    );
    assert!(
        agent.log().contains("BRAID_ALLOW_INSECURE=1"),
        "{}",
        agent.log()
    );

    let config = write_config(
        dir.path(),
        "wss://127.0.0.1:9/agent/ws",
        "mode = \"insecure\"",
        Some("e"),
    );
    let mut agent = Agent::run(&config, &state, &[]);
    let status = agent.wait_exit(T).await.expect("exits at once");
    assert!(!status.success());
    assert!(
        agent.log().contains("TLS mode `insecure` is refused"),
        "{}",
        agent.log()
    );

    // With BRAID_ALLOW_INSECURE=1 the ws:// URL is dialled (with a warning).
    let config = write_config(
        dir.path(),
        "ws://127.0.0.1:9/agent/ws",
        "mode = \"standard\"",
        Some("e"),
    );
    let agent = Agent::run(&config, &state, &[("BRAID_ALLOW_INSECURE", "1")]);
    assert!(
        agent.wait_log("connecting without TLS", T).await,
        "{}",
        agent.log()
    );

    // A config error names the file and the key.
    std::fs::write(
        dir.path().join("bad.conf"),
        "[control_plane]\nurl = \"wss://h/\"\nurl2 = 1\n",
    )
    .unwrap();
    let mut agent = Agent::run(&dir.path().join("bad.conf"), &state, &[]);
    assert!(!agent.wait_exit(T).await.unwrap().success());
    assert!(
        agent
            .log()
            .contains("bad.conf, line 3: unknown key `control_plane.url2`"),
        "{}",
        agent.log()
    );
}

#[tokio::test]
async fn reconnects_with_backoff_after_control_plane_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut plane = TestPlane::start().await;
    let config = write_config(
        dir.path(),
        &plane.url(),
        &pinned(&plane.identity.pin),
        Some("enr_r"),
    );
    let agent = Agent::run(&config, &dir.path().join("state"), &[]);
    let mut conn = plane.accept(T).await;
    conn.accept_login("snd_r", Some("dk_r"), &session_token("a"))
        .await;
    conn.recv_type("health", T).await;

    // The control plane goes away for 4 s.
    let (addr, identity) = plane.stop();
    drop(conn);
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut plane = TestPlane::start_on(addr, identity).await;
    let mut conn = plane.accept(Duration::from_secs(20)).await;
    let back = down.elapsed();
    let login = conn.accept_login("snd_r", None, &session_token("b")).await;
    assert_eq!(login.sender_id.as_deref(), Some("snd_r"));
    assert_eq!(login.enrollment_token, None);
    // The connection-lost event queued while away is delivered after the new login.
    let event = conn.recv_type("event", T).await;
    assert!(
        event.payload["message"]
            .as_str()
            .unwrap()
            .contains("Manager connection lost"),
        "{:?}",
        event.payload
    );
    conn.recv_type("health", T).await;

    // Attempts at about 1 s, 2 s, 4 s (±20 %): back within about 4–9 s.
    assert!(back < Duration::from_secs(12), "{back:?}");
    let log = agent.log();
    let waits = log.matches("reconnecting in").count();
    assert!(waits >= 2, "several backoff steps expected:\n{log}");
}

#[tokio::test]
async fn session_token_is_refreshed_on_the_same_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut plane = TestPlane::start().await;
    let config = write_config(
        dir.path(),
        &plane.url(),
        &pinned(&plane.identity.pin),
        Some("enr_j"),
    );
    let _agent = Agent::run(&config, &dir.path().join("state"), &[]);
    let mut conn = plane.accept(T).await;
    // A 5 s token: re-login due after 4 s (80 %).
    let first = session_token_ttl("first", 5);
    let t0 = Instant::now();
    conn.accept_login("snd_j", Some("dk_j"), &first).await;
    let relogin = conn.recv_type("auth.login", Duration::from_secs(10)).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(3000) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    assert!(relogin.token.is_none());
    let login: braid_protocol::auth::AuthLogin = relogin.decode().unwrap();
    assert_eq!(login.enrollment_token, None);
    assert_eq!(login.sender_id.as_deref(), Some("snd_j"));
    let second = session_token("second");
    let resp = braid_protocol::auth::AuthLoginResponse {
        success: true,
        sender_id: Some("snd_j".into()),
        session_token: Some(second.clone()),
        device_key: None,
        protocol_version: Some(1),
        config: None,
        error: None,
    };
    let mut out = braid_protocol::Envelope::new(&resp).unwrap();
    out.id = relogin.id;
    conn.send(&out).await;
    // Later messages carry the new token, on the same connection. A status sent
    // while the answer was on its way (the 2 s status tick falls at the 4 s
    // re-login) rightly carries the first token, still valid: the next one (within
    // one status period) must carry the second.
    let mut status = conn.recv_type("device.status", T).await;
    if status.token.as_deref() == Some(first.as_str()) {
        status = conn.recv_type("device.status", T).await;
    }
    assert_eq!(status.token.as_deref(), Some(second.as_str()));
}
