//! A validated `stream.start` (PROTOCOL.md §5) and its launch description.

use std::path::{Component, Path, PathBuf};

use braid_protocol::stream::{BondingConfig, Codec, SourceMode, StreamStart};
use ristbond_core::link::LinkUri;

use crate::quote::{quote_value, shell_word};
use crate::{BuildError, PlanError, BOND_SINK_NAME, ENCODER_NAME, MUX_NAME};

/// Where the picture comes from, resolved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourcePlan {
    /// `videotestsrc` (live) with the running time burnt in.
    Test,
    /// A V4L2 capture node that exists, e.g. `/dev/video0`.
    V4l2 {
        /// Device node path.
        device: PathBuf,
    },
    /// A file inside the media folder that exists.
    Media {
        /// Absolute path of the file.
        path: PathBuf,
    },
}

/// Audio codecs carried in the MPEG-TS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC-LC (`avenc_aac`), ADTS in MPEG-TS.
    Aac,
    /// Opus (`opusenc`), ETSI TS 102 366 style mapping of `mpegtsmux`.
    Opus,
}

/// The audio track of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioPlan {
    /// Codec.
    pub codec: AudioCodec,
    /// Bitrate, kbit/s.
    pub bitrate_kbps: u32,
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
}

fn invalid(field: &str, reason: impl Into<String>) -> PlanError {
    PlanError::Invalid {
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
fn resolve_media(path: &str, media_dir: Option<&Path>) -> Result<PathBuf, PlanError> {
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
    if !full.is_file() {
        return Err(PlanError::NotFound {
            field: field.to_owned(),
            reason: format!("media file {} does not exist", full.display()),
        });
    }
    Ok(full)
}

impl StreamPlan {
    /// Validate a `stream.start` payload. `media_dir` is the agent's media folder
    /// (ARCHITECTURE.md config `agent.media_dir`) that `source.path` must lie in.
    ///
    /// Errors: [`PlanError::Invalid`] naming the JSON field (→ `invalid_payload`),
    /// [`PlanError::NotFound`] for a missing device or file (→ `not_found`),
    /// [`PlanError::Unsupported`] (→ `unsupported`).
    pub fn from_start(start: &StreamStart, media_dir: Option<&Path>) -> Result<Self, PlanError> {
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
        let source = match src.mode {
            SourceMode::Test => SourcePlan::Test,
            SourceMode::V4l2 => {
                let dev = src
                    .device
                    .as_deref()
                    .ok_or_else(|| invalid("source.device", "required for mode v4l2"))?;
                let device = PathBuf::from(dev);
                if !device.exists() {
                    return Err(PlanError::NotFound {
                        field: "source.device".into(),
                        reason: format!("capture device {dev} does not exist"),
                    });
                }
                SourcePlan::V4l2 { device }
            }
            SourceMode::Media => {
                let path = src
                    .path
                    .as_deref()
                    .ok_or_else(|| invalid("source.path", "required for mode media"))?;
                SourcePlan::Media {
                    path: resolve_media(path, media_dir)?,
                }
            }
        };

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

        let audio = match &start.audio {
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
                if !matches!(source, SourcePlan::Test) {
                    return Err(PlanError::Unsupported {
                        field: "audio".into(),
                        reason:
                            "audio capture is only available with source mode test in this version"
                                .into(),
                    });
                }
                Some(AudioPlan {
                    codec,
                    bitrate_kbps,
                })
            }
            _ => None,
        };

        let links = plan_links(&start.bonding_config)?;
        let bonding_toml = bonding_toml(&start.bonding_config)?;

        Ok(StreamPlan {
            stream_id: id.clone(),
            source,
            width,
            height,
            framerate: src.framerate,
            codec: enc.codec,
            bitrate_kbps: enc.bitrate_kbps,
            min_bitrate_kbps,
            max_bitrate_kbps,
            keyint_max,
            tune,
            audio,
            links,
            bonding_toml,
            thumbnails: start.thumbnails,
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

    /// The pipeline as words of a launch description, each word one token of the
    /// `gst-launch-1.0` grammar (element, `prop=value`, `!`, caps, pad reference).
    fn words(&self) -> Vec<String> {
        let mut w: Vec<String> = Vec::new();
        let mut push = |s: &str| w.push(s.to_owned());
        let raw_caps = format!(
            "video/x-raw,format=I420,width={},height={},framerate={}/1",
            self.width, self.height, self.framerate
        );
        match &self.source {
            SourcePlan::Test => {
                for s in [
                    "videotestsrc",
                    "is-live=true",
                    "pattern=smpte",
                    "!",
                    &raw_caps,
                ] {
                    push(s);
                }
                for s in ["!", "timeoverlay", "halignment=right", "valignment=bottom"] {
                    push(s);
                }
                push("font-desc=\"Sans 28\"");
            }
            SourcePlan::V4l2 { device } => {
                push("v4l2src");
                push(&format!(
                    "device={}",
                    quote_value(&device.to_string_lossy())
                ));
                for s in ["do-timestamp=true", "!", "decodebin", "!", "videoconvert"] {
                    push(s);
                }
                for s in ["!", "videoscale", "!", "videorate", "!", &raw_caps] {
                    push(s);
                }
            }
            SourcePlan::Media { path } => {
                push("filesrc");
                push(&format!(
                    "location={}",
                    quote_value(&path.to_string_lossy())
                ));
                for s in ["!", "decodebin", "!", "videoconvert", "!", "videoscale"] {
                    push(s);
                }
                for s in ["!", "videorate", "!", &raw_caps] {
                    push(s);
                }
            }
        }
        if self.thumbnails {
            crate::thumbnail::TEE_WORDS.iter().for_each(|s| push(s));
        }
        let (enc, parse) = match self.codec {
            Codec::H264 => ("x264enc", "h264parse"),
            Codec::H265 => ("x265enc", "h265parse"),
        };
        push("!");
        push(enc);
        push(&format!("name={ENCODER_NAME}"));
        push(&format!("tune={}", self.tune));
        push("speed-preset=superfast");
        push(&format!("bitrate={}", self.bitrate_kbps));
        push(&format!("key-int-max={}", self.keyint_max));
        for s in [
            "!",
            parse,
            "config-interval=-1",
            "!",
            "queue",
            "!",
            "mpegtsmux",
        ] {
            push(s);
        }
        push(&format!("name={MUX_NAME}"));
        push("alignment=7");
        push("!");
        push("ristbondsink");
        push(&format!("name={BOND_SINK_NAME}"));
        // Links come from `[[links]]` of the config (with their ids), so a live
        // `stream.links.update` can re-set `config` and keep ids stable.
        push(&format!("config={}", quote_value(&self.bonding_toml)));

        if let Some(audio) = &self.audio {
            for s in [
                "audiotestsrc",
                "is-live=true",
                "wave=sine",
                "freq=1000",
                "volume=0.2",
            ] {
                push(s);
            }
            for s in ["!", "audioconvert", "!", "audioresample", "!"] {
                push(s);
            }
            push("audio/x-raw,rate=48000,channels=2");
            push("!");
            match audio.codec {
                AudioCodec::Aac => {
                    push("avenc_aac");
                    push(&format!("bitrate={}", audio.bitrate_kbps * 1000));
                    push("!");
                    push("aacparse");
                }
                AudioCodec::Opus => {
                    push("opusenc");
                    push(&format!("bitrate={}", audio.bitrate_kbps * 1000));
                    push("!");
                    push("opusparse");
                }
            }
            for s in ["!", "queue", "!"] {
                push(s);
            }
            push(&format!("{MUX_NAME}."));
        }
        if self.thumbnails {
            crate::thumbnail::BRANCH_WORDS.iter().for_each(|s| push(s));
        }
        w
    }

    /// The launch description handed to `gst_parse_launch`.
    pub fn launch_description(&self) -> String {
        self.words().join(" ")
    }

    /// A shell command line that runs the same pipeline by hand:
    /// `gst-launch-1.0 -e …`, every word quoted for a POSIX shell.
    pub fn launch_line(&self) -> String {
        let mut line = String::from("gst-launch-1.0 -e");
        for w in self.words() {
            line.push(' ');
            line.push_str(&shell_word(&w));
        }
        line
    }

    /// Build the pipeline (state `Null`) from [`StreamPlan::launch_description`].
    /// GStreamer must be initialised and `ristbondsink` registered.
    /// Errors: [`BuildError::Parse`] (missing element, bad value),
    /// [`BuildError::MissingElement`].
    pub fn build(&self) -> Result<gst::Pipeline, BuildError> {
        use gst::prelude::*;
        let element = gst::parse::launch(&self.launch_description())
            .map_err(|e| BuildError::Parse(e.to_string()))?;
        let pipeline = element
            .downcast::<gst::Pipeline>()
            .map_err(|_| BuildError::Parse("description did not make a pipeline".into()))?;
        pipeline.set_property("name", format!("stream-{}", self.stream_id));
        for name in [ENCODER_NAME, BOND_SINK_NAME, MUX_NAME] {
            if pipeline.by_name(name).is_none() {
                return Err(BuildError::MissingElement(name));
            }
        }
        Ok(pipeline)
    }
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
