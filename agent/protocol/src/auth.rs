//! `auth.login` and `auth.login.response` (PROTOCOL.md §3).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::Message;

/// Payload of `auth.login`, the first frame the agent sends on a connection
/// (PROTOCOL.md §3). Either `enrollment_token` (first enrollment) or `sender_id` +
/// `device_key` (every later login) is set, never both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthLogin {
    /// One-time enrollment token from the config file, e.g. `enr_abc123`; first login only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_token: Option<String>,
    /// Sender id issued at enrollment, e.g. `snd_abc123`; later logins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<String>,
    /// Persistent device key issued at enrollment; later logins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
    /// Agent version, e.g. `0.1.0`.
    pub agent_version: String,
    /// Protocol version the agent speaks ([`crate::PROTOCOL_VERSION`]).
    pub protocol_version: u32,
    /// Host name of the device.
    pub hostname: String,
    /// CPU architecture, e.g. `aarch64`, `x86_64`.
    pub arch: String,
    /// Features this agent supports, e.g. `["rist-bonding"]`.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl Message for AuthLogin {
    const TYPE: &'static str = "auth.login";
}

/// Failure body sent by a control plane (PROTOCOL.md §2 shape). The code is kept as
/// a string: a control plane may use codes this agent does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    /// snake_case code, e.g. `invalid_credentials`, `token_expired`.
    pub code: String,
    /// Human-readable text.
    #[serde(default)]
    pub message: String,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Payload of `auth.login.response` (PROTOCOL.md §3). On success `sender_id` and
/// `session_token` are set, and `device_key` on enrollment or key rotation; on
/// failure `error` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthLoginResponse {
    /// Whether the login was accepted.
    pub success: bool,
    /// The sender's id, e.g. `snd_abc123` (success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<String>,
    /// Session JWT to put in every later envelope's `token` (success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// Persistent device key; only on enrollment or rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
    /// Protocol version of the control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u32>,
    /// Control-plane supplied configuration (opaque to this version of the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    /// Why the login was refused (failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RemoteError>,
}

impl Message for AuthLoginResponse {
    const TYPE: &'static str = "auth.login.response";
}

impl AuthLoginResponse {
    /// A refusal (`success: false`) with `error`, stating `protocol_version`
    /// (PROTOCOL.md §3.5).
    pub fn refused(error: RemoteError, protocol_version: u32) -> Self {
        Self {
            success: false,
            sender_id: None,
            session_token: None,
            device_key: None,
            protocol_version: Some(protocol_version),
            config: None,
            error: Some(error),
        }
    }
}

/// Payload of `secret.rotate` (PROTOCOL.md §5): the new persistent device key.
/// The agent stores it atomically (0600) before answering and never uses the old
/// key again; the connection and the session token stay as they are.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretRotate {
    /// The new device key (not empty, at most 4096 bytes, no control characters).
    pub device_key: String,
}

impl std::fmt::Debug for SecretRotate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRotate")
            .field("device_key", &"<redacted>")
            .finish()
    }
}

impl Message for SecretRotate {
    const TYPE: &'static str = "secret.rotate";
}

impl SecretRotate {
    /// Checks beyond the types; errors name `device_key`.
    pub fn validate(&self) -> Result<(), crate::inbound::PayloadError> {
        let reason = if self.device_key.trim().is_empty() {
            "must not be empty"
        } else if self.device_key.len() > 4096 {
            "longer than 4096 bytes"
        } else if self.device_key.chars().any(char::is_control) {
            "contains control characters"
        } else {
            return Ok(());
        };
        Err(crate::inbound::PayloadError {
            field: "device_key".into(),
            reason: reason.into(),
        })
    }
}

/// Body of `secret.rotate.response`: `{"success":true,"sender_id":…}` once the key
/// is on disk, or `{"success":false,"error":{…}}` (the old key stays in use).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretRotateResponse {
    /// `true` when the new key is persisted and in use.
    pub success: bool,
    /// The sender whose key was rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_id: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::ErrorBody>,
}

impl Message for SecretRotateResponse {
    const TYPE: &'static str = "secret.rotate.response";
}

/// A response from the control plane to an agent message other than
/// `auth.login` (any `*.response` type), e.g. `{"success":false,"error":
/// {"code":"token_expired","message":"…"}}`. The agent acts on `token_expired`
/// (re-login at once, PROTOCOL.md §3.4) and logs other failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteResponse {
    /// Whether the control plane accepted the message.
    #[serde(default = "yes")]
    pub success: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RemoteError>,
}

fn yes() -> bool {
    true
}

impl RemoteResponse {
    /// Whether this response says the session token expired (`token_expired`).
    pub fn token_expired(&self) -> bool {
        !self.success
            && self
                .error
                .as_ref()
                .is_some_and(|e| e.code == "token_expired")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::assert_golden;

    #[test]
    fn golden_auth_login_enrollment() {
        assert_golden(
            r#"{"enrollment_token":"enr_abc123","agent_version":"0.1.0","protocol_version":1,
                "hostname":"orangepi-field-1","arch":"aarch64","capabilities":["rist-bonding"]}"#,
            &AuthLogin {
                enrollment_token: Some("enr_abc123".into()),
                sender_id: None,
                device_key: None,
                agent_version: "0.1.0".into(),
                protocol_version: 1,
                hostname: "orangepi-field-1".into(),
                arch: "aarch64".into(),
                capabilities: vec!["rist-bonding".into()],
            },
        );
    }

    #[test]
    fn golden_auth_login_with_credentials() {
        assert_golden(
            r#"{"sender_id":"snd_abc123","device_key":"dk_x","agent_version":"0.1.0",
                "protocol_version":1,"hostname":"h","arch":"x86_64","capabilities":[]}"#,
            &AuthLogin {
                enrollment_token: None,
                sender_id: Some("snd_abc123".into()),
                device_key: Some("dk_x".into()),
                agent_version: "0.1.0".into(),
                protocol_version: 1,
                hostname: "h".into(),
                arch: "x86_64".into(),
                capabilities: vec![],
            },
        );
    }

    #[test]
    fn golden_auth_login_response_success() {
        assert_golden(
            r#"{"success":true,"sender_id":"snd_abc123","session_token":"eyJ.e30.sig",
                "device_key":"dk_x","protocol_version":1,"config":{}}"#,
            &AuthLoginResponse {
                success: true,
                sender_id: Some("snd_abc123".into()),
                session_token: Some("eyJ.e30.sig".into()),
                device_key: Some("dk_x".into()),
                protocol_version: Some(1),
                config: Some(serde_json::json!({})),
                error: None,
            },
        );
    }

    #[test]
    fn golden_secret_rotate() {
        assert_golden(
            r#"{"device_key":"dk_new"}"#,
            &SecretRotate {
                device_key: "dk_new".into(),
            },
        );
        assert!(!format!(
            "{:?}",
            SecretRotate {
                device_key: "dk_new".into()
            }
        )
        .contains("dk_new"));
        for bad in ["", "  ", "a\nb"] {
            let r = SecretRotate {
                device_key: bad.into(),
            };
            assert_eq!(r.validate().unwrap_err().field, "device_key");
        }
        assert_golden(
            r#"{"success":true,"sender_id":"snd_abc123"}"#,
            &SecretRotateResponse {
                success: true,
                sender_id: Some("snd_abc123".into()),
                error: None,
            },
        );
        assert_golden(
            r#"{"success":false,"error":{"code":"internal","message":"credentials.json: read-only file system"}}"#,
            &SecretRotateResponse {
                success: false,
                sender_id: None,
                error: Some(crate::error::ErrorBody::new(
                    crate::error::ErrorCode::Internal,
                    "credentials.json: read-only file system",
                )),
            },
        );
    }

    #[test]
    fn golden_remote_response() {
        assert_golden(
            r#"{"success":false,"error":{"code":"token_expired","message":"session expired"}}"#,
            &RemoteResponse {
                success: false,
                error: Some(RemoteError {
                    code: "token_expired".into(),
                    message: "session expired".into(),
                }),
            },
        );
        let r: RemoteResponse =
            serde_json::from_str(r#"{"success":false,"error":{"code":"token_expired"}}"#).unwrap();
        assert!(r.token_expired());
        let r: RemoteResponse = serde_json::from_str(r#"{}"#).unwrap();
        assert!(r.success && !r.token_expired());
    }

    #[test]
    fn golden_auth_login_response_failure() {
        assert_golden(
            r#"{"success":false,"error":{"code":"invalid_credentials","message":"unknown device key"}}"#,
            &AuthLoginResponse {
                success: false,
                sender_id: None,
                session_token: None,
                device_key: None,
                protocol_version: None,
                config: None,
                error: Some(RemoteError {
                    code: "invalid_credentials".into(),
                    message: "unknown device key".into(),
                }),
            },
        );
    }
}
