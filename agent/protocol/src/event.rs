//! `event` (PROTOCOL.md §6; seed 002): operational events on state transitions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::Message;

/// Payload of `event` (PROTOCOL.md §6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// How bad it is.
    pub severity: Severity,
    /// Which part of the system raised it.
    pub category: Category,
    /// Human-readable text, e.g. `Link wwan1 down`.
    pub message: String,
    /// The stream concerned, for stream-scoped events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    /// Structured context, e.g. `{"link_id":1}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl Message for Event {
    const TYPE: &'static str = "event";
}

impl Event {
    /// An event with no stream and no details.
    pub fn new(severity: Severity, category: Category, message: impl Into<String>) -> Self {
        Self {
            severity,
            category,
            message: message.into(),
            stream_id: None,
            details: None,
        }
    }
}

/// `event.severity` (PROTOCOL.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Notable state change, no action required.
    Info,
    /// Degradation or potential issue.
    Warning,
    /// Service-impacting failure.
    Critical,
}

/// `event.category` (PROTOCOL.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Control-plane connection and authentication.
    Manager,
    /// Stream lifecycle.
    Stream,
    /// A bonded link.
    Link,
    /// A cellular modem.
    Modem,
    /// Capture devices and other hardware.
    Device,
    /// GStreamer pipelines.
    Pipeline,
    /// Self-update.
    Update,
    /// Wire-protocol problems (oversized or malformed frames).
    Protocol,
    /// NMOS node API.
    Nmos,
    /// Credentials and secrets.
    Security,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::assert_golden;

    #[test]
    fn golden_event_link_down() {
        assert_golden(
            r#"{"severity":"warning","category":"link","message":"Link wwan1 down",
                "stream_id":"str_xyz789","details":{"link_id":1}}"#,
            &Event {
                severity: Severity::Warning,
                category: Category::Link,
                message: "Link wwan1 down".into(),
                stream_id: Some("str_xyz789".into()),
                details: Some(serde_json::json!({"link_id": 1})),
            },
        );
    }

    #[test]
    fn golden_event_minimal() {
        assert_golden(
            r#"{"severity":"critical","category":"manager","message":"Manager authentication failed: unknown device key"}"#,
            &Event::new(
                Severity::Critical,
                Category::Manager,
                "Manager authentication failed: unknown device key",
            ),
        );
    }

    #[test]
    fn every_category_name() {
        let names = [
            (Category::Manager, "manager"),
            (Category::Stream, "stream"),
            (Category::Link, "link"),
            (Category::Modem, "modem"),
            (Category::Device, "device"),
            (Category::Pipeline, "pipeline"),
            (Category::Update, "update"),
            (Category::Protocol, "protocol"),
            (Category::Nmos, "nmos"),
            (Category::Security, "security"),
        ];
        for (c, n) in names {
            assert_eq!(serde_json::to_value(c).unwrap(), n);
        }
    }
}
