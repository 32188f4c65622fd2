//! Typed stream specs (from `stream.start`, PROTOCOL.md §5) to GStreamer pipelines.
//!
//! No tokio, no network: [`StreamPlan::from_start`] validates a
//! [`braid_protocol::stream::StreamStart`] into a plan, [`StreamPlan::launch_line`]
//! renders it as a `gst-launch-1.0` description, and [`StreamPlan::build`] parses that
//! very description into a [`gst::Pipeline`], so what a field engineer prints is what
//! the agent runs.
//!
//! Shape of the sender pipeline (ARCHITECTURE.md "Data flow on the sender"):
//!
//! ```text
//! SOURCE ! videoconvert ! videoscale ! videorate ! video/x-raw,format=I420,... !
//!   x264enc|x265enc name=venc ! h264parse|h265parse ! mpegtsmux name=mux alignment=7 !
//!   ristbondsink name=bond config=BONDING_CONFIG_TOML
//! [audiotestsrc ! audioconvert ! audioresample ! avenc_aac|opusenc ! mux.]
//! ```
//!
//! With `thumbnails: true` a `tee` before the encoder feeds `braidthumbnail`
//! (see the `thumbnail` module).

mod plan;
mod quote;
mod thumbnail;

pub use plan::{bonding_toml, AudioCodec, AudioPlan, SourcePlan, StreamPlan};
pub use quote::quote_value;
pub use thumbnail::{THUMBNAIL_INTERVAL_MS, THUMBNAIL_NAME, THUMBNAIL_TEE_NAME};

/// Name of the video encoder element in every built pipeline (its `bitrate` is in kbit/s).
pub const ENCODER_NAME: &str = "venc";
/// Name of the `ristbondsink` in every built pipeline.
pub const BOND_SINK_NAME: &str = "bond";
/// Name of the `mpegtsmux` in every built pipeline.
pub const MUX_NAME: &str = "mux";

/// Why a `stream.start` cannot become a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A field of the request is invalid; `field` is its JSON path (`source.resolution`).
    /// Maps to error code `invalid_payload` (PROTOCOL.md §2).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// JSON path of the offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request is valid but names something absent on this machine (a capture
    /// device, a media file). Maps to error code `not_found`.
    #[error("{field}: {reason}")]
    NotFound {
        /// JSON path of the field naming the missing thing.
        field: String,
        /// What is missing.
        reason: String,
    },
    /// The request asks for something this build cannot do. Maps to `unsupported`.
    #[error("unsupported {field}: {reason}")]
    Unsupported {
        /// JSON path of the field.
        field: String,
        /// Why.
        reason: String,
    },
}

/// Why a plan could not become a running pipeline object.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// GStreamer could not parse the description (usually a missing element/plugin).
    #[error("cannot build pipeline: {0}")]
    Parse(String),
    /// The description did not produce the named element this crate relies on.
    #[error("pipeline has no element named {0}")]
    MissingElement(&'static str),
}

/// Set the live encoder bitrate of a built pipeline, kbit/s (both x264enc and x265enc
/// take kbit/s). Errors: [`BuildError::MissingElement`] if it has no [`ENCODER_NAME`].
pub fn set_encoder_bitrate(pipeline: &gst::Pipeline, kbps: u32) -> Result<(), BuildError> {
    use gst::prelude::*;
    let enc = pipeline
        .by_name(ENCODER_NAME)
        .ok_or(BuildError::MissingElement(ENCODER_NAME))?;
    enc.set_property("bitrate", kbps);
    Ok(())
}

/// Current encoder bitrate of a built pipeline, kbit/s; `None` without an encoder.
pub fn encoder_bitrate(pipeline: &gst::Pipeline) -> Option<u32> {
    use gst::prelude::*;
    pipeline
        .by_name(ENCODER_NAME)
        .map(|enc| enc.property::<u32>("bitrate"))
}
