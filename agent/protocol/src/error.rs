//! Failure bodies of responses (PROTOCOL.md §2): `"success": false` with
//! `"error": {"code", "message"}`.

use serde::{Deserialize, Serialize};

/// Error codes the agent uses in `*.response` payloads (PROTOCOL.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The payload does not match the message type; the message names the field.
    InvalidPayload,
    /// The stream (or other object) does not exist.
    NotFound,
    /// `stream.start` for a stream id that is live.
    AlreadyRunning,
    /// The stream is not running.
    NotRunning,
    /// GStreamer could not build or start the pipeline.
    PipelineError,
    /// A link socket could not be bound (address, interface, port in use).
    BindFailed,
    /// The request asks for something this agent cannot do.
    Unsupported,
    /// A downloaded update did not match its SHA-256.
    VerificationFailed,
    /// The agent is busy with a conflicting operation.
    Busy,
    /// A bug or unexpected system failure.
    Internal,
    /// Sent by the control plane: the session token expired (PROTOCOL.md §3.4).
    TokenExpired,
}

/// `error` object of a failed response (PROTOCOL.md §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ErrorBody {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable text.
    pub message: String,
}

impl ErrorBody {
    /// An error body with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
