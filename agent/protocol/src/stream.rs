//! Stream messages: `stream.start`, `stream.stop` (PROTOCOL.md §5), `stream.stats`,
//! `stream.ended` (PROTOCOL.md §4; seed 004 §4).

use serde::{Deserialize, Serialize};

/// Payload of `stream.start` (PROTOCOL.md §5): build and start one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStart {
    /// Control-plane id of the stream, e.g. `str_xyz789`; key of all later messages.
    pub stream_id: String,
    /// What to capture.
    pub source: SourceSpec,
    /// How to encode the video.
    pub encoder: EncoderSpec,
    /// Audio track; absent or `enabled: false` means video only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioSpec>,
    /// Destination URIs (informative; `bonding_config.links` is what is used).
    #[serde(default)]
    pub destinations: Vec<String>,
    /// The bonded transport: links and scheduler.
    pub bonding_config: BondingConfig,
    /// Send 320×180 JPEG thumbnails every 10 s.
    #[serde(default)]
    pub thumbnails: bool,
}

/// Where the picture comes from (`stream.start.source`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceSpec {
    /// `v4l2`, `test` or `media`.
    pub mode: SourceMode,
    /// V4L2 device node for `v4l2`, e.g. `/dev/video0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// File (in the media folder) for `media`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `WIDTHxHEIGHT`, e.g. `1920x1080`.
    pub resolution: String,
    /// Frames per second.
    pub framerate: u32,
}

/// Source kinds (`source.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceMode {
    /// A V4L2 capture device (HDMI grabber, webcam).
    V4l2,
    /// A generated test pattern.
    Test,
    /// A saved file from the media folder.
    Media,
}

/// Video encoder settings (`stream.start.encoder`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderSpec {
    /// `h264` (default) or `h265`.
    #[serde(default)]
    pub codec: Codec,
    /// Target bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Encoder tuning, e.g. `zerolatency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tune: Option<String>,
    /// Maximum key-frame interval, frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyint_max: Option<u32>,
    /// Lower bound for adaptive bitrate, kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_bitrate_kbps: Option<u32>,
    /// Upper bound for adaptive bitrate, kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bitrate_kbps: Option<u32>,
}

/// Video codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// H.264 / AVC.
    #[default]
    H264,
    /// H.265 / HEVC.
    H265,
}

/// Audio settings (`stream.start.audio`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioSpec {
    /// Whether to carry audio.
    pub enabled: bool,
    /// `aac` or `opus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// Audio bitrate, kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate_kbps: Option<u32>,
}

/// `bonding_config` (seed 004 §4.2; PROTOCOL.md §5): the complete bonded-transport
/// config, serialised to TOML for `ristbondsink`'s `config` property.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BondingConfig {
    /// Config format version (1).
    #[serde(default = "one")]
    pub version: u32,
    /// The links to bond; at least one.
    pub links: Vec<BondingLink>,
    /// Scheduler settings; all optional.
    #[serde(default)]
    pub scheduler: SchedulerConfig,
}

fn one() -> u32 {
    1
}

/// One link of `bonding_config.links`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BondingLink {
    /// Link id, unique within the stream; reported back in `stream.stats.links[].id`.
    pub id: u32,
    /// `rist://host:port` destination (even port).
    pub uri: String,
    /// Network interface to bind the link to, e.g. `wwan0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

/// `bonding_config.scheduler` (PROTOCOL.md §5 "scheduler fields"). Every field is
/// optional; absent means the element's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    /// Duplicate every packet on all healthy links for `storm_duration_ms` when a link dies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_enabled: Option<bool>,
    /// Storm duration, ms (default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_duration_ms: Option<u32>,
    /// Drop packets not sent within this age, ms (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_deadline_ms: Option<u32>,
    /// Use spare capacity for duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy_enabled: Option<bool>,
    /// Share of spare capacity used for duplicates, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy_spare_ratio: Option<f64>,
    /// Send key-frame / PAT / PMT packets on every link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_broadcast: Option<bool>,
    /// RTT above which a link is failed over, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_rtt_ms: Option<u32>,
    /// Loss rate above which a link is failed over, 0–1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_loss_rate: Option<f64>,
}

/// Payload of `stream.stop` (PROTOCOL.md §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStop {
    /// The stream to stop.
    pub stream_id: String,
    /// Free-form reason from the control plane, e.g. `user_request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Link state names of `stream.stats.links[].state` (PROTOCOL.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkState {
    /// Carrying traffic normally.
    Live,
    /// Carrying less traffic because of loss or RTT.
    Degraded,
    /// Not carrying traffic.
    Down,
    /// Being tested before re-admission.
    Probing,
}

/// One link in `stream.stats.links[]` (PROTOCOL.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkStats {
    /// `bonding_config.links[].id`.
    pub id: u32,
    /// Bound interface, or the link URI when not bound.
    pub interface: String,
    /// Scheduler state.
    pub state: LinkState,
    /// Smoothed round-trip time, ms (0 until measured).
    pub rtt_ms: f64,
    /// Loss fraction reported by the receiver, 0–1.
    pub loss_rate: f64,
    /// Estimated capacity, bit/s (0 while unknown).
    pub capacity_bps: u64,
    /// Bytes sent on the link, originals and retransmissions.
    pub sent_bytes: u64,
    /// Retransmitted packets sent on the link.
    pub retransmitted_packets: u64,
    /// Signal of the link's modem, dBm, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_dbm: Option<f64>,
}

/// `stream.stats.output` (PROTOCOL.md §4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputStats {
    /// Original RTP packets sent.
    pub packets_sent: u64,
    /// Retransmitted RTP packets sent.
    pub packets_retransmitted: u64,
    /// Packets dropped for missing `discard_deadline_ms`.
    pub packets_dropped_deadline: u64,
}

/// Payload of `stream.stats`, every 1 s per live stream (PROTOCOL.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStats {
    /// The stream.
    pub stream_id: String,
    /// Seconds since the stream went live.
    pub uptime_s: u64,
    /// Current encoder target bitrate, kbit/s.
    pub encoder_bitrate_kbps: u32,
    /// Per-link figures.
    pub links: Vec<LinkStats>,
    /// Aggregate output counters.
    pub output: OutputStats,
}

/// `stream.ended.reason` (PROTOCOL.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `stream.stop` from the control plane.
    UserStop,
    /// The pipeline failed.
    Error,
    /// The source went away for good.
    SourceLost,
    /// Replaced by a new `stream.start` with the same id.
    Replaced,
    /// The agent is shutting down.
    Shutdown,
}

/// Payload of `stream.ended`, once per stream (PROTOCOL.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEnded {
    /// The stream.
    pub stream_id: String,
    /// Why it ended.
    pub reason: EndReason,
    /// Error text for `reason: error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it ran, s.
    pub duration_s: u64,
    /// Bytes sent over all links.
    pub total_bytes: u64,
}
