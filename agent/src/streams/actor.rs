//! One stream: owns its pipeline from build to `Null`, reports stats and the end,
//! and keeps it on air when its source goes away: the pipeline's `fallbackswitch`
//! puts the slate on air, the [`Supervisor`] restarts the source, and the actor turns
//! switches into events (PROTOCOL.md §6, category `stream`) and ends the stream with
//! `source_lost` only after `streams.source_lost_timeout_s` (default: never).

use std::time::{Duration, Instant};

use braid_pipelines::{Action, Essence, SourceEvent, StreamPlan, Supervisor};
use braid_protocol::error::{ErrorBody, ErrorCode};
use braid_protocol::event::{Category, Event, Severity};
use braid_protocol::stream::{EndReason, StreamEnded, StreamStats};
use futures_util::StreamExt;
use gst::prelude::*;
use ristbond_core::feedback::BitrateController;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::signals::{parse_thumbnail, LinkWatch};
use super::stats::{parse_sink_stats, SinkStats};
use super::{ActorCmd, StreamReport};

/// How long a pipeline may take to reach PLAYING.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits for EOS to drain through the sink (it lingers for repairs).
const EOS_TIMEOUT: Duration = Duration::from_secs(3);
/// `stream.stats` cadence (PROTOCOL.md §4).
const STATS_PERIOD: Duration = Duration::from_secs(1);

/// A stream between `start` and `stream.ended`.
pub(super) struct StreamActor {
    plan: StreamPlan,
    reports: mpsc::Sender<StreamReport>,
    last: SinkStats,
    links: LinkWatch,
    /// Reports produced while handling a bus message, sent by the loop (events must
    /// not be dropped, so they are sent with back-pressure, outside `on_message`).
    outgoing: Vec<StreamReport>,
    /// `streams.source_lost_timeout_s`.
    source_lost_timeout: Option<Duration>,
    /// Since when the video source is lost (the slate on air).
    video_lost_since: Option<Instant>,
    /// Why, for `stream.ended.error`.
    video_lost_reason: String,
    /// Encoder bitrate from the bond's usable capacity (issue 3 encoder feedback).
    bitrate: BitrateController,
    /// A new encoder bitrate decided while handling a bus message, kbit/s, applied
    /// by the loop (which holds the pipeline).
    bitrate_change: Option<u32>,
}

/// Share of the bond's usable capacity kept free for TS/RTP/UDP overhead and
/// retransmissions when the encoder follows it. The links' estimates only grow while
/// they carry at least 75 % of them (ristbond-core `sched`), so the encoder plus its
/// ~5 % of TS/RTP overhead must stay above that for the bitrate to climb back.
const BITRATE_HEADROOM: f64 = 0.15;

/// How the live phase ended.
enum Ending {
    Stop(EndReason, Option<oneshot::Sender<()>>),
    Failed(EndReason, String),
    /// The source stayed lost past the timeout: drained like a stop, reported with
    /// reason `source_lost` and this error text.
    SourceLost(String),
}

/// Restarts of source branches in flight: (branch, result).
type Restarts = JoinSet<(usize, Result<(), String>)>;

/// Classify a start-up error message from the bus as a response body.
fn start_error(err: &gst::message::Error) -> ErrorBody {
    let text = format!("{} ({})", err.error(), err.debug().unwrap_or_default());
    let bind = matches!(
        err.error().kind::<gst::ResourceError>(),
        Some(
            gst::ResourceError::OpenRead
                | gst::ResourceError::OpenWrite
                | gst::ResourceError::OpenReadWrite
        )
    ) || text.contains("bind");
    let code = if bind {
        ErrorCode::BindFailed
    } else {
        ErrorCode::PipelineError
    };
    ErrorBody::new(code, text)
}

/// Run a blocking GStreamer state change off the tokio workers.
async fn set_state(pipeline: &gst::Pipeline, state: gst::State) -> Result<(), String> {
    let p = pipeline.clone();
    tokio::task::spawn_blocking(move || p.set_state(state).map(|_| ()).map_err(|e| e.to_string()))
        .await
        .map_err(|e| e.to_string())?
}

impl StreamActor {
    pub(super) fn new(
        plan: StreamPlan,
        reports: mpsc::Sender<StreamReport>,
        source_lost_timeout: Option<Duration>,
    ) -> Self {
        let bitrate = BitrateController::new(
            plan.bitrate_kbps,
            plan.min_bitrate_kbps,
            plan.max_bitrate_kbps,
            BITRATE_HEADROOM,
        );
        Self {
            plan,
            reports,
            last: SinkStats::default(),
            links: LinkWatch::default(),
            outgoing: Vec::new(),
            source_lost_timeout,
            video_lost_since: None,
            video_lost_reason: String::new(),
            bitrate,
            bitrate_change: None,
        }
    }

    /// Build, start, run until stopped or failed, tear down, report the end.
    /// `ready` gets the start result; `stream.ended` is sent only for a stream that
    /// reached PLAYING.
    pub(super) async fn run(
        mut self,
        mut cmds: mpsc::Receiver<ActorCmd>,
        ready: oneshot::Sender<Result<(), ErrorBody>>,
        cancel: CancellationToken,
    ) {
        let id = self.plan.stream_id.clone();
        let pipeline = match self.plan.build() {
            Ok(p) => p,
            Err(e) => {
                let _ = ready.send(Err(ErrorBody::new(ErrorCode::PipelineError, e.to_string())));
                return;
            }
        };
        let mut supervisor = match Supervisor::attach(&self.plan, &pipeline) {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(ErrorBody::new(ErrorCode::PipelineError, e.to_string())));
                return;
            }
        };
        tracing::info!(stream_id = %id, pipeline = %self.plan.launch_line(), "starting stream");
        let bus = pipeline.bus().expect("a pipeline has a bus");
        let mut messages = bus.stream();

        if let Err(e) = set_state(&pipeline, gst::State::Playing).await {
            let body = match drain_error(&bus) {
                Some(body) => body,
                None => ErrorBody::new(ErrorCode::PipelineError, format!("cannot start: {e}")),
            };
            let _ = set_state(&pipeline, gst::State::Null).await;
            let _ = ready.send(Err(body));
            return;
        }
        let mut early = Vec::new();
        if let Err(body) = wait_playing(&pipeline, &mut messages, &mut supervisor, &mut early).await
        {
            let _ = set_state(&pipeline, gst::State::Null).await;
            let _ = ready.send(Err(body));
            return;
        }
        let started = Instant::now();
        let _ = ready.send(Ok(()));
        tracing::info!(stream_id = %id, "stream live");

        let mut restarts = Restarts::new();
        self.act(&supervisor, early, &mut restarts).await;
        let mut tick = tokio::time::interval(STATS_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let ending = loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(ActorCmd::Stop(reason, done)) => break Ending::Stop(reason, Some(done)),
                    Some(ActorCmd::Rebond(bonding, reply)) => {
                        let _ = reply.send(rebond(&pipeline, &bonding));
                    }
                    None => break Ending::Stop(EndReason::Shutdown, None),
                },
                _ = cancel.cancelled() => break Ending::Stop(EndReason::Shutdown, None),
                _ = tick.tick() => {
                    self.send_stats(&pipeline, started);
                    let actions = supervisor.poll(Instant::now());
                    self.act(&supervisor, actions, &mut restarts).await;
                    if let Some(text) = self.source_lost_for_good() {
                        break Ending::SourceLost(text);
                    }
                }
                done = restarts.join_next(), if !restarts.is_empty() => {
                    if let Some(Ok((branch, result))) = done {
                        if let Err(e) = &result {
                            tracing::warn!(stream_id = %id, error = %e, "source restart failed");
                        }
                        let actions = supervisor.restart_done(branch, result, Instant::now());
                        self.act(&supervisor, actions, &mut restarts).await;
                    }
                }
                msg = messages.next() => match msg {
                    Some(msg) => {
                        if let Some(actions) = supervisor.on_message(&msg, Instant::now()) {
                            log_source_message(&id, &msg);
                            self.act(&supervisor, actions, &mut restarts).await;
                        } else {
                            let end = self.on_message(&msg);
                            self.apply_bitrate(&pipeline);
                            self.send_outgoing().await;
                            if let Some(end) = end {
                                break end;
                            }
                        }
                    }
                    None => break Ending::Failed(EndReason::Error, "pipeline bus closed".into()),
                },
            }
        };
        restarts.abort_all();
        while restarts.join_next().await.is_some() {}

        let (reason, error, done) = match ending {
            Ending::Stop(reason, done) => {
                self.drain_eos(&pipeline, &mut messages).await;
                (reason, None, done)
            }
            Ending::SourceLost(error) => {
                self.drain_eos(&pipeline, &mut messages).await;
                self.raise_failure(EndReason::SourceLost, &error).await;
                (EndReason::SourceLost, Some(error), None)
            }
            Ending::Failed(reason, error) => {
                self.raise_failure(reason, &error).await;
                (reason, Some(error), None)
            }
        };
        if let Err(e) = set_state(&pipeline, gst::State::Null).await {
            tracing::warn!(stream_id = %id, error = %e, "pipeline did not go to NULL cleanly");
        }
        let ended = StreamEnded {
            stream_id: id.clone(),
            reason,
            error,
            duration_s: started.elapsed().as_secs(),
            total_bytes: self.last.bytes_sent,
        };
        tracing::info!(stream_id = %id, ?ended, "stream ended");
        if self.reports.send(StreamReport::Ended(ended)).await.is_err() {
            tracing::warn!(stream_id = %id, "no control task to report stream.ended to");
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// Send what [`StreamActor::on_message`] produced: events with back-pressure
    /// (never dropped), thumbnails only if the channel has room (a late preview is
    /// worthless).
    async fn send_outgoing(&mut self) {
        for report in std::mem::take(&mut self.outgoing) {
            match report {
                StreamReport::Thumbnail(t) => {
                    if self.reports.try_send(StreamReport::Thumbnail(t)).is_err() {
                        tracing::debug!(stream_id = %self.plan.stream_id, "thumbnail dropped: control task behind");
                    }
                }
                other => {
                    let _ = self.reports.send(other).await;
                }
            }
        }
    }

    /// A `critical` / `pipeline` event for a stream that failed, or a `warning` /
    /// `stream` event when its source ended (docs/events.md).
    async fn raise_failure(&mut self, reason: EndReason, error: &str) {
        let id = &self.plan.stream_id;
        let mut event = match reason {
            EndReason::SourceLost => Event::new(
                Severity::Warning,
                Category::Stream,
                format!("Stream {id} source lost: {error}"),
            ),
            _ => Event::new(
                Severity::Critical,
                Category::Pipeline,
                format!("Stream {id} failed: {error}"),
            ),
        };
        event.stream_id = Some(id.clone());
        let _ = self.reports.send(StreamReport::Event(event.into())).await;
    }

    /// Handle one bus message while live; `Some` ends the live phase. Reports it
    /// produces are left in `outgoing`.
    fn on_message(&mut self, msg: &gst::Message) -> Option<Ending> {
        match msg.view() {
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure() {
                    if let Some(stats) = parse_sink_stats(s) {
                        let id = &self.plan.stream_id;
                        let events = self.links.update(id, &stats.links);
                        self.outgoing
                            .extend(events.into_iter().map(StreamReport::Event));
                        // Encoder feedback: follow a capacity drop at once, climb
                        // back by at most 10 %/s (ristbond_core::feedback).
                        if let Some(kbps) = self.bitrate.update(stats.available_bps, Instant::now())
                        {
                            self.bitrate_change = Some(kbps);
                        }
                        self.last = stats;
                    } else if let Some(thumb) = parse_thumbnail(&self.plan.stream_id, s) {
                        self.outgoing.push(StreamReport::Thumbnail(thumb));
                    }
                }
                None
            }
            gst::MessageView::Error(e) => {
                let text = format!("{} ({})", e.error(), e.debug().unwrap_or_default());
                tracing::error!(stream_id = %self.plan.stream_id, error = %text, "pipeline error");
                Some(Ending::Failed(EndReason::Error, text))
            }
            gst::MessageView::Eos(_) => Some(Ending::Failed(
                EndReason::SourceLost,
                "the source reached end of stream".into(),
            )),
            gst::MessageView::Warning(w) => {
                tracing::warn!(stream_id = %self.plan.stream_id, warning = %w.error(), "pipeline warning");
                None
            }
            _ => None,
        }
    }

    /// Carry out the supervisor's actions: events out, restarts scheduled.
    async fn act(
        &mut self,
        supervisor: &Supervisor,
        actions: Vec<Action>,
        restarts: &mut Restarts,
    ) {
        for action in actions {
            match action {
                Action::Report(ev) => {
                    let event = self.source_event(supervisor, &ev);
                    tracing::info!(stream_id = %self.plan.stream_id, message = %event.message, "source event");
                    let raise = source_transition(&self.plan.stream_id, &ev, event);
                    if self.reports.send(StreamReport::Event(raise)).await.is_err() {
                        tracing::warn!(stream_id = %self.plan.stream_id, "no control task to report an event to");
                    }
                }
                Action::Restart { delay, job } => {
                    restarts.spawn(async move {
                        tokio::time::sleep(delay).await;
                        let branch = job.branch;
                        let result = tokio::task::spawn_blocking(move || job.run())
                            .await
                            .unwrap_or_else(|e| Err(e.to_string()));
                        (branch, result)
                    });
                }
            }
        }
    }

    /// The `event` for a source switch (PROTOCOL.md §6): `warning` when the slate
    /// (or silence) goes on air, `info` when the source is back; category `stream`.
    /// Also tracks how long the video source has been lost.
    fn source_event(&mut self, supervisor: &Supervisor, ev: &SourceEvent) -> Event {
        let essence = match ev {
            SourceEvent::Lost { essence, .. } | SourceEvent::Restored { essence, .. } => *essence,
        };
        let label = supervisor
            .source_label(essence)
            .unwrap_or("source")
            .to_owned();
        let (severity, message, details) = match ev {
            SourceEvent::Lost { reason, .. } => {
                if essence == Essence::Video {
                    self.video_lost_since = Some(Instant::now());
                    self.video_lost_reason = reason.clone();
                }
                let message = match essence {
                    Essence::Video => format!("Video source lost ({label}): slate on air"),
                    Essence::Audio => format!("Audio source lost ({label}): sending silence"),
                };
                (
                    Severity::Warning,
                    message,
                    serde_json::json!({"essence": essence.as_str(), "source": label, "reason": reason}),
                )
            }
            SourceEvent::Restored { after, .. } => {
                if essence == Essence::Video {
                    self.video_lost_since = None;
                }
                let what = match essence {
                    Essence::Video => "Video source restored",
                    Essence::Audio => "Audio source restored",
                };
                (
                    Severity::Info,
                    format!("{what} ({label}) after {:.1} s", after.as_secs_f64()),
                    serde_json::json!({"essence": essence.as_str(), "source": label,
                                       "lost_ms": u64::try_from(after.as_millis()).unwrap_or(u64::MAX)}),
                )
            }
        };
        Event {
            severity,
            category: Category::Stream,
            message,
            stream_id: Some(self.plan.stream_id.clone()),
            details: Some(details),
        }
    }

    /// `Some(error text)` once the video source has been lost longer than
    /// `streams.source_lost_timeout_s`.
    fn source_lost_for_good(&self) -> Option<String> {
        let (since, timeout) = (self.video_lost_since?, self.source_lost_timeout?);
        (since.elapsed() >= timeout).then(|| {
            format!(
                "video source lost for {} s ({})",
                timeout.as_secs(),
                self.video_lost_reason
            )
        })
    }

    /// Set the encoder to the bitrate the feedback loop decided, if it changed.
    fn apply_bitrate(&mut self, pipeline: &gst::Pipeline) {
        let Some(kbps) = self.bitrate_change.take() else {
            return;
        };
        match braid_pipelines::set_encoder_bitrate(pipeline, kbps) {
            Ok(()) => tracing::info!(
                stream_id = %self.plan.stream_id,
                kbps,
                available_bps = self.last.available_bps,
                "encoder bitrate follows the bond"
            ),
            Err(e) => tracing::warn!(
                stream_id = %self.plan.stream_id,
                error = %e,
                "encoder bitrate not changed"
            ),
        }
    }

    /// Send `stream.stats` from the latest sink figures; dropped when the control
    /// task is behind (stats are periodic, the next one supersedes it).
    fn send_stats(&self, pipeline: &gst::Pipeline, started: Instant) {
        let stats = StreamStats {
            stream_id: self.plan.stream_id.clone(),
            uptime_s: started.elapsed().as_secs(),
            encoder_bitrate_kbps: braid_pipelines::encoder_bitrate(pipeline)
                .unwrap_or(self.plan.bitrate_kbps),
            links: self.last.links.clone(),
            output: self.last.output.clone(),
        };
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.reports.try_send(StreamReport::Stats(stats))
        {
            tracing::debug!(stream_id = %self.plan.stream_id, "stats dropped: control task behind");
        }
    }

    /// Send EOS and wait (bounded) for it to reach the sink, so the last packets
    /// and repairs go out and the final stats are read.
    async fn drain_eos(&mut self, pipeline: &gst::Pipeline, messages: &mut gst::bus::BusStream) {
        // Into the encoders, past the switches: the sources' own EOS is kept from
        // the switches (braid_pipelines::Supervisor), and a source may be gone.
        if !braid_pipelines::send_eos(pipeline) {
            pipeline.send_event(gst::event::Eos::new());
        }
        let deadline = tokio::time::sleep(EOS_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    tracing::warn!(stream_id = %self.plan.stream_id, "EOS did not drain within {EOS_TIMEOUT:?}");
                    return;
                }
                msg = messages.next() => match msg {
                    None => return,
                    Some(msg) => match msg.view() {
                        gst::MessageView::Eos(_) | gst::MessageView::Error(_) => return,
                        _ => { let _ = self.on_message(&msg); self.send_outgoing().await; }
                    },
                },
            }
        }
    }
}

/// Set a new `bonding_config` on the live `ristbondsink` (its `config` property is
/// applied while PLAYING: links diffed by id, scheduler reloaded; docs/elements.md).
fn rebond(
    pipeline: &gst::Pipeline,
    bonding: &braid_protocol::stream::BondingConfig,
) -> Result<(), ErrorBody> {
    let toml = braid_pipelines::bonding_toml(bonding)
        .map_err(|e| ErrorBody::new(ErrorCode::InvalidPayload, e.to_string()))?;
    let sink = pipeline
        .by_name(braid_pipelines::BOND_SINK_NAME)
        .ok_or_else(|| ErrorBody::new(ErrorCode::Internal, "pipeline has no ristbondsink"))?;
    sink.set_property("config", toml);
    Ok(())
}

/// The first error already on the bus, as a response body.
fn drain_error(bus: &gst::Bus) -> Option<ErrorBody> {
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(start_error(e));
        }
    }
    None
}

/// Log a bus message the supervisor took (a source's error or warning: the slate
/// covers it and the source is restarted).
fn log_source_message(stream_id: &str, msg: &gst::Message) {
    match msg.view() {
        gst::MessageView::Error(e) => {
            tracing::warn!(stream_id, error = %e.error(), debug = ?e.debug(), "source error: slate on air, restarting the source")
        }
        gst::MessageView::Warning(w) => {
            tracing::warn!(stream_id, warning = %w.error(), "source warning")
        }
        _ => {}
    }
}

/// Wait until the pipeline itself reports PLAYING, or fails. Messages the
/// supervisor takes (a source that errors while starting: the stream starts on the
/// slate) don't fail the start; their actions are kept in `early`.
async fn wait_playing(
    pipeline: &gst::Pipeline,
    messages: &mut gst::bus::BusStream,
    supervisor: &mut Supervisor,
    early: &mut Vec<Action>,
) -> Result<(), ErrorBody> {
    let deadline = tokio::time::sleep(START_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return Err(ErrorBody::new(
                ErrorCode::PipelineError,
                format!("pipeline did not reach PLAYING within {START_TIMEOUT:?}"),
            )),
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return Err(ErrorBody::new(ErrorCode::PipelineError, "pipeline bus closed"));
                };
                if let Some(actions) = supervisor.on_message(&msg, Instant::now()) {
                    log_source_message(&pipeline.name(), &msg);
                    early.extend(actions);
                    continue;
                }
                match msg.view() {
                    gst::MessageView::Error(e) => return Err(start_error(e)),
                    gst::MessageView::StateChanged(s)
                        if s.src() == Some(pipeline.upcast_ref::<gst::Object>())
                            && s.current() == gst::State::Playing => return Ok(()),
                    _ => {}
                }
            }
        }
    }
}

/// A source switch as a transition of subject `source/{stream_id}/{essence}` into
/// `lost` or `restored`, so the 2 s flap filter applies (crate::events).
fn source_transition(stream_id: &str, ev: &SourceEvent, event: Event) -> crate::events::Raise {
    let (essence, state) = match ev {
        SourceEvent::Lost { essence, .. } => (*essence, "lost"),
        SourceEvent::Restored { essence, .. } => (*essence, "restored"),
    };
    crate::events::Raise::transition(
        event,
        format!("source/{stream_id}/{}", essence.as_str()),
        state,
    )
}
