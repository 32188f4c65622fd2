//! Stream actors: one per live stream, each owning its `gst::Pipeline`
//! (ARCHITECTURE.md "Data flow on the sender").
//!
//! CONTRACT for the control side (bodies are being written).

use braid_protocol::error::ErrorBody;
use braid_protocol::stream::{EndReason, StreamEnded, StreamStart, StreamStats};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What stream actors report to the control connection. Sent on the channel given
/// to [`spawn`]; the control task forwards each as a message of the same name.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamReport {
    /// `stream.stats`, every 1 s per live stream.
    Stats(StreamStats),
    /// `stream.ended`, once per stream.
    Ended(StreamEnded),
}

/// Handle to the stream manager; cheap to clone.
#[derive(Debug, Clone)]
pub struct StreamsHandle {}

impl StreamsHandle {
    /// Build and start a stream. Errors (as response bodies): `already_running`,
    /// `invalid_payload` (naming the field), `pipeline_error`, `bind_failed`.
    pub async fn start(&self, spec: StreamStart) -> Result<(), ErrorBody> {
        let _ = spec;
        todo!()
    }

    /// Stop a stream; its `stream.ended` follows on the report channel.
    /// Errors: `not_found`.
    pub async fn stop(&self, stream_id: &str, reason: EndReason) -> Result<(), ErrorBody> {
        let _ = (stream_id, reason);
        todo!()
    }

    /// Ids of the streams that are starting or live.
    pub async fn live(&self) -> Vec<String> {
        todo!()
    }
}

/// Start the stream manager. Stops every stream with reason `shutdown` when
/// `cancel` fires; its tasks are tracked by `tracker`.
pub fn spawn(
    reports: mpsc::Sender<StreamReport>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> StreamsHandle {
    let _ = (reports, cancel, tracker);
    todo!()
}
