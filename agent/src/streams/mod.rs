//! Stream actors: one per live stream, each owning its `gst::Pipeline`
//! (ARCHITECTURE.md "Data flow on the sender").
//!
//! [`spawn`] returns a [`StreamsHandle`]; `start` validates a `stream.start`
//! (PROTOCOL.md §5) into a [`braid_pipelines::StreamPlan`], builds the pipeline and
//! spawns an actor task that owns it. The actor turns the pipeline's bus into
//! `stream.stats` every second (from `ristbondsink`'s `ristbond-stats` message,
//! docs/elements.md) and one `stream.ended`, sent as [`StreamReport`]s. State changes
//! run on the blocking pool, never on a tokio worker; bus messages arrive through
//! `gst::Bus::stream`.

mod actor;
mod signals;
mod stats;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use braid_pipelines::{PlanError, StreamPlan};
use braid_protocol::error::{ErrorBody, ErrorCode};
use braid_protocol::stream::{
    BondingConfig, BondingLink, EndReason, SchedulerConfig, StreamEnded, StreamStart, StreamStats,
};
use braid_protocol::thumbnail::Thumbnail;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events::Raise;

/// What stream actors report to the control connection. Sent on the channel given
/// to [`spawn`]; the control task forwards each as a message of the same name.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamReport {
    /// `stream.stats`, every 1 s per live stream (dropped, not queued, when the
    /// channel is full).
    Stats(StreamStats),
    /// `stream.ended`, once per stream (always delivered to the channel).
    Ended(StreamEnded),
    /// An `event` (PROTOCOL.md §6) raised by a stream (link down, source lost…);
    /// the control task queues it like its own events. A plain
    /// `braid_protocol::event::Event` converts with `.into()`; state changes use
    /// [`Raise::transition`] so the 2 s flap filter applies (crate::events).
    Event(Raise),
    /// `thumbnail` (PROTOCOL.md §4): a 320×180 JPEG of a stream started with
    /// `thumbnails: true`, about every 10 s (dropped when the channel is full and
    /// while the control plane is disconnected: a stale picture is worthless).
    Thumbnail(Thumbnail),
}

/// Settings of the stream manager that come from the agent config.
#[derive(Debug, Clone, Default)]
pub struct StreamsConfig {
    /// `agent.media_dir`: where `source.mode = media` files must lie.
    pub media_dir: Option<PathBuf>,
    /// `streams.source_lost_timeout_s`: a stream whose video source stays lost (the
    /// slate on air) this long ends with reason `source_lost`; `None`: never.
    pub source_lost_timeout: Option<std::time::Duration>,
}

/// Commands from the handle to one stream actor.
#[derive(Debug)]
enum ActorCmd {
    /// Stop with this reason; reply when the pipeline is down.
    Stop(EndReason, oneshot::Sender<()>),
    /// Apply a new `bonding_config` to the live `ristbondsink` (links diffed by id,
    /// scheduler hot-reloaded); reply with the result.
    Rebond(BondingConfig, oneshot::Sender<Result<(), ErrorBody>>),
}

/// Registry entry of a stream that is starting or live.
#[derive(Debug)]
struct Entry {
    cmd: mpsc::Sender<ActorCmd>,
    /// The bonding config in force (as started, then as last updated).
    bonding: BondingConfig,
    /// The `stream.start` spec as started (its `bonding_config` is superseded by
    /// `bonding`; see [`StreamsHandle::spec`]).
    spec: StreamStart,
}

/// Handle to the stream manager; cheap to clone.
#[derive(Debug, Clone)]
pub struct StreamsHandle {
    streams: Arc<Mutex<HashMap<String, Entry>>>,
    reports: mpsc::Sender<StreamReport>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    config: Arc<StreamsConfig>,
}

fn not_running(stream_id: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::NotFound,
        format!("stream {stream_id} is not running"),
    )
}

/// `update` over `base`: every field set in `update` wins.
fn merge_scheduler(base: &SchedulerConfig, update: &SchedulerConfig) -> SchedulerConfig {
    SchedulerConfig {
        storm_enabled: update.storm_enabled.or(base.storm_enabled),
        storm_duration_ms: update.storm_duration_ms.or(base.storm_duration_ms),
        discard_deadline_ms: update.discard_deadline_ms.or(base.discard_deadline_ms),
        redundancy_enabled: update.redundancy_enabled.or(base.redundancy_enabled),
        redundancy_spare_ratio: update
            .redundancy_spare_ratio
            .or(base.redundancy_spare_ratio),
        critical_broadcast: update.critical_broadcast.or(base.critical_broadcast),
        failover_rtt_ms: update.failover_rtt_ms.or(base.failover_rtt_ms),
        failover_loss_rate: update.failover_loss_rate.or(base.failover_loss_rate),
    }
}

fn plan_error(e: PlanError) -> ErrorBody {
    let code = match e {
        PlanError::Invalid { .. } => ErrorCode::InvalidPayload,
        PlanError::NotFound { .. } => ErrorCode::NotFound,
        PlanError::Unsupported { .. } => ErrorCode::Unsupported,
    };
    ErrorBody::new(code, e.to_string())
}

impl StreamsHandle {
    /// Build and start a stream; returns once the pipeline is PLAYING.
    /// Errors (as response bodies, PROTOCOL.md §2): `already_running`,
    /// `invalid_payload` (naming the field), `not_found` (device, file),
    /// `unsupported`, `pipeline_error`, `bind_failed`.
    pub async fn start(&self, spec: StreamStart) -> Result<(), ErrorBody> {
        // Planning may open the capture device and read the media file: off the
        // async workers.
        let media_dir = self.config.media_dir.clone();
        let plan_spec = spec.clone();
        let plan = tokio::task::spawn_blocking(move || {
            // The first stream initialises GStreamer (loading its registry takes
            // 50-500 ms): off the async workers too.
            crate::media::init()
                .map_err(|e| ErrorBody::new(ErrorCode::PipelineError, format!("{e:#}")))?;
            StreamPlan::from_start(&plan_spec, media_dir.as_deref()).map_err(plan_error)
        })
        .await
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("planning failed: {e}")))??;
        let id = plan.stream_id.clone();
        let (cmd_tx, cmd_rx) = mpsc::channel(8);
        {
            let mut streams = self.streams.lock().expect("streams registry poisoned");
            if streams.contains_key(&id) {
                return Err(ErrorBody::new(
                    ErrorCode::AlreadyRunning,
                    format!("stream {id} is already running"),
                ));
            }
            streams.insert(
                id.clone(),
                Entry {
                    cmd: cmd_tx,
                    bonding: spec.bonding_config.clone(),
                    spec: spec.clone(),
                },
            );
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let registry = self.streams.clone();
        let actor =
            actor::StreamActor::new(plan, self.reports.clone(), self.config.source_lost_timeout);
        let cancel = self.cancel.child_token();
        let actor_id = id.clone();
        self.tracker.spawn(async move {
            actor.run(cmd_rx, ready_tx, cancel).await;
            registry
                .lock()
                .expect("streams registry poisoned")
                .remove(&actor_id);
        });
        match ready_rx.await {
            Ok(result) => result,
            Err(_) => Err(ErrorBody::new(
                ErrorCode::Internal,
                format!("stream {id} actor ended during start"),
            )),
        }
    }

    /// Stop a stream and wait until its pipeline is down; its `stream.ended` is on
    /// the report channel before this returns. Errors: `not_found`.
    pub async fn stop(&self, stream_id: &str, reason: EndReason) -> Result<(), ErrorBody> {
        let cmd = self
            .streams
            .lock()
            .expect("streams registry poisoned")
            .get(stream_id)
            .map(|e| e.cmd.clone());
        let not_found = || {
            ErrorBody::new(
                ErrorCode::NotFound,
                format!("stream {stream_id} is not running"),
            )
        };
        let cmd = cmd.ok_or_else(not_found)?;
        let (tx, rx) = oneshot::channel();
        cmd.send(ActorCmd::Stop(reason, tx))
            .await
            .map_err(|_| not_found())?;
        rx.await.map_err(|_| not_found())
    }

    /// `stream.links.update` (PROTOCOL.md §5): replace the links of a live stream.
    /// Links are matched by `id`: kept ids keep flowing untouched, new ids are added,
    /// missing ids removed, an id whose `uri`/`interface` changed is re-opened. The
    /// scheduler settings stay as they are. Errors: `not_found` (no such stream),
    /// `invalid_payload` naming the field (`bonding_config.links[1].uri`), or the
    /// sink's refusal (`pipeline_error`).
    pub async fn update_links(
        &self,
        stream_id: &str,
        links: Vec<BondingLink>,
    ) -> Result<(), ErrorBody> {
        let mut bonding = self
            .bonding(stream_id)
            .ok_or_else(|| not_running(stream_id))?;
        bonding.links = links;
        self.rebond(stream_id, bonding).await
    }

    /// `config.update` (PROTOCOL.md §5): hot-reload the scheduler of one live stream,
    /// or of all when `stream_id` is `None`. Fields absent from `scheduler` keep their
    /// current value. Errors: `not_found`, `invalid_payload`, `pipeline_error`; with
    /// `None`, the first error (the other streams are still updated).
    pub async fn update_scheduler(
        &self,
        stream_id: Option<&str>,
        scheduler: SchedulerConfig,
    ) -> Result<(), ErrorBody> {
        let ids = match stream_id {
            Some(id) => vec![id.to_owned()],
            None => self.live().await,
        };
        let mut first_err = None;
        for id in ids {
            let Some(mut bonding) = self.bonding(&id) else {
                first_err.get_or_insert(not_running(&id));
                continue;
            };
            bonding.scheduler = merge_scheduler(&bonding.scheduler, &scheduler);
            if let Err(e) = self.rebond(&id, bonding).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The `bonding_config` in force for a live stream (as started, with updates
    /// applied); `None` if it is not running.
    pub fn bonding(&self, stream_id: &str) -> Option<BondingConfig> {
        self.streams
            .lock()
            .expect("streams registry poisoned")
            .get(stream_id)
            .map(|e| e.bonding.clone())
    }

    /// The spec of a starting or live stream with the bonding config in force
    /// (`config.get`, PROTOCOL.md §5); `None` if it is not running.
    pub fn spec(&self, stream_id: &str) -> Option<StreamStart> {
        self.streams
            .lock()
            .expect("streams registry poisoned")
            .get(stream_id)
            .map(|e| StreamStart {
                bonding_config: e.bonding.clone(),
                ..e.spec.clone()
            })
    }

    /// Specs of every starting or live stream, sorted by id (see [`Self::spec`]).
    pub fn specs(&self) -> Vec<StreamStart> {
        let mut specs: Vec<StreamStart> = self
            .streams
            .lock()
            .expect("streams registry poisoned")
            .values()
            .map(|e| StreamStart {
                bonding_config: e.bonding.clone(),
                ..e.spec.clone()
            })
            .collect();
        specs.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        specs
    }

    /// Whether going from `old` to `new` can be done on the running pipeline by
    /// [`Self::apply_live`]: they differ only in `bonding_config` (links,
    /// scheduler) and the informative `destinations`.
    pub fn live_changeable(old: &StreamStart, new: &StreamStart) -> bool {
        let strip = |s: &StreamStart| StreamStart {
            bonding_config: BondingConfig {
                version: 0,
                links: Vec::new(),
                scheduler: SchedulerConfig::default(),
            },
            destinations: Vec::new(),
            ..s.clone()
        };
        strip(old) == strip(new)
    }

    /// `config.set` (PROTOCOL.md §5) on a live stream whose new spec is
    /// [`Self::live_changeable`]: the whole `bonding_config` goes to the running
    /// sink at once (links diffed by id, scheduler replaced, not merged) and the
    /// recorded spec takes the new `destinations`. Errors: `not_found`,
    /// `unsupported` (other fields differ: the stream needs a restart),
    /// `invalid_payload`, `pipeline_error`.
    pub async fn apply_live(&self, spec: StreamStart) -> Result<(), ErrorBody> {
        let id = spec.stream_id.clone();
        let current = self.spec(&id).ok_or_else(|| not_running(&id))?;
        if !Self::live_changeable(&current, &spec) {
            return Err(ErrorBody::new(
                ErrorCode::Unsupported,
                format!("stream {id}: only bonding_config and destinations change live"),
            ));
        }
        if current.bonding_config != spec.bonding_config {
            self.rebond(&id, spec.bonding_config.clone()).await?;
        }
        if let Some(e) = self
            .streams
            .lock()
            .expect("streams registry poisoned")
            .get_mut(&id)
        {
            e.spec.destinations = spec.destinations;
        }
        Ok(())
    }

    /// Validate and send a new bonding config to the stream's actor; record it once
    /// the sink took it.
    async fn rebond(&self, stream_id: &str, bonding: BondingConfig) -> Result<(), ErrorBody> {
        braid_pipelines::bonding_toml(&bonding).map_err(plan_error)?;
        let cmd = self
            .streams
            .lock()
            .expect("streams registry poisoned")
            .get(stream_id)
            .map(|e| e.cmd.clone())
            .ok_or_else(|| not_running(stream_id))?;
        let (tx, rx) = oneshot::channel();
        cmd.send(ActorCmd::Rebond(bonding.clone(), tx))
            .await
            .map_err(|_| not_running(stream_id))?;
        rx.await.map_err(|_| not_running(stream_id))??;
        if let Some(e) = self
            .streams
            .lock()
            .expect("streams registry poisoned")
            .get_mut(stream_id)
        {
            e.bonding = bonding;
        }
        Ok(())
    }

    /// Ids of the streams that are starting or live.
    pub async fn live(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .streams
            .lock()
            .expect("streams registry poisoned")
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }
}

/// Start the stream manager with default settings; see [`spawn_with`].
pub fn spawn(
    reports: mpsc::Sender<StreamReport>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> StreamsHandle {
    spawn_with(StreamsConfig::default(), reports, cancel, tracker)
}

/// Start the stream manager. Every stream stops with reason `shutdown` (and sends its
/// `stream.ended`) when `cancel` fires; the actors are tracked by `tracker`, so
/// `tracker.wait()` returns once every pipeline is down.
pub fn spawn_with(
    config: StreamsConfig,
    reports: mpsc::Sender<StreamReport>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> StreamsHandle {
    StreamsHandle {
        streams: Arc::default(),
        reports,
        cancel,
        tracker: tracker.clone(),
        config: Arc::new(config),
    }
}
