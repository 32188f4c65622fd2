//! Network interfaces for `device.status.network_interfaces` (PROTOCOL.md §4):
//! names, kind and state from `/sys/class/net`, addresses from `getifaddrs(3)`
//! (crate `if-addrs`), joined with the modems ModemManager reports
//! ([`join_modems`]). Loopback is left out.
//!
//! Changes are noticed through an rtnetlink socket subscribed to link and address
//! notifications (`RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR`, `RTMGRP_IPV6_IFADDR`; rtnetlink(7)):
//! on a notification the interface list is compared with the previous one and the
//! [`ChangeNotifier`] is pinged only if what `device.status` shows has changed
//! (Wi-Fi drivers send link notifications for every scan).

use std::collections::HashMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use braid_protocol::device::{InterfaceState, InterfaceType, NetworkInterface};
use netlink_sys::{protocols::NETLINK_ROUTE, AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};
use tokio_util::sync::CancellationToken;

use super::modem::ModemSnapshot;
use super::notify::ChangeNotifier;

/// Where the kernel lists network interfaces.
pub const SYS_CLASS_NET: &str = "/sys/class/net";

/// `ARPHRD_LOOPBACK` in `/sys/class/net/X/type`.
const ARPHRD_LOOPBACK: u32 = 772;
/// `IFF_UP` in `/sys/class/net/X/flags`.
const IFF_UP: u32 = 0x1;
/// rtnetlink multicast groups (linux/rtnetlink.h).
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
/// Notifications are collected this long before the interfaces are re-read.
const NETLINK_SETTLE: Duration = Duration::from_millis(100);

/// Addresses per interface name: (address, prefix length), as `getifaddrs` lists
/// them.
pub type Addresses = HashMap<String, Vec<(IpAddr, u8)>>;

/// All non-loopback interfaces under `sys_class_net`, sorted by name. `ip` is the
/// first IPv4 address; `addresses` every address in CIDR notation, IPv4 first,
/// without IPv6 link-local ones (`fe80::/10`).
pub fn interfaces(sys_class_net: &Path, addrs: &Addresses) -> Vec<NetworkInterface> {
    let Ok(entries) = fs::read_dir(sys_class_net) else {
        return Vec::new();
    };
    let mut list: Vec<NetworkInterface> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let dir = entry.path();
            if name == "lo" || read_u32(&dir.join("type")) == Some(ARPHRD_LOOPBACK) {
                return None;
            }
            let mut iface = NetworkInterface::new(name.clone(), kind(&name, &dir), state(&dir));
            if let Some(list) = addrs.get(&name) {
                let mut v4: Vec<&(IpAddr, u8)> = list.iter().filter(|(a, _)| a.is_ipv4()).collect();
                let v6 = list.iter().filter(|(a, _)| match a {
                    IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
                    IpAddr::V4(_) => false,
                });
                iface.ip = v4.first().map(|(a, _)| a.to_string());
                v4.extend(v6);
                iface.addresses = v4.iter().map(|(a, p)| format!("{a}/{p}")).collect();
            }
            Some(iface)
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

/// Addresses of every interface from `getifaddrs`, loopback addresses excluded.
/// Empty when `getifaddrs` fails.
pub fn addresses() -> Addresses {
    let mut map: Addresses = HashMap::new();
    match if_addrs::get_if_addrs() {
        Ok(addrs) => {
            for a in addrs {
                let entry = match &a.addr {
                    if_addrs::IfAddr::V4(v4) if !v4.ip.is_loopback() => {
                        (IpAddr::V4(v4.ip), v4.prefixlen)
                    }
                    if_addrs::IfAddr::V6(v6) if !v6.ip.is_loopback() => {
                        (IpAddr::V6(v6.ip), v6.prefixlen)
                    }
                    _ => continue,
                };
                map.entry(a.name.clone()).or_default().push(entry);
            }
        }
        Err(e) => tracing::debug!("getifaddrs: {e}"),
    }
    map
}

/// Join the modems into the interface list: a modem whose interface the kernel
/// lists enriches that entry (type `cellular`, the modem figures; the kernel's
/// addresses are kept, the bearer's IPv4 fills in when the kernel has none); its
/// state is the modem's, except that a modem ModemManager calls connected whose
/// interface is down is `connecting`. A modem whose interface the kernel does not
/// list (or that has none yet) is added as its own `cellular` entry. Sorted by name.
pub fn join_modems(list: &mut Vec<NetworkInterface>, snapshot: &ModemSnapshot) {
    for modem in &snapshot.modems {
        let from_modem = modem.to_interface();
        match list.iter_mut().find(|i| i.name == from_modem.name) {
            Some(entry) => {
                let kernel_state = entry.state;
                let ip = entry.ip.take();
                let addresses = std::mem::take(&mut entry.addresses);
                *entry = NetworkInterface {
                    ip: ip.or(from_modem.ip.clone()),
                    addresses: if addresses.is_empty() {
                        from_modem.addresses.clone()
                    } else {
                        addresses
                    },
                    ..from_modem
                };
                if entry.state == InterfaceState::Connected
                    && kernel_state == InterfaceState::Disconnected
                {
                    entry.state = InterfaceState::Connecting;
                }
            }
            None => list.push(from_modem),
        }
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
}

/// `cellular` for `ww*` names and `DEVTYPE=wwan`, `wifi` for `DEVTYPE=wlan` or when
/// `<dir>/wireless` exists, `ethernet` otherwise.
fn kind(name: &str, dir: &Path) -> InterfaceType {
    let devtype = fs::read_to_string(dir.join("uevent"))
        .ok()
        .and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVTYPE=").map(str::to_owned))
        })
        .unwrap_or_default();
    if name.starts_with("ww") || devtype == "wwan" {
        InterfaceType::Cellular
    } else if devtype == "wlan" || dir.join("wireless").exists() {
        InterfaceType::Wifi
    } else {
        InterfaceType::Ethernet
    }
}

/// From `operstate`: `up` → connected, `dormant` → connecting, `unknown` (drivers
/// without operstate, e.g. some modems and tunnels) → connected when the interface
/// is administratively up with carrier, anything else → disconnected.
fn state(dir: &Path) -> InterfaceState {
    let operstate = fs::read_to_string(dir.join("operstate")).unwrap_or_default();
    match operstate.trim() {
        "up" => InterfaceState::Connected,
        "dormant" => InterfaceState::Connecting,
        "unknown" => {
            let up = read_u32(&dir.join("flags")).is_some_and(|f| f & IFF_UP != 0);
            let carrier = read_u32(&dir.join("carrier")) == Some(1);
            if up && carrier {
                InterfaceState::Connected
            } else {
                InterfaceState::Disconnected
            }
        }
        _ => InterfaceState::Disconnected,
    }
}

/// A decimal or `0x` hex number from a sysfs file.
fn read_u32(path: &Path) -> Option<u32> {
    let text = fs::read_to_string(path).ok()?;
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Follow rtnetlink link/address notifications until `cancel` fires; ping
/// `changes` when the interface list (names, types, states, addresses) differs
/// from the previous one. Without rtnetlink (it cannot fail on Linux unless the
/// process is very restricted) the list is compared every 2 s instead.
pub async fn watch(sys_class_net: PathBuf, changes: ChangeNotifier, cancel: CancellationToken) {
    let read = {
        let dir = sys_class_net.clone();
        move || interfaces(&dir, &addresses())
    };
    let mut last = read();
    let socket = TokioSocket::new(NETLINK_ROUTE).and_then(|mut s| {
        s.socket_mut().bind(&SocketAddr::new(
            0,
            RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
        ))?;
        Ok(s)
    });
    let mut socket = match socket {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("rtnetlink unavailable ({e}); interfaces are compared every 2 s");
            None
        }
    };
    loop {
        match socket.as_mut() {
            Some(s) => {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = s.recv_from_full() => if let Err(e) = r {
                        tracing::warn!("rtnetlink: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    },
                }
                // Let a burst settle, then drain what queued up meanwhile.
                tokio::time::sleep(NETLINK_SETTLE).await;
                let mut buf = Vec::with_capacity(8192);
                while let Some(Ok(_)) = futures_util::FutureExt::now_or_never(s.recv(&mut buf)) {
                    buf.clear();
                }
            }
            None => tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            },
        }
        let now = read();
        if now != last {
            changes.ping("network interfaces");
            last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::modem::{model::BearerInfo, ManagerStatus, ModemInfo};
    use super::*;

    fn fake(root: &Path, name: &str, files: &[(&str, &str)]) {
        let dir = root.join(name);
        fs::create_dir_all(&dir).unwrap();
        for (file, content) in files {
            if file.ends_with('/') {
                fs::create_dir_all(dir.join(file)).unwrap();
            } else {
                fs::write(dir.join(file), content).unwrap();
            }
        }
    }

    #[test]
    fn kinds_states_addresses_and_no_loopback() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fake(r, "lo", &[("type", "772\n"), ("operstate", "unknown\n")]);
        fake(r, "eth0", &[("type", "1\n"), ("operstate", "up\n")]);
        fake(
            r,
            "wlan0",
            &[
                ("type", "1\n"),
                ("operstate", "dormant\n"),
                ("wireless/", ""),
            ],
        );
        fake(r, "wwan0", &[("type", "65534\n"), ("operstate", "down\n")]);
        fake(
            r,
            "wwan1",
            &[
                ("operstate", "unknown\n"),
                ("flags", "0x1091\n"),
                ("carrier", "1\n"),
            ],
        );
        fake(
            r,
            "usb0",
            &[
                ("operstate", "up\n"),
                ("uevent", "DEVTYPE=wwan\nINTERFACE=usb0\n"),
            ],
        );
        fake(
            r,
            "wlp1s0",
            &[("operstate", "up\n"), ("uevent", "DEVTYPE=wlan\n")],
        );
        let ips: Addresses = HashMap::from([(
            "eth0".to_owned(),
            vec![
                ("fe80::1".parse().unwrap(), 64),
                ("2001:db8::7".parse().unwrap(), 64),
                ("192.0.2.7".parse().unwrap(), 24),
            ],
        )]);
        let list = interfaces(r, &ips);
        let got: Vec<_> = list
            .iter()
            .map(|i| (i.name.as_str(), i.kind, i.state, i.ip.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "eth0",
                    InterfaceType::Ethernet,
                    InterfaceState::Connected,
                    Some("192.0.2.7")
                ),
                (
                    "usb0",
                    InterfaceType::Cellular,
                    InterfaceState::Connected,
                    None
                ),
                (
                    "wlan0",
                    InterfaceType::Wifi,
                    InterfaceState::Connecting,
                    None
                ),
                (
                    "wlp1s0",
                    InterfaceType::Wifi,
                    InterfaceState::Connected,
                    None
                ),
                (
                    "wwan0",
                    InterfaceType::Cellular,
                    InterfaceState::Disconnected,
                    None
                ),
                (
                    "wwan1",
                    InterfaceType::Cellular,
                    InterfaceState::Connected,
                    None
                ),
            ]
        );
        assert_eq!(list[0].addresses, ["192.0.2.7/24", "2001:db8::7/64"]);
    }

    #[test]
    fn real_system_lists_no_loopback() {
        let list = interfaces(Path::new(SYS_CLASS_NET), &addresses());
        assert!(list.iter().all(|i| i.name != "lo"));
    }

    fn modem(index: u32, iface: Option<&str>, state: i32) -> ModemInfo {
        ModemInfo {
            path: format!("/org/freedesktop/ModemManager1/Modem/{index}"),
            state: Some(state),
            operator: Some("Op".into()),
            access_technologies: 1 << 14,
            bearers: iface
                .map(|i| BearerInfo {
                    interface: Some(i.into()),
                    connected: state == 11,
                    ipv4: Some(("10.0.0.2".into(), 30)),
                })
                .into_iter()
                .collect(),
            ..ModemInfo::default()
        }
    }

    #[test]
    fn modems_enrich_their_interfaces_or_get_their_own_entry() {
        let mut list = vec![
            NetworkInterface {
                ip: Some("100.64.0.9".into()),
                addresses: vec!["100.64.0.9/29".into()],
                ..NetworkInterface::new("wwan0", InterfaceType::Cellular, InterfaceState::Connected)
            },
            NetworkInterface::new(
                "wwan1",
                InterfaceType::Cellular,
                InterfaceState::Disconnected,
            ),
            NetworkInterface::new("eth0", InterfaceType::Ethernet, InterfaceState::Connected),
        ];
        let snapshot = ModemSnapshot {
            manager: ManagerStatus::Running,
            modems: vec![
                modem(0, Some("wwan0"), 11),
                modem(1, Some("wwan1"), 11),
                modem(2, Some("wwan2"), 8),
                modem(3, None, 2),
            ],
            gone_interfaces: Default::default(),
        };
        join_modems(&mut list, &snapshot);
        let got: Vec<_> = list
            .iter()
            .map(|i| {
                (
                    i.name.as_str(),
                    i.kind,
                    i.state,
                    i.ip.as_deref(),
                    i.carrier.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "eth0",
                    InterfaceType::Ethernet,
                    InterfaceState::Connected,
                    None,
                    None
                ),
                (
                    "modem3",
                    InterfaceType::Cellular,
                    InterfaceState::Disconnected,
                    None,
                    Some("Op")
                ),
                (
                    "wwan0",
                    InterfaceType::Cellular,
                    InterfaceState::Connected,
                    Some("100.64.0.9"),
                    Some("Op")
                ),
                (
                    "wwan1",
                    InterfaceType::Cellular,
                    InterfaceState::Connecting,
                    Some("10.0.0.2"),
                    Some("Op")
                ),
                (
                    "wwan2",
                    InterfaceType::Cellular,
                    InterfaceState::Connecting,
                    Some("10.0.0.2"),
                    Some("Op")
                ),
            ]
        );
        assert_eq!(list[2].addresses, ["100.64.0.9/29"]);
        assert_eq!(list[3].addresses, ["10.0.0.2/30"]);
        assert_eq!(list[2].technology.as_deref(), Some("LTE"));
    }
}
