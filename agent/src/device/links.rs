//! Link guard: a live stream's link whose modem disappears goes Down at once and
//! comes back when the modem returns (issue 5; PROTOCOL.md §5 `stream.links.update`
//! semantics, §6 `link` events).
//!
//! A link belongs to a modem through its network interface: the link's
//! `interface`, else `iface=` in its `rist://` URI, matched against the interfaces
//! ModemManager reported for the modem (bearer interface, net ports). When a modem
//! is removed its interfaces become *gone* ([`ModemSnapshot::gone_interfaces`]);
//! the guard then removes the links on them from every live stream, through the
//! same path as `stream.links.update` ([`StreamsHandle::update_links`]: the other
//! links keep flowing), and adds the very same links back once a modem reports the
//! interface again.
//!
//! The operator's link set is never lost: the guard remembers, per stream, the
//! *desired* links (as started or as last set by the control plane) and what it
//! applied itself. When the stream's links differ from what the guard applied, the
//! control plane changed them (`stream.links.update`, `config.set`): that set
//! becomes the desired one. A stream whose links would all be removed is left
//! alone (with one warning event): the bonding needs at least one link, and the
//! scheduler already treats dead links as Down.
//!
//! [`LinkGuard`] is the sans-IO rule; [`run`] drives it against the stream manager.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use braid_protocol::event::{Category, Event, Severity};
use braid_protocol::stream::BondingLink;
use ristbond_core::link::LinkUri;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::events::EventSink;
use super::modem::ModemSnapshot;
use crate::streams::StreamsHandle;

/// While some interface is gone, streams are re-checked this often (a stream may
/// start, or be updated by the control plane, with a link on a missing modem).
pub const RECHECK: Duration = Duration::from_secs(2);

/// The network interface a link is bound to: `interface`, else `iface=` of the URI.
pub fn link_interface(link: &BondingLink) -> Option<String> {
    link.interface
        .clone()
        .filter(|i| !i.is_empty())
        .or_else(|| LinkUri::parse(&link.uri).ok().and_then(|u| u.iface))
}

/// A change the guard wants applied to one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The complete link list to apply (`stream.links.update` semantics).
    pub links: Vec<BondingLink>,
    /// Links taken out because their modem is gone.
    pub down: Vec<BondingLink>,
    /// Links put back because their modem returned.
    pub restored: Vec<BondingLink>,
}

#[derive(Debug, Clone)]
struct Guarded {
    desired: Vec<BondingLink>,
    applied: Vec<BondingLink>,
    all_gone_warned: bool,
}

/// Per-stream memory of desired and applied links.
#[derive(Debug, Default)]
pub struct LinkGuard {
    streams: HashMap<String, Guarded>,
}

fn ids(links: &[BondingLink]) -> HashSet<u32> {
    links.iter().map(|l| l.id).collect()
}

impl LinkGuard {
    /// What to apply to `stream_id`, whose links are `current`, given the gone
    /// interfaces; `None` when nothing is to change. Call [`LinkGuard::applied`]
    /// once the plan's links are in force.
    pub fn plan(
        &mut self,
        stream_id: &str,
        current: &[BondingLink],
        gone: &BTreeSet<String>,
    ) -> Option<Plan> {
        let g = self
            .streams
            .entry(stream_id.to_owned())
            .or_insert_with(|| Guarded {
                desired: current.to_vec(),
                applied: current.to_vec(),
                all_gone_warned: false,
            });
        if g.applied != current {
            // The control plane set new links: they are the operator's choice now.
            g.desired = current.to_vec();
            g.applied = current.to_vec();
            g.all_gone_warned = false;
        }
        let target: Vec<BondingLink> = g
            .desired
            .iter()
            .filter(|l| !link_interface(l).is_some_and(|i| gone.contains(&i)))
            .cloned()
            .collect();
        if target.is_empty() || target == current {
            return None;
        }
        let (now, then) = (ids(current), ids(&target));
        Some(Plan {
            down: current
                .iter()
                .filter(|l| !then.contains(&l.id))
                .cloned()
                .collect(),
            restored: target
                .iter()
                .filter(|l| !now.contains(&l.id))
                .cloned()
                .collect(),
            links: target,
        })
    }

    /// Whether every desired link of the stream is on a gone interface (reported
    /// once per such episode: `true` the first time).
    pub fn all_gone_first_time(&mut self, stream_id: &str, gone: &BTreeSet<String>) -> bool {
        let Some(g) = self.streams.get_mut(stream_id) else {
            return false;
        };
        let all = !g.desired.is_empty()
            && g.desired
                .iter()
                .all(|l| link_interface(l).is_some_and(|i| gone.contains(&i)));
        if !all {
            g.all_gone_warned = false;
            return false;
        }
        !std::mem::replace(&mut g.all_gone_warned, true)
    }

    /// The plan's links are in force on `stream_id`.
    pub fn applied(&mut self, stream_id: &str, links: &[BondingLink]) {
        if let Some(g) = self.streams.get_mut(stream_id) {
            g.applied = links.to_vec();
        }
    }

    /// Forget streams that are no longer running.
    pub fn retain(&mut self, live: &[String]) {
        self.streams.retain(|id, _| live.contains(id));
    }

    /// Whether some stream runs with fewer links than desired.
    pub fn suspended(&self) -> bool {
        self.streams.values().any(|g| g.applied != g.desired)
    }
}

fn link_event(severity: Severity, stream_id: &str, link: &BondingLink, text: &str) -> Event {
    let iface = link_interface(link).unwrap_or_default();
    Event {
        stream_id: Some(stream_id.to_owned()),
        details: Some(serde_json::json!({"link_id": link.id, "interface": iface, "uri": link.uri})),
        ..Event::new(
            severity,
            Category::Link,
            format!("Link {} ({iface}) {text}", link.id),
        )
    }
}

/// Apply the guard to every live stream once.
async fn sweep(
    guard: &mut LinkGuard,
    streams: &StreamsHandle,
    gone: &BTreeSet<String>,
    events: &EventSink,
) {
    let live = streams.live().await;
    for id in &live {
        let Some(bonding) = streams.bonding(id) else {
            continue;
        };
        if let Some(plan) = guard.plan(id, &bonding.links, gone) {
            match streams.update_links(id, plan.links.clone()).await {
                Ok(()) => {
                    guard.applied(id, &plan.links);
                    for l in &plan.down {
                        tracing::warn!(stream_id = %id, link = l.id, "link taken down: its modem is gone");
                        events.raise(link_event(Severity::Warning, id, l, "down: modem removed"));
                    }
                    for l in &plan.restored {
                        tracing::info!(stream_id = %id, link = l.id, "link restored: its modem is back");
                        events.raise(link_event(Severity::Info, id, l, "restored: modem back"));
                    }
                }
                Err(e) => {
                    tracing::warn!(stream_id = %id, "link guard could not update links: {e}");
                }
            }
        } else if guard.all_gone_first_time(id, gone) {
            events.raise(Event {
                stream_id: Some(id.clone()),
                ..Event::new(
                    Severity::Critical,
                    Category::Link,
                    "Every link of the stream is on a removed modem; links left in place",
                )
            });
        }
    }
    guard.retain(&live);
}

/// Drive the guard until `cancel` fires: on every modem snapshot change, and every
/// [`RECHECK`] while an interface is gone or a stream runs short of links.
pub async fn run(
    streams: StreamsHandle,
    mut modems: watch::Receiver<ModemSnapshot>,
    events: EventSink,
    cancel: CancellationToken,
) {
    let mut guard = LinkGuard::default();
    let mut gone = modems.borrow_and_update().gone_interfaces.clone();
    loop {
        let recheck = !gone.is_empty() || guard.suspended();
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = modems.changed() => {
                if changed.is_err() {
                    return;
                }
                gone = modems.borrow_and_update().gone_interfaces.clone();
            }
            _ = tokio::time::sleep(RECHECK), if recheck => {}
        }
        sweep(&mut guard, &streams, &gone, &events).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(id: u32, uri: &str, iface: Option<&str>) -> BondingLink {
        BondingLink {
            id,
            uri: uri.into(),
            interface: iface.map(Into::into),
        }
    }

    fn gone(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn interface_from_field_or_uri() {
        assert_eq!(
            link_interface(&link(0, "rist://h:5000", Some("wwan0"))).as_deref(),
            Some("wwan0")
        );
        assert_eq!(
            link_interface(&link(0, "rist://h:5000?iface=wwan3", None)).as_deref(),
            Some("wwan3")
        );
        assert_eq!(link_interface(&link(0, "rist://h:5000", None)), None);
    }

    #[test]
    fn gone_modem_takes_its_link_down_and_back() {
        let mut g = LinkGuard::default();
        let links = vec![
            link(0, "rist://h:5000", Some("wwan0")),
            link(1, "rist://h:5002?iface=wwan1", None),
            link(2, "rist://h:5004", None),
        ];
        assert_eq!(g.plan("s", &links, &gone(&[])), None);
        let p = g.plan("s", &links, &gone(&["wwan1"])).unwrap();
        assert_eq!(p.links, vec![links[0].clone(), links[2].clone()]);
        assert_eq!(p.down, vec![links[1].clone()]);
        assert!(p.restored.is_empty());
        g.applied("s", &p.links);
        assert!(g.suspended());
        // Still gone: nothing more to do.
        assert_eq!(g.plan("s", &p.links, &gone(&["wwan1"])), None);
        // Back: the very same link returns, in its place.
        let back = g.plan("s", &p.links, &gone(&[])).unwrap();
        assert_eq!(back.links, links);
        assert_eq!(back.restored, vec![links[1].clone()]);
        g.applied("s", &back.links);
        assert!(!g.suspended());
    }

    #[test]
    fn operator_changes_while_suspended_win() {
        let mut g = LinkGuard::default();
        let links = vec![
            link(0, "rist://h:5000", Some("wwan0")),
            link(1, "rist://h:5002", Some("wwan1")),
        ];
        g.plan("s", &links, &gone(&[]));
        let p = g.plan("s", &links, &gone(&["wwan1"])).unwrap();
        g.applied("s", &p.links);
        // The control plane replaces the links (adds link 5 on eth0, drops 1).
        let operator = vec![
            link(0, "rist://h:5000", Some("wwan0")),
            link(5, "rist://h:5010", Some("eth0")),
        ];
        assert_eq!(g.plan("s", &operator, &gone(&["wwan1"])), None);
        // When wwan1 returns nothing is re-added: link 1 is no longer wanted.
        assert_eq!(g.plan("s", &operator, &gone(&[])), None);
        // And an operator set that includes a link on a gone modem is trimmed.
        let again = vec![operator[0].clone(), link(1, "rist://h:5002", Some("wwan1"))];
        let p = g.plan("s", &again, &gone(&["wwan1"])).unwrap();
        assert_eq!(p.links, vec![operator[0].clone()]);
    }

    #[test]
    fn never_removes_the_last_link() {
        let mut g = LinkGuard::default();
        let links = vec![link(0, "rist://h:5000", Some("wwan0"))];
        assert_eq!(g.plan("s", &links, &gone(&["wwan0"])), None);
        assert!(g.all_gone_first_time("s", &gone(&["wwan0"])));
        assert!(!g.all_gone_first_time("s", &gone(&["wwan0"])));
        assert!(!g.all_gone_first_time("s", &gone(&[])));
        g.retain(&[]);
        assert!(!g.all_gone_first_time("s", &gone(&["wwan0"])));
    }
}
