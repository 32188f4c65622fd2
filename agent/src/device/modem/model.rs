//! What Braid knows about one modem, built from ModemManager's properties, and
//! the pure rules on top of it: ModemManager enums in the field's words, the
//! `network_interfaces[]` entry of a modem (PROTOCOL.md §4), which changes are
//! worth an immediate `device.status`, and which raise `modem` events
//! (PROTOCOL.md §6). No D-Bus here: `super::watch` fills [`ModemInfo`].
//!
//! Enum values are those of the ModemManager API reference ("Flags and
//! Enumerations", ModemManager 1.20): `MMModemState`, `MMModemAccessTechnology`,
//! `MMModem3gppRegistrationState`, `MMModemPortType`.

use std::collections::HashMap;

use braid_protocol::device::{InterfaceState, InterfaceType, NetworkInterface};
use braid_protocol::event::{Category, Event, Severity};
use serde_json::json;
use zbus::OwnedVariant;

/// `MMModemState` values Braid reacts to.
pub mod state {
    /// `MM_MODEM_STATE_FAILED`.
    pub const FAILED: i32 = -1;
    /// `MM_MODEM_STATE_LOCKED` (SIM PIN/PUK needed).
    pub const LOCKED: i32 = 2;
    /// `MM_MODEM_STATE_REGISTERED`.
    pub const REGISTERED: i32 = 8;
    /// `MM_MODEM_STATE_CONNECTED`.
    pub const CONNECTED: i32 = 11;
}

/// `MM_MODEM_PORT_TYPE_NET`: a port that is a network interface (`wwan0`).
pub const PORT_TYPE_NET: u32 = 2;

/// Extended signal figures of a modem (ModemManager's Signal interface).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SignalFigures {
    /// RSSI, dBm (LTE, else UMTS, else GSM).
    pub rssi_dbm: Option<f64>,
    /// RSRP, dBm (LTE, or 5G NR on a standalone 5G cell).
    pub rsrp_dbm: Option<f64>,
    /// RSRQ, dB.
    pub rsrq_db: Option<f64>,
    /// SINR, dB (ModemManager's `snr`).
    pub sinr_db: Option<f64>,
}

/// One bearer (data connection) of a modem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerInfo {
    /// Data interface, e.g. `wwan0`; `None` when ModemManager reports none.
    pub interface: Option<String>,
    /// Whether the bearer is connected.
    pub connected: bool,
    /// IPv4 address and prefix length from `Ip4Config`.
    pub ipv4: Option<(String, u32)>,
}

/// One modem as ModemManager describes it. `None`/empty where ModemManager does
/// not (yet) have the property.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModemInfo {
    /// D-Bus object path, e.g. `/org/freedesktop/ModemManager1/Modem/0`.
    pub path: String,
    /// Manufacturer, e.g. `Quectel`.
    pub manufacturer: Option<String>,
    /// Model, e.g. `EM12-G`.
    pub model: Option<String>,
    /// `MMModemState`.
    pub state: Option<i32>,
    /// `MMModemStateFailedReason` (meaningful when failed).
    pub failed_reason: Option<u32>,
    /// `MMModemAccessTechnology` bit mask (0: unknown).
    pub access_technologies: u32,
    /// Signal quality, percent (0–100).
    pub signal_percent: Option<u32>,
    /// IMEI (3GPP), else the equipment identifier.
    pub imei: Option<String>,
    /// Operator name.
    pub operator: Option<String>,
    /// `MMModem3gppRegistrationState`.
    pub registration: Option<u32>,
    /// Extended signal figures.
    pub signal: SignalFigures,
    /// Ports of type net (`wwan0`).
    pub net_ports: Vec<String>,
    /// Bearers in ModemManager's order.
    pub bearers: Vec<BearerInfo>,
}

impl ModemInfo {
    /// Modem number: the last component of the object path (`0` for `…/Modem/0`).
    pub fn index(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// `Quectel EM12-G`, or whichever of the two is known.
    pub fn model_name(&self) -> Option<String> {
        let parts: Vec<&str> = [self.manufacturer.as_deref(), self.model.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// ModemManager's state word (see [`state_word`]); `unknown` when absent.
    pub fn state_word(&self) -> &'static str {
        state_word(self.state.unwrap_or(0))
    }

    /// Radio technology in the field's words (see [`technology`]).
    pub fn technology(&self) -> Option<&'static str> {
        technology(self.access_technologies)
    }

    /// Whether the modem is registered on a visited network (3GPP registration
    /// `roaming`, `roaming-sms-only`, `roaming-csfb-not-preferred`); `None` without
    /// a 3GPP registration state.
    pub fn roaming(&self) -> Option<bool> {
        self.registration.map(|r| matches!(r, 5 | 7 | 10))
    }

    /// Network interfaces of the modem: bearer interfaces (connected first), then
    /// net ports; no duplicates.
    pub fn interfaces(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let bearers = self
            .bearers
            .iter()
            .filter(|b| b.connected)
            .chain(self.bearers.iter().filter(|b| !b.connected));
        for name in bearers
            .filter_map(|b| b.interface.clone())
            .chain(self.net_ports.iter().cloned())
        {
            if !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// Name of the modem's `network_interfaces[]` entry: its first interface
    /// (the connected bearer's, else a net port), else `modemN`.
    pub fn entry_name(&self) -> String {
        self.interfaces()
            .into_iter()
            .next()
            .unwrap_or_else(|| format!("modem{}", self.index()))
    }

    /// `Modem 0 (Quectel EM12-G, wwan0)`: how events name the modem.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.model_name() {
            parts.push(m);
        }
        if let Some(i) = self.interfaces().into_iter().next() {
            parts.push(i);
        }
        if parts.is_empty() {
            format!("Modem {}", self.index())
        } else {
            format!("Modem {} ({})", self.index(), parts.join(", "))
        }
    }

    /// Link state from the modem state: `connected` when ModemManager says
    /// connected, `connecting` while it is getting there (initializing, enabling,
    /// enabled, searching, registered, connecting, disconnecting), `disconnected`
    /// otherwise (failed, unknown, locked, disabled, disabling).
    pub fn link_state(&self) -> InterfaceState {
        match self.state.unwrap_or(0) {
            state::CONNECTED => InterfaceState::Connected,
            1 | 5..=10 => InterfaceState::Connecting,
            _ => InterfaceState::Disconnected,
        }
    }

    /// IPv4 address of the connected bearer (else any bearer), dotted quad.
    pub fn bearer_ipv4(&self) -> Option<&(String, u32)> {
        self.bearers
            .iter()
            .filter(|b| b.connected)
            .chain(self.bearers.iter())
            .find_map(|b| b.ipv4.as_ref())
    }

    /// The modem's own `network_interfaces[]` entry (type `cellular`, named by
    /// [`ModemInfo::entry_name`]); the caller joins it with the kernel's view of
    /// the interface (address, link state).
    pub fn to_interface(&self) -> NetworkInterface {
        let mut entry = NetworkInterface::new(
            self.entry_name(),
            InterfaceType::Cellular,
            self.link_state(),
        );
        entry.carrier = self.operator.clone().filter(|o| !o.is_empty());
        entry.technology = self.technology().map(str::to_owned);
        entry.imei = self.imei.clone().filter(|i| !i.is_empty());
        entry.signal_dbm = self.signal.rssi_dbm;
        entry.rsrp_dbm = self.signal.rsrp_dbm;
        entry.rsrq_db = self.signal.rsrq_db;
        entry.sinr_db = self.signal.sinr_db;
        entry.signal_percent = self.signal_percent;
        entry.roaming = self.roaming();
        entry.modem_state = Some(self.state_word().to_owned());
        entry.modem_model = self.model_name();
        if let Some((ip, prefix)) = self.bearer_ipv4() {
            entry.ip = Some(ip.clone());
            entry.addresses = vec![format!("{ip}/{prefix}")];
        }
        entry
    }
}

/// `MMModemState` as a word: `failed`, `unknown`, `initializing`, `locked`,
/// `disabled`, `disabling`, `enabling`, `enabled`, `searching`, `registered`,
/// `disconnecting`, `connecting`, `connected` (`unknown` for other values).
pub fn state_word(state: i32) -> &'static str {
    match state {
        -1 => "failed",
        1 => "initializing",
        2 => "locked",
        3 => "disabled",
        4 => "disabling",
        5 => "enabling",
        6 => "enabled",
        7 => "searching",
        8 => "registered",
        9 => "disconnecting",
        10 => "connecting",
        11 => "connected",
        _ => "unknown",
    }
}

/// `MMModemAccessTechnology` bits in the field's words, best technology first:
/// 5G NR with LTE → `5G-NSA`, 5G NR alone → `5G-SA`, `LTE`, `LTE-M`, `NB-IoT`,
/// `HSPA+`, `HSPA` (HSPA, HSDPA, HSUPA), `UMTS`, `EDGE`, `GPRS`, `GSM`, `EVDO`,
/// `1xRTT`, `POTS`; `None` for 0 (unknown).
pub fn technology(bits: u32) -> Option<&'static str> {
    const NR: u32 = 1 << 15;
    const LTE: u32 = 1 << 14;
    let has = |mask: u32| bits & mask != 0;
    Some(if has(NR) && has(LTE) {
        "5G-NSA"
    } else if has(NR) {
        "5G-SA"
    } else if has(LTE) {
        "LTE"
    } else if has(1 << 16) {
        "LTE-M"
    } else if has(1 << 17) {
        "NB-IoT"
    } else if has(1 << 9) {
        "HSPA+"
    } else if has((1 << 6) | (1 << 7) | (1 << 8)) {
        "HSPA"
    } else if has(1 << 5) {
        "UMTS"
    } else if has(1 << 4) {
        "EDGE"
    } else if has(1 << 3) {
        "GPRS"
    } else if has((1 << 1) | (1 << 2)) {
        "GSM"
    } else if has((1 << 11) | (1 << 12) | (1 << 13)) {
        "EVDO"
    } else if has(1 << 10) {
        "1xRTT"
    } else if has(1) {
        "POTS"
    } else {
        return None;
    })
}

/// A finite number from a ModemManager dictionary value (double, or an integer
/// from a lenient implementation), rounded to 0.1.
pub fn number(dict: &HashMap<String, OwnedVariant>, key: &str) -> Option<f64> {
    let v = dict.get(key)?;
    let x = f64::try_from(v)
        .ok()
        .or_else(|| i32::try_from(v).ok().map(f64::from))
        .or_else(|| u32::try_from(v).ok().map(f64::from))
        .or_else(|| i64::try_from(v).ok().map(|i| i as f64))?;
    x.is_finite().then(|| (x * 10.0).round() / 10.0)
}

/// Signal figures from the Signal interface's dictionaries. On a standalone 5G
/// cell (`access_technologies` has NR without LTE) RSRP/RSRQ/SINR come from `nr5g`
/// first, otherwise from `lte` first (on 5G-NSA the LTE anchor carries the
/// control plane); the other fills gaps. RSSI: LTE, else UMTS, else GSM.
pub fn signal_figures(
    access_technologies: u32,
    lte: &HashMap<String, OwnedVariant>,
    nr5g: &HashMap<String, OwnedVariant>,
    umts: &HashMap<String, OwnedVariant>,
    gsm: &HashMap<String, OwnedVariant>,
) -> SignalFigures {
    let sa = technology(access_technologies) == Some("5G-SA");
    let (first, second) = if sa { (nr5g, lte) } else { (lte, nr5g) };
    let pick = |key: &str| number(first, key).or_else(|| number(second, key));
    SignalFigures {
        rssi_dbm: number(lte, "rssi")
            .or_else(|| number(umts, "rssi"))
            .or_else(|| number(gsm, "rssi")),
        rsrp_dbm: pick("rsrp"),
        rsrq_db: pick("rsrq"),
        sinr_db: pick("snr").or_else(|| pick("sinr")),
    }
}

/// Whether going from `old` to `new` is worth a `device.status` right away
/// (PROTOCOL.md §4 "within 1 s of a change"): anything but the signal figures, or
/// a signal move an operator would notice — quality by 10 points or more, RSSI or
/// RSRP by 6 dB or more, RSRQ by 3 dB, SINR by 5 dB, or a figure appearing or
/// vanishing. Smaller signal moves wait for the periodic report.
pub fn significant_change(old: &ModemInfo, new: &ModemInfo) -> bool {
    let strip = |m: &ModemInfo| ModemInfo {
        signal_percent: None,
        signal: SignalFigures::default(),
        ..m.clone()
    };
    if strip(old) != strip(new) {
        return true;
    }
    let moved = |a: Option<f64>, b: Option<f64>, step: f64| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() >= step,
        (None, None) => false,
        _ => true,
    };
    moved(
        old.signal_percent.map(f64::from),
        new.signal_percent.map(f64::from),
        10.0,
    ) || moved(old.signal.rssi_dbm, new.signal.rssi_dbm, 6.0)
        || moved(old.signal.rsrp_dbm, new.signal.rsrp_dbm, 6.0)
        || moved(old.signal.rsrq_db, new.signal.rsrq_db, 3.0)
        || moved(old.signal.sinr_db, new.signal.sinr_db, 5.0)
}

/// `details` of modem events: object path, IMEI, interface.
fn details(m: &ModemInfo) -> serde_json::Value {
    json!({
        "modem": m.path,
        "imei": m.imei,
        "interface": m.interfaces().into_iter().next(),
        "state": m.state_word(),
    })
}

fn event(severity: Severity, message: String, m: &ModemInfo) -> Event {
    Event {
        details: Some(details(m)),
        ..Event::new(severity, Category::Modem, message)
    }
}

/// `modem` events (PROTOCOL.md §6) for one modem going from `old` to `new`
/// (`None`: not there). Raised on transitions only:
///
/// | transition | severity | message |
/// |---|---|---|
/// | appeared (while ModemManager runs) | info | `Modem 0 (…) added` |
/// | removed | warning | `Modem 0 (…) removed` |
/// | → connected | info | `Modem 0 (…) connected (LTE, Vodafone)` |
/// | connected → other | warning | `Modem 0 (…) disconnected (registered)` |
/// | → failed | critical | `Modem 0 (…) failed (reason N)` |
/// | → locked | warning | `Modem 0 (…) is locked (SIM PIN or PUK needed)` |
/// | not roaming → roaming | warning | `Modem 0 (…) is roaming on Operator` |
/// | roaming → home | info | `Modem 0 (…) is back on its home network` |
pub fn modem_events(old: Option<&ModemInfo>, new: Option<&ModemInfo>) -> Vec<Event> {
    match (old, new) {
        (None, None) => Vec::new(),
        (None, Some(m)) => vec![event(Severity::Info, format!("{} added", m.label()), m)],
        (Some(m), None) => vec![event(
            Severity::Warning,
            format!("{} removed", m.label()),
            m,
        )],
        (Some(old), Some(new)) => {
            let mut out = Vec::new();
            let label = new.label();
            if old.state != new.state {
                match new.state {
                    Some(state::CONNECTED) => {
                        let what: Vec<String> = [
                            new.technology().map(str::to_owned),
                            new.operator.clone().filter(|o| !o.is_empty()),
                        ]
                        .into_iter()
                        .flatten()
                        .collect();
                        let what = if what.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", what.join(", "))
                        };
                        out.push(event(
                            Severity::Info,
                            format!("{label} connected{what}"),
                            new,
                        ));
                    }
                    Some(state::FAILED) => out.push(event(
                        Severity::Critical,
                        format!("{label} failed (reason {})", new.failed_reason.unwrap_or(0)),
                        new,
                    )),
                    Some(state::LOCKED) => out.push(event(
                        Severity::Warning,
                        format!("{label} is locked (SIM PIN or PUK needed)"),
                        new,
                    )),
                    _ if old.state == Some(state::CONNECTED) => out.push(event(
                        Severity::Warning,
                        format!("{label} disconnected ({})", new.state_word()),
                        new,
                    )),
                    _ => {}
                }
            }
            match (old.roaming(), new.roaming()) {
                (Some(false) | None, Some(true)) => out.push(event(
                    Severity::Warning,
                    format!(
                        "{label} is roaming on {}",
                        new.operator.as_deref().unwrap_or("a visited network")
                    ),
                    new,
                )),
                (Some(true), Some(false)) => out.push(event(
                    Severity::Info,
                    format!("{label} is back on its home network"),
                    new,
                )),
                _ => {}
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(pairs: &[(&str, f64)]) -> HashMap<String, OwnedVariant> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OwnedVariant::from(*v)))
            .collect()
    }

    fn modem() -> ModemInfo {
        ModemInfo {
            path: "/org/freedesktop/ModemManager1/Modem/3".into(),
            manufacturer: Some("Quectel".into()),
            model: Some("EM12-G".into()),
            state: Some(state::CONNECTED),
            access_technologies: 1 << 14,
            signal_percent: Some(70),
            imei: Some("490154203237518".into()),
            operator: Some("Vodafone".into()),
            registration: Some(1),
            signal: SignalFigures {
                rssi_dbm: Some(-65.0),
                rsrp_dbm: Some(-95.0),
                rsrq_db: Some(-10.0),
                sinr_db: Some(12.0),
            },
            net_ports: vec!["wwan0".into()],
            bearers: vec![BearerInfo {
                interface: Some("wwan0".into()),
                connected: true,
                ipv4: Some(("10.45.0.2".into(), 30)),
            }],
            ..ModemInfo::default()
        }
    }

    #[test]
    fn technologies_in_field_words() {
        assert_eq!(technology(0), None);
        assert_eq!(technology((1 << 15) | (1 << 14)), Some("5G-NSA"));
        assert_eq!(technology(1 << 15), Some("5G-SA"));
        assert_eq!(technology((1 << 14) | (1 << 8)), Some("LTE"));
        assert_eq!(technology(1 << 9), Some("HSPA+"));
        assert_eq!(technology(1 << 6), Some("HSPA"));
        assert_eq!(technology(1 << 5), Some("UMTS"));
        assert_eq!(technology(1 << 4), Some("EDGE"));
        assert_eq!(technology(1 << 3), Some("GPRS"));
        assert_eq!(technology(1 << 1), Some("GSM"));
        assert_eq!(technology(1 << 16), Some("LTE-M"));
        assert_eq!(technology(1 << 12), Some("EVDO"));
    }

    #[test]
    fn state_words_and_link_states() {
        let words: Vec<_> = (-1..=12).map(state_word).collect();
        assert_eq!(
            words,
            [
                "failed",
                "unknown",
                "initializing",
                "locked",
                "disabled",
                "disabling",
                "enabling",
                "enabled",
                "searching",
                "registered",
                "disconnecting",
                "connecting",
                "connected",
                "unknown"
            ]
        );
        let mut m = modem();
        for (s, want) in [
            (11, InterfaceState::Connected),
            (8, InterfaceState::Connecting),
            (1, InterfaceState::Connecting),
            (2, InterfaceState::Disconnected),
            (-1, InterfaceState::Disconnected),
            (3, InterfaceState::Disconnected),
        ] {
            m.state = Some(s);
            assert_eq!(m.link_state(), want, "state {s}");
        }
    }

    #[test]
    fn signal_prefers_lte_on_nsa_and_nr_on_sa() {
        let lte = dict(&[
            ("rssi", -61.04),
            ("rsrp", -95.0),
            ("rsrq", -11.0),
            ("snr", 13.5),
        ]);
        let nr = dict(&[("rsrp", -88.0), ("rsrq", -9.0), ("snr", 20.0)]);
        let none = HashMap::new();
        let nsa = signal_figures((1 << 15) | (1 << 14), &lte, &nr, &none, &none);
        assert_eq!(
            nsa,
            SignalFigures {
                rssi_dbm: Some(-61.0),
                rsrp_dbm: Some(-95.0),
                rsrq_db: Some(-11.0),
                sinr_db: Some(13.5)
            }
        );
        let sa = signal_figures(1 << 15, &none, &nr, &none, &none);
        assert_eq!(sa.rsrp_dbm, Some(-88.0));
        assert_eq!(sa.sinr_db, Some(20.0));
        assert_eq!(sa.rssi_dbm, None);
        let umts = dict(&[("rssi", -77.0), ("ecio", -6.0)]);
        let gsm = dict(&[("rssi", -90.0)]);
        let u = signal_figures(1 << 5, &none, &none, &umts, &gsm);
        assert_eq!(u.rssi_dbm, Some(-77.0));
        assert_eq!(u.rsrp_dbm, None);
        let nan = dict(&[("rssi", f64::NAN)]);
        assert_eq!(
            signal_figures(1 << 14, &nan, &none, &none, &none).rssi_dbm,
            None
        );
        let ints: HashMap<String, OwnedVariant> =
            [("rsrp".to_owned(), OwnedVariant::from(-101i32))].into();
        assert_eq!(
            signal_figures(1 << 14, &ints, &none, &none, &none).rsrp_dbm,
            Some(-101.0)
        );
    }

    #[test]
    fn interface_entry_of_a_connected_modem() {
        let m = modem();
        let e = m.to_interface();
        assert_eq!(e.name, "wwan0");
        assert_eq!(e.kind, InterfaceType::Cellular);
        assert_eq!(e.state, InterfaceState::Connected);
        assert_eq!(e.ip.as_deref(), Some("10.45.0.2"));
        assert_eq!(e.addresses, vec!["10.45.0.2/30".to_owned()]);
        assert_eq!(e.carrier.as_deref(), Some("Vodafone"));
        assert_eq!(e.technology.as_deref(), Some("LTE"));
        assert_eq!(e.imei.as_deref(), Some("490154203237518"));
        assert_eq!(e.signal_dbm, Some(-65.0));
        assert_eq!(e.rsrp_dbm, Some(-95.0));
        assert_eq!(e.roaming, Some(false));
        assert_eq!(e.modem_state.as_deref(), Some("connected"));
        assert_eq!(e.modem_model.as_deref(), Some("Quectel EM12-G"));
        assert_eq!(m.label(), "Modem 3 (Quectel EM12-G, wwan0)");
    }

    #[test]
    fn modem_without_interface_is_named_by_index() {
        let m = ModemInfo {
            path: "/org/freedesktop/ModemManager1/Modem/7".into(),
            state: Some(state::LOCKED),
            ..ModemInfo::default()
        };
        assert_eq!(m.entry_name(), "modem7");
        assert_eq!(m.label(), "Modem 7");
        let e = m.to_interface();
        assert_eq!(e.state, InterfaceState::Disconnected);
        assert_eq!(e.modem_state.as_deref(), Some("locked"));
        assert_eq!(e.roaming, None);
        assert_eq!(e.ip, None);
    }

    #[test]
    fn interfaces_connected_bearer_first_then_ports() {
        let m = ModemInfo {
            net_ports: vec!["wwan1".into(), "wwan0".into()],
            bearers: vec![
                BearerInfo {
                    interface: Some("wwan1".into()),
                    connected: false,
                    ipv4: None,
                },
                BearerInfo {
                    interface: Some("wwan0".into()),
                    connected: true,
                    ipv4: None,
                },
            ],
            ..ModemInfo::default()
        };
        assert_eq!(m.interfaces(), vec!["wwan0".to_owned(), "wwan1".to_owned()]);
    }

    #[test]
    fn small_signal_moves_wait_big_ones_and_states_do_not() {
        let a = modem();
        let mut b = a.clone();
        b.signal_percent = Some(75);
        b.signal.rsrp_dbm = Some(-98.0);
        assert!(!significant_change(&a, &b));
        b.signal_percent = Some(55);
        assert!(significant_change(&a, &b));
        let mut c = a.clone();
        c.signal.rsrp_dbm = Some(-110.0);
        assert!(significant_change(&a, &c));
        let mut d = a.clone();
        d.signal.sinr_db = None;
        assert!(significant_change(&a, &d));
        let mut e = a.clone();
        e.state = Some(state::REGISTERED);
        assert!(significant_change(&a, &e));
        let mut f = a.clone();
        f.operator = Some("O2".into());
        assert!(significant_change(&a, &f));
    }

    #[test]
    fn events_on_transitions_only() {
        let a = modem();
        let added = modem_events(None, Some(&a));
        assert_eq!(added.len(), 1);
        assert_eq!(added[0].severity, Severity::Info);
        assert_eq!(added[0].category, Category::Modem);
        assert_eq!(added[0].message, "Modem 3 (Quectel EM12-G, wwan0) added");
        assert_eq!(
            added[0].details.as_ref().unwrap()["imei"],
            json!("490154203237518")
        );
        let removed = modem_events(Some(&a), None);
        assert_eq!(removed[0].severity, Severity::Warning);
        assert_eq!(
            removed[0].message,
            "Modem 3 (Quectel EM12-G, wwan0) removed"
        );
        assert!(modem_events(Some(&a), Some(&a)).is_empty());

        let mut down = a.clone();
        down.state = Some(state::REGISTERED);
        let ev = modem_events(Some(&a), Some(&down));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].severity, Severity::Warning);
        assert!(
            ev[0].message.ends_with("disconnected (registered)"),
            "{ev:?}"
        );
        let ev = modem_events(Some(&down), Some(&a));
        assert_eq!(
            ev[0].message,
            "Modem 3 (Quectel EM12-G, wwan0) connected (LTE, Vodafone)"
        );
        let mut searching = down.clone();
        searching.state = Some(7);
        assert!(modem_events(Some(&down), Some(&searching)).is_empty());
        let mut failed = down.clone();
        failed.state = Some(state::FAILED);
        failed.failed_reason = Some(2);
        let ev = modem_events(Some(&down), Some(&failed));
        assert_eq!(ev[0].severity, Severity::Critical);
        assert!(ev[0].message.ends_with("failed (reason 2)"));

        let mut roam = a.clone();
        roam.registration = Some(5);
        let ev = modem_events(Some(&a), Some(&roam));
        assert_eq!(ev.len(), 1);
        assert_eq!(
            ev[0].message,
            "Modem 3 (Quectel EM12-G, wwan0) is roaming on Vodafone"
        );
        let ev = modem_events(Some(&roam), Some(&a));
        assert_eq!(ev[0].severity, Severity::Info);
    }
}
