//! `config.get`, `config.set` and `config.update` (PROTOCOL.md §5), and the
//! config document they carry.
//!
//! The document is the agent's running configuration as a control plane sees it:
//! the sections of the agent's config file (ARCHITECTURE.md "The agent's config
//! file") **without** infrastructure secrets, plus the specs of the live streams:
//!
//! ```json
//! {"control_plane":{"url":"wss://platform.example.com/agent/ws",
//!                   "tls":{"mode":"pinned","pin_sha256":"ab…"}},
//!  "agent":{"state_dir":"/var/lib/braid","media_dir":"/var/lib/braid/media","status_interval_s":10},
//!  "nmos":{"enabled":false,"port":8080},
//!  "update":{"binary_path":"/usr/bin/braid-agent","max_size_mb":256,"login_timeout_s":120},
//!  "streams":[{…stream.start payload…}]}
//! ```
//!
//! Every field is optional on decode: in `config.set` an absent section or key
//! means "keep what runs". Secrets (`enrollment_token`, `device_key`,
//! `session_token`, private keys, API credentials) have no field here, so a
//! document cannot carry them out, and any sent in are ignored. Stream specs are
//! carried whole, stream-level credentials (passphrases in link URIs, stream
//! keys) included.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::Message;
use crate::error::ErrorBody;
use crate::inbound::PayloadError;
use crate::stream::{SchedulerConfig, StreamStart};

/// Keys that are infrastructure secrets wherever they appear outside `streams`
/// (PROTOCOL.md §5 `config.get`): never sent by the agent, ignored when received.
pub const SECRET_KEYS: &[&str] = &[
    "enrollment_token",
    "device_key",
    "session_token",
    "token",
    "private_key",
    "key_file",
    "tls_key",
    "password",
    "api_key",
    "api_token",
    "client_secret",
    "credentials",
];

/// The agent's config as carried by `config.get` / `config.set` (see the module
/// docs for the shape). All sections optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigDoc {
    /// `[control_plane]` without `enrollment_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<ControlPlaneDoc>,
    /// `[agent]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentDoc>,
    /// `[nmos]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nmos: Option<NmosDoc>,
    /// `[update]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateDoc>,
    /// The live streams, each as its `stream.start` payload with the bonding
    /// config in force (updates applied). In `config.set`: the wanted set of
    /// streams; absent means "streams are not touched".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<Vec<StreamStart>>,
}

/// `control_plane` section of a [`ConfigDoc`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ControlPlaneDoc {
    /// `wss://host[:port]/path` of the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// TLS verification of the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsDoc>,
}

/// A `tls` table: how a server certificate is verified (PROTOCOL.md §1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsDoc {
    /// `standard`, `pinned` or `insecure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TlsModeName>,
    /// Leaf certificate SHA-256, hex (a fingerprint, not a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_sha256: Option<String>,
}

/// TLS mode names (PROTOCOL.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsModeName {
    /// webpki roots plus the system store.
    Standard,
    /// Leaf certificate SHA-256 pin.
    Pinned,
    /// No verification (development only).
    Insecure,
}

/// `agent` section of a [`ConfigDoc`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentDoc {
    /// State directory (credentials, events, update markers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// Media folder listed in `device.status.saved_media`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_dir: Option<String>,
    /// Period of `device.status`, s (≥ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_interval_s: Option<u64>,
}

/// `nmos` section of a [`ConfigDoc`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NmosDoc {
    /// Serve the NMOS node API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Node API TCP port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// `update` section of a [`ConfigDoc`] (`agent.update`, PROTOCOL.md §5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateDoc {
    /// The binary `agent.update` replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_path: Option<String>,
    /// Largest download accepted, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_mb: Option<u64>,
    /// How long a new binary has to log in before it is rolled back, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_timeout_s: Option<u64>,
    /// TLS verification of the download server (absent: as `control_plane.tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsDoc>,
}

/// Payload of `config.get` (PROTOCOL.md §5): `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigGet {}

impl Message for ConfigGet {
    const TYPE: &'static str = "config.get";
}

/// Payload of `config.set` (PROTOCOL.md §5): `{"config": {…ConfigDoc…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigSet {
    /// The wanted configuration; absent parts are kept as they run.
    pub config: ConfigDoc,
}

impl Message for ConfigSet {
    const TYPE: &'static str = "config.set";
}

/// Payload of `config.update` (PROTOCOL.md §5): hot-reload scheduler fields of
/// one live stream (`stream_id`) or of every live stream (absent).
///
/// Stream fields that cannot change without rebuilding the pipeline (`source`,
/// `encoder`, `audio`, `thumbnails`, `destinations`, `links`, `bonding_config`)
/// are recognised so that the agent can refuse them with `unsupported` naming
/// the field, instead of ignoring them as unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigUpdate {
    /// The stream; absent = every live stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    /// Scheduler fields to change; absent fields keep their value.
    pub scheduler: SchedulerConfig,
    /// Needs a restart: refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// Needs a restart: refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<Value>,
    /// Needs a restart: refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Value>,
    /// Needs a restart: refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnails: Option<Value>,
    /// Needs a restart: refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destinations: Option<Value>,
    /// Not a scheduler field: `stream.links.update` changes links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Value>,
    /// Not a scheduler field: `config.set` replaces a whole bonding config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bonding_config: Option<Value>,
}

impl Message for ConfigUpdate {
    const TYPE: &'static str = "config.update";
}

impl ConfigUpdate {
    /// Names of the fields present that this request cannot change live, in
    /// payload order of this struct (`source`, `encoder`, …).
    pub fn restart_fields(&self) -> Vec<&'static str> {
        [
            ("source", self.source.is_some()),
            ("encoder", self.encoder.is_some()),
            ("audio", self.audio.is_some()),
            ("thumbnails", self.thumbnails.is_some()),
            ("destinations", self.destinations.is_some()),
            ("links", self.links.is_some()),
            ("bonding_config", self.bonding_config.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect()
    }

    /// Range checks of the scheduler fields; errors name the field
    /// (`scheduler.redundancy_spare_ratio`).
    pub fn validate(&self) -> Result<(), PayloadError> {
        validate_scheduler(&self.scheduler, "scheduler")
    }
}

/// Range checks of scheduler fields (PROTOCOL.md §5 "scheduler fields"): ratios
/// and loss rates within 0–1, durations and deadlines above 0. `prefix` is the
/// dotted path of the scheduler object in the payload.
pub fn validate_scheduler(s: &SchedulerConfig, prefix: &str) -> Result<(), PayloadError> {
    let bad = |field: &str, reason: String| PayloadError {
        field: format!("{prefix}.{field}"),
        reason,
    };
    for (name, value) in [
        ("redundancy_spare_ratio", s.redundancy_spare_ratio),
        ("failover_loss_rate", s.failover_loss_rate),
    ] {
        if let Some(v) = value {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(name, format!("{v} is outside 0–1")));
            }
        }
    }
    for (name, value) in [
        ("storm_duration_ms", s.storm_duration_ms),
        ("discard_deadline_ms", s.discard_deadline_ms),
        ("failover_rtt_ms", s.failover_rtt_ms),
    ] {
        if value == Some(0) {
            return Err(bad(name, "must be above 0".into()));
        }
    }
    Ok(())
}

/// Body of a successful `config.get.response`: `{"success":true,"config":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigGetResponse {
    /// `true` on success.
    pub success: bool,
    /// The running config (secrets removed) and live streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigDoc>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Message for ConfigGetResponse {
    const TYPE: &'static str = "config.get.response";
}

/// What `config.set` did to each stream, by stream id (each list sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamChanges {
    /// Identical spec: not touched.
    #[serde(default)]
    pub unchanged: Vec<String>,
    /// Only `bonding_config` (links, scheduler) changed: applied to the running
    /// sink, the stream was not interrupted.
    #[serde(default)]
    pub hot_applied: Vec<String>,
    /// Anything else changed: stopped (`stream.ended` reason `replaced`) and
    /// started with the new spec.
    #[serde(default)]
    pub restarted: Vec<String>,
    /// New ids: started.
    #[serde(default)]
    pub started: Vec<String>,
    /// Live ids absent from the wanted set: stopped (reason `user_stop`).
    #[serde(default)]
    pub stopped: Vec<String>,
    /// Ids whose change failed (see `error`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

/// Body of `config.set.response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigSetResponse {
    /// `true` when every change was applied.
    pub success: bool,
    /// Agent keys changed live and persisted, dotted (`agent.status_interval_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_changed: Option<Vec<String>>,
    /// Secret keys found in the payload and ignored, dotted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored_secrets: Option<Vec<String>>,
    /// What happened to the streams (absent when `config.streams` was absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<StreamChanges>,
    /// Why it failed (first failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Message for ConfigSetResponse {
    const TYPE: &'static str = "config.set.response";
}

/// Body of `config.update.response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigUpdateResponse {
    /// `true` when every addressed stream took the scheduler change.
    pub success: bool,
    /// The streams updated, sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<Vec<String>>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Message for ConfigUpdateResponse {
    const TYPE: &'static str = "config.update.response";
}

/// Recursively find [`SECRET_KEYS`] in a JSON value, outside `streams`; returns
/// their dotted paths (`control_plane.enrollment_token`).
pub fn find_secrets(value: &Value) -> Vec<String> {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        if let Value::Object(map) = v {
            for (k, child) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if path.is_empty() && k == "streams" {
                    continue;
                }
                if SECRET_KEYS.contains(&k.as_str()) {
                    out.push(p);
                } else {
                    walk(child, &p, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::assert_golden;
    use crate::stream::{
        BondingConfig, BondingLink, Codec, EncoderSpec, SourceMode, SourceSpec, StreamStart,
    };

    fn stream() -> StreamStart {
        StreamStart {
            stream_id: "str_1".into(),
            source: SourceSpec {
                mode: SourceMode::Test,
                device: None,
                path: None,
                resolution: "1280x720".into(),
                framerate: 30,
                looping: false,
            },
            encoder: EncoderSpec {
                codec: Codec::H264,
                bitrate_kbps: 4000,
                tune: None,
                keyint_max: None,
                min_bitrate_kbps: None,
                max_bitrate_kbps: None,
            },
            audio: None,
            destinations: vec![],
            bonding_config: BondingConfig {
                version: 1,
                links: vec![BondingLink {
                    id: 0,
                    uri: "rist://10.0.0.1:15000".into(),
                    interface: Some("wwan0".into()),
                }],
                scheduler: SchedulerConfig {
                    discard_deadline_ms: Some(200),
                    ..Default::default()
                },
            },
            thumbnails: false,
        }
    }

    fn full_doc() -> ConfigDoc {
        ConfigDoc {
            control_plane: Some(ControlPlaneDoc {
                url: Some("wss://platform.example.com/agent/ws".into()),
                tls: Some(TlsDoc {
                    mode: Some(TlsModeName::Pinned),
                    pin_sha256: Some("ab".repeat(32)),
                }),
            }),
            agent: Some(AgentDoc {
                state_dir: Some("/var/lib/braid".into()),
                media_dir: Some("/var/lib/braid/media".into()),
                status_interval_s: Some(10),
            }),
            nmos: Some(NmosDoc {
                enabled: Some(false),
                port: Some(8080),
            }),
            update: Some(UpdateDoc {
                binary_path: Some("/usr/bin/braid-agent".into()),
                max_size_mb: Some(256),
                login_timeout_s: Some(120),
                tls: None,
            }),
            streams: Some(vec![stream()]),
        }
    }

    const FULL: &str = r#"{
        "control_plane":{"url":"wss://platform.example.com/agent/ws",
          "tls":{"mode":"pinned","pin_sha256":"abababababababababababababababababababababababababababababababab"}},
        "agent":{"state_dir":"/var/lib/braid","media_dir":"/var/lib/braid/media","status_interval_s":10},
        "nmos":{"enabled":false,"port":8080},
        "update":{"binary_path":"/usr/bin/braid-agent","max_size_mb":256,"login_timeout_s":120},
        "streams":[{"stream_id":"str_1",
          "source":{"mode":"test","resolution":"1280x720","framerate":30},
          "encoder":{"codec":"h264","bitrate_kbps":4000},"destinations":[],
          "bonding_config":{"version":1,"links":[{"id":0,"uri":"rist://10.0.0.1:15000","interface":"wwan0"}],
            "scheduler":{"discard_deadline_ms":200}},
          "thumbnails":false}]}"#;

    #[test]
    fn golden_config_get_request() {
        assert_golden("{}", &ConfigGet {});
    }

    #[test]
    fn golden_config_get_response() {
        assert_golden(
            &format!(r#"{{"success":true,"config":{FULL}}}"#),
            &ConfigGetResponse {
                success: true,
                config: Some(full_doc()),
                error: None,
            },
        );
    }

    #[test]
    fn golden_config_set_request() {
        assert_golden(
            &format!(r#"{{"config":{FULL}}}"#),
            &ConfigSet { config: full_doc() },
        );
        // Partial: only one key; the rest reads as absent.
        assert_golden(
            r#"{"config":{"agent":{"status_interval_s":5}}}"#,
            &ConfigSet {
                config: ConfigDoc {
                    agent: Some(AgentDoc {
                        status_interval_s: Some(5),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            },
        );
    }

    #[test]
    fn secrets_in_a_config_set_are_not_decoded() {
        let text = r#"{"config":{"control_plane":{"url":"wss://h/","enrollment_token":"enr_x",
            "device_key":"dk"},"agent":{"status_interval_s":5}}}"#;
        let set: ConfigSet = serde_json::from_str(text).unwrap();
        let back = serde_json::to_string(&set).unwrap();
        assert!(!back.contains("enr_x") && !back.contains("dk"), "{back}");
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            find_secrets(&value["config"]),
            vec![
                "control_plane.device_key".to_owned(),
                "control_plane.enrollment_token".to_owned()
            ]
        );
    }

    #[test]
    fn stream_credentials_are_not_secrets() {
        let v = serde_json::json!({"streams":[{"bonding_config":{"links":[{"password":"x"}]}}]});
        assert!(find_secrets(&v).is_empty());
    }

    #[test]
    fn golden_config_set_response() {
        assert_golden(
            r#"{"success":true,"agent_changed":["agent.status_interval_s"],
                "ignored_secrets":["control_plane.enrollment_token"],
                "streams":{"unchanged":["a"],"hot_applied":["b"],"restarted":["c"],"started":["d"],"stopped":["e"]}}"#,
            &ConfigSetResponse {
                success: true,
                agent_changed: Some(vec!["agent.status_interval_s".into()]),
                ignored_secrets: Some(vec!["control_plane.enrollment_token".into()]),
                streams: Some(StreamChanges {
                    unchanged: vec!["a".into()],
                    hot_applied: vec!["b".into()],
                    restarted: vec!["c".into()],
                    started: vec!["d".into()],
                    stopped: vec!["e".into()],
                    failed: vec![],
                }),
                error: None,
            },
        );
        assert_golden(
            r#"{"success":false,"error":{"code":"unsupported","message":"config.control_plane.url cannot be changed remotely"}}"#,
            &ConfigSetResponse {
                success: false,
                agent_changed: None,
                ignored_secrets: None,
                streams: None,
                error: Some(ErrorBody::new(
                    crate::error::ErrorCode::Unsupported,
                    "config.control_plane.url cannot be changed remotely",
                )),
            },
        );
    }

    #[test]
    fn golden_config_update_request_and_response() {
        assert_golden(
            r#"{"stream_id":"str_1","scheduler":{"discard_deadline_ms":150,"redundancy_enabled":true,
                "redundancy_spare_ratio":0.5}}"#,
            &ConfigUpdate {
                stream_id: Some("str_1".into()),
                scheduler: SchedulerConfig {
                    discard_deadline_ms: Some(150),
                    redundancy_enabled: Some(true),
                    redundancy_spare_ratio: Some(0.5),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        assert_golden(
            r#"{"scheduler":{"storm_enabled":false}}"#,
            &ConfigUpdate {
                scheduler: SchedulerConfig {
                    storm_enabled: Some(false),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        assert_golden(
            r#"{"success":true,"streams":["str_1","str_2"]}"#,
            &ConfigUpdateResponse {
                success: true,
                streams: Some(vec!["str_1".into(), "str_2".into()]),
                error: None,
            },
        );
    }

    #[test]
    fn config_update_restart_fields_and_ranges() {
        let u: ConfigUpdate = serde_json::from_str(
            r#"{"scheduler":{},"encoder":{"codec":"h265"},"links":[],"future":1}"#,
        )
        .unwrap();
        assert_eq!(u.restart_fields(), vec!["encoder", "links"]);
        let u: ConfigUpdate =
            serde_json::from_str(r#"{"scheduler":{"redundancy_spare_ratio":1.5}}"#).unwrap();
        assert_eq!(
            u.validate().unwrap_err().field,
            "scheduler.redundancy_spare_ratio"
        );
        let u: ConfigUpdate =
            serde_json::from_str(r#"{"scheduler":{"discard_deadline_ms":0}}"#).unwrap();
        assert_eq!(
            u.validate().unwrap_err().field,
            "scheduler.discard_deadline_ms"
        );
    }
}
