//! The agent's config file (ARCHITECTURE.md "The agent's config file"): TOML,
//! default `/etc/braid/agent.conf` (the package's conffile,
//! `packaging/agent.conf`, documents every key). `BRAID_STATE_DIR` overrides
//! `agent.state_dir`.
//!
//! Every refusal is a [`ConfigError`] that names the file, the line (when the
//! problem has one) and the fix, e.g.
//!
//! ```text
//! config file /etc/braid/agent.conf, line 7: unknown key `control_plane.tls.pin`
//! (expected one of `mode`, `pin_sha256`); fix: did you mean `pin_sha256`? …
//! ```
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
//! [update]
//! binary_path = "/var/lib/braid/bin/braid-agent"   # default: <state_dir>/bin/braid-agent
//! max_size_mb = 256
//! login_timeout_s = 120
//! [update.tls]                          # default: as [control_plane.tls]
//! mode = "standard"
//! ```
//!
//! The generic part ([`read_file`], [`parse_toml`], [`Source`]) is shared with
//! the receiver's config (`braid-agent receive`, [`crate::receive`]).
//!
//! Keys a control plane may change with `config.set` (PROTOCOL.md §5) are kept in
//! `<state_dir>/remote-config.toml` ([`REMOTE_FILE`], atomic, 0600) and applied
//! over the file at every start ([`Config::apply_remote`]); the operator's file is
//! never rewritten (it is a dpkg conffile, and `/etc` is read-only for the
//! hardened service).

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::credentials::{self, CredentialsError};
use crate::tls::{parse_pin, Pin};

/// Default config path of `braid-agent run` and `braid-agent check-config`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/braid/agent.conf";
/// Environment variable overriding `agent.state_dir`.
pub const STATE_DIR_ENV: &str = "BRAID_STATE_DIR";
/// Environment variable that, set to `1`, allows `ws://` URLs and TLS mode
/// `insecure` (PROTOCOL.md §1; development only).
pub const ALLOW_INSECURE_ENV: &str = "BRAID_ALLOW_INSECURE";
/// The system user the packaged services run as (packaging/README.md).
pub const SERVICE_USER: &str = "braid";

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
    /// Where this config was read from (for errors that point at a line); not
    /// a key of the file.
    #[serde(skip)]
    pub source: Source,
    /// `[update]`: `agent.update` (PROTOCOL.md §5).
    #[serde(default)]
    pub update: UpdateConfig,
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

/// `[update]`: how `agent.update` installs a new binary (PROTOCOL.md §5;
/// docs/protocol.md "agent.update").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// Where `agent.update` installs the new binary; its directory must be
    /// writable (the new binary is written beside it and renamed over it; the
    /// previous one is kept as `<binary_path>.prev`). Default
    /// `<state_dir>/bin/braid-agent` (the hardened unit can write only its state
    /// directory); `braid-agent run` from another path (the packaged
    /// `/usr/bin/braid-agent`) execs it at start ([`crate::update::launch`]).
    /// When it is the running executable itself, that file is replaced in place.
    #[serde(default)]
    pub binary_path: Option<PathBuf>,
    /// Largest download accepted, MiB (default 256).
    #[serde(default = "default_update_max_size_mb")]
    pub max_size_mb: u64,
    /// A new binary that has not logged in this long after its start is rolled
    /// back, s (default 120, PROTOCOL.md §5 "automatic rollback").
    #[serde(default = "default_login_timeout_s")]
    pub login_timeout_s: u64,
    /// TLS verification of the download server; absent: as `[control_plane.tls]`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            binary_path: None,
            max_size_mb: default_update_max_size_mb(),
            login_timeout_s: default_login_timeout_s(),
            tls: None,
        }
    }
}

fn default_update_max_size_mb() -> u64 {
    256
}
fn default_login_timeout_s() -> u64 {
    120
}

/// File in the state directory holding the keys set by `config.set`.
pub const REMOTE_FILE: &str = "remote-config.toml";

/// Keys a control plane may change live with `config.set`, as persisted in
/// [`REMOTE_FILE`] (TOML, same sections and names as the config file). Absent keys
/// are not overridden.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteOverrides {
    /// `[agent]` keys.
    #[serde(default)]
    pub agent: RemoteAgent,
    /// `[update]` keys.
    #[serde(default)]
    pub update: RemoteUpdate,
}

/// `[agent]` keys of [`RemoteOverrides`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteAgent {
    /// `agent.status_interval_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_interval_s: Option<u64>,
}

/// `[update]` keys of [`RemoteOverrides`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteUpdate {
    /// `update.max_size_mb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_mb: Option<u64>,
    /// `update.login_timeout_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_timeout_s: Option<u64>,
}

impl RemoteOverrides {
    /// Read `<state_dir>/remote-config.toml`; `Ok(default)` when absent. Errors
    /// name the file.
    pub fn load(state_dir: &Path) -> Result<Self, ConfigError> {
        let path = state_dir.join(REMOTE_FILE);
        if matches!(std::fs::symlink_metadata(&path), Err(e) if e.kind() == ErrorKind::NotFound) {
            return Ok(Self::default());
        }
        let text = read_file(
            &path,
            "restore the file or delete it (drops the control plane's settings)",
        )?;
        parse_toml(&text, &path, &|_| {
            Some(format!(
                "the control plane wrote this file with config.set; delete {} to drop its settings",
                path.display()
            ))
        })
    }

    /// Write `<state_dir>/remote-config.toml` atomically (temp file 0600, fsync,
    /// rename, directory fsync). Errors: I/O, naming the file.
    pub fn store(&self, state_dir: &Path) -> std::io::Result<()> {
        let text = format!(
            "# Written by braid-agent: keys set by the control plane (config.set).\n# They override {DEFAULT_CONFIG_PATH} at every start. Delete this file to drop them.\n{}",
            toml::to_string(self).map_err(std::io::Error::other)?
        );
        crate::credentials::write_atomic(&state_dir.join(REMOTE_FILE), text.as_bytes(), 0o600)
    }

    /// Put these overrides into `config` (values checked like the file's).
    pub fn apply(&self, config: &mut Config) {
        if let Some(v) = self.agent.status_interval_s.filter(|v| *v >= 1) {
            config.agent.status_interval_s = v;
        }
        if let Some(v) = self.update.max_size_mb.filter(|v| *v >= 1) {
            config.update.max_size_mb = v;
        }
        if let Some(v) = self.update.login_timeout_s.filter(|v| *v >= 1) {
            config.update.login_timeout_s = v;
        }
    }
}

/// `[control_plane]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// `wss://host[:port]/path` of the control plane's agent endpoint.
    pub url: String,
    /// One-time enrollment token; used only while no credentials.json exists.
    /// An empty string counts as absent.
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

/// What to do about a wrong or missing key of the agent config (the `fix:` part
/// of a [`ConfigError`]); `None` for keys without specific advice.
pub fn agent_fix(key: &str) -> Option<String> {
    let fix = match key {
        "control_plane" => {
            "add a `[control_plane]` table with `url = \"wss://HOST/agent/ws\"` and \
             `enrollment_token = \"enr_…\"` (both from the control plane)"
        }
        "control_plane.url" => {
            "set `url = \"wss://HOST[:PORT]/PATH\"` under [control_plane]: the control \
             plane's agent endpoint, e.g. wss://platform.example.com/agent/ws"
        }
        "control_plane.enrollment_token" => {
            "set `enrollment_token = \"enr_…\"` under [control_plane] (a quoted string \
             issued by the control plane for this sender)"
        }
        "control_plane.tls" => "make [control_plane.tls] a table with `mode` and `pin_sha256`",
        "control_plane.tls.mode" => {
            "set `mode` to \"standard\" (CA-signed certificate), \"pinned\" (with \
             pin_sha256) or \"insecure\" (development only)"
        }
        "control_plane.tls.pin_sha256" => {
            "set `pin_sha256` to the SHA-256 of the control plane's certificate, 64 hex \
             digits with optional colons (`openssl x509 -noout -fingerprint -sha256 -in \
             cert.pem`)"
        }
        "agent" => "make [agent] a table with state_dir, media_dir, status_interval_s",
        "agent.state_dir" | "agent.media_dir" => {
            "give a quoted absolute path, e.g. \"/var/lib/braid\""
        }
        "agent.status_interval_s" => {
            "give a whole number of seconds, at least 1, e.g. `status_interval_s = 10`"
        }
        "nmos" => "make [nmos] a table with `enabled` and `port`",
        "nmos.enabled" => "write `enabled = true` or `enabled = false` (no quotes)",
        "nmos.port" => "give a TCP port number 1-65535, e.g. `port = 8080`",
        "streams" => "make [streams] a table with `source_lost_timeout_s`",
        "streams.source_lost_timeout_s" => {
            "give a whole number of seconds, at least 1, or leave the key out (never end \
             a stream for a lost source)"
        }
        _ => return None,
    };
    Some(fix.to_owned())
}

/// A place in a config file: the file and, when the problem has one, the
/// 1-based line. Displays as `config file PATH, line N` or `config file PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: Option<usize>,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        Ok(())
    }
}

/// Why a config file was refused. Every variant names the file (and the line
/// when there is one) and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read (missing, permissions, a directory).
    #[error("{at}: cannot read: {error}; fix: {fix}")]
    Read {
        /// The file.
        at: At,
        /// The I/O error (part of the message, not a separate source).
        error: std::io::Error,
        /// What to do.
        fix: String,
    },
    /// The file is not UTF-8 text; `at` has the line of the first bad byte.
    #[error("{at}: not UTF-8 text; fix: save the file as UTF-8")]
    NotUtf8 {
        /// The file and line.
        at: At,
    },
    /// TOML syntax error.
    #[error("{at}: TOML syntax: {message}; fix: {fix}")]
    Syntax {
        /// The file and line.
        at: At,
        /// The parser's message.
        message: String,
        /// What to do.
        fix: String,
    },
    /// A key this agent does not know (typo or a key of a newer version).
    #[error("{at}: unknown key `{key}`{expected}; fix: {fix}")]
    UnknownKey {
        /// The file and the key's line.
        at: At,
        /// Dotted key, e.g. `control_plane.tls.pin`.
        key: String,
        /// ` (expected one of …)` or empty.
        expected: String,
        /// What to do (with the closest known key when there is one).
        fix: String,
    },
    /// A key with a wrong type, a missing required key, or a value out of range.
    #[error("{at}: key `{key}`: {message}; fix: {fix}")]
    Invalid {
        /// The file and the key's line (the table's header for a missing key).
        at: At,
        /// Dotted key, e.g. `control_plane.url`.
        key: String,
        /// What is wrong.
        message: String,
        /// What to do.
        fix: String,
    },
    /// Neither credentials nor an enrollment token: the agent cannot log in
    /// (PROTOCOL.md §3).
    #[error(
        "{at}: no `control_plane.enrollment_token` and no credentials at {}: the agent cannot log in; fix: {fix}",
        credentials.display()
    )]
    NoIdentity {
        /// The file and the line of `[control_plane]` (or of the empty token).
        at: At,
        /// The credentials file looked for.
        credentials: PathBuf,
        /// What to do.
        fix: String,
    },
    /// `credentials.json` exists but cannot be used.
    #[error("{at}: credentials: {error}; fix: make it readable by the agent's user, or delete it and set an enrollment token to enroll again")]
    Credentials {
        /// The config file whose `agent.state_dir` holds it.
        at: At,
        /// The credentials error (names the file; part of the message).
        error: CredentialsError,
    },
}

impl ConfigError {
    /// The file and line the error is about.
    pub fn at(&self) -> &At {
        match self {
            Self::Read { at, .. }
            | Self::NotUtf8 { at }
            | Self::Syntax { at, .. }
            | Self::UnknownKey { at, .. }
            | Self::Invalid { at, .. }
            | Self::NoIdentity { at, .. }
            | Self::Credentials { at, .. } => at,
        }
    }
}

/// The text a config was parsed from, to point errors at lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    path: PathBuf,
    text: Arc<str>,
}

impl Source {
    /// `text` read from `path`.
    pub fn new(path: &Path, text: &str) -> Self {
        Self {
            path: path.to_owned(),
            text: text.into(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based line of byte `offset`.
    pub fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// 1-based line of a dotted key (`control_plane.tls.mode`, `a.b[1].c`): the
    /// key's own line (for a table, its `[header]`). `None` when the key is not
    /// in the file or the text is not valid TOML.
    pub fn line_of(&self, dotted: &str) -> Option<usize> {
        let doc = toml_edit::ImDocument::parse(&*self.text).ok()?;
        let mut table: &dyn toml_edit::TableLike = doc.as_table();
        let segments = split_key_path(dotted);
        let mut line = None;
        for (i, (name, index)) in segments.iter().enumerate() {
            let (key, item) = table.get_key_value(name)?;
            let span = key.span().or_else(|| item.span());
            line = span.map(|s| self.line_at(s.start));
            let last = i + 1 == segments.len();
            let item_table: Option<&dyn toml_edit::TableLike> = match index {
                Some(n) => {
                    if let Some(aot) = item.as_array_of_tables() {
                        let t = aot.get(*n)?;
                        if let Some(s) = t.span() {
                            line = Some(self.line_at(s.start));
                        }
                        Some(t)
                    } else {
                        let v = item.as_array()?.get(*n)?;
                        if let Some(s) = v.span() {
                            line = Some(self.line_at(s.start));
                        }
                        v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike)
                    }
                }
                None => item.as_table_like(),
            };
            if last {
                break;
            }
            table = item_table?;
        }
        line
    }

    /// The line of `dotted`, else of its nearest enclosing key present in the
    /// file (for a missing key: the header of its table).
    pub fn nearest_line(&self, dotted: &str) -> Option<usize> {
        let mut key = dotted;
        loop {
            if key.is_empty() {
                return None;
            }
            if let Some(line) = self.line_of(key) {
                return Some(line);
            }
            key = match key.rfind(['.', '[']) {
                Some(i) => &key[..i],
                None => "",
            };
        }
    }

    /// `config file PATH, line N` for `dotted` (nearest line, see
    /// [`Source::nearest_line`]).
    pub fn at_key(&self, dotted: &str) -> At {
        At {
            path: self.path.clone(),
            line: self.nearest_line(dotted),
        }
    }
}

/// `a.b[2].c` → `[("a", None), ("b", Some(2)), ("c", None)]`.
fn split_key_path(dotted: &str) -> Vec<(String, Option<usize>)> {
    dotted
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|seg| match seg.split_once('[') {
            Some((name, rest)) => (
                name.to_owned(),
                rest.trim_end_matches(']').parse::<usize>().ok(),
            ),
            None => (seg.to_owned(), None),
        })
        .collect()
}

/// Read a config file as UTF-8. Errors name the file and the fix: missing
/// (`missing_fix`), not readable by this user, a directory, not UTF-8 (with the
/// line of the first bad byte).
pub fn read_file(path: &Path, missing_fix: &str) -> Result<String, ConfigError> {
    let at = At {
        path: path.to_owned(),
        line: None,
    };
    let bytes = std::fs::read(path).map_err(|error| {
        let fix = match error.kind() {
            ErrorKind::NotFound => missing_fix.to_owned(),
            ErrorKind::PermissionDenied => format!(
                "make it readable by the user the agent runs as (the packaged services run \
                 as `{SERVICE_USER}`): `chown root:{SERVICE_USER} {p} && chmod 0640 {p}`",
                p = path.display()
            ),
            ErrorKind::IsADirectory => "give the path of the TOML file, not of a directory".into(),
            _ => "check the file system and the path".into(),
        };
        ConfigError::Read {
            at: at.clone(),
            error,
            fix,
        }
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..good].iter().filter(|b| **b == b'\n').count() + 1;
        ConfigError::NotUtf8 {
            at: At {
                path: path.to_owned(),
                line: Some(line),
            },
        }
    })
}

/// Parse TOML `text` (read from `path`) into `T`, which should use
/// `deny_unknown_fields`. Errors point at the line of the offending key and
/// carry a fix: `fix_for(dotted_key)` when it has advice, else a generic one;
/// unknown keys get the closest known key as a suggestion.
pub fn parse_toml<T: DeserializeOwned>(
    text: &str,
    path: &Path,
    fix_for: &dyn Fn(&str) -> Option<String>,
) -> Result<T, ConfigError> {
    let source = Source::new(path, text);
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| classify(&source, e, fix_for))
}

/// Turn a deserialisation error into a [`ConfigError`] naming the dotted key,
/// its line and the fix.
fn classify(
    source: &Source,
    err: serde_path_to_error::Error<toml::de::Error>,
    fix_for: &dyn Fn(&str) -> Option<String>,
) -> ConfigError {
    let at_path = err.path().to_string();
    let at_path = if at_path == "." {
        String::new()
    } else {
        at_path
    };
    let inner = err.into_inner();
    let message = inner.message().to_owned();
    let span_line = inner.span().map(|s| source.line_at(s.start));
    let join = |parent: &str, name: &str| {
        if parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}.{name}")
        }
    };

    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, tail)) = rest.split_once('`') {
            // serde_path_to_error points at the unknown key itself.
            let key = if at_path.ends_with(name) {
                at_path.clone()
            } else {
                join(&at_path, name)
            };
            let known = backticked(tail);
            let expected = if known.is_empty() {
                String::new()
            } else {
                format!(
                    " (expected {}{})",
                    if known.len() > 1 { "one of " } else { "" },
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let parent = key.strip_suffix(name).unwrap_or("").trim_end_matches('.');
            let fix = match closest(name, &known) {
                Some(best) => format!(
                    "did you mean `{}`? correct the key name or remove the line",
                    join(parent, best)
                ),
                None if known.is_empty() => "remove the line".to_owned(),
                None => format!(
                    "remove the line, or move it to the table it belongs to ({} knows only the keys above)",
                    if parent.is_empty() {
                        "the top level".to_owned()
                    } else {
                        format!("[{parent}]")
                    }
                ),
            };
            return ConfigError::UnknownKey {
                at: At {
                    path: source.path().to_owned(),
                    line: source.line_of(&key).or(span_line),
                },
                key,
                expected,
                fix,
            };
        }
    }
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        let key = join(&at_path, name);
        let line = if at_path.is_empty() {
            None
        } else {
            source.nearest_line(&at_path)
        };
        let fix = fix_for(&key).unwrap_or_else(|| format!("add `{name} = …`"));
        return ConfigError::Invalid {
            at: At {
                path: source.path().to_owned(),
                line,
            },
            key,
            message: "required key is missing".into(),
            fix,
        };
    }
    if at_path.is_empty() {
        return ConfigError::Syntax {
            at: At {
                path: source.path().to_owned(),
                line: span_line,
            },
            message: message.trim_end().to_owned(),
            fix: "correct the TOML at that line: `key = value` pairs, strings in double \
                  quotes, tables as `[name]`, `#` starts a comment"
                .into(),
        };
    }
    let fix = fix_for(&at_path).unwrap_or_else(|| "correct the value".into());
    ConfigError::Invalid {
        at: At {
            path: source.path().to_owned(),
            line: source.line_of(&at_path).or(span_line),
        },
        key: at_path,
        message,
        fix,
    }
}

/// The backticked names of serde's `expected one of `a`, `b`` tail.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The known key closest to a misspelt `name`, if any is close enough to be a
/// likely typo.
fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (k, strsim::jaro_winkler(name, k)))
        .filter(|(k, score)| {
            *score >= 0.85
                || strsim::levenshtein(name, k) <= 2
                || (name.len() >= 3 && (k.starts_with(name) || name.starts_with(k.as_str())))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k.as_str())
}

/// How the agent will log in (PROTOCOL.md §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// `credentials.json` exists: sender id + device key.
    Credentials {
        /// The sender id stored there.
        sender_id: String,
    },
    /// No credentials yet: first login with `control_plane.enrollment_token`.
    Enrollment,
}

impl Config {
    /// Read and validate the config file at `path` (no environment overrides).
    /// Errors ([`ConfigError`], each with file, line and fix): unreadable file,
    /// not UTF-8, TOML syntax, unknown key, wrong type, missing
    /// `control_plane.url`, invalid URL scheme, `pinned` without a valid pin,
    /// `status_interval_s` = 0.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_file(
            path,
            &format!(
                "create it, or pass --config FILE; the braid package installs a commented \
                 template at {DEFAULT_CONFIG_PATH} (`apt-get install --reinstall -o \
                 Dpkg::Options::=--force-confmiss braid` puts it back)"
            ),
        )?;
        Self::parse(&text, path)
    }

    /// Parse and validate config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = parse_toml(text, path, &agent_fix)?;
        config.source = Source::new(path, text);
        if config
            .control_plane
            .enrollment_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            config.control_plane.enrollment_token = None;
        }
        config.validate()?;
        Ok(config)
    }

    /// Apply the environment: `BRAID_STATE_DIR` (when set and non-empty) replaces
    /// `agent.state_dir`. `lookup` is `std::env::var` in production.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        if let Some(dir) = lookup(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
            self.agent.state_dir = PathBuf::from(dir);
        }
    }

    /// Apply `<state_dir>/remote-config.toml` (keys set by `config.set`) over this
    /// config; call after [`Config::apply_env`]. Errors: the file exists but is not
    /// valid (named).
    pub fn apply_remote(&mut self) -> Result<(), ConfigError> {
        RemoteOverrides::load(&self.agent.state_dir)?.apply(self);
        Ok(())
    }

    /// The TLS settings for `agent.update` downloads: `[update.tls]`, else
    /// `[control_plane.tls]`.
    pub fn update_tls(&self) -> &TlsConfig {
        self.update.tls.as_ref().unwrap_or(&self.control_plane.tls)
    }

    /// The parsed pin for TLS mode `pinned`, `None` in the other modes.
    pub fn pin(&self) -> Option<Pin> {
        match self.control_plane.tls.mode {
            // validate() checked it.
            TlsMode::Pinned => parse_pin(&self.control_plane.tls.pin_sha256).ok(),
            _ => None,
        }
    }

    /// Check that the agent can log in (PROTOCOL.md §3): `credentials.json` in
    /// `agent.state_dir` (after [`Config::apply_env`]), else an enrollment
    /// token. Errors: [`ConfigError::NoIdentity`] (file, line of
    /// `[control_plane]`, fix) or [`ConfigError::Credentials`] when the
    /// credentials file exists but cannot be read.
    pub fn check_identity(&self) -> Result<Login, ConfigError> {
        let state_dir = &self.agent.state_dir;
        match credentials::load(state_dir) {
            Ok(Some(c)) => Ok(Login::Credentials {
                sender_id: c.sender_id,
            }),
            Ok(None) if self.control_plane.enrollment_token.is_some() => Ok(Login::Enrollment),
            Ok(None) => Err(ConfigError::NoIdentity {
                at: self.source.at_key("control_plane.enrollment_token"),
                credentials: credentials::path(state_dir),
                fix: "add `enrollment_token = \"enr_…\"` (issued by the control plane for \
                      this sender) under [control_plane]; it is used once, then the agent \
                      logs in with the credentials it was given"
                    .into(),
            }),
            Err(error) => Err(ConfigError::Credentials {
                at: self.source.at_key("agent.state_dir"),
                error,
            }),
        }
    }

    /// `config file PATH, line N` of a dotted key of this config.
    pub fn at_key(&self, dotted: &str) -> At {
        self.source.at_key(dotted)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            at: self.source.at_key(key),
            key: key.to_owned(),
            message,
            fix: agent_fix(key).unwrap_or_else(|| "correct the value".into()),
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
        if let Some(tls) = &self.update.tls {
            if tls.mode == TlsMode::Pinned {
                parse_pin(&tls.pin_sha256)
                    .map_err(|e| invalid("update.tls.pin_sha256", e.to_string()))?;
            }
        }
        if self.update.max_size_mb == 0 {
            return Err(invalid("update.max_size_mb", "must be at least 1".into()));
        }
        if self.update.login_timeout_s == 0 {
            return Err(invalid(
                "update.login_timeout_s",
                "must be at least 1".into(),
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

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "AB:cd:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/braid/agent.conf"))
    }

    fn line(err: &ConfigError) -> Option<usize> {
        err.at().line
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
        assert_eq!(c.source.line_of("control_plane.tls.mode"), Some(6));
        assert_eq!(c.source.line_of("nmos"), Some(12));
        assert_eq!(c.source.line_of("nmos.missing"), None);
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
    fn unknown_key_names_file_line_key_and_the_likely_fix() {
        let err = parse("[control_plane]\nurl = \"wss://h/\"\n[control_plane.tls]\nmode = \"standard\"\npin = \"x\"\n")
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ConfigError::UnknownKey { .. }), "{text}");
        assert!(
            text.starts_with(
                "config file /etc/braid/agent.conf, line 5: unknown key `control_plane.tls.pin`"
            ),
            "{text}"
        );
        assert!(
            text.contains("expected one of `mode`, `pin_sha256`"),
            "{text}"
        );
        assert!(
            text.contains("fix: did you mean `control_plane.tls.pin_sha256`?"),
            "{text}"
        );

        let err = parse("colour = 1\n[control_plane]\nurl = \"wss://h/\"\n").unwrap_err();
        assert!(
            err.to_string().contains(", line 1: unknown key `colour`"),
            "{err}"
        );
        assert!(err.to_string().contains("fix: remove the line"), "{err}");

        let err = parse(
            "[control_plane]\nurl = \"wss://h/\"\n\n# comment\n[agent]\nstatus_intervall_s = 3\n",
        )
        .unwrap_err();
        assert_eq!(line(&err), Some(6), "{err}");
        assert!(
            err.to_string().contains("`agent.status_intervall_s`"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("did you mean `agent.status_interval_s`?"),
            "{err}"
        );
    }

    #[test]
    fn missing_url_and_wrong_types_point_at_lines() {
        let err = parse("# Braid\n\n[control_plane]\nenrollment_token = \"e\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("config file /etc/braid/agent.conf, line 3: key `control_plane.url`: required key is missing"),
            "{text}"
        );
        assert!(text.contains("fix: set `url = \"wss://"), "{text}");

        let err = parse("[agent]\nstate_dir = \"/x\"\n").unwrap_err();
        assert!(err.to_string().contains("`control_plane`"), "{err}");
        assert!(
            err.to_string().contains("add a `[control_plane]` table"),
            "{err}"
        );

        let err = parse(
            "[control_plane]\nurl = \"wss://h/\"\n[agent]\nstate_dir = \"/x\"\nstatus_interval_s = \"10\"\n",
        )
        .unwrap_err();
        assert_eq!(line(&err), Some(5), "{err}");
        assert!(
            err.to_string().contains("`agent.status_interval_s`"),
            "{err}"
        );
        assert!(
            err.to_string().contains("fix: give a whole number"),
            "{err}"
        );

        let err = parse(
            "[control_plane]\nurl = \"wss://h/\"\n[control_plane.tls]\nmode = \"paranoid\"\n",
        )
        .unwrap_err();
        assert_eq!(line(&err), Some(4), "{err}");
        assert!(
            err.to_string().contains("`control_plane.tls.mode`"),
            "{err}"
        );
        assert!(err.to_string().contains("\"pinned\""), "{err}");
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let err = parse("# ok\n[control_plane\nurl = 1").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
        assert_eq!(line(&err), Some(2), "{err}");
        assert!(
            err.to_string()
                .starts_with("config file /etc/braid/agent.conf, line 2: TOML syntax:"),
            "{err}"
        );
        assert!(err.to_string().contains("fix: correct the TOML"), "{err}");
    }

    #[test]
    fn semantic_checks_point_at_the_key() {
        let err = parse("[control_plane]\nurl = \"https://h/\"\n").unwrap_err();
        assert!(err.to_string().contains("wss://"), "{err}");
        assert_eq!(line(&err), Some(2), "{err}");
        let err =
            parse("[control_plane]\nurl = \"wss://h/\"\n[control_plane.tls]\nmode = \"pinned\"\n")
                .unwrap_err();
        assert!(err.to_string().contains("pin_sha256"), "{err}");
        assert_eq!(line(&err), Some(3), "the table header: {err}");
        assert!(err.to_string().contains("openssl x509"), "{err}");
        let err = parse("[control_plane]\nurl = \"wss://h/\"\n[agent]\nstatus_interval_s = 0\n")
            .unwrap_err();
        assert!(err.to_string().contains("status_interval_s"), "{err}");
        assert_eq!(line(&err), Some(4), "{err}");
        // ws:// parses; it is refused at connect time unless BRAID_ALLOW_INSECURE=1.
        assert!(parse("[control_plane]\nurl = \"ws://127.0.0.1:1/\"\n").is_ok());
    }

    #[test]
    fn unreadable_files_name_the_file_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.conf");
        let err = Config::load(&missing).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ConfigError::Read { .. }), "{text}");
        assert!(
            text.starts_with(&format!("config file {}: cannot read:", missing.display())),
            "{text}"
        );
        assert!(text.contains("fix: create it, or pass --config"), "{text}");

        let err = Config::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not of a directory"), "{err}");

        let bad = dir.path().join("latin1.conf");
        std::fs::write(&bad, b"[control_plane]\n# caf\xe9\nurl = \"wss://h/\"\n").unwrap();
        let err = Config::load(&bad).unwrap_err();
        assert!(matches!(err, ConfigError::NotUtf8 { .. }), "{err}");
        assert_eq!(line(&err), Some(2), "{err}");
        assert!(
            err.to_string().contains("fix: save the file as UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn identity_needs_credentials_or_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let text = |token: &str| {
            format!(
                "# Braid\n[control_plane]\nurl = \"wss://h/\"\n{token}\n[agent]\nstate_dir = \"{}\"\n",
                dir.path().display()
            )
        };
        let c = parse(&text("")).unwrap();
        let err = c.check_identity().unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::NoIdentity { .. }), "{msg}");
        assert!(
            msg.starts_with(
                "config file /etc/braid/agent.conf, line 2: no `control_plane.enrollment_token`"
            ),
            "{msg}"
        );
        assert!(msg.contains("credentials.json"), "{msg}");
        assert!(msg.contains("fix: add `enrollment_token = "), "{msg}");

        // An empty token is no token; the error points at its line.
        let c = parse(&text("enrollment_token = \"  \"")).unwrap();
        assert_eq!(c.control_plane.enrollment_token, None);
        assert_eq!(line(&c.check_identity().unwrap_err()), Some(4));

        let c = parse(&text("enrollment_token = \"enr_1\"")).unwrap();
        assert_eq!(c.check_identity().unwrap(), Login::Enrollment);

        crate::credentials::store(
            dir.path(),
            &crate::credentials::Credentials {
                sender_id: "snd_9".into(),
                device_key: "dk".into(),
            },
        )
        .unwrap();
        let c = parse(&text("")).unwrap();
        assert_eq!(
            c.check_identity().unwrap(),
            Login::Credentials {
                sender_id: "snd_9".into()
            }
        );

        std::fs::write(crate::credentials::path(dir.path()), b"{").unwrap();
        let err = c.check_identity().unwrap_err();
        assert!(matches!(err, ConfigError::Credentials { .. }), "{err}");
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
    fn update_section() {
        let c = parse("[control_plane]\nurl = \"wss://h/\"\n").unwrap();
        assert_eq!(c.update, UpdateConfig::default());
        assert_eq!(c.update_tls(), &c.control_plane.tls);
        let c = parse(&format!(
            "[control_plane]\nurl = \"wss://h/\"\n[update]\nbinary_path = \"/opt/b\"\nmax_size_mb = 64\nlogin_timeout_s = 30\n[update.tls]\nmode = \"pinned\"\npin_sha256 = \"{PIN}\"\n"
        ))
        .unwrap();
        assert_eq!(c.update.binary_path, Some(PathBuf::from("/opt/b")));
        assert_eq!(c.update_tls().mode, TlsMode::Pinned);
        let err = parse("[control_plane]\nurl = \"wss://h/\"\n[update]\nlogin_timeout_s = 0\n")
            .unwrap_err();
        assert!(err.to_string().contains("update.login_timeout_s"), "{err}");
    }

    #[test]
    fn remote_overrides_round_trip_and_apply() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = parse("[control_plane]\nurl = \"wss://h/\"\n").unwrap();
        c.agent.state_dir = dir.path().to_owned();
        c.apply_remote().unwrap();
        assert_eq!(c.agent.status_interval_s, 10, "no file: nothing changes");
        let o = RemoteOverrides {
            agent: RemoteAgent {
                status_interval_s: Some(3),
            },
            update: RemoteUpdate {
                max_size_mb: None,
                login_timeout_s: Some(60),
            },
        };
        o.store(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(REMOTE_FILE))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert_eq!(RemoteOverrides::load(dir.path()).unwrap(), o);
        c.apply_remote().unwrap();
        assert_eq!(c.agent.status_interval_s, 3);
        assert_eq!(c.update.login_timeout_s, 60);
        assert_eq!(c.update.max_size_mb, 256);
        std::fs::write(
            dir.path().join(REMOTE_FILE),
            "[agent]\nstate_dir = \"/x\"\n",
        )
        .unwrap();
        let err = c.apply_remote().unwrap_err().to_string();
        assert!(
            err.contains(REMOTE_FILE) && err.contains("agent.state_dir"),
            "{err}"
        );
    }

    #[test]
    fn state_dir_env_override() {
        let mut c = parse("[control_plane]\nurl = \"wss://h/\"\n").unwrap();
        c.apply_env(|k| (k == STATE_DIR_ENV).then(|| "/tmp/state".to_owned()));
        assert_eq!(c.agent.state_dir, PathBuf::from("/tmp/state"));
        c.apply_env(|_| Some(String::new()));
        assert_eq!(c.agent.state_dir, PathBuf::from("/tmp/state"));
    }

    #[test]
    fn key_paths_with_arrays_of_tables() {
        let src = Source::new(
            Path::new("x.toml"),
            "[a]\nb = 1\n[[links]]\nuri = \"x\"\n[[links]]\nid = 2\nuri = \"y\"\n",
        );
        assert_eq!(src.line_of("a.b"), Some(2));
        assert_eq!(src.line_of("links[1].uri"), Some(7));
        assert_eq!(src.line_of("links[1]"), Some(5));
        assert_eq!(src.nearest_line("links[1].nope"), Some(5));
        assert_eq!(src.nearest_line("zzz.y"), None);
    }

    /// The package's conffile (packaging/agent.conf) must document every key
    /// this agent knows, commented out as `#key = value`, and nothing else:
    /// uncommenting every option gives a valid config. The known keys are
    /// discovered from the parser itself (serde's "expected one of" list), so a
    /// new key without a line in the conffile fails here.
    #[test]
    fn packaged_conffile_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/agent.conf");
        let shipped = std::fs::read_to_string(&path).unwrap();
        // As shipped: nothing but the URL is missing (the technician fills in the
        // URL and the enrollment token).
        let err = Config::parse(&shipped, &path).unwrap_err();
        assert!(
            err.to_string()
                .contains("`control_plane.url`: required key is missing"),
            "{err}"
        );
        // Every option uncommented.
        let uncommented: String = shipped
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest)
                    if rest.starts_with(|c: char| c.is_ascii_lowercase())
                        && rest.contains(" = ") =>
                {
                    rest.to_owned()
                }
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let full = Config::parse(&uncommented, &path).unwrap_or_else(|e| panic!("{e}"));
        assert!(full.control_plane.enrollment_token.is_some());

        // Every key the parser knows has its line.
        let mut missing = Vec::new();
        let mut tables = vec![String::new()];
        while let Some(table) = tables.pop() {
            // A bogus key at the top of the table: the parser lists the known ones.
            let probe = if table.is_empty() {
                format!("zz_probe = 1\n{uncommented}")
            } else {
                let header = format!("[{table}]\n");
                assert!(uncommented.contains(&header), "no [{table}] header");
                uncommented.replacen(&header, &format!("{header}zz_probe = 1\n"), 1)
            };
            let known = match Config::parse(&probe, &path) {
                Err(ConfigError::UnknownKey { expected, .. }) => backticked(&expected),
                other => panic!("probing [{table}]: {other:?}"),
            };
            for key in known {
                let dotted = if table.is_empty() {
                    key.clone()
                } else {
                    format!("{table}.{key}")
                };
                if uncommented.contains(&format!("[{dotted}]")) {
                    tables.push(dotted);
                } else if full.source.line_of(&dotted).is_none() {
                    missing.push(dotted);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "keys without a commented line in packaging/agent.conf: {missing:?}"
        );
    }
}
