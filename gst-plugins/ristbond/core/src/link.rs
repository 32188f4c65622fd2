//! `rist://` link URIs, as used in the `links` property of `ristbondsink`/`ristbondsrc`.
//!
//! - Sender: `rist://HOST:PORT[?iface=wwan0][&local=IP[:PORT]]` — send to HOST:PORT (RTP)
//!   and HOST:PORT+1 (RTCP); bind to a network interface or local address.
//! - Receiver: `rist://@BIND_IP:PORT[?iface=IF]` — listen on BIND_IP:PORT (RTP) and
//!   PORT+1 (RTCP).
//!
//! PORT must be even (TR-06-1 §5.1). IPv6 literals go in brackets
//! (`rist://[2001:db8::1]:5000`, `local=[fe80::1]:6000`). The scheme is
//! case-insensitive; query values are percent-decoded.

use std::net::{IpAddr, SocketAddr};

use crate::Error;

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

impl LinkUri {
    /// Parse one URI. Errors: [`Error::InvalidUri`] naming what is wrong (scheme, odd or
    /// missing port, unknown query key, bad local address).
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
        let mut local = None;
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
                            format!("unknown query key {other:?} (known: iface, local)"),
                        ))
                    }
                }
            }
        }

        Ok(Self {
            uri: text.to_string(),
            listen,
            host: host.to_string(),
            port,
            iface,
            local,
        })
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
