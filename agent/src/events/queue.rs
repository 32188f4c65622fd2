//! The bounded, ordered event queue of PROTOCOL.md §6, sans-IO: every change is
//! returned as a [`Record`] for the journal, so memory and disk cannot drift apart.
//!
//! Entries are kept in the order they were queued. Each has a sequence number
//! (monotonic over the agent's life, persisted) and the envelope it is sent in: its
//! `id` (UUIDv7) and `ts` are fixed when queued, so a re-delivery after a lost
//! connection is byte-for-byte the same message and a control plane can drop it by
//! `id`. When the queue holds [`QUEUE_MAX`] entries and one more arrives, the oldest
//! `info` entry is removed (the oldest entry of all when none is `info`) and counted;
//! the count is delivered as one `warning` event ([`Queue::take_drop_notice`]).

use std::collections::VecDeque;

use braid_protocol::event::{Category, Event, Severity};
use braid_protocol::Envelope;
use serde::{Deserialize, Serialize};

/// Most events kept (PROTOCOL.md §6).
pub const QUEUE_MAX: usize = 4096;

/// One queued event: its sequence number and the envelope it is sent in (no token;
/// the session adds its token when sending).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Sequence number, monotonic over the agent's life.
    pub seq: u64,
    /// The `event` envelope.
    pub env: Envelope,
}

impl Entry {
    fn severity(&self) -> Option<Severity> {
        self.env
            .payload
            .get("severity")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }
}

/// A change of the queue, as written to the journal (one JSON line each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    /// Snapshot header: the next sequence number and undelivered drop count.
    Meta {
        /// Sequence number of the next event.
        next_seq: u64,
        /// Events dropped for space, not yet reported.
        dropped: u64,
    },
    /// An event was queued at the back.
    Push(Entry),
    /// Entries from the front up to and including `seq` were delivered.
    Ack {
        /// Last delivered sequence number.
        seq: u64,
    },
    /// Entry `seq` was removed to make room (PROTOCOL.md §6).
    Drop {
        /// The removed entry.
        seq: u64,
    },
    /// The drop count was reported (a notice was pushed just before).
    DropsReported,
}

/// The queue; see the module doc.
#[derive(Debug, Default)]
pub struct Queue {
    entries: VecDeque<Entry>,
    next_seq: u64,
    dropped: u64,
    /// Entries at the front written on the current connection, awaiting confirmation.
    in_flight: usize,
}

impl Queue {
    /// Entries waiting (in flight or not yet sent).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Events dropped for space and not yet reported.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Every entry, front first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Snapshot of the whole state as records (header first), for compaction.
    pub fn snapshot(&self) -> Vec<Record> {
        let mut out = vec![Record::Meta {
            next_seq: self.next_seq,
            dropped: self.dropped,
        }];
        out.extend(self.entries.iter().cloned().map(Record::Push));
        out
    }

    /// Queue `event` with a new envelope (fresh UUIDv7 id, `ts` now).
    /// Returns the journal records (a `Drop` first when the queue was full).
    pub fn push(&mut self, event: &Event) -> Vec<Record> {
        let env = match Envelope::new(event) {
            Ok(env) => env,
            Err(e) => {
                // An Event always serialises to an object; keep the text at least.
                tracing::error!("event not queued: {e}");
                return Vec::new();
            }
        };
        let mut records = Vec::new();
        if self.entries.len() >= QUEUE_MAX {
            records.extend(self.make_room());
        }
        let entry = Entry {
            seq: self.next_seq,
            env,
        };
        self.next_seq += 1;
        records.push(Record::Push(entry.clone()));
        self.entries.push_back(entry);
        records
    }

    /// Remove the oldest `info` entry, else the oldest entry; count it.
    fn make_room(&mut self) -> Option<Record> {
        let victim = self
            .entries
            .iter()
            .position(|e| e.severity() == Some(Severity::Info))
            .unwrap_or(0);
        let gone = self.entries.remove(victim)?;
        if victim < self.in_flight {
            self.in_flight -= 1;
        }
        self.dropped += 1;
        Some(Record::Drop { seq: gone.seq })
    }

    /// If events were dropped for space, queue the `warning` that says how many
    /// (PROTOCOL.md §6) and reset the count. Called before sending, so the notice
    /// follows the surviving backlog in the same order on the wire.
    pub fn take_drop_notice(&mut self) -> Vec<Record> {
        if self.dropped == 0 {
            return Vec::new();
        }
        let n = self.dropped;
        let mut event = Event::new(
            Severity::Warning,
            Category::Manager,
            format!("Event queue full: {n} events dropped"),
        );
        event.details = Some(serde_json::json!({ "dropped": n, "queue_max": QUEUE_MAX }));
        // The notice itself may not push anything else out: it is allowed one
        // place beyond the bound until it is delivered.
        let env = match Envelope::new(&event) {
            Ok(env) => env,
            Err(_) => return Vec::new(),
        };
        let entry = Entry {
            seq: self.next_seq,
            env,
        };
        self.next_seq += 1;
        self.dropped = 0;
        self.entries.push_back(entry.clone());
        vec![Record::Push(entry), Record::DropsReported]
    }

    /// Entries not yet written on this connection; they count as in flight from now.
    pub fn take_unsent(&mut self) -> Vec<Entry> {
        let out: Vec<Entry> = self.entries.iter().skip(self.in_flight).cloned().collect();
        self.in_flight = self.entries.len();
        out
    }

    /// Entries in flight on the current connection.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The connection was lost: entries in flight are unconfirmed and will be sent
    /// again (same envelopes) on the next connection.
    pub fn connection_lost(&mut self) {
        self.in_flight = 0;
    }

    /// The control plane confirmed everything up to and including `seq` (a Pong to
    /// the Ping sent after it). Only entries in flight can be confirmed. Returns the
    /// `Ack` record, or `None` when `seq` is not in flight.
    pub fn confirm(&mut self, seq: u64) -> Option<Record> {
        let pos = self
            .entries
            .iter()
            .take(self.in_flight)
            .position(|e| e.seq == seq)?;
        self.entries.drain(..=pos);
        self.in_flight -= pos + 1;
        Some(Record::Ack { seq })
    }

    /// Apply a journal record on replay. Records that name unknown entries are
    /// ignored (they can only follow a compaction that already applied them).
    pub fn apply(&mut self, record: Record) {
        match record {
            Record::Meta { next_seq, dropped } => {
                self.next_seq = self.next_seq.max(next_seq);
                self.dropped = dropped;
            }
            Record::Push(entry) => {
                if self.entries.back().is_some_and(|b| b.seq >= entry.seq) {
                    return;
                }
                self.next_seq = self.next_seq.max(entry.seq + 1);
                if self.entries.len() >= QUEUE_MAX {
                    self.make_room();
                }
                self.entries.push_back(entry);
            }
            Record::Ack { seq } => {
                if let Some(pos) = self.entries.iter().position(|e| e.seq == seq) {
                    self.entries.drain(..=pos);
                }
            }
            Record::Drop { seq } => {
                if let Some(pos) = self.entries.iter().position(|e| e.seq == seq) {
                    self.entries.remove(pos);
                    self.dropped += 1;
                }
            }
            Record::DropsReported => self.dropped = 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(sev: Severity, n: usize) -> Event {
        Event::new(sev, Category::Link, format!("e{n}"))
    }

    fn messages(q: &Queue) -> Vec<String> {
        q.entries()
            .map(|e| e.env.payload["message"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn fifo_with_monotonic_seq_and_fixed_envelopes() {
        let mut q = Queue::default();
        for i in 0..3 {
            q.push(&ev(Severity::Info, i));
        }
        let sent = q.take_unsent();
        assert_eq!(sent.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(sent[0].env.msg_type, "event");
        assert!(q.take_unsent().is_empty(), "in flight are not sent twice");
        // Lost before confirmation: sent again, identical.
        q.connection_lost();
        let again = q.take_unsent();
        assert_eq!(again, sent);
        assert_eq!(q.confirm(1), Some(Record::Ack { seq: 1 }));
        assert_eq!(messages(&q), ["e2"]);
        assert_eq!(q.in_flight(), 1);
        assert_eq!(q.confirm(7), None);
        q.push(&ev(Severity::Info, 3));
        assert_eq!(q.take_unsent().len(), 1, "only the new one");
        assert_eq!(q.confirm(3), Some(Record::Ack { seq: 3 }));
        assert!(q.is_empty());
    }

    #[test]
    fn full_queue_drops_oldest_info_first_and_reports_the_count() {
        let mut q = Queue::default();
        q.push(&ev(Severity::Warning, 0));
        for i in 1..QUEUE_MAX {
            q.push(&ev(Severity::Info, i));
        }
        assert_eq!(q.len(), QUEUE_MAX);
        let recs = q.push(&ev(Severity::Critical, QUEUE_MAX));
        assert_eq!(recs[0], Record::Drop { seq: 1 });
        let recs = q.push(&ev(Severity::Info, QUEUE_MAX + 1));
        assert_eq!(recs[0], Record::Drop { seq: 2 });
        assert_eq!(q.len(), QUEUE_MAX);
        assert_eq!(q.dropped(), 2);
        let m = messages(&q);
        assert_eq!(m[0], "e0", "the warning stays");
        assert_eq!(m[1], "e3");
        let recs = q.take_drop_notice();
        assert_eq!(recs.len(), 2);
        assert_eq!(q.dropped(), 0);
        let last = q.entries().last().unwrap();
        assert_eq!(last.env.payload["severity"], "warning");
        assert_eq!(
            last.env.payload["message"],
            "Event queue full: 2 events dropped"
        );
        assert!(q.take_drop_notice().is_empty());
    }

    #[test]
    fn without_info_the_oldest_goes() {
        let mut q = Queue::default();
        for i in 0..QUEUE_MAX + 3 {
            q.push(&ev(Severity::Warning, i));
        }
        assert_eq!(messages(&q)[0], "e3");
        assert_eq!(q.dropped(), 3);
    }

    #[test]
    fn replaying_the_records_rebuilds_the_same_queue() {
        let mut q = Queue::default();
        let mut journal = Vec::new();
        for i in 0..5 {
            journal.extend(q.push(&ev(Severity::Info, i)));
        }
        q.take_unsent();
        journal.extend(q.confirm(1));
        journal.extend(q.push(&ev(Severity::Warning, 5)));
        let mut r = Queue::default();
        for rec in journal.clone() {
            r.apply(rec);
        }
        assert_eq!(messages(&r), messages(&q));
        assert_eq!(r.next_seq, q.next_seq);
        // Snapshot round trip, and replaying a snapshot twice changes nothing.
        let mut s = Queue::default();
        for rec in q.snapshot().into_iter().chain(q.snapshot()) {
            s.apply(rec);
        }
        assert_eq!(messages(&s), messages(&q));
        assert_eq!(s.next_seq, q.next_seq);
        // A new event after replay gets a fresh sequence number.
        s.push(&ev(Severity::Info, 9));
        assert_eq!(s.entries().last().unwrap().seq, q.next_seq);
    }
}
