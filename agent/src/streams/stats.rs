//! `ristbond-stats` element messages (docs/elements.md) to `stream.stats` payloads
//! (PROTOCOL.md §4).

use braid_protocol::stream::{LinkState, LinkStats, OutputStats};

/// Figures read from one `ristbond-stats` message of `ristbondsink`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SinkStats {
    /// Per-link figures, with `id`/`interface` already mapped to the plan's links.
    pub links: Vec<LinkStats>,
    /// Aggregate counters.
    pub output: OutputStats,
    /// RTP bytes sent over all links.
    pub bytes_sent: u64,
    /// Usable aggregate capacity of the bond, bps (`available-bitrate`; 0 unknown).
    pub available_bps: u64,
}

fn u64_field(s: &gst::StructureRef, name: &str) -> u64 {
    s.get::<u64>(name).unwrap_or(0)
}

fn link_state(name: &str) -> LinkState {
    match name {
        "Degraded" => LinkState::Degraded,
        "Down" => LinkState::Down,
        "Probing" => LinkState::Probing,
        _ => LinkState::Live,
    }
}

/// Read a `ristbond-stats` structure (docs/elements.md). Link `id` in the message is
/// `bonding_config.links[].id` (the sink takes its links from the config); the
/// interface is the sink's `interface` field, else the URI. Returns `None` for any
/// other structure.
pub(crate) fn parse_sink_stats(s: &gst::StructureRef) -> Option<SinkStats> {
    if s.name() != "ristbond-stats" {
        return None;
    }
    let mut links = Vec::new();
    if let Ok(array) = s.get::<gst::Array>("links") {
        for value in array.iter() {
            let Ok(link) = value.get::<gst::Structure>() else {
                continue;
            };
            let iface = link.get::<&str>("interface").unwrap_or_default();
            let interface = if iface.is_empty() {
                link.get::<&str>("uri").unwrap_or_default()
            } else {
                iface
            };
            links.push(LinkStats {
                id: link.get::<u32>("id").unwrap_or(0),
                interface: interface.to_owned(),
                state: link_state(link.get::<&str>("state").unwrap_or("Live")),
                rtt_ms: link.get::<f64>("rtt-ms").unwrap_or(0.0),
                loss_rate: link.get::<f64>("loss-rate").unwrap_or(0.0),
                capacity_bps: u64_field(&link, "capacity-bps"),
                sent_bytes: u64_field(&link, "sent-bytes"),
                retransmitted_packets: u64_field(&link, "retransmitted-packets"),
                signal_dbm: None,
            });
        }
    }
    Some(SinkStats {
        links,
        output: OutputStats {
            packets_sent: u64_field(s, "packets-sent"),
            packets_retransmitted: u64_field(s, "packets-retransmitted"),
            packets_dropped_deadline: u64_field(s, "packets-dropped-deadline"),
        },
        bytes_sent: u64_field(s, "bytes-sent"),
        available_bps: u64_field(s, "available-bitrate"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_link_ids_and_interfaces_from_the_sink() {
        gst::init().unwrap();
        let link = |id: u32, iface: &str, uri: &str, state: &str, bytes: u64| {
            gst::Structure::builder("ristbond-link")
                .field("id", id)
                .field("interface", iface)
                .field("uri", uri)
                .field("state", state)
                .field("rtt-ms", 42.5f64)
                .field("sent-bytes", bytes)
                .field("retransmitted-packets", 3u64)
                .build()
        };
        let s = gst::Structure::builder("ristbond-stats")
            .field("packets-sent", 100u64)
            .field("packets-retransmitted", 4u64)
            .field("bytes-sent", 132_000u64)
            .field(
                "links",
                gst::Array::new([
                    link(7, "wwan0", "rist://127.0.0.1:15000", "Live", 66_000),
                    link(9, "", "rist://127.0.0.1:15002", "Down", 66_000),
                ]),
            )
            .build();
        let stats = parse_sink_stats(&s).unwrap();
        assert_eq!(stats.output.packets_sent, 100);
        assert_eq!(stats.bytes_sent, 132_000);
        assert_eq!(stats.links.len(), 2);
        assert_eq!(
            (stats.links[0].id, stats.links[0].interface.as_str()),
            (7, "wwan0")
        );
        assert_eq!(
            (stats.links[1].id, stats.links[1].interface.as_str()),
            (9, "rist://127.0.0.1:15002")
        );
        assert_eq!(stats.links[1].state, LinkState::Down);
        assert_eq!(stats.links[0].rtt_ms, 42.5);
        let other = gst::Structure::new_empty("something-else");
        assert!(parse_sink_stats(&other).is_none());
    }
}
