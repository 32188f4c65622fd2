//! Modems in `device.status` (PROTOCOL.md §4) and `modem` events (§6), end to end:
//! python-dbusmock's `modemmanager` template on a private system bus, the agent
//! binary with `DBUS_SYSTEM_BUS_ADDRESS` pointing there, and a control plane played
//! by the test over real WSS. `status_interval_s` is 30 s, so every report asserted
//! after a change is the on-change one, not the periodic one.

mod common;
mod mmock;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use braid_protocol::device::{DeviceStatus, NetworkInterface};
use braid_protocol::Envelope;
use common::*;
use mmock::*;
use serde_json::Value;
use zbus::Variant;

const T: Duration = Duration::from_secs(20);
/// Well under the 30 s periodic report: an on-change report must come within it.
const ON_CHANGE: Duration = Duration::from_secs(8);

/// Agent config with a 30 s status period.
fn config(dir: &Path, plane: &TestPlane) -> std::path::PathBuf {
    let path = write_config(
        dir,
        &plane.url(),
        &pinned(&plane.identity.pin),
        Some("enr_m"),
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("status_interval_s = 2", "status_interval_s = 30");
    std::fs::write(&path, text).unwrap();
    path
}

/// The agent on `bus`, logged in; returns after the first `device.status`, with
/// the events that came before it.
async fn agent_on(
    dir: &Path,
    bus_address: &str,
) -> (TestPlane, TestConn, Agent, DeviceStatus, Seen) {
    let mut plane = TestPlane::start().await;
    let cfg = config(dir, &plane);
    let agent = Agent::run(
        &cfg,
        &dir.join("state"),
        &[("DBUS_SYSTEM_BUS_ADDRESS", bus_address)],
    );
    let mut conn = plane.accept(T).await;
    conn.accept_login("snd_m", Some("dk_m"), &session_token("m"))
        .await;
    let mut seen = Seen::default();
    let first = status_where(&mut conn, &mut seen, T, "a first report", |_| true).await;
    (plane, conn, agent, first, seen)
}

/// What arrived while waiting for a status.
#[derive(Default)]
struct Seen {
    events: Vec<Value>,
}

impl Seen {
    fn messages(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn has(&self, category: &str, severity: &str, needle: &str) -> bool {
        self.events.iter().any(|e| {
            e["category"] == category
                && e["severity"] == severity
                && e["message"].as_str().is_some_and(|m| m.contains(needle))
        })
    }
}

/// Read frames until a `device.status` satisfies `pred` (within `timeout`),
/// keeping the events seen meanwhile.
async fn status_where(
    conn: &mut TestConn,
    seen: &mut Seen,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&DeviceStatus) -> bool,
) -> DeviceStatus {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(env): Option<Envelope> = conn.recv(left).await else {
            panic!(
                "no device.status with {what} within {timeout:?}; last: {last:#?}\nevents: {:?}",
                seen.messages()
            )
        };
        match env.msg_type.as_str() {
            "event" => seen.events.push(Value::Object(env.payload.clone())),
            "device.status" => {
                let s: DeviceStatus = env.decode().unwrap();
                if pred(&s) {
                    return s;
                }
                last = Some(s);
            }
            _ => {}
        }
    }
}

/// Read frames for `dur`, keeping events.
async fn collect_events(conn: &mut TestConn, seen: &mut Seen, dur: Duration) {
    let deadline = Instant::now() + dur;
    while let Some(env) = conn
        .recv(deadline.saturating_duration_since(Instant::now()))
        .await
    {
        if env.msg_type == "event" {
            seen.events.push(Value::Object(env.payload.clone()));
        }
    }
}

fn modems(s: &DeviceStatus) -> Vec<&NetworkInterface> {
    s.network_interfaces
        .iter()
        .filter(|i| i.modem_state.is_some())
        .collect()
}

fn modem<'a>(s: &'a DeviceStatus, name: &str) -> Option<&'a NetworkInterface> {
    modems(s).into_iter().find(|i| i.name == name)
}

fn names(s: &DeviceStatus) -> Vec<String> {
    modems(s).iter().map(|i| i.name.clone()).collect()
}

fn json(v: &impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap()
}

#[tokio::test]
async fn two_and_three_modems_signal_state_removal_and_return() {
    let dir = tempfile::tempdir().unwrap();
    let bus = SystemBus::start();
    let mm = MockModemManager::start(&bus).await;
    let m0 = ModemSpec::lte(0, "wwan0", "Vodafone");
    let m1 = ModemSpec {
        access: (1 << 15) | (1 << 14),
        model: "RM520N-GL",
        ip: "10.46.0.6",
        ..ModemSpec::lte(1, "wwan1", "Telekom")
    };
    let m2 = ModemSpec {
        access: 1 << 9,
        registration: 5,
        lte: None,
        ..ModemSpec::lte(2, "wwan2", "Orange")
    };
    mm.add_modem(&m0).await;
    mm.add_modem(&m1).await;

    // Two modems at start-up.
    let (_plane, mut conn, agent, first, mut seen) = agent_on(dir.path(), &bus.address).await;
    let status = if names(&first) == ["wwan0", "wwan1"] {
        first
    } else {
        status_where(&mut conn, &mut seen, T, "two modems", |s| {
            names(s) == ["wwan0", "wwan1"]
        })
        .await
    };
    assert_eq!(json(&status.modem_manager), "running");
    let w0 = modem(&status, "wwan0").unwrap();
    assert_eq!(json(&w0.kind), "cellular");
    assert_eq!(json(&w0.state), "connected");
    assert_eq!(w0.carrier.as_deref(), Some("Vodafone"));
    assert_eq!(w0.technology.as_deref(), Some("LTE"));
    assert_eq!(w0.imei.as_deref(), Some("490154203237510"));
    assert_eq!(w0.signal_dbm, Some(-65.0));
    assert_eq!(w0.rsrp_dbm, Some(-95.0));
    assert_eq!(w0.rsrq_db, Some(-10.0));
    assert_eq!(w0.sinr_db, Some(12.0));
    assert_eq!(w0.signal_percent, Some(70));
    assert_eq!(w0.roaming, Some(false));
    assert_eq!(w0.ip.as_deref(), Some("10.45.0.2"));
    assert_eq!(w0.modem_model.as_deref(), Some("Quectel EM12-G"));
    let w1 = modem(&status, "wwan1").unwrap();
    assert_eq!(w1.technology.as_deref(), Some("5G-NSA"));
    assert_eq!(w1.carrier.as_deref(), Some("Telekom"));
    assert_eq!(w1.ip.as_deref(), Some("10.46.0.6"));
    // Extended signal refresh was switched on for each modem.
    let deadline = Instant::now() + T;
    while mm.calls(&m0.path(), "Setup").await == 0 || mm.calls(&m1.path(), "Setup").await == 0 {
        assert!(Instant::now() < deadline, "Signal.Setup not called");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A third modem appears: reported on change, with an `added` event.
    let t0 = Instant::now();
    mm.add_modem(&m2).await;
    let status = status_where(&mut conn, &mut seen, ON_CHANGE, "three modems", |s| {
        names(s) == ["wwan0", "wwan1", "wwan2"]
    })
    .await;
    eprintln!("third modem reported after {:?}", t0.elapsed());
    let w2 = modem(&status, "wwan2").unwrap();
    assert_eq!(w2.technology.as_deref(), Some("HSPA+"));
    assert_eq!(w2.roaming, Some(true));
    assert_eq!(w2.rsrp_dbm, None);
    collect_events(&mut conn, &mut seen, Duration::from_millis(500)).await;
    assert!(
        seen.has("modem", "info", "Modem 2 (Quectel EM12-G, wwan2) added"),
        "{:?}",
        seen.messages()
    );

    // Signal drops on modem 0: the new figures are reported on change.
    mm.update(
        &m0.path(),
        SIGNAL,
        HashMap::from([(
            "Lte",
            Variant::from(signal_dict((-80.0, -115.0, -16.0, 1.5))),
        )]),
    )
    .await;
    mm.update(
        &m0.path(),
        MODEM,
        HashMap::from([("SignalQuality", Variant::from((30u32, true)))]),
    )
    .await;
    let status = status_where(&mut conn, &mut seen, ON_CHANGE, "weaker signal", |s| {
        modem(s, "wwan0")
            .is_some_and(|w| w.rsrp_dbm == Some(-115.0) && w.signal_percent == Some(30))
    })
    .await;
    let w0 = modem(&status, "wwan0").unwrap();
    assert_eq!(
        (w0.signal_dbm, w0.rsrq_db, w0.sinr_db),
        (Some(-80.0), Some(-16.0), Some(1.5))
    );

    // Modem 1 loses its data connection: state and event.
    mm.update(
        &m1.path(),
        MODEM,
        HashMap::from([("State", Variant::from(8i32))]),
    )
    .await;
    let status = status_where(&mut conn, &mut seen, ON_CHANGE, "modem 1 registered", |s| {
        modem(s, "wwan1").is_some_and(|w| w.modem_state.as_deref() == Some("registered"))
    })
    .await;
    assert_eq!(json(&modem(&status, "wwan1").unwrap().state), "connecting");
    collect_events(&mut conn, &mut seen, Duration::from_millis(500)).await;
    assert!(
        seen.has("modem", "warning", "wwan1) disconnected (registered)"),
        "{:?}",
        seen.messages()
    );

    // Modem 2 is pulled, then comes back.
    mm.remove_modem(&m2).await;
    status_where(&mut conn, &mut seen, ON_CHANGE, "modem 2 gone", |s| {
        names(s) == ["wwan0", "wwan1"]
    })
    .await;
    collect_events(&mut conn, &mut seen, Duration::from_millis(500)).await;
    assert!(
        seen.has(
            "modem",
            "warning",
            "Modem 2 (Quectel EM12-G, wwan2) removed"
        ),
        "{:?}",
        seen.messages()
    );
    mm.add_modem(&m2).await;
    let status = status_where(&mut conn, &mut seen, ON_CHANGE, "modem 2 back", |s| {
        names(s) == ["wwan0", "wwan1", "wwan2"]
    })
    .await;
    assert_eq!(
        modem(&status, "wwan2").unwrap().carrier.as_deref(),
        Some("Orange")
    );
    collect_events(&mut conn, &mut seen, Duration::from_millis(500)).await;
    let added = seen
        .messages()
        .iter()
        .filter(|m| m.contains("Modem 2") && m.ends_with("added"))
        .count();
    assert_eq!(added, 2, "{:?}", seen.messages());
    // ModemManager was there all along: no availability warning.
    assert!(
        !seen.has("modem", "warning", "ModemManager unavailable"),
        "{:?}",
        seen.messages()
    );
    drop(agent);
}

#[tokio::test]
async fn modem_manager_absent_then_running_then_restarting() {
    let dir = tempfile::tempdir().unwrap();
    let bus = SystemBus::start();

    // No ModemManager on the bus: status without modems, one clear warning.
    let (_plane, mut conn, agent, first, mut seen) = agent_on(dir.path(), &bus.address).await;
    if first.modem_manager.is_none() {
        status_where(&mut conn, &mut seen, T, "modem_manager absent", |s| {
            s.modem_manager.is_some()
        })
        .await;
    }
    collect_events(&mut conn, &mut seen, Duration::from_millis(500)).await;
    assert!(
        seen.has(
            "modem",
            "warning",
            "ModemManager unavailable: ModemManager is not running"
        ),
        "{:?}",
        seen.messages()
    );

    // It starts, a modem is probed: recovered without restarting the agent.
    let mm = MockModemManager::start(&bus).await;
    let m0 = ModemSpec::lte(0, "wwan0", "Vodafone");
    mm.add_modem(&m0).await;
    let status = status_where(
        &mut conn,
        &mut seen,
        ON_CHANGE,
        "ModemManager running",
        |s| json(&s.modem_manager) == "running" && names(s) == ["wwan0"],
    )
    .await;
    assert_eq!(
        modem(&status, "wwan0").unwrap().carrier.as_deref(),
        Some("Vodafone")
    );
    collect_events(&mut conn, &mut seen, Duration::from_millis(500)).await;
    assert!(
        seen.has("modem", "info", "ModemManager is back"),
        "{:?}",
        seen.messages()
    );

    // It goes away (crash or restart): modems leave the status, one warning.
    mm.stop();
    let status = status_where(
        &mut conn,
        &mut seen,
        ON_CHANGE,
        "ModemManager absent",
        |s| json(&s.modem_manager) == "absent",
    )
    .await;
    assert!(names(&status).is_empty(), "{:?}", names(&status));
    collect_events(&mut conn, &mut seen, Duration::from_millis(500)).await;
    assert!(
        seen.has(
            "modem",
            "warning",
            "ModemManager unavailable: ModemManager stopped"
        ),
        "{:?}",
        seen.messages()
    );

    // And back again with two modems.
    let mm = MockModemManager::start(&bus).await;
    mm.add_modem(&m0).await;
    mm.add_modem(&ModemSpec::lte(1, "wwan1", "O2")).await;
    status_where(
        &mut conn,
        &mut seen,
        ON_CHANGE,
        "two modems after restart",
        |s| json(&s.modem_manager) == "running" && names(s) == ["wwan0", "wwan1"],
    )
    .await;
    let warnings = seen
        .messages()
        .iter()
        .filter(|m| m.starts_with("ModemManager unavailable"))
        .count();
    assert_eq!(
        warnings,
        2,
        "one warning per absence: {:?}",
        seen.messages()
    );
    drop(agent);
}

#[tokio::test]
async fn no_system_bus_is_a_warning_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix:path={}", dir.path().join("no_bus_socket").display());
    let (_plane, mut conn, agent, first, mut seen) = agent_on(dir.path(), &missing).await;
    let status = if first.modem_manager.is_some() {
        first
    } else {
        status_where(&mut conn, &mut seen, T, "modem_manager absent", |s| {
            s.modem_manager.is_some()
        })
        .await
    };
    assert_eq!(json(&status.modem_manager), "absent");
    assert!(names(&status).is_empty());
    // The rest of the report is there.
    assert!(status.media_inputs.iter().any(|m| m.device == "test"));
    assert!(status.uptime_s > 0);
    collect_events(&mut conn, &mut seen, Duration::from_secs(1)).await;
    assert!(
        seen.has("modem", "warning", "no system D-Bus"),
        "{:?}",
        seen.messages()
    );
    conn.recv_type("health", T).await;
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
}
