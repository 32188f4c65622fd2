//! `rist://` link URIs, as used in the `links` property of `ristbondsink`/`ristbondsrc`.
//!
//! - Sender: `rist://HOST:PORT[?iface=wwan0][&local=IP[:PORT]]` — send to HOST:PORT (RTP)
//!   and HOST:PORT+1 (RTCP); bind to a network interface or local address.
//! - Receiver: `rist://@BIND_IP:PORT[?iface=IF]` — listen on BIND_IP:PORT (RTP) and
//!   PORT+1 (RTCP).
//! - Multicast: a HOST (sender) or BIND_IP (receiver) in 224.0.0.0/4 or ff00::/8 is a
//!   multicast group. `miface=IF` names the multicast interface: the one a sender sends
//!   on (`IP_MULTICAST_IF` / `IPV6_MULTICAST_IF`) and the one the group is joined on
//!   (`IP_ADD_MEMBERSHIP` / `IPV6_JOIN_GROUP`), as librist's `miface=` URL parameter and
//!   the `multicast-iface` property of GStreamer's `ristsink`/`ristsrc`. `ttl=1..255` sets
//!   the multicast TTL / hop limit (default [`DEFAULT_MULTICAST_TTL`]). Both RTP
//!   (GROUP:PORT) and RTCP (GROUP:PORT+1) go to the group: receivers send their RTCP to
//!   GROUP:PORT+1 too, where the sender has joined.
//!
//! PORT must be even (TR-06-1 §5.1). IPv6 literals go in brackets
//! (`rist://[2001:db8::1]:5000`, `local=[fe80::1]:6000`). The scheme is
//! case-insensitive; query values are percent-decoded.

use std::net::{IpAddr, SocketAddr};

use crate::Error;

/// Multicast TTL (IPv4) / hop limit (IPv6) used when a multicast URI has no `ttl=`: 1,
/// the packets stay on the local network segment. This is the default of GStreamer's
/// `ristsink`/`ristsrc` (`multicast-ttl`) and of RFC 1112 §6.1; librist uses 32. Set
/// `ttl=` when the group is routed.
pub const DEFAULT_MULTICAST_TTL: u8 = 1;

/// Longest network interface name Linux accepts, bytes (`IFNAMSIZ` - 1, linux/if.h).
/// Longer names are refused when parsing rather than silently truncated by the kernel.
pub const MAX_IFACE_NAME: usize = 15;

/// One parsed link URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkUri {
    /// The URI as written.
    pub uri: String,
    /// `true` for `rist://@…` (listen), `false` for a destination.
    pub listen: bool,
    /// Host as written (name or IP literal).
    pub host: String,
    /// RTP port (even); RTCP is `port + 1`.
    pub port: u16,
    /// `iface=` query parameter: network interface to bind to (SO_BINDTODEVICE).
    pub iface: Option<String>,
    /// `local=` query parameter: local address to bind to.
    pub local: Option<SocketAddr>,
    /// `miface=` query parameter: multicast interface name (at most [`MAX_IFACE_NAME`]
    /// bytes). Only on a multicast link: the interface the sender sends the group's RTP
    /// and RTCP on, and the one the group is joined on (receiver: RTP and RTCP; sender:
    /// RTCP, to hear the receivers' reports). `None`: `iface=` if set, else the kernel
    /// picks by its routes (a `224.0.0.0/4` or `ff00::/8` route must exist).
    /// Source: librist URL syntax (`miface`), GStreamer `ristsink`/`ristsrc`
    /// `multicast-iface`.
    pub miface: Option<String>,
    /// `ttl=` query parameter: multicast TTL / hop limit, 1..=255. Only on a multicast
    /// link; `None` means [`DEFAULT_MULTICAST_TTL`] (see [`LinkUri::multicast_ttl`]).
    pub ttl: Option<u8>,
}

fn invalid(uri: &str, reason: impl Into<String>) -> Error {
    Error::InvalidUri {
        uri: uri.to_string(),
        reason: reason.into(),
    }
}

/// Split `HOST:PORT` / `[V6]:PORT` into the host (brackets removed) and the port text.
fn split_host_port<'a>(uri: &str, authority: &'a str) -> Result<(&'a str, &'a str), Error> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| invalid(uri, "unterminated '[' in IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| invalid(uri, "missing port (expected [ADDR]:PORT)"))?;
        Ok((host, port))
    } else {
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| invalid(uri, "missing port (expected HOST:PORT, PORT even)"))?;
        if host.contains(':') {
            return Err(invalid(
                uri,
                "IPv6 addresses must be written in brackets: [ADDR]:PORT",
            ));
        }
        Ok((host, port))
    }
}

fn parse_port(uri: &str, text: &str) -> Result<u16, Error> {
    if text.is_empty() {
        return Err(invalid(uri, "missing port (expected HOST:PORT, PORT even)"));
    }
    let port: u16 = text
        .parse()
        .map_err(|_| invalid(uri, format!("port {text:?} is not a number in 1..=65534")))?;
    if port == 0 {
        return Err(invalid(uri, "port 0 is not allowed"));
    }
    if !port.is_multiple_of(2) {
        return Err(invalid(
            uri,
            format!("port {port} is odd; RIST needs an even RTP port (RTCP uses port+1)"),
        ));
    }
    Ok(port)
}

fn parse_local(uri: &str, value: &str) -> Result<SocketAddr, Error> {
    if let Ok(sa) = value.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let bare = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 0))
        .map_err(|_| {
            invalid(
                uri,
                format!("local={value:?} is not IP or IP:PORT (IPv6 as [ADDR]:PORT)"),
            )
        })
}

/// Why a unicast link cannot take the multicast-only keys it was given, if it cannot.
fn unicast_refuses(listen: bool, miface: bool, ttl: bool) -> Option<&'static str> {
    if miface {
        Some(if listen {
            "miface= applies to a multicast address; use iface= to bind a unicast listen link \
             to an interface"
        } else {
            "miface= applies to a multicast address; use iface= to bind a unicast link"
        })
    } else if ttl {
        Some("ttl= applies to a multicast address (it sets the multicast TTL)")
    } else {
        None
    }
}

impl LinkUri {
    /// Parse one URI. Errors: [`Error::InvalidUri`] naming what is wrong (scheme, odd or
    /// missing port, unknown query key, bad local address, `miface=`/`ttl=` on a unicast
    /// IP literal, `miface=` longer than [`MAX_IFACE_NAME`] bytes, `ttl=` not in 1..=255).
    pub fn parse(uri: &str) -> Result<Self, Error> {
        let text = uri.trim();
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| invalid(uri, "expected rist://HOST:PORT or rist://@BIND_IP:PORT"))?;
        if !scheme.eq_ignore_ascii_case("rist") {
            return Err(invalid(uri, format!("scheme {scheme:?} is not rist")));
        }
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains('/') {
            return Err(invalid(uri, "a path is not allowed after HOST:PORT"));
        }
        let (listen, authority) = match authority.strip_prefix('@') {
            Some(a) => (true, a),
            None => (false, authority),
        };
        if authority.contains('@') {
            return Err(invalid(
                uri,
                "user info is not allowed; '@' only as rist://@BIND_IP:PORT",
            ));
        }
        let (host, port_text) = split_host_port(uri, authority)?;
        if host.is_empty() {
            return Err(invalid(
                uri,
                if listen {
                    "missing bind address (use rist://@0.0.0.0:PORT to listen on all)"
                } else {
                    "missing host"
                },
            ));
        }
        if listen && host.parse::<IpAddr>().is_err() {
            return Err(invalid(
                uri,
                format!("bind address {host:?} is not an IP address"),
            ));
        }
        let port = parse_port(uri, port_text)?;

        let mut iface = None;
        let mut miface = None;
        let mut local = None;
        let mut ttl = None;
        if let Some(q) = query {
            for (key, value) in url::form_urlencoded::parse(q.as_bytes()) {
                match key.as_ref() {
                    "iface" => {
                        if iface.is_some() {
                            return Err(invalid(uri, "iface= given twice"));
                        }
                        if value.is_empty() {
                            return Err(invalid(uri, "iface= is empty"));
                        }
                        iface = Some(value.into_owned());
                    }
                    "miface" => {
                        if miface.is_some() {
                            return Err(invalid(uri, "miface= given twice"));
                        }
                        if value.is_empty() {
                            return Err(invalid(uri, "miface= is empty"));
                        }
                        if value.len() > MAX_IFACE_NAME {
                            return Err(invalid(
                                uri,
                                format!(
                                    "miface={value:?} is longer than {MAX_IFACE_NAME} bytes \
                                     (Linux interface names, IFNAMSIZ)"
                                ),
                            ));
                        }
                        miface = Some(value.into_owned());
                    }
                    "ttl" => {
                        if ttl.is_some() {
                            return Err(invalid(uri, "ttl= given twice"));
                        }
                        ttl =
                            Some(value.parse::<u8>().ok().filter(|t| *t > 0).ok_or_else(|| {
                                invalid(uri, format!("ttl={value:?} is not a number in 1..=255"))
                            })?);
                    }
                    "local" => {
                        if listen {
                            return Err(invalid(
                                uri,
                                "local= only applies to sender URIs; a listen URI binds to its @ address",
                            ));
                        }
                        if local.is_some() {
                            return Err(invalid(uri, "local= given twice"));
                        }
                        local = Some(parse_local(uri, &value)?);
                    }
                    "" => return Err(invalid(uri, "empty query parameter")),
                    other => {
                        return Err(invalid(
                            uri,
                            format!(
                                "unknown query key {other:?} (known: iface, local, miface, ttl)"
                            ),
                        ))
                    }
                }
            }
        }

        // A host name may still resolve to a group; the elements check that case again
        // on the resolved address (`check_multicast`).
        let literal_unicast = host.parse::<IpAddr>().is_ok_and(|ip| !ip.is_multicast());
        if literal_unicast {
            if let Some(reason) = unicast_refuses(listen, miface.is_some(), ttl.is_some()) {
                return Err(invalid(uri, reason));
            }
        }

        Ok(Self {
            uri: text.to_string(),
            listen,
            host: host.to_string(),
            port,
            iface,
            local,
            miface,
            ttl,
        })
    }

    /// Check the multicast-only keys against what the host is (`multicast`: the host,
    /// or the address it resolved to, is in 224.0.0.0/4 or ff00::/8). Returns the reason
    /// text for [`Error::InvalidUri`]. librist accepts `miface=` on a unicast link and
    /// ignores it there (`IP_MULTICAST_IF` does not steer unicast); we refuse it, since
    /// a link that looks pinned to an interface but takes the default route is the
    /// harder fault to find in the field.
    pub fn check_multicast(&self, multicast: bool) -> Result<(), &'static str> {
        match multicast {
            true => Ok(()),
            false => unicast_refuses(self.listen, self.miface.is_some(), self.ttl.is_some())
                .map_or(Ok(()), Err),
        }
    }

    /// The multicast group, when the host is an IP literal in 224.0.0.0/4 or ff00::/8;
    /// `None` for unicast literals and host names (resolve them and test the address).
    pub fn multicast_group(&self) -> Option<IpAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .filter(IpAddr::is_multicast)
    }

    /// The interface to send on and join a multicast group on: `miface=`, else `iface=`
    /// (a link bound to a device sends and joins there), else `None` (the kernel picks).
    pub fn multicast_iface(&self) -> Option<&str> {
        self.miface.as_deref().or(self.iface.as_deref())
    }

    /// Multicast TTL / hop limit to use: `ttl=` or [`DEFAULT_MULTICAST_TTL`].
    pub fn multicast_ttl(&self) -> u8 {
        self.ttl.unwrap_or(DEFAULT_MULTICAST_TTL)
    }

    /// Parse a comma-separated list (the `links` property); empty items are errors.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, Error> {
        list.split(',')
            .enumerate()
            .map(|(i, item)| {
                if item.trim().is_empty() {
                    Err(invalid(list, format!("link #{} is empty", i + 1)))
                } else {
                    Self::parse(item)
                }
            })
            .collect()
    }

    /// RTCP port: `port + 1` (TR-06-1 §5.1).
    pub fn rtcp_port(&self) -> u16 {
        self.port + 1
    }

    /// For a listen URI, the RTP socket address to bind (`BIND_IP:PORT`); `None` for a
    /// destination URI.
    pub fn bind_addr(&self) -> Option<SocketAddr> {
        if !self.listen {
            return None;
        }
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Result<LinkUri, Error>) -> String {
        match r {
            Err(Error::InvalidUri { reason, .. }) => reason,
            other => panic!("expected InvalidUri, got {other:?}"),
        }
    }

    #[test]
    fn sender_uri_with_iface_and_local() {
        let l =
            LinkUri::parse("rist://host.example:15000?iface=wwan0&local=10.0.0.2:6000").unwrap();
        assert!(!l.listen);
        assert_eq!(l.host, "host.example");
        assert_eq!(l.port, 15000);
        assert_eq!(l.rtcp_port(), 15001);
        assert_eq!(l.iface.as_deref(), Some("wwan0"));
        assert_eq!(l.local, Some("10.0.0.2:6000".parse().unwrap()));
        assert_eq!(l.bind_addr(), None);
    }

    #[test]
    fn local_without_port_and_ipv6() {
        let l = LinkUri::parse("RIST://[2001:db8::1]:5000?local=[fe80::1]").unwrap();
        assert_eq!(l.host, "2001:db8::1");
        assert_eq!(l.local, Some("[fe80::1]:0".parse().unwrap()));
        let l = LinkUri::parse("rist://1.2.3.4:5000?local=10.0.0.1").unwrap();
        assert_eq!(l.local, Some("10.0.0.1:0".parse().unwrap()));
    }

    #[test]
    fn receiver_uri() {
        let l = LinkUri::parse("rist://@0.0.0.0:15002").unwrap();
        assert!(l.listen);
        assert_eq!(l.bind_addr(), Some("0.0.0.0:15002".parse().unwrap()));
        let l = LinkUri::parse("rist://@[::]:15002?iface=eth0").unwrap();
        assert_eq!(l.bind_addr(), Some("[::]:15002".parse().unwrap()));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(reason(LinkUri::parse("udp://h:5000")).contains("scheme"));
        assert!(reason(LinkUri::parse("rist://h:5001")).contains("odd"));
        assert!(reason(LinkUri::parse("rist://h")).contains("missing port"));
        assert!(reason(LinkUri::parse("rist://h:")).contains("missing port"));
        assert!(reason(LinkUri::parse("rist://h:99999")).contains("not a number"));
        assert!(reason(LinkUri::parse("rist://h:0")).contains("port 0"));
        assert!(reason(LinkUri::parse("rist://h:5000?foo=1")).contains("unknown query key"));
        assert!(reason(LinkUri::parse("rist://h:5000?local=nope")).contains("local="));
        assert!(reason(LinkUri::parse("rist://@host:5000")).contains("not an IP"));
        assert!(reason(LinkUri::parse("rist://@:5000")).contains("bind address"));
        assert!(reason(LinkUri::parse("rist://@0.0.0.0:5000?local=1.2.3.4")).contains("sender"));
        assert!(reason(LinkUri::parse("rist://::1:5000")).contains("brackets"));
        assert!(reason(LinkUri::parse("rist://h:5000?iface=a&iface=b")).contains("twice"));
        assert!(reason(LinkUri::parse("rist://h:5000?iface=")).contains("empty"));
        assert!(reason(LinkUri::parse("h:5000")).contains("rist://"));
        assert!(reason(LinkUri::parse("rist://u@h:5000")).contains("user info"));
    }

    #[test]
    fn multicast_sender_and_receiver_with_miface() {
        let l = LinkUri::parse("rist://239.1.2.3:5000?miface=eth1&ttl=16").unwrap();
        assert!(!l.listen);
        assert_eq!(l.multicast_group(), Some("239.1.2.3".parse().unwrap()));
        assert_eq!(l.miface.as_deref(), Some("eth1"));
        assert_eq!(l.multicast_iface(), Some("eth1"));
        assert_eq!(l.multicast_ttl(), 16);
        assert_eq!(l.check_multicast(true), Ok(()));

        let l = LinkUri::parse("rist://@239.1.2.3:5000?miface=veth1").unwrap();
        assert!(l.listen);
        assert_eq!(l.bind_addr(), Some("239.1.2.3:5000".parse().unwrap()));
        assert_eq!(l.multicast_ttl(), DEFAULT_MULTICAST_TTL);

        // IPv6 groups (ff00::/8), edges of 224.0.0.0/4.
        let l = LinkUri::parse("rist://[ff3e::1234]:5000?miface=a23456789012345").unwrap();
        assert_eq!(l.multicast_group(), Some("ff3e::1234".parse().unwrap()));
        assert!(LinkUri::parse("rist://224.0.0.0:5000?miface=x").is_ok());
        assert!(LinkUri::parse("rist://@239.255.255.255:5000?miface=x").is_ok());

        // Without miface= a multicast link uses iface=, else the kernel's route.
        let l = LinkUri::parse("rist://239.1.2.3:5000?iface=wwan0").unwrap();
        assert_eq!(l.multicast_iface(), Some("wwan0"));
        let l = LinkUri::parse("rist://239.1.2.3:5000").unwrap();
        assert_eq!((l.miface.as_deref(), l.multicast_iface()), (None, None));
        // Host names are checked once resolved.
        let l = LinkUri::parse("rist://group.example:5000?miface=eth1").unwrap();
        assert_eq!(l.multicast_group(), None);
        assert!(l.check_multicast(false).unwrap_err().contains("iface="));
        assert_eq!(
            LinkUri::parse("rist://10.0.0.1:5000")
                .unwrap()
                .multicast_group(),
            None
        );
    }

    #[test]
    fn multicast_keys_are_refused_where_they_mean_nothing() {
        for uri in [
            "rist://10.0.0.1:5000?miface=eth1",
            "rist://[2001:db8::1]:5000?miface=eth1",
            "rist://223.255.255.255:5000?miface=eth1",
            "rist://240.0.0.1:5000?miface=eth1",
        ] {
            let r = reason(LinkUri::parse(uri));
            assert!(
                r.contains(
                    "miface= applies to a multicast address; use iface= to bind a unicast link"
                ),
                "{uri}: {r}"
            );
        }
        assert!(reason(LinkUri::parse("rist://@0.0.0.0:5000?miface=eth1")).contains("listen"));
        assert!(reason(LinkUri::parse("rist://10.0.0.1:5000?ttl=4")).contains("ttl="));
        let m = "rist://239.1.2.3:5000";
        assert!(reason(LinkUri::parse(&format!("{m}?miface=a&miface=b"))).contains("twice"));
        assert!(reason(LinkUri::parse(&format!("{m}?miface="))).contains("empty"));
        assert!(
            reason(LinkUri::parse(&format!("{m}?miface=a234567890123456"))).contains("15 bytes")
        );
        for bad in ["0", "256", "-1", "x", ""] {
            assert!(
                reason(LinkUri::parse(&format!("{m}?ttl={bad}"))).contains("1..=255"),
                "ttl={bad}"
            );
        }
        assert!(reason(LinkUri::parse(&format!("{m}?ttl=1&ttl=2"))).contains("twice"));
        let unknown = reason(LinkUri::parse(&format!("{m}?mcast_iface=a")));
        assert!(
            unknown.contains("known: iface, local, miface, ttl"),
            "{unknown}"
        );
    }

    #[test]
    fn list_parsing() {
        let v =
            LinkUri::parse_list("rist://h:15000?iface=wwan0, rist://h:15002?iface=wwan1").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].port, 15002);
        assert_eq!(v[1].uri, "rist://h:15002?iface=wwan1");
        assert!(reason(
            LinkUri::parse_list("rist://h:15000,,rist://h:15002").map(|mut v| v.remove(0))
        )
        .contains("#2 is empty"));
        assert!(LinkUri::parse_list("").is_err());
        assert!(LinkUri::parse_list("rist://h:15000,rist://h:15003").is_err());
    }
}
