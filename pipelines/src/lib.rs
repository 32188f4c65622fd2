//! Typed stream specs (from `stream.start`, PROTOCOL.md §5) to GStreamer pipelines.
//!
//! No tokio, no network: [`StreamPlan::from_start`] validates a
//! [`braid_protocol::stream::StreamStart`] into a plan (asking the [`Machine`] which
//! encoders, capture modes and sound cards exist), [`StreamPlan::launch_line`]
//! renders it as a `gst-launch-1.0` command, and [`StreamPlan::build`] parses that
//! very description into a [`gst::Pipeline`], so what a field engineer prints is what
//! the agent runs. [`Supervisor`] keeps a built pipeline on air when its source goes
//! away (slate, restarts, looping).
//!
//! Shape of the sender pipeline (ARCHITECTURE.md "Data flow on the sender"):
//!
//! ```text
//! fallbackswitch name=vswitch ! [tee name=vtee !] queue ! ENCODER name=venc ! PARSER !
//!   queue ! mpegtsmux name=mux alignment=7 ! ristbondsink name=bond config=TOML
//! SOURCE ! … ! videoconvert ! videoscale ! videorate ! RAW ! queue name=vsrc_q ! vswitch.
//! videotestsrc num-buffers=1 ! RAW ! textoverlay ! imagefreeze is-live=true ! vswitch.
//! [fallbackswitch name=aswitch ! queue ! audioconvert ! avenc_aac|opusenc ! PARSER ! queue ! mux.
//!  AUDIO SOURCE ! audioconvert ! audioresample ! ARAW ! queue name=asrc_q ! aswitch.
//!  audiotestsrc is-live=true wave=silence ! ARAW ! aswitch.]
//! ```
//!
//! `SOURCE` is `videotestsrc` (test), `v4l2src ! CAPS ! [jpegdec] ! deinterlace` (V4L2,
//! mode chosen by [`v4l2::choose_mode`]) or `filesrc ! decodebin ! deinterlace` (media);
//! `ENCODER` is the first of `mpph26Xenc`, `v4l2h26Xenc`, `x26Xenc` the machine has.

mod encoder;
mod machine;
mod plan;
mod quote;
mod supervisor;
pub mod sysfs;
pub mod v4l2;

use std::sync::OnceLock;

use braid_protocol::stream::Codec;

pub use encoder::{
    choose_encoder, encoder_bitrate, set_encoder_bitrate, EncoderFamily, ENCODER_PREFERENCE,
};
pub use machine::{Machine, MediaInfo, SystemMachine};
pub use plan::{
    bonding_toml, AudioCodec, AudioInput, AudioPlan, LinkPlan, Output, SourcePlan, StreamPlan,
    STARTUP_SWITCH_TIMEOUT_MS,
};
pub use quote::quote_value;
pub use supervisor::{
    send_eos, Action, Essence, RestartJob, SourceEvent, Supervisor, EOS_MESSAGE, FLOWING_MESSAGE,
    SLATES, STALL_RESTART, SWITCH_MESSAGE,
};

/// Name of the video encoder element in every built pipeline (see
/// [`set_encoder_bitrate`] for its bitrate property by kind).
pub const ENCODER_NAME: &str = "venc";
/// Name of the `ristbondsink` in every pipeline built with [`Output::Bond`].
pub const BOND_SINK_NAME: &str = "bond";
/// Name of the `mpegtsmux` in every built pipeline.
pub const MUX_NAME: &str = "mux";
/// Name of the video `fallbackswitch` (source on `sink_0`, slate on `sink_1`).
pub const VIDEO_SWITCH_NAME: &str = "vswitch";
/// Name of the audio `fallbackswitch` (source, then silence), when there is audio.
pub const AUDIO_SWITCH_NAME: &str = "aswitch";

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
    /// device, a media file, a sound card). Maps to error code `not_found`.
    #[error("{field}: {reason}")]
    NotFound {
        /// JSON path of the field naming the missing thing.
        field: String,
        /// What is missing.
        reason: String,
    },
    /// The request asks for something this machine cannot do (no encoder for the
    /// codec, an unreadable capture device). Maps to `unsupported`.
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

/// Initialise GStreamer and register the elements Braid links in statically
/// (`fallbackswitch` from gst-plugins-rs), unless the registry already has them (an
/// installed plugin or `GST_PLUGIN_PATH`). Idempotent and cheap after the first call.
/// Errors: GStreamer cannot initialise, or the registration failed.
pub fn register_elements() -> Result<(), gst::glib::Error> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        gst::init().map_err(|e| e.to_string())?;
        if gst::ElementFactory::find("fallbackswitch").is_none() {
            gstfallbackswitch::plugin_register_static().map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .clone()
    .map_err(|e| gst::glib::Error::new(gst::CoreError::Failed, &e))
}

/// The encoder element each codec would use on this machine, in [`Codec`] order
/// (H.264, H.265); `None` for a codec without an encoder.
pub fn available_encoders() -> Vec<(Codec, Option<&'static str>)> {
    let machine = SystemMachine;
    [Codec::H264, Codec::H265]
        .into_iter()
        .map(|codec| {
            (
                codec,
                choose_encoder(codec, |f| machine.has_element(f)).map(|f| f.factory(codec)),
            )
        })
        .collect()
}

/// Media capabilities of this machine for `auth.login` / `health.capabilities`
/// (PROTOCOL.md §3, §4): `video-h264`, `video-h265` for each codec that has an
/// encoder, `encoder-h264:<element>` / `encoder-h265:<element>` naming it,
/// `hw-encoder` when one of them is hardware, `audio-aac` / `audio-opus` for the
/// audio encoders present, and `source-fallback` (the slate on source loss).
/// Computed once (registry lookups), then cached.
pub fn capabilities() -> Vec<String> {
    static CAPS: OnceLock<Vec<String>> = OnceLock::new();
    CAPS.get_or_init(|| {
        let machine = SystemMachine;
        let mut caps = Vec::new();
        let mut hardware = false;
        for (codec, name) in [(Codec::H264, "h264"), (Codec::H265, "h265")] {
            if let Some(family) = choose_encoder(codec, |f| machine.has_element(f)) {
                caps.push(format!("video-{name}"));
                caps.push(format!("encoder-{name}:{}", family.factory(codec)));
                hardware |= family.is_hardware();
            }
        }
        if hardware {
            caps.push("hw-encoder".into());
        }
        if machine.has_element("avenc_aac") {
            caps.push("audio-aac".into());
        }
        if machine.has_element("opusenc") {
            caps.push("audio-opus".into());
        }
        if machine.has_element("fallbackswitch") {
            caps.push("source-fallback".into());
        }
        caps
    })
    .clone()
}
