//! The agent's config file (ARCHITECTURE.md "The agent's config file"): TOML,
//! default `/etc/braid/agent.conf`. Unknown keys are refused, naming the file and
//! the key; `BRAID_STATE_DIR` overrides `agent.state_dir`.
//!
//! ```toml
//! [control_plane]
//! url = "wss://platform.example.com/agent/ws"
//! enrollment_token = "enr_abc123"
//! [control_plane.tls]
//! mode = "pinned"            # standard | pinned | insecure
//! pin_sha256 = "ab:cd:…"     # 32 bytes hex, colons optional
//! [agent]
//! state_dir = "/var/lib/braid"
//! media_dir = "/var/lib/braid/media"
//! status_interval_s = 10
//! [nmos]
//! enabled = false
//! port = 8080
//! [streams]
//! source_lost_timeout_s = 600  # end a stream whose source stays lost (default: never)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::tls::{parse_pin, Pin};

/// Default config path of `braid-agent run`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/braid/agent.conf";
/// Environment variable overriding `agent.state_dir`.
pub const STATE_DIR_ENV: &str = "BRAID_STATE_DIR";
/// Environment variable that, set to `1`, allows `ws://` URLs and TLS mode
/// `insecure` (PROTOCOL.md §1; development only).
pub const ALLOW_INSECURE_ENV: &str = "BRAID_ALLOW_INSECURE";

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[control_plane]`: where and how to connect.
    pub control_plane: ControlPlaneConfig,
    /// `[agent]`: local paths and cadences.
    #[serde(default)]
    pub agent: AgentConfig,
    /// `[nmos]`: NMOS node API (not served by this version).
    #[serde(default)]
    pub nmos: NmosConfig,
    /// `[streams]`: behaviour of live streams.
    #[serde(default)]
    pub streams: StreamsSection,
}

/// `[streams]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamsSection {
    /// Seconds a stream may stay on the slate (its source lost) before it ends with
    /// `stream.ended` reason `source_lost` (PROTOCOL.md §4). Absent: never; the slate
    /// stays on air until the source returns or the stream is stopped. At least 1.
    #[serde(default)]
    pub source_lost_timeout_s: Option<u64>,
}

/// `[control_plane]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// `wss://host[:port]/path` of the control plane's agent endpoint.
    pub url: String,
    /// One-time enrollment token; used only while no credentials.json exists.
    #[serde(default)]
    pub enrollment_token: Option<String>,
    /// `[control_plane.tls]`.
    #[serde(default)]
    pub tls: TlsConfig,
}

/// `[control_plane.tls]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// How the server certificate is verified (default `standard`).
    #[serde(default)]
    pub mode: TlsMode,
    /// SHA-256 of the server's leaf certificate (DER), hex with optional colons;
    /// required for `pinned`.
    #[serde(default)]
    pub pin_sha256: String,
}

/// `control_plane.tls.mode` (PROTOCOL.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Mozilla roots (webpki-roots) plus the system store.
    #[default]
    Standard,
    /// Leaf certificate SHA-256 must equal `pin_sha256`; no CA chain needed.
    Pinned,
    /// No certificate verification; needs `BRAID_ALLOW_INSECURE=1`.
    Insecure,
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Directory for credentials.json, events/, updates/ (default `/var/lib/braid`).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Folder listed in `device.status.saved_media` (default `/var/lib/braid/media`).
    #[serde(default = "default_media_dir")]
    pub media_dir: PathBuf,
    /// Period of `device.status`, s (default 10, at least 1).
    #[serde(default = "default_status_interval")]
    pub status_interval_s: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            state_dir: default_state_dir(),
            media_dir: default_media_dir(),
            status_interval_s: default_status_interval(),
        }
    }
}

/// `[nmos]` (the node API itself is not implemented yet; keys are accepted).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmosConfig {
    /// Serve the NMOS node API.
    #[serde(default)]
    pub enabled: bool,
    /// TCP port of the node API (default 8080).
    #[serde(default = "default_nmos_port")]
    pub port: u16,
}

impl Default for NmosConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            port: default_nmos_port(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/braid")
}
fn default_media_dir() -> PathBuf {
    PathBuf::from("/var/lib/braid/media")
}
fn default_status_interval() -> u64 {
    10
}
fn default_nmos_port() -> u16 {
    8080
}

/// Why a config file was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config file {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax error.
    #[error("config file {path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message with line and column.
        message: String,
    },
    /// A key this agent does not know (typo or a key of a newer version).
    #[error("config file {path}: unknown key `{key}`{expected}")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// Dotted key, e.g. `control_plane.tls.pin`.
        key: String,
        /// `; expected one of …` or empty.
        expected: String,
    },
    /// A key with a wrong type, a missing required key, or a value out of range.
    #[error("config file {path}: key `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key, e.g. `control_plane.url`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Read and validate the config file at `path` (no environment overrides).
    /// Errors: unreadable file, TOML syntax, unknown key, wrong type, missing
    /// `control_plane.url`, invalid URL scheme, `pinned` without a valid pin,
    /// `status_interval_s` = 0.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        let config: Config =
            serde_path_to_error::deserialize(deserializer).map_err(|e| classify(path, e))?;
        config.validate(path)?;
        Ok(config)
    }

    /// Apply the environment: `BRAID_STATE_DIR` (when set and non-empty) replaces
    /// `agent.state_dir`. `lookup` is `std::env::var` in production.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        if let Some(dir) = lookup(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
            self.agent.state_dir = PathBuf::from(dir);
        }
    }

    /// The parsed pin for TLS mode `pinned`, `None` in the other modes.
    pub fn pin(&self) -> Option<Pin> {
        match self.control_plane.tls.mode {
            // validate() checked it.
            TlsMode::Pinned => parse_pin(&self.control_plane.tls.pin_sha256).ok(),
            _ => None,
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        let url = url::Url::parse(&self.control_plane.url)
            .map_err(|e| invalid("control_plane.url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "wss" | "ws") {
            return Err(invalid(
                "control_plane.url",
                format!("scheme must be wss:// (got {}://)", url.scheme()),
            ));
        }
        if url.host_str().is_none() {
            return Err(invalid("control_plane.url", "no host".into()));
        }
        if self.control_plane.tls.mode == TlsMode::Pinned {
            parse_pin(&self.control_plane.tls.pin_sha256)
                .map_err(|e| invalid("control_plane.tls.pin_sha256", e.to_string()))?;
        }
        if self.streams.source_lost_timeout_s == Some(0) {
            return Err(invalid(
                "streams.source_lost_timeout_s",
                "must be at least 1 (leave it out for never)".into(),
            ));
        }
        if self.agent.status_interval_s == 0 {
            return Err(invalid(
                "agent.status_interval_s",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Turn a deserialisation error into a [`ConfigError`] naming the dotted key.
fn classify(path: &Path, err: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
    let at = err.path().to_string();
    let inner = err.into_inner();
    let message = inner.message().to_owned();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, tail)) = rest.split_once('`') {
            let key = if at.is_empty() || at == "." {
                name.to_owned()
            } else {
                // serde_path_to_error points at the unknown key itself.
                at.clone()
            };
            let key = if key.ends_with(name) {
                key
            } else {
                format!("{key}.{name}")
            };
            let expected = tail.trim_start_matches(',').trim();
            return ConfigError::UnknownKey {
                path: path.to_owned(),
                key,
                expected: if expected.is_empty() {
                    String::new()
                } else {
                    format!("; {expected}")
                },
            };
        }
    }
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        let key = if at.is_empty() || at == "." {
            name.to_owned()
        } else {
            format!("{at}.{name}")
        };
        return ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message: "required key is missing".into(),
        };
    }
    if at.is_empty() || at == "." {
        // A syntax error: keep toml's rendering with line and column.
        let mut rendered = inner.to_string();
        if rendered.trim().is_empty() {
            rendered = message;
        }
        return ConfigError::Syntax {
            path: path.to_owned(),
            message: rendered.trim_end().to_owned(),
        };
    }
    ConfigError::Invalid {
        path: path.to_owned(),
        key: at,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "AB:cd:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/braid/agent.conf"))
    }

    #[test]
    fn full_file_parses() {
        let c = parse(&format!(
            r#"
[control_plane]
url = "wss://platform.example.com/agent/ws"
enrollment_token = "enr_abc123"
[control_plane.tls]
mode = "pinned"
pin_sha256 = "{PIN}"
[agent]
state_dir = "/tmp/s"
media_dir = "/tmp/m"
status_interval_s = 5
[nmos]
enabled = true
port = 9090
"#
        ))
        .unwrap();
        assert_eq!(c.control_plane.tls.mode, TlsMode::Pinned);
        assert_eq!(
            c.control_plane.enrollment_token.as_deref(),
            Some("enr_abc123")
        );
        assert_eq!(c.agent.status_interval_s, 5);
        assert_eq!(c.nmos.port, 9090);
        assert_eq!(c.pin().unwrap()[0], 0xab);
    }

    #[test]
    fn defaults() {
        let c = parse("[control_plane]\nurl = \"wss://h/agent/ws\"\n").unwrap();
        assert_eq!(c.control_plane.tls.mode, TlsMode::Standard);
        assert_eq!(c.agent.state_dir, PathBuf::from("/var/lib/braid"));
        assert_eq!(c.agent.status_interval_s, 10);
        assert!(!c.nmos.enabled);
        assert!(c.pin().is_none());
    }

    #[test]
    fn unknown_key_names_file_and_dotted_key() {
        let err = parse("[control_plane]\nurl = \"wss://h/\"\n[control_plane.tls]\nmode = \"standard\"\npin = \"x\"\n")
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "{text}");
        assert!(text.contains("/etc/braid/agent.conf"), "{text}");
        assert!(text.contains("`control_plane.tls.pin`"), "{text}");

        let err = parse("colour = 1\n[control_plane]\nurl = \"wss://h/\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown key `colour`"), "{err}");

        let err = parse("[control_plane]\nurl = \"wss://h/\"\n[agent]\nstatus_intervall_s = 3\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("`agent.status_intervall_s`"),
            "{err}"
        );
    }

    #[test]
    fn missing_url_and_wrong_types() {
        let err = parse("[control_plane]\nenrollment_token = \"e\"\n").unwrap_err();
        assert!(err.to_string().contains("`control_plane.url`"), "{err}");
        let err =
            parse("[control_plane]\nurl = \"wss://h/\"\n[agent]\nstatus_interval_s = \"10\"\n")
                .unwrap_err();
        assert!(
            err.to_string().contains("`agent.status_interval_s`"),
            "{err}"
        );
        let err = parse(
            "[control_plane]\nurl = \"wss://h/\"\n[control_plane.tls]\nmode = \"paranoid\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("`control_plane.tls.mode`"),
            "{err}"
        );
    }

    #[test]
    fn syntax_error_names_file() {
        let err = parse("[control_plane\nurl = 1").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("config file /etc/braid/agent.conf:"),
            "{err}"
        );
    }

    #[test]
    fn semantic_checks() {
        let err = parse("[control_plane]\nurl = \"https://h/\"\n").unwrap_err();
        assert!(err.to_string().contains("wss://"), "{err}");
        let err =
            parse("[control_plane]\nurl = \"wss://h/\"\n[control_plane.tls]\nmode = \"pinned\"\n")
                .unwrap_err();
        assert!(err.to_string().contains("pin_sha256"), "{err}");
        let err = parse("[control_plane]\nurl = \"wss://h/\"\n[agent]\nstatus_interval_s = 0\n")
            .unwrap_err();
        assert!(err.to_string().contains("status_interval_s"), "{err}");
        // ws:// parses; it is refused at connect time unless BRAID_ALLOW_INSECURE=1.
        assert!(parse("[control_plane]\nurl = \"ws://127.0.0.1:1/\"\n").is_ok());
    }

    #[test]
    fn streams_source_lost_timeout() {
        let c = parse("[control_plane]\nurl = \"wss://h/\"\n").unwrap();
        assert_eq!(c.streams.source_lost_timeout_s, None);
        let c =
            parse("[control_plane]\nurl = \"wss://h/\"\n[streams]\nsource_lost_timeout_s = 30\n")
                .unwrap();
        assert_eq!(c.streams.source_lost_timeout_s, Some(30));
        let err =
            parse("[control_plane]\nurl = \"wss://h/\"\n[streams]\nsource_lost_timeout_s = 0\n")
                .unwrap_err();
        assert!(
            err.to_string().contains("streams.source_lost_timeout_s"),
            "{err}"
        );
        let err = parse("[control_plane]\nurl = \"wss://h/\"\n[streams]\nslate = 1\n").unwrap_err();
        assert!(err.to_string().contains("`streams.slate`"), "{err}");
    }

    #[test]
    fn state_dir_env_override() {
        let mut c = parse("[control_plane]\nurl = \"wss://h/\"\n").unwrap();
        c.apply_env(|k| (k == STATE_DIR_ENV).then(|| "/tmp/state".to_owned()));
        assert_eq!(c.agent.state_dir, PathBuf::from("/tmp/state"));
        c.apply_env(|_| Some(String::new()));
        assert_eq!(c.agent.state_dir, PathBuf::from("/tmp/state"));
    }
}
