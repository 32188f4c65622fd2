//! `agent.update` end to end (PROTOCOL.md §5): copies of the real agent binary in
//! a temp dir, the update served over a real https server (hyper + rustls with the
//! test's self-signed certificate, trusted through the agent's pin), and the test
//! playing systemd: `ExecStartPre=-<binary>.prev update-guard`, then
//! `<binary> run`, restarted whenever it exits (`Restart=always`).
//!
//! A good update swaps and restarts; a bad checksum, a 404, a binary that does not
//! start, an oversized download, an untrusted server, a concurrent update change
//! nothing; a binary that passes its preflight but crashes at start is rolled back
//! by the guard; a binary that cannot log in rolls itself back.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_protocol::auth::{AuthLoginResponse, RemoteError};
use braid_protocol::Envelope;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(20);
/// A download of the ~200 MB debug binary plus its preflight, on a loaded machine.
const UPDATE_T: Duration = Duration::from_secs(120);

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn sha_file(path: &Path) -> String {
    sha_hex(&std::fs::read(path).unwrap())
}

/// An https server (the given identity) serving `files` by path; `/slow` answers
/// 404 after 3 s.
async fn file_server(
    identity: &Identity,
    files: HashMap<String, Bytes>,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.config.clone());
    let files = Arc::new(files);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let files = files.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let files = files.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            if path == "/slow" {
                                tokio::time::sleep(Duration::from_secs(3)).await;
                            }
                            let resp = match files.get(&path) {
                                Some(body) => hyper::Response::new(Full::new(body.clone())),
                                None => hyper::Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::from_static(b"not here")))
                                    .unwrap(),
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("https://{addr}"), task)
}

/// The agent under test without debug info (`objcopy --strip-debug`, as a release
/// binary ships): the same program at a fifth of the size. Made once per run in
/// cargo's per-target temp dir (replaced, never accumulated).
fn stripped_agent() -> &'static Path {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join("braid-agent-stripped");
        let tmp = dir.join(format!("braid-agent-stripped.{}", std::process::id()));
        let status = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(AGENT)
            .arg(&tmp)
            .status()
            .expect("objcopy (binutils)");
        assert!(status.success());
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
}

/// A temp install: `bin/braid-agent` (a copy of the agent under test), a config
/// pinned to `plane` with `[update]` pointing at the copy, a state dir.
struct Install {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    config: PathBuf,
    state: PathBuf,
}

impl Install {
    fn new(plane: &TestPlane, login_timeout_s: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        let bin = bin_dir.join("braid-agent");
        std::fs::copy(stripped_agent(), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = write_config(
            dir.path(),
            &plane.url(),
            &pinned(&plane.identity.pin),
            Some("enr_u"),
        );
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "[update]\nbinary_path = \"{}\"\nmax_size_mb = 1024\nlogin_timeout_s = {login_timeout_s}\n",
            bin.display()
        ));
        std::fs::write(&config, text).unwrap();
        let state = dir.path().join("state");
        Self {
            bin,
            config,
            state,
            _dir: dir,
        }
    }

    fn prev(&self) -> PathBuf {
        PathBuf::from(format!("{}.prev", self.bin.display()))
    }

    fn marker(&self) -> PathBuf {
        self.state.join("updates/pending.json")
    }

    /// Nothing but the original binary: no `.prev`, `.new`, temp file or marker.
    fn assert_untouched(&self, original_sha: &str) {
        assert_eq!(sha_file(&self.bin), original_sha, "the binary is unchanged");
        let names: Vec<String> = std::fs::read_dir(self.bin.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["braid-agent".to_owned()]);
        assert!(!self.marker().exists(), "no update marker");
    }
}

/// The test playing systemd for one install: guard, run, restart on every exit.
struct Supervisor {
    stop: Arc<AtomicBool>,
    exits: Arc<Mutex<Vec<Option<i32>>>>,
    log: Arc<Mutex<String>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervisor {
    fn start(install: &Install) -> Self {
        Self::spawn(
            install.bin.clone(),
            install.prev(),
            install.config.clone(),
            install.state.clone(),
        )
    }

    /// `ExecStartPre=-<prev> update-guard --config <config>`, `ExecStart=<bin>
    /// run --config <config>`, `Restart=always`.
    fn spawn(bin: PathBuf, prev: PathBuf, config: PathBuf, state: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let exits = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(String::new()));
        let (s, e, l) = (stop.clone(), exits.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if prev.exists() {
                    let out = Command::new(&prev)
                        .args(["update-guard", "--config"])
                        .arg(&config)
                        .env("BRAID_STATE_DIR", &state)
                        .env_remove("BRAID_LAUNCHER")
                        .output();
                    if let Ok(out) = out {
                        l.lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&out.stderr));
                    }
                }
                let spawned = Command::new(&bin)
                    .args(["run", "--config"])
                    .arg(&config)
                    .env("BRAID_STATE_DIR", &state)
                    .env("BRAID_LOG", "info,braid_agent=debug")
                    .env_remove("BRAID_ALLOW_INSECURE")
                    .env_remove("BRAID_LAUNCHER")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn();
                let mut child = match spawned {
                    Ok(c) => c,
                    Err(err) => {
                        l.lock()
                            .unwrap()
                            .push_str(&format!("supervisor: exec failed: {err}\n"));
                        e.lock().unwrap().push(None);
                        std::thread::sleep(Duration::from_millis(300));
                        continue;
                    }
                };
                let stderr = child.stderr.take().unwrap();
                let sink = l.clone();
                let reader = std::thread::spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        if std::env::var_os("BRAID_TEST_ECHO").is_some() {
                            eprintln!("agent: {line}");
                        }
                        let mut l = sink.lock().unwrap();
                        l.push_str(&line);
                        l.push('\n');
                    }
                });
                loop {
                    if s.load(Ordering::SeqCst) {
                        let _ = child.kill();
                        let _ = child.wait();
                        let _ = reader.join();
                        return;
                    }
                    if let Some(status) = child.try_wait().unwrap() {
                        let _ = reader.join();
                        l.lock()
                            .unwrap()
                            .push_str(&format!("supervisor: exited {status}\n"));
                        e.lock().unwrap().push(status.code());
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                // RestartSec
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Self {
            stop,
            exits,
            log,
            thread: Some(thread),
        }
    }

    fn exits(&self) -> Vec<Option<i32>> {
        self.exits.lock().unwrap().clone()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn ask(conn: &mut TestConn, msg_type: &str, payload: Value, timeout: Duration) -> Value {
    let id = conn.request(msg_type, payload).await;
    Value::Object(conn.response(msg_type, &id, timeout).await.payload)
}

/// The next `event` of category `update` (other events skipped).
async fn next_update_event(conn: &mut TestConn) -> Value {
    loop {
        let e = conn.recv_type("event", T).await;
        if e.payload["category"] == json!("update") {
            return Value::Object(e.payload);
        }
    }
}

fn update_request(url: &str, sha: &str, restart: bool) -> Value {
    json!({"binary_url": url, "sha256": sha, "restart_after": restart})
}

/// The agent binary with bytes appended: a different file (and SHA-256) that runs
/// exactly like the original.
fn rebuilt_agent(tag: &str) -> Bytes {
    let mut bytes = std::fs::read(stripped_agent()).unwrap();
    bytes.extend_from_slice(format!("\nbraid-test-build:{tag}\n").as_bytes());
    Bytes::from(bytes)
}

async fn refuse(conn: &mut TestConn, login_id: String) {
    let refusal = AuthLoginResponse::refused(
        RemoteError {
            code: "invalid_credentials".into(),
            message: "this build is not allowed".into(),
        },
        1,
    );
    let mut out = Envelope::new(&refusal).unwrap();
    out.id = login_id;
    conn.send(&out).await;
}

#[tokio::test]
async fn a_good_update_swaps_and_restarts_into_the_new_binary() {
    let mut plane = TestPlane::start().await;
    let install = Install::new(&plane, 60);
    let old_sha = sha_file(&install.bin);
    let sup = Supervisor::start(&install);
    let mut conn = plane.accept(T).await;
    conn.accept_login("snd_u", Some("dk_u"), &session_token("u1"))
        .await;
    conn.recv_type("health", T).await;

    let new = rebuilt_agent("good");
    let new_sha = sha_hex(&new);
    let (base, _server) = file_server(
        &plane.identity,
        HashMap::from([("/braid-agent".into(), new.clone())]),
    )
    .await;
    let p = ask(
        &mut conn,
        "agent.update",
        update_request(
            &format!("{base}/braid-agent"),
            &new_sha.to_uppercase(),
            true,
        ),
        UPDATE_T,
    )
    .await;
    assert_eq!(
        p,
        json!({"success": true, "sha256": new_sha, "size_bytes": new.len(), "restarting": true}),
        "{}",
        sup.log()
    );
    // Swapped atomically, previous binary kept, marker pending until the login.
    assert_eq!(sha_file(&install.bin), new_sha);
    assert_eq!(sha_file(&install.prev()), old_sha);
    assert!(install.bin.metadata().unwrap().permissions().mode() & 0o111 != 0);

    // The agent exits 75; "systemd" starts the new binary, which logs in.
    let mut conn = plane.accept(Duration::from_secs(60)).await;
    assert_eq!(sup.exits(), vec![Some(75)], "{}", sup.log());
    let marker: Value =
        serde_json::from_str(&std::fs::read_to_string(install.marker()).unwrap()).unwrap();
    assert_eq!(marker["state"], json!("pending"));
    assert_eq!(marker["new_sha256"], json!(new_sha));
    let login = conn.accept_login("snd_u", None, &session_token("u2")).await;
    assert_eq!(
        login.device_key.as_deref(),
        Some("dk_u"),
        "same identity after the update"
    );
    let event = next_update_event(&mut conn).await;
    assert_eq!(event["severity"], json!("info"), "{event}");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .starts_with("Agent updated to"),
        "{event}"
    );
    // Committed: no marker; the running binary is the new one.
    assert!(!install.marker().exists());
    assert_eq!(sha_file(&install.bin), new_sha);
    assert!(sup.log().contains("update committed"), "{}", sup.log());
}

#[tokio::test]
async fn failed_updates_change_nothing() {
    let mut plane = TestPlane::start().await;
    let install = Install::new(&plane, 60);
    let old_sha = sha_file(&install.bin);
    let agent = Agent::run_binary(&install.bin, &install.config, &install.state, &[]);
    let mut conn = plane.accept(T).await;
    conn.accept_login("snd_f", Some("dk_f"), &session_token("f"))
        .await;
    conn.recv_type("health", T).await;

    let good = rebuilt_agent("f");
    let good_sha = sha_hex(&good);
    let garbage = Bytes::from(vec![0x5a_u8; 4096]);
    let garbage_sha = sha_hex(&garbage);
    let files = HashMap::from([
        ("/braid-agent".to_owned(), good.clone()),
        ("/garbage".to_owned(), garbage),
    ]);
    let (base, _server) = file_server(&plane.identity, files.clone()).await;

    // A wrong SHA-256.
    let p = ask(
        &mut conn,
        "agent.update",
        update_request(&format!("{base}/braid-agent"), &"00".repeat(32), true),
        UPDATE_T,
    )
    .await;
    assert_eq!(p["error"]["code"], json!("verification_failed"), "{p}");
    assert!(
        p["error"]["message"].as_str().unwrap().contains(&good_sha),
        "{p}"
    );
    install.assert_untouched(&old_sha);

    // Not there.
    let p = ask(
        &mut conn,
        "agent.update",
        update_request(&format!("{base}/missing"), &good_sha, true),
        UPDATE_T,
    )
    .await;
    assert_eq!(p["error"]["code"], json!("not_found"), "{p}");
    install.assert_untouched(&old_sha);

    // The announced bytes, but not a program: fails its preflight.
    let p = ask(
        &mut conn,
        "agent.update",
        update_request(&format!("{base}/garbage"), &garbage_sha, true),
        UPDATE_T,
    )
    .await;
    assert_eq!(p["error"]["code"], json!("verification_failed"), "{p}");
    assert!(
        p["error"]["message"]
            .as_str()
            .unwrap()
            .contains("start check"),
        "{p}"
    );
    install.assert_untouched(&old_sha);

    // A server whose certificate the agent does not trust.
    let stranger = Identity::generate();
    let (other, _other_server) = file_server(&stranger, files).await;
    let p = ask(
        &mut conn,
        "agent.update",
        update_request(&format!("{other}/braid-agent"), &good_sha, true),
        UPDATE_T,
    )
    .await;
    assert_eq!(p["error"]["code"], json!("internal"), "{p}");
    assert!(
        p["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pin mismatch"),
        "{p}"
    );
    install.assert_untouched(&old_sha);

    // A second update while one is in progress is refused with busy.
    let slow = conn
        .request(
            "agent.update",
            update_request(&format!("{base}/slow"), &good_sha, true),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = ask(
        &mut conn,
        "agent.update",
        update_request(&format!("{base}/braid-agent"), &good_sha, true),
        UPDATE_T,
    )
    .await;
    assert_eq!(p["error"]["code"], json!("busy"), "{p}");
    let slow = conn.response("agent.update", &slow, UPDATE_T).await;
    assert_eq!(slow.payload["error"]["code"], json!("not_found"));

    // Larger than update.max_size_mb (set live with config.set).
    let p = ask(
        &mut conn,
        "config.set",
        json!({"config": {"update": {"max_size_mb": 1}}}),
        T,
    )
    .await;
    assert_eq!(p["agent_changed"], json!(["update.max_size_mb"]), "{p}");
    let p = ask(
        &mut conn,
        "agent.update",
        update_request(&format!("{base}/braid-agent"), &good_sha, true),
        UPDATE_T,
    )
    .await;
    assert_eq!(p["error"]["code"], json!("unsupported"), "{p}");
    assert!(
        p["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_size_mb"),
        "{p}"
    );
    install.assert_untouched(&old_sha);

    // Still the same process and connection.
    conn.recv_type("health", Duration::from_secs(20)).await;
    assert!(!agent.log().contains("reconnecting"), "{}", agent.log());
}

#[tokio::test]
async fn a_binary_that_cannot_start_is_rolled_back_by_the_guard() {
    let mut plane = TestPlane::start().await;
    let install = Install::new(&plane, 60);
    let old_sha = sha_file(&install.bin);
    let sup = Supervisor::start(&install);
    let mut conn = plane.accept(T).await;
    conn.accept_login("snd_g", Some("dk_g"), &session_token("g1"))
        .await;
    conn.recv_type("health", T).await;

    // Passes the preflight, dies at every real start.
    let script = Bytes::from_static(
        b"#!/bin/sh\nif [ \"$1\" = preflight ]; then echo 'braid-agent preflight ok version=9.9.9'; exit 0; fi\necho 'this build crashes at start' >&2\nexit 3\n",
    );
    let sha = sha_hex(&script);
    let (base, _server) =
        file_server(&plane.identity, HashMap::from([("/b".into(), script)])).await;
    let p = ask(
        &mut conn,
        "agent.update",
        update_request(&format!("{base}/b"), &sha, true),
        UPDATE_T,
    )
    .await;
    assert_eq!(p["success"], json!(true), "{p}\n{}", sup.log());

    // Three crashing starts, then the guard (the previous binary) restores it and
    // the old agent logs in again and reports the rollback.
    let mut conn = plane.accept(Duration::from_secs(90)).await;
    assert_eq!(
        sup.exits(),
        vec![Some(75), Some(3), Some(3), Some(3)],
        "{}",
        sup.log()
    );
    assert_eq!(sha_file(&install.bin), old_sha);
    conn.accept_login("snd_g", None, &session_token("g2")).await;
    let event = next_update_event(&mut conn).await;
    assert_eq!(event["severity"], json!("critical"), "{event}");
    let message = event["message"].as_str().unwrap();
    assert!(
        message.starts_with("Agent update rolled back:") && message.contains("3 starts"),
        "{message}"
    );
    assert!(!install.marker().exists());
}

#[tokio::test]
async fn a_binary_that_cannot_log_in_rolls_itself_back() {
    let mut plane = TestPlane::start().await;
    let install = Install::new(&plane, 6);
    let old_sha = sha_file(&install.bin);
    let sup = Supervisor::start(&install);
    let mut conn = plane.accept(T).await;
    conn.accept_login("snd_l", Some("dk_l"), &session_token("l1"))
        .await;
    conn.recv_type("health", T).await;

    let new = rebuilt_agent("no-login");
    let new_sha = sha_hex(&new);
    let (base, _server) = file_server(&plane.identity, HashMap::from([("/b".into(), new)])).await;
    let p = ask(
        &mut conn,
        "agent.update",
        update_request(&format!("{base}/b"), &new_sha, true),
        UPDATE_T,
    )
    .await;
    assert_eq!(p["success"], json!(true), "{p}\n{}", sup.log());

    // The control plane refuses the new build; after login_timeout_s (6 s) it puts
    // the previous binary back and exits for a restart.
    let started = Instant::now();
    let mut refused = 0;
    let mut conn = loop {
        let mut c = plane.accept(Duration::from_secs(90)).await;
        let login = c.recv(T).await.expect("auth.login");
        assert_eq!(login.msg_type, "auth.login");
        if sha_file(&install.bin) == new_sha {
            refused += 1;
            refuse(&mut c, login.id).await;
            continue;
        }
        // Back on the old binary: accept.
        let resp = AuthLoginResponse {
            success: true,
            sender_id: Some("snd_l".into()),
            session_token: Some(session_token("l2")),
            device_key: None,
            protocol_version: Some(1),
            config: None,
            error: None,
        };
        let mut out = Envelope::new(&resp).unwrap();
        out.id = login.id;
        c.send(&out).await;
        break c;
    };
    assert!(refused >= 1);
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sha_file(&install.bin), old_sha);
    assert_eq!(sup.exits(), vec![Some(75), Some(75)], "{}", sup.log());
    // The refusal of the new build and then the rollback are reported, in order.
    let mut messages = Vec::new();
    while !messages
        .iter()
        .any(|m: &String| m.starts_with("Agent update rolled back"))
    {
        let e = conn.recv_type("event", T).await;
        messages.push(e.payload["message"].as_str().unwrap().to_owned());
    }
    let rolled = messages.last().unwrap();
    assert!(rolled.contains("did not log in within 6 s"), "{messages:?}");
    assert!(!install.marker().exists());
}

/// A packaged install as the .deb lays it out: the launcher `usr/bin/braid-agent`
/// in a directory the agent must never write (0555; the hardened unit's
/// `ProtectSystem=strict` makes /usr read-only), a config with no `[update]
/// binary_path` (the packaged default `<state_dir>/bin/braid-agent` applies), and
/// the state dir the unit's `StateDirectory=` provides.
struct Packaged {
    dir: tempfile::TempDir,
    usr_bin: PathBuf,
    config: PathBuf,
    state: PathBuf,
}

impl Packaged {
    fn new(plane: &TestPlane, login_timeout_s: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let usr = dir.path().join("usr/bin");
        std::fs::create_dir_all(&usr).unwrap();
        let usr_bin = usr.join("braid-agent");
        std::fs::copy(stripped_agent(), &usr_bin).unwrap();
        std::fs::set_permissions(&usr_bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&usr, std::fs::Permissions::from_mode(0o555)).unwrap();
        let config = write_config(
            dir.path(),
            &plane.url(),
            &pinned(&plane.identity.pin),
            Some("enr_p"),
        );
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "[update]\nmax_size_mb = 1024\nlogin_timeout_s = {login_timeout_s}\n"
        ));
        std::fs::write(&config, text).unwrap();
        let state = dir.path().join("state");
        Self {
            dir,
            usr_bin,
            config,
            state,
        }
    }

    /// Where agent.update installs: `<state_dir>/bin/braid-agent`.
    fn installed(&self) -> PathBuf {
        self.state.join("bin/braid-agent")
    }

    fn installed_with(&self, suffix: &str) -> PathBuf {
        PathBuf::from(format!("{}{suffix}", self.installed().display()))
    }

    /// The unit: guard from `<state_dir>/bin/braid-agent.prev`, start the launcher.
    fn supervise(&self) -> Supervisor {
        Supervisor::spawn(
            self.usr_bin.clone(),
            self.installed_with(".prev"),
            self.config.clone(),
            self.state.clone(),
        )
    }

    /// Names and SHA-256 of what is in the launcher's directory.
    fn usr_listing(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = std::fs::read_dir(self.usr_bin.parent().unwrap())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().into_string().unwrap(), sha_file(&e.path()))
            })
            .collect();
        v.sort();
        v
    }

    /// `dpkg -i` of another package: a new launcher file (rename over it).
    fn upgrade_package(&self, bytes: &[u8]) {
        let usr = self.usr_bin.parent().unwrap();
        std::fs::set_permissions(usr, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tmp = usr.join("braid-agent.dpkg-new");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &self.usr_bin).unwrap();
        std::fs::set_permissions(usr, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
}

impl Drop for Packaged {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(
            self.dir.path().join("usr/bin"),
            std::fs::Permissions::from_mode(0o755),
        );
    }
}

/// Log in and wait for the first health report.
async fn login(
    plane: &mut TestPlane,
    timeout: Duration,
    sender: &str,
    key: Option<&str>,
) -> TestConn {
    let mut conn = plane.accept(timeout).await;
    conn.accept_login(sender, key, &session_token(sender)).await;
    conn
}

#[tokio::test]
async fn a_packaged_install_runs_its_update_from_the_state_dir_until_a_package_upgrade() {
    let mut plane = TestPlane::start().await;
    let pkg = Packaged::new(&plane, 60);
    let usr_before = pkg.usr_listing();
    let packaged_sha = sha_file(&pkg.usr_bin);
    let sup = pkg.supervise();
    let mut conn = login(&mut plane, T, "snd_p", Some("dk_p")).await;
    conn.recv_type("health", T).await;
    assert!(!pkg.installed().exists());

    // 1. From the packaged binary: installed under the state dir, /usr untouched.
    let one = rebuilt_agent("pkg-update-1");
    let one_sha = sha_hex(&one);
    let two = rebuilt_agent("pkg-update-2");
    let two_sha = sha_hex(&two);
    let (base, _server) = file_server(
        &plane.identity,
        HashMap::from([("/1".into(), one.clone()), ("/2".into(), two.clone())]),
    )
    .await;
    let p = ask(
        &mut conn,
        "agent.update",
        update_request(&format!("{base}/1"), &one_sha, true),
        UPDATE_T,
    )
    .await;
    assert_eq!(p["success"], json!(true), "{p}\n{}", sup.log());
    assert_eq!(
        pkg.usr_listing(),
        usr_before,
        "the packaged binary's directory is never written"
    );
    assert_eq!(sha_file(&pkg.installed()), one_sha);
    assert_eq!(sha_file(&pkg.installed_with(".prev")), packaged_sha);
    let base_rec: Value =
        serde_json::from_slice(&std::fs::read(pkg.installed_with(".base")).unwrap()).unwrap();
    assert_eq!(
        base_rec["launcher_sha256"],
        json!(packaged_sha),
        "{base_rec}"
    );
    let mode = std::fs::metadata(pkg.state.join("bin"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");

    // The launcher execs it at the next start: it is on trial (its own path is the
    // marker's binary_path) and commits at login.
    let mut conn = login(&mut plane, Duration::from_secs(60), "snd_p", None).await;
    let event = next_update_event(&mut conn).await;
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .starts_with("Agent updated to")
            && event["message"].as_str().unwrap().contains(&one_sha[..12]),
        "{event}\n{}",
        sup.log()
    );
    assert_eq!(sup.exits(), vec![Some(75)], "{}", sup.log());
    let log = sup.log();
    assert_eq!(
        log.matches("starting the installed update").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("running as the installed update").count(),
        1,
        "{log}"
    );
    assert!(
        !pkg.state.join("updates/pending.json").exists(),
        "committed"
    );

    // 2. From the exec'd update: .prev is update 1, .base still names the package.
    let p = ask(
        &mut conn,
        "agent.update",
        update_request(&format!("{base}/2"), &two_sha, true),
        UPDATE_T,
    )
    .await;
    assert_eq!(p["success"], json!(true), "{p}\n{}", sup.log());
    assert_eq!(sha_file(&pkg.installed()), two_sha);
    assert_eq!(sha_file(&pkg.installed_with(".prev")), one_sha);
    let base_rec: Value =
        serde_json::from_slice(&std::fs::read(pkg.installed_with(".base")).unwrap()).unwrap();
    assert_eq!(
        base_rec["launcher_sha256"],
        json!(packaged_sha),
        "{base_rec}"
    );
    assert_eq!(
        base_rec["launcher"],
        json!(pkg.usr_bin.display().to_string()),
        "{base_rec}"
    );
    let mut conn = login(&mut plane, Duration::from_secs(60), "snd_p", None).await;
    let event = next_update_event(&mut conn).await;
    assert!(
        event["message"].as_str().unwrap().contains(&two_sha[..12]),
        "{event}\n{}",
        sup.log()
    );
    assert_eq!(sup.exits(), vec![Some(75), Some(75)], "{}", sup.log());
    assert_eq!(pkg.usr_listing(), usr_before);
    drop(conn);
    drop(sup);

    // 3. A package upgrade (new /usr/bin/braid-agent): the older remote update is
    // superseded, never run, and its files are removed.
    let upgraded = rebuilt_agent("package-0.2");
    pkg.upgrade_package(&upgraded);
    let sup = pkg.supervise();
    let mut conn = login(&mut plane, Duration::from_secs(60), "snd_p", None).await;
    conn.recv_type("health", T).await;
    let log = sup.log();
    assert!(log.contains("superseded by"), "{log}");
    assert!(!log.contains("starting the installed update"), "{log}");
    assert!(!log.contains("running as the installed update"), "{log}");
    let left: Vec<_> = std::fs::read_dir(pkg.state.join("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "stale update files left: {left:?}");
    assert_eq!(sha_file(&pkg.usr_bin), sha_hex(&upgraded));
}

#[tokio::test]
async fn a_packaged_install_rolls_a_crashing_update_back() {
    let mut plane = TestPlane::start().await;
    let pkg = Packaged::new(&plane, 60);
    let usr_before = pkg.usr_listing();
    let packaged_sha = sha_file(&pkg.usr_bin);
    let sup = pkg.supervise();
    let mut conn = login(&mut plane, T, "snd_r", Some("dk_r")).await;
    conn.recv_type("health", T).await;

    // Passes its preflight, exits 3 at every real start (the launcher execs it).
    let script = Bytes::from_static(
        b"#!/bin/sh\nif [ \"$1\" = preflight ]; then echo 'braid-agent preflight ok version=9.9.9'; exit 0; fi\necho \"crashing build, started as $0 with $*, launcher $BRAID_LAUNCHER\" >&2\nexit 3\n",
    );
    let sha = sha_hex(&script);
    let (base, _server) =
        file_server(&plane.identity, HashMap::from([("/b".into(), script)])).await;
    let p = ask(
        &mut conn,
        "agent.update",
        update_request(&format!("{base}/b"), &sha, true),
        UPDATE_T,
    )
    .await;
    assert_eq!(p["success"], json!(true), "{p}\n{}", sup.log());

    // Three crashing starts (exec'd with the same arguments), then the guard run
    // from <state_dir>/bin/braid-agent.prev restores it; the launcher execs the
    // restored binary, which logs in and reports the rollback.
    let mut conn = login(&mut plane, Duration::from_secs(90), "snd_r", None).await;
    assert_eq!(
        sup.exits(),
        vec![Some(75), Some(3), Some(3), Some(3)],
        "{}",
        sup.log()
    );
    let log = sup.log();
    let expected = format!(
        "crashing build, started as {} with run --config {}, launcher {}",
        pkg.installed().display(),
        pkg.config.display(),
        pkg.usr_bin.display()
    );
    assert_eq!(log.matches(&expected).count(), 3, "{log}");
    assert_eq!(sha_file(&pkg.installed()), packaged_sha);
    let event = next_update_event(&mut conn).await;
    let message = event["message"].as_str().unwrap();
    assert!(
        message.starts_with("Agent update rolled back:") && message.contains("3 starts"),
        "{message}"
    );
    assert!(!pkg.state.join("updates/pending.json").exists());
    assert_eq!(pkg.usr_listing(), usr_before);
}
