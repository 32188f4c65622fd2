//! The control task (ARCHITECTURE.md "Data flow on the sender"): the outbound
//! WebSocket to the control plane, authentication, backoff, the event queue, and
//! the session that dispatches requests to the stream manager (PROTOCOL.md §1–§6).
//!
//! One task owns everything here. Streams do not depend on the connection: the
//! stream manager keeps running while the control plane is away, and its reports
//! are drained all the time (`stream.stats` are dropped while disconnected,
//! `stream.ended` are kept and sent after the next login).

pub mod backoff;
pub mod book;
pub mod connect;
pub mod health;
pub mod jwt;
mod requests;
mod session;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_protocol::auth::AuthLogin;
use braid_protocol::event::{Category, Event, Severity};
use braid_protocol::stream::StreamEnded;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::credentials::{self, Credentials};
use crate::device::{DeviceHandle, StatusCollector};
use crate::events::{Events, Raise};
use crate::streams::{StreamReport, StreamsHandle};

use backoff::Backoff;
use book::StreamBook;
use connect::Endpoint;

/// Agent version reported in `auth.login` and `health`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Capabilities reported in `auth.login` and `health`.
pub const CAPABILITIES: &[&str] = &[
    "rist-bonding",
    "test-source",
    "v4l2",
    "media-file",
    "thumbnails",
];
/// Capabilities reported in `auth.login` and `health`: [`CAPABILITIES`] plus the
/// media capabilities of this machine (encoders by codec, audio codecs, source
/// fallback; `braid_pipelines::capabilities`), computed once.
///
/// Finding them means loading GStreamer's plugin registry, about 2.5 MiB of heap
/// that an idle sender would keep for its whole life, so the `braid-agent` binary
/// asks a short-lived `braid-agent capabilities` helper ([`crate::helper_exe`]).
/// When the helper cannot run or answers nonsense, they are computed in this
/// process (warning logged). Blocks for the helper's run (about 0.1–0.5 s) on the
/// first call: call it from a blocking context first (the agent does, at start).
pub fn capabilities() -> Vec<String> {
    static MEDIA: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let media = MEDIA.get_or_init(|| {
        if let Some(exe) = crate::helper_exe() {
            match media_capabilities_from(&exe) {
                Ok(caps) => return caps,
                Err(e) => tracing::warn!("{e}; finding them in this process"),
            }
        }
        if let Err(e) = crate::media::init() {
            tracing::warn!("media capabilities: {e:#}");
        }
        braid_pipelines::capabilities()
    });
    let mut caps: Vec<String> = CAPABILITIES.iter().map(|c| (*c).to_owned()).collect();
    caps.extend(media.iter().cloned());
    caps
}

/// Run `exe capabilities` (the agent's own helper) and parse its JSON array.
/// Errors: it cannot be started, fails, is still running after
/// [`CAPABILITIES_TIMEOUT`] (killed), or prints no string array.
fn media_capabilities_from(exe: &std::path::Path) -> Result<Vec<String>, String> {
    use std::io::Read;
    let helper = format!("{} capabilities", exe.display());
    let mut child = std::process::Command::new(exe)
        .arg("capabilities")
        .env("BRAID_LOG", "error")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("media capabilities: cannot run {helper}: {e}"))?;
    let status = crate::wait_helper(&mut child, CAPABILITIES_TIMEOUT).ok_or_else(|| {
        format!(
            "media capabilities: {helper} still running after {} s, killed",
            CAPABILITIES_TIMEOUT.as_secs()
        )
    })?;
    if !status.success() {
        return Err(format!("media capabilities: {helper} failed ({status})"));
    }
    let mut out = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_end(&mut out);
    }
    serde_json::from_slice::<Vec<String>>(&out)
        .map_err(|e| format!("media capabilities: {helper} printed no JSON list: {e}"))
}

/// Longest the capabilities helper may take (loading a cold plugin registry on a
/// slow board takes seconds; rebuilding it after a plugin change, tens).
const CAPABILITIES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Longest the event queue gets (PROTOCOL.md §6).
pub const EVENT_QUEUE_MAX: usize = crate::events::QUEUE_MAX;
/// Flap-filter subject of the control-plane connection's state (`connected`,
/// `disconnected`, `auth_failed`).
pub const MANAGER_SUBJECT: &str = "manager";

/// Keepalive and timing constants of a session (PROTOCOL.md §1, §3, §4).
pub mod timing {
    use std::time::Duration;
    /// WebSocket Ping period.
    pub const PING: Duration = Duration::from_secs(15);
    /// No frame at all from the control plane for this long: reconnect.
    pub const SILENCE: Duration = Duration::from_secs(45);
    /// Wait for `auth.login.response`.
    pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
    /// `health` period.
    pub const HEALTH: Duration = Duration::from_secs(15);
    /// A single frame write must finish within this time.
    pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
    /// On shutdown, how long to wait for the streams' `stream.ended`.
    pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);
    /// On shutdown, how long to wait for the control plane to confirm the last events.
    pub const EVENTS_CONFIRM: Duration = Duration::from_secs(2);
}

/// Errors that stop the control task for good (the agent exits non-zero).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The endpoint cannot be used (ws:// refused, TLS config).
    #[error(transparent)]
    Endpoint(#[from] connect::ConnectError),
    /// No credentials.json and no enrollment token: nothing to log in with.
    #[error("no {file} and no control_plane.enrollment_token in the config: cannot log in")]
    NoIdentity {
        /// The credentials path looked at.
        file: String,
    },
    /// credentials.json exists but cannot be read.
    #[error("credentials: {0}")]
    Credentials(#[from] credentials::CredentialsError),
}

/// The control-plane connection as seen by the service manager (issue 6:
/// `READY=1` once the first connect was tried, `STATUS=` for `systemctl status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// No connect attempt has finished yet.
    Starting,
    /// Connected (TLS + WebSocket up) to this URL.
    Connected(String),
    /// Not connected; why (connect failure, lost session, refused login).
    Disconnected(String),
}

/// Everything the control task needs.
pub struct ControlParams {
    /// The agent config (after environment overrides).
    pub config: Config,
    /// `BRAID_ALLOW_INSECURE=1`.
    pub allow_insecure: bool,
    /// The stream manager.
    pub streams: StreamsHandle,
    /// Reports of the stream manager.
    pub reports: mpsc::Receiver<StreamReport>,
    /// The event queue (opened on `<state_dir>` by the agent; other tasks hold
    /// [`crate::events::EventTx`] handles to it).
    pub events: Events,
    /// Fires on SIGTERM/SIGINT.
    pub cancel: CancellationToken,
    /// Self-update (`agent.update`, commit of an update at login).
    pub update: crate::update::UpdateHandle,
    /// The device side: `device.status` collector and change notifications.
    pub device: DeviceHandle,
    /// Where the connection state is published.
    pub state: watch::Sender<ConnectionState>,
}

/// How one connection attempt ended.
#[derive(Debug)]
enum SessionEnd {
    /// Shutdown requested.
    Shutdown,
    /// Failed before or after login; reconnect with backoff.
    Lost {
        /// Whether `auth.login` succeeded on this connection (resets the backoff).
        logged_in: bool,
        /// What happened.
        reason: String,
    },
    /// The control plane refused the login; retry no faster than the cap.
    Refused(String),
}

/// State of the control task that outlives connections.
struct Control {
    config: Config,
    endpoint: Endpoint,
    streams: StreamsHandle,
    reports: mpsc::Receiver<StreamReport>,
    cancel: CancellationToken,
    state: watch::Sender<ConnectionState>,
    credentials: Option<Credentials>,
    book: Arc<Mutex<StreamBook>>,
    collector: Arc<Mutex<StatusCollector>>,
    /// Moves when `device.status` should be sent at once (device change).
    status_changes: tokio::sync::watch::Receiver<u64>,
    events: Events,
    pending_ended: VecDeque<StreamEnded>,
    unknown_types: HashSet<String>,
    version_warned: bool,
    started: Instant,
    hostname: String,
    update: crate::update::UpdateHandle,
}

/// Run the control task until `cancel` fires. Errors: the endpoint or identity is
/// unusable (checked before the first connect: `ws://` without
/// `BRAID_ALLOW_INSECURE=1`, TLS config, neither credentials nor enrollment token).
pub async fn run(params: ControlParams) -> Result<(), ControlError> {
    let endpoint = Endpoint::new(&params.config, params.allow_insecure)?;
    let state_dir = params.config.agent.state_dir.clone();
    let creds = credentials::load(&state_dir)?;
    if creds.is_none() && params.config.control_plane.enrollment_token.is_none() {
        return Err(ControlError::NoIdentity {
            file: credentials::path(&state_dir).display().to_string(),
        });
    }
    let mut control = Control {
        endpoint,
        streams: params.streams,
        reports: params.reports,
        cancel: params.cancel,
        state: params.state,
        credentials: creds,
        book: Arc::default(),
        collector: params.device.collector(),
        status_changes: params.device.changes(),
        events: params.events,
        pending_ended: VecDeque::new(),
        unknown_types: HashSet::new(),
        version_warned: false,
        started: Instant::now(),
        hostname: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into()),
        update: params.update,
        config: params.config,
    };
    control.run().await;
    control.events.close();
    Ok(())
}

impl Control {
    async fn run(&mut self) {
        let mut backoff = Backoff::new();
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            match self.connect_and_serve().await {
                SessionEnd::Shutdown => return,
                SessionEnd::Lost { logged_in, reason } => {
                    self.state
                        .send_replace(ConnectionState::Disconnected(reason.clone()));
                    if logged_in {
                        backoff.reset();
                        self.raise(Raise::transition(
                            Event::new(
                                Severity::Warning,
                                Category::Manager,
                                format!("Manager connection lost, reconnecting: {reason}"),
                            ),
                            MANAGER_SUBJECT,
                            "disconnected",
                        ));
                    }
                    tracing::warn!(url = %self.endpoint.url(), "control plane: {reason}");
                }
                SessionEnd::Refused(reason) => {
                    self.state
                        .send_replace(ConnectionState::Disconnected(format!(
                            "login refused: {reason}"
                        )));
                    backoff.saturate();
                    tracing::error!("control plane refused the login: {reason}");
                }
            }
            let delay = backoff.next_delay();
            tracing::info!("reconnecting in {:.1} s", delay.as_secs_f64());
            if !self.idle(delay).await {
                return;
            }
        }
    }

    /// Dial and, once connected, run the session. Reports are drained meanwhile.
    async fn connect_and_serve(&mut self) -> SessionEnd {
        let endpoint = self.endpoint.clone();
        let dial = endpoint.connect();
        tokio::pin!(dial);
        let ws = loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return SessionEnd::Shutdown,
                Some(report) = self.reports.recv() => self.offline_report(report),
                result = &mut dial => match result {
                    Ok(ws) => break ws,
                    Err(e) => return SessionEnd::Lost { logged_in: false, reason: e.to_string() },
                },
            }
        };
        tracing::info!(url = %self.endpoint.url(), "connected to control plane");
        self.state
            .send_replace(ConnectionState::Connected(self.endpoint.url().to_owned()));
        session::Session::new(self, ws).run().await
    }

    /// Wait `delay` while draining reports. `false` on shutdown.
    async fn idle(&mut self, delay: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return false,
                _ = tokio::time::sleep_until(deadline) => return true,
                Some(report) = self.reports.recv() => self.offline_report(report),
            }
        }
    }

    /// A report while not logged in: stats and thumbnails are stale by the time we
    /// reconnect and are dropped; `stream.ended` is kept for the next session.
    fn offline_report(&mut self, report: StreamReport) {
        match report {
            StreamReport::Stats(stats) => self.lock_book().on_stats(&stats),
            StreamReport::Ended(ended) => {
                self.lock_book().on_ended(&ended.stream_id);
                tracing::info!(stream_id = %ended.stream_id, reason = ?ended.reason, "stream ended while disconnected");
                self.pending_ended.push_back(ended);
            }
            StreamReport::Event(event) => self.raise(event),
            StreamReport::Thumbnail(_) => {}
        }
    }

    /// Raise an event (PROTOCOL.md §6) into the persisted queue (crate::events).
    fn raise(&self, event: impl Into<Raise>) {
        self.events.raise(event);
    }

    /// The `auth.login` payload: credentials when we have them, else the
    /// enrollment token (never both, never the token once credentials exist).
    fn login_payload(&self) -> AuthLogin {
        let (enrollment_token, sender_id, device_key) = match &self.credentials {
            Some(c) => (None, Some(c.sender_id.clone()), Some(c.device_key.clone())),
            None => (
                self.config.control_plane.enrollment_token.clone(),
                None,
                None,
            ),
        };
        AuthLogin {
            enrollment_token,
            sender_id,
            device_key,
            agent_version: AGENT_VERSION.into(),
            protocol_version: braid_protocol::PROTOCOL_VERSION,
            hostname: self.hostname.clone(),
            arch: std::env::consts::ARCH.into(),
            capabilities: capabilities(),
        }
    }

    fn lock_book(&self) -> std::sync::MutexGuard<'_, StreamBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::media_capabilities_from;
    use std::path::Path;

    #[test]
    fn capabilities_helper_failures_are_errors_naming_the_helper() {
        let missing = media_capabilities_from(Path::new("/nonexistent/braid-agent")).unwrap_err();
        assert!(
            missing.contains("cannot run /nonexistent/braid-agent"),
            "{missing}"
        );
        let failed = media_capabilities_from(Path::new("/bin/false")).unwrap_err();
        assert!(failed.contains("failed"), "{failed}");
        // `echo capabilities` exits 0 but prints no JSON list.
        let garbage = media_capabilities_from(Path::new("/bin/echo")).unwrap_err();
        assert!(garbage.contains("no JSON list"), "{garbage}");
    }
}
