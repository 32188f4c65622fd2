//! The agent as a systemd service (issue 6), with real processes, a real
//! `NOTIFY_SOCKET` (a Unix datagram socket played by the test, as systemd's),
//! and the WSS control plane of the test harness:
//!
//! - `READY=1` only after the first connect attempt (connected or failed), then
//!   `WATCHDOG=1` at half the `WATCHDOG_USEC` period, `STOPPING=1` on SIGTERM;
//! - `run --wait-for-config` with the packaged template waits (READY + STATUS
//!   naming the file, line and fix) and connects once the file is filled in;
//! - `check-config` and `--version` from the command line.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(20);

/// The service manager's end of `NOTIFY_SOCKET`: every datagram, as text.
struct NotifySocket {
    path: PathBuf,
    rx: mpsc::Receiver<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                if tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
                {
                    return;
                }
            }
        });
        Self { path, rx }
    }

    /// The next datagram containing `needle`, within `timeout` (others are
    /// collected into `seen`).
    fn wait_for(&self, needle: &str, timeout: Duration, seen: &mut Vec<String>) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(msg) if msg.contains(needle) => return Some(msg),
                Ok(msg) => seen.push(msg),
                Err(_) => return None,
            }
        }
    }
}

fn status_of(msg: &str) -> &str {
    msg.lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or("")
}

#[tokio::test]
async fn ready_after_the_first_connect_then_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let mut plane = TestPlane::start().await;
    let config = write_config(
        dir.path(),
        &plane.url(),
        &pinned(&plane.identity.pin),
        Some("enr_s"),
    );
    let sock = notify.path.to_str().unwrap().to_owned();
    let agent = Agent::run(
        &config,
        &dir.path().join("state"),
        &[("NOTIFY_SOCKET", &sock), ("WATCHDOG_USEC", "400000")],
    );

    let mut conn = plane.accept(T).await;
    conn.accept_login("snd_s", Some("dk_s"), &session_token("s"))
        .await;
    let mut seen = Vec::new();
    let ready = notify
        .wait_for("READY=1", T, &mut seen)
        .unwrap_or_else(|| panic!("no READY=1; got {seen:?}\n{}", agent.log()));
    assert!(*plane.tcp_accepts.lock().unwrap() >= 1);
    assert!(
        status_of(&ready).starts_with(&format!("connected to {}", plane.url())),
        "{ready}"
    );
    assert!(
        !seen.iter().any(|m| m.contains("READY=1")),
        "READY=1 only once: {seen:?}"
    );

    // WATCHDOG_USEC=0.4 s: a ping every 0.2 s.
    let start = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        notify
            .wait_for("WATCHDOG=1", Duration::from_secs(5), &mut seen)
            .unwrap_or_else(|| panic!("watchdog pings stopped after {pings}"));
        pings += 1;
    }
    assert!(start.elapsed() < Duration::from_secs(5));

    agent.terminate();
    notify
        .wait_for("STOPPING=1", T, &mut seen)
        .unwrap_or_else(|| panic!("no STOPPING=1: {seen:?}"));
    let mut agent = agent;
    let status = agent.wait_exit(T).await.expect("agent exits after SIGTERM");
    assert!(status.success(), "{}", agent.log());
}

#[tokio::test]
async fn ready_after_a_failed_first_connect_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("wss://127.0.0.1:{port}/agent/ws");
    let config = write_config(dir.path(), &url, &pinned(&"ab".repeat(32)), Some("enr_f"));
    let sock = notify.path.to_str().unwrap().to_owned();
    let agent = Agent::run(
        &config,
        &dir.path().join("state"),
        &[("NOTIFY_SOCKET", &sock)],
    );
    let mut seen = Vec::new();
    let ready = notify
        .wait_for("READY=1", T, &mut seen)
        .unwrap_or_else(|| panic!("no READY=1; got {seen:?}\n{}", agent.log()));
    assert!(
        status_of(&ready).starts_with("not connected to the control plane:"),
        "{ready}"
    );
    // No watchdog without WATCHDOG_USEC.
    assert!(notify
        .wait_for("WATCHDOG=1", Duration::from_millis(500), &mut seen)
        .is_none());
}

/// The package's template, as installed.
fn template() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/agent.conf"))
        .unwrap()
}

/// What a technician does: uncomment and fill in url, mode, pin and token.
fn filled_in(url: &str, pin: &str, token: &str) -> String {
    template()
        .replace(
            "#url = \"wss://platform.example.com/agent/ws\"",
            &format!("url = \"{url}\""),
        )
        .replace("#enrollment_token = \"enr_abc123\"", &format!("enrollment_token = \"{token}\""))
        .replace("#mode = \"standard\"", "mode = \"pinned\"")
        .replace(
            "#pin_sha256 = \"AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\"",
            &format!("pin_sha256 = \"{pin}\""),
        )
}

#[tokio::test]
async fn waits_for_the_enrollment_token_then_connects_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let config = dir.path().join("agent.conf");
    std::fs::write(&config, template()).unwrap();
    let mut child = Command::new(AGENT)
        .args(["run", "--wait-for-config", "--config"])
        .arg(&config)
        .env("BRAID_STATE_DIR", dir.path().join("state"))
        .env("NOTIFY_SOCKET", &notify.path)
        .env_remove("BRAID_ALLOW_INSECURE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let ready = notify
        .wait_for("READY=1", T, &mut seen)
        .unwrap_or_else(|| panic!("no READY=1 while waiting: {seen:?}"));
    let status = status_of(&ready);
    assert!(
        status.starts_with("waiting for a usable config:"),
        "{ready}"
    );
    assert!(
        status.contains(&format!("config file {}, line ", config.display())),
        "{status}"
    );
    assert!(status.contains("control_plane.url"), "{status}");
    assert!(status.contains("fix:"), "{status}");

    // Half done: URL but no token. The status follows, the agent still waits.
    let mut plane = TestPlane::start().await;
    let half = filled_in(&plane.url(), &plane.identity.pin, "enr_w").replace(
        "enrollment_token = \"enr_w\"",
        "#enrollment_token = \"enr_abc123\"",
    );
    std::fs::write(&config, half).unwrap();
    let msg = notify
        .wait_for("no `control_plane.enrollment_token`", T, &mut seen)
        .unwrap_or_else(|| panic!("status did not follow the file: {seen:?}"));
    assert!(
        !msg.contains("READY=1"),
        "READY=1 was sent once already: {msg}"
    );
    assert!(plane.try_accept(Duration::from_millis(500)).await.is_none());
    assert!(
        child.try_wait().unwrap().is_none(),
        "the agent keeps waiting"
    );

    // Filled in: the agent enrolls without being restarted.
    std::fs::write(
        &config,
        filled_in(&plane.url(), &plane.identity.pin, "enr_w"),
    )
    .unwrap();
    let mut conn = plane.accept(T).await;
    let login = conn
        .accept_login("snd_w", Some("dk_w"), &session_token("w"))
        .await;
    assert_eq!(login.enrollment_token.as_deref(), Some("enr_w"));
    notify
        .wait_for("connected to", T, &mut seen)
        .unwrap_or_else(|| panic!("no connected status: {seen:?}"));

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(dir.path().join("state/credentials.json").exists());
}

fn cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(AGENT);
    cmd.args(args).env_remove("BRAID_ALLOW_INSECURE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_and_version_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state_env = [("BRAID_STATE_DIR", state.to_str().unwrap())];
    let config = dir.path().join("agent.conf");
    let cfg = config.to_str().unwrap();

    let (ok, out, _) = cli(&["--version"], &[]);
    assert!(ok);
    assert_eq!(
        out.trim(),
        format!("braid-agent {}", env!("CARGO_PKG_VERSION"))
    );

    // The template as shipped: names the missing URL, its line and the fix.
    std::fs::write(&config, template()).unwrap();
    let (ok, _, err) = cli(&["check-config", "--config", cfg], &state_env);
    assert!(!ok);
    let line = template()
        .lines()
        .position(|l| l == "[control_plane]")
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("config file {cfg}, line {line}: key `control_plane.url`: required key is missing; fix: set `url = ")),
        "{err}"
    );

    // Filled in: OK, and says it will enroll (no credentials yet).
    std::fs::write(
        &config,
        filled_in(
            "wss://platform.example.com/agent/ws",
            &"ab".repeat(32),
            "enr_c",
        ),
    )
    .unwrap();
    let (ok, out, err) = cli(&["check-config", "--config", cfg], &state_env);
    assert!(ok, "{err}");
    assert!(out.starts_with(&format!("config OK: {cfg}: control plane wss://platform.example.com/agent/ws (TLS pinned), enroll")), "{out}");

    // URL without token and without credentials.
    std::fs::write(
        &config,
        filled_in("wss://h/agent/ws", &"ab".repeat(32), "enr_c")
            .replace("enrollment_token = \"enr_c\"", ""),
    )
    .unwrap();
    let (ok, _, err) = cli(&["check-config", "--config", cfg], &state_env);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "config file {cfg}, line {line}: no `control_plane.enrollment_token`"
        )),
        "{err}"
    );
    assert!(err.contains("fix: add `enrollment_token = "), "{err}");

    // ws:// is refused with the URL's line.
    std::fs::write(
        &config,
        filled_in("ws://h/agent/ws", &"ab".repeat(32), "enr_c"),
    )
    .unwrap();
    let (ok, _, err) = cli(&["check-config", "--config", cfg], &state_env);
    assert!(!ok);
    assert!(
        err.contains(", line ")
            && err.contains("not encrypted")
            && err.contains("fix: use a wss:// URL"),
        "{err}"
    );

    // A typo: file, line, key and the likely fix.
    std::fs::write(
        &config,
        filled_in("wss://h/agent/ws", &"ab".repeat(32), "enr_c")
            .replace("#status_interval_s = 10", "status_intervall_s = 10"),
    )
    .unwrap();
    let (ok, _, err) = cli(&["check-config", "--config", cfg], &state_env);
    assert!(!ok);
    assert!(
        err.contains("unknown key `agent.status_intervall_s`")
            && err.contains("did you mean `agent.status_interval_s`?"),
        "{err}"
    );

    // Unreadable.
    let (ok, _, err) = cli(
        &["check-config", "--config", "/nonexistent/agent.conf"],
        &state_env,
    );
    assert!(!ok);
    assert!(
        err.contains("config file /nonexistent/agent.conf: cannot read:")
            && err.contains("fix: create it"),
        "{err}"
    );
}
