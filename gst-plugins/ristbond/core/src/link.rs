//! `rist://` link URIs, as used in the `links` property of `ristbondsink`/`ristbondsrc`.
//!
//! CONTRACT (fill in the bodies; keep these signatures).
//!
//! - Sender: `rist://HOST:PORT[?iface=wwan0][&local=IP[:PORT]]` — send to HOST:PORT (RTP)
//!   and HOST:PORT+1 (RTCP); bind to a network interface or local address.
//! - Receiver: `rist://@BIND_IP:PORT` — listen on BIND_IP:PORT (RTP) and PORT+1 (RTCP).
//!
//! PORT must be even (TR-06-1 §5.1).

use std::net::SocketAddr;

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

impl LinkUri {
    /// Parse one URI. Errors: [`Error::InvalidUri`] naming what is wrong (scheme, odd or
    /// missing port, unknown query key, bad local address).
    pub fn parse(uri: &str) -> Result<Self, Error> {
        let _ = uri;
        todo!()
    }

    /// Parse a comma-separated list (the `links` property); empty items are errors.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, Error> {
        let _ = list;
        todo!()
    }
}
