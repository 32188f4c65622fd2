//! What a stream tells the control plane besides stats: `thumbnail` messages from
//! `braidthumbnail`'s `braid-thumbnail` bus messages (docs/elements.md), and link
//! state-transition events from successive `ristbond-stats` (PROTOCOL.md §6,
//! docs/events.md).

use std::collections::HashMap;

use base64::Engine;
use braid_protocol::event::{Category, Event, Severity};
use braid_protocol::stream::{LinkState, LinkStats};
use braid_protocol::thumbnail::{Thumbnail, FORMAT_JPEG};

use crate::events::Raise;

/// A `thumbnail` payload from a `braid-thumbnail` element message; `None` for other
/// structures or one without a JPEG.
pub(crate) fn parse_thumbnail(stream_id: &str, s: &gst::StructureRef) -> Option<Thumbnail> {
    if s.name() != "braid-thumbnail" {
        return None;
    }
    let jpeg = s.get::<gst::Buffer>("jpeg").ok()?;
    let map = jpeg.map_readable().ok()?;
    Some(Thumbnail {
        stream_id: stream_id.to_owned(),
        width: s.get::<u32>("width").ok()?,
        height: s.get::<u32>("height").ok()?,
        format: FORMAT_JPEG.into(),
        data: base64::engine::general_purpose::STANDARD.encode(map.as_slice()),
    })
}

/// Flap-filter subject of a link of a stream.
pub(crate) fn link_subject(stream_id: &str, link_id: u32) -> String {
    format!("link/{stream_id}/{link_id}")
}

/// Remembers each link's last state and turns changes into events.
#[derive(Debug, Default)]
pub(crate) struct LinkWatch {
    states: HashMap<u32, LinkState>,
}

impl LinkWatch {
    /// Events for the links whose state changed since the last stats:
    ///
    /// | change | severity | message | state |
    /// |---|---|---|---|
    /// | any → `Down` | warning | `Link {name} down` | `down` |
    /// | `Down` → `Live` | info | `Link {name} up` | `up` |
    /// | `Degraded` → `Live` | info | `Link {name} recovered` | `up` |
    /// | any → `Degraded` | warning | `Link {name} degraded (loss {x} %)` | `degraded` |
    ///
    /// `Probing` (no receiver report yet, or probing again after `Down`) is not an
    /// event, and neither is the first `Live`. `{name}` is the link's interface, or `{id} ({uri})` without one.
    pub(crate) fn update(&mut self, stream_id: &str, links: &[LinkStats]) -> Vec<Raise> {
        let mut out = Vec::new();
        for link in links {
            let prev = self.states.get(&link.id).copied();
            if link.state == LinkState::Probing && prev.is_some() {
                // Re-probing after Down is not a state of its own: the next Live
                // (or Down) is compared with what was last reported.
                continue;
            }
            self.states.insert(link.id, link.state);
            let prev = prev.unwrap_or(LinkState::Probing);
            if prev == link.state {
                continue;
            }
            let name = if link.interface.contains("://") {
                format!("{} ({})", link.id, link.interface)
            } else {
                link.interface.clone()
            };
            let (severity, message, state) = match (prev, link.state) {
                (_, LinkState::Down) => (Severity::Warning, format!("Link {name} down"), "down"),
                (LinkState::Down, LinkState::Live) => {
                    (Severity::Info, format!("Link {name} up"), "up")
                }
                (LinkState::Degraded, LinkState::Live) => {
                    (Severity::Info, format!("Link {name} recovered"), "up")
                }
                (_, LinkState::Degraded) => (
                    Severity::Warning,
                    format!(
                        "Link {name} degraded (loss {:.1} %)",
                        link.loss_rate * 100.0
                    ),
                    "degraded",
                ),
                _ => continue,
            };
            let mut event = Event::new(severity, Category::Link, message);
            event.stream_id = Some(stream_id.to_owned());
            event.details = Some(serde_json::json!({ "link_id": link.id }));
            out.push(Raise::transition(
                event,
                link_subject(stream_id, link.id),
                state,
            ));
        }
        self.states
            .retain(|id, _| links.iter().any(|l| l.id == *id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(id: u32, state: LinkState) -> LinkStats {
        LinkStats {
            id,
            interface: if id == 0 {
                "wwan0".into()
            } else {
                "rist://127.0.0.1:15002".into()
            },
            state,
            rtt_ms: 0.0,
            loss_rate: 0.125,
            capacity_bps: 0,
            sent_bytes: 0,
            retransmitted_packets: 0,
            signal_dbm: None,
        }
    }

    fn msgs(r: &[Raise]) -> Vec<String> {
        r.iter().map(|r| r.event.message.clone()).collect()
    }

    #[test]
    fn transitions_become_events() {
        use LinkState::*;
        let mut w = LinkWatch::default();
        assert!(w
            .update("s", &[link(0, Probing), link(1, Probing)])
            .is_empty());
        assert!(w.update("s", &[link(0, Live), link(1, Live)]).is_empty());
        let r = w.update("s", &[link(0, Down), link(1, Live)]);
        assert_eq!(msgs(&r), ["Link wwan0 down"]);
        assert_eq!(r[0].event.severity, Severity::Warning);
        assert_eq!(r[0].event.stream_id.as_deref(), Some("s"));
        assert_eq!(r[0].event.details, Some(serde_json::json!({"link_id": 0})));
        let t = r[0].transition.as_ref().unwrap();
        assert_eq!((t.subject.as_str(), t.state.as_str()), ("link/s/0", "down"));
        assert!(w.update("s", &[link(0, Down), link(1, Live)]).is_empty());
        let r = w.update("s", &[link(0, Live), link(1, Degraded)]);
        assert_eq!(
            msgs(&r),
            [
                "Link wwan0 up",
                "Link 1 (rist://127.0.0.1:15002) degraded (loss 12.5 %)"
            ]
        );
        let r = w.update("s", &[link(0, Live), link(1, Live)]);
        assert_eq!(msgs(&r), ["Link 1 (rist://127.0.0.1:15002) recovered"]);
        // Down, re-probing, Live: one down, one up.
        let r = w.update("s", &[link(0, Down), link(1, Live)]);
        assert_eq!(msgs(&r), ["Link wwan0 down"]);
        assert!(w.update("s", &[link(0, Probing), link(1, Live)]).is_empty());
        let r = w.update("s", &[link(0, Live), link(1, Live)]);
        assert_eq!(msgs(&r), ["Link wwan0 up"]);
        // A removed link is forgotten; re-added it starts from Probing again.
        assert!(w.update("s", &[link(0, Live)]).is_empty());
        assert!(w.update("s", &[link(0, Live), link(1, Live)]).is_empty());
    }

    #[test]
    fn thumbnail_messages_become_base64_jpeg() {
        gst::init().unwrap();
        let s = gst::Structure::builder("braid-thumbnail")
            .field("jpeg", gst::Buffer::from_slice([0xffu8, 0xd8, 0xff, 0xd9]))
            .field("width", 320u32)
            .field("height", 180u32)
            .build();
        let t = parse_thumbnail("str_1", &s).unwrap();
        assert_eq!(t.data, "/9j/2Q==");
        assert_eq!((t.width, t.height, t.format.as_str()), (320, 180, "jpeg"));
        assert!(parse_thumbnail("str_1", &gst::Structure::new_empty("ristbond-stats")).is_none());
    }
}
