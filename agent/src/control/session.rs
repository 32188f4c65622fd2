//! One connection to the control plane: `auth.login` first (PROTOCOL.md §3), then
//! the session loop: requests dispatched to the stream manager, reports forwarded,
//! `device.status` / `health` / Ping on their cadences, silence detection, token
//! refresh, and the graceful flush on shutdown.

use std::time::Duration;

use braid_protocol::auth::AuthLoginResponse;
use braid_protocol::error::{ErrorBody, ErrorCode};
use braid_protocol::event::{Category, Event, Severity};
use braid_protocol::health::Health;
use braid_protocol::inbound::{self, DecodeError, Decoded, Inbound, InboundMessage};
use braid_protocol::stream::{EndReason, StreamStart, StreamStop};
use braid_protocol::{Envelope, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::connect::{Ws, MAX_FRAME};
use super::{jwt, timing, Control, SessionEnd};
use crate::credentials::{self, Credentials};
use crate::streams::StreamReport;

/// Far future for disarmed timers.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A connection in progress: login, then the loop.
pub(super) struct Session<'a> {
    control: &'a mut Control,
    ws: Ws,
    token: Option<String>,
    last_rx: Instant,
    logged_in: bool,
    /// Responses and status payloads produced by spawned tasks.
    outbox_tx: mpsc::Sender<Envelope>,
    outbox_rx: mpsc::Receiver<Envelope>,
    /// Id of an in-session `auth.login` awaiting its response (token refresh).
    relogin: Option<String>,
    refresh_at: Instant,
}

/// Result of handling one frame.
enum Flow {
    Continue,
    End(SessionEnd),
}

impl<'a> Session<'a> {
    pub(super) fn new(control: &'a mut Control, ws: Ws) -> Self {
        let (outbox_tx, outbox_rx) = mpsc::channel(64);
        Self {
            control,
            ws,
            token: None,
            last_rx: Instant::now(),
            logged_in: false,
            outbox_tx,
            outbox_rx,
            relogin: None,
            refresh_at: Instant::now() + NEVER,
        }
    }

    pub(super) async fn run(mut self) -> SessionEnd {
        let end = match self.login().await {
            Ok(()) => self.serve().await,
            Err(end) => end,
        };
        if matches!(end, SessionEnd::Shutdown) && self.logged_in {
            self.flush_on_shutdown().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
        end
    }

    fn lost(&self, reason: impl Into<String>) -> SessionEnd {
        SessionEnd::Lost {
            logged_in: self.logged_in,
            reason: reason.into(),
        }
    }

    // ---- login (PROTOCOL.md §3) -------------------------------------------------

    async fn login(&mut self) -> Result<(), SessionEnd> {
        let request =
            Envelope::new(&self.control.login_payload()).map_err(|e| self.lost(e.to_string()))?;
        let enrolling = self.control.credentials.is_none();
        tracing::info!(
            enrolling,
            "sending auth.login with {}",
            if enrolling {
                "the enrollment token"
            } else {
                "sender_id + device_key"
            }
        );
        self.send_raw(&request).await?;
        let deadline = Instant::now() + timing::LOGIN_TIMEOUT;
        loop {
            tokio::select! {
                _ = self.control.cancel.cancelled() => return Err(SessionEnd::Shutdown),
                Some(report) = self.control.reports.recv() => self.control.offline_report(report),
                _ = sleep_until(deadline) => {
                    return Err(self.lost(format!(
                        "no auth.login.response within {} s",
                        timing::LOGIN_TIMEOUT.as_secs()
                    )))
                }
                frame = self.ws.next() => {
                    let text = self.read_text(frame)?;
                    let Some(text) = text else { continue };
                    match inbound::decode(&text) {
                        Ok(Decoded::Known(InboundMessage { body: Inbound::AuthLoginResponse(resp), .. })) => {
                            return self.on_login_response(resp).await;
                        }
                        Ok(other) => tracing::debug!("ignored before login: {other:?}"),
                        Err(DecodeError::InvalidPayload { msg_type, error, .. })
                            if msg_type == AuthLoginResponse::TYPE =>
                        {
                            return Err(self.lost(format!("invalid auth.login.response: {error}")));
                        }
                        Err(e) => tracing::warn!("before login: {e}"),
                    }
                }
            }
        }
    }

    /// Apply an `auth.login.response` (first login or refresh).
    async fn on_login_response(&mut self, resp: AuthLoginResponse) -> Result<(), SessionEnd> {
        if !resp.success {
            let reason = resp
                .error
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no reason given".into());
            self.control.raise(Event::new(
                Severity::Critical,
                Category::Manager,
                format!("Manager authentication failed: {reason}"),
            ));
            return Err(SessionEnd::Refused(reason));
        }
        let Some(token) = resp.session_token.filter(|t| !t.is_empty()) else {
            return Err(self.lost("auth.login.response without session_token"));
        };
        let sender_id = resp.sender_id.or_else(|| {
            self.control
                .credentials
                .as_ref()
                .map(|c| c.sender_id.clone())
        });
        match (sender_id, resp.device_key) {
            (Some(sender_id), Some(device_key)) => {
                let creds = Credentials {
                    sender_id,
                    device_key,
                };
                if self.control.credentials.as_ref() != Some(&creds) {
                    self.persist(creds);
                }
            }
            (_, None) if self.control.credentials.is_some() => {}
            _ => {
                return Err(self
                    .lost("enrollment answered without sender_id and device_key; not logged in"))
            }
        }
        if let Some(v) = resp.protocol_version {
            if v != braid_protocol::PROTOCOL_VERSION && !self.control.version_warned {
                self.control.version_warned = true;
                self.control.raise(Event::new(
                    Severity::Warning,
                    Category::Manager,
                    format!(
                        "Protocol version mismatch (agent={}, control_plane={v})",
                        braid_protocol::PROTOCOL_VERSION
                    ),
                ));
            }
        }
        let now_unix = time::OffsetDateTime::now_utc().unix_timestamp();
        self.refresh_at = match jwt::refresh_after(&token, now_unix) {
            Some(after) => Instant::now() + after,
            None => Instant::now() + NEVER,
        };
        self.token = Some(token);
        self.relogin = None;
        if !self.logged_in {
            self.logged_in = true;
            let sender = self
                .control
                .credentials
                .as_ref()
                .map(|c| c.sender_id.as_str())
                .unwrap_or("?");
            tracing::info!(sender_id = sender, "logged in to control plane");
            self.control.raise(Event::new(
                Severity::Info,
                Category::Manager,
                "Connected to manager",
            ));
        } else {
            tracing::info!("session token refreshed");
        }
        Ok(())
    }

    /// Write credentials.json; on failure keep them in memory (this process will not
    /// send the enrollment token again) and raise an event.
    fn persist(&mut self, creds: Credentials) {
        let dir = self.control.config.agent.state_dir.clone();
        match credentials::store(&dir, &creds) {
            Ok(()) => tracing::info!(
                sender_id = %creds.sender_id,
                file = %credentials::path(&dir).display(),
                "credentials saved"
            ),
            Err(e) => {
                tracing::error!("cannot save credentials: {e}");
                self.control.raise(Event::new(
                    Severity::Warning,
                    Category::Security,
                    format!("Credential persistence failed: {e}"),
                ));
            }
        }
        self.control.credentials = Some(creds);
    }

    // ---- the session loop -----------------------------------------------------

    async fn serve(&mut self) -> SessionEnd {
        // Queued while disconnected: events and stream.ended, in order.
        while let Some(ended) = self.control.pending_ended.pop_front() {
            if let Err(end) = self.send(&ended).await {
                self.control.pending_ended.push_front(ended);
                return end;
            }
        }
        if let Err(end) = self.flush_events().await {
            return end;
        }

        // The first status goes out with the first tick: changes until now are in it.
        self.control.status_changes.borrow_and_update();
        let now = Instant::now();
        let status_every = Duration::from_secs(self.control.config.agent.status_interval_s);
        let mut status_tick = interval_at(now, status_every);
        let mut health_tick = interval_at(now, timing::HEALTH);
        let mut ping_tick = interval_at(now + timing::PING, timing::PING);
        for t in [&mut status_tick, &mut health_tick, &mut ping_tick] {
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        loop {
            let flow = tokio::select! {
                _ = self.control.cancel.cancelled() => return SessionEnd::Shutdown,
                frame = self.ws.next() => match self.read_text(frame) {
                    Err(end) => Flow::End(end),
                    Ok(None) => Flow::Continue,
                    Ok(Some(text)) => self.on_frame(&text).await,
                },
                Some(report) = self.control.reports.recv() => self.on_report(report).await,
                Some(env) = self.outbox_rx.recv() => self.send_flow(env).await,
                _ = status_tick.tick() => { self.spawn_status(); Flow::Continue }
                Ok(()) = self.control.status_changes.changed() => { self.spawn_status(); Flow::Continue }
                _ = health_tick.tick() => self.send_health().await,
                _ = ping_tick.tick() => match self.send_ws(WsMessage::Ping(Default::default())).await {
                    Ok(()) => Flow::Continue,
                    Err(end) => Flow::End(end),
                },
                _ = sleep_until(self.last_rx + timing::SILENCE) => Flow::End(self.lost(format!(
                    "no frame from the control plane for {} s",
                    timing::SILENCE.as_secs()
                ))),
                _ = sleep_until(self.refresh_at), if self.relogin.is_none() => self.start_relogin().await,
            };
            if let Flow::End(end) = flow {
                return end;
            }
            if !self.control.events.is_empty() {
                if let Err(end) = self.flush_events().await {
                    return end;
                }
            }
        }
    }

    /// One text frame from the control plane.
    async fn on_frame(&mut self, text: &str) -> Flow {
        if text.len() > MAX_FRAME {
            tracing::warn!(bytes = text.len(), "frame larger than 1 MiB rejected");
            self.control.raise(Event::new(
                Severity::Warning,
                Category::Protocol,
                format!(
                    "Oversized frame rejected ({} bytes > {MAX_FRAME})",
                    text.len()
                ),
            ));
            return Flow::Continue;
        }
        match inbound::decode(text) {
            Ok(Decoded::Known(msg)) => self.on_message(msg).await,
            Ok(Decoded::Unknown { msg_type, .. }) => {
                if self.control.unknown_types.insert(msg_type.clone()) {
                    tracing::info!(
                        msg_type,
                        "unknown message type ignored (logged once per type)"
                    );
                }
                Flow::Continue
            }
            Err(DecodeError::Malformed(reason)) => {
                tracing::warn!("malformed frame ignored: {reason}");
                Flow::Continue
            }
            Err(err @ DecodeError::InvalidPayload { .. }) => {
                tracing::warn!("{err}");
                let DecodeError::InvalidPayload {
                    id,
                    msg_type,
                    error,
                } = err
                else {
                    return Flow::Continue;
                };
                match id {
                    Some(id) if !msg_type.ends_with(braid_protocol::envelope::RESPONSE_SUFFIX) => {
                        self.respond_error(&id, &msg_type, error.error_body()).await
                    }
                    _ => Flow::Continue,
                }
            }
        }
    }

    async fn on_message(&mut self, msg: InboundMessage) -> Flow {
        match msg.body {
            Inbound::AuthLoginResponse(resp) => {
                if self.relogin.is_some() {
                    match self.on_login_response(resp).await {
                        Ok(()) => Flow::Continue,
                        Err(end) => Flow::End(end),
                    }
                } else {
                    tracing::debug!("unsolicited auth.login.response ignored");
                    Flow::Continue
                }
            }
            Inbound::StreamStart(spec) => {
                self.spawn_start(msg.id, *spec);
                Flow::Continue
            }
            Inbound::StreamStop(stop) => {
                self.spawn_stop(msg.id, stop);
                Flow::Continue
            }
            Inbound::NotImplemented => {
                let err = ErrorBody::new(
                    ErrorCode::Unsupported,
                    format!(
                        "{} is not implemented by agent {}",
                        msg.msg_type,
                        super::AGENT_VERSION
                    ),
                );
                self.respond_error(&msg.id, &msg.msg_type, err).await
            }
        }
    }

    /// `stream.start`: carried out on its own task; the response goes through the outbox.
    fn spawn_start(&mut self, id: String, spec: StreamStart) {
        tracing::info!(stream_id = %spec.stream_id, "stream.start");
        self.control.lock_book().on_start_requested(&spec);
        let streams = self.control.streams.clone();
        let book = self.control.book.clone();
        let outbox = self.outbox_tx.clone();
        tokio::spawn(async move {
            let stream_id = spec.stream_id.clone();
            let result = streams.start(spec).await;
            book.lock()
                .unwrap_or_else(|p| p.into_inner())
                .on_start_done(&stream_id, result.is_ok());
            match &result {
                Ok(()) => tracing::info!(%stream_id, "stream started"),
                Err(e) => tracing::warn!(%stream_id, "stream.start failed: {e}"),
            }
            let body = stream_body(&stream_id);
            let _ = outbox
                .send(response(
                    &id,
                    StreamStart::TYPE,
                    result.as_ref().map(|_| &body),
                ))
                .await;
        });
    }

    /// `stream.stop`: the stream's `stream.ended` arrives on the report channel.
    fn spawn_stop(&mut self, id: String, stop: StreamStop) {
        tracing::info!(stream_id = %stop.stream_id, reason = ?stop.reason, "stream.stop");
        self.control.lock_book().on_stop_requested(&stop.stream_id);
        let streams = self.control.streams.clone();
        let outbox = self.outbox_tx.clone();
        tokio::spawn(async move {
            let result = streams.stop(&stop.stream_id, EndReason::UserStop).await;
            let body = stream_body(&stop.stream_id);
            let _ = outbox
                .send(response(
                    &id,
                    StreamStop::TYPE,
                    result.as_ref().map(|_| &body),
                ))
                .await;
        });
    }

    async fn on_report(&mut self, report: StreamReport) -> Flow {
        let result = match report {
            StreamReport::Stats(stats) => {
                self.control.lock_book().on_stats(&stats);
                self.send(&stats).await
            }
            StreamReport::Ended(ended) => {
                self.control.lock_book().on_ended(&ended.stream_id);
                tracing::info!(stream_id = %ended.stream_id, reason = ?ended.reason, "stream ended");
                match self.send(&ended).await {
                    Ok(()) => Ok(()),
                    Err(end) => {
                        self.control.pending_ended.push_back(ended);
                        Err(end)
                    }
                }
            }
            StreamReport::Event(event) => {
                self.control.raise(event);
                self.flush_events().await
            }
        };
        match result {
            Ok(()) => Flow::Continue,
            Err(end) => Flow::End(end),
        }
    }

    /// Collect `device.status` on a blocking thread; it comes back via the outbox.
    fn spawn_status(&self) {
        let (state, busy) = {
            let book = self.control.lock_book();
            (book.state(), book.busy_inputs())
        };
        let collector = self.control.collector.clone();
        let outbox = self.outbox_tx.clone();
        tokio::spawn(async move {
            let status = tokio::task::spawn_blocking(move || {
                collector
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .collect(state, &busy)
            })
            .await;
            match status.map(|s| Envelope::new(&s)) {
                Ok(Ok(env)) => {
                    let _ = outbox.send(env).await;
                }
                Ok(Err(e)) => tracing::error!("device.status: {e}"),
                Err(e) => tracing::error!("device.status collector failed: {e}"),
            }
        });
    }

    async fn send_health(&mut self) -> Flow {
        let (status, live) = {
            let book = self.control.lock_book();
            (book.health(), book.count())
        };
        let health = Health {
            status,
            agent_version: super::AGENT_VERSION.into(),
            protocol_version: braid_protocol::PROTOCOL_VERSION,
            capabilities: super::capabilities(),
            uptime_s: self.control.started.elapsed().as_secs(),
            streams_live: u32::try_from(live).unwrap_or(u32::MAX),
            event_backlog: u32::try_from(self.control.events.len()).unwrap_or(u32::MAX),
        };
        match self.send(&health).await {
            Ok(()) => Flow::Continue,
            Err(end) => Flow::End(end),
        }
    }

    /// Re-authenticate on this connection at 80 % of the token lifetime (§3.4).
    async fn start_relogin(&mut self) -> Flow {
        let request = match Envelope::new(&self.control.login_payload()) {
            Ok(env) => env,
            Err(e) => return Flow::End(self.lost(e.to_string())),
        };
        tracing::info!("session token at 80 % of its lifetime: re-authenticating");
        self.relogin = Some(request.id.clone());
        match self.send_raw(&request).await {
            Ok(()) => Flow::Continue,
            Err(end) => Flow::End(end),
        }
    }

    async fn flush_events(&mut self) -> Result<(), SessionEnd> {
        while let Some(event) = self.control.events.pop_front() {
            if let Err(end) = self.send(&event).await {
                self.control.events.push_front(event);
                return Err(end);
            }
        }
        Ok(())
    }

    /// Shutdown: forward the streams' `stream.ended` (reason `shutdown`) for up to
    /// [`timing::SHUTDOWN_FLUSH`], then leave.
    async fn flush_on_shutdown(&mut self) {
        let deadline = Instant::now() + timing::SHUTDOWN_FLUSH;
        while !self.control.lock_book().is_empty() {
            tokio::select! {
                _ = sleep_until(deadline) => {
                    tracing::warn!("shutdown: not every stream.ended arrived in time");
                    break;
                }
                report = self.control.reports.recv() => match report {
                    Some(report) => {
                        if let Flow::End(_) = self.on_report(report).await {
                            break;
                        }
                    }
                    None => break,
                },
            }
        }
        let _ = self.flush_events().await;
    }

    // ---- I/O helpers ----------------------------------------------------------

    /// Handle one WebSocket read: text frames are returned; control frames update
    /// liveness; close and errors end the session.
    fn read_text(
        &mut self,
        frame: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<Option<String>, SessionEnd> {
        match frame {
            None => Err(self.lost("connection closed")),
            Some(Err(e)) => Err(self.lost(format!("connection error: {e}"))),
            Some(Ok(msg)) => {
                self.last_rx = Instant::now();
                match msg {
                    WsMessage::Text(text) => Ok(Some(text.as_str().to_owned())),
                    WsMessage::Binary(b) => {
                        tracing::warn!(
                            bytes = b.len(),
                            "binary frame ignored (JSON text frames only)"
                        );
                        Ok(None)
                    }
                    WsMessage::Close(frame) => Err(self.lost(format!(
                        "closed by the control plane{}",
                        frame
                            .map(|f| format!(": {} {}", f.code, f.reason))
                            .unwrap_or_default()
                    ))),
                    WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => Ok(None),
                }
            }
        }
    }

    async fn respond_error(&mut self, id: &str, msg_type: &str, error: ErrorBody) -> Flow {
        let env = response(id, msg_type, Err(&error));
        self.send_flow(env).await
    }

    async fn send_flow(&mut self, env: Envelope) -> Flow {
        match self.send_env(env).await {
            Ok(()) => Flow::Continue,
            Err(end) => Flow::End(end),
        }
    }

    /// Send a message with the session token.
    async fn send<M: Message>(&mut self, msg: &M) -> Result<(), SessionEnd> {
        let env = Envelope::new(msg).map_err(|e| self.lost(e.to_string()))?;
        self.send_env(env).await
    }

    async fn send_env(&mut self, env: Envelope) -> Result<(), SessionEnd> {
        let env = env.with_token(self.token.clone());
        self.send_raw(&env).await
    }

    async fn send_raw(&mut self, env: &Envelope) -> Result<(), SessionEnd> {
        tracing::trace!(msg_type = %env.msg_type, "send");
        self.send_ws(WsMessage::text(env.to_json())).await
    }

    async fn send_ws(&mut self, msg: WsMessage) -> Result<(), SessionEnd> {
        match tokio::time::timeout(timing::SEND_TIMEOUT, self.ws.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.lost(format!("send failed: {e}"))),
            Err(_) => Err(self.lost(format!(
                "send blocked for {} s",
                timing::SEND_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// `{"stream_id": …}`: body of successful stream responses.
fn stream_body(stream_id: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("stream_id".into(), Value::String(stream_id.to_owned()));
    m
}

/// A response envelope; falls back to an `internal` error if the body cannot be
/// encoded (it always can: bodies are maps).
fn response(id: &str, msg_type: &str, result: Result<&Map<String, Value>, &ErrorBody>) -> Envelope {
    Envelope::response(id, msg_type, result).unwrap_or_else(|e| {
        let err = ErrorBody::new(ErrorCode::Internal, e.to_string());
        let payload =
            braid_protocol::envelope::response_payload::<Map<String, Value>>(msg_type, Err(&err))
                .unwrap_or_default();
        let mut env = Envelope::with_payload(
            format!("{msg_type}{}", braid_protocol::envelope::RESPONSE_SUFFIX),
            payload,
        );
        env.id = id.to_owned();
        env
    })
}
