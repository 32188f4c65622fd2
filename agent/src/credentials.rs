//! `<state_dir>/credentials.json` (PROTOCOL.md §3; ARCHITECTURE.md "Files on the
//! device"): `{"sender_id": "...", "device_key": "..."}`, mode 0600, written
//! atomically (temp file + fsync + rename + directory fsync).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name inside the state directory.
pub const FILE_NAME: &str = "credentials.json";

/// The persistent identity of this sender, issued at enrollment.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Sender id, e.g. `snd_abc123`.
    pub sender_id: String,
    /// Persistent device key (a secret).
    pub device_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("sender_id", &self.sender_id)
            .field("device_key", &"<redacted>")
            .finish()
    }
}

/// Credential file failures; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Reading, writing, syncing or renaming failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the expected JSON.
    #[error("{path}: not a credentials file: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// Path of the credentials file in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Read `<state_dir>/credentials.json`; `Ok(None)` when it does not exist.
/// Errors: unreadable or not valid JSON of the expected shape.
pub fn load(state_dir: &Path) -> Result<Option<Credentials>, CredentialsError> {
    let path = path(state_dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CredentialsError::Io { path, source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| CredentialsError::Parse { path, source })
}

/// Write `<state_dir>/credentials.json` atomically with mode 0600: create the
/// directory if needed, write `credentials.json.tmp` (0600), fsync it, rename it
/// over the file, fsync the directory. A crash leaves either the old or the new
/// file, never a torn one.
pub fn store(state_dir: &Path, creds: &Credentials) -> Result<(), CredentialsError> {
    let target = path(state_dir);
    let mut json = serde_json::to_vec_pretty(creds).map_err(|source| CredentialsError::Parse {
        path: target.clone(),
        source,
    })?;
    json.push(b'\n');
    write_atomic(&target, &json, 0o600).map_err(|source| CredentialsError::Io {
        path: target,
        source,
    })
}

/// Write `target` atomically with `mode`: create its directory if needed, write
/// `<target>.tmp` (created with `mode`), fsync it, rename it over `target`, fsync
/// the directory. A crash leaves either the old or the new file, never a torn one.
/// Errors: any I/O step (the temp file is removed on failure).
pub fn write_atomic(target: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let mut tmp_name = target.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, target)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    File::open(&dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn creds(key: &str) -> Credentials {
        Credentials {
            sender_id: "snd_1".into(),
            device_key: key.into(),
        }
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
    }

    #[test]
    fn store_then_load_with_mode_0600_and_no_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("nested/state");
        store(&state, &creds("dk_a")).unwrap();
        assert_eq!(load(&state).unwrap(), Some(creds("dk_a")));
        let mode = fs::metadata(path(&state)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Overwrite (rotation) replaces the content atomically.
        store(&state, &creds("dk_b")).unwrap();
        assert_eq!(load(&state).unwrap(), Some(creds("dk_b")));
        let names: Vec<_> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![FILE_NAME.to_owned()]);
        let text = fs::read_to_string(path(&state)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"sender_id":"snd_1","device_key":"dk_b"})
        );
    }

    #[test]
    fn stale_temp_file_does_not_block_a_write() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(format!("{FILE_NAME}.tmp")), b"garbage").unwrap();
        store(dir.path(), &creds("dk_c")).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(creds("dk_c")));
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(path(dir.path()), b"{\"sender_id\":1}").unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }

    #[test]
    fn debug_redacts_the_key() {
        assert!(!format!("{:?}", creds("secret")).contains("secret"));
    }
}
