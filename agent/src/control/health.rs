//! The `health` message (PROTOCOL.md §4): composed from the stream book and the
//! event queue, sent right after login and every 15 s.
//!
//! `status` (seed 001's mapping of alarms to health, applied to what the agent
//! knows):
//!
//! | status | when |
//! |---|---|
//! | `critical` | a live stream has no link `Live` or `Degraded` in its last `stream.stats` (its media reaches nobody) |
//! | `degraded` | a link of a live stream is `Degraded`, `Down` or `Probing`; or the event journal cannot be written (events would not survive a restart); or events were dropped because the queue was full and that is not reported yet; or the event backlog is at or above 3/4 of the queue bound |
//! | `ok` | otherwise |

use braid_protocol::health::{Health, HealthStatus};

use super::book::StreamBook;
use crate::events::{EventsStatus, QUEUE_MAX};

/// Backlog from which the queue counts as close to overflowing.
const BACKLOG_WARN: usize = QUEUE_MAX / 4 * 3;

/// The `health` payload. `uptime_s`: seconds since the agent started.
pub fn compose(book: &StreamBook, events: EventsStatus, uptime_s: u64) -> Health {
    let mut status = book.health();
    let events_trouble = !events.persistent || events.dropped > 0 || events.backlog >= BACKLOG_WARN;
    if status == HealthStatus::Ok && events_trouble {
        status = HealthStatus::Degraded;
    }
    Health {
        status,
        agent_version: super::AGENT_VERSION.into(),
        protocol_version: braid_protocol::PROTOCOL_VERSION,
        capabilities: super::capabilities(),
        uptime_s,
        streams_live: u32::try_from(book.live_count()).unwrap_or(u32::MAX),
        event_backlog: u32::try_from(events.backlog).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(backlog: usize, dropped: u64, persistent: bool) -> EventsStatus {
        EventsStatus {
            backlog,
            dropped,
            persistent,
        }
    }

    #[test]
    fn status_from_events() {
        let book = StreamBook::default();
        let h = compose(&book, ev(0, 0, true), 7);
        assert_eq!(h.status, HealthStatus::Ok);
        assert_eq!((h.uptime_s, h.streams_live, h.event_backlog), (7, 0, 0));
        assert!(h.capabilities.iter().any(|c| c == "thumbnails"));
        assert_eq!(h.protocol_version, 1);
        assert_eq!(
            compose(&book, ev(3, 0, false), 0).status,
            HealthStatus::Degraded
        );
        assert_eq!(
            compose(&book, ev(3, 2, true), 0).status,
            HealthStatus::Degraded
        );
        assert_eq!(
            compose(&book, ev(BACKLOG_WARN, 0, true), 0).status,
            HealthStatus::Degraded
        );
        assert_eq!(
            compose(&book, ev(BACKLOG_WARN - 1, 0, true), 0).event_backlog,
            3071
        );
    }
}
