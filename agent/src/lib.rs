//! Braid field sender agent (ARCHITECTURE.md): control-plane client, stream actors,
//! device status, and a development control plane.
//!
//! - [`config`]: the TOML config file and environment overrides.
//! - [`credentials`]: `credentials.json` (atomic, 0600).
//! - [`tls`]: rustls client configs (standard / pinned / insecure).
//! - [`control`]: the control-plane connection (PROTOCOL.md §1–§6).
//! - [`device`]: `device.status` collectors.
//! - [`streams`]: stream actors; [`media`]: GStreamer set-up and TS verification.
//! - [`events`]: the persisted, filtered event queue (PROTOCOL.md §6).
//! - [`update`]: `agent.update`: download, verify, swap, rollback.
//! - [`agent`]: `braid-agent run`; [`devplane`]: `braid-agent devplane`.
//! - [`service`], [`notify`]: config checks and systemd notifications for the
//!   packaged units; [`receive`]: `braid-agent receive` (platform side).

pub mod agent;
pub mod config;
pub mod control;
pub mod credentials;
pub mod device;
pub mod devplane;
pub mod events;
pub mod media;
pub mod notify;
pub mod receive;
pub mod service;
pub mod streams;
pub mod tls;
pub mod update;

/// The running `braid-agent` binary, when this process is one (not a test harness
/// or another program linking the library): the helper that runs GStreamer work
/// which would otherwise leave the plugin registry and plugins mapped in the
/// long-lived agent (`probe-media`, `capabilities`). `None`: do the work in-process.
pub fn helper_exe() -> Option<std::path::PathBuf> {
    std::env::current_exe()
        .ok()
        .filter(|exe| exe.file_name().is_some_and(|n| n == "braid-agent"))
}

/// Wait up to `timeout` for a helper process to exit, polling every 20 ms; a helper
/// still running then (or whose state cannot be read) is killed and reaped.
/// Returns its exit status, `None` when it was killed.
pub fn wait_helper(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[test]
    fn a_helper_past_its_timeout_is_killed_and_one_that_exits_gives_its_status() {
        let mut slow = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        assert_eq!(
            super::wait_helper(&mut slow, Duration::from_millis(200)),
            None
        );
        assert!(t0.elapsed() < Duration::from_secs(10));
        // Killed and reaped: nothing left to wait for.
        assert!(slow.try_wait().unwrap().is_some());
        let mut quick = std::process::Command::new("false").spawn().unwrap();
        let status = super::wait_helper(&mut quick, Duration::from_secs(10)).unwrap();
        assert!(!status.success());
    }
}
