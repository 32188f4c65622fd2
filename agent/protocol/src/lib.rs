//! Message types of the Braid control protocol, version 1 (agent ↔ control plane,
//! `PROTOCOL.md`). Serde only: no I/O, no async.
//!
//! - [`envelope`]: the frame envelope, ids, timestamps, request/response helpers (§2).
//! - [`inbound`]: typed decoding of control-plane frames; unknown types and invalid
//!   payloads (naming the field) told apart (§2).
//! - [`error`]: error codes of failed responses (§2).
//! - [`auth`]: `auth.login` / `auth.login.response` (§3).
//! - [`device`]: `device.status` (§4).
//! - [`health`]: `health` (§4).
//! - [`event`]: `event` with its severity and category enums (§6).
//! - [`stream`]: `stream.start` / `stream.stop` / `stream.links.update` / `stream.stats` /
//!   `stream.ended` (§4, §5).
//! - [`config`]: `config.get` / `config.set` / `config.update` and the config document (§5).
//! - [`update`]: `agent.update` (§5).
//! - [`auth`] also has `secret.rotate` (§5) and the generic control-plane response.
//! - [`thumbnail`]: `thumbnail` (§4).

pub mod auth;
pub mod config;
pub mod device;
pub mod envelope;
pub mod error;
pub mod event;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod inbound;
pub mod stream;
pub mod thumbnail;
pub mod update;

pub use envelope::{Envelope, Message};

/// Protocol version spoken by this crate (PROTOCOL.md §3 `protocol_version`).
pub const PROTOCOL_VERSION: u32 = 1;

#[cfg(test)]
pub(crate) mod golden {
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use std::fmt::Debug;

    /// Golden test both ways: `golden` decodes to `expected`, and `expected`
    /// encodes to the same JSON value as `golden` (key order and whitespace aside).
    pub fn assert_golden<T>(golden: &str, expected: &T)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let decoded: T = serde_json::from_str(golden).expect("golden JSON decodes");
        assert_eq!(&decoded, expected, "golden → struct");
        let golden_value: serde_json::Value = serde_json::from_str(golden).unwrap();
        let encoded = serde_json::to_value(expected).unwrap();
        assert_eq!(encoded, golden_value, "struct → golden");
    }
}
