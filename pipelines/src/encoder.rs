//! Video encoders by availability (issue 7 "Encoders"): Rockchip MPP, then V4L2
//! mem2mem, then x264/x265; their launch words and their live bitrate.
//!
//! Properties come from each element's documentation:
//! - `x264enc` / `x265enc` (gst-plugins-ugly / -bad): `bitrate` kbit/s (changeable in
//!   PLAYING: x264 reconfigures the rate control on the next frame, no key frame),
//!   `key-int-max` frames, `tune`, `speed-preset`.
//! - `mpph264enc` / `mpph265enc` (gstreamer-rockchip, `GstMppEnc`): `bps` bit/s
//!   (marks the config dirty; applied with `MPP_ENC_SET_CFG` before the next frame,
//!   no key frame), `rc-mode` (`cbr`|`vbr`|`fixqp`), `gop` frames,
//!   `header-mode=each-idr` (SPS/PPS before every IDR).
//! - `v4l2h264enc` / `v4l2h265enc` (gst-plugins-good, `GstV4l2VideoEnc`):
//!   `extra-controls`, a structure of V4L2 controls by normalised name:
//!   `video_bitrate` bit/s, `video_bitrate_mode` (0 VBR, 1 CBR), `video_gop_size`,
//!   `h264_i_frame_period` frames, `repeat_sequence_header`. Setting
//!   `extra-controls` on an open device applies the controls at once (VIDIOC_S_EXT_CTRLS);
//!   unchanged controls are no-ops in the kernel's control framework.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use braid_protocol::stream::Codec;
use gst::prelude::*;

use crate::quote::quote_value;
use crate::{BuildError, ENCODER_NAME};

/// The encoder families, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncoderFamily {
    /// Rockchip MPP hardware encoder (`mpph264enc`, `mpph265enc`).
    Mpp,
    /// V4L2 mem2mem hardware encoder (`v4l2h264enc`, `v4l2h265enc`).
    V4l2,
    /// Software x264 / x265.
    X26x,
}

/// Families in the order they are tried.
pub const ENCODER_PREFERENCE: [EncoderFamily; 3] =
    [EncoderFamily::Mpp, EncoderFamily::V4l2, EncoderFamily::X26x];

impl EncoderFamily {
    /// The element factory of this family for `codec`.
    pub fn factory(self, codec: Codec) -> &'static str {
        match (self, codec) {
            (EncoderFamily::Mpp, Codec::H264) => "mpph264enc",
            (EncoderFamily::Mpp, Codec::H265) => "mpph265enc",
            (EncoderFamily::V4l2, Codec::H264) => "v4l2h264enc",
            (EncoderFamily::V4l2, Codec::H265) => "v4l2h265enc",
            (EncoderFamily::X26x, Codec::H264) => "x264enc",
            (EncoderFamily::X26x, Codec::H265) => "x265enc",
        }
    }

    /// Whether the encoder is a hardware block.
    pub fn is_hardware(self) -> bool {
        !matches!(self, EncoderFamily::X26x)
    }

    /// Raw format the encoder is fed: NV12 for the hardware blocks (their native
    /// input), I420 for x264/x265 (without a caps filter x264enc picks 4:4:4 10-bit).
    pub fn raw_format(self) -> &'static str {
        match self {
            EncoderFamily::X26x => "I420",
            _ => "NV12",
        }
    }
}

/// The best encoder family for `codec` among the factories `has` says exist, in
/// [`ENCODER_PREFERENCE`] order; `None` if the machine has none.
pub fn choose_encoder(codec: Codec, has: impl Fn(&str) -> bool) -> Option<EncoderFamily> {
    ENCODER_PREFERENCE
        .into_iter()
        .find(|f| has(f.factory(codec)))
}

/// Settings the encoder words are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderSettings {
    /// Family.
    pub family: EncoderFamily,
    /// Codec.
    pub codec: Codec,
    /// Initial bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Key-frame interval, frames.
    pub keyint_max: u32,
    /// x264/x265 `tune` (ignored by the hardware encoders: they have no look-ahead).
    pub tune: String,
    /// Output width, pixels (for the H.264 level of V4L2 encoders).
    pub width: u32,
    /// Output height, pixels.
    pub height: u32,
    /// Frame rate, frames/s.
    pub framerate: u32,
}

/// H.264 level (ITU-T H.264 Table A-1) that fits `width`×`height` at `fps`, as the
/// caps string value (`"4"`, `"4.2"`…), by macroblock rate.
fn h264_level(width: u32, height: u32, fps: u32) -> &'static str {
    let mbs = u64::from(width.div_ceil(16)) * u64::from(height.div_ceil(16));
    let rate = mbs * u64::from(fps);
    match (mbs, rate) {
        (..=1620, ..=40_500) => "3",
        (..=3600, ..=108_000) => "3.1",
        (..=5120, ..=216_000) => "3.2",
        (..=8192, ..=245_760) => "4",
        (..=8704, ..=522_240) => "4.2",
        (..=22_080, ..=589_824) => "5",
        (..=36_864, ..=983_040) => "5.1",
        _ => "5.2",
    }
}

/// The `extra-controls` structure of a V4L2 encoder at `bitrate_kbps`.
fn v4l2_controls(s: &EncoderSettings, bitrate_kbps: u32) -> String {
    let mut c = format!(
        "controls,video_bitrate={},video_bitrate_mode=1,video_gop_size={},repeat_sequence_header=1",
        u64::from(bitrate_kbps) * 1000,
        s.keyint_max
    );
    if s.codec == Codec::H264 {
        c.push_str(&format!(",h264_i_frame_period={}", s.keyint_max));
    }
    c
}

/// `option-string` of x264enc/x265enc at `kbps`: a fixed GOP (`scenecut=0`) and,
/// for x265 (whose element has no VBV properties), a half-second VBV at the target
/// rate so a GOP stays near it; x264enc keeps its own `vbv-buf-capacity`.
fn x26x_options(codec: Codec, kbps: u32) -> String {
    match codec {
        Codec::H264 => "scenecut=0".into(),
        Codec::H265 => format!(
            "scenecut=0:vbv-maxrate={kbps}:vbv-bufsize={}",
            (kbps / 2).max(1)
        ),
    }
}

/// Launch words from the encoder to its parser, e.g.
/// `x264enc name=venc tune=zerolatency … ! h264parse config-interval=-1`.
/// The parser repeats SPS/PPS (and VPS) before every key frame so a receiver can
/// join at any GOP.
pub fn encoder_words(s: &EncoderSettings) -> Vec<String> {
    let mut w: Vec<String> = vec![
        s.family.factory(s.codec).to_owned(),
        format!("name={ENCODER_NAME}"),
    ];
    match s.family {
        EncoderFamily::X26x => {
            w.push(format!("tune={}", s.tune));
            w.push("speed-preset=superfast".into());
            w.push(format!("bitrate={}", s.bitrate_kbps));
            w.push(format!("key-int-max={}", s.keyint_max));
            // A fixed GOP (no extra key frames at scene cuts): predictable bitrate for
            // the bonded links, a receiver joins within one key-frame interval.
            w.push(format!(
                "option-string={}",
                x26x_options(s.codec, s.bitrate_kbps)
            ));
        }
        EncoderFamily::Mpp => {
            w.push("rc-mode=cbr".into());
            w.push(format!("bps={}", u64::from(s.bitrate_kbps) * 1000));
            w.push(format!("gop={}", s.keyint_max));
            w.push("header-mode=each-idr".into());
        }
        EncoderFamily::V4l2 => {
            w.push(format!(
                "extra-controls={}",
                quote_value(&v4l2_controls(s, s.bitrate_kbps))
            ));
        }
    }
    w.push("!".into());
    match (s.family, s.codec) {
        (EncoderFamily::V4l2, Codec::H264) => w.push(format!(
            "video/x-h264,stream-format=byte-stream,alignment=au,level=(string){}",
            h264_level(s.width, s.height, s.framerate)
        )),
        (_, Codec::H264) => w.push("video/x-h264,stream-format=byte-stream,alignment=au".into()),
        (_, Codec::H265) => w.push("video/x-h265,stream-format=byte-stream,alignment=au".into()),
    }
    w.push("!".into());
    w.push(
        match s.codec {
            Codec::H264 => "h264parse",
            Codec::H265 => "h265parse",
        }
        .into(),
    );
    w.push("config-interval=-1".into());
    w
}

/// Bitrate changes of `x265enc` waiting for the next GOP boundary, by encoder.
///
/// gst-plugins-bad's x265enc (1.22) has no live reconfiguration: a new `bitrate`
/// makes it close and re-open x265 at the next frame, which starts with an IDR. So
/// the change is held back to the frame that starts the next GOP anyway (GOPs are
/// fixed: `scenecut=0`), where the re-open costs no extra key frame: the new rate
/// applies within one GOP, as with the other encoders.
type Pending = Arc<AtomicU32>;

/// The registry: each x265enc (weakly) with its pending bitrate.
type Gates = Mutex<Vec<(gst::glib::WeakRef<gst::Element>, Pending)>>;

fn x265_pending() -> &'static Gates {
    static PENDING: OnceLock<Gates> = OnceLock::new();
    PENDING.get_or_init(Mutex::default)
}

fn pending_of(enc: &gst::Element) -> Option<Pending> {
    let list = x265_pending().lock().expect("x265 gate registry poisoned");
    list.iter()
        .find(|(w, _)| w.upgrade().as_ref() == Some(enc))
        .map(|(_, p)| p.clone())
}

/// Prepare the encoder of a freshly built pipeline: for `x265enc`, the GOP-boundary
/// gate for bitrate changes (a probe counting input frames). `keyint` is the
/// plan's key-frame interval, frames.
pub(crate) fn prepare(pipeline: &gst::Pipeline, keyint: u32) {
    let Some(enc) = pipeline.by_name(ENCODER_NAME) else {
        return;
    };
    if enc.factory().map(|f| f.name() == "x265enc") != Some(true) {
        return;
    }
    let pending: Pending = Arc::new(AtomicU32::new(0));
    {
        let mut list = x265_pending().lock().expect("x265 gate registry poisoned");
        list.retain(|(w, _)| w.upgrade().is_some());
        list.push((enc.downgrade(), pending.clone()));
    }
    let keyint = u64::from(keyint.max(1));
    let frames = std::sync::atomic::AtomicU64::new(0);
    let enc_weak = enc.downgrade();
    if let Some(sink) = enc.static_pad("sink") {
        sink.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if frames.fetch_add(1, Ordering::SeqCst).is_multiple_of(keyint) {
                let kbps = pending.swap(0, Ordering::SeqCst);
                if kbps != 0 {
                    if let Some(enc) = enc_weak.upgrade() {
                        enc.set_property("option-string", x26x_options(Codec::H265, kbps));
                        enc.set_property("bitrate", kbps);
                    }
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
}

/// Set the live encoder bitrate of a built pipeline, kbit/s, whatever the encoder:
/// x264enc/x265enc `bitrate` (kbit/s), mpph26xenc `bps` (bit/s), v4l2h26xenc
/// `extra-controls` `video_bitrate` (bit/s). Cheap and glitch-free: nothing is
/// touched when the value is unchanged, and no change forces a key frame: x264,
/// MPP and V4L2 apply it at the next frame; x265enc (which re-opens its encoder on
/// a change) at the start of the next GOP. Errors: [`BuildError::MissingElement`]
/// without an [`ENCODER_NAME`] element or with an encoder of unknown kind.
pub fn set_encoder_bitrate(pipeline: &gst::Pipeline, kbps: u32) -> Result<(), BuildError> {
    let enc = pipeline
        .by_name(ENCODER_NAME)
        .ok_or(BuildError::MissingElement(ENCODER_NAME))?;
    let factory = enc
        .factory()
        .map(|f| f.name().to_string())
        .unwrap_or_default();
    match factory.as_str() {
        "x264enc" => {
            if enc.property::<u32>("bitrate") != kbps {
                enc.set_property("bitrate", kbps);
            }
        }
        "x265enc" => match pending_of(&enc) {
            Some(pending) => {
                let current = enc.property::<u32>("bitrate");
                pending.store(if current == kbps { 0 } else { kbps }, Ordering::SeqCst);
            }
            None => {
                if enc.property::<u32>("bitrate") != kbps {
                    enc.set_property("bitrate", kbps);
                }
            }
        },
        "mpph264enc" | "mpph265enc" => {
            let bps = kbps.saturating_mul(1000);
            if enc.property::<u32>("bps") != bps {
                enc.set_property("bps", bps);
            }
        }
        "v4l2h264enc" | "v4l2h265enc" => {
            let bps = i32::try_from(u64::from(kbps) * 1000).unwrap_or(i32::MAX);
            let mut controls = enc
                .property::<Option<gst::Structure>>("extra-controls")
                .unwrap_or_else(|| gst::Structure::new_empty("controls"));
            if controls.get::<i32>("video_bitrate").ok() != Some(bps) {
                controls.set("video_bitrate", bps);
                enc.set_property("extra-controls", controls);
            }
        }
        _ => return Err(BuildError::MissingElement(ENCODER_NAME)),
    }
    Ok(())
}

/// Current encoder target bitrate of a built pipeline, kbit/s; `None` without a
/// known encoder.
pub fn encoder_bitrate(pipeline: &gst::Pipeline) -> Option<u32> {
    let enc = pipeline.by_name(ENCODER_NAME)?;
    let factory = enc.factory()?.name().to_string();
    match factory.as_str() {
        "x264enc" => Some(enc.property::<u32>("bitrate")),
        "x265enc" => match pending_of(&enc).map(|p| p.load(Ordering::SeqCst)) {
            Some(kbps) if kbps != 0 => Some(kbps),
            _ => Some(enc.property::<u32>("bitrate")),
        },
        "mpph264enc" | "mpph265enc" => Some(enc.property::<u32>("bps") / 1000),
        "v4l2h264enc" | "v4l2h265enc" => enc
            .property::<Option<gst::Structure>>("extra-controls")
            .and_then(|s| s.get::<i32>("video_bitrate").ok())
            .and_then(|b| u32::try_from(b / 1000).ok()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_order() {
        let all = |_: &str| true;
        assert_eq!(choose_encoder(Codec::H264, all), Some(EncoderFamily::Mpp));
        let no_mpp = |f: &str| !f.starts_with("mpp");
        assert_eq!(
            choose_encoder(Codec::H265, no_mpp),
            Some(EncoderFamily::V4l2)
        );
        let sw = |f: &str| f.starts_with('x');
        assert_eq!(choose_encoder(Codec::H264, sw), Some(EncoderFamily::X26x));
        assert_eq!(choose_encoder(Codec::H264, |_| false), None);
    }

    #[test]
    fn levels() {
        assert_eq!(h264_level(1280, 720, 30), "3.1");
        assert_eq!(h264_level(1920, 1080, 30), "4");
        assert_eq!(h264_level(1920, 1080, 60), "4.2");
        assert_eq!(h264_level(3840, 2160, 30), "5.1");
    }
}
