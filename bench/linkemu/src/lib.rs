//! Userspace, trace-driven UDP link emulator for Braid's bonded RIST transport tests
//! and benchmarks (`braid-linkemu`). This kernel has no `tc netem`, so each emulated
//! link is a UDP relay: the sender talks to the emulator's port pair P/P+1 (RTP/RTCP,
//! VSF TR-06-1 §5.1), the emulator forwards to the receiver's R/R+1, and the
//! receiver's RTCP goes back the same way. Both ports of a link share one queue,
//! capacity and loss process, as on one modem.
//!
//! - [`trace`]: Mahimahi delivery-opportunity traces (`shared/traces/*.up`).
//! - [`loss`]: independent and Gilbert-Elliott loss.
//! - [`model`]: the sans-IO path model (queue, bottleneck, loss, delay, jitter, events).
//! - [`config`]: TOML / command-line configuration of several links.
//! - [`relay`]: the sockets, one thread.

pub mod config;
pub mod loss;
pub mod model;
pub mod relay;
pub mod trace;

use std::path::{Path, PathBuf};

/// Where the shared Mahimahi traces are: `$BRAID_TRACES_DIR` if set, else the first
/// `shared/traces` directory in `start` or one of its ancestors (the repository keeps
/// them in `../shared/traces` next to the clone). `None` when there is none.
pub fn find_traces_dir(start: &Path) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BRAID_TRACES_DIR") {
        return Some(PathBuf::from(dir));
    }
    start
        .ancestors()
        .map(|a| a.join("shared/traces"))
        .find(|d| d.is_dir())
}
