//! A validated `stream.start` (PROTOCOL.md §5) and its launch description.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use braid_protocol::stream::{BondingConfig, Codec, SourceMode, StreamStart};
use ristbond_core::link::LinkUri;

use crate::encoder::{choose_encoder, encoder_words, EncoderFamily, EncoderSettings};
use crate::machine::{Machine, SystemMachine};
use crate::quote::{quote_value, shell_word};
use crate::v4l2::{choose_mode, V4l2Choice};
use crate::{
    BuildError, PlanError, AUDIO_SWITCH_NAME, BOND_SINK_NAME, ENCODER_NAME, MUX_NAME,
    VIDEO_SWITCH_NAME,
};

/// Where the picture comes from, resolved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourcePlan {
    /// `videotestsrc` (live, moving SMPTE bars) with the running time burnt in.
    Test,
    /// A V4L2 capture node that exists, e.g. `/dev/video0`, in the mode chosen from
    /// its capabilities.
    V4l2 {
        /// Device node path.
        device: PathBuf,
        /// Capture format, size and rate asked of `v4l2src`.
        mode: V4l2Choice,
        /// JPEG decoder for MJPEG modes (`mppjpegdec` when present, else `jpegdec`).
        jpeg_decoder: Option<String>,
    },
    /// A file inside the media folder, decoded and re-encoded.
    Media {
        /// Absolute path of the file.
        path: PathBuf,
        /// Start over at the end (`source.loop`), seamlessly in running time.
        looping: bool,
        /// The file has an audio track.
        has_audio: bool,
    },
}

/// Audio codecs carried in the MPEG-TS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC-LC (`avenc_aac`), ADTS in MPEG-TS (stream type 0x0F).
    Aac,
    /// Opus (`opusenc`), in MPEG-TS as private data with the `Opus` registration
    /// descriptor (ETSI TS 102 366-style mapping of `mpegtsmux`).
    Opus,
}

/// Where the sound comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioInput {
    /// `audiotestsrc`: 1 kHz sine at −14 dBFS (test source).
    Tone,
    /// An ALSA capture device (`audio.device`, or the V4L2 device's sibling card).
    Alsa {
        /// ALSA device string, e.g. `hw:CARD=MS2109,DEV=0`.
        device: String,
    },
    /// The media file's own audio track.
    File,
    /// Silence (a media file without audio, when audio was asked for): the TS keeps
    /// its audio PID.
    Silence,
}

/// The audio track of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioPlan {
    /// Codec.
    pub codec: AudioCodec,
    /// Bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Input.
    pub input: AudioInput,
}

/// One bonded link of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPlan {
    /// `bonding_config.links[].id`.
    pub id: u32,
    /// The URI handed to `ristbondsink` (with `?iface=` added from `interface`).
    pub uri: String,
    /// Bound interface, if any.
    pub interface: Option<String>,
}

/// Where the MPEG-TS goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Output {
    /// `ristbondsink name=bond` with the bonding config (what the agent runs).
    #[default]
    Bond,
    /// `filesink name=out location=…`: the same pipeline into a TS file, for tests and
    /// for a field engineer checking a source by hand. Has no `bond` element.
    File(PathBuf),
}

/// A `stream.start` that passed validation: everything needed to build the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPlan {
    /// `stream_id`.
    pub stream_id: String,
    /// Video source.
    pub source: SourcePlan,
    /// Output width, pixels.
    pub width: u32,
    /// Output height, pixels.
    pub height: u32,
    /// Output frame rate, frames/s.
    pub framerate: u32,
    /// Video codec.
    pub codec: Codec,
    /// Video encoder family chosen from what the machine has.
    pub encoder: EncoderFamily,
    /// Initial encoder bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Lower bound for adaptive bitrate, kbit/s (defaults to `bitrate_kbps / 4`).
    pub min_bitrate_kbps: u32,
    /// Upper bound for adaptive bitrate, kbit/s (defaults to `bitrate_kbps`).
    pub max_bitrate_kbps: u32,
    /// Key-frame interval, frames (defaults to 2 s of frames).
    pub keyint_max: u32,
    /// Encoder `tune` value (`zerolatency` unless asked otherwise).
    pub tune: String,
    /// Audio track, if enabled.
    pub audio: Option<AudioPlan>,
    /// The bonded links, in the order given (position = `ristbondsink` link index).
    pub links: Vec<LinkPlan>,
    /// `bonding_config` as TOML, for `ristbondsink`'s `config` property.
    pub bonding_toml: String,
    /// Whether thumbnails were asked for.
    pub thumbnails: bool,
    /// How long the source may deliver nothing before the slate goes on air, ms
    /// (`fallbackswitch` `timeout`).
    pub switch_timeout_ms: u64,
    /// Where the TS goes.
    pub output: Output,
}

fn invalid(field: &str, reason: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn not_found(field: &str, reason: impl Into<String>) -> PlanError {
    PlanError::NotFound {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn unsupported(field: &str, reason: impl Into<String>) -> PlanError {
    PlanError::Unsupported {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Parse `WIDTHxHEIGHT` (even sizes, 16..=7680 × 16..=4320).
fn parse_resolution(res: &str) -> Result<(u32, u32), PlanError> {
    let field = "source.resolution";
    let (w, h) = res
        .split_once(['x', 'X'])
        .ok_or_else(|| invalid(field, format!("{res:?} is not WIDTHxHEIGHT")))?;
    let w: u32 = w
        .trim()
        .parse()
        .map_err(|_| invalid(field, format!("width {w:?} is not a number")))?;
    let h: u32 = h
        .trim()
        .parse()
        .map_err(|_| invalid(field, format!("height {h:?} is not a number")))?;
    if !(16..=7680).contains(&w) || !(16..=4320).contains(&h) {
        return Err(invalid(
            field,
            format!("{w}x{h} is outside 16x16..7680x4320"),
        ));
    }
    if !w.is_multiple_of(2) || !h.is_multiple_of(2) {
        return Err(invalid(field, format!("{w}x{h}: 4:2:0 needs even sizes")));
    }
    Ok((w, h))
}

/// Resolve a media path inside `media_dir`: relative names are joined to it, absolute
/// ones must lie under it; `..` is refused.
fn resolve_media(
    path: &str,
    media_dir: Option<&Path>,
    machine: &dyn Machine,
) -> Result<PathBuf, PlanError> {
    let field = "source.path";
    let p = Path::new(path);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(invalid(field, format!("{path:?} must not contain ..")));
    }
    let full = match media_dir {
        Some(dir) if p.is_relative() => dir.join(p),
        Some(dir) if !p.starts_with(dir) => {
            return Err(invalid(
                field,
                format!("{path:?} is outside the media folder {}", dir.display()),
            ))
        }
        _ => p.to_path_buf(),
    };
    if !machine.exists(&full) || full.is_dir() {
        return Err(not_found(
            field,
            format!("media file {} does not exist", full.display()),
        ));
    }
    Ok(full)
}

/// An ALSA device name as `alsasrc device=` takes it (`hw:1,0`,
/// `hw:CARD=MS2109,DEV=0`, `default`, `plughw:…`).
fn check_alsa_device(dev: &str) -> Result<(), PlanError> {
    if dev.is_empty()
        || dev.len() > 64
        || !dev
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":=,_.-".contains(c))
    {
        return Err(invalid(
            "audio.device",
            format!("{dev:?} is not an ALSA device name (e.g. hw:1,0 or hw:CARD=MS2109,DEV=0)"),
        ));
    }
    Ok(())
}

/// Switch timeout: 200 ms, or three frame intervals at low frame rates (a source at
/// 5 frames/s is not lost between two frames). The slate is on air about one
/// timeout, the source's latency and a slate frame after the source's last frame:
/// 300–400 ms at 25–60 frames/s, within the 500 ms of issue 7.
fn switch_timeout_ms(framerate: u32) -> u64 {
    200u64.max(3000 / u64::from(framerate.max(1)))
}

/// Switch timeout of a looping media file, ms: a file cannot be unplugged, and its
/// restart at the end of each pass must not put the slate on air.
const LOOPING_SWITCH_TIMEOUT_MS: u64 = 2000;

/// How long a source may take to deliver its first frame before the slate goes on
/// air (a camera can take a second to start), ms: the [`crate::Supervisor`] starts
/// the slates only once every source has delivered, or after this grace.
pub const STARTUP_SWITCH_TIMEOUT_MS: u64 = 3000;

/// Element names of the parts of a pipeline the supervisor works on.
pub(crate) mod names {
    /// The video capture/decode source (v4l2src, filesrc, videotestsrc).
    pub const VIDEO_SRC: &str = "vsrc";
    /// The audio capture source (alsasrc, audiotestsrc).
    pub const AUDIO_SRC: &str = "asrc";
    /// The media file's decodebin.
    pub const MEDIA_DECODE: &str = "mdec";
    /// First element of the video chain after a decodebin (linked on pad-added).
    pub const VIDEO_HEAD: &str = "vsrc_head";
    /// First element of the audio chain after a decodebin.
    pub const AUDIO_HEAD: &str = "asrc_conv";
    /// Queue feeding the video switch from the source (the tail of the branch).
    pub const VIDEO_TAIL: &str = "vsrc_q";
    /// Queue feeding the audio switch from the source.
    pub const AUDIO_TAIL: &str = "asrc_q";
    /// Last element of the video slate chain.
    pub const VIDEO_SLATE_TAIL: &str = "vslate_caps";
    /// Last element of the audio slate chain.
    pub const AUDIO_SLATE_TAIL: &str = "aslate_caps";
}

impl StreamPlan {
    /// Validate a `stream.start` payload on this machine ([`SystemMachine`]): see
    /// [`StreamPlan::from_start_on`]. Blocking: may open the capture device and read
    /// the media file.
    pub fn from_start(start: &StreamStart, media_dir: Option<&Path>) -> Result<Self, PlanError> {
        Self::from_start_on(start, media_dir, &SystemMachine)
    }

    /// Validate a `stream.start` payload against what `machine` has. `media_dir` is
    /// the agent's media folder (ARCHITECTURE.md config `agent.media_dir`) that
    /// `source.path` must lie in.
    ///
    /// Errors: [`PlanError::Invalid`] naming the JSON field (→ `invalid_payload`),
    /// [`PlanError::NotFound`] for a missing device, file or sound card
    /// (→ `not_found`), [`PlanError::Unsupported`] for a codec this machine cannot
    /// encode or a capture device it cannot read (→ `unsupported`).
    pub fn from_start_on(
        start: &StreamStart,
        media_dir: Option<&Path>,
        machine: &dyn Machine,
    ) -> Result<Self, PlanError> {
        let id = &start.stream_id;
        if id.is_empty()
            || id.len() > 128
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                "stream_id",
                "must be 1–128 characters of A–Z, a–z, 0–9, '-', '_', '.'",
            ));
        }

        let src = &start.source;
        let (width, height) = parse_resolution(&src.resolution)?;
        if !(1..=240).contains(&src.framerate) {
            return Err(invalid(
                "source.framerate",
                format!("{} is outside 1..=240 frames/s", src.framerate),
            ));
        }
        if src.looping && src.mode != SourceMode::Media {
            return Err(invalid("source.loop", "only a media source can loop"));
        }

        let enc = &start.encoder;
        if !(100..=100_000).contains(&enc.bitrate_kbps) {
            return Err(invalid(
                "encoder.bitrate_kbps",
                format!("{} is outside 100..=100000 kbit/s", enc.bitrate_kbps),
            ));
        }
        let min_bitrate_kbps = enc
            .min_bitrate_kbps
            .unwrap_or((enc.bitrate_kbps / 4).max(100));
        let max_bitrate_kbps = enc.max_bitrate_kbps.unwrap_or(enc.bitrate_kbps);
        if !(min_bitrate_kbps <= enc.bitrate_kbps && enc.bitrate_kbps <= max_bitrate_kbps) {
            return Err(invalid(
                "encoder.bitrate_kbps",
                format!(
                    "{} must lie within min_bitrate_kbps {min_bitrate_kbps} and max_bitrate_kbps {max_bitrate_kbps}",
                    enc.bitrate_kbps
                ),
            ));
        }
        let keyint_max = enc.keyint_max.unwrap_or(2 * src.framerate);
        if !(1..=1000).contains(&keyint_max) {
            return Err(invalid(
                "encoder.keyint_max",
                format!("{keyint_max} is outside 1..=1000 frames"),
            ));
        }
        let tune = enc.tune.clone().unwrap_or_else(|| "zerolatency".into());
        let tunes: &[&str] = match enc.codec {
            Codec::H264 => &["zerolatency", "fastdecode", "stillimage"],
            Codec::H265 => &[
                "zerolatency",
                "fastdecode",
                "psnr",
                "ssim",
                "grain",
                "animation",
            ],
        };
        if !tunes.contains(&tune.as_str()) {
            return Err(invalid(
                "encoder.tune",
                format!("{tune:?} is not one of {}", tunes.join(", ")),
            ));
        }

        // Audio fields that need no machine are checked before any device is opened.
        let audio_req = match &start.audio {
            Some(a) if a.enabled => {
                let codec = match a.codec.as_deref().unwrap_or("aac") {
                    "aac" => AudioCodec::Aac,
                    "opus" => AudioCodec::Opus,
                    other => {
                        return Err(invalid(
                            "audio.codec",
                            format!("{other:?} is not aac or opus"),
                        ))
                    }
                };
                let bitrate_kbps = a.bitrate_kbps.unwrap_or(128);
                if !(16..=512).contains(&bitrate_kbps) {
                    return Err(invalid(
                        "audio.bitrate_kbps",
                        format!("{bitrate_kbps} is outside 16..=512 kbit/s"),
                    ));
                }
                if let Some(dev) = &a.device {
                    check_alsa_device(dev)?;
                }
                Some((codec, bitrate_kbps, a.device.clone()))
            }
            _ => None,
        };

        let links = plan_links(&start.bonding_config)?;
        let bonding_toml = bonding_toml(&start.bonding_config)?;

        let source = match src.mode {
            SourceMode::Test => SourcePlan::Test,
            SourceMode::V4l2 => {
                let dev = src
                    .device
                    .as_deref()
                    .ok_or_else(|| invalid("source.device", "required for mode v4l2"))?;
                let device = PathBuf::from(dev);
                if !machine.exists(&device) {
                    return Err(not_found(
                        "source.device",
                        format!("capture device {dev} does not exist"),
                    ));
                }
                let modes = machine
                    .v4l2_modes(&device)
                    .map_err(|e| unsupported("source.device", e))?;
                let mode = choose_mode(&modes, width, height, src.framerate).ok_or_else(|| {
                    unsupported("source.device", format!("{dev} offers no capture mode"))
                })?;
                let jpeg_decoder = mode.format.is_compressed().then(|| {
                    if machine.has_element("mppjpegdec") {
                        "mppjpegdec".to_owned()
                    } else {
                        "jpegdec".to_owned()
                    }
                });
                SourcePlan::V4l2 {
                    device,
                    mode,
                    jpeg_decoder,
                }
            }
            SourceMode::Media => {
                let path = src
                    .path
                    .as_deref()
                    .ok_or_else(|| invalid("source.path", "required for mode media"))?;
                let path = resolve_media(path, media_dir, machine)?;
                let info = machine
                    .media_info(&path)
                    .map_err(|e| invalid("source.path", e))?;
                if !info.has_video {
                    return Err(invalid(
                        "source.path",
                        format!("{} has no video track", path.display()),
                    ));
                }
                SourcePlan::Media {
                    path,
                    looping: src.looping,
                    has_audio: info.has_audio,
                }
            }
        };

        let audio = match audio_req {
            None => None,
            Some((codec, bitrate_kbps, device)) => {
                let input = match (device, &source) {
                    (Some(device), _) => AudioInput::Alsa { device },
                    (None, SourcePlan::Test) => AudioInput::Tone,
                    (None, SourcePlan::Media { has_audio, .. }) => {
                        if *has_audio {
                            AudioInput::File
                        } else {
                            AudioInput::Silence
                        }
                    }
                    (None, SourcePlan::V4l2 { device, .. }) => AudioInput::Alsa {
                        device: machine.sibling_audio(device).ok_or_else(|| {
                            not_found(
                                "audio.device",
                                format!(
                                    "no sound card on the same USB device as {}; name one in audio.device",
                                    device.display()
                                ),
                            )
                        })?,
                    },
                };
                let (factory, name) = match codec {
                    AudioCodec::Aac => ("avenc_aac", "AAC"),
                    AudioCodec::Opus => ("opusenc", "Opus"),
                };
                if !machine.has_element(factory) {
                    return Err(unsupported(
                        "audio.codec",
                        format!("no {name} encoder ({factory}) on this machine"),
                    ));
                }
                if matches!(input, AudioInput::Alsa { .. }) && !machine.has_element("alsasrc") {
                    return Err(unsupported(
                        "audio.device",
                        "no ALSA capture element (alsasrc, package gstreamer1.0-alsa) on this machine",
                    ));
                }
                Some(AudioPlan {
                    codec,
                    bitrate_kbps,
                    input,
                })
            }
        };

        let encoder = choose_encoder(enc.codec, |f| machine.has_element(f)).ok_or_else(|| {
            let tried: Vec<&str> = crate::encoder::ENCODER_PREFERENCE
                .iter()
                .map(|f| f.factory(enc.codec))
                .collect();
            unsupported(
                "encoder.codec",
                format!(
                    "no {:?} encoder on this machine (looked for {})",
                    enc.codec,
                    tried.join(", ")
                ),
            )
        })?;

        let switch_timeout_ms = match source {
            SourcePlan::Media { looping: true, .. } => LOOPING_SWITCH_TIMEOUT_MS,
            _ => switch_timeout_ms(src.framerate),
        };

        Ok(StreamPlan {
            stream_id: id.clone(),
            source,
            width,
            height,
            framerate: src.framerate,
            codec: enc.codec,
            encoder,
            bitrate_kbps: enc.bitrate_kbps,
            min_bitrate_kbps,
            max_bitrate_kbps,
            keyint_max,
            tune,
            audio,
            links,
            bonding_toml,
            thumbnails: start.thumbnails,
            switch_timeout_ms,
            output: Output::Bond,
        })
    }

    /// The comma-separated `links` value of `ristbondsink`.
    pub fn links_property(&self) -> String {
        self.links
            .iter()
            .map(|l| l.uri.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The raw video every input of the video switch delivers: the encoder's input
    /// format at the output size and rate, with every field a converter could leave
    /// open fixed, so source and slate are the same format and the encoder never
    /// renegotiates on a switch.
    pub fn raw_video_caps(&self) -> String {
        let colorimetry = if self.height >= 720 { "bt709" } else { "bt601" };
        format!(
            "video/x-raw,format={},width={},height={},framerate={}/1,pixel-aspect-ratio=1/1,\
             interlace-mode=progressive,colorimetry={colorimetry},chroma-site=mpeg2",
            self.encoder.raw_format(),
            self.width,
            self.height,
            self.framerate
        )
    }

    /// The raw audio every input of the audio switch delivers.
    pub fn raw_audio_caps(&self) -> &'static str {
        "audio/x-raw,format=S16LE,layout=interleaved,rate=48000,channels=2,channel-mask=(bitmask)0x3"
    }

    /// Size of burnt-in text, points, for the output height.
    fn font_points(&self) -> u32 {
        (self.height / 24).max(8)
    }

    /// Words of the normalising tail every video source ends with: convert, scale,
    /// rate to [`StreamPlan::raw_video_caps`], and the tail queue feeding the switch.
    fn video_normalise(&self, w: &mut Vec<String>) {
        for s in ["videoconvert", "!", "videoscale", "!", "videorate"] {
            w.push(s.into());
        }
        // Gaps longer than the switch timeout are the switch's business: without
        // this, videorate would fill a stall with copies of the last frame before it
        // and replay them when the source returns.
        w.push(format!(
            "max-duplication-time={}",
            Duration::from_millis(self.switch_timeout_ms).as_nanos()
        ));
        w.push("!".into());
        w.push(self.raw_video_caps());
        w.push("!".into());
        w.push("queue".into());
        w.push(format!("name={}", names::VIDEO_TAIL));
        w.push("max-size-buffers=4".into());
        w.push("max-size-bytes=0".into());
        w.push("max-size-time=0".into());
        w.push("!".into());
        w.push(format!("{VIDEO_SWITCH_NAME}."));
    }

    /// Words of the video source chain, ending `! vswitch.`.
    fn video_source_words(&self, w: &mut Vec<String>) {
        match &self.source {
            SourcePlan::Test => {
                w.push("videotestsrc".into());
                w.push(format!("name={}", names::VIDEO_SRC));
                for s in ["is-live=true", "pattern=smpte", "horizontal-speed=2", "!"] {
                    w.push(s.into());
                }
                w.push(format!(
                    "video/x-raw,width={},height={},framerate={}/1",
                    self.width, self.height, self.framerate
                ));
                for s in ["!", "timeoverlay", "halignment=right", "valignment=bottom"] {
                    w.push(s.into());
                }
                w.push(format!(
                    "font-desc={}",
                    quote_value(&format!("Sans {}", self.font_points()))
                ));
                w.push("!".into());
                self.video_normalise(w);
            }
            SourcePlan::V4l2 {
                device,
                mode,
                jpeg_decoder,
            } => {
                w.push("v4l2src".into());
                w.push(format!("name={}", names::VIDEO_SRC));
                w.push(format!("device={}", quote_value(&device.to_string_lossy())));
                w.push("!".into());
                w.push(mode.caps());
                w.push("!".into());
                if let Some(dec) = jpeg_decoder {
                    w.push(dec.clone());
                    w.push("!".into());
                }
                // Passes progressive frames through untouched.
                w.push("deinterlace".into());
                w.push("!".into());
                self.video_normalise(w);
            }
            SourcePlan::Media { path, .. } => {
                w.push("filesrc".into());
                w.push(format!("name={}", names::VIDEO_SRC));
                w.push(format!("location={}", quote_value(&path.to_string_lossy())));
                w.push("!".into());
                w.push("decodebin".into());
                w.push(format!("name={}", names::MEDIA_DECODE));
                // The converter refuses audio pads, so the delayed link takes video.
                w.push(format!("{}.", names::MEDIA_DECODE));
                w.push("!".into());
                w.push("deinterlace".into());
                w.push(format!("name={}", names::VIDEO_HEAD));
                w.push("!".into());
                self.video_normalise(w);
            }
        }
    }

    /// Words of the still slate (black, "Source lost", the stream id), ending
    /// `! vswitch.`: one frame rendered once and repeated live by `imagefreeze`.
    fn video_slate_words(&self, w: &mut Vec<String>) {
        let caps = self.raw_video_caps();
        for s in [
            "videotestsrc",
            "name=vslate",
            "pattern=black",
            "num-buffers=1",
            "!",
        ] {
            w.push(s.into());
        }
        w.push(caps.clone());
        for s in ["!", "textoverlay", "name=vslate_text"] {
            w.push(s.into());
        }
        w.push(format!(
            "text={}",
            quote_value(&format!("Source lost - {}", self.stream_id))
        ));
        for s in ["valignment=center", "halignment=center"] {
            w.push(s.into());
        }
        w.push(format!(
            "font-desc={}",
            quote_value(&format!("Sans {}", self.font_points()))
        ));
        for s in [
            "!",
            "imagefreeze",
            "name=vslate_freeze",
            "is-live=true",
            "!",
        ] {
            w.push(s.into());
        }
        w.push("capsfilter".into());
        w.push(format!("name={}", names::VIDEO_SLATE_TAIL));
        w.push(format!("caps={}", quote_value(&caps)));
        w.push("!".into());
        w.push(format!("{VIDEO_SWITCH_NAME}."));
    }

    /// Words of the audio source chain, ending `! aswitch.`.
    fn audio_source_words(&self, audio: &AudioPlan, w: &mut Vec<String>) {
        let head_named = match &audio.input {
            AudioInput::Tone => {
                w.push("audiotestsrc".into());
                w.push(format!("name={}", names::AUDIO_SRC));
                for s in ["is-live=true", "wave=sine", "freq=1000", "volume=0.2", "!"] {
                    w.push(s.into());
                }
                false
            }
            AudioInput::Silence => {
                w.push("audiotestsrc".into());
                w.push(format!("name={}", names::AUDIO_SRC));
                for s in ["is-live=true", "wave=silence", "!"] {
                    w.push(s.into());
                }
                false
            }
            AudioInput::Alsa { device } => {
                w.push("alsasrc".into());
                w.push(format!("name={}", names::AUDIO_SRC));
                w.push(format!("device={}", quote_value(device)));
                // The system clock stays the pipeline clock: an unplugged card must
                // not take the pipeline's clock with it.
                w.push("provide-clock=false".into());
                w.push("!".into());
                false
            }
            AudioInput::File => {
                w.push(format!("{}.", names::MEDIA_DECODE));
                w.push("!".into());
                true
            }
        };
        w.push("audioconvert".into());
        if head_named {
            w.push(format!("name={}", names::AUDIO_HEAD));
        }
        for s in ["!", "audioresample", "!"] {
            w.push(s.into());
        }
        w.push(self.raw_audio_caps().into());
        w.push("!".into());
        w.push("queue".into());
        w.push(format!("name={}", names::AUDIO_TAIL));
        w.push("!".into());
        w.push(format!("{AUDIO_SWITCH_NAME}."));
    }

    /// Words of the silent audio slate, ending `! aswitch.`.
    fn audio_slate_words(&self, w: &mut Vec<String>) {
        for s in [
            "audiotestsrc",
            "name=aslate",
            "is-live=true",
            "wave=silence",
            "!",
            "capsfilter",
        ] {
            w.push(s.into());
        }
        w.push(format!("name={}", names::AUDIO_SLATE_TAIL));
        w.push(format!("caps={}", quote_value(self.raw_audio_caps())));
        w.push("!".into());
        w.push(format!("{AUDIO_SWITCH_NAME}."));
    }

    /// Branches taken off the raw video after the switch (source or slate, already
    /// scaled to the output size), before the encoder. Each is the launch words that
    /// follow `vtee. ! queue leaky=downstream max-size-buffers=1 !`. This is the hook
    /// for the thumbnail branch (issue 4): when it returns anything, the plan puts a
    /// `tee name=vtee` right after the video switch.
    fn raw_video_branches(&self) -> Vec<Vec<String>> {
        Vec::new()
    }

    /// The pipeline as words of a launch description, each word one token of the
    /// `gst-launch-1.0` grammar (element, `prop=value`, `!`, caps, pad reference).
    ///
    /// Order matters: the source chain links to the switches before the slate, so
    /// the source gets `sink_0` (priority 0, the preferred input).
    fn words(&self) -> Vec<String> {
        let mut w: Vec<String> = Vec::new();
        let ns = |ms: u64| (Duration::from_millis(ms).as_nanos() as u64).to_string();

        // Video: switch → [tee] → queue → encoder → parser → mux → output.
        w.push("fallbackswitch".into());
        w.push(format!("name={VIDEO_SWITCH_NAME}"));
        w.push(format!("timeout={}", ns(self.switch_timeout_ms)));
        w.push("immediate-fallback=false".into());
        // By hand (gst-launch-1.0 -e), the end of a source ends the stream instead of
        // putting the slate on air after it; the agent keeps sources' EOS away from
        // the switches, so this never triggers there.
        w.push("stop-on-eos=true".into());
        w.push("!".into());
        // One segment in running time out of the switch (each input has its own),
        // then a constant frame rate: the last frame is repeated over the switch
        // timeout and over the slate's latency at the switch back, so the encoder
        // sees neither a new segment nor a hole in time at a switch.
        for s in [
            "identity",
            "name=vswitch_seg",
            "single-segment=true",
            "!",
            "videorate",
            "name=vswitch_rate",
            "!",
        ] {
            w.push(s.into());
        }
        let branches = self.raw_video_branches();
        if !branches.is_empty() {
            w.push("tee".into());
            w.push("name=vtee".into());
            w.push("!".into());
        }
        for s in [
            "queue",
            "name=venc_q",
            "max-size-buffers=3",
            "max-size-bytes=0",
            "max-size-time=0",
            "!",
        ] {
            w.push(s.into());
        }
        w.extend(encoder_words(&EncoderSettings {
            family: self.encoder,
            codec: self.codec,
            bitrate_kbps: self.bitrate_kbps,
            keyint_max: self.keyint_max,
            tune: self.tune.clone(),
            width: self.width,
            height: self.height,
            framerate: self.framerate,
        }));
        for s in ["!", "queue", "name=vmux_q", "!", "mpegtsmux"] {
            w.push(s.into());
        }
        w.push(format!("name={MUX_NAME}"));
        w.push("alignment=7".into());
        w.push("!".into());
        match &self.output {
            Output::Bond => {
                w.push("ristbondsink".into());
                w.push(format!("name={BOND_SINK_NAME}"));
                // Links come from `[[links]]` of the config (with their ids), so a live
                // `stream.links.update` can re-set `config` and keep ids stable.
                w.push(format!("config={}", quote_value(&self.bonding_toml)));
            }
            Output::File(path) => {
                w.push("filesink".into());
                w.push("name=out".into());
                w.push(format!("location={}", quote_value(&path.to_string_lossy())));
            }
        }
        self.video_source_words(&mut w);
        self.video_slate_words(&mut w);
        for branch in branches {
            for s in [
                "vtee.",
                "!",
                "queue",
                "leaky=downstream",
                "max-size-buffers=1",
                "!",
            ] {
                w.push(s.into());
            }
            w.extend(branch);
        }

        if let Some(audio) = &self.audio {
            w.push("fallbackswitch".into());
            w.push(format!("name={AUDIO_SWITCH_NAME}"));
            w.push(format!("timeout={}", ns(self.switch_timeout_ms)));
            w.push("immediate-fallback=false".into());
            w.push("stop-on-eos=true".into());
            // As for video: one segment, and silence over holes (a constant sample
            // count), overlaps cut.
            for s in [
                "!",
                "identity",
                "name=aswitch_seg",
                "single-segment=true",
                "!",
                "audiorate",
                "name=aswitch_rate",
                "!",
                "queue",
                "name=aenc_q",
                "!",
                "audioconvert",
                "!",
            ] {
                w.push(s.into());
            }
            match audio.codec {
                AudioCodec::Aac => {
                    w.push("avenc_aac".into());
                    w.push("name=aenc".into());
                    w.push(format!("bitrate={}", audio.bitrate_kbps * 1000));
                    w.push("!".into());
                    w.push("aacparse".into());
                }
                AudioCodec::Opus => {
                    w.push("opusenc".into());
                    w.push("name=aenc".into());
                    w.push(format!("bitrate={}", audio.bitrate_kbps * 1000));
                    w.push("!".into());
                    w.push("opusparse".into());
                }
            }
            for s in ["!", "queue", "name=amux_q", "!"] {
                w.push(s.into());
            }
            w.push(format!("{MUX_NAME}."));
            self.audio_source_words(audio, &mut w);
            self.audio_slate_words(&mut w);
        }
        w
    }

    /// The launch description handed to `gst_parse_launch`.
    pub fn launch_description(&self) -> String {
        self.words().join(" ")
    }

    /// A shell command line that runs the same pipeline by hand:
    /// `gst-launch-1.0 -e …`, every word quoted for a POSIX shell. It needs Braid's
    /// plugins on `GST_PLUGIN_PATH` (`ristbondsink`; `fallbackswitch` from
    /// `cargo build -p gst-plugin-fallbackswitch`). What only the agent adds
    /// ([`crate::Supervisor`]: source restarts, looping, the end-of-file slate) is
    /// not in the line: by hand, a source that ends ends the pipeline.
    pub fn launch_line(&self) -> String {
        let mut line = String::from("gst-launch-1.0 -e");
        for w in self.words() {
            line.push(' ');
            line.push_str(&shell_word(&w));
        }
        line
    }

    /// Build the pipeline (state `Null`) from [`StreamPlan::launch_description`].
    /// Registers Braid's static elements (`fallbackswitch`) if needed; `ristbondsink`
    /// must be registered for [`Output::Bond`]. The source inputs of the switches get
    /// priority 0, the slates 1.
    /// Errors: [`BuildError::Parse`] (missing element, bad value),
    /// [`BuildError::MissingElement`].
    pub fn build(&self) -> Result<gst::Pipeline, BuildError> {
        use gst::prelude::*;
        crate::register_elements().map_err(|e| BuildError::Parse(e.to_string()))?;
        let element = gst::parse::launch(&self.launch_description())
            .map_err(|e| BuildError::Parse(e.to_string()))?;
        let pipeline = element
            .downcast::<gst::Pipeline>()
            .map_err(|_| BuildError::Parse("description did not make a pipeline".into()))?;
        pipeline.set_property("name", format!("stream-{}", self.stream_id));
        let mut required = vec![ENCODER_NAME, MUX_NAME, VIDEO_SWITCH_NAME];
        if self.output == Output::Bond {
            required.push(BOND_SINK_NAME);
        }
        if self.audio.is_some() {
            required.push(AUDIO_SWITCH_NAME);
        }
        for name in required {
            if pipeline.by_name(name).is_none() {
                return Err(BuildError::MissingElement(name));
            }
        }
        let mut switches = vec![(VIDEO_SWITCH_NAME, names::VIDEO_TAIL)];
        if self.audio.is_some() {
            switches.push((AUDIO_SWITCH_NAME, names::AUDIO_TAIL));
        }
        for (switch, tail) in switches.iter().copied() {
            let primary = pipeline
                .by_name(tail)
                .and_then(|t| t.static_pad("src"))
                .and_then(|p| p.peer());
            let Some(switch) = pipeline.by_name(switch) else {
                continue;
            };
            for pad in switch.sink_pads() {
                let prio: u32 = if Some(&pad) == primary.as_ref() { 0 } else { 1 };
                pad.set_property("priority", prio);
            }
        }
        if let Some(vswitch) = pipeline.by_name(VIDEO_SWITCH_NAME) {
            monotonic_guard(&vswitch);
        }
        crate::encoder::prepare(&pipeline, self.keyint_max);
        Ok(pipeline)
    }
}

/// Keep the switch's video output strictly increasing in time: at a switch the
/// incoming input can deliver a frame at the very running time of the last frame of
/// the other input (both run on the same clock lattice); the encoder must not get two
/// frames with one PTS.
fn monotonic_guard(switch: &gst::Element) {
    use gst::prelude::*;
    let Some(src) = switch.static_pad("src") else {
        return;
    };
    let last = std::sync::Mutex::new(None::<gst::ClockTime>);
    src.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(gst::PadProbeData::Buffer(buf)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let rt = pad
            .sticky_event::<gst::event::Segment>(0)
            .and_then(|s| s.segment().clone().downcast::<gst::ClockTime>().ok())
            .and_then(|s| s.to_running_time(buf.pts()?));
        let mut last = last.lock().expect("guard state poisoned");
        match (rt, *last) {
            (Some(rt), Some(prev)) if rt <= prev => gst::PadProbeReturn::Drop,
            (Some(rt), _) => {
                *last = Some(rt);
                gst::PadProbeReturn::Ok
            }
            _ => gst::PadProbeReturn::Ok,
        }
    });
}

/// Validate a `bonding_config` (PROTOCOL.md §5) and render it as the TOML that
/// `ristbondsink`'s `config` property takes (docs/elements.md). Used at start and for
/// live updates (`stream.links.update`, `config.update`), which re-set `config` on the
/// running sink. Errors: [`PlanError::Invalid`] naming the field
/// (`bonding_config.links[1].uri`).
pub fn bonding_toml(cfg: &BondingConfig) -> Result<String, PlanError> {
    plan_links(cfg)?;
    toml::to_string(cfg)
        .map_err(|e| invalid("bonding_config", format!("cannot be written as TOML: {e}")))
}

/// Check `bonding_config.links` and turn each into the URI `ristbondsink` takes.
fn plan_links(cfg: &BondingConfig) -> Result<Vec<LinkPlan>, PlanError> {
    if cfg.links.is_empty() {
        return Err(invalid(
            "bonding_config.links",
            "at least one link is needed",
        ));
    }
    let mut out: Vec<LinkPlan> = Vec::with_capacity(cfg.links.len());
    for (i, link) in cfg.links.iter().enumerate() {
        let field = format!("bonding_config.links[{i}]");
        if out.iter().any(|l| l.id == link.id) {
            return Err(invalid(
                &format!("{field}.id"),
                format!("id {} is used twice", link.id),
            ));
        }
        let parsed = LinkUri::parse(&link.uri)
            .map_err(|e| invalid(&format!("{field}.uri"), e.to_string()))?;
        if parsed.listen {
            return Err(invalid(
                &format!("{field}.uri"),
                "a sender link needs a destination, not rist://@ (listen)",
            ));
        }
        let mut uri = link.uri.clone();
        if let Some(iface) = &link.interface {
            if iface.is_empty()
                || iface.len() > 15
                || !iface
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(invalid(
                    &format!("{field}.interface"),
                    format!("{iface:?} is not a network interface name"),
                ));
            }
            match &parsed.iface {
                Some(existing) if existing != iface => {
                    return Err(invalid(
                        &format!("{field}.interface"),
                        format!("{iface:?} contradicts iface={existing} in the uri"),
                    ))
                }
                Some(_) => {}
                None => {
                    uri.push(if uri.contains('?') { '&' } else { '?' });
                    uri.push_str("iface=");
                    uri.push_str(iface);
                }
            }
        }
        out.push(LinkPlan {
            id: link.id,
            uri,
            interface: link.interface.clone().or(parsed.iface),
        });
    }
    Ok(out)
}
