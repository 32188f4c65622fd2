//! The devplane's state, owned by one task: connections, logins, the stream and
//! its receiver, the stop timer, and the demo verdict.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use braid_protocol::auth::{AuthLogin, AuthLoginResponse};
use braid_protocol::envelope::RESPONSE_SUFFIX;
use braid_protocol::stream::{
    BondingConfig, BondingLink, EncoderSpec, SchedulerConfig, SourceMode, SourceSpec, StreamEnded,
    StreamStart, StreamStats, StreamStop,
};
use braid_protocol::{Envelope, Message};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::sleep_until;

use super::auth::Registry;
use super::ports::PortPool;
use super::receiver::{Receiver, ReceiverReport};
use super::{Command, Options};

/// How long to wait for `stream.ended` after `stream.stop`.
const ENDED_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the receiver may take to drain after EOS.
const EOS_TIMEOUT: Duration = Duration::from_secs(10);
/// A stream must deliver at least this share of the frames its duration implies.
const MIN_FRAME_SHARE: f64 = 0.5;

/// Inputs of the plane task.
#[derive(Debug)]
pub(super) enum PlaneEvent {
    /// A WebSocket is up; frames for it go to `tx`.
    Connected {
        conn: u64,
        tx: mpsc::UnboundedSender<String>,
    },
    /// A text frame arrived.
    Frame { conn: u64, text: String },
    /// The connection is gone.
    Closed { conn: u64 },
    /// A console command (or Ctrl-C as `Quit`).
    Console(Command),
}

struct Conn {
    tx: mpsc::UnboundedSender<String>,
    sender_id: Option<String>,
}

/// The one stream the devplane runs at a time.
struct Stream {
    id: String,
    sender_id: String,
    ports: Vec<u16>,
    receiver: Option<Receiver>,
    started: Instant,
    stop_at: Option<tokio::time::Instant>,
    ended_deadline: Option<tokio::time::Instant>,
    stats_seen: u64,
    last_stats: Option<StreamStats>,
}

pub(super) struct Plane {
    opts: Options,
    registry: Registry,
    ports: PortPool,
    conns: HashMap<u64, Conn>,
    stream: Option<Stream>,
    auto_started: bool,
    exit_code: Option<i32>,
}

fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

impl Plane {
    pub(super) fn new(opts: Options) -> Self {
        Self {
            registry: Registry::new(opts.token.clone(), opts.token_ttl_s),
            ports: PortPool::new(opts.ports),
            conns: HashMap::new(),
            stream: None,
            auto_started: false,
            exit_code: None,
            opts,
        }
    }

    pub(super) async fn run(
        mut self,
        mut events: mpsc::Receiver<PlaneEvent>,
    ) -> anyhow::Result<i32> {
        loop {
            let stop_at = self
                .stream
                .as_ref()
                .and_then(|s| s.stop_at)
                .unwrap_or_else(far);
            let ended_deadline = self
                .stream
                .as_ref()
                .and_then(|s| s.ended_deadline)
                .unwrap_or_else(far);
            tokio::select! {
                ev = events.recv() => match ev {
                    None => return Ok(0),
                    Some(PlaneEvent::Connected { conn, tx }) => {
                        println!("devplane: connection {conn} open");
                        self.conns.insert(conn, Conn { tx, sender_id: None });
                    }
                    Some(PlaneEvent::Closed { conn }) => {
                        if self.conns.remove(&conn).is_some() {
                            println!("devplane: connection {conn} closed");
                        }
                    }
                    Some(PlaneEvent::Frame { conn, text }) => self.on_frame(conn, &text).await,
                    Some(PlaneEvent::Console(cmd)) => self.on_command(cmd).await,
                },
                _ = sleep_until(stop_at) => self.stop_stream(),
                _ = sleep_until(ended_deadline) => {
                    self.finish_stream(Some("no stream.ended after stream.stop".into())).await;
                }
            }
            if let Some(code) = self.exit_code {
                return Ok(code);
            }
        }
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Start => match self.logged_in_sender() {
                Some(sender) if self.stream.is_none() => self.start_stream(sender, None).await,
                Some(_) => println!("devplane: a stream is already running"),
                None => println!("devplane: no agent logged in"),
            },
            Command::Stop => {
                if self.stream.is_some() {
                    self.stop_stream();
                } else {
                    println!("devplane: no stream");
                }
            }
            Command::Update { url, sha256 } => match self.logged_in_sender() {
                Some(sender) => {
                    let update = braid_protocol::update::AgentUpdate {
                        binary_url: url,
                        sha256,
                        restart_after: true,
                    };
                    match Envelope::new(&update) {
                        Ok(env) if self.send_to(&sender, &env) => {
                            println!("devplane: agent.update sent to {sender}")
                        }
                        Ok(_) => println!("devplane: {sender} is gone"),
                        Err(e) => println!("devplane: agent.update: {e}"),
                    }
                }
                None => println!("devplane: no agent logged in"),
            },
            Command::Quit => {
                if self.stream.is_some() {
                    self.finish_stream(Some("quit before the stream ended".into()))
                        .await;
                }
                self.exit_code.get_or_insert(0);
            }
        }
    }

    fn logged_in_sender(&self) -> Option<String> {
        let mut ids: Vec<_> = self
            .conns
            .iter()
            .filter_map(|(c, x)| Some((*c, x.sender_id.clone()?)))
            .collect();
        ids.sort();
        ids.pop().map(|(_, s)| s)
    }

    /// Send a frame to the newest connection of `sender_id`.
    fn send_to(&self, sender_id: &str, env: &Envelope) -> bool {
        let conn = self
            .conns
            .iter()
            .filter(|(_, c)| c.sender_id.as_deref() == Some(sender_id))
            .max_by_key(|(id, _)| **id);
        match conn {
            Some((_, c)) => c.tx.send(env.to_json()).is_ok(),
            None => false,
        }
    }

    async fn on_frame(&mut self, conn: u64, text: &str) {
        let env: Envelope = match serde_json::from_str(text) {
            Ok(env) => env,
            Err(e) => {
                println!("devplane: malformed frame on connection {conn}: {e}");
                return;
            }
        };
        if env.msg_type == AuthLogin::TYPE {
            self.on_login(conn, &env).await;
            return;
        }
        let Some(sender) = self.conns.get(&conn).and_then(|c| c.sender_id.clone()) else {
            println!(
                "devplane: {} before login on connection {conn} ignored",
                env.msg_type
            );
            return;
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        match env
            .token
            .as_deref()
            .and_then(|t| self.registry.verify(t, now))
        {
            Some(sub) if sub == sender => {}
            _ => println!(
                "devplane: WARNING {} from {sender} without a valid session token",
                env.msg_type
            ),
        }
        match env.msg_type.as_str() {
            StreamStats::TYPE => match env.decode::<StreamStats>() {
                Ok(stats) => self.on_stats(stats),
                Err(e) => println!("devplane: invalid stream.stats: {e}"),
            },
            StreamEnded::TYPE => match env.decode::<StreamEnded>() {
                Ok(ended) => self.on_ended(ended).await,
                Err(e) => println!("devplane: invalid stream.ended: {e}"),
            },
            t if t == format!("{}{RESPONSE_SUFFIX}", StreamStart::TYPE) => {
                self.on_start_response(&env).await;
            }
            "device.status" | "health" => tracing::debug!("{}: {:?}", env.msg_type, env.payload),
            "agent.update.response" => println!(
                "devplane: agent.update.response {}",
                serde_json::Value::Object(env.payload.clone())
            ),
            "event" => println!(
                "devplane: event {}",
                serde_json::Value::Object(env.payload.clone())
            ),
            other => tracing::debug!("{other}: {:?}", env.payload),
        }
    }

    async fn on_login(&mut self, conn: u64, env: &Envelope) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let response = match env.decode::<AuthLogin>() {
            Err(e) => AuthLoginResponse::refused(
                braid_protocol::auth::RemoteError {
                    code: "invalid_payload".into(),
                    message: e.to_string(),
                },
                braid_protocol::PROTOCOL_VERSION,
            ),
            Ok(req) => match self.registry.login(&req, now) {
                Ok(granted) => {
                    let how = if granted.device_key.is_some() {
                        "enrolled"
                    } else {
                        "logged in"
                    };
                    println!(
                        "devplane: sender {} {how} (connection {conn})",
                        granted.sender_id
                    );
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.sender_id = Some(granted.sender_id.clone());
                    }
                    AuthLoginResponse {
                        success: true,
                        sender_id: Some(granted.sender_id),
                        session_token: Some(granted.session_token),
                        device_key: granted.device_key,
                        protocol_version: Some(braid_protocol::PROTOCOL_VERSION),
                        config: Some(serde_json::json!({})),
                        error: None,
                    }
                }
                Err(error) => {
                    println!("devplane: login refused on connection {conn}: {error}");
                    AuthLoginResponse::refused(error, braid_protocol::PROTOCOL_VERSION)
                }
            },
        };
        let ok = response.success;
        let sender = response.sender_id.clone();
        match Envelope::new(&response) {
            Ok(mut out) => {
                out.id = env.id.clone();
                if let Some(c) = self.conns.get(&conn) {
                    let _ = c.tx.send(out.to_json());
                }
            }
            Err(e) => println!("devplane: cannot encode auth.login.response: {e}"),
        }
        if let (true, Some(sender)) = (ok, sender) {
            if self.opts.stream_duration_s.is_some() && !self.auto_started && self.stream.is_none()
            {
                self.auto_started = true;
                self.start_stream(sender, self.opts.stream_duration_s).await;
            }
        }
    }

    async fn start_stream(&mut self, sender_id: String, duration_s: Option<u64>) {
        let n = self.opts.links.max(1) as usize;
        let Some(ports) = self.ports.allocate(n) else {
            self.report(
                false,
                &format!("no {n} free even port pairs in the port range"),
                None,
            );
            return;
        };
        let (latency, out) = (self.opts.latency_ms, self.opts.out.clone());
        let rx_ports = ports.clone();
        let receiver =
            tokio::task::spawn_blocking(move || Receiver::start(&rx_ports, latency, &out)).await;
        let receiver = match receiver {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.ports.release(&ports);
                self.report(false, &format!("receiver failed to start: {e:#}"), None);
                return;
            }
            Err(e) => {
                self.ports.release(&ports);
                self.report(false, &format!("receiver task failed: {e}"), None);
                return;
            }
        };
        let id = format!("str_{}", hex::encode(rand::rng().random::<[u8; 4]>()));
        let links: Vec<BondingLink> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| BondingLink {
                id: i as u32,
                uri: format!("rist://127.0.0.1:{p}"),
                interface: None,
            })
            .collect();
        let start = StreamStart {
            stream_id: id.clone(),
            source: SourceSpec {
                mode: SourceMode::Test,
                device: None,
                path: None,
                resolution: self.opts.resolution.clone(),
                framerate: self.opts.framerate,
                looping: false,
            },
            encoder: EncoderSpec {
                codec: Default::default(),
                bitrate_kbps: self.opts.bitrate_kbps,
                tune: Some("zerolatency".into()),
                keyint_max: Some(self.opts.framerate * 2),
                min_bitrate_kbps: None,
                max_bitrate_kbps: None,
            },
            audio: None,
            destinations: links.iter().map(|l| l.uri.clone()).collect(),
            bonding_config: BondingConfig {
                version: 1,
                links,
                scheduler: SchedulerConfig::default(),
            },
            thumbnails: false,
        };
        println!(
            "devplane: stream.start {id} to {sender_id}: test {}@{} {} kbit/s, links {:?}",
            self.opts.resolution, self.opts.framerate, self.opts.bitrate_kbps, ports
        );
        let sent = Envelope::new(&start)
            .map(|env| self.send_to(&sender_id, &env))
            .unwrap_or(false);
        self.stream = Some(Stream {
            id,
            sender_id,
            ports,
            receiver: Some(receiver),
            started: Instant::now(),
            stop_at: duration_s.map(|d| tokio::time::Instant::now() + Duration::from_secs(d)),
            ended_deadline: None,
            stats_seen: 0,
            last_stats: None,
        });
        if !sent {
            self.finish_stream(Some("could not send stream.start".into()))
                .await;
        }
    }

    async fn on_start_response(&mut self, env: &Envelope) {
        let success = env
            .payload
            .get("success")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if success {
            println!("devplane: stream.start accepted");
        } else {
            let error = env
                .payload
                .get("error")
                .map(|e| e.to_string())
                .unwrap_or_default();
            println!("devplane: stream.start refused: {error}");
            if self.stream.is_some() {
                self.finish_stream(Some(format!("stream.start refused: {error}")))
                    .await;
            }
        }
    }

    fn on_stats(&mut self, stats: StreamStats) {
        let links: Vec<String> = stats
            .links
            .iter()
            .map(|l| {
                format!(
                    "link{}={:?} rtt={:.1}ms loss={:.3} sent={}B rtx={}",
                    l.id, l.state, l.rtt_ms, l.loss_rate, l.sent_bytes, l.retransmitted_packets
                )
            })
            .collect();
        println!(
            "stats {} uptime={}s enc={}kbps pkts={} rtx={} dropped={} {}",
            stats.stream_id,
            stats.uptime_s,
            stats.encoder_bitrate_kbps,
            stats.output.packets_sent,
            stats.output.packets_retransmitted,
            stats.output.packets_dropped_deadline,
            links.join(" ")
        );
        if let Some(s) = self.stream.as_mut().filter(|s| s.id == stats.stream_id) {
            s.stats_seen += 1;
            s.last_stats = Some(stats);
        }
    }

    fn stop_stream(&mut self) {
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        s.stop_at = None;
        if s.ended_deadline.is_some() {
            return;
        }
        s.ended_deadline = Some(tokio::time::Instant::now() + ENDED_TIMEOUT);
        let stop = StreamStop {
            stream_id: s.id.clone(),
            reason: Some("user_request".into()),
        };
        println!("devplane: stream.stop {}", s.id);
        let (sender, env) = (s.sender_id.clone(), Envelope::new(&stop));
        if let Ok(env) = env {
            if !self.send_to(&sender, &env) {
                println!("devplane: agent not connected; waiting for it to come back");
            }
        }
    }

    async fn on_ended(&mut self, ended: StreamEnded) {
        println!(
            "devplane: stream.ended {} reason={:?} duration={}s bytes={}{}",
            ended.stream_id,
            ended.reason,
            ended.duration_s,
            ended.total_bytes,
            ended
                .error
                .as_deref()
                .map(|e| format!(" error={e}"))
                .unwrap_or_default()
        );
        if self
            .stream
            .as_ref()
            .is_some_and(|s| s.id == ended.stream_id)
        {
            let problem = match ended.reason {
                braid_protocol::stream::EndReason::UserStop => None,
                other => Some(format!(
                    "stream ended with reason {other:?}{}",
                    ended.error.map(|e| format!(": {e}")).unwrap_or_default()
                )),
            };
            self.finish_stream(problem).await;
        }
    }

    /// End the current stream: EOS the receiver, verify the file, print the
    /// summary. `problem` is a failure already known.
    async fn finish_stream(&mut self, problem: Option<String>) {
        let Some(mut s) = self.stream.take() else {
            return;
        };
        self.ports.release(&s.ports);
        let receiver = s.receiver.take();
        let out = self.opts.out.clone();
        let elapsed = s.started.elapsed();
        let verdict = tokio::task::spawn_blocking(move || {
            let report = receiver.map(|r| r.finish(EOS_TIMEOUT)).unwrap_or_default();
            let verdict = crate::media::verify_ts(&out);
            (report, verdict)
        })
        .await;
        let (report, verdict) = match verdict {
            Ok(v) => v,
            Err(e) => (
                ReceiverReport::default(),
                Err(anyhow::anyhow!("verification task failed: {e}")),
            ),
        };
        let requested = s.ports.len();
        let links_used = if report.link_packets.is_empty() {
            // The receiver posted no stats: fall back to the sender's view.
            s.last_stats
                .as_ref()
                .map(|st| st.links.iter().filter(|l| l.sent_bytes > 0).count())
                .unwrap_or(0)
        } else {
            report.link_packets.iter().filter(|p| **p > 0).count()
        };
        let expected_frames = elapsed.as_secs_f64() * f64::from(self.opts.framerate);
        let mut problems: Vec<String> = problem.into_iter().collect();
        if let Some(e) = &report.error {
            problems.push(format!("receiver error: {e}"));
        }
        if s.stats_seen == 0 {
            problems.push("no stream.stats received".into());
        }
        let (frames, cc_errors) = match &verdict {
            Ok(v) => (v.frames, v.cc_errors),
            Err(e) => {
                problems.push(format!("verification failed: {e:#}"));
                (0, 0)
            }
        };
        if verdict.is_ok() {
            if cc_errors > 0 {
                problems.push(format!("{cc_errors} continuity errors"));
            }
            if (frames as f64) < expected_frames * MIN_FRAME_SHARE {
                problems.push(format!(
                    "too few frames (expected about {expected_frames:.0})"
                ));
            }
        }
        if links_used < requested {
            problems.push(format!(
                "only {links_used} of {requested} links carried packets"
            ));
        }
        let figures = format!(
            "frames={frames} links={links_used} cc_errors={cc_errors} out={}",
            self.opts.out.display()
        );
        if problems.is_empty() {
            self.report(true, "", Some(&figures));
        } else {
            self.report(false, &problems.join("; "), Some(&figures));
        }
    }

    /// Print the one summary line; with `--exit-after-stream`, set the exit code.
    fn report(&mut self, ok: bool, reason: &str, figures: Option<&str>) {
        let figures = figures.map(|f| format!(" {f}")).unwrap_or_default();
        if ok {
            println!("demo: OK{figures}");
        } else {
            println!("demo: FAIL {reason}{figures}");
        }
        if self.opts.exit_after_stream {
            self.exit_code = Some(if ok { 0 } else { 1 });
        }
    }
}
