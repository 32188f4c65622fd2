//! One stream: owns its pipeline from build to `Null`, reports stats and the end.

use std::time::{Duration, Instant};

use braid_pipelines::StreamPlan;
use braid_protocol::error::{ErrorBody, ErrorCode};
use braid_protocol::event::{Category, Event, Severity};
use braid_protocol::stream::{EndReason, StreamEnded, StreamStats};
use futures_util::StreamExt;
use gst::prelude::*;
use tokio::sync::{mpsc, oneshot};
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
}

/// How the live phase ended.
enum Ending {
    Stop(EndReason, Option<oneshot::Sender<()>>),
    Failed(EndReason, String),
}

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
    pub(super) fn new(plan: StreamPlan, reports: mpsc::Sender<StreamReport>) -> Self {
        Self {
            plan,
            reports,
            last: SinkStats::default(),
            links: LinkWatch::default(),
            outgoing: Vec::new(),
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
        if let Err(body) = wait_playing(&pipeline, &mut messages).await {
            let _ = set_state(&pipeline, gst::State::Null).await;
            let _ = ready.send(Err(body));
            return;
        }
        let started = Instant::now();
        let _ = ready.send(Ok(()));
        tracing::info!(stream_id = %id, "stream live");

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
                _ = tick.tick() => self.send_stats(&pipeline, started),
                msg = messages.next() => match msg {
                    Some(msg) => {
                        let end = self.on_message(&msg);
                        self.send_outgoing().await;
                        if let Some(end) = end {
                            break end;
                        }
                    }
                    None => break Ending::Failed(EndReason::Error, "pipeline bus closed".into()),
                },
            }
        };

        let (reason, error, done) = match ending {
            Ending::Stop(reason, done) => {
                self.drain_eos(&pipeline, &mut messages).await;
                (reason, None, done)
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
        pipeline.send_event(gst::event::Eos::new());
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

/// Wait until the pipeline itself reports PLAYING, or fails.
async fn wait_playing(
    pipeline: &gst::Pipeline,
    messages: &mut gst::bus::BusStream,
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
