//! UDP port pairs for receivers (seed 004 §6): each link gets an even port P
//! (RTP) with P+1 (RTCP), taken from a configured range and returned when the
//! stream ends.

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::str::FromStr;

/// An inclusive port range, `FIRST-LAST`, e.g. `15000-15998`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or("expected FIRST-LAST, e.g. 15000-15998")?;
        let first: u16 = a.trim().parse().map_err(|e| format!("first port: {e}"))?;
        let last: u16 = b.trim().parse().map_err(|e| format!("last port: {e}"))?;
        if first > last || u32::from(last) - u32::from(first) < 1 {
            return Err("the range must hold at least one even/odd pair".into());
        }
        Ok(Self { first, last })
    }
}

/// Free even ports of a range.
#[derive(Debug)]
pub struct PortPool {
    range: PortRange,
    used: BTreeSet<u16>,
}

impl PortPool {
    /// A pool over `range`.
    pub fn new(range: PortRange) -> Self {
        Self {
            range,
            used: BTreeSet::new(),
        }
    }

    /// Take `n` even ports whose pairs (P, P+1) are both free on 127.0.0.1 now.
    /// `None` (nothing taken) if the range does not have `n` such pairs.
    pub fn allocate(&mut self, n: usize) -> Option<Vec<u16>> {
        let start = self.range.first + self.range.first % 2;
        let mut got = Vec::with_capacity(n);
        let mut p = u32::from(start);
        while got.len() < n && p < u32::from(self.range.last) {
            let port = p as u16;
            if !self.used.contains(&port) && pair_free(port) {
                got.push(port);
            }
            p += 2;
        }
        if got.len() < n {
            return None;
        }
        self.used.extend(got.iter().copied());
        Some(got)
    }

    /// Give ports back.
    pub fn release(&mut self, ports: &[u16]) {
        for p in ports {
            self.used.remove(p);
        }
    }
}

fn pair_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges() {
        assert_eq!(
            "15000-15998".parse(),
            Ok(PortRange {
                first: 15000,
                last: 15998
            })
        );
        assert!("15000".parse::<PortRange>().is_err());
        assert!("2-1".parse::<PortRange>().is_err());
    }

    #[test]
    fn even_pairs_skip_busy_ports_and_come_back() {
        let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
        let busy_port = busy.local_addr().unwrap().port();
        let base = busy_port - busy_port % 2;
        let mut pool = PortPool::new(PortRange {
            first: base.saturating_sub(1).max(2),
            last: base + 9,
        });
        let ports = pool.allocate(2).unwrap();
        assert!(ports.iter().all(|p| p % 2 == 0 && *p != base));
        assert!(ports.iter().all(|p| *p >= base.saturating_sub(1)));
        let more = pool.allocate(2);
        if let Some(more) = &more {
            assert!(more.iter().all(|p| !ports.contains(p)));
        }
        pool.release(&ports);
        assert_eq!(pool.allocate(2).unwrap(), ports);
    }
}
