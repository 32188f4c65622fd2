//! Network interfaces for `device.status.network_interfaces` (PROTOCOL.md §4):
//! names, kind and state from `/sys/class/net`, IPv4 addresses from
//! `getifaddrs(3)` (crate `if-addrs`). Loopback is left out.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use braid_protocol::device::{InterfaceState, InterfaceType, NetworkInterface};

/// Where the kernel lists network interfaces.
pub const SYS_CLASS_NET: &str = "/sys/class/net";

/// `ARPHRD_LOOPBACK` in `/sys/class/net/X/type`.
const ARPHRD_LOOPBACK: u32 = 772;
/// `IFF_UP` in `/sys/class/net/X/flags`.
const IFF_UP: u32 = 0x1;

/// All non-loopback interfaces under `sys_class_net`, sorted by name, with the
/// first IPv4 address from `ipv4` (name → dotted quad) when the name has one.
pub fn interfaces(sys_class_net: &Path, ipv4: &HashMap<String, String>) -> Vec<NetworkInterface> {
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
            iface.ip = ipv4.get(&name).cloned();
            Some(iface)
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

/// First IPv4 address of each interface (name → dotted quad), loopback excluded.
/// Empty when `getifaddrs` fails.
pub fn ipv4_addresses() -> HashMap<String, String> {
    let mut map = HashMap::new();
    match if_addrs::get_if_addrs() {
        Ok(addrs) => {
            for a in addrs {
                if let std::net::IpAddr::V4(ip) = a.ip() {
                    if !ip.is_loopback() {
                        map.entry(a.name.clone()).or_insert_with(|| ip.to_string());
                    }
                }
            }
        }
        Err(e) => tracing::debug!("getifaddrs: {e}"),
    }
    map
}

/// `cellular` for `ww*` names (wwan0, wwx…), `wifi` when `<dir>/wireless` exists,
/// `ethernet` otherwise.
fn kind(name: &str, dir: &Path) -> InterfaceType {
    if name.starts_with("ww") {
        InterfaceType::Cellular
    } else if dir.join("wireless").exists() {
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

#[cfg(test)]
mod tests {
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
        let ips = HashMap::from([("eth0".to_owned(), "192.0.2.7".to_owned())]);
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
                    "wlan0",
                    InterfaceType::Wifi,
                    InterfaceState::Connecting,
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
    }

    #[test]
    fn real_system_lists_no_loopback() {
        let list = interfaces(Path::new(SYS_CLASS_NET), &ipv4_addresses());
        assert!(list.iter().all(|i| i.name != "lo"));
    }
}
