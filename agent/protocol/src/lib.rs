//! Message types of the Braid control protocol, version 1 (agent ↔ control plane,
//! `PROTOCOL.md`). Serde only: no I/O, no async.
//!
//! - [`error`]: error codes of failed responses (PROTOCOL.md §2).
//! - [`stream`]: `stream.start` / `stream.stop` / `stream.stats` / `stream.ended` (PROTOCOL.md §4, §5).

pub mod error;
pub mod stream;

/// Protocol version spoken by this crate (PROTOCOL.md §3 `protocol_version`).
pub const PROTOCOL_VERSION: u32 = 1;
