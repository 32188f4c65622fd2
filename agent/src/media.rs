//! GStreamer set-up shared by the agent and the development control plane, and the
//! verification of a received MPEG-TS.
//!
//! CONTRACT (bodies are being written).

use std::path::Path;

/// Initialise GStreamer once and make Braid's elements available: if `ristbondsink`
/// is not found in the registry (no installed plugin, no `GST_PLUGIN_PATH`), the
/// plugin linked into this binary is registered statically.
/// Errors: GStreamer cannot initialise.
pub fn init() -> anyhow::Result<()> {
    todo!()
}

/// What [`verify_ts`] found in a received file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsVerdict {
    /// Video frames decoded.
    pub frames: u64,
    /// TR 101 290 1.4 continuity errors.
    pub cc_errors: u64,
    /// TS packets in the file.
    pub ts_packets: u64,
    /// Size of the file, bytes.
    pub bytes: u64,
}

/// Decode the video of a TS file (GStreamer, `decodebin`) counting frames, and run the
/// TR 101 290 continuity check over its packets.
/// Errors: unreadable file, no decodable video.
pub fn verify_ts(path: &Path) -> anyhow::Result<TsVerdict> {
    let _ = path;
    todo!()
}
