//! `health` (PROTOCOL.md §4): agent liveness summary, right after login and every 15 s.

use serde::{Deserialize, Serialize};

use crate::envelope::Message;

/// Payload of `health` (PROTOCOL.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Overall condition of the agent.
    pub status: HealthStatus,
    /// Agent version, e.g. `0.1.0`.
    pub agent_version: String,
    /// Protocol version the agent speaks.
    pub protocol_version: u32,
    /// Features this agent supports (same list as in `auth.login`).
    pub capabilities: Vec<String>,
    /// Seconds since the agent process started.
    pub uptime_s: u64,
    /// Streams starting or live.
    pub streams_live: u32,
    /// Events waiting to be delivered to the control plane.
    pub event_backlog: u32,
}

impl Message for Health {
    const TYPE: &'static str = "health";
}

/// `health.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Everything works.
    Ok,
    /// Working with reduced quality (e.g. a link of a live stream is down).
    Degraded,
    /// Not able to do its job.
    Critical,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::assert_golden;

    #[test]
    fn golden_health() {
        assert_golden(
            r#"{"status":"degraded","agent_version":"0.1.0","protocol_version":1,
                "capabilities":["rist-bonding"],"uptime_s":42,"streams_live":1,"event_backlog":3}"#,
            &Health {
                status: HealthStatus::Degraded,
                agent_version: "0.1.0".into(),
                protocol_version: 1,
                capabilities: vec!["rist-bonding".into()],
                uptime_s: 42,
                streams_live: 1,
                event_backlog: 3,
            },
        );
    }
}
