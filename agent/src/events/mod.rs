//! Operational events (PROTOCOL.md §6, seed 002): raised on state transitions by any
//! part of the agent, filtered (2 s flap filter, duplicates dropped), queued in
//! order in a bounded queue (4096) that is persisted under `<state_dir>/events/`,
//! and delivered by the control session with at-least-once semantics.
//!
//! - [`EventTx::raise`] (cloneable, non-blocking, callable from any task or thread)
//!   takes an [`Event`] or a [`Raise`] (an event with a transition subject/state for
//!   the flap filter, see [`filter`]).
//! - [`Events`] is the owner: the control task sends what [`Events::take_unsent`]
//!   returns, follows it with a WebSocket Ping whose payload names the last
//!   sequence number ([`ping_payload`]), and calls [`Events::confirm`] when the
//!   matching Pong arrives. Only then are the events removed from the queue and the
//!   journal. A Pong proves the control plane's WebSocket layer read every frame
//!   sent before the Ping (RFC 6455 §5.5.3: a Pong answers a Ping in stream order);
//!   "written to the socket" alone does not, since a control plane that dies with
//!   unread bytes in its receive buffer loses them.
//! - On a lost connection, events in flight are sent again on the next connection
//!   with the **same envelope** (`id`, `ts`): the protocol's event payload has no id
//!   field, but the envelope `id` (UUIDv7, fixed when the event is queued) is the
//!   event's identity, so a control plane drops re-deliveries by envelope `id`.
//!   Inside the agent each event also has a sequence number, monotonic across
//!   restarts (journal), used for the Ping/Pong confirmation.
//!
//! Persistence format and crash-safety argument: see [`journal`].

pub mod filter;
pub mod journal;
pub mod queue;

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use braid_protocol::event::{Category, Event, Severity};

pub use filter::FLAP_WINDOW;
pub use queue::{Entry, QUEUE_MAX};

use filter::Filter;
use journal::Journal;
use queue::{Queue, Record};

/// Prefix of the Ping payload that asks the control plane to confirm events.
const PING_PREFIX: &[u8; 8] = b"braidev:";

/// An event as handed to [`EventTx::raise`]: the wire payload plus, for events that
/// report a state transition, the subject and the state it entered. Only the event
/// goes on the wire; the transition feeds the flap filter and duplicate check.
#[derive(Debug, Clone, PartialEq)]
pub struct Raise {
    /// The `event` payload (PROTOCOL.md §6).
    pub event: Event,
    /// Subject and state for the flap filter; `None` for one-off occurrences.
    pub transition: Option<Transition>,
}

/// The subject of a state transition and the state it entered, e.g. subject
/// `link/str_1/0`, state `down`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Stable name of the thing whose state changed.
    pub subject: String,
    /// The state entered.
    pub state: String,
}

impl Raise {
    /// `event` as a transition of `subject` into `state` (flap-filtered, duplicates
    /// of the last emitted state dropped).
    pub fn transition(event: Event, subject: impl Into<String>, state: impl Into<String>) -> Self {
        Self {
            event,
            transition: Some(Transition {
                subject: subject.into(),
                state: state.into(),
            }),
        }
    }
}

impl From<Event> for Raise {
    /// A one-off occurrence: emitted at once unless an identical event was emitted
    /// within the last [`FLAP_WINDOW`].
    fn from(event: Event) -> Self {
        Self {
            event,
            transition: None,
        }
    }
}

/// A cheap, cloneable handle to raise events from any task or thread.
#[derive(Debug, Clone)]
pub struct EventTx {
    shared: Arc<Shared>,
}

impl EventTx {
    /// Raise an event (PROTOCOL.md §6). Never blocks on the network: it runs the
    /// filter, appends to the in-memory queue and writes one journal line (page
    /// cache; the fsync happens on a helper thread), then wakes the control session.
    pub fn raise(&self, raise: impl Into<Raise>) {
        self.shared.raise(raise.into());
    }
}

/// What [`Events::status`] reports, for `health` (PROTOCOL.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsStatus {
    /// Events queued and not yet confirmed by the control plane.
    pub backlog: usize,
    /// Events dropped for space and not yet reported.
    pub dropped: u64,
    /// Whether the queue is written to disk (false: the journal failed; events are
    /// kept in memory only and would not survive a restart).
    pub persistent: bool,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the helper thread (new deadline, something to fsync, stop).
    cond: Condvar,
    /// Wakes the control session (something to send).
    notify: tokio::sync::Notify,
}

#[derive(Debug)]
struct Inner {
    filter: Filter,
    queue: Queue,
    journal: Option<Journal>,
    /// Records written since the last fdatasync.
    dirty: bool,
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn raise(&self, raise: Raise) {
        let now = Instant::now();
        let mut inner = self.lock();
        let mut out = inner.filter.tick(now);
        out.extend(inner.filter.push(raise, now));
        let queued = !out.is_empty();
        for event in out {
            inner.enqueue(&event);
        }
        drop(inner);
        self.cond.notify_one();
        if queued {
            self.notify.notify_one();
        }
    }
}

impl Inner {
    /// Put a filtered event in the queue and the journal.
    fn enqueue(&mut self, event: &Event) {
        let records = self.queue.push(event);
        if let Some(Record::Push(entry)) = records.last() {
            tracing::info!(
                seq = entry.seq,
                id = %entry.env.id,
                severity = ?event.severity,
                category = ?event.category,
                stream_id = event.stream_id.as_deref().unwrap_or(""),
                "event queued: {}",
                event.message
            );
        }
        self.persist(&records);
    }

    fn persist(&mut self, records: &[Record]) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let result = journal
            .append(records)
            .and_then(|()| journal.maybe_compact(&self.queue));
        match result {
            Ok(()) => self.dirty = true,
            Err(e) => {
                tracing::error!("{e}; events are kept in memory only from now on");
                self.journal = None;
                let event = Event::new(
                    Severity::Warning,
                    Category::Device,
                    format!("Event journal unavailable, events kept in memory only: {e}"),
                );
                let records = self.queue.push(&event);
                drop(records);
            }
        }
    }
}

/// Owner of the event queue: opened once by the agent, used by the control task.
#[derive(Debug)]
pub struct Events {
    shared: Arc<Shared>,
    helper: Option<JoinHandle<()>>,
}

impl Events {
    /// Open the queue persisted under `<state_dir>/events/` (replaying what a
    /// previous run left) and start the helper thread (flap-filter timers, fsync).
    /// Never fails: when the journal cannot be opened, the queue works in memory and
    /// a `warning` / `device` event says so.
    pub fn open(state_dir: &Path) -> Self {
        let (journal, queue, failure) = match Journal::open(state_dir) {
            Ok((journal, queue, replay)) => {
                tracing::info!(
                    file = %journal.file_path().display(),
                    queued = queue.len(),
                    records = replay.records,
                    "event journal opened"
                );
                if replay.bad_lines > 0 || replay.torn_bytes > 0 {
                    tracing::warn!(
                        bad_lines = replay.bad_lines,
                        torn_bytes = replay.torn_bytes,
                        "event journal had damaged records (skipped)"
                    );
                }
                (Some(journal), queue, None)
            }
            Err(e) => {
                tracing::error!("{e}; events are kept in memory only");
                (None, Queue::default(), Some(e.to_string()))
            }
        };
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                filter: Filter::default(),
                queue,
                journal,
                dirty: false,
                stop: false,
            }),
            cond: Condvar::new(),
            notify: tokio::sync::Notify::new(),
        });
        if let Some(e) = failure {
            shared.raise(
                Event::new(
                    Severity::Warning,
                    Category::Device,
                    format!("Event journal unavailable, events kept in memory only: {e}"),
                )
                .into(),
            );
        }
        let helper = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("braid-events".into())
                .spawn(move || helper(&shared))
                .map_err(|e| tracing::error!("cannot start the events thread: {e}"))
                .ok()
        };
        Self { shared, helper }
    }

    /// A handle for other tasks.
    pub fn tx(&self) -> EventTx {
        EventTx {
            shared: self.shared.clone(),
        }
    }

    /// Raise an event (same as [`EventTx::raise`]).
    pub fn raise(&self, raise: impl Into<Raise>) {
        self.shared.raise(raise.into());
    }

    /// Resolves when an event was queued since the last call (or is pending).
    pub async fn notified(&self) {
        self.shared.notify.notified().await;
    }

    /// Entries to write on the current connection, in order: everything not yet
    /// written on it, preceded (in the queue) by the drop notice when events were
    /// dropped for space. They count as in flight until [`Events::confirm`] or
    /// [`Events::connection_lost`].
    pub fn take_unsent(&self) -> Vec<Entry> {
        let mut inner = self.shared.lock();
        let records = inner.queue.take_drop_notice();
        if let Some(Record::Push(entry)) = records.first() {
            tracing::warn!(seq = entry.seq, id = %entry.env.id, "event queued: {}",
                entry.env.payload.get("message").and_then(|m| m.as_str()).unwrap_or(""));
        }
        inner.persist(&records);
        inner.queue.take_unsent()
    }

    /// The Pong for the Ping sent after `seq` arrived: everything up to `seq` is
    /// delivered and leaves the queue and the journal. Unknown `seq`: ignored.
    pub fn confirm(&self, seq: u64) {
        let mut inner = self.shared.lock();
        if let Some(record) = inner.queue.confirm(seq) {
            tracing::debug!(seq, backlog = inner.queue.len(), "events confirmed");
            inner.persist(&[record]);
            drop(inner);
            self.shared.cond.notify_one();
        }
    }

    /// The connection ended: unconfirmed events are sent again next time.
    pub fn connection_lost(&self) {
        self.shared.lock().queue.connection_lost();
    }

    /// Events written on the current connection and not yet confirmed.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().queue.in_flight()
    }

    /// Whether something waits to be written on the current connection.
    pub fn has_unsent(&self) -> bool {
        let inner = self.shared.lock();
        inner.queue.len() > inner.queue.in_flight() || inner.queue.dropped() > 0
    }

    /// Backlog, drop count and persistence, for `health`.
    pub fn status(&self) -> EventsStatus {
        let inner = self.shared.lock();
        EventsStatus {
            backlog: inner.queue.len(),
            dropped: inner.queue.dropped(),
            persistent: inner.journal.is_some(),
        }
    }

    /// Shutdown: release transitions held by the flap filter into the queue, fsync
    /// the journal and stop the helper thread. Events raised afterwards are still
    /// journalled (without the fsync).
    pub fn close(&mut self) {
        {
            let mut inner = self.shared.lock();
            for event in inner.filter.drain() {
                inner.enqueue(&event);
            }
            inner.stop = true;
        }
        self.shared.cond.notify_one();
        if let Some(h) = self.helper.take() {
            let _ = h.join();
        }
        let inner = self.shared.lock();
        if let Some(j) = &inner.journal {
            if let Err(e) = j.sync_handle().and_then(|f| {
                f.sync_data().map_err(|source| journal::JournalError {
                    path: j.file_path().to_owned(),
                    source,
                })
            }) {
                tracing::warn!("{e}");
            }
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if self.helper.is_some() {
            self.close();
        }
    }
}

/// The Ping payload asking to confirm everything up to `seq`.
pub fn ping_payload(seq: u64) -> Vec<u8> {
    let mut p = PING_PREFIX.to_vec();
    p.extend_from_slice(&seq.to_be_bytes());
    p
}

/// The sequence number in a Pong payload made by [`ping_payload`]; `None` for other
/// Pongs (keepalive).
pub fn pong_seq(payload: &[u8]) -> Option<u64> {
    let rest = payload.strip_prefix(PING_PREFIX.as_slice())?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// The helper thread: releases settled transitions at their deadline and fdatasyncs
/// the journal soon after each change.
fn helper(shared: &Shared) {
    let mut inner = shared.lock();
    loop {
        if inner.stop {
            return;
        }
        let now = Instant::now();
        let released = inner.filter.tick(now);
        if !released.is_empty() {
            for event in &released {
                inner.enqueue(event);
            }
            shared.notify.notify_one();
        }
        if inner.dirty {
            inner.dirty = false;
            let handle = inner.journal.as_ref().map(Journal::sync_handle);
            drop(inner);
            if let Some(Ok(file)) = handle {
                if let Err(e) = file.sync_data() {
                    tracing::warn!("event journal fdatasync: {e}");
                }
            }
            inner = shared.lock();
            continue;
        }
        let wait = inner
            .filter
            .next_deadline()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(3600));
        inner = shared
            .cond
            .wait_timeout(inner, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(state: &str) -> Raise {
        Raise::transition(
            Event::new(
                Severity::Warning,
                Category::Link,
                format!("Link wwan1 {state}"),
            ),
            "link/s/1",
            state,
        )
    }

    #[test]
    fn ping_payload_round_trip() {
        assert_eq!(
            pong_seq(&ping_payload(0x0102_0304_0506)),
            Some(0x0102_0304_0506)
        );
        assert_eq!(pong_seq(b""), None);
        assert_eq!(pong_seq(b"braidev:123"), None);
    }

    #[test]
    fn raise_send_confirm_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut events = Events::open(dir.path());
        let tx = events.tx();
        std::thread::spawn(move || tx.raise(Event::new(Severity::Info, Category::Manager, "a")))
            .join()
            .unwrap();
        events.raise(Event::new(Severity::Info, Category::Manager, "b"));
        events.raise(Event::new(Severity::Info, Category::Manager, "c"));
        assert_eq!(events.status().backlog, 3);
        let sent = events.take_unsent();
        assert_eq!(sent.len(), 3);
        assert!(!events.has_unsent());
        events.confirm(sent[0].seq);
        assert_eq!(events.status().backlog, 2);
        // Not confirmed: still there after a restart, same envelopes.
        events.close();
        drop(events);
        let events = Events::open(dir.path());
        let again = events.take_unsent();
        assert_eq!(again, sent[1..].to_vec());
        assert!(events.status().persistent);
    }

    #[test]
    fn held_transitions_are_released_by_the_helper_thread() {
        let dir = tempfile::tempdir().unwrap();
        let events = Events::open(dir.path());
        events.raise(link("down"));
        events.raise(link("up"));
        events.raise(link("down"));
        events.raise(link("up"));
        assert_eq!(events.take_unsent().len(), 1, "leading edge only");
        let t0 = Instant::now();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            // A permit left by the first raise may wake us early: wait for content.
            tokio::time::timeout(Duration::from_secs(10), async {
                while !events.has_unsent() {
                    events.notified().await;
                }
            })
            .await
            .expect("the held 'up' is released");
        });
        assert!(
            t0.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            t0.elapsed()
        );
        let late = events.take_unsent();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].env.payload["message"], "Link wwan1 up");
    }

    #[test]
    fn close_releases_held_transitions_into_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut events = Events::open(dir.path());
        events.raise(link("down"));
        events.raise(link("up"));
        events.close();
        drop(events);
        let events = Events::open(dir.path());
        let all = events.take_unsent();
        let msgs: Vec<_> = all
            .iter()
            .map(|e| e.env.payload["message"].clone())
            .collect();
        assert_eq!(msgs, ["Link wwan1 down", "Link wwan1 up"]);
    }

    #[test]
    fn an_unusable_state_dir_keeps_events_in_memory_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let events = Events::open(&file);
        let st = events.status();
        assert!(!st.persistent);
        let sent = events.take_unsent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].env.payload["category"], "device");
        assert!(sent[0].env.payload["message"]
            .as_str()
            .unwrap()
            .starts_with("Event journal unavailable"));
    }
}
