//! `<state_dir>/updates/pending.json`: the record of an installed update until the
//! new binary has logged in (commit) or was rolled back.
//!
//! ```json
//! {"version":1,"state":"pending","binary_path":"/var/lib/braid/bin/braid-agent",
//!  "prev_path":"/var/lib/braid/bin/braid-agent.prev","new_sha256":"…","prev_sha256":"…",
//!  "from_version":"0.1.0","installed_at":"2026-02-14T10:30:00.123Z",
//!  "agent_starts":0,"guard_starts":0}
//! ```
//!
//! Written atomically (0600) by the binary that installs the update, read and
//! counted by the new binary at start (`agent_starts`) and by the guard that the
//! service runs before every start (`guard_starts`, `braid-agent update-guard`,
//! executed from `<binary_path>.prev`, the known-good binary).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Directory under the state dir.
pub const DIR: &str = "updates";
/// Marker file name.
pub const FILE: &str = "pending.json";

/// Where an update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Installed; the new binary has not logged in yet.
    Pending,
    /// The previous binary was put back; `reason` says why. The next binary
    /// to start reports it (event) and removes the marker.
    RolledBack,
}

/// The marker's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Format version (1).
    pub version: u32,
    /// Where the update stands.
    pub state: State,
    /// The binary that was replaced.
    pub binary_path: PathBuf,
    /// The previous binary, kept for rollback.
    pub prev_path: PathBuf,
    /// SHA-256 of the new binary, lower-case hex.
    pub new_sha256: String,
    /// SHA-256 of the previous binary, lower-case hex.
    pub prev_sha256: String,
    /// Version of the agent that installed the update.
    pub from_version: String,
    /// When it was installed (RFC 3339 UTC, ms).
    pub installed_at: String,
    /// Starts of the new binary seen by the binary itself.
    #[serde(default)]
    pub agent_starts: u32,
    /// Starts of the service seen by the guard (before the binary runs).
    #[serde(default)]
    pub guard_starts: u32,
    /// Why it was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Path of the marker in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(DIR).join(FILE)
}

/// Read the marker; `Ok(None)` when there is none. A marker that cannot be parsed
/// is an error naming the file (the caller decides; it is never silently dropped).
pub fn load(state_dir: &Path) -> std::io::Result<Option<Marker>> {
    let path = path(state_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        )),
    }
}

/// Write the marker atomically (0600).
pub fn store(state_dir: &Path, marker: &Marker) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(marker).map_err(std::io::Error::other)?;
    json.push(b'\n');
    crate::credentials::write_atomic(&path(state_dir), &json, 0o600)
}

/// Remove the marker (no error if it is already gone).
pub fn remove(state_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path(state_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let m = Marker {
            version: 1,
            state: State::Pending,
            binary_path: "/usr/bin/braid-agent".into(),
            prev_path: "/usr/bin/braid-agent.prev".into(),
            new_sha256: "aa".repeat(32),
            prev_sha256: "bb".repeat(32),
            from_version: "0.1.0".into(),
            installed_at: "2026-02-14T10:30:00.123Z".into(),
            agent_starts: 1,
            guard_starts: 2,
            reason: None,
        };
        store(dir.path(), &m).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(m));
        remove(dir.path()).unwrap();
        remove(dir.path()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        std::fs::write(path(dir.path()), b"{").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(FILE), "{err}");
    }
}
