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
mod stats;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use braid_pipelines::{PlanError, StreamPlan};
use braid_protocol::error::{ErrorBody, ErrorCode};
use braid_protocol::stream::{EndReason, StreamEnded, StreamStart, StreamStats};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What stream actors report to the control connection. Sent on the channel given
/// to [`spawn`]; the control task forwards each as a message of the same name.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamReport {
    /// `stream.stats`, every 1 s per live stream (dropped, not queued, when the
    /// channel is full).
    Stats(StreamStats),
    /// `stream.ended`, once per stream (always delivered to the channel).
    Ended(StreamEnded),
}

/// Settings of the stream manager that come from the agent config.
#[derive(Debug, Clone, Default)]
pub struct StreamsConfig {
    /// `agent.media_dir`: where `source.mode = media` files must lie.
    pub media_dir: Option<PathBuf>,
}

/// Commands from the handle to one stream actor.
#[derive(Debug)]
enum ActorCmd {
    /// Stop with this reason; reply when the pipeline is down.
    Stop(EndReason, oneshot::Sender<()>),
}

/// Registry entry of a stream that is starting or live.
#[derive(Debug)]
struct Entry {
    cmd: mpsc::Sender<ActorCmd>,
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
        let plan =
            StreamPlan::from_start(&spec, self.config.media_dir.as_deref()).map_err(plan_error)?;
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
            streams.insert(id.clone(), Entry { cmd: cmd_tx });
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let registry = self.streams.clone();
        let actor = actor::StreamActor::new(plan, self.reports.clone());
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
