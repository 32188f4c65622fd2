//! Modems through ModemManager on the system D-Bus (ARCHITECTURE.md "Device
//! status"; ModemManager D-Bus API 1.x).
//!
//! [`ModemWatcher::run`] keeps a [`ModemSnapshot`] up to date from ModemManager's
//! own signals — no polling of `mmcli`:
//!
//! - presence of `org.freedesktop.ModemManager1` (`NameOwnerChanged`): absent or
//!   restarting gives one `warning` event and a snapshot without modems; when it
//!   comes back the modems are enumerated again (`info` event);
//! - modems appearing and disappearing (`ObjectManager` `InterfacesAdded` /
//!   `InterfacesRemoved` on `/org/freedesktop/ModemManager1`);
//! - property changes of each modem, its 3GPP and Signal interfaces and its bearers
//!   (typed proxies of [`proxies`] with zbus's property cache; a change stream per
//!   watched property). The Signal interface's refresh is enabled
//!   ([`SIGNAL_REFRESH_S`]) where ModemManager has it off.
//!
//! Significant changes ([`model::significant_change`]) ping the
//! [`ChangeNotifier`]; transitions raise `modem` events ([`model::modem_events`]).
//! The snapshot also tracks the network interfaces of modems that were removed
//! ([`ModemSnapshot::gone_interfaces`]) for the link guard (`super::links`).
//!
//! Without a system bus (containers, CI) the watcher raises the same warning and
//! retries with a backoff of 1 s doubling to 60 s.

pub mod model;
pub mod proxies;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use braid_protocol::event::{Category, Event, Severity};
use futures_util::stream::{BoxStream, SelectAll};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};
use zbus::fdo::{DBusProxy, ObjectManagerProxy};
use zbus::proxy::CacheProperties;
use zbus::{Connection, OwnedVariant};

pub use model::ModemInfo;
use proxies::{
    BearerProxy, Modem3gppProxy, ModemProxy, SignalProxy, MM_PATH, MM_SERVICE, MODEM_3GPP_IFACE,
    MODEM_IFACE, SIGNAL_IFACE,
};

use super::events::EventSink;
use super::notify::ChangeNotifier;

/// Extended signal refresh period asked of ModemManager, s (Signal `Setup`).
pub const SIGNAL_REFRESH_S: u32 = 5;
/// Longest wait between two attempts to reach the system bus.
const BUS_RETRY_MAX: Duration = Duration::from_secs(60);
/// Longest a single D-Bus call of the watcher may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether modem figures can be had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ManagerStatus {
    /// The watcher has not looked yet.
    #[default]
    Unknown,
    /// ModemManager owns its bus name; [`ModemSnapshot::modems`] is complete.
    Running,
    /// ModemManager or the system bus is not there (the reason, for logs/events).
    Absent(String),
}

/// What the device side knows about modems at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModemSnapshot {
    /// ModemManager availability.
    pub manager: ManagerStatus,
    /// Modems, by object path index.
    pub modems: Vec<ModemInfo>,
    /// Network interfaces that belonged to a modem which has been removed and that
    /// no present modem has claimed since (e.g. `wwan1` after its USB modem was
    /// pulled). ModemManager is the authority while it runs: an interface leaves
    /// this set only when a modem reports it again. After a ModemManager restart,
    /// interfaces of modems it no longer lists are added only if the kernel no
    /// longer has them either (`/sys/class/net/<name>` is gone).
    pub gone_interfaces: BTreeSet<String>,
}

/// Interfaces seen on modems, and which of them are gone.
#[derive(Debug, Default)]
struct IfaceTracker {
    known: BTreeSet<String>,
    gone: BTreeSet<String>,
}

impl IfaceTracker {
    fn claimed<'a>(modems: impl IntoIterator<Item = &'a ModemInfo>) -> BTreeSet<String> {
        modems.into_iter().flat_map(ModemInfo::interfaces).collect()
    }

    /// Interfaces reported by present modems are known and not gone.
    fn present<'a>(&mut self, modems: impl IntoIterator<Item = &'a ModemInfo>) {
        for iface in Self::claimed(modems) {
            self.gone.remove(&iface);
            self.known.insert(iface);
        }
    }

    /// `removed` went away while ModemManager runs: its interfaces that no other
    /// modem claims are gone.
    fn removed<'a>(
        &mut self,
        removed: &ModemInfo,
        others: impl IntoIterator<Item = &'a ModemInfo>,
    ) {
        let claimed = Self::claimed(others);
        for iface in removed.interfaces() {
            if !claimed.contains(&iface) {
                self.gone.insert(iface);
            }
        }
    }

    /// After ModemManager (re)appeared and was enumerated: known interfaces no
    /// modem claims and the kernel no longer has are gone.
    fn enumerated<'a>(
        &mut self,
        modems: impl IntoIterator<Item = &'a ModemInfo>,
        sys_class_net: &std::path::Path,
    ) {
        let claimed = Self::claimed(modems);
        for iface in &self.known {
            if !claimed.contains(iface) && !sys_class_net.join(iface).exists() {
                self.gone.insert(iface.clone());
            }
        }
    }
}

/// How one ModemManager session ended.
enum SessionEnd {
    /// Shutdown.
    Cancelled,
    /// ModemManager released its name (stopped or crashed).
    ManagerGone,
    /// A D-Bus error (bus connection lost, ModemManager not answering).
    Error(String),
}

/// A modem followed through its proxies. Dropping it ends its change streams.
struct Tracked {
    modem: ModemProxy<'static>,
    gpp: Option<(Modem3gppProxy<'static>, DropGuard)>,
    signal: Option<(SignalProxy<'static>, DropGuard)>,
    bearers: BTreeMap<String, (BearerProxy<'static>, DropGuard)>,
    _modem_streams: DropGuard,
    info: ModemInfo,
}

/// Keeps [`ModemSnapshot`] current; see the module docs.
pub struct ModemWatcher {
    snapshot: watch::Sender<ModemSnapshot>,
    changes: ChangeNotifier,
    events: EventSink,
    sys_class_net: PathBuf,
    ifaces: IfaceTracker,
    /// The absence reason an event was raised for (one event per absence).
    announced_absence: Option<String>,
}

/// Properties whose changes are followed, per interface.
const MODEM_PROPS: &[&str] = &[
    "State",
    "StateFailedReason",
    "AccessTechnologies",
    "SignalQuality",
    "Bearers",
    "Ports",
    "Manufacturer",
    "Model",
    "EquipmentIdentifier",
];
const GPP_PROPS: &[&str] = &["Imei", "OperatorName", "RegistrationState"];
const SIGNAL_PROPS: &[&str] = &["Lte", "Nr5g", "Umts", "Gsm"];
const BEARER_PROPS: &[&str] = &["Interface", "Connected", "Ip4Config"];

/// One stream that yields `path` whenever one of `names` changes on `proxy`, until
/// the returned guard is dropped.
async fn watch_props(
    proxy: &zbus::Proxy<'static>,
    names: &'static [&'static str],
    path: String,
) -> (BoxStream<'static, String>, DropGuard) {
    let token = CancellationToken::new();
    let mut streams = Vec::with_capacity(names.len());
    for name in names {
        streams.push(proxy.receive_property_changed::<OwnedVariant>(name).await);
    }
    let stream = futures_util::stream::select_all(streams)
        .map(move |_| path.clone())
        .take_until(token.clone().cancelled_owned())
        .boxed();
    (stream, token.drop_guard())
}

fn ok<T>(r: zbus::Result<Option<T>>) -> Option<T> {
    r.ok().flatten()
}

/// The modem as its proxies' caches describe it (no D-Bus round trip).
fn read_info(path: &str, t: &Tracked) -> ModemInfo {
    let m = &t.modem;
    let access = ok(m.cached_access_technologies()).unwrap_or(0);
    let empty = HashMap::new();
    let signal = t.signal.as_ref().map(|(s, _)| {
        (
            ok(s.cached_lte()).unwrap_or_default(),
            ok(s.cached_nr5g()).unwrap_or_default(),
            ok(s.cached_umts()).unwrap_or_default(),
            ok(s.cached_gsm()).unwrap_or_default(),
        )
    });
    let signal = match &signal {
        Some((lte, nr, umts, gsm)) => model::signal_figures(access, lte, nr, umts, gsm),
        None => model::signal_figures(access, &empty, &empty, &empty, &empty),
    };
    let order: Vec<String> = ok(m.cached_bearers())
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.to_string())
        .collect();
    let bearers = order
        .iter()
        .filter_map(|p| t.bearers.get(p))
        .map(|(b, _)| model::BearerInfo {
            interface: ok(b.cached_interface()).filter(|i| !i.is_empty()),
            connected: ok(b.cached_connected()).unwrap_or(false),
            ipv4: ok(b.cached_ip4_config()).and_then(|c| {
                let addr = c
                    .get("address")
                    .and_then(|v| String::try_from(v.clone()).ok())?;
                let prefix = c
                    .get("prefix")
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(32);
                (!addr.is_empty()).then_some((addr, prefix))
            }),
        })
        .collect();
    let gpp = t.gpp.as_ref().map(|(g, _)| g);
    ModemInfo {
        path: path.to_owned(),
        manufacturer: ok(m.cached_manufacturer()).filter(|s| !s.is_empty()),
        model: ok(m.cached_model()).filter(|s| !s.is_empty()),
        state: ok(m.cached_state()),
        failed_reason: ok(m.cached_state_failed_reason()),
        access_technologies: access,
        signal_percent: ok(m.cached_signal_quality()).map(|(q, _)| q.min(100)),
        imei: gpp
            .and_then(|g| ok(g.cached_imei()))
            .filter(|s| !s.is_empty())
            .or_else(|| ok(m.cached_equipment_identifier()).filter(|s| !s.is_empty())),
        operator: gpp
            .and_then(|g| ok(g.cached_operator_name()))
            .filter(|s| !s.is_empty()),
        registration: gpp.and_then(|g| ok(g.cached_registration_state())),
        signal,
        net_ports: ok(m.cached_ports())
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, kind)| *kind == model::PORT_TYPE_NET)
            .map(|(name, _)| name)
            .collect(),
        bearers,
    }
}

/// `/…/Modem/10` sorts after `/…/Modem/9`.
fn path_order(a: &ModemInfo, b: &ModemInfo) -> std::cmp::Ordering {
    let key = |m: &ModemInfo| (m.index().parse::<u64>().unwrap_or(u64::MAX), m.path.clone());
    key(a).cmp(&key(b))
}

/// One connection's worth of ModemManager objects.
struct Session {
    conn: Connection,
    modems: BTreeMap<String, Tracked>,
    streams: SelectAll<BoxStream<'static, String>>,
}

impl Session {
    fn new(conn: Connection) -> Self {
        Self {
            conn,
            modems: BTreeMap::new(),
            streams: SelectAll::new(),
        }
    }

    /// Start following the modem at `path` with the interfaces it has.
    async fn add(&mut self, path: &str, ifaces: &BTreeSet<String>) -> zbus::Result<()> {
        let modem = ModemProxy::builder(&self.conn)
            .path(path.to_owned())
            .cache_properties(CacheProperties::Yes)
            .build()
            .await?;
        let (stream, guard) = watch_props(modem.inner(), MODEM_PROPS, path.to_owned()).await;
        self.streams.push(stream);
        let mut tracked = Tracked {
            modem,
            gpp: None,
            signal: None,
            bearers: BTreeMap::new(),
            _modem_streams: guard,
            info: ModemInfo::default(),
        };
        self.extend(&mut tracked, path, ifaces).await;
        self.sync_bearers(&mut tracked, path).await;
        tracked.info = read_info(path, &tracked);
        self.modems.insert(path.to_owned(), tracked);
        Ok(())
    }

    /// Follow the 3GPP and Signal interfaces of `ifaces` that are not followed yet.
    async fn extend(&mut self, t: &mut Tracked, path: &str, ifaces: &BTreeSet<String>) {
        if t.gpp.is_none() && ifaces.contains(MODEM_3GPP_IFACE) {
            match Modem3gppProxy::builder(&self.conn)
                .path(path.to_owned())
                .cache_properties(CacheProperties::Yes)
                .build()
                .await
            {
                Ok(p) => {
                    let (s, g) = watch_props(p.inner(), GPP_PROPS, path.to_owned()).await;
                    self.streams.push(s);
                    t.gpp = Some((p, g));
                }
                Err(e) => tracing::debug!("{path}: no 3GPP proxy: {e}"),
            }
        }
        if t.signal.is_none() && ifaces.contains(SIGNAL_IFACE) {
            match SignalProxy::builder(&self.conn)
                .path(path.to_owned())
                .cache_properties(CacheProperties::Yes)
                .build()
                .await
            {
                Ok(p) => {
                    let (s, g) = watch_props(p.inner(), SIGNAL_PROPS, path.to_owned()).await;
                    self.streams.push(s);
                    enable_signal_refresh(&p, path);
                    t.signal = Some((p, g));
                }
                Err(e) => tracing::debug!("{path}: no Signal proxy: {e}"),
            }
        }
    }

    /// Follow the bearers the modem lists now; forget the others.
    async fn sync_bearers(&mut self, t: &mut Tracked, path: &str) {
        let want: BTreeSet<String> = ok(t.modem.cached_bearers())
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.to_string())
            .collect();
        t.bearers.retain(|p, _| want.contains(p));
        for bearer in want {
            if t.bearers.contains_key(&bearer) {
                continue;
            }
            let built = BearerProxy::builder(&self.conn)
                .path(bearer.clone())
                .cache_properties(CacheProperties::Yes)
                .build()
                .await;
            match built {
                Ok(p) => {
                    let (s, g) = watch_props(p.inner(), BEARER_PROPS, path.to_owned()).await;
                    self.streams.push(s);
                    t.bearers.insert(bearer, (p, g));
                }
                Err(e) => tracing::debug!("{path}: bearer {bearer}: {e}"),
            }
        }
    }

    /// Re-read a modem from the caches (after one of its properties changed);
    /// returns `(old, new)` when it is followed.
    async fn refresh(&mut self, path: &str) -> Option<(ModemInfo, ModemInfo)> {
        let mut t = self.modems.remove(path)?;
        self.sync_bearers(&mut t, path).await;
        let new = read_info(path, &t);
        let old = std::mem::replace(&mut t.info, new.clone());
        self.modems.insert(path.to_owned(), t);
        Some((old, new))
    }

    fn infos(&self) -> Vec<ModemInfo> {
        let mut list: Vec<ModemInfo> = self.modems.values().map(|t| t.info.clone()).collect();
        list.sort_by(path_order);
        list
    }
}

/// Ask ModemManager to refresh extended signal figures every [`SIGNAL_REFRESH_S`]
/// when the refresh is off (`Rate` 0); another client's rate is left alone.
fn enable_signal_refresh(proxy: &SignalProxy<'static>, path: &str) {
    if ok(proxy.cached_rate()).is_some_and(|r| r > 0) {
        return;
    }
    let proxy = proxy.clone();
    let path = path.to_owned();
    tokio::spawn(async move {
        match tokio::time::timeout(CALL_TIMEOUT, proxy.setup(SIGNAL_REFRESH_S)).await {
            Ok(Ok(())) => tracing::debug!("{path}: signal refresh every {SIGNAL_REFRESH_S} s"),
            Ok(Err(e)) => tracing::warn!("{path}: cannot enable signal refresh: {e}"),
            Err(_) => tracing::warn!("{path}: Signal.Setup timed out"),
        }
    });
}

/// Interface names of an `InterfacesAdded`/`GetManagedObjects` entry.
fn iface_names<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names.into_iter().map(str::to_owned).collect()
}

impl ModemWatcher {
    /// A watcher publishing into `snapshot`.
    pub fn new(
        snapshot: watch::Sender<ModemSnapshot>,
        changes: ChangeNotifier,
        events: EventSink,
        sys_class_net: PathBuf,
    ) -> Self {
        Self {
            snapshot,
            changes,
            events,
            sys_class_net,
            ifaces: IfaceTracker::default(),
            announced_absence: None,
        }
    }

    /// Follow ModemManager until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut retry = Duration::from_secs(1);
        loop {
            let connected = tokio::select! {
                _ = cancel.cancelled() => return,
                c = zbus::connection::Builder::system().build() => c,
            };
            let conn = match connected {
                Ok(conn) => conn,
                Err(e) => {
                    self.absent(format!("no system D-Bus ({e})"));
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(BUS_RETRY_MAX);
                    continue;
                }
            };
            retry = Duration::from_secs(1);
            match self.on_bus(&conn, &cancel).await {
                SessionEnd::Cancelled => return,
                end => {
                    let e = match end {
                        SessionEnd::Error(e) => e,
                        _ => "ModemManager left".to_owned(),
                    };
                    tracing::warn!("system D-Bus: {e}; reconnecting");
                    self.absent(format!("system D-Bus error ({e})"));
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// On a bus connection: wait for ModemManager, follow it, repeat.
    async fn on_bus(&mut self, conn: &Connection, cancel: &CancellationToken) -> SessionEnd {
        let dbus = match DBusProxy::new(conn).await {
            Ok(p) => p,
            Err(e) => return SessionEnd::Error(e.to_string()),
        };
        let mut owners = match dbus
            .receive_name_owner_changed_with_args(&[(0, MM_SERVICE)])
            .await
        {
            Ok(s) => s,
            Err(e) => return SessionEnd::Error(e.to_string()),
        };
        let name = zbus::names::BusName::try_from(MM_SERVICE).expect("valid bus name");
        loop {
            let has_owner =
                match tokio::time::timeout(CALL_TIMEOUT, dbus.name_has_owner(name.clone())).await {
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => return SessionEnd::Error(e.to_string()),
                    Err(_) => return SessionEnd::Error("NameHasOwner timed out".into()),
                };
            if !has_owner {
                self.absent("ModemManager is not running".into());
                // Wait until someone owns the name.
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return SessionEnd::Cancelled,
                        signal = owners.next() => match signal {
                            None => return SessionEnd::Error("bus connection closed".into()),
                            Some(s) => {
                                let owned = s.args().map(|a| a.new_owner().is_some()).unwrap_or(false);
                                if owned { break; }
                            }
                        },
                    }
                }
            }
            match self.follow(conn, &mut owners, cancel).await {
                SessionEnd::ManagerGone => {
                    tracing::warn!("ModemManager left the bus");
                    self.absent("ModemManager stopped".into());
                }
                end => return end,
            }
        }
    }

    /// Follow a running ModemManager until it leaves the bus.
    async fn follow(
        &mut self,
        conn: &Connection,
        owners: &mut zbus::fdo::NameOwnerChangedStream,
        cancel: &CancellationToken,
    ) -> SessionEnd {
        let om = match ObjectManagerProxy::builder(conn)
            .destination(MM_SERVICE)
            .path(MM_PATH)
            .cache_properties(CacheProperties::No)
            .build()
            .await
        {
            Ok(p) => p,
            Err(e) => return SessionEnd::Error(e.to_string()),
        };
        let (mut added, mut removed) = match (
            om.receive_interfaces_added().await,
            om.receive_interfaces_removed().await,
        ) {
            (Ok(a), Ok(r)) => (a, r),
            (Err(e), _) | (_, Err(e)) => return SessionEnd::Error(e.to_string()),
        };
        let objects = match tokio::time::timeout(CALL_TIMEOUT, om.get_managed_objects()).await {
            Ok(Ok(o)) => o,
            // It may have left right after appearing: wait for the next owner.
            Ok(Err(e)) => {
                tracing::warn!("ModemManager GetManagedObjects: {e}");
                return SessionEnd::ManagerGone;
            }
            Err(_) => return SessionEnd::Error("GetManagedObjects timed out".into()),
        };
        let mut session = Session::new(conn.clone());
        for (path, ifaces) in &objects {
            let names = iface_names(ifaces.keys().map(|k| k.as_str()));
            if names.contains(MODEM_IFACE) {
                if let Err(e) = session.add(path.as_str(), &names).await {
                    tracing::warn!("modem {path}: {e}");
                }
            }
        }
        let infos = session.infos();
        self.ifaces.present(&infos);
        self.ifaces.enumerated(&infos, &self.sys_class_net);
        let version = proxies::ModemManager1Proxy::builder(conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await;
        let version = match version {
            Ok(p) => p.version().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        tracing::info!(version = %version, modems = infos.len(), "ModemManager is running");
        if self.announced_absence.take().is_some() {
            self.events.raise(Event::new(
                Severity::Info,
                Category::Modem,
                format!(
                    "ModemManager is back: {} modem{}",
                    infos.len(),
                    if infos.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        self.publish(&session, true);

        loop {
            tokio::select! {
                _ = cancel.cancelled() => return SessionEnd::Cancelled,
                signal = owners.next() => match signal {
                    None => return SessionEnd::Error("bus connection closed".into()),
                    Some(s) => {
                        // Released, or handed to a new process: either way the objects
                        // we follow are gone.
                        let _ = s;
                        return SessionEnd::ManagerGone;
                    }
                },
                signal = added.next() => {
                    let Some(signal) = signal else {
                        return SessionEnd::Error("InterfacesAdded stream ended".into());
                    };
                    let Ok(args) = signal.args() else { continue };
                    let path = args.object_path().to_string();
                    let names = iface_names(args.interfaces_and_properties().keys().map(|k| k.as_str()));
                    self.on_added(&mut session, &path, &names).await;
                }
                signal = removed.next() => {
                    let Some(signal) = signal else {
                        return SessionEnd::Error("InterfacesRemoved stream ended".into());
                    };
                    let Ok(args) = signal.args() else { continue };
                    let path = args.object_path().to_string();
                    let names = iface_names(args.interfaces().iter().map(|k| k.as_str()));
                    self.on_removed(&mut session, &path, &names);
                }
                Some(path) = session.streams.next() => {
                    if let Some((old, new)) = session.refresh(&path).await {
                        self.on_changed(&session, &old, &new);
                    }
                }
            }
        }
    }

    async fn on_added(&mut self, session: &mut Session, path: &str, names: &BTreeSet<String>) {
        if let Some(mut t) = session.modems.remove(path) {
            // New interfaces on a known modem (e.g. 3GPP once enabled).
            session.extend(&mut t, path, names).await;
            session.modems.insert(path.to_owned(), t);
            if let Some((old, new)) = session.refresh(path).await {
                self.on_changed(session, &old, &new);
            }
            return;
        }
        if !names.contains(MODEM_IFACE) {
            return;
        }
        if let Err(e) = session.add(path, names).await {
            tracing::warn!("modem {path} appeared but cannot be read: {e}");
            return;
        }
        let info = session.modems[path].info.clone();
        tracing::info!(modem = %path, label = %info.label(), "modem added");
        for e in model::modem_events(None, Some(&info)) {
            self.events.raise(e);
        }
        self.publish(session, true);
    }

    fn on_removed(&mut self, session: &mut Session, path: &str, names: &BTreeSet<String>) {
        if names.contains(MODEM_IFACE) {
            let Some(t) = session.modems.remove(path) else {
                return;
            };
            tracing::info!(modem = %path, label = %t.info.label(), "modem removed");
            let others = session.infos();
            self.ifaces.removed(&t.info, &others);
            for e in model::modem_events(Some(&t.info), None) {
                self.events.raise(e);
            }
            drop(t);
            self.publish(session, true);
            return;
        }
        if let Some(t) = session.modems.get_mut(path) {
            if names.contains(MODEM_3GPP_IFACE) {
                t.gpp = None;
            }
            if names.contains(SIGNAL_IFACE) {
                t.signal = None;
            }
            let old = t.info.clone();
            t.info = read_info(path, t);
            let new = t.info.clone();
            self.on_changed(session, &old, &new);
        }
    }

    fn on_changed(&mut self, session: &Session, old: &ModemInfo, new: &ModemInfo) {
        if old == new {
            return;
        }
        for e in model::modem_events(Some(old), Some(new)) {
            self.events.raise(e);
        }
        self.publish(session, model::significant_change(old, new));
    }

    /// Publish the session's modems; ping for a prompt `device.status` when
    /// `significant`.
    fn publish(&mut self, session: &Session, significant: bool) {
        let modems = session.infos();
        self.ifaces.present(&modems);
        let next = ModemSnapshot {
            manager: ManagerStatus::Running,
            modems,
            gone_interfaces: self.ifaces.gone.clone(),
        };
        let changed = self.snapshot.send_if_modified(|s| {
            if *s == next {
                false
            } else {
                *s = next;
                true
            }
        });
        if changed && significant {
            self.changes.ping("modems");
        }
    }

    /// ModemManager is not reachable: snapshot without modems, one warning event
    /// per absence.
    fn absent(&mut self, reason: String) {
        let next = ModemSnapshot {
            manager: ManagerStatus::Absent(reason.clone()),
            modems: Vec::new(),
            gone_interfaces: self.ifaces.gone.clone(),
        };
        let changed = self.snapshot.send_if_modified(|s| {
            if *s == next {
                false
            } else {
                *s = next;
                true
            }
        });
        if changed {
            self.changes.ping("ModemManager availability");
        }
        if self.announced_absence.is_none() {
            self.announced_absence = Some(reason.clone());
            self.events.raise(Event::new(
                Severity::Warning,
                Category::Modem,
                format!("ModemManager unavailable: {reason}; no modem status until it is back"),
            ));
        } else {
            tracing::debug!("ModemManager still unavailable: {reason}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::model::BearerInfo;
    use super::*;

    fn modem(index: u32, iface: &str) -> ModemInfo {
        ModemInfo {
            path: format!("/org/freedesktop/ModemManager1/Modem/{index}"),
            bearers: vec![BearerInfo {
                interface: Some(iface.into()),
                connected: true,
                ipv4: None,
            }],
            ..ModemInfo::default()
        }
    }

    #[test]
    fn removed_interfaces_are_gone_until_claimed_again() {
        let mut t = IfaceTracker::default();
        let a = modem(0, "wwan0");
        let b = modem(1, "wwan1");
        t.present([&a, &b]);
        assert!(t.gone.is_empty());
        t.removed(&b, [&a]);
        assert_eq!(t.gone, BTreeSet::from(["wwan1".to_owned()]));
        // Another modem holding the same interface name keeps it present.
        let b2 = modem(2, "wwan0");
        t.removed(&b2, [&a]);
        assert_eq!(t.gone.len(), 1);
        t.present([&modem(3, "wwan1")]);
        assert!(t.gone.is_empty());
    }

    #[test]
    fn after_restart_only_interfaces_missing_from_the_kernel_are_gone() {
        let sys = tempfile::tempdir().unwrap();
        std::fs::create_dir(sys.path().join("wwan0")).unwrap();
        let mut t = IfaceTracker::default();
        t.present([&modem(0, "wwan0"), &modem(1, "wwan1"), &modem(2, "wwan2")]);
        // ModemManager came back listing only modem 2 (still probing the others).
        t.enumerated([&modem(2, "wwan2")], sys.path());
        assert_eq!(t.gone, BTreeSet::from(["wwan1".to_owned()]));
    }

    #[test]
    fn modems_sort_by_index() {
        let mut v = [modem(10, "a"), modem(9, "b"), modem(0, "c")];
        v.sort_by(path_order);
        let idx: Vec<_> = v.iter().map(|m| m.index().to_owned()).collect();
        assert_eq!(idx, ["0", "9", "10"]);
    }
}
