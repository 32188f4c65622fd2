//! The transition filter of PROTOCOL.md §6, sans-IO (time is a parameter): events
//! fire on state transitions only, a subject flapping within [`FLAP_WINDOW`] raises
//! one pair, not a storm, and identical transitions are raised once.
//!
//! Two kinds of input ([`super::Raise`]):
//!
//! - **Transitions** name a subject (`link/str_1/0`, `manager`) and the state it
//!   entered (`down`, `up`). A subject that has been quiet for [`FLAP_WINDOW`] is
//!   *settled*: its next transition is emitted at once (leading edge), unless it
//!   names the state last emitted (a duplicate, dropped). Transitions within the
//!   window are held; each one restarts the window, and only the latest is kept.
//!   When the subject has been quiet for the whole window, the held transition is
//!   emitted if its state differs from the last emitted one (trailing edge), else
//!   dropped. Down–up–down–up within 2 s therefore raises `down` at once and `up`
//!   once the link has stayed up for 2 s: one pair.
//! - **Occurrences** (plain events without a subject) are emitted at once, except
//!   an exact copy (severity, category, message, stream and details) of an
//!   occurrence emitted less than [`FLAP_WINDOW`] ago, which is dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use braid_protocol::event::Event;

use super::Raise;

/// Quiet time after which a subject counts as settled (PROTOCOL.md §6: "a link
/// flapping up/down within 2 s raises one pair").
pub const FLAP_WINDOW: Duration = Duration::from_secs(2);

/// Longest the filter remembers an emitted occurrence for duplicate suppression.
const OCCURRENCE_MEMORY: usize = 256;

/// Per-subject memory.
#[derive(Debug, Default)]
struct Subject {
    /// State of the last emitted transition.
    emitted: Option<String>,
    /// Until when the subject is unsettled (transitions are held).
    quiet_until: Option<Instant>,
    /// The latest held transition: its state and event.
    held: Option<(String, Event)>,
    /// Transitions swallowed while unsettled (for the log).
    swallowed: u32,
}

/// The filter state; see the module doc.
#[derive(Debug, Default)]
pub struct Filter {
    subjects: HashMap<String, Subject>,
    /// Recently emitted occurrences and when.
    recent: Vec<(Event, Instant)>,
}

impl Filter {
    /// Feed one raised event at `now`; returns the event to queue now, if any.
    pub fn push(&mut self, raise: Raise, now: Instant) -> Option<Event> {
        let Raise { event, transition } = raise;
        let Some(t) = transition else {
            self.recent
                .retain(|(_, at)| now.saturating_duration_since(*at) < FLAP_WINDOW);
            if self.recent.iter().any(|(e, _)| *e == event) {
                tracing::debug!(message = %event.message, "identical event within 2 s dropped");
                return None;
            }
            if self.recent.len() >= OCCURRENCE_MEMORY {
                self.recent.remove(0);
            }
            self.recent.push((event.clone(), now));
            return Some(event);
        };
        let s = self.subjects.entry(t.subject.clone()).or_default();
        let settled = s.quiet_until.is_none_or(|until| now >= until);
        if settled && s.held.is_none() {
            if s.emitted.as_deref() == Some(t.state.as_str()) {
                tracing::debug!(subject = %t.subject, state = %t.state, "duplicate transition dropped");
                return None;
            }
            s.emitted = Some(t.state);
            s.quiet_until = Some(now + FLAP_WINDOW);
            return Some(event);
        }
        // Unsettled (or a held one not yet released by `tick`): hold the latest.
        s.swallowed += u32::from(s.held.is_some());
        s.held = Some((t.state, event));
        s.quiet_until = Some(now + FLAP_WINDOW);
        None
    }

    /// Release what has settled by `now`, in the order of the subjects' deadlines.
    pub fn tick(&mut self, now: Instant) -> Vec<Event> {
        let mut due: Vec<(Instant, &String)> = self
            .subjects
            .iter()
            .filter_map(|(k, s)| s.quiet_until.filter(|u| *u <= now).map(|u| (u, k)))
            .collect();
        due.sort();
        let keys: Vec<String> = due.into_iter().map(|(_, k)| k.clone()).collect();
        let mut out = Vec::new();
        for key in keys {
            let Some(s) = self.subjects.get_mut(&key) else {
                continue;
            };
            s.quiet_until = None;
            let swallowed = std::mem::take(&mut s.swallowed);
            if let Some((state, event)) = s.held.take() {
                if s.emitted.as_deref() != Some(state.as_str()) {
                    if swallowed > 0 {
                        tracing::info!(subject = %key, swallowed, "flapping subject settled as {state}");
                    }
                    s.emitted = Some(state);
                    // The released transition opens a new window of its own.
                    s.quiet_until = Some(now + FLAP_WINDOW);
                    out.push(event);
                } else {
                    tracing::info!(subject = %key, swallowed = swallowed + 1, "flapping subject settled back as {state}");
                }
            }
        }
        out
    }

    /// Release every held transition now (shutdown): states that differ from the
    /// last emitted one are returned, so nothing the control plane should know is
    /// lost with the process.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        for s in self.subjects.values_mut() {
            s.quiet_until = None;
            if let Some((state, event)) = s.held.take() {
                if s.emitted.as_deref() != Some(state.as_str()) {
                    s.emitted = Some(state);
                    out.push(event);
                }
            }
        }
        out
    }

    /// The earliest time [`Filter::tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.subjects
            .values()
            .filter(|s| s.held.is_some())
            .filter_map(|s| s.quiet_until)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_protocol::event::{Category, Severity};

    fn link(state: &str, t: Instant) -> (Raise, Instant) {
        let (sev, msg) = if state == "down" {
            (Severity::Warning, "Link wwan1 down")
        } else {
            (Severity::Info, "Link wwan1 up")
        };
        (
            Raise::transition(Event::new(sev, Category::Link, msg), "link/s/1", state),
            t,
        )
    }

    fn ms(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn settled_transitions_pass_at_once_and_duplicates_drop() {
        let mut f = Filter::default();
        let t0 = Instant::now();
        let (r, t) = link("down", t0);
        assert_eq!(f.push(r, t).unwrap().message, "Link wwan1 down");
        // The same state again, after the window: a duplicate.
        let (r, t) = link("down", ms(t0, 5000));
        assert!(f.push(r, t).is_none());
        let (r, t) = link("up", ms(t0, 9000));
        assert_eq!(f.push(r, t).unwrap().message, "Link wwan1 up");
        assert!(f.tick(ms(t0, 20_000)).is_empty());
    }

    #[test]
    fn flapping_within_two_seconds_raises_one_pair() {
        let mut f = Filter::default();
        let t0 = Instant::now();
        let mut emitted = Vec::new();
        // down, up, down, up … every 300 ms for 3 s, ending up.
        for i in 0..10u64 {
            let state = if i % 2 == 0 { "down" } else { "up" };
            let (r, t) = link(state, ms(t0, i * 300));
            emitted.extend(f.push(r, t));
            emitted.extend(f.tick(t));
        }
        assert_eq!(emitted.len(), 1, "only the leading edge so far");
        assert_eq!(f.next_deadline(), Some(ms(t0, 2700 + 2000)));
        assert!(f.tick(ms(t0, 4600)).is_empty());
        let late = f.tick(ms(t0, 4700));
        emitted.extend(late);
        let msgs: Vec<_> = emitted.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["Link wwan1 down", "Link wwan1 up"]);
        assert_eq!(f.next_deadline(), None);
    }

    #[test]
    fn flapping_back_to_the_emitted_state_raises_nothing_more() {
        let mut f = Filter::default();
        let t0 = Instant::now();
        let (r, t) = link("down", t0);
        assert!(f.push(r, t).is_some());
        let (r, t) = link("up", ms(t0, 500));
        assert!(f.push(r, t).is_none());
        let (r, t) = link("down", ms(t0, 900));
        assert!(f.push(r, t).is_none());
        assert!(f.tick(ms(t0, 3000)).is_empty());
        assert_eq!(f.next_deadline(), None);
        // Settled now: the next change passes at once.
        let (r, t) = link("up", ms(t0, 3100));
        assert!(f.push(r, t).is_some());
    }

    #[test]
    fn a_released_transition_opens_a_new_window() {
        let mut f = Filter::default();
        let t0 = Instant::now();
        let (r, t) = link("down", t0);
        assert!(f.push(r, t).is_some());
        let (r, t) = link("up", ms(t0, 1000));
        assert!(f.push(r, t).is_none());
        assert_eq!(f.tick(ms(t0, 3000)).len(), 1); // up released at 3.0 s
                                                   // down 100 ms later is held (window of the released up), not a storm.
        let (r, t) = link("down", ms(t0, 3100));
        assert!(f.push(r, t).is_none());
        assert_eq!(f.tick(ms(t0, 5100)).len(), 1);
    }

    #[test]
    fn subjects_are_independent_and_drain_releases_held() {
        let mut f = Filter::default();
        let t0 = Instant::now();
        let other = |state: &str| {
            Raise::transition(
                Event::new(
                    Severity::Info,
                    Category::Link,
                    format!("Link wwan2 {state}"),
                ),
                "link/s/2",
                state,
            )
        };
        let (r, t) = link("down", t0);
        assert!(f.push(r, t).is_some());
        assert!(f.push(other("down"), t0).is_some());
        let (r, t) = link("up", ms(t0, 100));
        assert!(f.push(r, t).is_none());
        let drained = f.drain();
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].message, "Link wwan1 up");
        assert!(f.drain().is_empty());
    }

    #[test]
    fn identical_occurrences_within_the_window_are_dropped() {
        let mut f = Filter::default();
        let t0 = Instant::now();
        let e = |m: &str| Raise::from(Event::new(Severity::Warning, Category::Protocol, m));
        assert!(f
            .push(e("Oversized frame rejected (2000000 bytes)"), t0)
            .is_some());
        assert!(f
            .push(e("Oversized frame rejected (2000000 bytes)"), ms(t0, 1000))
            .is_none());
        assert!(f
            .push(e("Oversized frame rejected (3000000 bytes)"), ms(t0, 1000))
            .is_some());
        assert!(f
            .push(e("Oversized frame rejected (2000000 bytes)"), ms(t0, 2500))
            .is_some());
    }
}
