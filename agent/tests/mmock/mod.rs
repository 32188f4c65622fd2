//! A private system bus (`dbus-daemon` with a temporary config) and python-dbusmock's
//! `modemmanager` template on it, driven over D-Bus with the mock's own interface
//! (`org.freedesktop.DBus.Mock`: `AddObject`, `AddProperties`, `UpdateProperties`,
//! `RemoveObject`, `EmitSignal`). The modem objects follow ModemManager's D-Bus API
//! (interfaces `…Modem`, `…Modem.Modem3gpp`, `…Modem.Signal`, `…Bearer`).
//!
//! python-dbusmock comes from the venv `scripts/setup.sh` makes
//! (`target/dbusmock-venv`, or `$BRAID_DBUSMOCK_PYTHON`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zbus::{Connection, ObjectPath, Variant};

pub const MM: &str = "org.freedesktop.ModemManager1";
pub const MM_PATH: &str = "/org/freedesktop/ModemManager1";
pub const MOCK: &str = "org.freedesktop.DBus.Mock";
pub const MODEM: &str = "org.freedesktop.ModemManager1.Modem";
pub const GPP: &str = "org.freedesktop.ModemManager1.Modem.Modem3gpp";
pub const SIGNAL: &str = "org.freedesktop.ModemManager1.Modem.Signal";
pub const BEARER: &str = "org.freedesktop.ModemManager1.Bearer";
pub const OM: &str = "org.freedesktop.DBus.ObjectManager";

/// The python of the dbusmock venv.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("BRAID_DBUSMOCK_PYTHON") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dbusmock-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `make setup` (scripts/setup.sh makes the python-dbusmock venv)",
        p.display()
    );
    p
}

/// A private bus that plays the system bus.
pub struct SystemBus {
    child: Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl SystemBus {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("system_bus_socket");
        let config = dir.path().join("system.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1", "--nopidfile"])
            .stdout(Stdio::piped())
            // Only "Failed to set fd limit" noise when not privileged enough.
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian package dbus; run `make setup`)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon said {line:?}");
        Self {
            child,
            address,
            _dir: dir,
        }
    }

    pub async fn connect(&self) -> Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .build()
            .await
            .expect("connect to the private bus")
    }
}

impl Drop for SystemBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `python -m dbusmock --system -t modemmanager` on `bus`.
pub struct MockModemManager {
    child: Child,
    conn: Connection,
}

/// A modem as the tests describe it.
#[derive(Debug, Clone)]
pub struct ModemSpec {
    pub index: u32,
    pub manufacturer: &'static str,
    pub model: &'static str,
    pub imei: &'static str,
    pub operator: &'static str,
    /// `MMModemState`.
    pub state: i32,
    /// `MMModemAccessTechnology` bits.
    pub access: u32,
    pub quality: u32,
    /// `MMModem3gppRegistrationState`.
    pub registration: u32,
    /// Bearer interface and IPv4 address.
    pub iface: &'static str,
    pub ip: &'static str,
    /// LTE rssi, rsrp, rsrq, snr.
    pub lte: Option<(f64, f64, f64, f64)>,
}

impl ModemSpec {
    pub fn lte(index: u32, iface: &'static str, operator: &'static str) -> Self {
        Self {
            index,
            manufacturer: "Quectel",
            model: "EM12-G",
            imei: [
                "490154203237510",
                "490154203237511",
                "490154203237512",
                "490154203237513",
            ][index as usize % 4],
            operator,
            state: 11,
            access: 1 << 14,
            quality: 70,
            registration: 1,
            iface,
            ip: "10.45.0.2",
            lte: Some((-65.0, -95.0, -10.0, 12.0)),
        }
    }

    /// The template's `GetManagedObjects` lists objects under `…/Modems/` (its own
    /// `AddSimpleModem` uses `…/Modems/8`); ModemManager itself uses `…/Modem/N`.
    /// The agent takes whatever paths the ObjectManager reports.
    pub fn path(&self) -> String {
        format!("{MM_PATH}/Modems/{}", self.index)
    }

    pub fn bearer_path(&self) -> String {
        format!("{MM_PATH}/Bearer/{}", self.index)
    }
}

pub fn signal_dict(lte: (f64, f64, f64, f64)) -> HashMap<&'static str, Variant<'static>> {
    HashMap::from([
        ("rssi", Variant::from(lte.0)),
        ("rsrp", Variant::from(lte.1)),
        ("rsrq", Variant::from(lte.2)),
        ("snr", Variant::from(lte.3)),
    ])
}

impl MockModemManager {
    /// Start the mock and wait until it owns `org.freedesktop.ModemManager1`.
    pub async fn start(bus: &SystemBus) -> Self {
        let child = Command::new(python())
            .args(["-m", "dbusmock", "--system", "-t", "modemmanager"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python -m dbusmock");
        let conn = bus.connect().await;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let name = zbus::names::BusName::try_from(MM).unwrap();
            if dbus.name_has_owner(name).await.unwrap_or(false) {
                break;
            }
            assert!(Instant::now() < deadline, "dbusmock did not take {MM}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, conn }
    }

    async fn mock(&self, path: &str, method: &str, body: &(impl serde::Serialize + zbus::Type)) {
        self.conn
            .call_method(Some(MM), path, Some(MOCK), method, body)
            .await
            .unwrap_or_else(|e| panic!("{method} on {path}: {e}"));
    }

    /// Add a modem with 3GPP and Signal interfaces and one bearer, then announce it
    /// with `InterfacesAdded` (as ModemManager does once a modem is probed).
    pub async fn add_modem(&self, m: &ModemSpec) {
        let bearer = m.bearer_path();
        let bearer_props: HashMap<&str, Variant> = HashMap::from([
            ("Interface", Variant::from(m.iface)),
            ("Connected", Variant::from(m.state == 11)),
            (
                "Ip4Config",
                Variant::from(HashMap::from([
                    ("address", Variant::from(m.ip)),
                    ("prefix", Variant::from(30u32)),
                    ("method", Variant::from(2u32)),
                ])),
            ),
        ]);
        self.mock(
            MM_PATH,
            "AddObject",
            &(
                bearer.as_str(),
                BEARER,
                bearer_props,
                Vec::<(&str, &str, &str, &str)>::new(),
            ),
        )
        .await;
        let modem_props: HashMap<&str, Variant> = HashMap::from([
            ("State", Variant::from(m.state)),
            ("StateFailedReason", Variant::from(0u32)),
            ("AccessTechnologies", Variant::from(m.access)),
            ("SignalQuality", Variant::from((m.quality, true))),
            (
                "Bearers",
                Variant::from(vec![ObjectPath::try_from(bearer.clone()).unwrap()]),
            ),
            (
                "Ports",
                Variant::from(vec![
                    (m.iface.to_owned(), 2u32),
                    (format!("cdc-wdm{}", m.index), 6u32),
                ]),
            ),
            ("Manufacturer", Variant::from(m.manufacturer)),
            ("Model", Variant::from(m.model)),
            ("EquipmentIdentifier", Variant::from(m.imei)),
        ]);
        let path = m.path();
        self.mock(
            MM_PATH,
            "AddObject",
            &(
                path.as_str(),
                MODEM,
                modem_props.clone(),
                Vec::<(&str, &str, &str, &str)>::new(),
            ),
        )
        .await;
        let gpp: HashMap<&str, Variant> = HashMap::from([
            ("Imei", Variant::from(m.imei)),
            ("OperatorName", Variant::from(m.operator)),
            ("OperatorCode", Variant::from("26202")),
            ("RegistrationState", Variant::from(m.registration)),
        ]);
        self.mock(&path, "AddProperties", &(GPP, gpp.clone())).await;
        let empty = || Variant::from(HashMap::<&str, Variant>::new());
        let signal: HashMap<&str, Variant> = HashMap::from([
            ("Rate", Variant::from(0u32)),
            (
                "Lte",
                m.lte
                    .map(|l| Variant::from(signal_dict(l)))
                    .unwrap_or_else(empty),
            ),
            ("Nr5g", empty()),
            ("Umts", empty()),
            ("Gsm", empty()),
        ]);
        self.mock(&path, "AddProperties", &(SIGNAL, signal.clone()))
            .await;
        // Signal.Setup(rate) records the rate, as ModemManager does.
        self.mock(
            &path,
            "AddMethod",
            &(
                SIGNAL,
                "Setup",
                "u",
                "",
                "self.UpdateProperties('org.freedesktop.ModemManager1.Modem.Signal', {'Rate': dbus.UInt32(args[0])})",
            ),
        )
        .await;
        let ifaces: HashMap<&str, HashMap<&str, Variant>> =
            HashMap::from([(MODEM, modem_props), (GPP, gpp), (SIGNAL, signal)]);
        let args: Vec<Variant> = vec![
            Variant::from(ObjectPath::try_from(path.as_str()).unwrap()),
            Variant::from(ifaces),
        ];
        self.mock(
            MM_PATH,
            "EmitSignal",
            &(OM, "InterfacesAdded", "oa{sa{sv}}", args),
        )
        .await;
    }

    /// Remove a modem and its bearer, announced with `InterfacesRemoved`.
    pub async fn remove_modem(&self, m: &ModemSpec) {
        let path = m.path();
        self.mock(MM_PATH, "RemoveObject", &(path.as_str(),)).await;
        self.mock(MM_PATH, "RemoveObject", &(m.bearer_path().as_str(),))
            .await;
        let args: Vec<Variant> = vec![
            Variant::from(ObjectPath::try_from(path.as_str()).unwrap()),
            Variant::from(vec![MODEM, GPP, SIGNAL]),
        ];
        self.mock(
            MM_PATH,
            "EmitSignal",
            &(OM, "InterfacesRemoved", "oas", args),
        )
        .await;
    }

    /// `UpdateProperties` (emits `PropertiesChanged`).
    pub async fn update(&self, path: &str, iface: &str, props: HashMap<&str, Variant<'_>>) {
        self.mock(path, "UpdateProperties", &(iface, props)).await;
    }

    /// The calls the mock recorded for `method` on `path`.
    pub async fn calls(&self, path: &str, method: &str) -> usize {
        let reply = self
            .conn
            .call_method(Some(MM), path, Some(MOCK), "GetMethodCalls", &(method,))
            .await
            .unwrap();
        let calls: Vec<(u64, Vec<zbus::OwnedVariant>)> = reply.body().deserialize().unwrap();
        calls.len()
    }

    /// ModemManager goes away (the mock process ends).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MockModemManager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
