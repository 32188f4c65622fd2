//! Typed zbus proxies for the parts of ModemManager's D-Bus API (1.x) that
//! `device.status` uses. Interface and property names, D-Bus types and units are
//! those of the ModemManager API reference ("org.freedesktop.ModemManager1.*",
//! ModemManager 1.20): only what Braid reads is declared.
//!
//! Every proxy is built with property caching (zbus's default): zbus fetches the
//! properties once (`GetAll`) and keeps them up to date from `PropertiesChanged`,
//! so reading a `cached_*` value costs no D-Bus round trip.

use std::collections::HashMap;

use zbus::proxy;
use zbus::{OwnedObjectPath, OwnedVariant};

/// Well-known bus name of ModemManager.
pub const MM_SERVICE: &str = "org.freedesktop.ModemManager1";
/// Object path of the manager object (also the ObjectManager root).
pub const MM_PATH: &str = "/org/freedesktop/ModemManager1";
/// `org.freedesktop.ModemManager1.Modem`.
pub const MODEM_IFACE: &str = "org.freedesktop.ModemManager1.Modem";
/// `org.freedesktop.ModemManager1.Modem.Modem3gpp`.
pub const MODEM_3GPP_IFACE: &str = "org.freedesktop.ModemManager1.Modem.Modem3gpp";
/// `org.freedesktop.ModemManager1.Modem.Signal`.
pub const SIGNAL_IFACE: &str = "org.freedesktop.ModemManager1.Modem.Signal";
/// `org.freedesktop.ModemManager1.Bearer`.
pub const BEARER_IFACE: &str = "org.freedesktop.ModemManager1.Bearer";

/// `org.freedesktop.ModemManager1`: the manager object.
#[proxy(
    interface = "org.freedesktop.ModemManager1",
    default_service = "org.freedesktop.ModemManager1",
    default_path = "/org/freedesktop/ModemManager1"
)]
pub trait ModemManager1 {
    /// Daemon version, e.g. `1.20.4`.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
}

/// `org.freedesktop.ModemManager1.Modem`: one modem object
/// (`/org/freedesktop/ModemManager1/Modem/N`).
#[proxy(
    interface = "org.freedesktop.ModemManager1.Modem",
    default_service = "org.freedesktop.ModemManager1"
)]
pub trait Modem {
    /// `MMModemState` (i32): -1 failed … 11 connected.
    #[zbus(property)]
    fn state(&self) -> zbus::Result<i32>;
    /// `MMModemStateFailedReason` when `State` is failed.
    #[zbus(property)]
    fn state_failed_reason(&self) -> zbus::Result<u32>;
    /// `MMModemAccessTechnology` bit mask of the current radio technologies.
    #[zbus(property)]
    fn access_technologies(&self) -> zbus::Result<u32>;
    /// Signal quality in percent (0–100) and whether it is recent.
    #[zbus(property)]
    fn signal_quality(&self) -> zbus::Result<(u32, bool)>;
    /// Bearer objects of the modem.
    #[zbus(property)]
    fn bearers(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
    /// Ports as (name, `MMModemPortType`); type 2 is a network interface.
    #[zbus(property)]
    fn ports(&self) -> zbus::Result<Vec<(String, u32)>>;
    /// Manufacturer, e.g. `Quectel`.
    #[zbus(property)]
    fn manufacturer(&self) -> zbus::Result<String>;
    /// Model, e.g. `EM12-G`.
    #[zbus(property)]
    fn model(&self) -> zbus::Result<String>;
    /// IMEI / ESN / MEID.
    #[zbus(property)]
    fn equipment_identifier(&self) -> zbus::Result<String>;
}

/// `org.freedesktop.ModemManager1.Modem.Modem3gpp` (present once the modem is
/// enabled on a 3GPP network).
#[proxy(
    interface = "org.freedesktop.ModemManager1.Modem.Modem3gpp",
    default_service = "org.freedesktop.ModemManager1"
)]
pub trait Modem3gpp {
    /// IMEI.
    #[zbus(property)]
    fn imei(&self) -> zbus::Result<String>;
    /// Operator name, e.g. `Vodafone`.
    #[zbus(property)]
    fn operator_name(&self) -> zbus::Result<String>;
    /// MCC+MNC, e.g. `26202`.
    #[zbus(property)]
    fn operator_code(&self) -> zbus::Result<String>;
    /// `MMModem3gppRegistrationState`: 1 home, 5 roaming, …
    #[zbus(property)]
    fn registration_state(&self) -> zbus::Result<u32>;
}

/// `org.freedesktop.ModemManager1.Modem.Signal`: extended signal figures, each a
/// dictionary of doubles (`rssi`, `rsrp`, `rsrq`, `snr`, `rscp`, `ecio`, in dBm or
/// dB), refreshed every `Rate` seconds once [`SignalProxy::setup`] enabled it.
#[proxy(
    interface = "org.freedesktop.ModemManager1.Modem.Signal",
    default_service = "org.freedesktop.ModemManager1"
)]
pub trait Signal {
    /// Enable (rate > 0, seconds) or disable (0) extended signal refresh.
    fn setup(&self, rate: u32) -> zbus::Result<()>;
    /// Refresh period, s (0: disabled).
    #[zbus(property)]
    fn rate(&self) -> zbus::Result<u32>;
    /// LTE: `rssi`, `rsrp`, `rsrq`, `snr`.
    #[zbus(property)]
    fn lte(&self) -> zbus::Result<HashMap<String, OwnedVariant>>;
    /// 5G NR: `rsrp`, `rsrq`, `snr`.
    #[zbus(property, name = "Nr5g")]
    fn nr5g(&self) -> zbus::Result<HashMap<String, OwnedVariant>>;
    /// UMTS: `rssi`, `rscp`, `ecio`.
    #[zbus(property)]
    fn umts(&self) -> zbus::Result<HashMap<String, OwnedVariant>>;
    /// GSM: `rssi`.
    #[zbus(property)]
    fn gsm(&self) -> zbus::Result<HashMap<String, OwnedVariant>>;
}

/// `org.freedesktop.ModemManager1.Bearer`: a data connection of a modem.
#[proxy(
    interface = "org.freedesktop.ModemManager1.Bearer",
    default_service = "org.freedesktop.ModemManager1"
)]
pub trait Bearer {
    /// Network interface carrying the data, e.g. `wwan0` (empty when not connected).
    #[zbus(property)]
    fn interface(&self) -> zbus::Result<String>;
    /// Whether the bearer is connected.
    #[zbus(property)]
    fn connected(&self) -> zbus::Result<bool>;
    /// IPv4 settings: `address` (s), `prefix` (u), `gateway` (s), `method` (u).
    #[zbus(property, name = "Ip4Config")]
    fn ip4_config(&self) -> zbus::Result<HashMap<String, OwnedVariant>>;
}
