//! Test harness: a WSS control plane played by the test (rcgen certificate made
//! here, tokio-rustls, tokio-tungstenite), and the agent binary as a child process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_protocol::auth::{AuthLogin, AuthLoginResponse};
use braid_protocol::{Envelope, Message};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

/// Path of the agent binary under test.
pub const AGENT: &str = env!("CARGO_BIN_EXE_braid-agent");

/// A self-signed certificate for 127.0.0.1/localhost and its rustls server config.
#[derive(Clone)]
pub struct Identity {
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate DER, lower-case hex without colons.
    pub pin: String,
}

impl Identity {
    pub fn generate() -> Self {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let der: CertificateDer<'static> = ck.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
        Self {
            config: Arc::new(config),
            pin: hex::encode(Sha256::digest(der.as_ref())),
        }
    }
}

pub type ServerWs = WebSocketStream<TlsStream<TcpStream>>;

/// The control plane played by the test.
pub struct TestPlane {
    pub addr: SocketAddr,
    pub identity: Identity,
    conns: mpsc::UnboundedReceiver<TestConn>,
    /// TCP connections accepted (whether or not TLS succeeded).
    pub tcp_accepts: Arc<Mutex<u32>>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TestPlane {
    /// A plane on a free port with a new certificate.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), Identity::generate()).await
    }

    /// A plane on `addr` with `identity` (used to "restart" a plane).
    pub async fn start_on(addr: SocketAddr, identity: Identity) -> Self {
        let listener = bind_retry(addr).await;
        let addr = listener.local_addr().unwrap();
        let (tx, conns) = mpsc::unbounded_channel();
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.config.clone());
        let tcp_accepts = Arc::new(Mutex::new(0));
        let counter = tcp_accepts.clone();
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                *counter.lock().unwrap() += 1;
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let config =
                        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                            .max_message_size(Some(64 << 20))
                            .max_frame_size(Some(64 << 20));
                    if let Ok(ws) =
                        tokio_tungstenite::accept_async_with_config(tls, Some(config)).await
                    {
                        let _ = tx.send(TestConn { ws });
                    }
                });
            }
        });
        Self {
            addr,
            identity,
            conns,
            tcp_accepts,
            accept_task,
        }
    }

    pub fn url(&self) -> String {
        format!("wss://{}/agent/ws", self.addr)
    }

    /// The next WebSocket connection, within `timeout`.
    pub async fn accept(&mut self, timeout: Duration) -> TestConn {
        tokio::time::timeout(timeout, self.conns.recv())
            .await
            .expect("no agent connection in time")
            .expect("accept loop ended")
    }

    /// Whether a WebSocket connection arrives within `timeout`.
    pub async fn try_accept(&mut self, timeout: Duration) -> Option<TestConn> {
        tokio::time::timeout(timeout, self.conns.recv())
            .await
            .ok()
            .flatten()
    }

    /// Stop listening (established connections are dropped by their owners).
    pub fn stop(self) -> (SocketAddr, Identity) {
        self.accept_task.abort();
        (self.addr, self.identity)
    }
}

async fn bind_retry(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    }
}

/// One agent connection.
pub struct TestConn {
    pub ws: ServerWs,
}

impl TestConn {
    /// Next text frame as an envelope, within `timeout` (control frames skipped).
    pub async fn recv(&mut self, timeout: Duration) -> Option<Envelope> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match frame.ok()? {
                WsMessage::Text(t) => {
                    return Some(serde_json::from_str(t.as_str()).expect("agent sent an envelope"))
                }
                WsMessage::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Next frame of type `msg_type` (others skipped), within `timeout`.
    pub async fn recv_type(&mut self, msg_type: &str, timeout: Duration) -> Envelope {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Some(env) if env.msg_type == msg_type => return env,
                Some(_) => continue,
                None => panic!("no {msg_type} within {timeout:?}"),
            }
        }
    }

    pub async fn send(&mut self, env: &Envelope) {
        self.send_text(env.to_json()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws
            .send(WsMessage::text(text))
            .await
            .expect("send to agent");
    }

    /// Send a request of `msg_type` with `payload`; returns its id.
    pub async fn request(&mut self, msg_type: &str, payload: serde_json::Value) -> String {
        let serde_json::Value::Object(map) = payload else {
            panic!("payload must be an object")
        };
        let env = Envelope::with_payload(msg_type, map);
        self.send(&env).await;
        env.id
    }

    /// Wait for the response to request `id` (type `<msg_type>.response`).
    pub async fn response(&mut self, msg_type: &str, id: &str, timeout: Duration) -> Envelope {
        let want = format!("{msg_type}.response");
        let deadline = Instant::now() + timeout;
        loop {
            let env = self
                .recv_type(&want, deadline.saturating_duration_since(Instant::now()))
                .await;
            if env.id == id {
                return env;
            }
        }
    }

    /// Read the first frame (must be `auth.login`) and accept it, issuing
    /// `device_key` when given (enrollment). Returns the login payload.
    pub async fn accept_login(
        &mut self,
        sender_id: &str,
        device_key: Option<&str>,
        token: &str,
    ) -> AuthLogin {
        let env = self
            .recv(Duration::from_secs(15))
            .await
            .expect("no first frame");
        assert_eq!(env.msg_type, "auth.login", "first frame must be auth.login");
        assert!(env.token.is_none(), "auth.login carries no token");
        let login: AuthLogin = env.decode().expect("valid auth.login");
        let resp = AuthLoginResponse {
            success: true,
            sender_id: Some(sender_id.into()),
            session_token: Some(token.into()),
            device_key: device_key.map(Into::into),
            protocol_version: Some(1),
            config: Some(serde_json::json!({})),
            error: None,
        };
        let mut out = Envelope::new(&resp).unwrap();
        out.id = env.id;
        assert_eq!(AuthLoginResponse::TYPE, "auth.login.response");
        self.send(&out).await;
        login
    }
}

/// A JWT-shaped token with `exp` one hour ahead.
pub fn session_token(tag: &str) -> String {
    session_token_ttl(tag, 3600)
}

/// A JWT-shaped token with `iat` now and `exp` `ttl_s` ahead.
pub fn session_token_ttl(tag: &str, ttl_s: u64) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "{}.{}.{}",
        e.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        e.encode(format!(
            r#"{{"sub":"{tag}","iat":{now},"exp":{}}}"#,
            now + ttl_s
        )),
        e.encode(tag)
    )
}

/// Write an agent config into `dir` and return its path.
pub fn write_config(dir: &Path, url: &str, tls: &str, token: Option<&str>) -> PathBuf {
    let token = token
        .map(|t| format!("enrollment_token = \"{t}\"\n"))
        .unwrap_or_default();
    let text = format!(
        "[control_plane]\nurl = \"{url}\"\n{token}[control_plane.tls]\n{tls}\n[agent]\nstate_dir = \"/nonexistent/overridden\"\nmedia_dir = \"{}\"\nstatus_interval_s = 2\n",
        dir.join("media").display()
    );
    let path = dir.join("agent.conf");
    std::fs::write(&path, text).unwrap();
    path
}

/// `mode = "pinned"` with `pin`.
pub fn pinned(pin: &str) -> String {
    format!("mode = \"pinned\"\npin_sha256 = \"{pin}\"")
}

/// The agent as a child process; stderr is collected.
pub struct Agent {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Agent {
    /// `braid-agent run --config CONFIG` with `BRAID_STATE_DIR=state_dir` and `env`.
    pub fn run(config: &Path, state_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::run_binary(Path::new(AGENT), config, state_dir, env)
    }

    /// Like [`Agent::run`] with another copy of the agent binary (update tests).
    pub fn run_binary(
        binary: &Path,
        config: &Path,
        state_dir: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(binary);
        cmd.args(["run", "--config"])
            .arg(config)
            .env("BRAID_STATE_DIR", state_dir)
            .env("BRAID_LOG", "info,braid_agent=debug")
            .env_remove("BRAID_ALLOW_INSECURE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn braid-agent");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("BRAID_TEST_ECHO").is_some() {
                    eprintln!("agent: {line}");
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Self { child, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Wait for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// SIGTERM (graceful stop).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `n` even UDP ports P whose P and P+1 are bound here (RTP + RTCP sockets).
pub fn udp_pairs(n: usize) -> Vec<(UdpSocket, UdpSocket)> {
    let mut got = Vec::new();
    while got.len() < n {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if !port.is_multiple_of(2) || port == u16::MAX {
            continue;
        }
        if let Ok(b) = UdpSocket::bind(("127.0.0.1", port + 1)) {
            got.push((a, b));
        }
    }
    got
}
