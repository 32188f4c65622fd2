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
    /// `loop`: for `media`, start the file over at its end instead of putting the
    /// slate on air (default false).
    #[serde(default, rename = "loop", skip_serializing_if = "std::ops::Not::not")]
    pub looping: bool,
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
    /// ALSA capture device (`hw:1,0`, `hw:CARD=MS2109,DEV=0`); absent: the test tone
    /// for `test`, the file's track for `media`, the V4L2 device's own sound card
    /// for `v4l2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
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

impl crate::envelope::Message for StreamStart {
    const TYPE: &'static str = "stream.start";
}

impl crate::envelope::Message for StreamStop {
    const TYPE: &'static str = "stream.stop";
}

impl crate::envelope::Message for StreamStats {
    const TYPE: &'static str = "stream.stats";
}

impl crate::envelope::Message for StreamEnded {
    const TYPE: &'static str = "stream.ended";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::assert_golden;

    #[test]
    fn golden_stream_start_full() {
        assert_golden(
            r#"{"stream_id":"str_xyz789",
                "source":{"mode":"v4l2","device":"/dev/video0","resolution":"1920x1080","framerate":30},
                "encoder":{"codec":"h265","bitrate_kbps":5000,"tune":"zerolatency","keyint_max":60,
                           "min_bitrate_kbps":1000,"max_bitrate_kbps":8000},
                "audio":{"enabled":true,"codec":"opus","bitrate_kbps":96},
                "destinations":["rist://platform.example.com:15000"],
                "bonding_config":{"version":1,
                  "links":[{"id":0,"uri":"rist://platform.example.com:15000","interface":"wwan0"}],
                  "scheduler":{"storm_enabled":true,"storm_duration_ms":2000,"discard_deadline_ms":200,
                    "redundancy_enabled":true,"redundancy_spare_ratio":0.4,"critical_broadcast":true,
                    "failover_rtt_ms":500,"failover_loss_rate":0.2}},
                "thumbnails":true}"#,
            &StreamStart {
                stream_id: "str_xyz789".into(),
                source: SourceSpec {
                    mode: SourceMode::V4l2,
                    device: Some("/dev/video0".into()),
                    path: None,
                    resolution: "1920x1080".into(),
                    framerate: 30,
                    looping: false,
                },
                encoder: EncoderSpec {
                    codec: Codec::H265,
                    bitrate_kbps: 5000,
                    tune: Some("zerolatency".into()),
                    keyint_max: Some(60),
                    min_bitrate_kbps: Some(1000),
                    max_bitrate_kbps: Some(8000),
                },
                audio: Some(AudioSpec {
                    enabled: true,
                    codec: Some("opus".into()),
                    bitrate_kbps: Some(96),
                    device: None,
                }),
                destinations: vec!["rist://platform.example.com:15000".into()],
                bonding_config: BondingConfig {
                    version: 1,
                    links: vec![BondingLink {
                        id: 0,
                        uri: "rist://platform.example.com:15000".into(),
                        interface: Some("wwan0".into()),
                    }],
                    scheduler: SchedulerConfig {
                        storm_enabled: Some(true),
                        storm_duration_ms: Some(2000),
                        discard_deadline_ms: Some(200),
                        redundancy_enabled: Some(true),
                        redundancy_spare_ratio: Some(0.4),
                        critical_broadcast: Some(true),
                        failover_rtt_ms: Some(500),
                        failover_loss_rate: Some(0.2),
                    },
                },
                thumbnails: true,
            },
        );
    }

    #[test]
    fn golden_stream_start_media_loop_and_audio_device() {
        let start: StreamStart = serde_json::from_str(
            r#"{"stream_id":"s","source":{"mode":"media","path":"clip.mp4","resolution":"1280x720",
                "framerate":25,"loop":true},"encoder":{"bitrate_kbps":3000},
                "audio":{"enabled":true,"codec":"aac","device":"hw:CARD=MS2109,DEV=0"},
                "bonding_config":{"links":[{"id":0,"uri":"rist://h:15000"}]}}"#,
        )
        .unwrap();
        assert!(start.source.looping);
        assert_eq!(
            start.audio.as_ref().unwrap().device.as_deref(),
            Some("hw:CARD=MS2109,DEV=0")
        );
        let back = serde_json::to_value(&start).unwrap();
        assert_eq!(back["source"]["loop"], serde_json::json!(true));
        assert_eq!(
            back["audio"]["device"],
            serde_json::json!("hw:CARD=MS2109,DEV=0")
        );
        // `loop: false` is the default and is not written.
        let mut start = start;
        start.source.looping = false;
        let back = serde_json::to_value(&start).unwrap();
        assert!(back["source"].get("loop").is_none(), "{back}");
    }

    #[test]
    fn stream_start_defaults() {
        let minimal = r#"{"stream_id":"s","source":{"mode":"test","resolution":"320x240","framerate":30},
            "encoder":{"bitrate_kbps":800},"bonding_config":{"links":[{"id":0,"uri":"rist://127.0.0.1:15000"}]}}"#;
        let start: StreamStart = serde_json::from_str(minimal).unwrap();
        assert_eq!(start.encoder.codec, Codec::H264);
        assert_eq!(start.bonding_config.version, 1);
        assert_eq!(start.bonding_config.scheduler, SchedulerConfig::default());
        assert!(!start.thumbnails && start.audio.is_none() && start.destinations.is_empty());
        // Encoding writes the defaults out explicitly.
        assert_golden(
            r#"{"stream_id":"s","source":{"mode":"test","resolution":"320x240","framerate":30},
                "encoder":{"codec":"h264","bitrate_kbps":800},"destinations":[],
                "bonding_config":{"version":1,"links":[{"id":0,"uri":"rist://127.0.0.1:15000"}],"scheduler":{}},
                "thumbnails":false}"#,
            &start,
        );
    }

    #[test]
    fn golden_stream_stop() {
        assert_golden(
            r#"{"stream_id":"str_xyz789","reason":"user_request"}"#,
            &StreamStop {
                stream_id: "str_xyz789".into(),
                reason: Some("user_request".into()),
            },
        );
    }

    #[test]
    fn golden_stream_stats() {
        assert_golden(
            r#"{"stream_id":"str_xyz789","uptime_s":342,"encoder_bitrate_kbps":4800,
                "links":[{"id":0,"interface":"wwan0","state":"Live","rtt_ms":45.2,"loss_rate":0.001,
                  "capacity_bps":8500000,"sent_bytes":194000000,"retransmitted_packets":12,"signal_dbm":-72.0},
                  {"id":1,"interface":"rist://10.0.0.1:15002","state":"Down","rtt_ms":0.0,"loss_rate":1.0,
                  "capacity_bps":0,"sent_bytes":0,"retransmitted_packets":0}],
                "output":{"packets_sent":1000,"packets_retransmitted":12,"packets_dropped_deadline":1}}"#,
            &StreamStats {
                stream_id: "str_xyz789".into(),
                uptime_s: 342,
                encoder_bitrate_kbps: 4800,
                links: vec![
                    LinkStats {
                        id: 0,
                        interface: "wwan0".into(),
                        state: LinkState::Live,
                        rtt_ms: 45.2,
                        loss_rate: 0.001,
                        capacity_bps: 8_500_000,
                        sent_bytes: 194_000_000,
                        retransmitted_packets: 12,
                        signal_dbm: Some(-72.0),
                    },
                    LinkStats {
                        id: 1,
                        interface: "rist://10.0.0.1:15002".into(),
                        state: LinkState::Down,
                        rtt_ms: 0.0,
                        loss_rate: 1.0,
                        capacity_bps: 0,
                        sent_bytes: 0,
                        retransmitted_packets: 0,
                        signal_dbm: None,
                    },
                ],
                output: OutputStats {
                    packets_sent: 1000,
                    packets_retransmitted: 12,
                    packets_dropped_deadline: 1,
                },
            },
        );
    }

    #[test]
    fn golden_stream_ended() {
        assert_golden(
            r#"{"stream_id":"str_xyz789","reason":"user_stop","duration_s":3600,"total_bytes":2400000000}"#,
            &StreamEnded {
                stream_id: "str_xyz789".into(),
                reason: EndReason::UserStop,
                error: None,
                duration_s: 3600,
                total_bytes: 2_400_000_000,
            },
        );
        assert_golden(
            r#"{"stream_id":"s","reason":"error","error":"x264enc: not negotiated","duration_s":2,"total_bytes":0}"#,
            &StreamEnded {
                stream_id: "s".into(),
                reason: EndReason::Error,
                error: Some("x264enc: not negotiated".into()),
                duration_s: 2,
                total_bytes: 0,
            },
        );
    }

    #[test]
    fn every_end_reason_name() {
        for (r, n) in [
            (EndReason::UserStop, "user_stop"),
            (EndReason::Error, "error"),
            (EndReason::SourceLost, "source_lost"),
            (EndReason::Replaced, "replaced"),
            (EndReason::Shutdown, "shutdown"),
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), n);
        }
    }
}
