//! The packaged binary as a launcher for an installed update (PROTOCOL.md §5
//! `agent.update`; docs/protocol.md "agent.update", "Installed package").
//!
//! The hardened unit runs `/usr/bin/braid-agent` as user `braid` with
//! `ProtectSystem=strict`: the service cannot write `/usr/bin`. So `agent.update`
//! installs into the state directory (`[update] binary_path`, default
//! `<state_dir>/bin/braid-agent`, i.e. `/var/lib/braid/bin/braid-agent`) and
//! `braid-agent run`, before anything else, replaces itself with that binary
//! (`execve`, same PID, same arguments, same environment plus [`LAUNCHER_ENV`])
//! when [`decide`] says so:
//!
//! 1. [`LAUNCHER_ENV`] is set: this process was itself launched → run here
//!    (the exec'd binary never execs again, so there is no loop);
//! 2. no file at `binary_path`, or `binary_path` is this very executable (a
//!    writable install that updates itself in place) → run here;
//! 3. not a regular file with an execute bit → run here (ignored);
//! 4. `<binary_path>.base` ([`Base`]) missing, unreadable, or naming another
//!    launcher SHA-256 than this executable's: the package was installed,
//!    upgraded or reinstalled (`dpkg -i`) after the update, or the update was not
//!    made by `agent.update` → run here, and a superseded update's files
//!    (`binary_path`, `.prev`, `.base`, its marker) are removed: **a package
//!    install always wins over an earlier remote update**;
//! 5. the update marker is `rolled_back` and names this file's SHA-256 as the
//!    bad binary → run here (ignored);
//! 6. otherwise → exec it. An exec that fails (`ENOEXEC`: another
//!    architecture, `EACCES`…) falls back to running here; the unit's
//!    `update-guard` then rolls the update back after 3 starts.
//!
//! The contract with future binaries: a binary started with [`LAUNCHER_ENV`] set
//! does not exec again, and records the launcher's SHA-256 in `.base` when it
//! installs an update.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::marker::{self, State};
use super::{same_file, sha256_file, sibling};
use crate::config::{Config, STATE_DIR_ENV};

/// Environment variable the launcher sets for the binary it execs: the path of
/// the launcher (e.g. `/usr/bin/braid-agent`). Set: this process does not exec.
pub const LAUNCHER_ENV: &str = "BRAID_LAUNCHER";
/// Suffix of the file recording which launcher an update was installed over.
pub const BASE_SUFFIX: &str = ".base";
/// Default `agent.state_dir` (the unit's `StateDirectory=braid`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/braid";

/// Default `[update] binary_path`: `<state_dir>/bin/braid-agent` (the service
/// can write only its state directory).
pub fn default_binary_path(state_dir: &Path) -> PathBuf {
    state_dir.join("bin").join("braid-agent")
}

/// The two paths the launcher and `update-guard` need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `agent.state_dir` (`BRAID_STATE_DIR` overrides it).
    pub state_dir: PathBuf,
    /// `[update] binary_path`, else [`default_binary_path`].
    pub binary_path: PathBuf,
}

impl Paths {
    /// From a loaded config (env overrides already applied).
    pub fn from_config(config: &Config) -> Self {
        Self {
            state_dir: config.agent.state_dir.clone(),
            binary_path: config
                .update
                .binary_path
                .clone()
                .unwrap_or_else(|| default_binary_path(&config.agent.state_dir)),
        }
    }

    /// Read leniently from the config file: only its TOML syntax and the two
    /// string keys `agent.state_dir`, `update.binary_path` matter (a config that
    /// lacks its URL or has a bad value elsewhere still launches the update, which
    /// then reports the problem itself). `BRAID_STATE_DIR` overrides the state
    /// dir. Errors: unreadable file or invalid TOML (text with the path).
    pub fn read(config_path: &Path, env_state_dir: Option<&OsStr>) -> Result<Self, String> {
        let text = std::fs::read_to_string(config_path)
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let string = |section: &str, key: &str| {
            table
                .get(section)
                .and_then(|s| s.get(key))
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        };
        let state_dir = env_state_dir
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| string("agent", "state_dir"))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let binary_path =
            string("update", "binary_path").unwrap_or_else(|| default_binary_path(&state_dir));
        Ok(Self {
            state_dir,
            binary_path,
        })
    }
}

/// `<binary_path>.base`: the launcher an update was installed over (JSON, 0600).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// Format version (1).
    pub version: u32,
    /// Path of the launcher (the binary the unit starts).
    pub launcher: PathBuf,
    /// SHA-256 of the launcher when the update was installed, lower-case hex.
    pub launcher_sha256: String,
}

/// `<binary_path>.base`.
pub fn base_path(binary_path: &Path) -> PathBuf {
    sibling(binary_path, BASE_SUFFIX)
}

/// The launcher of this process: [`LAUNCHER_ENV`] when set, else the running
/// executable.
pub fn launcher_of_this_process() -> Option<PathBuf> {
    std::env::var_os(LAUNCHER_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::current_exe().ok())
}

/// Record (at install) that the update at `binary_path` supersedes `launcher`;
/// when `launcher` is `binary_path` itself (an install updating itself in place)
/// there is nothing to launch and any `.base` is removed. Errors: I/O.
pub fn write_base(binary_path: &Path, launcher: &Path) -> std::io::Result<()> {
    let path = base_path(binary_path);
    if same_file(launcher, binary_path) || launcher == binary_path {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let base = Base {
        version: 1,
        launcher: launcher.to_owned(),
        launcher_sha256: sha256_file(launcher)?,
    };
    let mut json = serde_json::to_vec_pretty(&base).map_err(std::io::Error::other)?;
    json.push(b'\n');
    crate::credentials::write_atomic(&path, &json, 0o600)
}

/// Why `braid-agent run` runs itself rather than an installed update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Here {
    /// Started by a launcher ([`LAUNCHER_ENV`] set): never exec twice.
    Launched,
    /// No update installed at `binary_path`.
    NoUpdate,
    /// `binary_path` is this executable.
    IsSelf,
    /// The config file could not be read (the agent reports it itself).
    Config(String),
    /// Not a regular file with an execute bit.
    NotExecutable,
    /// The update was not installed over this launcher (package installed,
    /// upgraded or reinstalled since, or no `.base`); its files were removed when
    /// the flag is true.
    Superseded {
        /// What did not match.
        why: String,
        /// Whether the stale files were removed.
        removed: bool,
    },
    /// The marker names this binary as a rolled-back update.
    RolledBack,
    /// The exec failed.
    ExecFailed(String),
}

/// What `braid-agent run` does at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Exec the installed update.
    Exec(PathBuf),
    /// Run this binary.
    Here(Here),
}

/// Decide (see the module docs) for the executable `exe` with `paths`;
/// `launched` is the value of [`LAUNCHER_ENV`]. Removes the files of a
/// superseded update (best effort; [`Here::Superseded`] says whether it worked).
pub fn decide(paths: &Paths, exe: &Path, launched: Option<&OsStr>) -> Decision {
    if launched.is_some_and(|v| !v.is_empty()) {
        return Decision::Here(Here::Launched);
    }
    let bin = &paths.binary_path;
    let meta = match std::fs::metadata(bin) {
        Ok(m) => m,
        Err(_) => return Decision::Here(Here::NoUpdate),
    };
    if same_file(exe, bin) {
        return Decision::Here(Here::IsSelf);
    }
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Decision::Here(Here::NotExecutable);
    }
    let base: Result<Base, String> = std::fs::read(base_path(bin))
        .map_err(|e| format!("{}: {e}", base_path(bin).display()))
        .and_then(|b| {
            serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", base_path(bin).display()))
        });
    let mismatch = match (base, sha256_file(exe)) {
        (Err(e), _) => Some(e),
        (_, Err(e)) => Some(format!("cannot read {}: {e}", exe.display())),
        (Ok(base), Ok(sha)) if base.launcher_sha256 != sha => Some(format!(
            "installed over a launcher with SHA-256 {}, this one ({}) is {sha}",
            base.launcher_sha256,
            exe.display()
        )),
        (Ok(_), Ok(_)) => None,
    };
    if let Some(why) = mismatch {
        let removed = remove_superseded(paths).is_ok();
        return Decision::Here(Here::Superseded { why, removed });
    }
    if let Ok(Some(m)) = marker::load(&paths.state_dir) {
        if m.state == State::RolledBack && sha256_file(bin).is_ok_and(|sha| sha == m.new_sha256) {
            return Decision::Here(Here::RolledBack);
        }
    }
    Decision::Exec(bin.clone())
}

/// Remove a superseded update: `binary_path`, `.prev`, `.base`, `.new`, `.tmp`,
/// and the update marker when it is about this `binary_path` (a `rolled_back`
/// marker is kept for the agent to report). Used by [`decide`] and by
/// `braid-agent update-supersede`, which the package's postinst runs after
/// every install or upgrade. Missing files are fine; errors: the first I/O
/// error (the other files are still tried).
pub fn remove_superseded(paths: &Paths) -> std::io::Result<()> {
    let bin = &paths.binary_path;
    let mut result = Ok(());
    for suffix in ["", ".prev", BASE_SUFFIX, ".new", ".tmp", ".prev.tmp"] {
        let p = if suffix.is_empty() {
            bin.clone()
        } else {
            sibling(bin, suffix)
        };
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                result = Err(e);
            }
        }
    }
    if let Ok(Some(m)) = marker::load(&paths.state_dir) {
        if &m.binary_path == bin && m.state == State::Pending {
            marker::remove(&paths.state_dir)?;
        }
    }
    result
}

/// `braid-agent run`, before anything else: exec the installed update when
/// [`decide`] says so (this function then does not return), else return why
/// this binary runs itself. Logs the decision.
pub fn launch(config_path: &Path) -> Here {
    let launched = std::env::var_os(LAUNCHER_ENV);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return Here::Config(format!("cannot find this executable: {e}")),
    };
    let paths = match Paths::read(config_path, std::env::var_os(STATE_DIR_ENV).as_deref()) {
        Ok(p) => p,
        Err(e) if launched.is_none() => return Here::Config(e),
        Err(_) => return Here::Launched,
    };
    let here = match decide(&paths, &exe, launched.as_deref()) {
        Decision::Here(here) => here,
        Decision::Exec(bin) => {
            tracing::info!(
                launcher = %exe.display(),
                "starting the installed update {}",
                bin.display()
            );
            let args: Vec<_> = std::env::args_os().skip(1).collect();
            let err = std::process::Command::new(&bin)
                .arg0(&bin)
                .args(args)
                .env(LAUNCHER_ENV, &exe)
                .exec();
            Here::ExecFailed(format!("cannot execute {}: {err}", bin.display()))
        }
    };
    match &here {
        Here::Launched => tracing::info!(
            launcher = ?launched.unwrap_or_default(),
            "running as the installed update {}",
            exe.display()
        ),
        Here::NoUpdate | Here::IsSelf | Here::Config(_) => {
            tracing::debug!(binary = %paths.binary_path.display(), ?here, "no installed update to start")
        }
        Here::NotExecutable => tracing::warn!(
            "ignoring the installed update {}: not an executable file",
            paths.binary_path.display()
        ),
        Here::Superseded { why, removed } => tracing::warn!(
            "ignoring the installed update {} ({why}): superseded by {}; {}",
            paths.binary_path.display(),
            exe.display(),
            if *removed {
                "its files were removed"
            } else {
                "its files could not all be removed"
            }
        ),
        Here::RolledBack => tracing::warn!(
            "ignoring the installed update {}: its update marker says it was rolled back",
            paths.binary_path.display()
        ),
        Here::ExecFailed(e) => {
            tracing::error!("{e}; running {} instead", exe.display())
        }
    }
    here
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::marker::Marker;

    struct Setup {
        _dir: tempfile::TempDir,
        exe: PathBuf,
        paths: Paths,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let usr = dir.path().join("usr/bin");
        std::fs::create_dir_all(&usr).unwrap();
        let exe = usr.join("braid-agent");
        std::fs::write(&exe, b"#!/bin/sh\n# packaged\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let state_dir = dir.path().join("state");
        let paths = Paths {
            binary_path: default_binary_path(&state_dir),
            state_dir,
        };
        Setup {
            _dir: dir,
            exe,
            paths,
        }
    }

    fn install_update(s: &Setup, body: &[u8]) {
        let bin = &s.paths.binary_path;
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::write(bin, body).unwrap();
        std::fs::set_permissions(bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(sibling(bin, ".prev"), b"prev").unwrap();
        write_base(bin, &s.exe).unwrap();
    }

    #[test]
    fn paths_read_leniently() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("agent.conf");
        std::fs::write(&conf, "[agent]\nstatus_interval_s = 0\n").unwrap();
        let p = Paths::read(&conf, None).unwrap();
        assert_eq!(p.state_dir, PathBuf::from("/var/lib/braid"));
        assert_eq!(
            p.binary_path,
            PathBuf::from("/var/lib/braid/bin/braid-agent")
        );
        let p = Paths::read(&conf, Some(OsStr::new("/tmp/s"))).unwrap();
        assert_eq!(p.binary_path, PathBuf::from("/tmp/s/bin/braid-agent"));
        std::fs::write(
            &conf,
            "[agent]\nstate_dir = \"/srv/b\"\n[update]\nbinary_path = \"/opt/b/agent\"\n",
        )
        .unwrap();
        let p = Paths::read(&conf, None).unwrap();
        assert_eq!(p.state_dir, PathBuf::from("/srv/b"));
        assert_eq!(p.binary_path, PathBuf::from("/opt/b/agent"));
        std::fs::write(&conf, "[agent\n").unwrap();
        assert!(Paths::read(&conf, None).unwrap_err().contains("agent.conf"));
        assert!(Paths::read(&dir.path().join("missing"), None).is_err());
    }

    #[test]
    fn a_valid_update_is_execed_once() {
        let s = setup();
        assert_eq!(
            decide(&s.paths, &s.exe, None),
            Decision::Here(Here::NoUpdate)
        );
        install_update(&s, b"#!/bin/sh\n# update\n");
        assert_eq!(
            decide(&s.paths, &s.exe, None),
            Decision::Exec(s.paths.binary_path.clone())
        );
        // The exec'd binary itself does not exec again.
        let launcher = s.exe.as_os_str();
        assert_eq!(
            decide(&s.paths, &s.paths.binary_path, Some(launcher)),
            Decision::Here(Here::Launched)
        );
        // Started directly (no launcher): it is binary_path itself.
        assert_eq!(
            decide(&s.paths, &s.paths.binary_path, None),
            Decision::Here(Here::IsSelf)
        );
    }

    #[test]
    fn a_non_executable_update_is_ignored() {
        let s = setup();
        install_update(&s, b"#!/bin/sh\n");
        std::fs::set_permissions(&s.paths.binary_path, std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert_eq!(
            decide(&s.paths, &s.exe, None),
            Decision::Here(Here::NotExecutable)
        );
        assert!(s.paths.binary_path.exists(), "left for update-guard");
    }

    #[test]
    fn a_package_upgrade_supersedes_the_update() {
        let s = setup();
        install_update(&s, b"#!/bin/sh\n# update\n");
        let m = Marker {
            version: 1,
            state: State::Pending,
            binary_path: s.paths.binary_path.clone(),
            prev_path: sibling(&s.paths.binary_path, ".prev"),
            new_sha256: sha256_file(&s.paths.binary_path).unwrap(),
            prev_sha256: "00".repeat(32),
            from_version: "0.1.0".into(),
            installed_at: "2026-01-01T00:00:00.000Z".into(),
            agent_starts: 0,
            guard_starts: 0,
            reason: None,
        };
        marker::store(&s.paths.state_dir, &m).unwrap();
        // dpkg -i of a newer package: another /usr/bin/braid-agent.
        std::fs::write(&s.exe, b"#!/bin/sh\n# packaged 0.2.0\n").unwrap();
        match decide(&s.paths, &s.exe, None) {
            Decision::Here(Here::Superseded { why, removed }) => {
                assert!(removed);
                assert!(why.contains("installed over a launcher"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let bin_dir = s.paths.binary_path.parent().unwrap();
        assert_eq!(std::fs::read_dir(bin_dir).unwrap().count(), 0);
        assert_eq!(marker::load(&s.paths.state_dir).unwrap(), None);
        assert_eq!(
            decide(&s.paths, &s.exe, None),
            Decision::Here(Here::NoUpdate)
        );
    }

    #[test]
    fn an_update_without_base_is_not_trusted() {
        let s = setup();
        install_update(&s, b"#!/bin/sh\n");
        std::fs::remove_file(base_path(&s.paths.binary_path)).unwrap();
        assert!(matches!(
            decide(&s.paths, &s.exe, None),
            Decision::Here(Here::Superseded { removed: true, .. })
        ));
        assert!(!s.paths.binary_path.exists());
    }

    #[test]
    fn a_rolled_back_update_is_not_run() {
        let s = setup();
        install_update(&s, b"#!/bin/sh\n# bad\n");
        let mut m = Marker {
            version: 1,
            state: State::RolledBack,
            binary_path: s.paths.binary_path.clone(),
            prev_path: sibling(&s.paths.binary_path, ".prev"),
            new_sha256: sha256_file(&s.paths.binary_path).unwrap(),
            prev_sha256: "00".repeat(32),
            from_version: "0.1.0".into(),
            installed_at: "2026-01-01T00:00:00.000Z".into(),
            agent_starts: 4,
            guard_starts: 0,
            reason: Some("test".into()),
        };
        marker::store(&s.paths.state_dir, &m).unwrap();
        assert_eq!(
            decide(&s.paths, &s.exe, None),
            Decision::Here(Here::RolledBack)
        );
        // Restored (the file is no longer the bad one): run it.
        m.new_sha256 = "11".repeat(32);
        marker::store(&s.paths.state_dir, &m).unwrap();
        assert_eq!(
            decide(&s.paths, &s.exe, None),
            Decision::Exec(s.paths.binary_path.clone())
        );
    }

    #[test]
    fn write_base_in_place_removes_it() {
        let s = setup();
        install_update(&s, b"x");
        assert!(base_path(&s.paths.binary_path).exists());
        write_base(&s.paths.binary_path, &s.paths.binary_path).unwrap();
        assert!(!base_path(&s.paths.binary_path).exists());
    }
}
