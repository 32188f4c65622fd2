//! The agent as a systemd service (systemd/braid-agent.service, `Type=notify`):
//! the config check shared by `run` and `check-config`, waiting for a usable
//! config (`run --wait-for-config`), and the `READY=1` / `STATUS=` reports.
//!
//! `READY=1` is sent once the config is loaded and the first connect to the
//! control plane was tried (connected or failed), so `systemctl start` returns
//! with a meaningful `systemctl status` line. With `--wait-for-config` and a
//! config that cannot be used yet (the package's template without URL or
//! enrollment token, a typo), the agent reports `READY=1` with a `STATUS=`
//! naming the file, line and fix, re-reads the file every
//! [`CONFIG_POLL`], and starts as soon as it is usable: a technician who writes
//! the enrollment token into `/etc/braid/agent.conf` needs no other step.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Login, TlsMode, ALLOW_INSECURE_ENV};
use crate::control::connect::{ConnectError, Endpoint};
use crate::control::ConnectionState;
use crate::notify;
use crate::tls::TlsError;

/// How often `--wait-for-config` re-reads the config file.
pub const CONFIG_POLL: Duration = Duration::from_secs(2);

/// A config that passed every check that needs no network.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The config, after environment overrides (`BRAID_STATE_DIR`).
    pub config: Config,
    /// `BRAID_ALLOW_INSECURE=1`.
    pub allow_insecure: bool,
    /// How the agent will log in.
    pub login: Login,
}

impl Checked {
    /// One line for `check-config` and the logs: URL, TLS mode, login, state dir.
    pub fn summary(&self, path: &Path) -> String {
        let c = &self.config;
        let login = match &self.login {
            Login::Credentials { sender_id } => format!(
                "log in as {sender_id} (credentials in {})",
                crate::credentials::path(&c.agent.state_dir).display()
            ),
            Login::Enrollment => "enroll with the enrollment token (no credentials yet)".into(),
        };
        let tls = match c.control_plane.tls.mode {
            TlsMode::Standard => "standard",
            TlsMode::Pinned => "pinned",
            TlsMode::Insecure => "insecure",
        };
        format!(
            "config OK: {}: control plane {} (TLS {tls}), {login}, state_dir {}, media_dir {}",
            path.display(),
            c.control_plane.url,
            c.agent.state_dir.display(),
            c.agent.media_dir.display(),
        )
    }
}

/// Every check `braid-agent run` does before connecting, without connecting:
/// read and validate the file ([`Config::load`]), apply the environment, build
/// the TLS client config (`ws://` and mode `insecure` need
/// `BRAID_ALLOW_INSECURE=1`), and make sure the agent can log in
/// ([`Config::check_identity`]). Errors name the file, the line and the fix.
pub fn check(path: &Path) -> anyhow::Result<Checked> {
    let mut config = Config::load(path)?;
    config.apply_env(|k| std::env::var(k).ok());
    // Keys a control plane set with `config.set` (<state_dir>/remote-config.toml).
    config.apply_remote()?;
    let allow_insecure = std::env::var(ALLOW_INSECURE_ENV).is_ok_and(|v| v == "1");
    if let Err(e) = Endpoint::new(&config, allow_insecure) {
        let (key, fix) = match &e {
            ConnectError::InsecureUrl(_) => (
                "control_plane.url",
                "use a wss:// URL (ws:// is for development, with BRAID_ALLOW_INSECURE=1)",
            ),
            ConnectError::Tls(TlsError::InsecureRefused) => (
                "control_plane.tls.mode",
                "use mode \"standard\" or \"pinned\" (\"insecure\" is for development, with BRAID_ALLOW_INSECURE=1)",
            ),
            ConnectError::Tls(TlsError::NoRoots) => (
                "control_plane.tls.mode",
                "install the ca-certificates package, or use mode \"pinned\"",
            ),
            _ => (
                "control_plane.tls",
                "check [control_plane.tls] (see the comments in the packaged agent.conf)",
            ),
        };
        return Err(anyhow!("{}: {e}; fix: {fix}", config.at_key(key)));
    }
    let login = config.check_identity()?;
    Ok(Checked {
        config,
        allow_insecure,
        login,
    })
}

/// Wait until the config at `path` passes [`check`]: on each failure log the
/// error (once per distinct error), report `READY=1` (once) and `STATUS=`
/// with it, and re-check every [`CONFIG_POLL`]. Cancel-safe.
pub async fn wait_for_config(path: &Path) -> Checked {
    let mut last_error = String::new();
    let mut ready_sent = false;
    loop {
        match check(path) {
            Ok(checked) => {
                if ready_sent {
                    tracing::info!("{}: usable now, starting", path.display());
                    notify::status("config usable, starting");
                }
                return checked;
            }
            Err(e) => {
                let text = format!("{e:#}");
                if text != last_error {
                    tracing::error!("{text}");
                    tracing::info!(
                        "waiting for {} to be fixed (checked every {} s)",
                        path.display(),
                        CONFIG_POLL.as_secs()
                    );
                    let status = format!("waiting for a usable config: {text}");
                    if ready_sent {
                        notify::status(&status);
                    } else {
                        notify::ready(&status);
                        ready_sent = true;
                    }
                    last_error = text;
                }
            }
        }
        tokio::time::sleep(CONFIG_POLL).await;
    }
}

/// Report the control connection to systemd until `cancel` fires: `READY=1`
/// when the first connect attempt has finished, then a `STATUS=` line at each
/// change (`connected to …`, `disconnected: …`).
pub async fn report(mut state: watch::Receiver<ConnectionState>, cancel: CancellationToken) {
    let mut ready_sent = false;
    loop {
        let current = state.borrow_and_update().clone();
        let line = match &current {
            ConnectionState::Starting => None,
            ConnectionState::Connected(url) => Some(format!("connected to {url}")),
            ConnectionState::Disconnected(why) => {
                Some(format!("not connected to the control plane: {why}"))
            }
        };
        if let Some(line) = line {
            if ready_sent {
                notify::status(&line);
            } else {
                notify::ready(&line);
                ready_sent = true;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
        }
    }
}
