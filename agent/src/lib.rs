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
