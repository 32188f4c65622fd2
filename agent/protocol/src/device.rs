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
    /// Whether ModemManager answers on the system D-Bus (`running`), so that "no
    /// cellular entries" can be told apart from "modem status unavailable"
    /// (`absent`). Braid extension of PROTOCOL.md §4; absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modem_manager: Option<ModemManagerState>,
}

/// `device.status.modem_manager`: can the agent see the modems?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModemManagerState {
    /// `org.freedesktop.ModemManager1` has an owner on the system bus; the cellular
    /// entries are complete.
    Running,
    /// ModemManager (or the system D-Bus itself) is not there: cellular entries
    /// carry no modem figures until it comes back.
    Absent,
}

impl Message for DeviceStatus {
    const TYPE: &'static str = "device.status";
}

/// One entry of `network_interfaces[]` (PROTOCOL.md §4). The modem fields are
/// absent unless the interface is a cellular modem known to ModemManager; a modem
/// with no network interface yet is listed under its net port or `modemN`.
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
    /// Every address of the interface in CIDR notation (`10.45.0.2/30`,
    /// `2001:db8::5/64`), IPv4 first. Braid extension of PROTOCOL.md §4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// ModemManager's signal quality, percent (0–100). Braid extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_percent: Option<u32>,
    /// Registered on a visited network (3GPP registration state `roaming`).
    /// Braid extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roaming: Option<bool>,
    /// ModemManager's modem state word: `failed`, `unknown`, `initializing`,
    /// `locked`, `disabled`, `disabling`, `enabling`, `enabled`, `searching`,
    /// `registered`, `disconnecting`, `connecting`, `connected`. Braid extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modem_state: Option<String>,
    /// Manufacturer and model of the modem, e.g. `Quectel EM12-G`. Braid extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modem_model: Option<String>,
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
            addresses: Vec::new(),
            signal_percent: None,
            roaming: None,
            modem_state: None,
            modem_model: None,
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
    /// Modes as `WIDTHxHEIGHT@FPS`, e.g. `1920x1080@30` (`1920x1080@29.97` for
    /// fractional rates), over all pixel formats, largest first.
    pub capabilities: Vec<String>,
    /// Whether it can be used: `busy` when a stream of this agent or another
    /// process holds it.
    pub status: MediaInputStatus,
    /// The same modes per pixel format (V4L2 only). Braid extension of
    /// PROTOCOL.md §4.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub formats: Vec<CaptureFormat>,
    /// Why the device could not be queried (e.g. `permission denied`); the entry
    /// is still listed. Braid extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One pixel format of a capture device (`media_inputs[].formats[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureFormat {
    /// V4L2 FourCC, e.g. `YUYV`, `MJPG`, `NV12`.
    pub fourcc: String,
    /// The driver's description, e.g. `Motion-JPEG`.
    pub description: String,
    /// Modes as `WIDTHxHEIGHT@FPS`, largest first.
    pub capabilities: Vec<String>,
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
    /// Why the file could not be read or probed (e.g. `permission denied`, `not a
    /// media file`); the file is still listed. Braid extension of PROTOCOL.md §4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
                        ..NetworkInterface::new(
                            "",
                            InterfaceType::Cellular,
                            InterfaceState::Connected,
                        )
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
                        formats: vec![],
                        error: None,
                    },
                    MediaInput {
                        device: "/dev/video0".into(),
                        kind: MediaInputType::V4l2,
                        label: "HDMI".into(),
                        capabilities: vec![],
                        status: MediaInputStatus::Available,
                        formats: vec![],
                        error: None,
                    },
                ],
                saved_media: vec![SavedMedia {
                    path: "/var/lib/braid/media/a.mp4".into(),
                    name: "a.mp4".into(),
                    size_mb: 42,
                    duration_s: 120,
                    error: None,
                }],
                stream_state: StreamState::Live,
                cpu_percent: 12.5,
                mem_used_mb: 180,
                uptime_s: 86400,
                temperature_c: Some(48.5),
                modem_manager: None,
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
                modem_manager: None,
            },
        );
    }

    #[test]
    fn golden_device_status_with_modems_capture_formats_and_errors() {
        assert_golden(
            r#"{"network_interfaces":[
                 {"name":"wwan0","type":"cellular","state":"connected","ip":"10.45.0.2",
                  "carrier":"Vodafone","signal_dbm":-61.0,"technology":"5G-NSA",
                  "imei":"490154203237518","rsrp_dbm":-95.0,"rsrq_db":-11.0,"sinr_db":13.5,
                  "addresses":["10.45.0.2/30"],"signal_percent":72,"roaming":false,
                  "modem_state":"connected","modem_model":"Quectel RM520N-GL"},
                 {"name":"modem3","type":"cellular","state":"disconnected",
                  "modem_state":"locked","modem_model":"Sierra EM7455"}],
               "media_inputs":[{"device":"/dev/video0","type":"v4l2","label":"Cam Link 4K",
                 "capabilities":["1920x1080@59.94","1920x1080@30"],"status":"busy",
                 "formats":[{"fourcc":"YUYV","description":"YUYV 4:2:2",
                   "capabilities":["1920x1080@59.94","1920x1080@30"]}]},
                 {"device":"/dev/video2","type":"v4l2","label":"video2","capabilities":[],
                  "status":"available","error":"cannot open /dev/video2: permission denied"}],
               "saved_media":[{"path":"/m/notes.txt","name":"notes.txt","size_mb":0,"duration_s":0,
                 "error":"not a media file"}],
               "stream_state":"idle","cpu_percent":3.5,"mem_used_mb":900,"uptime_s":60,
               "modem_manager":"running"}"#,
            &DeviceStatus {
                network_interfaces: vec![
                    NetworkInterface {
                        ip: Some("10.45.0.2".into()),
                        carrier: Some("Vodafone".into()),
                        signal_dbm: Some(-61.0),
                        technology: Some("5G-NSA".into()),
                        imei: Some("490154203237518".into()),
                        rsrp_dbm: Some(-95.0),
                        rsrq_db: Some(-11.0),
                        sinr_db: Some(13.5),
                        addresses: vec!["10.45.0.2/30".into()],
                        signal_percent: Some(72),
                        roaming: Some(false),
                        modem_state: Some("connected".into()),
                        modem_model: Some("Quectel RM520N-GL".into()),
                        ..NetworkInterface::new(
                            "wwan0",
                            InterfaceType::Cellular,
                            InterfaceState::Connected,
                        )
                    },
                    NetworkInterface {
                        modem_state: Some("locked".into()),
                        modem_model: Some("Sierra EM7455".into()),
                        ..NetworkInterface::new(
                            "modem3",
                            InterfaceType::Cellular,
                            InterfaceState::Disconnected,
                        )
                    },
                ],
                media_inputs: vec![
                    MediaInput {
                        device: "/dev/video0".into(),
                        kind: MediaInputType::V4l2,
                        label: "Cam Link 4K".into(),
                        capabilities: vec!["1920x1080@59.94".into(), "1920x1080@30".into()],
                        status: MediaInputStatus::Busy,
                        formats: vec![CaptureFormat {
                            fourcc: "YUYV".into(),
                            description: "YUYV 4:2:2".into(),
                            capabilities: vec!["1920x1080@59.94".into(), "1920x1080@30".into()],
                        }],
                        error: None,
                    },
                    MediaInput {
                        device: "/dev/video2".into(),
                        kind: MediaInputType::V4l2,
                        label: "video2".into(),
                        capabilities: vec![],
                        status: MediaInputStatus::Available,
                        formats: vec![],
                        error: Some("cannot open /dev/video2: permission denied".into()),
                    },
                ],
                saved_media: vec![SavedMedia {
                    path: "/m/notes.txt".into(),
                    name: "notes.txt".into(),
                    size_mb: 0,
                    duration_s: 0,
                    error: Some("not a media file".into()),
                }],
                stream_state: StreamState::Idle,
                cpu_percent: 3.5,
                mem_used_mb: 900,
                uptime_s: 60,
                temperature_c: None,
                modem_manager: Some(ModemManagerState::Running),
            },
        );
    }
}
