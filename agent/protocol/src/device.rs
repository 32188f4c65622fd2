//! `device.status` (PROTOCOL.md §4; seed 004 §4.1): the periodic hardware report.

use serde::{Deserialize, Serialize};

use crate::envelope::Message;

/// Payload of `device.status`, every `status_interval_s` (10 s) and on change
/// (PROTOCOL.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// Network interfaces, loopback excluded.
    pub network_interfaces: Vec<NetworkInterface>,
    /// Capture sources the agent can stream from.
    pub media_inputs: Vec<MediaInput>,
    /// Files in the media folder.
    pub saved_media: Vec<SavedMedia>,
    /// Aggregate state of the agent's streams.
    pub stream_state: StreamState,
    /// Whole-system CPU use, percent (0–100).
    pub cpu_percent: f64,
    /// Memory in use, MiB.
    pub mem_used_mb: u64,
    /// System uptime, s.
    pub uptime_s: u64,
    /// SoC temperature, °C, when a thermal sensor is readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
}

impl Message for DeviceStatus {
    const TYPE: &'static str = "device.status";
}

/// One entry of `network_interfaces[]` (PROTOCOL.md §4). The modem fields are
/// absent unless the interface is a cellular modem known to ModemManager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// Kernel name, e.g. `wwan0`, `eth0`.
    pub name: String,
    /// Kind of link.
    #[serde(rename = "type")]
    pub kind: InterfaceType,
    /// Link state.
    pub state: InterfaceState,
    /// First IPv4 address, dotted quad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Mobile operator name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// Signal strength, dBm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_dbm: Option<f64>,
    /// Radio technology, e.g. `LTE`, `5G-NSA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technology: Option<String>,
    /// Modem IMEI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imei: Option<String>,
    /// LTE RSRP, dBm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsrp_dbm: Option<f64>,
    /// LTE RSRQ, dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsrq_db: Option<f64>,
    /// SINR, dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sinr_db: Option<f64>,
}

impl NetworkInterface {
    /// An interface with only name, type and state (no address, no modem figures).
    pub fn new(name: impl Into<String>, kind: InterfaceType, state: InterfaceState) -> Self {
        Self {
            name: name.into(),
            kind,
            state,
            ip: None,
            carrier: None,
            signal_dbm: None,
            technology: None,
            imei: None,
            rsrp_dbm: None,
            rsrq_db: None,
            sinr_db: None,
        }
    }
}

/// `network_interfaces[].type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceType {
    /// A cellular modem (`wwan*`).
    Cellular,
    /// Wired Ethernet (and anything that is neither cellular nor Wi-Fi).
    Ethernet,
    /// Wi-Fi.
    Wifi,
}

/// `network_interfaces[].state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceState {
    /// Link up.
    Connected,
    /// Link down.
    Disconnected,
    /// Coming up (e.g. Wi-Fi associating, modem registering).
    Connecting,
}

/// One entry of `media_inputs[]` (PROTOCOL.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaInput {
    /// Device node (`/dev/video0`) or `test` for the test pattern.
    pub device: String,
    /// Kind of input.
    #[serde(rename = "type")]
    pub kind: MediaInputType,
    /// Human-readable name.
    pub label: String,
    /// Modes as `WIDTHxHEIGHT@FPS`, e.g. `1920x1080@30`.
    pub capabilities: Vec<String>,
    /// Whether a stream uses it.
    pub status: MediaInputStatus,
}

/// `media_inputs[].type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaInputType {
    /// A V4L2 capture device.
    V4l2,
    /// The generated test pattern.
    Test,
}

/// `media_inputs[].status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaInputStatus {
    /// Free to use.
    Available,
    /// In use by a stream.
    Busy,
}

/// One entry of `saved_media[]` (PROTOCOL.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedMedia {
    /// Absolute path on the device.
    pub path: String,
    /// File name.
    pub name: String,
    /// Size, MiB (rounded down).
    pub size_mb: u64,
    /// Duration, s (0 when it could not be determined).
    pub duration_s: u64,
}

/// `stream_state`: aggregate over the agent's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// No stream.
    Idle,
    /// A `stream.start` is being carried out.
    Starting,
    /// At least one stream is live.
    Live,
    /// A `stream.stop` is being carried out.
    Stopping,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::assert_golden;

    #[test]
    fn golden_device_status() {
        assert_golden(
            r#"{"network_interfaces":[
                 {"name":"wwan0","type":"cellular","state":"connected","ip":"10.45.0.2",
                  "carrier":"T-Mobile","signal_dbm":-72.0,"technology":"LTE"},
                 {"name":"eth0","type":"ethernet","state":"disconnected"},
                 {"name":"wlan0","type":"wifi","state":"connecting"}],
               "media_inputs":[{"device":"test","type":"test","label":"Test pattern",
                 "capabilities":["1920x1080@30","1280x720@30"],"status":"busy"},
                 {"device":"/dev/video0","type":"v4l2","label":"HDMI","capabilities":[],"status":"available"}],
               "saved_media":[{"path":"/var/lib/braid/media/a.mp4","name":"a.mp4","size_mb":42,"duration_s":120}],
               "stream_state":"live","cpu_percent":12.5,"mem_used_mb":180,"uptime_s":86400,
               "temperature_c":48.5}"#,
            &DeviceStatus {
                network_interfaces: vec![
                    NetworkInterface {
                        name: "wwan0".into(),
                        kind: InterfaceType::Cellular,
                        state: InterfaceState::Connected,
                        ip: Some("10.45.0.2".into()),
                        carrier: Some("T-Mobile".into()),
                        signal_dbm: Some(-72.0),
                        technology: Some("LTE".into()),
                        imei: None,
                        rsrp_dbm: None,
                        rsrq_db: None,
                        sinr_db: None,
                    },
                    NetworkInterface::new(
                        "eth0",
                        InterfaceType::Ethernet,
                        InterfaceState::Disconnected,
                    ),
                    NetworkInterface::new("wlan0", InterfaceType::Wifi, InterfaceState::Connecting),
                ],
                media_inputs: vec![
                    MediaInput {
                        device: "test".into(),
                        kind: MediaInputType::Test,
                        label: "Test pattern".into(),
                        capabilities: vec!["1920x1080@30".into(), "1280x720@30".into()],
                        status: MediaInputStatus::Busy,
                    },
                    MediaInput {
                        device: "/dev/video0".into(),
                        kind: MediaInputType::V4l2,
                        label: "HDMI".into(),
                        capabilities: vec![],
                        status: MediaInputStatus::Available,
                    },
                ],
                saved_media: vec![SavedMedia {
                    path: "/var/lib/braid/media/a.mp4".into(),
                    name: "a.mp4".into(),
                    size_mb: 42,
                    duration_s: 120,
                }],
                stream_state: StreamState::Live,
                cpu_percent: 12.5,
                mem_used_mb: 180,
                uptime_s: 86400,
                temperature_c: Some(48.5),
            },
        );
    }

    #[test]
    fn golden_device_status_minimal() {
        assert_golden(
            r#"{"network_interfaces":[],"media_inputs":[],"saved_media":[],"stream_state":"idle",
                "cpu_percent":0.0,"mem_used_mb":0,"uptime_s":5}"#,
            &DeviceStatus {
                network_interfaces: vec![],
                media_inputs: vec![],
                saved_media: vec![],
                stream_state: StreamState::Idle,
                cpu_percent: 0.0,
                mem_used_mb: 0,
                uptime_s: 5,
                temperature_c: None,
            },
        );
    }
}
