//! `agent.update` (PROTOCOL.md §5): replace the agent binary.

use serde::{Deserialize, Serialize};

use crate::envelope::Message;
use crate::error::ErrorBody;
use crate::inbound::PayloadError;

/// Payload of `agent.update` (PROTOCOL.md §5).
///
/// ```json
/// {"binary_url":"https://updates.example.com/braid-agent-0.2.0-aarch64",
///  "sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
///  "restart_after":true}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentUpdate {
    /// Where to download the new binary; `https://` only.
    pub binary_url: String,
    /// SHA-256 of the binary, 64 hex digits (any case).
    pub sha256: String,
    /// Restart into the new binary once it is installed (default `false`: it
    /// runs from the next start).
    #[serde(default)]
    pub restart_after: bool,
}

impl Message for AgentUpdate {
    const TYPE: &'static str = "agent.update";
}

impl AgentUpdate {
    /// Checks beyond the types: `binary_url` is `https://` with a host (an
    /// `http://` URL is refused here, before anything is downloaded), `sha256`
    /// is 64 hex digits. Errors name the field.
    pub fn validate(&self) -> Result<(), PayloadError> {
        let url = self.binary_url.trim();
        let rest = url
            .get(..8)
            .filter(|s| s.eq_ignore_ascii_case("https://"))
            .map(|_| &url[8..])
            .ok_or_else(|| PayloadError {
                field: "binary_url".into(),
                reason: format!("must be an https:// URL (got {})", scheme_of(url)),
            })?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() || host.starts_with(':') || host.starts_with('@') {
            return Err(PayloadError {
                field: "binary_url".into(),
                reason: "no host".into(),
            });
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PayloadError {
                field: "sha256".into(),
                reason: format!(
                    "must be 64 hex digits (got {} characters)",
                    self.sha256.chars().count()
                ),
            });
        }
        Ok(())
    }
}

fn scheme_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, _)) if !scheme.is_empty() && scheme.len() < 16 => format!("{scheme}://"),
        _ => "no scheme".into(),
    }
}

/// Body of `agent.update.response` (PROTOCOL.md §5). On success the new binary
/// is in place (previous one kept as `<binary_path>.prev`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentUpdateResponse {
    /// `true` when the binary was swapped.
    pub success: bool,
    /// SHA-256 of the installed binary, lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Size of the installed binary, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Whether the agent now exits to be restarted into the new binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarting: Option<bool>,
    /// Why it failed (`verification_failed`, `invalid_payload`, `busy`, `internal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Message for AgentUpdateResponse {
    const TYPE: &'static str = "agent.update.response";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::golden::assert_golden;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn update(url: &str, sha: &str) -> AgentUpdate {
        AgentUpdate {
            binary_url: url.into(),
            sha256: sha.into(),
            restart_after: true,
        }
    }

    #[test]
    fn golden_agent_update() {
        assert_golden(
            &format!(
                r#"{{"binary_url":"https://updates.example.com/braid-agent-0.2.0-aarch64","sha256":"{SHA}","restart_after":true}}"#
            ),
            &update("https://updates.example.com/braid-agent-0.2.0-aarch64", SHA),
        );
        let no_restart: AgentUpdate = serde_json::from_str(&format!(
            r#"{{"binary_url":"https://h/b","sha256":"{SHA}"}}"#
        ))
        .unwrap();
        assert!(!no_restart.restart_after);
    }

    #[test]
    fn golden_agent_update_responses() {
        assert_golden(
            &format!(
                r#"{{"success":true,"sha256":"{SHA}","size_bytes":31457280,"restarting":true}}"#
            ),
            &AgentUpdateResponse {
                success: true,
                sha256: Some(SHA.into()),
                size_bytes: Some(31_457_280),
                restarting: Some(true),
                error: None,
            },
        );
        assert_golden(
            r#"{"success":false,"error":{"code":"verification_failed","message":"SHA-256 mismatch"}}"#,
            &AgentUpdateResponse {
                success: false,
                sha256: None,
                size_bytes: None,
                restarting: None,
                error: Some(ErrorBody::new(
                    ErrorCode::VerificationFailed,
                    "SHA-256 mismatch",
                )),
            },
        );
    }

    #[test]
    fn validation() {
        assert!(update("https://h/b", SHA).validate().is_ok());
        assert!(update("HTTPS://h:8443/b?x=1", &SHA.to_uppercase())
            .validate()
            .is_ok());
        let e = update("http://h/b", SHA).validate().unwrap_err();
        assert_eq!(e.field, "binary_url");
        assert!(e.reason.contains("http://"), "{}", e.reason);
        assert_eq!(
            update("https:///b", SHA).validate().unwrap_err().field,
            "binary_url"
        );
        assert_eq!(
            update("ftp", SHA).validate().unwrap_err().field,
            "binary_url"
        );
        assert_eq!(
            update("https://h/b", "abc").validate().unwrap_err().field,
            "sha256"
        );
        let nonhex = format!("{}zz", &SHA[..62]);
        assert_eq!(
            update("https://h/b", &nonhex).validate().unwrap_err().field,
            "sha256"
        );
        // Multi-byte input never panics on slicing.
        assert!(update("ééééééééé", SHA).validate().is_err());
    }
}
